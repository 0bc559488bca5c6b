"""The JSON Schema of the report, shipped inside the package."""

from __future__ import annotations

import json
from typing import Any, Dict

SCHEMA_RESOURCE = "report-v1.json"


def schema_text() -> str:
    from importlib.resources import files

    return files("kvmready.schemas").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")


def schema() -> Dict[str, Any]:
    document: Dict[str, Any] = json.loads(schema_text())
    return document
