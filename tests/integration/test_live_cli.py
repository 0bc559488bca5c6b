"""`kvmready check` on this very machine: the live KVM checks end to end.

Run as root (sessions and CI do), the CLI opens /dev/kvm, creates a VM and
runs the smoke guest.  Then the same check runs in a forked child that drops
to nobody/nogroup (the interpreter lives in root's 0700 home, so a separate
unprivileged process could not even start it; see reference/kvm.md), where
/dev/kvm must be refused with the fix spelt out.

Skipped as a whole where /dev/kvm does not exist.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import NOBODY, run_as_nobody

pytestmark = pytest.mark.integration

KVM = "/dev/kvm"
SRC = Path(__file__).resolve().parents[2] / "src"
LIVE_CHECKS = ("kvm.access", "kvm.api", "kvm.capabilities", "kvm.create-vm", "kvm.guest")

if not os.path.exists(KVM):
    pytest.skip(f"{KVM} does not exist on this machine", allow_module_level=True)


def _usable() -> str:
    try:
        os.close(os.open(KVM, os.O_RDWR | os.O_CLOEXEC))
    except OSError as error:
        return f"{KVM} does not open for this user: {error}"
    return ""


def _cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return {flag for line in cpuinfo if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    except OSError:
        return set()


def run_cli(*args: str):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    done = subprocess.run(
        [sys.executable, "-m", "kvmready", "check", "--format", "json", *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=str(SRC.parent),
    )
    assert done.stdout.endswith("}\n"), done.stderr
    return done.returncode, json.loads(done.stdout)


def check_of(report: dict, check_id: str) -> dict:
    return next(check for check in report["checks"] if check["id"] == check_id)


@pytest.fixture(scope="module")
def kvm_report():
    reason = _usable()
    if reason:
        pytest.skip(reason)
    return run_cli("--target", "kvm")


# Paravirtual KVM (the development machine and CI): VMs are created, but an unmodified guest only
# runs by emulation, and stops at the first instruction the emulator lacks.
PARAVIRTUAL = os.path.isdir("/sys/module/kvm_pvm") and not _cpu_flags() & {"vmx", "svm"}


def test_live_kvm_checks_pass_up_to_the_guest_on_this_machine(kvm_report):
    code, report = kvm_report
    for check_id in LIVE_CHECKS:
        check = check_of(report, check_id)
        expected = "fail" if PARAVIRTUAL and check_id == "kvm.guest" else "pass"
        assert check["status"] == expected, (check_id, check["summary"])
    assert report["host"]["live"] is True and report["host"]["source"] == "live"
    assert report["host"]["kvm"]["api_version"] == 12
    assert check_of(report, "kvm.api")["evidence"]["api_version"] == 12


def test_live_guest_walked_its_stages_as_far_as_this_kvm_runs_it(kvm_report):
    code, report = kvm_report
    guest = check_of(report, "kvm.guest")
    evidence = guest["evidence"]
    assert evidence["duration_ns"] > 0 and 0 < evidence["duration_ms"] < 5000
    if PARAVIRTUAL:
        assert evidence["ok"] is False and evidence["stopped_in"] == "long"
        assert evidence["stages"] == ["real", "protected", "long"]
        assert evidence["exits"] == ["IO", "IO", "IO", "INTERNAL_ERROR"]
        assert "kvm_pvm" in guest["summary"] and "PVM-enabled" in guest["detail"]
        return
    assert evidence["ok"] is True and evidence["stopped_in"] is None
    assert evidence["stages"] == ["real", "protected", "long", "workload"]
    assert evidence["exits"] == ["IO"] * 5 + ["HLT"]
    assert evidence["instructions_per_second"] >= evidence["minimum_instructions_per_second"]


def test_live_kvm_target_verdict(kvm_report):
    code, report = kvm_report
    if PARAVIRTUAL:
        # KVM opens and creates VMs, but runs no unmodified guest: not ready for QEMU, libvirt, KubeVirt.
        assert (code, report["verdict"], report["exit_code"]) == (1, "not_ready", 1)
        assert report["reasons"][0] == "kvm.guest"
    else:
        assert code == 0 == report["exit_code"]
        assert report["verdict"] in ("ready", "ready_with_warnings")


def test_live_workstation_target_needs_vtx_here():
    if _cpu_flags() & {"vmx", "svm"}:
        pytest.skip("this machine shows VT-x/AMD-V; the no-VT-x verdict applies to hosts without it")
    reason = _usable()
    if reason:
        pytest.skip(reason)
    code, report = run_cli("--target", "workstation")
    assert (code, report["verdict"], report["exit_code"]) == (1, "not_ready", 1)
    assert report["reasons"][0] == "cpu.virtualization"
    assert check_of(report, "kvm.guest")["status"] == ("fail" if PARAVIRTUAL else "pass")


# --- an unprivileged user --------------------------------------------------------------------------
def _check_as_nobody() -> dict:
    """The checks in process, as the forked unprivileged child runs them (helpers.run_as_nobody)."""
    from kvmready import runner
    from kvmready.facts import Facts
    from kvmready.facts.live import LiveSystem
    from kvmready.host import DirectoryHost
    from kvmready.model import Target

    facts = Facts(DirectoryHost("/"), live_system=LiveSystem(), vm_dir="/tmp")
    results = runner.run(facts, Target.KVM)
    report = runner.build_report(facts, Target.KVM, results)
    access = report.check("kvm.access")
    return {
        "status": access.status.value,
        "summary": access.summary,
        "remediation": access.remediation,
        "evidence": dict(access.evidence),
        "exit_code": report.exit_code,
        "verdict": report.verdict.value,
        "api": report.check("kvm.api").status.value,
    }


def _run_in_unprivileged_child(timeout_s: float = 120.0) -> dict:
    # The interpreter's own files sit in root's 0700 home: import everything the
    # child needs while still root.
    import pwd  # noqa: F401

    import kvmready.checks  # noqa: F401
    import kvmready.facts.live  # noqa: F401
    import kvmready.kvmapi  # noqa: F401
    import kvmready.runner  # noqa: F401
    import kvmready.summary  # noqa: F401

    return run_as_nobody(_check_as_nobody, timeout_s)


def test_unprivileged_user_is_refused_with_the_group_and_udev_fix():
    if os.geteuid() != 0:
        pytest.skip("dropping to nobody needs root")
    st = os.stat(KVM)
    if st.st_mode & 0o006 == 0o006:
        pytest.skip(f"{KVM} is world read-write here: nobody can open it")
    payload = _run_in_unprivileged_child()
    assert payload["uid"] == NOBODY
    assert payload["status"] == "fail", payload["summary"]
    assert "may not open /dev/kvm" in payload["summary"]
    assert payload["evidence"]["error"]["errno_name"] in ("EACCES", "EPERM")
    remediation = payload["remediation"]
    assert "usermod -aG kvm" in remediation
    mode = stat.S_IMODE(st.st_mode)
    if st.st_gid == 0 or mode & 0o060 != 0o060:  # here: root:root 0600
        assert 'KERNEL=="kvm", GROUP="kvm", MODE="0660"' in remediation
        assert "udevadm trigger --name-match=kvm" in remediation
    assert payload["evidence"]["mode"] == f"{mode:04o}"
    assert payload["api"] == "skip"
    assert payload["exit_code"] == 1 and payload["verdict"] == "not_ready"
