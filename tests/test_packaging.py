"""Packaging: honest metadata, an sdist whose tests run, a wheel with what it promises, dependencies that do work.

The sdist and the wheel are built once per session with `python -m build`
(in its isolated environment, so with the setuptools the build-system table
asks for: from PyPI or pip's cache).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, List, Set

import pytest
from helpers import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.9 and 3.10: the same parser, from PyPI (the test extra)
    import tomli as tomllib

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
SRC = REPO / "src" / "kvmready"

# The module each runtime dependency is imported as, and where it must be used.
IMPORT_NAMES = {"typer": "typer", "rich": "rich", "packaging": "packaging"}

def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()


def imported_modules() -> Set[str]:
    """Top-level names of every module imported anywhere in src/kvmready (lazy imports included)."""
    names: Set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_license_and_build_system_agree():
    """`license = "MIT"` (an SPDX string, PEP 639) and license-files need setuptools 77 or later."""
    project = PYPROJECT["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    (setuptools,) = [r for r in PYPROJECT["build-system"]["requires"] if requirement_name(r) == "setuptools"]
    minimum = re.search(r">=\s*(\d+)", setuptools)
    assert minimum and int(minimum.group(1)) >= 77, setuptools
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert not any(c.startswith("License ::") for c in project["classifiers"]), "PEP 639: no licence classifiers beside `license`"


def test_package_data_exists():
    for pattern in PYPROJECT["tool"]["setuptools"]["package-data"]["kvmready"]:
        assert list(SRC.glob(pattern)), f"package-data names {pattern}, which matches nothing"


def test_every_runtime_dependency_does_work():
    """Each declared dependency is imported by kvmready (or is on its way, with the reason above)."""
    declared = {requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert declared == set(IMPORT_NAMES), "a new dependency: add its import name here and its reason to the README"
    imported = imported_modules()
    for name in declared:
        assert IMPORT_NAMES[name] in imported, f"{name} is a runtime dependency nothing imports"
    for dropped in ("psutil", "distro"):
        assert dropped not in declared and dropped not in imported


@pytest.mark.skipif(sys.version_info < (3, 10), reason="sys.stdlib_module_names is new in Python 3.10")
def test_every_third_party_import_is_declared():
    third_party = imported_modules() - set(sys.stdlib_module_names) - {"kvmready", "__future__"}
    assert third_party <= set(IMPORT_NAMES.values()), f"imported but not declared: {sorted(third_party - set(IMPORT_NAMES.values()))}"


def test_distro_is_the_test_oracle_only():
    test_extra = {requirement_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["test"]}
    assert {"distro", "mypy"} <= test_extra
    (mypy,) = [r for r in PYPROJECT["project"]["optional-dependencies"]["test"] if requirement_name(r) == "mypy"]
    assert "<2" in mypy, "mypy 2 cannot check for Python 3.9"


def test_typer_cap_and_its_reason():
    (typer,) = [r for r in PYPROJECT["project"]["dependencies"] if requirement_name(r) == "typer"]
    assert "<0.29" in typer
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert "pydantic" in text and "fixed start-up cost" in text


# -- the built distributions -------------------------------------------------------------------------

_BUILT: Dict[str, Path] = {}


def built(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if kind not in _BUILT:
        out = tmp_path_factory.mktemp(kind)
        done = subprocess.run([sys.executable, "-m", "build", f"--{kind}", "--outdir", str(out), str(REPO)],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        (_BUILT[kind],) = out.glob("kvmready-*.tar.gz" if kind == "sdist" else "kvmready-*.whl")
    return _BUILT[kind]


def sdist_names(path: Path) -> List[str]:
    with tarfile.open(path) as archive:
        return [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]


def test_sdist_carries_what_its_tests_need(tmp_path_factory: pytest.TempPathFactory):
    names = set(sdist_names(built("sdist", tmp_path_factory)))
    tracked = subprocess.run(["git", "ls-files", "tests", "docs"], capture_output=True, text=True, cwd=REPO)
    wanted = set(tracked.stdout.split()) if tracked.returncode == 0 and tracked.stdout.strip() else set()
    wanted |= {"LICENSE", "README.md", "CHANGELOG.md", "ARCHITECTURE.md", "pyproject.toml", "src/kvmready/py.typed",
               "tests/conftest.py", "tests/helpers.py", "tests/data/junit-10.xsd", "docs/integrations.md",
               "src/kvmready/schemas/report-v1.json"}
    assert not wanted - names, f"missing from the sdist: {sorted(wanted - names)[:20]}"
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_sdist_tests_collect(tmp_path_factory: pytest.TempPathFactory):
    """Unpacked, the sdist's own test suite collects against the sdist's own package."""
    where = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(built("sdist", tmp_path_factory)) as archive:
        if hasattr(tarfile, "data_filter"):  # Python 3.12, and 3.9.17+ / 3.10.12+ / 3.11.4+ backports
            archive.extractall(where, filter="data")
        else:
            archive.extractall(where)
    (root,) = where.iterdir()
    env = {"PYTHONPATH": str(root / "src"), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(where)}
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, timeout=600, cwd=root, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    count = re.search(r"(\d+) tests? collected", done.stdout)
    assert count and int(count.group(1)) > 1000, done.stdout[-500:]
    probe = subprocess.run([sys.executable, "-c", "import kvmready; print(kvmready.__file__)"], capture_output=True, text=True,
                           cwd=root, env=env)
    assert probe.stdout.startswith(str(root / "src")), probe.stdout


def test_wheel_contents(tmp_path_factory: pytest.TempPathFactory):
    with zipfile.ZipFile(built("wheel", tmp_path_factory)) as wheel:
        names = set(wheel.namelist())
        (metadata,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        text = wheel.read(metadata).decode()
    assert {"kvmready/py.typed", "kvmready/schemas/report-v1.json", "kvmready/schemas/fleet-v1.json"} <= names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "License-Expression: MIT" in text and "Requires-Python: >=3.9" in text
    requires = {requirement_name(line.split(":", 1)[1].strip()) for line in text.splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line}
    assert requires == set(IMPORT_NAMES)
    assert not [name for name in names if name.startswith("tests/")]
