"""Golden-file tests: what kvmready must show for each scenario (issue 4).

Each scenario is a host tree (tests/treebuilder.py) plus a fake live system
(tests/fakes.py).  Its JSON report, for both targets, is compared with
tests/goldens/scenarios/<scenario>-<target>.json after normalisation (a fixed
`now`, the tool version replaced), validated against the shipped JSON Schema,
and its verdict, exit code and first reason are asserted explicitly, so a
golden rewritten by mistake still cannot hide a wrong verdict.

Rewrite the goldens after an intended change with

    KVMREADY_UPDATE_GOLDENS=1 PYTHONPATH=src python -m pytest tests/test_scenarios.py

and read the diff before committing it.
"""

from __future__ import annotations

import datetime
import difflib
import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import pytest
from fakes import GIB, FakeKvmBackend, FakeLiveSystem
from helpers import cli_runner
from jsonschema import Draft202012Validator
from treebuilder import KVM_GID, Tree, amd_desktop, intel_desktop, kvm_guest, pvm_host

from kvmready import cli, orchestration
from kvmready.facts import Facts
from kvmready.model import Target
from kvmready.render import OutputFormat
from kvmready.runner import build_report, run
from kvmready.schema import schema

GOLDENS = Path(__file__).parent / "goldens" / "scenarios"
UPDATE = os.environ.get("KVMREADY_UPDATE_GOLDENS") == "1"
NOW = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
NOW_TEXT = "2025-01-02T03:04:05Z"
VERSION = "<version>"
VM_DIR = "/"  # the nearest existing parent is measured on the machine running the tests: "/" is the same everywhere


def desktop_user(backend: Optional[FakeKvmBackend] = None, **kwargs) -> FakeLiveSystem:
    """alice on her desktop: in the kvm group, 500 GiB free."""
    kwargs.setdefault("groups", (1000, KVM_GID))
    kwargs.setdefault("disk", (1000 * GIB, 500 * GIB))
    return FakeLiveSystem(backend, **kwargs)


@dataclass(frozen=True)
class Scenario:
    tree: Callable[[], Tree]
    live: Callable[[], FakeLiveSystem]
    # target -> (verdict, exit code, first reason or None)
    expect: Dict[str, Tuple[str, int, Optional[str]]]
    must_show: Dict[str, str]  # check id -> status it must have (both targets)


