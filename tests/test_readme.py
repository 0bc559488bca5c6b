"""The README's check table is generated from the registry and must stay in step."""

from __future__ import annotations

import os
import re
from pathlib import Path

from kvmready.checks import REGISTRY, catalog
from kvmready.render.catalog import render_markdown

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = re.compile(r"(<!-- checks:start -->\n)(.*?)(<!-- checks:end -->)", re.S)


def test_readme_check_table_matches_the_registry():
    text = README.read_text(encoding="utf-8")
    match = SECTION.search(text)
    assert match, "README.md lacks the <!-- checks:start/end --> section"
    expected = render_markdown(catalog())
    if os.environ.get("KVMREADY_UPDATE_GOLDENS") == "1" and match.group(2) != expected:
        README.write_text(text[: match.start(2)] + expected + text[match.end(2):], encoding="utf-8")
        return
    assert match.group(2) == expected


def test_readme_table_names_every_check_with_both_severities():
    table = SECTION.search(README.read_text(encoding="utf-8")).group(2)
    for check_id in REGISTRY:
        row = next(line for line in table.splitlines() if line.startswith(f"| `{check_id}` |"))
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]
        assert cells[2] in ("required", "recommended", "info")
        assert cells[3] in ("required", "recommended", "info")
        assert cells[4], f"{check_id} has no fix in the README"


def test_readme_shows_both_setup_commands():
    text = README.read_text(encoding="utf-8")
    assert ".venv/bin/kvmready check" in text
    assert "<!-- ci:test:start -->" in text and ".venv/bin/python -m pytest" in text
