"""JSON (one document) and JSON Lines (one check a line, then the report line)."""

from __future__ import annotations

import json

from kvmready.model import Report


class JsonRenderer:
    def render(self, report: Report) -> str:
        # ensure_ascii=False keeps evidence readable; the output is UTF-8 either way.
        return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


class JsonLinesRenderer:
    """jsonlines.org: each check as `{"type": "check", ...}`, then `{"type": "report", ...}`."""

    def render(self, report: Report) -> str:
        data = report.to_dict()
        lines = [json.dumps({"type": "check", "hostname": data["host"]["hostname"], **check}, ensure_ascii=False) for check in data["checks"]]
        header = {key: value for key, value in data.items() if key != "checks"}
        lines.append(json.dumps({"type": "report", **header}, ensure_ascii=False))
        return "\n".join(lines) + "\n"
