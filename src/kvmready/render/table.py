"""The table for people: checks grouped by category, then the verdict and what to fix first.

Readable at 60 columns and in CI logs: every status carries a word as well
as a symbol and a colour, and long text wraps inside its column.
"""

from __future__ import annotations

import io
from typing import Any, List, Optional

from kvmready.model import STATUS_ORDER, Report, Status, Verdict
from kvmready.render.common import dig
from kvmready.text import printable

STATUS_LOOK = {
    Status.PASS: ("✓ pass", "green"),
    Status.WARN: ("! warn", "yellow"),
    Status.FAIL: ("✗ FAIL", "bold red"),
    Status.SKIP: ("- skip", "dim"),
    Status.ERROR: ("? ERROR", "bold magenta"),
}
SEVERITY_SHORT = {"required": "req", "recommended": "rec", "info": "info"}
VERDICT_LOOK = {
    Verdict.READY: ("READY", "bold green"),
    Verdict.READY_WITH_WARNINGS: ("READY WITH WARNINGS", "bold yellow"),
    Verdict.NOT_READY: ("NOT READY", "bold red"),
    Verdict.INDETERMINATE: ("INDETERMINATE", "bold magenta"),
}
FIX_FIRST = 3  # remediation steps shown under the verdict
NARROW = 72
MIN_RESULT = 6  # at the narrowest terminal (40 columns) the check ids still fit whole


class TableRenderer:
    def __init__(self, *, width: Optional[int] = None, color: bool = False) -> None:
        self.width = width or 80
        self.color = color

    def render(self, report: Report) -> str:
        return _render(report, self.width, self.color)


def _render(report: Report, width: int, color: bool) -> str:
    from rich.console import Console
    from rich.text import Text

    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        color_system="standard" if color else None,
        force_terminal=color,
        no_color=not color,
        highlight=False,
        emoji=False,
        markup=False,  # host text is data: `[bold]` or `[/]` in a hostname prints as it is
        soft_wrap=False,
    )
    console.print(Text(_headline(report)), style="bold" if color else None)
    # Below NARROW columns the severity column goes: the result text needs the room.
    show_severity = width >= NARROW
    widths = _column_widths(report, width, show_severity)
    headings = ["status", "check"] + (["sev"] if show_severity else []) + ["result"]
    lines = _row(console, widths, [Text(heading, style="bold") for heading in headings])
    for category in report.categories + tuple(sorted({c.category for c in report.checks} - set(report.categories))):
        rows = sorted((c for c in report.checks if c.category == category), key=lambda c: c.rank)
        if not rows:
            continue
        lines += _row(console, widths, [Text(), Text(category.upper(), style="bold underline")] + [Text()] * (len(widths) - 2))
        for check in rows:
            label, style = STATUS_LOOK[check.status]
            severity = [Text(SEVERITY_SHORT[check.severity.value])] if show_severity else []
            lines += _row(console, widths, [Text(label, style=style), Text(printable(check.id)), *severity,
                                            Text(printable(check.summary))])
    console.print(Text("\n").join(lines), soft_wrap=True)
    console.print()
    label, style = VERDICT_LOOK[report.verdict]
    counts = " · ".join(f"{report.summary[status.value]} {status.value}" for status in STATUS_ORDER)
    verdict = Text()
    verdict.append(label, style=style)
    verdict.append(f" for {report.target.value} (exit {report.exit_code}): {counts}")
    console.print(verdict)
    if report.waiting_on_upstream:
        waiting = ", ".join(printable(check_id) for check_id in report.waiting_on_upstream)
        # one short line, so it stays one line at 80 columns: the fix-first list says how to gate on the rest
        console.print(Text(f"Ready in every other respect: {waiting} waits on upstream"), overflow="fold")
    if report.observed_nothing:
        console.print("Nothing was checked: every selected check skipped or could not run (the reasons are above).")
    elif report.verdict is Verdict.INDETERMINATE and report.undecided:
        undecided = ", ".join(printable(check_id) for check_id in report.undecided)
        console.print(Text(f"Not decided here: {undecided} could not be observed. Run kvmready on the machine itself, "
                           "or check a `kvmready snapshot` of it."))
    _fix_first(console, report, width)
    # A blank heading row, a short wrapped line: CI logs are easier to read without trailing blanks.
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def _row(console: Any, widths: List[int], cells: List[Any], gap: int = 2) -> List[Any]:
    """One table row as lines of text: each cell wrapped to its column (words longer than the column folded), the
    cells side by side, `gap` blanks between columns.  Laid out here rather than by rich's Table, which took
    most of the table's render time (and import) for the same result."""
    from rich.text import Text

    wrapped = [[cell] if cell.cell_len <= width and "\n" not in cell.plain else cell.wrap(console, width, overflow="fold")
               for cell, width in zip(cells, widths)]  # most cells fit: wrapping them would only cost time
    lines = []
    for index in range(max(len(cell_lines) for cell_lines in wrapped)):
        line = Text()
        for column, (cell_lines, width) in enumerate(zip(wrapped, widths)):
            part = cell_lines[index] if index < len(cell_lines) else Text()
            line.append_text(part)
            if column < len(widths) - 1:
                line.append(" " * (width - part.cell_len + gap))
        lines.append(line)
    return lines


def _column_widths(report: Report, width: int, show_severity: bool) -> List[int]:
    """Widths of the columns, summing to `width` with the gaps: the result gets what is left, at least
    MIN_RESULT, taken from the check column (whose ids then fold) on the narrowest terminals."""
    status = max(len(label) for label, _ in STATUS_LOOK.values())
    check = max([len("check")] + [len(printable(c.id)) for c in report.checks] + [len(c.category) for c in report.checks])
    severity = [len("info")] if show_severity else []
    gaps = 2 * (len(severity) + 2)  # two blanks between neighbouring columns
    result = width - status - check - sum(severity) - gaps
    if result < MIN_RESULT:
        check = max(len("check"), check - (MIN_RESULT - result))
        result = max(MIN_RESULT, width - status - check - sum(severity) - gaps)
    return [status, check] + severity + [result]


def _headline(report: Report) -> str:
    host = report.host
    kernel = dig(host, "kernel", "release")
    where = dig(host, "source")
    if where == "snapshot":
        where = f"snapshot captured {dig(host, 'captured_at')}"
    parts = [
        f"kvmready {report.tool_version}",
        f"target {report.target.value}",
        f"{dig(host, 'hostname') or 'unknown host'} ({where})",
        dig(host, "arch") or "unknown arch",
        f"Linux {kernel}" if kernel else None,
        dig(host, "os", "name"),
    ]
    return printable(" · ".join(str(part) for part in parts if part))


def _fix_first(console: Any, report: Report, width: int) -> None:
    from rich.text import Text

    steps = [report.check(check_id) for check_id in report.reasons]
    steps = [check for check in steps if check.remediation or check.status is Status.ERROR]
    if not steps:
        return
    console.print("Fix first:" if report.verdict is not Verdict.INDETERMINATE else "Look first:")
    number_width = len(f" {FIX_FIRST}.")
    lines = []
    for index, check in enumerate(steps[:FIX_FIRST], 1):
        line = Text()
        line.append(printable(check.id), style="bold")
        line.append(f": {printable(check.remediation or check.summary)}")
        lines += _row(console, [number_width, width - number_width - 1], [Text(f"{index}.".rjust(number_width)), line], gap=1)
    console.print(Text("\n").join(lines), soft_wrap=True)
    if len(steps) > FIX_FIRST:
        console.print(f" … and {len(steps) - FIX_FIRST} more (`kvmready explain ID`, or --format json for every detail)")
