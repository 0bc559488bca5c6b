"""Corrupt every file of every fixture tree, one at a time, in every way: never a traceback.

For each tree under tests/fixtures/hosts (its `_capture/` notes left out) the
tree is copied once into tmp_path; then, for every regular file and every
mutation, that one file is damaged, the facts are built from the copy, every
check runs for both targets, the reports are rendered (json, jsonl, table) and
validated, and the file is restored.  Mutations:

    truncate-half   the first half of the bytes
    empty           zero bytes
    binary-fill     random bytes (NULs and invalid UTF-8 included), same length
    unreadable      EACCES (as root a mode of 000 does not stop reads, so the
                    tree goes into a MemoryHost that answers EACCES for it)
    directory       an empty directory in its place
    dangling-link   a symlink to a missing file
    looping-link    a -> a.loop -> a

Costs are kept down honestly: one copy per tree, everything in-process, facts
shared by both targets (facts do not depend on the target), and rendering is a
pure function of the report, so a report already rendered and validated (same
JSON text) is not rendered twice.  Every file and every mutation still runs.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Dict, List, Set, Tuple

import jsonschema
import pytest

from kvmready.facts import Facts
from kvmready.host import DirectoryHost, Host, MemoryHost
from kvmready.model import Status, Target
from kvmready.render import OutputFormat
from kvmready.runner import build_report, run
from kvmready.schema import schema
from tests.helpers import FIXED_NOW, FIXTURES, real_host_names

MUTATIONS = ("truncate-half", "empty", "binary-fill", "unreadable", "directory", "dangling-link", "looping-link")
UNREADABLE = "Permission denied (EACCES)"
# 60 s was the budget for the 1,834 mutations of the first ten trees: per mutation, so that more real
# fixtures (issue 13 added 33) raise the budget with the work rather than break it.
SWEEP_BUDGET_SECONDS_PER_RUN = 60.0 / 1834
IGNORED = "_capture"

_VALIDATOR = jsonschema.Draft202012Validator(schema())
_RENDERED: Set[str] = set()  # JSON texts already rendered as a table and validated

# What the sweep saw, for the non-vacuity test at the end: fixture -> facts.
SEEN: Dict[str, dict] = {}


def regular_files(root: Path) -> List[str]:
    """Every regular file of the tree as a host path (/proc/cpuinfo), `_capture/` left out."""
    found = []
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not (Path(current) == root and d == IGNORED))
        for name in sorted(files):
            full = Path(current) / name
            if full.is_file() and not full.is_symlink():
                found.append("/" + full.relative_to(root).as_posix())
    return found


def _random_fill(length: int, seed: str) -> bytes:
    length = max(length, 16)
    rng = random.Random(seed)
    data = bytearray(rng.getrandbits(8) for _ in range(length))
    data[0:4] = b"\x00\xff\xfe\xc3"  # a NUL and bytes that are never valid UTF-8 here
    return bytes(data)


class Tree:
    """A private copy of one fixture tree, mutated one file at a time and always restored."""

    def __init__(self, source: Path, copy: Path) -> None:
        shutil.copytree(source, copy, symlinks=True, ignore=lambda d, names: [IGNORED] if Path(d) == source else [])
        self.root = copy
        self.files = regular_files(copy)
        self.contents = {path: (copy / path.lstrip("/")).read_bytes() for path in self.files}

    def disk(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def host_for(self, path: str, mutation: str) -> Host:
        """Apply the mutation and return the host that sees it."""
        target = self.disk(path)
        original = self.contents[path]
        if mutation == "unreadable":
            if os.geteuid() != 0:
                target.chmod(0)
                return DirectoryHost(str(self.root))
            files = {p: data for p, data in self.contents.items() if p != path}
            return MemoryHost(files, errors={path: UNREADABLE}, origin=f"sweep {path}")
        target.unlink()
        if mutation == "truncate-half":
            target.write_bytes(original[: len(original) // 2])
        elif mutation == "empty":
            target.write_bytes(b"")
        elif mutation == "binary-fill":
            target.write_bytes(_random_fill(len(original), f"{self.root.name}{path}"))
        elif mutation == "directory":
            target.mkdir()
        elif mutation == "dangling-link":
            os.symlink(f"{target.name}.missing/nowhere", target)
        elif mutation == "looping-link":
            partner = target.with_name(target.name + ".loop")
            os.symlink(partner.name, target)
            os.symlink(target.name, partner)
        else:
            raise AssertionError(mutation)
        return DirectoryHost(str(self.root))

    def restore(self, path: str) -> None:
        target = self.disk(path)
        partner = target.with_name(target.name + ".loop")
        if partner.is_symlink():
            partner.unlink()
        if target.is_symlink() or target.is_file():
            target.chmod(0o644) if not target.is_symlink() else None
            target.unlink()
        elif target.is_dir():
            target.rmdir()
        target.write_bytes(self.contents[path])
        target.chmod(0o644)


def evaluate(host: Host) -> Dict[str, dict]:
    """Every check, both targets, rendered and validated; returns target -> what was observed."""
    facts = Facts(host)  # facts do not depend on the target: both share them
    observed = {}
    for target in Target:
        results = run(facts, target)
        report = build_report(facts, target, results, now=FIXED_NOW)
        problems = []
        for result in results:
            if not isinstance(result.status, Status):
                problems.append(f"{result.id}: status {result.status!r}")
            if result.status is Status.ERROR and not result.summary.strip():
                problems.append(f"{result.id}: error without a message")
        if report.exit_code not in (0, 1, 3):
            problems.append(f"exit code {report.exit_code}")
        text = OutputFormat.JSON.renderer().render(report)
        if text not in _RENDERED:
            _VALIDATOR.validate(json.loads(text))
            for line in OutputFormat.JSONL.renderer().render(report).splitlines():
                json.loads(line)
            table = OutputFormat.TABLE.renderer(width=100, color=False).render(report)
            assert table.strip(), "empty table"
            text.encode("utf-8")
            table.encode("utf-8")
            _RENDERED.add(text)
        observed[target.value] = {
            "exit": report.exit_code,
            "statuses": {r.id: r.status.value for r in results},
            "crashes": {r.id: r.summary for r in results if "exception" in r.evidence},
            "problems": problems,
            "json": text,
        }
    return observed


@pytest.mark.parametrize("name", real_host_names())
def test_corruption_sweep(name: str, tmp_path) -> None:
    started = time.perf_counter()
    tree = Tree(FIXTURES / name, tmp_path / "tree")
    assert tree.files, f"{name} has no files"
    baseline = evaluate(DirectoryHost(str(tree.root)))
    failures: List[str] = []
    errors_seen: Dict[Tuple[str, str], Set[str]] = {}
    crashes: Dict[str, str] = {}
    changed = 0
    runs = 0
    for path in tree.files:
        for mutation in MUTATIONS:
            runs += 1
            try:
                observed = evaluate(tree.host_for(path, mutation))
            except Exception as error:  # anything escaping is the finding
                failures.append(f"{path} [{mutation}]: {type(error).__name__}: {error}")
                continue
            finally:
                tree.restore(path)
            for target, seen in observed.items():
                failures.extend(f"{path} [{mutation}] {target}: {problem}" for problem in seen["problems"])
                for check_id, status in seen["statuses"].items():
                    if status == "error":
                        errors_seen.setdefault((path, mutation), set()).add(f"{target}:{check_id}:{seen['exit']}")
                for check_id, summary in seen["crashes"].items():
                    crashes.setdefault(f"{path} [{mutation}] {check_id}", summary)
            if any(observed[t]["json"] != baseline[t]["json"] for t in observed):
                changed += 1
    # The tree is back as it was.
    assert regular_files(tree.root) == tree.files
    assert {p: tree.disk(p).read_bytes() for p in tree.files} == tree.contents
    elapsed = time.perf_counter() - started
    SEEN[name] = {
        "files": len(tree.files), "runs": runs, "changed": changed, "errors": errors_seen,
        "crashes": crashes, "seconds": elapsed,
    }
    assert not failures, f"{len(failures)} failures, first: " + "\n".join(failures[:20])
    assert changed > 0, f"no mutation of {name} changed the report: the sweep is not looking"


def test_sweep_found_no_crashing_probe() -> None:
    """A check whose code raised (runner turned it into `error: the probe failed: ...`) is a parser bug."""
    if not SEEN:
        pytest.skip("the sweep did not run in this session")
    crashes = {f"{name}: {where}": summary for name, seen in SEEN.items() for where, summary in seen["crashes"].items()}
    assert crashes == {}, "\n".join(f"{where}: {summary}" for where, summary in sorted(crashes.items())[:30])


def test_sweep_is_not_vacuous_and_fits_its_budget() -> None:
    names = real_host_names()
    if set(SEEN) != set(names):
        pytest.skip("run the whole module to sweep every fixture tree")
    # Corrupting /proc/cpuinfo must turn cpu.virtualization into `error`, and somewhere that decides the verdict.
    cpu_errors = [
        (name, mutation, entry)
        for name, seen in SEEN.items()
        for (path, mutation), entries in seen["errors"].items()
        if path == "/proc/cpuinfo"
        for entry in entries
        if entry.startswith("workstation:cpu.virtualization:")
    ]
    assert cpu_errors, "no cpuinfo mutation gave cpu.virtualization an error"
    assert any(entry.endswith(":3") for _, _, entry in cpu_errors), "no cpuinfo mutation made workstation indeterminate (exit 3)"
    mutations_with_cpu_error = {mutation for _, mutation, _ in cpu_errors}
    assert {"empty", "unreadable", "directory", "dangling-link", "looping-link"} <= mutations_with_cpu_error
    every_error = {entry.split(":")[1] for seen in SEEN.values() for entries in seen["errors"].values() for entry in entries}
    assert {"cpu.virtualization", "kernel.version", "resources.memory"} <= every_error
    total = sum(seen["seconds"] for seen in SEEN.values())
    runs = sum(seen["runs"] for seen in SEEN.values())
    files = sum(seen["files"] for seen in SEEN.values())
    assert runs == files * len(MUTATIONS)
    print(f"\ncorruption sweep: {len(SEEN)} trees, {files} files, {runs} mutations in {total:.1f}s")
    assert total < SWEEP_BUDGET_SECONDS_PER_RUN * runs, f"the sweep took {total:.1f}s for {runs} mutations"


def test_one_cpuinfo_corruption_is_an_explained_error(tmp_path) -> None:
    """The same property in isolation, so it holds even when only this test runs."""
    tree = Tree(FIXTURES / "lscpu-x86_64-epyc_7451", tmp_path / "tree")
    for mutation in ("empty", "unreadable", "directory", "looping-link"):
        try:
            observed = evaluate(tree.host_for("/proc/cpuinfo", mutation))
        finally:
            tree.restore("/proc/cpuinfo")
        workstation = json.loads(observed["workstation"]["json"])
        check = next(c for c in workstation["checks"] if c["id"] == "cpu.virtualization")
        assert check["status"] == "error" and check["summary"], (mutation, check)
        assert workstation["exit_code"] == 3 and workstation["verdict"] == "indeterminate", mutation


def test_non_utf8_file_names_in_a_root_tree(tmp_path) -> None:
    """Names that are not UTF-8 (os.listdir hands them over with surrogates) are shown, never written as bad UTF-8."""
    from tests.helpers import run_cli

    tree = Tree(FIXTURES / "sosreport-nested-kvm-guest", tmp_path / "tree")
    root = os.fsencode(str(tree.root))
    os.makedirs(root + b"/sys/module/kvm\xff/parameters")
    os.makedirs(root + b"/dev/dri")
    open(root + b"/dev/dri/renderD128\xfe", "wb").close()
    os.makedirs(root + b"/sys/class/drm/renderD128\xfe/device")
    with open(root + b"/sys/class/drm/renderD128\xfe/device/uevent", "wb") as handle:
        handle.write(b"DRIVER=i9\xff15\n")
    for output_format in ("json", "table", "jsonl"):
        result = run_cli(["check", "--root", str(tree.root), "--format", output_format])
        assert result.exit_code in (0, 1, 3), result.stderr
        text = result.stdout_bytes.decode("utf-8")  # strict
        if output_format == "json":
            report = json.loads(text)
            _VALIDATOR.validate(report)
            assert "\ufffd" in text
