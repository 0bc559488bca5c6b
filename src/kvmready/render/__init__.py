"""Renderers: pure functions from a Report to text.  Nothing here probes.

Each format lives in its own module and is imported only when chosen, so
`--format json` never pays for rich.
"""

from __future__ import annotations

import enum
from typing import Optional

from kvmready.model import Report


class OutputFormat(str, enum.Enum):
    TABLE = "table"
    JSON = "json"
    JSONL = "jsonl"

    def __str__(self) -> str:
        return self.value

    def render(self, report: Report, *, width: Optional[int] = None, color: bool = False) -> str:
        if self is OutputFormat.TABLE:
            from kvmready.render import table

            return table.render(report, width=width, color=color)
        if self is OutputFormat.JSON:
            from kvmready.render import json_report

            return json_report.render(report)
        if self is OutputFormat.JSONL:
            from kvmready.render import json_report

            return json_report.render_lines(report)
        raise AssertionError(f"unhandled format {self!r}")
