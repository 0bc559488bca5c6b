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


class TableRenderer:
    def __init__(self, *, width: Optional[int] = None, color: bool = False) -> None:
        self.width = width or 80
        self.color = color

    def render(self, report: Report) -> str:
        return _render(report, self.width, self.color)


def _render(report: Report, width: int, color: bool) -> str:
    from rich.console import Console
    from rich.table import Table
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
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False, expand=False, show_edge=False)
    # Fixed widths spare rich measuring every cell (a quarter of the render time).
    widths = _column_widths(report, width, show_severity)
    table.add_column("status", no_wrap=True, width=widths[0])
    table.add_column("check", no_wrap=True, overflow="fold", width=widths[1])
    if show_severity:
        table.add_column("sev", no_wrap=True, width=widths[2])
    table.add_column("result", overflow="fold", width=widths[-1])
    for category in report.categories + tuple(sorted({c.category for c in report.checks} - set(report.categories))):
        rows = sorted((c for c in report.checks if c.category == category), key=lambda c: c.rank)
        if not rows:
            continue
        heading: List[Any] = ["", Text(category.upper(), style="bold underline"), ""] + ([""] if show_severity else [])
        table.add_row(*heading)
        for check in rows:
            label, style = STATUS_LOOK[check.status]
            severity = [SEVERITY_SHORT[check.severity.value]] if show_severity else []
            table.add_row(Text(label, style=style), Text(printable(check.id)), *severity, Text(printable(check.summary)))
    console.print(table)
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
    _fix_first(console, report)
    # rich pads cells to the full width; CI logs are easier to read without the trailing blanks.
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def _column_widths(report: Report, width: int, show_severity: bool) -> List[int]:
    status = max(len(label) for label, _ in STATUS_LOOK.values())
    check = max([len("check")] + [len(printable(c.id)) for c in report.checks] + [len(c.category) for c in report.checks])
    fixed = [status, check] + ([len("info")] if show_severity else [])
    gaps = 2 * len(fixed)  # one blank either side of every inner column edge
    return fixed + [max(10, width - sum(fixed) - gaps)]


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


def _fix_first(console: Any, report: Report) -> None:
    from rich.table import Table
    from rich.text import Text

    steps = [report.check(check_id) for check_id in report.reasons]
    steps = [check for check in steps if check.remediation or check.status is Status.ERROR]
    if not steps:
        return
    console.print("Fix first:" if report.verdict is not Verdict.INDETERMINATE else "Look first:")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, justify="right")
    grid.add_column(overflow="fold")
    for index, check in enumerate(steps[:FIX_FIRST], 1):
        line = Text()
        line.append(printable(check.id), style="bold")
        line.append(f": {printable(check.remediation or check.summary)}")
        grid.add_row(f" {index}.", line)
    console.print(grid)
    if len(steps) > FIX_FIRST:
        console.print(f" … and {len(steps) - FIX_FIRST} more (`kvmready explain ID`, or --format json for every detail)")
