"""`kvmready list` and `kvmready explain`: the registry as help text."""

from __future__ import annotations

import json
import textwrap
from typing import Optional

from kvmready.checks import REGISTRY
from kvmready.targets import SEVERITIES


def catalog() -> list:
    return [
        {
            "id": spec.id,
            "title": spec.title,
            "category": spec.category,
            "severity": {"workstation": SEVERITIES[spec.id][0].value, "kvm": SEVERITIES[spec.id][1].value},
            "live": spec.live,
            "what": spec.what,
            "why": spec.why,
            "fix": spec.fix,
        }
        for spec in REGISTRY.values()
    ]


def render_catalog(as_json: bool) -> str:
    entries = sorted(catalog(), key=lambda entry: entry["id"])
    if as_json:
        return json.dumps(entries, indent=2, ensure_ascii=False) + "\n"
    width = max(len(entry["id"]) for entry in entries)
    lines = [f"{'ID':<{width}}  {'WORKSTATION':<11}  {'KVM':<11}  TITLE"]
    for entry in entries:
        severity = entry["severity"]
        live = " (live)" if entry["live"] else ""
        lines.append(f"{entry['id']:<{width}}  {severity['workstation']:<11}  {severity['kvm']:<11}  {entry['title']}{live}")
    return "\n".join(lines) + "\n"


def explain_check(check_id: str) -> Optional[str]:
    spec = REGISTRY.get(check_id)
    if spec is None:
        return None
    workstation, kvm = SEVERITIES[check_id]
    wrap = lambda text: textwrap.fill(text, width=78, initial_indent="  ", subsequent_indent="  ")  # noqa: E731
    sections = [
        f"{spec.id}: {spec.title}",
        f"Category: {spec.category}. Severity: {workstation.value} for --target workstation, {kvm.value} for --target kvm."
        + (" Runs on the machine itself (skipped for --root trees)." if spec.live else ""),
        "What it checks:\n" + wrap(spec.what),
        "Why it matters:\n" + wrap(spec.why),
        "How to fix:\n" + wrap(spec.fix),
    ]
    return "\n\n".join(sections) + "\n"


def markdown_checks() -> str:
    """The README's "What kvmready checks" table, generated from the registry."""
    lines = [
        "| id | what it checks | workstation | kvm | how to fix |",
        "|---|---|---|---|---|",
    ]
    for entry in catalog():
        live = " Needs the machine itself (skipped for `--root`)." if entry["live"] else ""
        cells = [
            f"`{entry['id']}`",
            f"**{entry['title']}.** {entry['what']}{live}",
            entry["severity"]["workstation"],
            entry["severity"]["kvm"],
            entry["fix"],
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