SCENARIOS: Dict[str, Scenario] = {
    "ready-intel": Scenario(
        tree=lambda: intel_desktop(params={"kvm": {"enable_vmware_backdoor": "Y"}}),
        live=desktop_user,
        expect={"workstation": ("ready", 0, None), "kvm": ("ready", 0, None)},
        must_show={"cpu.virtualization": "pass", "cpu.hardware-mmu": "pass", "kvm.access": "pass",
                   "kvm.guest": "pass", "vmware.backdoor": "pass", "devices.render-node": "pass"},
    ),
    "ready-amd": Scenario(
        tree=lambda: amd_desktop(kernel="6.14.0-27-generic", params={"kvm": {"enable_virt_at_load": "Y"}}),
        live=desktop_user,
        expect={"workstation": ("ready_with_warnings", 0, "vmware.backdoor"), "kvm": ("ready", 0, None)},
        must_show={"cpu.virtualization": "pass", "cpu.hardware-mmu": "pass", "cpu.firmware": "pass",
                   "kvm.nested": "pass", "kvm.guest": "pass", "vmware.backdoor": "warn"},
    ),
    "virtualbox-6.12": Scenario(
        tree=lambda: intel_desktop(kernel="6.14.0-27-generic",
                                   modules=("kvm_intel", "kvm", "irqbypass", "tun", "vhost_net", "i915",
                                            "vboxnetadp", "vboxnetflt", "vboxdrv"),
                                   params={"kvm": {"enable_virt_at_load": "Y", "enable_vmware_backdoor": "Y"}}),
        live=desktop_user,
        expect={"workstation": ("ready_with_warnings", 0, "conflicts.virtualbox"),
                "kvm": ("ready_with_warnings", 0, "conflicts.virtualbox")},
        must_show={"conflicts.virtualbox": "warn", "kvm.create-vm": "pass"},
    ),
    "vmmon-loaded": Scenario(
        tree=lambda: intel_desktop(modules=("kvm_intel", "kvm", "irqbypass", "tun", "vhost_net", "i915", "vmmon", "vmnet"),
                                   params={"kvm": {"enable_vmware_backdoor": "Y"}}),
        live=lambda: desktop_user(FakeKvmBackend(create_vm_errno=errno.EBUSY)),  # a classic Workstation VM runs
        expect={"workstation": ("not_ready", 1, "kvm.create-vm"), "kvm": ("not_ready", 1, "kvm.create-vm")},
        must_show={"kvm.create-vm": "fail", "conflicts.vmware-vmmon": "warn", "kvm.guest": "skip"},
    ),
    "nested-guest-exposed": Scenario(
        tree=lambda: kvm_guest(nested=True),
        live=lambda: desktop_user(cpuid="KVMKVMKVM"),
        expect={"workstation": ("ready_with_warnings", 0, "host.hypervisor"),
                "kvm": ("ready_with_warnings", 0, "host.hypervisor")},
        must_show={"host.hypervisor": "warn", "cpu.virtualization": "pass", "kvm.guest": "pass",
                   "devices.render-node": "warn"},
    ),
    "nested-guest-hidden": Scenario(
        tree=lambda: kvm_guest(nested=False),
        live=lambda: desktop_user(FakeKvmBackend(open_errno=errno.ENOENT), cpuid="KVMKVMKVM"),
        expect={"workstation": ("not_ready", 1, "cpu.virtualization"), "kvm": ("not_ready", 1, "kvm.module")},
        must_show={"host.hypervisor": None, "kvm.module": "fail", "kvm.device": "fail", "kvm.access": "fail",
                   "kvm.api": "skip"},
    ),
    "pvm-host": Scenario(
        tree=pvm_host,
        live=lambda: FakeLiveSystem.root(cpuid="KVMKVMKVM", msr_errno=errno.ENOENT, disk=(100 * GIB, 80 * GIB)),
        expect={"workstation": ("not_ready", 1, "cpu.virtualization"),
                "kvm": ("ready_with_warnings", 0, "cpu.virtualization")},
        must_show={"kvm.module": "pass", "kvm.device": "pass", "kvm.access": "pass", "kvm.api": "pass",
                   "kvm.create-vm": "pass", "kvm.guest": "pass", "cpu.firmware": "skip"},
    ),
    "low-ram": Scenario(
        tree=lambda: intel_desktop(mem_gib=1.9),
        live=desktop_user,
        expect={"workstation": ("not_ready", 1, "resources.memory"), "kvm": ("ready_with_warnings", 0, "resources.memory")},
        must_show={"resources.memory": None},
    ),
    "no-render-node": Scenario(
        tree=lambda: intel_desktop(render=None, params={"kvm": {"enable_vmware_backdoor": "Y"}}),
        live=desktop_user,
        expect={"workstation": ("ready_with_warnings", 0, "devices.render-node"), "kvm": ("ready", 0, None)},
        must_show={"devices.render-node": "warn"},
    ),
    "secure-boot-on": Scenario(
        tree=lambda: intel_desktop(secure_boot=True, lockdown="integrity", params={"kvm": {"enable_vmware_backdoor": "Y"}}),
        live=desktop_user,
        expect={"workstation": ("ready_with_warnings", 0, "security.secure-boot"), "kvm": ("ready", 0, None)},
        must_show={"security.secure-boot": "warn", "security.lockdown": "warn"},
    ),
    "firmware-disabled-vtx": Scenario(
        tree=lambda: intel_desktop(vmx=False, modules=("kvm", "irqbypass", "tun", "vhost_net", "i915"), kvm_present=False),
        live=lambda: FakeLiveSystem.root(FakeKvmBackend(open_errno=errno.ENOENT), msr={0x3A: 0x1}),
        expect={"workstation": ("not_ready", 1, "cpu.virtualization"), "kvm": ("not_ready", 1, "cpu.virtualization")},
        must_show={"cpu.virtualization": "fail", "cpu.firmware": "fail", "kvm.module": "fail", "kvm.device": "fail",
                   "kvm.access": "fail"},
    ),
}

CASES = [(name, target) for name in SCENARIOS for target in ("workstation", "kvm")]
IDS = [f"{name}-{target}" for name, target in CASES]


def facts_of(name: str) -> Facts:
    scenario = SCENARIOS[name]
    return Facts(scenario.tree().host(), live_system=scenario.live(), vm_dir=VM_DIR)


def normalise(data: dict) -> dict:
    data = json.loads(json.dumps(data))
    data["generated_at"] = NOW_TEXT
    data["tool"]["version"] = VERSION
    return data


def report_json(name: str, target: str) -> dict:
    facts = facts_of(name)
    report = build_report(facts, Target(target), run(facts, Target(target)), now=NOW)
    return normalise(json.loads(OutputFormat.JSON.renderer().render(report)))


def golden_text(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def check_of(data: dict, check_id: str) -> dict:
    return next(check for check in data["checks"] if check["id"] == check_id)


@pytest.mark.parametrize("name, target", CASES, ids=IDS)
def test_scenario_report_matches_its_golden_file(name, target):
    data = report_json(name, target)
    path = GOLDENS / f"{name}-{target}.json"
    text = golden_text(data)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with KVMREADY_UPDATE_GOLDENS=1 to create it"
    expected = path.read_text(encoding="utf-8")
    if expected != text:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), str(path), "now", n=2))
        pytest.fail(f"{name}-{target} differs from its golden file (KVMREADY_UPDATE_GOLDENS=1 rewrites it):\n{diff}")


