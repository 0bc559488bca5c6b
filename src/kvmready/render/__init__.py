"""Renderers: pure functions from a Report to text.  Nothing here probes.

Each format lives in its own module and is imported only when chosen, so
`--format json` never pays for rich (or xml.etree).
"""

from __future__ import annotations

import enum
from typing import Optional

from kvmready.model import Report


class OutputFormat(str, enum.Enum):
    TABLE = "table"
    JSON = "json"
    JSONL = "jsonl"
    JUNIT = "junit"  # JUnit XML for GitLab/Jenkins test reports
    PROMETHEUS = "prometheus"  # node_exporter textfile collector (*.prom)
    NFD = "nfd"  # Node Feature Discovery local feature file

    def __str__(self) -> str:
        return self.value

    def render(
        self,
        report: Report,
        *,
        width: Optional[int] = None,
        color: bool = False,
        nfd_prefix: Optional[str] = None,
    ) -> str:
        if self is OutputFormat.TABLE:
            from kvmready.render import table

            return table.render(report, width=width, color=color)
        if self is OutputFormat.JSON:
            from kvmready.render import json_report

            return json_report.render(report)
        if self is OutputFormat.JSONL:
            from kvmready.render import json_report

            return json_report.render_lines(report)
        if self is OutputFormat.JUNIT:
            from kvmready.render import junit

            return junit.render(report)
        if self is OutputFormat.PROMETHEUS:
            from kvmready.render import prometheus

            return prometheus.render(report)
        if self is OutputFormat.NFD:
            from kvmready.render import nfd

            return nfd.render(report) if nfd_prefix is None else nfd.render(report, prefix=nfd_prefix)
        raise AssertionError(f"unhandled format {self!r}")
