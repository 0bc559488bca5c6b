"""Real captured hosts (tests/fixtures/hosts) judged end to end.

Each fixture is a sysroot copied from a real machine or from another
project's test data (see tests/fixtures/hosts/README.md).  For every fixture
and both targets, `kvmready check --root FIXTURE --format json` must match
its golden file (KVMREADY_UPDATE_GOLDENS=1 rewrites them), every golden must
validate against the shipped JSON Schema, and the facts that matter for
each machine are asserted one by one, so a golden rewritten in a hurry
cannot quietly accept a wrong answer.
"""

from __future__ import annotations

import json

import pytest
from helpers import (
    GOLDENS,
    UPDATE_GOLDENS,
    check_of,
    dump_json,
    fixture_root,
    normalise,
    real_host_names,
    report_for_root,
    run_cli,
)

TARGETS = ("workstation", "kvm")
HOSTS = real_host_names()
GOLDEN_DIR = GOLDENS / "real-hosts"
LIVE_CHECKS = ("kvm.access", "kvm.api", "kvm.create-vm", "kvm.guest", "kvm.capabilities", "resources.disk")
EXPECTED_HOSTS = {
    "firecracker-pvm-host",
    "lscpu-arm-A510-A710-A715-X3",
    "lscpu-s390-kvm",
    "lscpu-vbox-win",
    "lscpu-x86_64-64cpu-linux6.2",
    "lscpu-x86_64-epyc_7451",
    "sosreport-nested-kvm-guest",
    "virtwhat-esx4.1",
    "virtwhat-hyperv",
    "virtwhat-rhel5-xen-domU-pv",
    # issue 13: real hosts whose architecture, kernel width, EPT/NPT or hypervisor other tools recorded
    "ansible-armv7-rev3-8cpu",
    "ansible-sparc-t5-debian-ldom-24vcpu",
    "ansible-x86_64-4cpu",
    "ansible-x86_64-8cpu",
    "lkml2003-alpha",
    "lkml2003-parisc64-a500",
    "lkml2003-s390-redhat-2.4.9",
    "lkml2010-x86_64-core2-e6550",
    "lscpu-loongarch-kvm_on_loongson_3c6000",
    "lscpu-loongarch-loongson_3a5000_hv",
    "lscpu-old-i386-xenpara",
    "lscpu-old-ia64-hprx1620",
    "lscpu-old-x86_64-hpdl585",
    "lscpu-ppc-qemu",
    "lscpu-ppc64-POWER7-64cpu",
    "lscpu-rv64-visionfive2",
    "lscpu-s390-lpar",
    "lscpu-s390-zvm",
    "pycpuinfo-armv6l-raspberry-pi-b",
    "pycpuinfo-mips64el-loongson3a3000",
    "pycpuinfo-ppc64le-fedora24",
    "pycpuinfo-s390x-fedora5",
    "ubuntuforums-i686-core2-e8400",
    "virtwhat-alibaba-cloud-x86",
    "virtwhat-aws-baremetal-x86",
    "virtwhat-aws-kvm-x86",
    "virtwhat-esx-arm",
    "virtwhat-kvm",
    "virtwhat-lkvm-arm",
    "virtwhat-nutanix-ahv",
    "virtwhat-ppc64-baremetal",
    "virtwhat-qemu-arm",
    "virtwhat-rhev",
}
CASES = [(host, target) for host in HOSTS for target in TARGETS]


def golden_path(host: str, target: str):
    return GOLDEN_DIR / f"{host}-{target}.json"


def cli_report(host: str, target: str):
    result = run_cli(["check", "--root", fixture_root(host), "--target", target, "--format", "json"])
    return result, normalise(json.loads(result.stdout))


_reports: dict = {}


def report(host: str, target: str) -> dict:
    """The report of a fixture through the runner (cached: the trees never change during a run)."""
    if (host, target) not in _reports:
        _reports[(host, target)] = report_for_root(fixture_root(host), target)
    return _reports[(host, target)]