@pytest.mark.parametrize("name, target", CASES, ids=IDS)
def test_scenario_verdict_exit_code_and_first_reason(name, target):
    data = report_json(name, target)
    verdict, exit_code, first_reason = SCENARIOS[name].expect[target]
    assert (data["verdict"], data["exit_code"]) == (verdict, exit_code), data["reasons"]
    if first_reason is None:
        assert data["reasons"] == []
    else:
        assert data["reasons"][0] == first_reason, data["reasons"]
    for check_id, status in SCENARIOS[name].must_show.items():
        if status is not None:
            assert check_of(data, check_id)["status"] == status, (check_id, check_of(data, check_id)["summary"])


@pytest.mark.parametrize("name, target", CASES, ids=IDS)
def test_scenario_golden_file_is_valid_against_the_report_schema(name, target):
    path = GOLDENS / f"{name}-{target}.json"
    if not path.exists():
        pytest.fail(f"{path} is missing: run with KVMREADY_UPDATE_GOLDENS=1 to create it")
    validator = Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(json.loads(path.read_text(encoding="utf-8"))), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_report_schema_itself_is_valid():
    Draft202012Validator.check_schema(schema())


@pytest.mark.parametrize("name, target", CASES, ids=IDS)
def test_cli_prints_the_golden_report_and_exits_with_its_code(monkeypatch, name, target):
    monkeypatch.setattr(orchestration, "build_facts", lambda **kwargs: facts_of(name))
    result = cli_runner().invoke(cli.app, ["check", "--format", "json", "--target", target])
    assert result.stdout.endswith("}\n") and not result.stdout.endswith("\n\n")
    data = normalise(json.loads(result.stdout))
    golden = json.loads((GOLDENS / f"{name}-{target}.json").read_text(encoding="utf-8"))
    assert data == golden
    assert result.exit_code == golden["exit_code"] == SCENARIOS[name].expect[target][1]


# --- what each scenario must show, in words ------------------------------------------------------------
def test_pvm_host_says_why_workstation_cannot_run_but_kvm_can():
    ws = report_json("pvm-host", "workstation")
    virt = check_of(ws, "cpu.virtualization")
    assert virt["status"] == "fail" and "kvm_pvm" in virt["summary"]
    assert "unmodified operating systems" in virt["remediation"]
    kvm = report_json("pvm-host", "kvm")
    assert check_of(kvm, "cpu.virtualization")["status"] == "warn"
    assert kvm["host"]["kvm"] == {"module": "kvm_pvm", "device": True, "api_version": 12}
    assert kvm["host"]["hypervisor"] == "kvm"
    assert kvm["host"]["cpu"]["virtualization"] is None


def test_firmware_disabled_vtx_reads_the_msr_and_points_at_the_firmware_setup():
    data = report_json("firmware-disabled-vtx", "workstation")
    firmware = check_of(data, "cpu.firmware")
    assert firmware["status"] == "fail"
    assert firmware["evidence"]["value"] == "0x1" and firmware["evidence"]["locked"] is True
    assert "Intel Virtualization Technology" in firmware["remediation"]


def test_virtualbox_on_6_12_says_virtualbox_fails_and_gives_two_ways_out():
    check = check_of(report_json("virtualbox-6.12", "workstation"), "conflicts.virtualbox")
    assert "VirtualBox VMs fail to start" in check["summary"]
    assert "Two ways out" in check["remediation"]


def test_vmmon_with_a_running_classic_vm_names_vmmon_in_the_create_vm_failure():
    data = report_json("vmmon-loaded", "workstation")
    assert check_of(data, "kvm.create-vm")["summary"].endswith("(vmmon loaded)")
    assert "EBUSY" in check_of(data, "conflicts.vmware-vmmon")["summary"]


def test_nested_guest_without_vtx_names_the_outer_hypervisor_and_how_to_expose_it():
    data = report_json("nested-guest-hidden", "workstation")
    hypervisor = check_of(data, "host.hypervisor")
    assert hypervisor["status"] == "fail" and "a VM under kvm" in hypervisor["summary"]
    assert "host-passthrough" in hypervisor["remediation"]
    assert check_of(report_json("nested-guest-hidden", "kvm"), "host.hypervisor")["status"] == "warn"


def test_low_ram_fails_workstation_and_only_warns_for_kvm():
    assert check_of(report_json("low-ram", "workstation"), "resources.memory")["status"] == "fail"
    assert check_of(report_json("low-ram", "kvm"), "resources.memory")["status"] == "warn"
