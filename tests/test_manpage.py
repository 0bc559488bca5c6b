"""kvmready(1) is generated from the CLI (tools/manpage.py) and kept in step with it.

`KVMREADY_UPDATE_GOLDENS=1` rewrites docs/kvmready.1; review the diff.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from typing import Any

import pytest
from helpers import REPO, UPDATE_GOLDENS

from kvmready.cli import EXIT_CODES

PAGE = REPO / "docs" / "kvmready.1"


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("kvmready_manpage", REPO / "tools" / "manpage.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_man_page_is_in_step_with_the_cli():
    text = generator().manpage()
    if UPDATE_GOLDENS:
        PAGE.write_text(text, encoding="utf-8")
    assert PAGE.read_text(encoding="utf-8") == text, "docs/kvmready.1 is stale: KVMREADY_UPDATE_GOLDENS=1 rewrites it"


def test_the_man_page_covers_every_command_and_option():
    import typer

    from kvmready.cli import app

    text = PAGE.read_text(encoding="utf-8")
    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        for sub_name, sub in (getattr(command, "commands", None) or {name: command}).items():
            title = name if sub is command else f"{name} {sub_name}"
            assert f".SS {title.replace('-', chr(92) + '-')}\n" in text, title
            for param in sub.params:
                if param.param_type_name == "option" and param.opts[0] != "--help":
                    assert f"\\fB{param.opts[0].replace('-', chr(92) + '-')}\\fR" in text, (title, param.opts[0])
    assert EXIT_CODES.replace("-", "\\-") in text


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_the_man_page_renders_without_warnings():
    done = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(PAGE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
