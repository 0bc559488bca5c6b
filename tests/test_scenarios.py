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
from fakes import GIB, FakeKvmBackend, FakeLiveSystem, guest_emulation_stop
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
        # Ready in every respect but the one no host can meet yet: VMware's KVM support in a released kernel.
        expect={"workstation": ("not_ready", 1, "vmware.kvm-support"), "kvm": ("ready", 0, None)},
        must_show={"cpu.virtualization": "pass", "cpu.hardware-mmu": "pass", "kvm.access": "pass",
                   "kvm.guest": "pass", "vmware.backdoor": "pass", "devices.render-node": "pass"},
    ),
    "ready-amd": Scenario(
        tree=lambda: amd_desktop(kernel="6.14.0-27-generic", params={"kvm": {"enable_virt_at_load": "Y"}}),
        live=desktop_user,
        expect={"workstation": ("not_ready", 1, "vmware.kvm-support"), "kvm": ("ready", 0, None)},
        must_show={"cpu.virtualization": "pass", "cpu.hardware-mmu": "pass", "cpu.firmware": "pass",
                   "kvm.nested": "pass", "kvm.guest": "pass", "vmware.backdoor": "pass"},
    ),
    "virtualbox-6.12": Scenario(
        tree=lambda: intel_desktop(kernel="6.14.0-27-generic",
                                   modules=("kvm_intel", "kvm", "irqbypass", "tun", "vhost_net", "i915",
                                            "vboxnetadp", "vboxnetflt", "vboxdrv"),
                                   params={"kvm": {"enable_virt_at_load": "Y", "enable_vmware_backdoor": "Y"}}),
        live=desktop_user,
        expect={"workstation": ("not_ready", 1, "vmware.kvm-support"),
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
        expect={"workstation": ("not_ready", 1, "vmware.kvm-support"),
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
        # What kvm_pvm does with the smoke guest (measured on the development machine).
        live=lambda: FakeLiveSystem.root(FakeKvmBackend(guest=guest_emulation_stop()), cpuid="KVMKVMKVM",
                                         msr_errno=errno.ENOENT, disk=(100 * GIB, 80 * GIB)),
        expect={"workstation": ("not_ready", 1, "cpu.virtualization"),
                "kvm": ("not_ready", 1, "kvm.guest")},
        must_show={"kvm.module": "pass", "kvm.device": "pass", "kvm.access": "pass", "kvm.api": "pass",
                   "kvm.create-vm": "pass", "kvm.guest": "fail", "cpu.firmware": "skip"},
    ),
    "low-ram": Scenario(
        tree=lambda: intel_desktop(mem_gib=1.5),  # under what a 2 GiB machine shows (1.8 GiB)
        live=desktop_user,
        expect={"workstation": ("not_ready", 1, "vmware.kvm-support"), "kvm": ("ready_with_warnings", 0, "resources.memory")},
        must_show={"resources.memory": None},
    ),
    "no-render-node": Scenario(
        tree=lambda: intel_desktop(render=None, params={"kvm": {"enable_vmware_backdoor": "Y"}}),
        live=desktop_user,
        expect={"workstation": ("not_ready", 1, "vmware.kvm-support"), "kvm": ("ready", 0, None)},
        must_show={"devices.render-node": "warn"},
    ),
    "secure-boot-on": Scenario(
        tree=lambda: intel_desktop(secure_boot=True, lockdown="integrity", params={"kvm": {"enable_vmware_backdoor": "Y"}}),
        live=desktop_user,
        expect={"workstation": ("not_ready", 1, "vmware.kvm-support"), "kvm": ("ready", 0, None)},
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
def test_pvm_host_says_why_neither_workstation_nor_unmodified_kvm_guests_run():
    ws = report_json("pvm-host", "workstation")
    virt = check_of(ws, "cpu.virtualization")
    assert virt["status"] == "fail" and "kvm_pvm" in virt["summary"]
    assert "unmodified operating systems" in virt["remediation"]
    kvm = report_json("pvm-host", "kvm")
    assert check_of(kvm, "cpu.virtualization")["status"] == "warn"
    guest = check_of(kvm, "kvm.guest")
    assert guest["status"] == "fail" and "kvm_pvm can only emulate" in guest["summary"]
    assert kvm["verdict"] == "not_ready" and kvm["reasons"][0] == "kvm.guest"
    assert kvm["host"]["kvm"] == {"module": "kvm_pvm", "device": True, "api_version": 12, "paravirtual": True}
    assert kvm["host"]["hypervisor"] == "kvm"
    assert kvm["host"]["cpu"]["virtualization"] is None


def test_firmware_disabled_vtx_reads_the_msr_and_points_at_the_firmware_setup():
    data = report_json("firmware-disabled-vtx", "workstation")
    firmware = check_of(data, "cpu.firmware")
    assert firmware["status"] == "fail"
    assert firmware["evidence"]["value"] == "0x1" and firmware["evidence"]["locked"] is True
    assert "Intel Virtualization Technology" in firmware["remediation"]


def test_virtualbox_of_unknown_release_on_6_12_gives_both_fixes_conditioned():
    check = check_of(report_json("virtualbox-6.12", "workstation"), "conflicts.virtualbox")
    assert "which kvmready could not read" in check["summary"]
    assert "If VirtualBox is 7.2.8 or older" in check["remediation"] and "If it is 7.2.10 or newer" in check["remediation"]


WAITING = ("ready-intel", "ready-amd")


@pytest.mark.parametrize("name", WAITING)
def test_a_fully_prepared_host_is_not_ready_only_because_upstream_has_not_shipped(name):
    """Ready in every respect a host can be: the only failing required check waits on upstream."""
    data = report_json(name, "workstation")
    assert (data["verdict"], data["exit_code"]) == ("not_ready", 1)
    assert data["waiting_on_upstream"] == ["vmware.kvm-support"]
    support = check_of(data, "vmware.kvm-support")
    assert support["status"] == "fail" and "no released kernel has it yet" in support["summary"]
    assert "--skip vmware.kvm-support" in support["remediation"]
    others = [c for c in data["checks"] if c["severity"] == "required" and c["id"] != "vmware.kvm-support"]
    assert others and all(c["status"] == "pass" for c in others), [(c["id"], c["status"]) for c in others]


def test_the_table_says_ready_in_every_other_respect_in_one_line(monkeypatch):
    monkeypatch.setattr(orchestration, "build_facts", lambda **kwargs: facts_of("ready-intel"))
    result = cli_runner().invoke(cli.app, ["check", "--color", "never"], env={"COLUMNS": "80"})
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    verdict = next(i for i, line in enumerate(lines) if line.startswith("NOT READY for workstation (exit 1)"))
    assert lines[verdict + 1] == "Ready in every other respect: vmware.kvm-support waits on upstream"
    assert "--skip vmware.kvm-support" in " ".join(result.stdout.split())  # fix first says how to gate on the rest


def test_gating_on_prepared_skips_the_upstream_check_and_exits_0(monkeypatch):
    monkeypatch.setattr(orchestration, "build_facts", lambda **kwargs: facts_of("ready-intel"))
    result = cli_runner().invoke(cli.app, ["check", "--format", "json", "--skip", "vmware.kvm-support"])
    data = json.loads(result.stdout)
    assert (result.exit_code, data["verdict"], data["waiting_on_upstream"]) == (0, "ready", [])


def test_waiting_on_upstream_is_empty_when_this_host_fails_too():
    data = report_json("low-ram", "workstation")
    assert data["verdict"] == "not_ready" and data["waiting_on_upstream"] == []
    assert check_of(data, "vmware.kvm-support")["status"] == "fail"


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


# Checks that no scenario can make pass, and where their pass is proven instead.
NEVER_PASSES_IN_SCENARIOS = {
    "vmware.kvm-support": "no released kernel has VMware's KVM support; test_checks proves its pass with a "
    "hypothetical table entry and a live capability",
}


def test_every_check_passes_on_some_scenario():
    """A check stuck at fail or error on every host (a broken probe, a wrong threshold) shows here."""
    from kvmready.checks import REGISTRY

    passed = {check["id"] for name, target in CASES for check in report_json(name, target)["checks"]
              if check["status"] == "pass"}
    never = sorted(set(REGISTRY) - passed)
    assert never == sorted(NEVER_PASSES_IN_SCENARIOS), never
