"""Snapshots without the real machine: capture a fixture tree with a fake live system, open it, compare.

`capture(root_host=..., live_system=FakeLiveSystem())` records exactly what
the checks read; `open_snapshot` must then give the same facts and the same
report as running on that tree directly with the same (fake) live system,
apart from where the report says it came from (`source`, `live`,
`captured_at`) and the `captured_at` evidence of the replayed live checks.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import tarfile
import types
from pathlib import Path
from typing import List

import pytest

from kvmready import orchestration
from kvmready.checks import REGISTRY
from kvmready.facts import Facts
from kvmready.host import DirectoryHost, MemoryHost, ReadError
from kvmready.model import Status, Target
from kvmready.orchestration import InputError, open_snapshot, unreadable
from kvmready.orchestration import capture_snapshot as capture
from kvmready.runner import build_report, run
from kvmready.snapshot import RecordingHost, is_private, read_archive
from tests import treebuilder
from tests.fakes import FakeKvmBackend, FakeLiveSystem
from tests.helpers import FIXED_NOW, FIXTURES, real_host_names

HOST_KEYS_THAT_DIFFER = {"source", "live", "captured_at"}
FACTS = ("cpu", "kernel", "arch", "modules", "devices", "memory", "os", "hypervisor", "firmware", "groups", "hostname", "kvm_module")
LIVE_IDS = sorted(row.spec.id for row in REGISTRY.values() if row.spec.live)


def _write(tmp_path: Path, archive: bytes, name: str = "host.tar.gz") -> str:
    path = tmp_path / name
    path.write_bytes(archive)
    return str(path)


def _report(facts: Facts, target: Target) -> dict:
    return build_report(facts, target, run(facts, target), now=FIXED_NOW).to_dict()


def _without_captured_at(check: dict) -> dict:
    data = dict(check)
    data["evidence"] = {k: v for k, v in check["evidence"].items() if k != "captured_at"}
    return data


def _consulted_modules(manifest: dict) -> List[str]:
    """Modules whose parameters the checks looked at during capture."""
    names = set()
    for key in ("listings", "list_errors", "files", "read_errors"):
        for path in manifest[key]:
            parts = path.split("/")
            if path.startswith("/sys/module/") and len(parts) > 4 and parts[4] == "parameters":
                names.add(parts[3])
    return sorted(names)


def assert_same_as_direct(direct: Facts, replayed: Facts, manifest: dict) -> None:
    """Same facts, same report (both targets), apart from source/live/captured_at."""
    for name in FACTS:
        assert getattr(replayed, name) == getattr(direct, name), name
    for module in _consulted_modules(manifest):
        assert replayed.module_params(module) == direct.module_params(module), module
    live_direct, live_replayed = direct.live, replayed.live
    assert live_replayed.captured_at == manifest["captured_at"]
    # The KVM probe's duration is a measurement of that run; everything else is the same observation.
    strip = lambda live: live._replace(captured_at=None, cpuid_signature=None, kvm=live.kvm._replace(duration_ns=0))  # noqa: E731
    assert strip(live_replayed) == strip(live_direct)
    for target in Target:
        a, b = _report(direct, target), _report(replayed, target)
        assert (b["verdict"], b["exit_code"], b["reasons"], b["summary"]) == (a["verdict"], a["exit_code"], a["reasons"], a["summary"])
        assert {k: v for k, v in b["host"].items() if k not in HOST_KEYS_THAT_DIFFER} == {
            k: v for k, v in a["host"].items() if k not in HOST_KEYS_THAT_DIFFER
        }
        assert (b["host"]["source"], b["host"]["live"], b["host"]["captured_at"]) == ("snapshot", False, manifest["captured_at"])
        assert a["host"]["live"] is True and "captured_at" not in a["host"]
        assert [c["id"] for c in b["checks"]] == [c["id"] for c in a["checks"]]
        for check_a, check_b in zip(a["checks"], b["checks"]):
            assert _without_captured_at(check_b) == check_a, check_a["id"]
            if check_a["id"] in LIVE_IDS and check_b["status"] != "skip":
                assert check_b["evidence"]["captured_at"] == manifest["captured_at"], check_a["id"]
            else:
                assert "captured_at" not in check_b["evidence"], check_a["id"]


# -- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("name", real_host_names())
def test_round_trip_of_a_real_host_tree(name: str, tmp_path) -> None:
    root = str(FIXTURES / name)
    vm_dir = str(tmp_path / "vms")
    archive, manifest = capture(vm_dir, live_system=FakeLiveSystem(), root_host=DirectoryHost(root))
    replayed, opened_manifest = open_snapshot(_write(tmp_path, archive))
    assert opened_manifest == manifest
    assert replayed.live_system is None and not replayed.is_live
    direct = Facts(DirectoryHost(root), live_system=FakeLiveSystem(), vm_dir=vm_dir)
    assert_same_as_direct(direct, replayed, manifest)
    assert len(archive) < 64 * 1024


LIVE_SCENARIOS = {
    "working": lambda: FakeLiveSystem(),
    "open-eacces": lambda: FakeLiveSystem(FakeKvmBackend(open_errno=errno.EACCES)),
    "api-11": lambda: FakeLiveSystem(FakeKvmBackend(api_version=11)),
    "create-vm-ebusy": lambda: FakeLiveSystem(FakeKvmBackend(create_vm_errno=errno.EBUSY)),
    "guest-error": lambda: FakeLiveSystem(FakeKvmBackend(guest_error=("KVM_CREATE_VCPU", errno.EINVAL))),
    "root-with-msr": lambda: FakeLiveSystem.root(msr={0x3A: 0x5, 0xC0010114: 0x0}),
    "disk-error": lambda: FakeLiveSystem(disk=errno.EIO),
    "in-a-vm": lambda: FakeLiveSystem(cpuid="KVMKVMKVM"),
}
TREES = {
    "intel-desktop": treebuilder.intel_desktop,
    "amd-desktop": treebuilder.amd_desktop,
    "pvm-host": treebuilder.pvm_host,
    "kvm-guest-no-nesting": lambda: treebuilder.kvm_guest(nested=False),
}


@pytest.mark.parametrize("live", sorted(LIVE_SCENARIOS))
@pytest.mark.parametrize("tree", sorted(TREES))
def test_round_trip_of_built_trees_and_live_outcomes(tree: str, live: str, tmp_path) -> None:
    """Trees with /dev nodes (a MemoryHost), and every kind of live outcome, replay identically."""
    host = TREES[tree]().host()
    vm_dir = str(tmp_path / "vms")
    archive, manifest = capture(vm_dir, live_system=LIVE_SCENARIOS[live](), root_host=host)
    replayed, _ = open_snapshot(_write(tmp_path, archive))
    direct = Facts(TREES[tree]().host(), live_system=LIVE_SCENARIOS[live](), vm_dir=vm_dir)
    assert_same_as_direct(direct, replayed, manifest)


def test_a_ready_desktop_stays_ready_through_a_snapshot(tmp_path) -> None:
    archive, manifest = capture(str(tmp_path / "vms"), live_system=FakeLiveSystem(groups=(1000, treebuilder.KVM_GID)), root_host=treebuilder.intel_desktop().host())
    replayed, _ = open_snapshot(_write(tmp_path, archive))
    report = _report(replayed, Target.KVM)
    statuses = {check["id"]: check["status"] for check in report["checks"]}
    assert statuses["kvm.guest"] == "pass" and statuses["kvm.device"] == "pass" and statuses["cpu.virtualization"] == "pass"
    assert report["exit_code"] == 0
    assert manifest["nodes"]["/dev/kvm"]["device"] == "10:232"


def test_replayed_live_checks_carry_captured_at_and_never_probe(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(orchestration, "utc_timestamp", lambda: "2031-02-03T04:05:06Z")
    fake = FakeLiveSystem()
    archive, manifest = capture(str(tmp_path / "vms"), live_system=fake, root_host=treebuilder.intel_desktop().host())
    calls_at_capture = list(fake.calls)
    assert ("credentials",) in calls_at_capture and fake.kvm.opened_paths == ["/dev/kvm"]
    replayed, _ = open_snapshot(_write(tmp_path, archive))
    results = {result.id: result for target in Target for result in run(replayed, target)}
    assert fake.calls == calls_at_capture and fake.kvm.opened_paths == ["/dev/kvm"], "analysing a snapshot probed again"
    for check_id in LIVE_IDS:
        result = results[check_id]
        assert result.status is not Status.SKIP, (check_id, result.summary)
        assert result.evidence["captured_at"] == "2031-02-03T04:05:06Z"
    assert manifest["live"]["credentials"]["username"] == "alice"
    assert manifest["captured_at"] == "2031-02-03T04:05:06Z"


def test_an_offline_tree_has_no_live_results_to_replay(tmp_path) -> None:
    """Without a live system the checks that need the machine are skipped, never filled in from anywhere."""
    facts = Facts(DirectoryHost(str(FIXTURES / "firecracker-pvm-host")))
    for target in Target:
        for result in run(facts, target):
            if result.id in LIVE_IDS:
                assert result.status is Status.SKIP and "captured_at" not in result.evidence


# -- what a recording may hold ----------------------------------------------------------

PRIVATE_FILES = {
    "/etc/shadow": b"root:$6$secret:19000:0:99999:7:::\n",
    "/etc/shadow-": b"root:$6$oldsecret:19000:0:99999:7:::\n",
    "/etc/gshadow": b"kvm:!::alice\n",
    "/etc/sudoers": b"alice ALL=(ALL) NOPASSWD: ALL\n",
    "/etc/ssh/ssh_host_ed25519_key": b"-----BEGIN OPENSSH PRIVATE KEY-----\n",
    "/home/alice/.ssh/id_rsa": b"-----BEGIN RSA PRIVATE KEY-----\n",
    "/home/alice/.bash_history": b"export AWS_SECRET_ACCESS_KEY=...\n",
    "/root/.bash_history": b"mysql -psecret\n",
    "/run/user/1000/keyring/control": b"secret\n",
    "/proc/1/environ": b"PASSWORD=secret\0",
    "/proc/self/environ": b"TOKEN=secret\0",
    "/proc/4242/task/4242/environ": b"TOKEN=secret\0",
}
PRIVATE_DIRS = ["/home", "/home/alice", "/root", "/run/user/1000", "/root/.ssh"]
# Directories whose listing is private only through a prefix ending in "/" (PRIVATE_PREFIXES "/etc/ssh/").
PREFIX_ONLY_DIRS = ["/etc/ssh", "/etc/ssh/"]


def test_is_private_covers_the_documented_paths() -> None:
    for path in list(PRIVATE_FILES) + PRIVATE_DIRS:
        assert is_private(path) or is_private(path + "/"), path
    for path in ("/proc/cpuinfo", "/etc/os-release", "/etc/group", "/sys/module/kvm/parameters/nested", "/proc/1/status"):
        assert not is_private(path), path




@pytest.mark.parametrize("path", PREFIX_ONLY_DIRS)
def test_is_private_keeps_directories_whose_prefix_ends_in_a_slash(path: str) -> None:
    assert is_private(path) or is_private(path + "/")


def test_recording_host_withholds_the_etc_ssh_listing() -> None:
    recording = RecordingHost(MemoryHost(PRIVATE_FILES))
    with pytest.raises(ReadError) as caught:
        recording.list_dir("/etc/ssh")
    assert "withheld" in caught.value.reason
    assert "/etc/ssh" not in recording.listings


def test_recording_host_never_reads_or_stores_private_files() -> None:
    inner = MemoryHost({**PRIVATE_FILES, "/proc/cpuinfo": b"processor : 0\n"})
    recording = RecordingHost(inner)
    for path in PRIVATE_FILES:
        with pytest.raises(ReadError) as caught:
            recording.read_bytes(path)
        assert "withheld" in caught.value.reason
        with pytest.raises(ReadError):
            recording.read_text(path)
    for path in PRIVATE_DIRS:
        with pytest.raises(ReadError) as caught:
            recording.list_dir(path)
        assert "withheld" in caught.value.reason
    assert recording.read_bytes("/proc/cpuinfo") == b"processor : 0\n"
    assert set(recording.files) == {"/proc/cpuinfo"}
    assert not any(is_private(path) for path in list(recording.read_errors) + list(recording.listings) + list(recording.list_errors))
    stored = b"".join(recording.files.values())
    assert b"secret" not in stored and b"PRIVATE KEY" not in stored


def test_a_capture_never_holds_private_data_even_when_the_tree_has_it(tmp_path) -> None:
    tree = treebuilder.intel_desktop().with_files({path: data for path, data in PRIVATE_FILES.items()})
    archive, manifest = capture(str(tmp_path / "vms"), live_system=FakeLiveSystem(), root_host=tree.host())
    raw = gzip.decompress(archive)
    for secret in (b"$6$secret", b"PRIVATE KEY", b"PASSWORD=secret", b"TOKEN=secret", b"mysql -psecret"):
        assert secret not in raw
    paths = [p for key in ("files", "read_errors", "listings", "list_errors", "nodes", "node_errors") for p in manifest[key]]
    assert not any(is_private(path) for path in paths)


def test_recording_host_does_not_store_nodes_of_private_paths() -> None:
    recording = RecordingHost(MemoryHost(PRIVATE_FILES))
    for path in PRIVATE_FILES:
        try:
            recording.node(path)
        except ReadError:
            pass
    assert not any(is_private(path) for path in list(recording.nodes) + list(recording.node_errors))


@pytest.mark.parametrize("alias", ["/etc//shadow", "/etc/./shadow", "/etc/../etc/shadow", "//home/alice/.ssh/id_rsa", "/proc/1/environ/."])
def test_recording_host_withholds_non_canonical_aliases_of_private_paths(alias: str, tmp_path) -> None:
    """`/etc//shadow` is /etc/shadow to DirectoryHost, so it must be private to RecordingHost too."""
    root = tmp_path / "tree"
    for path, data in PRIVATE_FILES.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    recording = RecordingHost(DirectoryHost(str(root)))
    try:
        recording.read_bytes(alias)
    except ReadError:
        pass
    stored = b"".join(recording.files.values())
    assert b"secret" not in stored and b"PRIVATE KEY" not in stored


# -- unreadable paths, and paths outside the recording ----------------------------------


def test_manifest_lists_unreadable_paths_with_reasons(tmp_path) -> None:
    errors = {
        "/proc/cpuinfo": "Permission denied (EACCES)",
        "/proc/meminfo": "Input/output error (EIO)",
        "/sys/module": "Permission denied (EACCES)",
    }
    tree = treebuilder.intel_desktop()
    archive, manifest = capture(str(tmp_path / "vms"), live_system=FakeLiveSystem(), root_host=tree.host(errors=errors))
    assert manifest["read_errors"]["/proc/cpuinfo"] == "Permission denied (EACCES)"
    assert manifest["read_errors"]["/proc/meminfo"] == "Input/output error (EIO)"
    assert manifest["list_errors"]["/sys/module"] == "Permission denied (EACCES)"
    merged = unreadable(manifest)
    for path, reason in errors.items():
        assert merged[path] == reason
    assert "/proc/cpuinfo" not in manifest["files"]
    replayed, _ = open_snapshot(_write(tmp_path, archive))
    with pytest.raises(ReadError) as caught:
        replayed.host.read_bytes("/proc/cpuinfo")
    assert caught.value.reason == "Permission denied (EACCES)"
    result = {r.id: r for r in run(replayed, Target.WORKSTATION)}["cpu.virtualization"]
    assert result.status is Status.ERROR and "Permission denied" in json.dumps(result.to_dict())
    direct = Facts(tree.host(errors=errors), live_system=FakeLiveSystem(), vm_dir=str(tmp_path / "vms"))
    assert_same_as_direct(direct, replayed, manifest)


def test_manifest_records_odd_files_of_a_directory_tree(tmp_path) -> None:
    root = treebuilder.intel_desktop().write(tmp_path / "tree")
    (root / "proc" / "meminfo").unlink()
    (root / "proc" / "meminfo").mkdir()  # a directory where a file should be
    (root / "etc" / "os-release").unlink()
    os.symlink("../nowhere/os-release", root / "etc" / "os-release")  # dangling
    (root / "proc" / "cmdline").unlink()
    os.symlink("cmdline", root / "proc" / "cmdline")  # a loop
    os.mkfifo(root / "proc" / "modules.fifo")
    archive, manifest = capture(str(tmp_path / "vms"), live_system=FakeLiveSystem(), root_host=DirectoryHost(str(root)))
    assert manifest["read_errors"]["/proc/meminfo"] == "not a regular file (dir)"
    assert "ENOENT" in manifest["read_errors"]["/etc/os-release"]
    assert "ELOOP" in manifest["read_errors"]["/proc/cmdline"]
    replayed, _ = open_snapshot(_write(tmp_path, archive))
    assert_same_as_direct(Facts(DirectoryHost(str(root)), live_system=FakeLiveSystem(), vm_dir=str(tmp_path / "vms")), replayed, manifest)


def test_snapshot_host_answers_not_captured_outside_the_recording(tmp_path) -> None:
    archive, manifest = capture(str(tmp_path / "vms"), live_system=FakeLiveSystem(), root_host=treebuilder.intel_desktop().host())
    replayed, _ = open_snapshot(_write(tmp_path, archive))
    host = replayed.host
    assert not host.live
    for path in ("/etc/passwd", "/etc/shadow", "/proc/1/environ", "/home/alice/.ssh/id_rsa", "/proc/kallsyms"):
        assert path not in manifest["files"]
        with pytest.raises(ReadError) as caught:
            host.read_bytes(path)
        assert caught.value.reason == "not captured in the snapshot"
    for path in ("/home", "/var/lib", "/proc/1"):
        with pytest.raises(ReadError) as caught:
            host.list_dir(path)
        assert caught.value.reason == "not captured in the snapshot"
    with pytest.raises(ReadError) as caught:
        host.node("/dev/sda")
    assert caught.value.reason == "not captured in the snapshot"
    assert host.exists("/dev/sda") is False
    # What was recorded is answered exactly.
    for path, size in manifest["files"].items():
        assert len(host.read_bytes(path)) == size
    for path, names in manifest["listings"].items():
        assert host.list_dir(path) == names
    for path, reason in manifest["read_errors"].items():
        with pytest.raises(ReadError) as caught:
            host.read_bytes(path)
        assert caught.value.reason == reason
    big = next(iter(manifest["files"]))
    if manifest["files"][big] > 1:
        with pytest.raises(ReadError) as caught:
            host.read_bytes(big, limit=1)
        assert "limit" in caught.value.reason


# -- the archive itself --------------------------------------------------------------------


def _fixed_clock(monkeypatch, wall: float = 1_800_000_000.0) -> None:
    """Same captured_at, the same KVM timings and the same wall clock: the same observation."""
    monkeypatch.setattr(orchestration, "utc_timestamp", lambda: "2030-01-02T03:04:05Z")
    import kvmready.facts.live as live_module

    monkeypatch.setattr(live_module, "time", types.SimpleNamespace(perf_counter_ns=lambda: 1_000_000))
    import time

    monkeypatch.setattr(time, "time", lambda: wall)


def test_archive_is_deterministic(tmp_path, monkeypatch) -> None:
    _fixed_clock(monkeypatch)
    first, _ = capture(str(tmp_path / "vms"), live_system=FakeLiveSystem(), root_host=DirectoryHost(str(FIXTURES / "sosreport-nested-kvm-guest")))
    second, _ = capture(str(tmp_path / "vms"), live_system=FakeLiveSystem(), root_host=DirectoryHost(str(FIXTURES / "sosreport-nested-kvm-guest")))
    assert first == second


def test_archive_does_not_depend_on_the_wall_clock(tmp_path, monkeypatch) -> None:
    _fixed_clock(monkeypatch, wall=1_800_000_000.0)
    first, _ = capture(str(tmp_path / "vms"), live_system=FakeLiveSystem(), root_host=DirectoryHost(str(FIXTURES / "virtwhat-hyperv")))
    _fixed_clock(monkeypatch, wall=1_800_000_042.0)
    second, _ = capture(str(tmp_path / "vms"), live_system=FakeLiveSystem(), root_host=DirectoryHost(str(FIXTURES / "virtwhat-hyperv")))
    assert first == second


def test_archive_layout(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(orchestration, "utc_timestamp", lambda: "2030-01-02T03:04:05Z")
    archive, manifest = capture(str(tmp_path / "vms"), live_system=FakeLiveSystem(), root_host=treebuilder.pvm_host().host())
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names[0] == "manifest.json"
        assert names[1:] == sorted(names[1:]) == [f"root{path}" for path in sorted(manifest["files"])]
        for member in members:
            assert member.isreg() and member.mode == 0o644 and member.uid == 0 and member.gid == 0
            assert member.mtime == 1893553445  # captured_at
        stored = json.loads(tar.extractfile("manifest.json").read())
    assert stored == manifest
    assert manifest["format"] == "kvmready-snapshot" and manifest["format_version"] == 1
    assert manifest["hostname"] == "vm" and manifest["vm_dir"] == str(tmp_path / "vms")
    parsed, files = read_archive(_write(tmp_path, archive))
    assert parsed == manifest and {p: len(d) for p, d in files.items()} == manifest["files"]


def test_open_snapshot_reports_snapshot_errors_not_tracebacks(tmp_path) -> None:
    with pytest.raises(InputError):
        open_snapshot(str(tmp_path / "missing.tar.gz"))
    (tmp_path / "text.tar.gz").write_text("hello\n")
    with pytest.raises(InputError) as caught:
        open_snapshot(str(tmp_path / "text.tar.gz"))
    assert str(tmp_path / "text.tar.gz") in str(caught.value)
