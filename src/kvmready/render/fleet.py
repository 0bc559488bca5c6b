"""The fleet summary as text: the table for people and the JSON document."""

from __future__ import annotations

import json
from typing import Any, List, Optional

from kvmready.fleet import Summary
from kvmready.text import printable


class FleetTableRenderer:
    def __init__(self, top: Optional[int] = 10) -> None:
        self.top = top  # failing checks listed; None: all

    def render(self, summary: Summary) -> str:
        return _render_table(summary, self.top)


class FleetJsonRenderer:
    def __init__(self, top: Optional[int] = None) -> None:
        self.top = top

    def render(self, summary: Summary) -> str:
        return json.dumps(summary.to_dict(self.top), indent=2, ensure_ascii=False) + "\n"


def _clean(value: Any) -> str:
    """One terminal line: control characters shown as escapes."""
    return printable(str(value))


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:5.1f}%" if whole else "    -"


def _render_table(summary: Summary, top: Optional[int]) -> str:
    hosts = summary.reports
    lines = [
        f"kvmready fleet summary: {hosts} report{'s' if hosts != 1 else ''} from {summary.files} "
        f"file{'s' if summary.files != 1 else ''}, {summary.malformed_count} malformed",
        # Targets come from the report files, like every other string here: escaped too.
        "targets: " + (", ".join(f"{_clean(target)} {count}" for target, count in summary.targets.items()) or "-"),
        "",
    ]
    verdicts = summary.verdicts
    width = max(len("verdict"), *(len(v) for v in verdicts))
    lines.append(f"{'verdict':<{width}}  {'hosts':>6}  share")
    for verdict, count in verdicts.items():
        lines.append(f"{_clean(verdict):<{width}}  {count:>6}  {_percent(count, hosts)}")

    if not hosts:  # nothing to add up: "every host is ready" would be a claim about no host at all
        lines += ["", "no kvmready report was read: nothing to summarize"]
        _append_malformed(lines, summary)
        return "\n".join(lines) + "\n"

    failing = summary.failing_checks(top)
    lines.append("")
    if failing:
        width = max(len("failing check"), *(len(check_id) for check_id, _ in failing))
        lines.append(f"{'failing check':<{width}}  {'hosts':>6}  share")
        for check_id, count in failing:
            lines.append(f"{_clean(check_id):<{width}}  {count:>6}  {_percent(count, hosts)}")
    else:
        lines.append("no check failed on any host")

    not_ready = summary.not_ready()
    lines.append("")
    if not_ready:
        host_width = max(len("not ready"), *(len(_clean(e.host)) for e in not_ready))
        verdict_width = max(len(e.verdict) for e in not_ready)
        lines.append(f"{'not ready':<{host_width}}  {'verdict':<{verdict_width}}  first reason")
        for entry in not_ready:
            reason = ": ".join(part for part in (entry.reason, entry.reason_summary) if part) or "-"
            lines.append(f"{_clean(entry.host):<{host_width}}  {_clean(entry.verdict):<{verdict_width}}  {_clean(reason)}")
    else:
        lines.append("every host is ready")
    _append_malformed(lines, summary)
    return "\n".join(lines) + "\n"


def _append_malformed(lines: List[str], summary: Summary) -> None:
    if summary.malformed:
        lines.append("")
        lines.append(f"malformed ({summary.malformed_count}):")
        for bad in sorted(summary.malformed):
            lines.append(f"  {_clean(bad.source)}: {_clean(bad.error)}")
        if summary.malformed_omitted:
            lines.append(f"  … and {summary.malformed_omitted} more, not listed")
