"""Ansible, for real: the custom fact and the "register, gate, collect" playbook of docs/integrations.md.

The playbook is taken from the page as written (the install playbook runs in
test_install_playbook.py).

Runs the `ansible` and `ansible-playbook` installed next to this interpreter
(ansible-core is in the `test` extra) against localhost over the local
connection, with every Ansible directory under tmp_path.  The fact script is
the one `kvmready ansible-fact --print-script` writes, so it calls the
kvmready of this very environment: pip-installed, or the source tree through
PYTHONPATH=src (the script then carries that PYTHONPATH).

Skipped when ansible-core is not installed there.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
from helpers import REPO, code_blocks
from jsonschema import Draft202012Validator

import kvmready
from kvmready.schema import schema

pytestmark = pytest.mark.integration

SRC = Path(__file__).resolve().parents[2] / "src"
BIN = Path(sys.executable).parent
ANSIBLE = BIN / "ansible"
ANSIBLE_PLAYBOOK = BIN / "ansible-playbook"
VERDICTS = {"ready", "ready_with_warnings", "not_ready", "indeterminate"}

if not (ANSIBLE.exists() and ANSIBLE_PLAYBOOK.exists()):
    pytest.skip(f"ansible-core is not installed next to {sys.executable} (pip install ansible-core)", allow_module_level=True)


def kvmready_env() -> Dict[str, str]:
    """The environment this test's kvmready runs in: PYTHONPATH=src when it comes from the source tree."""
    env = dict(os.environ)
    package = Path(kvmready.__file__).resolve()
    if SRC in package.parents:
        env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def ansible_env(tmp_path: Path) -> Dict[str, str]:
    env = kvmready_env()
    home = tmp_path / "ansible-home"
    env.update(
        ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_REMOTE_TEMP=str(home / "remote-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_DEPRECATION_WARNINGS="False",
        ANSIBLE_LOCALHOST_WARNING="False",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_STDOUT_CALLBACK="default",
    )
    env.pop("ANSIBLE_CONFIG", None)
    return env


def kvmready_run(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kvmready", *args], capture_output=True, text=True,
                          timeout=120, env=env or kvmready_env())


def install_fact(tmp_path: Path, *args: str) -> Path:
    """`kvmready ansible-fact --print-script > facts.d/kvmready.fact; chmod 755`, as the docs say."""
    script = kvmready_run("ansible-fact", "--print-script", *args)
    assert script.returncode == 0, script.stderr
    facts_d = tmp_path / "facts.d"
    facts_d.mkdir()
    fact = facts_d / "kvmready.fact"
    fact.write_text(script.stdout)
    fact.chmod(0o755)
    return facts_d


def assert_report(report: dict) -> None:
    errors = sorted(Draft202012Validator(schema()).iter_errors(report), key=str)
    assert not errors, errors[0]
    assert report["schema_version"] == 1
    assert report["verdict"] in VERDICTS


def tree_supported(env) -> bool:
    """`--tree` is deprecated in ansible-core 2.19 and goes away in 2.23."""
    done = subprocess.run([str(ANSIBLE), "--help"], capture_output=True, text=True, timeout=120, env=env)
    return "--tree" in done.stdout


def test_the_fact_script_alone(tmp_path: Path):
    """Ansible runs facts with no arguments and a bare environment; exit 0 and JSON on stdout."""
    fact = install_fact(tmp_path, "--target", "kvm") / "kvmready.fact"
    done = subprocess.run([str(fact)], capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert_report(report)
    assert report["target"] == "kvm" and report["exit_code"] == 0 and "error" not in report, report.get("error")


def test_ansible_collects_the_fact(tmp_path: Path):
    env = ansible_env(tmp_path)
    facts_d = install_fact(tmp_path)
    tree = tmp_path / "tree"
    command = [
        str(ANSIBLE), "localhost", "-c", "local", "-i", "localhost,",
        "-m", "ansible.builtin.setup", "-a", f"fact_path={facts_d} filter=ansible_local",
        "-e", f"ansible_python_interpreter={sys.executable}",
    ]
    with_tree = tree_supported(env)
    if with_tree:
        command += ["--tree", str(tree)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    # The default callback: `localhost | SUCCESS => {...}`.
    head, _, body = done.stdout.partition(" => ")
    assert head.strip() == "localhost | SUCCESS", done.stdout[:500]
    result = json.loads(body)
    fact = result["ansible_facts"]["ansible_local"]["kvmready"]
    assert isinstance(fact, dict), fact  # a string here is Ansible's error for a fact that failed
    assert_report(fact)
    assert "error" not in fact, fact["error"]
    assert fact["exit_code"] == 0 and fact["target"] == "workstation" and fact["checks"]

    direct = kvmready_run("check", "--format", "json", "--exit-zero")
    assert direct.returncode == 0, direct.stderr
    direct_report = json.loads(direct.stdout)
    assert fact["verdict"] == direct_report["verdict"]
    assert [c["id"] for c in fact["checks"]] == [c["id"] for c in direct_report["checks"]]

    if with_tree:
        summary = kvmready_run("fleet", "summarize", str(tree), "--format", "json")
        assert summary.returncode == 0, summary.stderr
        document = json.loads(summary.stdout)
        assert document["hosts"] == 1 and document["malformed"] == []
        assert document["verdicts"][fact["verdict"]] == 1


def register_playbook() -> str:
    """The "register, gate, collect" playbook of docs/integrations.md, as written."""
    (block,) = [block for block in code_blocks(REPO / "docs" / "integrations.md", "yaml") if block.startswith("- name: KVM readiness\n")]
    return block


def kvmready_on_path(tmp_path: Path, env: Dict[str, str]) -> Dict[str, str]:
    """A `kvmready` command on PATH that runs this environment's kvmready, as the playbook expects."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "kvmready"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m kvmready "$@"\n')
    wrapper.chmod(0o755)
    return dict(env, PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")


def test_the_playbook_recipe(tmp_path: Path):
    env = kvmready_on_path(tmp_path, ansible_env(tmp_path))
    (tmp_path / "kvmready.yml").write_text(register_playbook())
    reports = tmp_path / "reports"
    reports.mkdir()
    direct = kvmready_run("check", "--format", "json")
    done = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-c", "local", "-i", "localhost,", "kvmready.yml",
         "-e", f"ansible_python_interpreter={sys.executable}"],
        capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path),
    )
    if direct.returncode in (0, 1):
        assert done.returncode == 0, done.stdout + done.stderr
        saved = json.loads((reports / "localhost.json").read_text())
        assert_report(saved)
        assert saved["verdict"] == json.loads(direct.stdout)["verdict"]
        assert f"localhost: {saved['verdict']}" in done.stdout
        summary = kvmready_run("fleet", "summarize", str(reports), "--format", "json")
        assert json.loads(summary.stdout)["hosts"] == 1
    else:  # indeterminate (3): the recipe's failed_when stops the play
        assert done.returncode != 0
