"""The check catalog as text: `kvmready list`, `kvmready explain`, the README's table.

Entries are the dicts `kvmready.checks.catalog()` makes; nothing here reads the registry.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any, Dict, List, Mapping, Sequence

Entry = Mapping[str, Any]


def render_list(entries: Sequence[Entry], as_json: bool) -> str:
    ordered: List[Dict[str, Any]] = sorted((dict(entry) for entry in entries), key=lambda entry: entry["id"])
    if as_json:
        return json.dumps(ordered, indent=2, ensure_ascii=False) + "\n"
    width = max(len(entry["id"]) for entry in ordered)
    lines = [f"{'ID':<{width}}  {'WORKSTATION':<11}  {'KVM':<11}  TITLE"]
    for entry in ordered:
        severity = entry["severity"]
        live = " (live)" if entry["live"] else ""
        lines.append(f"{entry['id']:<{width}}  {severity['workstation']:<11}  {severity['kvm']:<11}  {entry['title']}{live}")
    return "\n".join(lines) + "\n"


def render_explanation(entry: Entry) -> str:
    def wrap(text: str) -> str:
        return textwrap.fill(text, width=78, initial_indent="  ", subsequent_indent="  ")

    severity = entry["severity"]
    sections = [
        f"{entry['id']}: {entry['title']}",
        f"Category: {entry['category']}. Severity: {severity['workstation']} for --target workstation, {severity['kvm']} for --target kvm."
        + (" Runs on the machine itself (skipped for --root trees)." if entry["live"] else ""),
        "What it checks:\n" + wrap(entry["what"]),
        "Why it matters:\n" + wrap(entry["why"]),
        "How to fix:\n" + wrap(entry["fix"]),
    ]
    if entry.get("sources"):
        sections.append("Sources:\n" + "\n".join(
            textwrap.fill(source, width=78, initial_indent="  - ", subsequent_indent="    ") for source in entry["sources"]))
    return "\n\n".join(sections) + "\n"


def render_markdown(entries: Sequence[Entry]) -> str:
    """The README's "What kvmready checks" table, in registry order."""
    lines = [
        "| id | what it checks | workstation | kvm | how to fix |",
        "|---|---|---|---|---|",
    ]
    for entry in entries:
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
