"""On this machine: snapshot, then check the snapshot; the verdict and every check match a live check.

Runs the real CLI in subprocesses (`python -m kvmready`, src on PYTHONPATH),
so it reads the real /proc, /sys and /dev and runs the real KVM probe; it
skips cleanly where /dev/kvm is absent.  What may differ between two runs is
what was measured at different moments: the guest's run time, free disk
space, available memory, and where the report came from (`source`, `live`,
`captured_at`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Sequence

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not os.path.exists("/dev/kvm"), reason="this machine has no /dev/kvm"),
]

SRC = Path(__file__).resolve().parents[2] / "src"
TARGETS = ("workstation", "kvm")
# Measurements of a moment, not facts of the host.
VOLATILE_EVIDENCE = {"captured_at", "duration_ns", "duration_ms", "free_bytes", "available_bytes"}
VOLATILE_SUMMARY = {"kvm.guest", "resources.disk"}  # "halted in 0.53 ms", "79.5 GiB free"
HOST_KEYS_THAT_DIFFER = {"source", "live", "captured_at"}
SIZE_LIMIT = 64 * 1024


def kvmready(args: Sequence[str], cwd: Path, tmpdir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
        PYTHONDONTWRITEBYTECODE="1",
        TMPDIR=str(tmpdir),
        NO_COLOR="1",
    )
    return subprocess.run([sys.executable, "-m", "kvmready", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _strip(evidence: dict) -> dict:
    return {key: (_strip(value) if isinstance(value, dict) else value) for key, value in evidence.items() if key not in VOLATILE_EVIDENCE}


@pytest.fixture(scope="module")
def captured(tmp_path_factory) -> Dict[str, object]:
    base = tmp_path_factory.mktemp("roundtrip")
    cwd, tmpdir = base / "cwd", base / "tmp"
    cwd.mkdir()
    tmpdir.mkdir()
    archive = cwd / "x.tar.gz"
    snap = kvmready(["snapshot", "-o", str(archive)], cwd, tmpdir)
    reports: Dict[str, Dict[str, dict]] = {}
    codes: Dict[str, Dict[str, int]] = {}
    for target in TARGETS:
        replayed = kvmready(["check", "--snapshot", str(archive), "--target", target, "--format", "json"], cwd, tmpdir)
        live = kvmready(["check", "--target", target, "--format", "json"], cwd, tmpdir)
        for label, run in (("snapshot", replayed), ("live", live)):
            assert run.returncode in (0, 1, 3), (label, target, run.returncode, run.stderr)
            assert run.stderr == "", (label, target, run.stderr)
            reports.setdefault(label, {})[target] = json.loads(run.stdout)
            codes.setdefault(label, {})[target] = run.returncode
    return {"snapshot": snap, "archive": archive, "cwd": cwd, "tmp": tmpdir, "reports": reports, "codes": codes}


def test_snapshot_writes_only_the_archive_and_one_line(captured) -> None:
    snap = captured["snapshot"]
    assert snap.returncode == 0, snap.stderr
    assert snap.stdout == ""
    lines = snap.stderr.splitlines()
    assert len(lines) == 1 and snap.stderr.endswith("\n"), snap.stderr
    assert lines[0].startswith("kvmready: snapshot of ") and str(captured["archive"]) in lines[0]
    assert sorted(p.name for p in Path(captured["cwd"]).iterdir()) == ["x.tar.gz"]
    assert list(Path(captured["tmp"]).iterdir()) == []


def test_snapshot_is_small(captured) -> None:
    size = Path(captured["archive"]).stat().st_size
    assert 0 < size < SIZE_LIMIT, f"{size} bytes"
    assert f"({size} bytes," in captured["snapshot"].stderr


@pytest.mark.parametrize("target", TARGETS)
def test_same_verdict_and_statuses(captured, target: str) -> None:
    replayed = captured["reports"]["snapshot"][target]
    live = captured["reports"]["live"][target]
    assert captured["codes"]["snapshot"][target] == captured["codes"]["live"][target]
    for key in ("verdict", "exit_code", "reasons", "summary", "target", "schema_version"):
        assert replayed[key] == live[key], key
    assert [c["id"] for c in replayed["checks"]] == [c["id"] for c in live["checks"]]
    for a, b in zip(replayed["checks"], live["checks"]):
        assert (a["id"], a["status"], a["severity"]) == (b["id"], b["status"], b["severity"])
        assert _strip(a["evidence"]) == _strip(b["evidence"]), a["id"]
        if a["id"] not in VOLATILE_SUMMARY:
            assert a["summary"] == b["summary"], a["id"]
        assert (a["detail"], a["remediation"]) == (b["detail"], b["remediation"]), a["id"]


@pytest.mark.parametrize("target", TARGETS)
def test_same_host_facts(captured, target: str) -> None:
    replayed = captured["reports"]["snapshot"][target]["host"]
    live = captured["reports"]["live"][target]["host"]
    assert {k: v for k, v in replayed.items() if k not in HOST_KEYS_THAT_DIFFER} == {
        k: v for k, v in live.items() if k not in HOST_KEYS_THAT_DIFFER
    }
    assert (replayed["source"], replayed["live"]) == ("snapshot", False)
    assert (live["source"], live["live"]) == ("live", True)
    assert replayed["captured_at"].endswith("Z")


@pytest.mark.parametrize("target", TARGETS)
def test_replayed_live_checks_say_when_they_were_captured(captured, target: str) -> None:
    replayed = captured["reports"]["snapshot"][target]
    when = replayed["host"]["captured_at"]
    live_ids = {"kvm.access", "kvm.api", "kvm.create-vm", "kvm.guest", "kvm.capabilities", "resources.disk"}
    for check in replayed["checks"]:
        if check["id"] in live_ids and check["status"] != "skip":
            assert check["evidence"]["captured_at"] == when, check["id"]
    guest = next(c for c in replayed["checks"] if c["id"] == "kvm.guest")
    assert guest["status"] != "skip", "the snapshot lost the guest run"


def test_snapshot_holds_no_private_data(captured) -> None:
    import tarfile

    from kvmready.snapshot import is_private

    with tarfile.open(captured["archive"], "r:gz") as archive:
        names = archive.getnames()
        manifest = json.loads(archive.extractfile("manifest.json").read())
    assert all(name == "manifest.json" or name.startswith("root/") for name in names)
    assert not any(is_private(name[len("root"):]) for name in names if name.startswith("root/"))
    for key in ("files", "read_errors", "listings", "list_errors", "nodes", "node_errors"):
        assert not any(is_private(path) for path in manifest[key]), key
