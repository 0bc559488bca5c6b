"""The JSON Schemas kvmready ships inside the package: the report's and the fleet summary's."""

from __future__ import annotations

import json
from typing import Any, Dict

SCHEMA_RESOURCE = "report-v1.json"
FLEET_SCHEMA_RESOURCE = "fleet-v1.json"


def schema_text(resource: str = SCHEMA_RESOURCE) -> str:
    from importlib.resources import files

    return files("kvmready.schemas").joinpath(resource).read_text(encoding="utf-8")


def schema(resource: str = SCHEMA_RESOURCE) -> Dict[str, Any]:
    document: Dict[str, Any] = json.loads(schema_text(resource))
    return document
