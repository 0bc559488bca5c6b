"""The shipped JSON Schemas describe everything they declare and declare everything kvmready writes.

The schemas stay open (no `additionalProperties: false`) so that a consumer
holding schema v1 keeps accepting reports with keys added later; these tests
close them (every object with `properties`, except the free-form `evidence`
and the count maps) and validate every report kvmready can write against the
closed copy, so a field that appears without a declaration fails here.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from helpers import GOLDENS
from jsonschema import Draft202012Validator
from test_render_formats import every_report

from kvmready import orchestration
from kvmready.model import Target
from kvmready.render import OutputFormat
from kvmready.schema import FLEET_SCHEMA_RESOURCE, schema

FLEET_SCHEMA = schema(FLEET_SCHEMA_RESOURCE)


def declared(node: Any, path: str = "#") -> Iterator[Tuple[str, Dict[str, Any]]]:
    """Every property schema and every $defs entry, with its path."""
    if not isinstance(node, dict):
        return
    for name, sub in node.get("properties", {}).items():
        yield f"{path}/properties/{name}", sub
        yield from declared(sub, f"{path}/properties/{name}")
    for name, sub in node.get("$defs", {}).items():
        yield f"{path}/$defs/{name}", sub
        yield from declared(sub, f"{path}/$defs/{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from declared(node[key], f"{path}/{key}")
    for key in ("oneOf", "anyOf", "allOf"):
        for index, sub in enumerate(node.get(key, ())):
            yield from declared(sub, f"{path}/{key}/{index}")


def closed(document: Dict[str, Any]) -> Dict[str, Any]:
    """A copy where every object that lists its properties allows no others."""
    strict = copy.deepcopy(document)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(strict)
    return strict


@pytest.mark.parametrize("name, document", [("report-v1", schema()), ("fleet-v1", FLEET_SCHEMA)])
def test_every_property_is_described(name: str, document: Dict[str, Any]):
    Draft202012Validator.check_schema(document)
    assert document.get("description")
    entries = list(declared(document))
    assert len(entries) > 10
    missing = [path for path, sub in entries if not str(sub.get("description", "")).strip()]
    assert not missing, f"{name}: no description at {missing}"


def reports_kvmready_writes() -> List[Tuple[str, Dict[str, Any]]]:
    documents = [(name, json.loads(OutputFormat.JSON.renderer().render(report))) for name, report in every_report().items()]
    for folder in ("real-hosts", "scenarios"):
        for path in sorted((GOLDENS / folder).glob("*.json")):
            documents.append((f"{folder}/{path.name}", json.loads(path.read_text(encoding="utf-8"))))
    documents.append(("error_report", orchestration.error_report("kvmready could not read this host: why", Target.KVM)))
    return documents


def test_every_field_kvmready_writes_is_declared():
    validator = Draft202012Validator(closed(schema()))
    names = []
    for name, document in reports_kvmready_writes():
        errors = sorted(validator.iter_errors(document), key=str)
        assert not errors, f"{name}: {errors[0].message} at {list(errors[0].absolute_path)}"
        names.append(name)
    assert "error_report" in names and any(name.startswith("scenarios/") for name in names)


def test_the_ansible_fact_error_report_is_declared(monkeypatch):
    """The fact's fallback report (checks could not run) carries `error`; the schema declares it."""

    def broken(**_kwargs: Any) -> Any:
        raise orchestration.InputError("/proc is not mounted")

    monkeypatch.setattr(orchestration, "build_facts", broken)
    report = json.loads(orchestration.ansible_fact(Target.WORKSTATION, "~/vmware"))
    assert report["verdict"] == "indeterminate" and "/proc is not mounted" in report["error"]
    assert not list(Draft202012Validator(closed(schema())).iter_errors(report))
    assert "error" in schema()["properties"]
    assert list(Draft202012Validator(schema()).iter_errors(dict(report, error=""))), "an empty error explains nothing"


def test_the_closed_schema_catches_an_undeclared_field():
    report = json.loads(OutputFormat.JSON.renderer().render(every_report()["ready"]))
    strict = Draft202012Validator(closed(schema()))
    assert not list(strict.iter_errors(report))
    for mutate in (lambda r: r.update(extra=1), lambda r: r["host"].update(extra=1), lambda r: r["checks"][0].update(extra=1)):
        bad = copy.deepcopy(report)
        mutate(bad)
        assert list(strict.iter_errors(bad))
        assert not list(Draft202012Validator(schema()).iter_errors(bad)), "the shipped schema stays open (additive changes)"
    bad = copy.deepcopy(report)
    bad["checks"][0]["evidence"] = {"anything": {"goes": [1]}}
    assert not list(strict.iter_errors(bad)), "evidence is free-form"


def test_every_fleet_field_is_declared(tmp_path: Path):
    from kvmready import fleet
    from kvmready.render.fleet import FleetJsonRenderer

    (tmp_path / "broken.json").write_text("{not json")
    summary = fleet.summarize([str(GOLDENS / "real-hosts"), str(GOLDENS / "scenarios"), str(tmp_path)])
    document = json.loads(FleetJsonRenderer().render(summary))
    assert document["malformed"] and document["not_ready"]
    errors = list(Draft202012Validator(closed(FLEET_SCHEMA)).iter_errors(document))
    assert not errors, errors[0]
