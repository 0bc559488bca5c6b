"""Renderers: pure functions from a Report to text.  Nothing here probes.

Each format lives in its own module and is imported only when chosen, so
`--format json` never pays for rich (or xml.etree).  Options that belong to
one format (the table's width and colour, NFD's label prefix) are given to
its renderer when it is made, not on every call.
"""

from __future__ import annotations

import enum
from typing import Optional, Protocol

from kvmready.model import Report


class Renderer(Protocol):
    def render(self, report: Report) -> str: ...


class OutputFormat(str, enum.Enum):
    TABLE = "table"
    JSON = "json"
    JSONL = "jsonl"
    JUNIT = "junit"  # JUnit XML for GitLab/Jenkins test reports
    PROMETHEUS = "prometheus"  # node_exporter textfile collector (*.prom)
    NFD = "nfd"  # Node Feature Discovery local feature file

    def __str__(self) -> str:
        return self.value

    def renderer(
        self,
        *,
        width: Optional[int] = None,
        color: bool = False,
        nfd_prefix: Optional[str] = None,
        nfd_expiry: Optional[str] = None,
    ) -> Renderer:
        """The renderer of this format, with the options that apply to it."""
        if self is OutputFormat.TABLE:
            from kvmready.render.table import TableRenderer

            return TableRenderer(width=width, color=color)
        if self is OutputFormat.JSON:
            from kvmready.render.json_report import JsonRenderer

            return JsonRenderer()
        if self is OutputFormat.JSONL:
            from kvmready.render.json_report import JsonLinesRenderer

            return JsonLinesRenderer()
        if self is OutputFormat.JUNIT:
            from kvmready.render.junit import JunitRenderer

            return JunitRenderer()
        if self is OutputFormat.PROMETHEUS:
            from kvmready.render.prometheus import PrometheusRenderer

            return PrometheusRenderer()
        if self is OutputFormat.NFD:
            from kvmready.render.nfd import DEFAULT_EXPIRY, DEFAULT_PREFIX, NfdRenderer

            return NfdRenderer(prefix=nfd_prefix or DEFAULT_PREFIX, expiry=nfd_expiry or DEFAULT_EXPIRY)
        raise AssertionError(f"unhandled format {self!r}")
