"""The Ansible install playbook of docs/integrations.md, taken from the page and run as written.

Against localhost over the local connection, with the playbook's own
variables pointed into tmp_path (`kvmready_venv`, `kvmready_fact_dir`), so
nothing outside it changes: it builds a wheel from this checkout, installs it
into a new environment (its dependencies come from PyPI or pip's cache),
creates the fact directory, installs the fact and reads it back.

`become: true` is kept when the tests run as root (as CI does; Ansible needs
no sudo to become root from root); as another user `ansible_become=false` is
passed, since everything goes into tmp_path.  Skipped when ansible-core is not
installed next to this interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO, code_blocks
from jsonschema import Draft202012Validator

from kvmready.schema import schema

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
ANSIBLE_PLAYBOOK = BIN / "ansible-playbook"
DOC = REPO / "docs" / "integrations.md"

if not ANSIBLE_PLAYBOOK.exists():
    pytest.skip(f"ansible-core is not installed next to {sys.executable} (pip install ansible-core)", allow_module_level=True)


def install_playbook() -> str:
    (block,) = [block for block in code_blocks(DOC, "yaml") if block.startswith("- name: Install the kvmready fact\n")]
    return block


def test_the_install_playbook_is_what_the_docs_promise():
    (play,) = yaml.safe_load(install_playbook())
    names = [task["name"] for task in play["tasks"]]
    assert play["become"] is True
    assert any("wheel" in name.lower() for name in names), names
    modules = [next(key for key in task if key.startswith("ansible.builtin.")) for task in play["tasks"]]
    assert "ansible.builtin.pip" in modules and modules.count("ansible.builtin.file") >= 2
    directory = next(task for task in play["tasks"] if task.get("ansible.builtin.file", {}).get("path") == "{{ kvmready_fact_dir }}")
    assert directory["ansible.builtin.file"]["state"] == "directory"
    assert play["vars"]["kvmready_fact_dir"] == "/etc/ansible/facts.d"


def test_the_install_playbook_runs_as_written(tmp_path: Path):
    playbook = tmp_path / "kvmready-fact.yml"
    playbook.write_text(install_playbook())
    home = tmp_path / "ansible-home"
    env = dict(os.environ, ANSIBLE_HOME=str(home), ANSIBLE_LOCAL_TEMP=str(home / "tmp"), ANSIBLE_REMOTE_TEMP=str(home / "remote-tmp"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
               ANSIBLE_RETRY_FILES_ENABLED="False", ANSIBLE_STDOUT_CALLBACK="default", PYTHONPATH="")
    env.pop("ANSIBLE_CONFIG", None)
    venv = tmp_path / "opt-kvmready"
    fact_dir = tmp_path / "etc-ansible-facts.d"  # does not exist: the playbook must create it
    command = [
        str(ANSIBLE_PLAYBOOK), "-c", "local", "-i", "localhost,", str(playbook),
        "-e", f"ansible_python_interpreter={sys.executable}",
        "-e", f"kvmready_source={REPO}",
        "-e", f"kvmready_venv={venv}",
        "-e", f"kvmready_fact_dir={fact_dir}",
        "-e", f"kvmready_python={sys.executable}",
    ]
    if os.geteuid() != 0:  # everything goes into tmp_path: becoming root (sudo rights) is not needed there
        command += ["-e", "ansible_become=false"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "localhost: " in done.stdout

    fact = fact_dir / "kvmready.fact"
    assert fact.stat().st_mode & 0o777 == 0o755
    script = fact.read_text()
    assert str(venv) in script and "PYTHONPATH" not in script  # the installed kvmready, not this source tree
    ran = subprocess.run([str(fact)], capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert not list(Draft202012Validator(schema()).iter_errors(report))
    assert "error" not in report, report.get("error")
    assert list(venv.glob("kvmready-*.whl")), "the wheel was copied to the host"