def status(host: str, target: str, check_id: str) -> str:
    return check_of(report(host, target), check_id)["status"]


# -- the fixture set itself ---------------------------------------------------
def test_every_shared_capture_is_a_fixture():
    assert set(HOSTS) == EXPECTED_HOSTS


@pytest.mark.parametrize("host", HOSTS)
def test_side_notes_live_outside_the_sysroot(host):
    root = fixture_root(host)
    stray = [p.name for p in root.iterdir() if p.is_file()]
    assert stray == [], "side notes belong in _capture/"
    assert (root / "_capture").is_dir()
    assert not list(root.glob("dev/*.txt")), "dev/kvm.stat.txt is a note, not a device node"


# -- goldens --------------------------------------------------------------------
@pytest.mark.parametrize(("host", "target"), CASES)
def test_cli_json_matches_the_golden(host, target):
    result, data = cli_report(host, target)
    assert result.stderr == ""
    assert result.exit_code == data["exit_code"]
    path = golden_path(host, target)
    if UPDATE_GOLDENS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump_json(data), encoding="utf-8")
        return
    assert path.exists(), f"no golden {path.name}; run with KVMREADY_UPDATE_GOLDENS=1 and review it"
    assert data == json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(("host", "target"), CASES)
def test_runner_and_cli_give_the_same_report(host, target):
    _, from_cli = cli_report(host, target)
    assert normalise(report(host, target)) == from_cli


def test_there_is_no_golden_without_a_fixture():
    expected = {golden_path(host, target).name for host, target in CASES}
    assert {path.name for path in GOLDEN_DIR.glob("*.json")} == expected


@pytest.mark.parametrize(("host", "target"), CASES)
def test_golden_validates_against_the_schema(host, target):
    from jsonschema import Draft202012Validator

    from kvmready.schema import schema

    validator = Draft202012Validator(schema())
    data = json.loads(golden_path(host, target).read_text(encoding="utf-8"))
    errors = sorted(validator.iter_errors(data), key=lambda error: list(error.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


@pytest.mark.parametrize(("host", "target"), CASES)
def test_golden_never_names_the_fixture_path(host, target):
    text = golden_path(host, target).read_text(encoding="utf-8")
    assert str(fixture_root(host)) not in text
    assert "/work/" not in text


# -- what every --root run shares ---------------------------------------------------
@pytest.mark.parametrize(("host", "target"), CASES)
def test_live_checks_skip_in_root_mode(host, target):
    data = report(host, target)
    for check_id in LIVE_CHECKS:
        check = check_of(data, check_id)
        assert check["status"] == "skip", check_id
        assert "machine itself" in check["summary"]
    assert data["host"]["live"] is False
    assert data["host"]["source"] == "root"
    assert data["host"]["kvm"]["api_version"] is None


@pytest.mark.parametrize(("host", "target"), CASES)
def test_checks_are_sorted_and_counted(host, target):
    data = report(host, target)
    ids = [check["id"] for check in data["checks"]]
    assert ids == sorted(ids)
    counted = {name: sum(1 for c in data["checks"] if c["status"] == name) for name in data["summary"]}
    assert counted == data["summary"]


@pytest.mark.parametrize(("host", "target"), CASES)
def test_no_check_crashed(host, target):
    crashed = [c["id"] for c in report(host, target)["checks"] if "exception" in c["evidence"]]
    assert crashed == []


@pytest.mark.parametrize(("host", "target"), CASES)
def test_no_tree_is_ready_without_proof(host, target):
    """A tree runs no guest: whatever it shows, it cannot show that KVM works (no ready, no exit 0)."""
    data = report(host, target)
    assert data["verdict"] in ("not_ready", "indeterminate"), data["reasons"]
    assert data["exit_code"] in (1, 3)


@pytest.mark.parametrize(("host", "target"), CASES)
def test_bare_metal_only_on_the_platforms_word(host, target):
    """'bare metal' needs DMI or a device tree read (or positive evidence): cpuinfo alone is a weak witness."""
    check = check_of(report(host, target), "host.hypervisor")
    if check["status"] == "pass" and "bare metal" in check["summary"]:
        # Judged from the tree on disk, not from what the check says it saw.
        root = fixture_root(host)
        platform = (root / "sys/class/dmi/id").is_dir() or (root / "proc/device-tree").is_dir()
        positive = [clue for clue in check["evidence"]["clues"] if clue["suggests"] is None
                    and not clue["source"].startswith("/sys/devices/system/clocksource")]
        assert platform or positive, check["summary"]


# -- firecracker-pvm-host: the development machine, KVM through kvm_pvm ---------------------
PVM = "firecracker-pvm-host"


def test_pvm_host_has_no_proc_modules_yet_kvm_pvm_is_built_in():
    assert not (fixture_root(PVM) / "proc" / "modules").exists()
    for target in TARGETS:
        check = check_of(report(PVM, target), "kvm.module")
        assert check["status"] == "pass"
        assert "kvm_pvm" in check["summary"] and "built into the kernel" in check["summary"]
        assert check["evidence"]["module"] == {"name": "kvm_pvm", "state": "builtin", "source": "/sys/module"}
        assert check["evidence"]["kvm"]["state"] == "builtin"
        assert check["evidence"]["sources"]["/proc/modules"].endswith("(ENOENT)")


def test_pvm_host_cpu_virtualization_fails_for_workstation_and_warns_for_kvm():
    workstation = check_of(report(PVM, "workstation"), "cpu.virtualization")
    kvm = check_of(report(PVM, "kvm"), "cpu.virtualization")
    assert workstation["status"] == "fail"
    assert kvm["status"] == "warn"
    for check in (workstation, kvm):
        assert "paravirtual" in check["summary"]
        assert check["evidence"]["kvm_module"] == "kvm_pvm"
        assert check["evidence"]["cpus_with_vmx"] == 0 and check["evidence"]["cpus_with_svm"] == 0
        assert check["evidence"]["hypervisor_flag"] is True


def test_pvm_host_verdicts_follow_its_readme():
    # "from this tree alone ... target kvm is indeterminate ...; target workstation: not ready"
    kvm = report(PVM, "kvm")
    assert kvm["verdict"] == "indeterminate" and kvm["exit_code"] == 3
    assert "kvm.guest" in kvm["reasons"]
    assert report(PVM, "workstation")["verdict"] == "not_ready"
    assert report(PVM, "workstation")["reasons"][0] == "cpu.virtualization"


def test_pvm_host_summary():
    host = report(PVM, "kvm")["host"]
    assert host["arch"] == "x86_64"
    assert host["kernel"] == {"release": "6.18.44-fc-v669", "version": [6, 18, 44]}
    assert host["os"] == {"id": "debian", "version": "12", "name": "Debian GNU/Linux 12 (bookworm)"}
    assert host["cpu"]["vendor"] == "AuthenticAMD"
    assert host["cpu"]["logical_cpus"] == 2
    assert host["cpu"]["virtualization"] is None
    assert host["kvm"]["module"] == "kvm_pvm"
    assert host["kvm"]["device"] is None  # /dev was not captured: unknown, not absent
    assert host["hypervisor"] == "unknown"  # only the cpuinfo hypervisor flag; no DMI, clocksource tsc
    assert host["memory_bytes"] > 20 * 1024**3


def test_pvm_host_kvm_device_is_not_captured_rather_than_missing():
    check = check_of(report(PVM, "workstation"), "kvm.device")
    assert check["status"] == "skip"
    assert "not captured" in check["summary"]


def test_pvm_host_backdoor_parameter_is_read_from_built_in_kvm():
    check = check_of(report(PVM, "workstation"), "vmware.backdoor")
    assert check["status"] == "pass" and check["severity"] == "info"  # context only, never advice to turn it on
    assert check["evidence"]["value"] == "N" and "is off" in check["summary"]


# -- bare-metal x86 -------------------------------------------------------------------------
EPYC = "lscpu-x86_64-epyc_7451"
I7 = "lscpu-x86_64-64cpu-linux6.2"


def test_epyc_has_amd_v_on_every_cpu_like_lscpu_says():
    assert "Virtualization:                  AMD-V" in (fixture_root(EPYC) / "_capture" / "expected-lscpu.txt").read_text()
    data = report(EPYC, "workstation")
    assert data["host"]["cpu"]["virtualization"] == "amd-v"
    assert data["host"]["cpu"]["logical_cpus"] == 96
    assert data["host"]["cpu"]["vendor"] == "AuthenticAMD"
    check = check_of(data, "cpu.virtualization")
    assert check["status"] == "pass"
    assert check["evidence"]["cpus_with_svm"] == 96
    assert check_of(data, "cpu.hardware-mmu")["evidence"]["cpu_npt"] is True
    # lscpu names no hypervisor, and neither does kvmready; but the capture holds no DMI or device tree, so it does not
    # claim bare metal either.
    assert status(EPYC, "workstation", "host.hypervisor") == "warn"
    assert data["host"]["hypervisor"] is None


def test_i7_has_vt_x_with_the_vmx_flags_line():
    assert "Virtualization:                  VT-x" in (fixture_root(I7) / "_capture" / "expected-lscpu.txt").read_text()
    data = report(I7, "workstation")
    assert data["host"]["cpu"]["virtualization"] == "vt-x"
    assert data["host"]["cpu"]["logical_cpus"] == 8
    assert check_of(data, "cpu.virtualization")["evidence"]["cpus_with_vmx"] == 8
    mmu = check_of(data, "cpu.hardware-mmu")
    assert mmu["status"] == "pass"
    assert {"ept", "unrestricted_guest"} <= set(mmu["evidence"]["vmx_flags_line"])
    firmware = check_of(data, "cpu.firmware")
    assert firmware["status"] == "pass" and "vmx on every CPU" in firmware["summary"]
    assert data["host"]["hypervisor"] is None


@pytest.mark.parametrize("host", [EPYC, I7])
def test_bare_metal_capture_without_modules_is_indeterminate_not_ready(host):
    # lscpu dumps carry no /proc/modules, /sys/module or osrelease: the required checks cannot be decided.
    data = report(host, "workstation")
    assert status(host, "workstation", "kvm.module") == "error"
    assert status(host, "workstation", "kernel.version") == "error"
    assert data["verdict"] == "indeterminate" and data["exit_code"] == 3


# -- guests -----------------------------------------------------------------------------------
def test_virtualbox_guest_is_named_by_its_pci_devices():
    data = report("lscpu-vbox-win", "workstation")
    assert data["host"]["hypervisor"] == "virtualbox"
    clues = check_of(data, "host.hypervisor")["evidence"]["clues"]
    assert {"source": "/proc/bus/pci/devices", "value": "80eebeef", "suggests": "virtualbox", "vendor": None} in clues
    assert check_of(data, "cpu.virtualization")["status"] == "fail"
    assert "virtualbox" in check_of(data, "cpu.virtualization")["summary"]
    assert status("lscpu-vbox-win", "kvm", "cpu.virtualization") == "warn"


def test_hyperv_guest_is_named_by_dmi():
    data = report("virtwhat-hyperv", "workstation")
    assert data["host"]["hypervisor"] == "hyperv"
    assert status("virtwhat-hyperv", "workstation", "host.hypervisor") == "fail"
    assert status("virtwhat-hyperv", "kvm", "host.hypervisor") == "warn"
    assert "ExposeVirtualizationExtensions" in check_of(data, "host.hypervisor")["remediation"]


def test_esx_guest_is_vmware():
    data = report("virtwhat-esx4.1", "workstation")
    assert data["host"]["hypervisor"] == "vmware"
    assert "vhv.enable" in check_of(data, "cpu.virtualization")["remediation"]
    assert data["host"]["cpu"]["logical_cpus"] == 1
    # VMware runs a VM with one virtual CPU on a one-CPU host: enough, below the recommendation.
    assert status("virtwhat-esx4.1", "workstation", "resources.cpus") == "warn"


def test_xen_pv_domu_is_xen_domu():
    data = report("virtwhat-rhel5-xen-domU-pv", "workstation")
    assert data["host"]["hypervisor"] == "xen"
    evidence = check_of(data, "host.hypervisor")["evidence"]
    assert evidence["xen_role"] == "domU"
    sources = {clue["source"] for clue in evidence["clues"]}
    assert {"/sys/hypervisor/type", "/proc/xen/capabilities"} <= sources


def test_xen_pv_domu_does_not_claim_nested_virtualization():
    # Found with this fixture: the old PV kernel shows vmx, yet a PV guest's kernel never runs in VMX root
    # (Xen nests only HVM guests); host.hypervisor used to say "VT-x/AMD-V exposed" and cpu.virtualization passed.
    for target in TARGETS:
        data = report("virtwhat-rhel5-xen-domU-pv", target)
        assert check_of(data, "host.hypervisor")["evidence"]["nested_exposed"] is False
        assert check_of(data, "cpu.virtualization")["status"] != "pass"
    assert status("virtwhat-rhel5-xen-domU-pv", "kvm", "cpu.virtualization") == "fail"


SOS = "sosreport-nested-kvm-guest"


def test_nested_kvm_guest_is_kvm_with_nested_exposed():
    data = report(SOS, "kvm")
    assert data["host"]["hypervisor"] == "kvm"  # OpenStack Nova DMI + QEMU chassis: KVM
    assert data["host"]["cpu"]["virtualization"] == "vt-x"
    hypervisor = check_of(data, "host.hypervisor")
    assert hypervisor["status"] == "warn"
    assert hypervisor["evidence"]["nested_exposed"] is True
    suggested = {clue["suggests"] for clue in hypervisor["evidence"]["clues"]}
    assert {"kvm", "qemu"} <= suggested


def test_nested_kvm_guest_reads_kvm_intel_from_proc_modules_and_nested_y():
    data = report(SOS, "kvm")
    module = check_of(data, "kvm.module")
    assert module["status"] == "pass"
    assert module["evidence"]["module"] == {"name": "kvm_intel", "state": "live", "source": "/proc/modules"}
    nested = check_of(data, "kvm.nested")
    assert nested["status"] == "pass"
    assert nested["evidence"] == {"source": "/sys/module/kvm_intel/parameters/nested", "value": "Y"}
    assert check_of(data, "cpu.hardware-mmu")["evidence"]["kvm_intel_ept"] is True


def test_nested_kvm_guest_kernel_5_4_is_too_old_for_workstation_only():
    assert report(SOS, "kvm")["host"]["kernel"] == {"release": "5.4.0-99-generic", "version": [5, 4, 0]}
    assert status(SOS, "workstation", "kernel.version") == "fail"
    assert status(SOS, "kvm", "kernel.version") == "pass"
    assert report(SOS, "workstation")["reasons"][0] == "kernel.version"


# -- not x86 ------------------------------------------------------------------------------------
S390 = "lscpu-s390-kvm"
ARM = "lscpu-arm-A510-A710-A715-X3"


@pytest.mark.parametrize(("host", "arch"), [(S390, "s390x"), (ARM, "aarch64")])
def test_non_x86_fails_cpu_arch_cleanly_for_workstation(host, arch):
    data = report(host, "workstation")
    assert data["host"]["arch"] == arch
    check = check_of(data, "cpu.arch")
    assert check["status"] == "fail"
    assert check["summary"].startswith(f"{arch}:")
    assert check["evidence"]["source"] == "/proc/cpuinfo (format)"
    assert data["reasons"][0] == "cpu.arch"
    assert data["verdict"] == "not_ready"
    # The x86-only checks step aside instead of erroring.
    for check_id in ("cpu.virtualization", "cpu.firmware", "cpu.hardware-mmu", "vmware.backdoor"):
        assert check_of(data, check_id)["status"] == "skip", check_id


@pytest.mark.parametrize(("host", "arch"), [(S390, "s390x"), (ARM, "aarch64")])
def test_non_x86_passes_cpu_arch_for_kvm(host, arch):
    assert status(host, "kvm", "cpu.arch") == "pass"


def test_s390_kvm_guest_is_named_by_sysinfo():
    data = report(S390, "kvm")
    assert data["host"]["hypervisor"] == "kvm"
    clues = check_of(data, "host.hypervisor")["evidence"]["clues"]
    assert {"source": "/proc/sysinfo", "value": "KVM/Linux", "suggests": "kvm", "vendor": None} in clues
    assert data["host"]["cpu"]["vendor"] == "IBM/S390"
    assert data["host"]["cpu"]["logical_cpus"] == 3


def test_s390_guest_without_sie_cannot_run_kvm():
    check = check_of(report(S390, "kvm"), "cpu.virtualization")
    assert check["status"] == "fail"
    assert "sie" in check["summary"]


def test_aarch64_phone_soc():
    data = report(ARM, "kvm")
    assert data["host"]["cpu"]["vendor"] == "ARM"
    assert data["host"]["cpu"]["logical_cpus"] == 8
    assert data["host"]["hypervisor"] is None


# -- regressions the real hosts exposed ------------------------------------------------------------
def test_conflict_checks_do_not_pass_when_the_module_list_is_unknown():
    # Found with lscpu-vbox-win: no /proc/modules and no /sys/module, yet "no VirtualBox drivers loaded" passed.
    data = report("lscpu-vbox-win", "workstation")
    assert status("lscpu-vbox-win", "workstation", "kvm.module") == "error"
    for check_id in ("conflicts.virtualbox", "conflicts.vmware-vmmon"):
        assert check_of(data, check_id)["status"] != "pass", check_id


def test_s390_guest_with_sie_counts_as_nested_exposed(tmp_path):
    # Found with lscpu-s390-kvm: only vt-x/amd-v counted as exposed, so an s390x guest with `sie` was "not exposed".
    import shutil

    root = tmp_path / "s390-nested"
    shutil.copytree(fixture_root(S390), root)
    cpuinfo = root / "proc" / "cpuinfo"
    cpuinfo.write_text(cpuinfo.read_text().replace("highgprs", "highgprs sie"))
    data = report_for_root(root, "kvm")
    assert check_of(data, "cpu.virtualization")["status"] == "pass"
    assert check_of(data, "host.hypervisor")["evidence"]["nested_exposed"] is True


def test_one_cpu_is_singular_in_the_warning():
    # Found with virtwhat-esx4.1: the warning said "1 logical CPUs".
    check = check_of(report("virtwhat-esx4.1", "kvm"), "resources.cpus")
    assert check["status"] == "warn"
    assert check["summary"].startswith("1 logical CPU;")


# -- issue 13: the two invariants, over every fixture ------------------------------------------------
@pytest.mark.parametrize(("host", "target"), CASES)
def test_no_cpu_arch_pass_while_the_kernels_word_size_is_unknown(host, target):
    data = report(host, target)
    check = check_of(data, "cpu.arch")
    if check["evidence"].get("bits") is None:
        assert check["status"] != "pass", check["summary"]
    if data["host"]["arch"] == "x86":
        assert check["status"] != "pass"
    if check["status"] == "pass" and target == "workstation":
        assert data["host"]["arch"] == "x86_64" and check["evidence"]["bits"] == 64


@pytest.mark.parametrize(("host", "target"), CASES)
def test_no_bare_metal_where_any_evidence_names_a_hypervisor(host, target):
    data = report(host, target)
    check = check_of(data, "host.hypervisor")
    suggested = [clue for clue in check["evidence"]["clues"] if clue["suggests"] is not None]
    if suggested:
        assert data["host"]["hypervisor"] is not None, suggested
        assert "bare metal" not in check["summary"], (check["summary"], suggested)
    if data["host"]["hypervisor"] is None:
        assert data["host"]["hypervisor_vendor"] is None


# -- issue 13: what each class must come out as (the recorded answer of another tool in _capture/oracle.md) ----
# host -> (host.arch, bits, hypervisor, vendor)
ARCH_AND_HYPERVISOR = {
    # class 1: the architecture from cpuinfo alone
    "lscpu-old-ia64-hprx1620": ("ia64", 64, None, None),
    "ansible-sparc-t5-debian-ldom-24vcpu": ("sparc64", 64, "ldoms", None),
    "lscpu-loongarch-loongson_3a5000_hv": ("loongarch64", 64, None, None),
    "lscpu-loongarch-kvm_on_loongson_3c6000": ("loongarch64", 64, "qemu", None),
    "pycpuinfo-mips64el-loongson3a3000": ("mips", None, None, None),  # cpuinfo shows the CPU's ISAs, not the kernel's width
    "lkml2003-alpha": ("alpha", 64, None, None),
    "lkml2003-parisc64-a500": ("parisc", None, None, None),  # PA-RISC 2.0 runs either kernel
    "lscpu-ppc-qemu": ("ppc", 32, "qemu", None),
    "lkml2003-s390-redhat-2.4.9": ("s390", None, None, None),  # 2.4 prints no features line; a 9672 could run without PR/SM
    "ansible-armv7-rev3-8cpu": ("armv7l", 32, None, None),
    "pycpuinfo-armv6l-raspberry-pi-b": ("armv6l", 32, None, None),
    "lscpu-rv64-visionfive2": ("riscv64", 64, None, None),
    # class 2: a 64-bit-capable CPU under a 32-bit kernel
    "ubuntuforums-i686-core2-e8400": ("i686", 32, None, None),
    "lscpu-old-i386-xenpara": ("i686", 32, "xen", None),
    # class 4: guests that look like bare metal
    "pycpuinfo-ppc64le-fedora24": ("powerpc", 64, "qemu", None),  # byte order not in the capture
    "lscpu-ppc64-POWER7-64cpu": ("powerpc", 64, "powervm", "ibm"),
    "virtwhat-ppc64-baremetal": ("powerpc", 64, None, None),
    "lscpu-s390-lpar": ("s390x", 64, "lpar", "ibm"),
    "lscpu-s390-zvm": ("s390x", 64, "zvm", "ibm"),
    "pycpuinfo-s390x-fedora5": ("s390x", 64, "unknown", None),
    "virtwhat-alibaba-cloud-x86": ("x86_64", 64, "kvm", "alibaba"),
    "virtwhat-nutanix-ahv": ("x86_64", 64, "kvm", "nutanix"),
    "virtwhat-rhev": ("x86_64", 64, "kvm", "redhat"),
    "virtwhat-aws-kvm-x86": ("x86_64", 64, "kvm", "amazon"),
    "virtwhat-aws-baremetal-x86": ("x86_64", 64, None, None),
    "virtwhat-lkvm-arm": ("aarch64", 64, "kvm", "kvmtool"),
    "virtwhat-esx-arm": ("aarch64", 64, "vmware", "vmware"),
    "virtwhat-qemu-arm": ("aarch64", 64, "qemu", None),
    "virtwhat-kvm": ("x86_64", 64, "qemu", None),  # its KVM shows only in CPUID, which a tree lacks
}


@pytest.mark.parametrize("host", sorted(ARCH_AND_HYPERVISOR))
def test_architecture_and_hypervisor_of_each_class(host):
    arch, bits, hypervisor, vendor = ARCH_AND_HYPERVISOR[host]
    data = report(host, "kvm")
    assert data["host"]["arch"] == arch
    assert check_of(data, "cpu.arch")["evidence"]["bits"] == bits
    assert (data["host"]["hypervisor"], data["host"]["hypervisor_vendor"]) == (hypervisor, vendor)


@pytest.mark.parametrize("host", sorted(ARCH_AND_HYPERVISOR))
def test_every_non_x86_or_32_bit_host_fails_cpu_arch_cleanly_for_workstation(host):
    check = check_of(report(host, "workstation"), "cpu.arch")
    if ARCH_AND_HYPERVISOR[host][0] != "x86_64":
        assert check["status"] == "fail", check["summary"]


def test_cpuinfo_lines_that_decide_the_architecture_are_evidence():
    clues = check_of(report("ubuntuforums-i686-core2-e8400", "workstation"), "cpu.arch")["evidence"]["clues"]
    cpuinfo_clue = next(clue for clue in clues if clue["source"] == "/proc/cpuinfo")
    assert any(line.startswith("fdiv_bug") for line in cpuinfo_clue["lines"])
    assert "CONFIG_X86_32" in cpuinfo_clue["reason"]
    s390 = check_of(report("lscpu-s390-zvm", "workstation"), "cpu.arch")["evidence"]["clues"][0]
    assert any("zarch" in line for line in s390["lines"])


def test_a_32_bit_kernel_with_lm_says_the_cpu_could_run_a_64_bit_one():
    check = check_of(report("ubuntuforums-i686-core2-e8400", "workstation"), "cpu.arch")
    assert check["status"] == "fail"
    assert check["summary"].startswith("i686: a 32-bit x86 kernel")
    assert "long mode" in check["remediation"]


# class 3: host -> (cpu_ept or cpu_npt, status for workstation)
HARDWARE_MMU = {
    "lkml2010-x86_64-core2-e6550": ("cpu_ept", False, "fail"),  # tpr_shadow vnmi flexpriority, no ept: Core 2 has no EPT
    "ubuntuforums-i686-core2-e8400": ("cpu_ept", False, "fail"),
    "ansible-x86_64-8cpu": ("cpu_ept", True, "warn"),  # EPT; unrestricted guest not printed before 5.6
    "virtwhat-aws-baremetal-x86": ("cpu_ept", True, "warn"),
    "ansible-x86_64-4cpu": ("cpu_npt", False, "fail"),  # K8 rev F: a kernel with vmmcall would print npt
    "lscpu-old-x86_64-hpdl585": ("cpu_npt", None, "warn"),  # Barcelona has RVI; this kernel names no SVM feature
}


@pytest.mark.parametrize("host", sorted(HARDWARE_MMU))
def test_ept_and_npt_from_what_the_kernel_prints(host):
    key, value, status = HARDWARE_MMU[host]
    check = check_of(report(host, "workstation"), "cpu.hardware-mmu")
    assert check["evidence"][key] is value
    assert check["status"] == status, check["summary"]
    assert check["evidence"]["cpuinfo_lines"] and check["evidence"]["cpuinfo_lines"][0].startswith("flags")
    if value is None:
        assert "cannot confirm" in check["summary"] and "lacks" not in check["summary"]


def test_xen_pv_guest_hides_pse_and_pge():
    data = report("lscpu-old-i386-xenpara", "workstation")
    evidence = check_of(data, "host.hypervisor")["evidence"]
    assert evidence["xen_guest_type"] == "PV"
    assert check_of(data, "cpu.hardware-mmu")["status"] == "skip"


def test_ibm_z_lpar_passes_host_hypervisor_without_calling_it_bare_metal():
    check = check_of(report("lscpu-s390-lpar", "kvm"), "host.hypervisor")
    assert check["status"] == "pass"
    assert "LPAR" in check["summary"] and "bare metal" not in check["summary"]
    assert check["evidence"]["clues"][0]["source"] == "/proc/sysinfo"


def test_powernv_and_ec2_metal_are_bare_metal_on_evidence():
    for host in ("virtwhat-ppc64-baremetal", "virtwhat-aws-baremetal-x86"):
        check = check_of(report(host, "kvm"), "host.hypervisor")
        assert check["status"] == "pass" and "bare metal" in check["summary"]
        assert any(clue["suggests"] is None for clue in check["evidence"]["clues"])

