"""Every check's pass, warn/fail, skip and error paths on small scenario trees.

The live KVM checks (kvm.access, kvm.api, kvm.capabilities, kvm.create-vm,
kvm.guest) have their own module, test_live_checks.py; everything else is
here.  Trees come from tests/treebuilder.py, live facts from tests/fakes.py.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Optional, Sequence

import pytest
from fakes import GIB, FakeKvmBackend, FakeLiveSystem
from treebuilder import (
    KVM_GID,
    QEMU_DMI,
    Tree,
    aarch64_machine,
    amd_desktop,
    char_node,
    i686_kernel,
    intel_desktop,
    kvm_guest,
    kvm_node,
    lockdown_text,
    make_facts,
    openstack_nova_guest,
    pvm_host,
    run_check,
    without_kernel_width,
    x86_machine,
)

from kvmready import vmware_caps
from kvmready.checks import REGISTRY
from kvmready.facts.kernel import parse_release
from kvmready.model import Severity, Status

WS, KVM = "workstation", "kvm"


def user(**kwargs) -> FakeLiveSystem:
    kwargs.setdefault("groups", (1000, KVM_GID))
    return FakeLiveSystem(**kwargs)


def root(**kwargs) -> FakeLiveSystem:
    return FakeLiveSystem.root(**kwargs)


# --- coverage of the registry ------------------------------------------------------
def test_every_registered_check_is_exercised_by_these_tests_or_the_live_ones():
    here = Path(__file__).read_text()
    live = (Path(__file__).parent / "test_live_checks.py").read_text()
    named = set(re.findall(r'"([a-z]+\.[a-z0-9-]+)"', here + live))
    missing = sorted(set(REGISTRY) - named)
    assert not missing, f"checks without tests: {missing}"


# --- cpu.arch ------------------------------------------------------------------------
def test_arch_x86_64_passes_for_workstation():
    result = run_check("cpu.arch", intel_desktop())
    assert result.status is Status.PASS
    assert "x86_64" in result.summary
    assert result.evidence["arch"] == "x86_64"


def test_arch_aarch64_fails_for_workstation_but_passes_for_kvm():
    ws = run_check("cpu.arch", aarch64_machine(), WS)
    assert ws.status is Status.FAIL
    assert "aarch64" in ws.summary and "x86_64" in ws.summary
    assert "x86_64 machine" in ws.remediation
    assert run_check("cpu.arch", aarch64_machine(), KVM).status is Status.PASS


def test_arch_from_the_cpuinfo_format_when_the_sysctl_is_missing():
    result = run_check("cpu.arch", intel_desktop(arch_file=False))
    assert result.status is Status.PASS
    assert result.evidence["source"] == "/proc/cpuinfo (format)"


def test_arch_unknown_is_an_error_not_the_analysing_machines_arch():
    tree = intel_desktop(arch_file=False, kernel="6.8.0-45-generic").without("/proc/cpuinfo")
    result = run_check("cpu.arch", tree)
    assert result.status is Status.ERROR
    assert "cannot tell the architecture" in result.summary


def test_arch_32_bit_kernel_on_a_64_bit_cpu_fails_for_workstation():
    # The class the hardware-probe captures showed: `lm` in the flags, an i686 kernel running.
    tree = i686_kernel(intel_desktop())
    ws = run_check("cpu.arch", tree, WS)
    assert ws.status is Status.FAIL
    assert ws.summary.startswith("i686: a 32-bit x86 kernel")
    assert "64-bit (x86_64/amd64) distribution" in ws.remediation and "`lm`" in ws.remediation
    assert (ws.evidence["family"], ws.evidence["bits"]) == ("x86", 32)
    assert ws.evidence["source"] == "/proc/sys/kernel/osrelease (suffix)"
    assert run_check("cpu.arch", tree, KVM).status is Status.WARN


def test_arch_32_bit_kernel_shown_by_fdiv_bug_alone():
    tree = i686_kernel(intel_desktop()).without("/proc/sys/kernel/osrelease", "/proc/version", "/proc/modules")
    result = run_check("cpu.arch", tree, WS)
    assert result.status is Status.FAIL
    assert result.evidence["source"] == "/proc/cpuinfo (format)"
    assert any("fdiv_bug" in line for clue in result.evidence["clues"] for line in clue["lines"])


def test_arch_x86_of_unknown_width_never_passes():
    tree = without_kernel_width(intel_desktop())
    ws = run_check("cpu.arch", tree, WS)
    assert ws.status is Status.ERROR
    assert "cannot tell whether the kernel is 32- or 64-bit" in ws.summary and "`lm`" in ws.summary
    assert (ws.evidence["arch"], ws.evidence["bits"]) == ("x86", None)
    assert run_check("cpu.arch", tree, KVM).status is Status.WARN


def test_arch_x86_width_from_module_addresses():
    tree = without_kernel_width(intel_desktop()).with_files({"/proc/modules": "kvm 1 0 - Live 0xffffffffc0780000\n"})
    result = run_check("cpu.arch", tree, WS)
    assert result.status is Status.PASS
    assert result.evidence["source"] == "/proc/modules (address width)"


def test_arch_cpuinfo_without_x86_signature_is_not_x86_not_an_error():
    tree = intel_desktop(arch_file=False).with_files({"/proc/cpuinfo": "processor\t: 0\nBogoMIPS\t: 50.00\nCPU revision\t: 1\n"})
    ws = run_check("cpu.arch", tree, WS)
    assert ws.status is Status.FAIL
    assert ws.summary.startswith("not an x86 machine")
    assert run_check("cpu.arch", tree, KVM).status is Status.ERROR


CPUINFOS = {
    "ia64": "processor  : 0\nvendor     : GenuineIntel\narch       : IA-64\nfamily     : Itanium 2\n",
    "sparc64": "cpu\t\t: TI UltraSparc IIi\ntype\t\t: sun4u\nncpus probed\t: 1\n",
    "alpha": "cpu\t\t\t: Alpha\ncpu model\t\t: EV56\n",
    "armv7l": "processor\t: 0\nmodel name\t: ARMv7 Processor rev 3 (v7l)\nCPU implementer\t: 0x41\nCPU architecture: 7\n",
    "s390": "vendor_id       : IBM/S390\n# processors    : 1\nbogomips per cpu: 612.76\nfeatures\t: esan3 msa\n",
    "mips": "cpu model\t\t: MIPS P5600 V3.0\nisa\t\t\t: mips1 mips2 mips32r1 mips32r2\nASEs implemented\t: vz msa\n",
    "mips64-novz": "cpu model\t\t: R10000\nisa\t\t\t: mips1 mips2 mips3 mips4\nASEs implemented\t:\n",
    "loongarch64": "processor\t\t: 0\nCPU Family\t\t: Loongson-64bit\nISA\t\t\t: loongarch32 loongarch64\nFeatures\t\t: cpucfg lam lvz\n",
    "riscv64": "processor\t: 0\nhart\t\t: 0\nisa\t\t: rv64imafdch\nmmu\t\t: sv39\n",
    "ppc": "processor\t: 0\ncpu\t\t: 750\nrevision\t: 2.2\nmotherboard\t: iMac MacRISC Power Macintosh\n",
}


@pytest.mark.parametrize(
    ("name", "label", "kvm"),
    [
        ("ia64", "ia64", Status.FAIL),
        ("sparc64", "sparc64", Status.FAIL),
        ("alpha", "alpha", Status.FAIL),
        ("armv7l", "armv7l", Status.FAIL),  # 32-bit ARM hosts lost KVM in Linux 5.7
        ("s390", "s390", Status.FAIL),  # a 31-bit kernel (no zarch)
        ("mips", "mips", Status.WARN),  # a 32-bit MIPS kernel with VZ
        ("mips64-novz", "mips", Status.FAIL),  # no VZ: no KVM whatever the width
        ("loongarch64", "loongarch64", Status.PASS),
        ("riscv64", "riscv64", Status.PASS),
        ("ppc", "ppc", Status.WARN),
    ],
)
def test_arch_of_every_family_fails_workstation_cleanly_and_kvm_by_family(name, label, kvm):
    tree = Tree({"/proc/cpuinfo": CPUINFOS[name]})
    ws = run_check("cpu.arch", tree, WS)
    assert ws.status is Status.FAIL, ws.summary
    assert ws.summary.startswith(f"{label}:")
    result = run_check("cpu.arch", tree, KVM)
    assert result.status is kvm, result.summary
    assert result.evidence["arch"] == label
    for check_id in ("cpu.virtualization", "cpu.hardware-mmu", "cpu.firmware"):
        assert run_check(check_id, tree, WS).status is Status.SKIP, check_id


# --- cpu.virtualization ----------------------------------------------------------------
def test_virtualization_vmx_on_every_cpu_passes():
    result = run_check("cpu.virtualization", intel_desktop(cpus=8))
    assert result.status is Status.PASS
    assert "VT-x (vmx) on all 8 CPUs" in result.summary
    assert result.evidence["cpus_with_vmx"] == 8


def test_virtualization_svm_on_every_cpu_passes():
    result = run_check("cpu.virtualization", amd_desktop(cpus=16))
    assert result.status is Status.PASS
    assert "AMD-V (svm) on all 16 CPUs" in result.summary


def test_virtualization_vmx_on_some_cpus_only_fails_with_firmware_advice():
    result = run_check("cpu.virtualization", intel_desktop(cpus=8, flag_cpus=range(6)), KVM)
    assert result.status is Status.FAIL
    assert "only 6 of 8 CPUs" in result.summary
    assert "Intel Virtualization Technology" in result.remediation
    assert result.evidence["cpus_with_vmx"] == 6 and result.evidence["cpus_with_flags"] == 8


def test_virtualization_intel_without_vmx_and_without_kvm_intel_hints_that_firmware_hides_vmx():
    tree = intel_desktop(vmx=False, modules=("kvm",), kvm_present=False)
    result = run_check("cpu.virtualization", tree)
    assert result.status is Status.FAIL
    assert "firmware disabled it and the kernel hides the flag" in result.summary
    assert "Intel Virtualization Technology" in result.remediation
    assert "cpu.firmware" in result.remediation and "IA32_FEATURE_CONTROL" in result.remediation


def test_virtualization_amd_without_svm_fails_with_svm_mode_advice():
    tree = amd_desktop(svm=False, modules=("kvm",), kvm_present=False)
    result = run_check("cpu.virtualization", tree, KVM)
    assert result.status is Status.FAIL
    assert "no AMD-V (svm)" in result.summary
    assert "SVM Mode" in result.remediation


def test_virtualization_pvm_fails_for_workstation_and_warns_for_kvm():
    ws = run_check("cpu.virtualization", pvm_host(), WS)
    assert ws.status is Status.FAIL
    assert "kvm_pvm" in ws.summary and "PVM-enabled Linux guest" in ws.summary
    assert "unmodified operating systems" in ws.remediation
    assert "nested" in ws.remediation  # it is a VM under KVM: says how to expose VT-x
    assert ws.evidence["kvm_module"] == "kvm_pvm"
    kvm = run_check("cpu.virtualization", pvm_host(), KVM)
    assert kvm.status is Status.WARN
    assert "PVM-enabled guest kernels" in kvm.remediation


def test_virtualization_guest_without_vmx_names_the_outer_hypervisor():
    tree = kvm_guest(nested=False)
    ws = run_check("cpu.virtualization", tree, WS, live=user(cpuid="KVMKVMKVM"))
    assert ws.status is Status.FAIL
    assert "a VM under kvm" in ws.summary
    assert "host-passthrough" in ws.remediation and "nested=1" in ws.remediation
    assert ws.evidence["hypervisor"] == "kvm"
    assert run_check("cpu.virtualization", tree, KVM).status is Status.WARN


def test_virtualization_guest_under_vmware_says_how_vmware_exposes_vtx():
    tree = kvm_guest(nested=False, dmi={"sys_vendor": "VMware, Inc.", "product_name": "VMware Virtual Platform"},
                     clocksource="tsc")
    result = run_check("cpu.virtualization", tree)
    assert result.status is Status.FAIL
    assert "under vmware" in result.summary
    assert "vhv.enable" in result.remediation


def test_virtualization_without_cpuinfo_is_an_error_naming_the_file():
    result = run_check("cpu.virtualization", intel_desktop().without("/proc/cpuinfo"))
    assert result.status is Status.ERROR
    assert "/proc/cpuinfo" in result.summary


def test_virtualization_on_arm_is_skipped_for_workstation_and_judged_by_the_kvm_module_for_kvm():
    ws = run_check("cpu.virtualization", aarch64_machine(), WS)
    assert ws.status is Status.SKIP
    assert "cpu.arch" in ws.summary
    kvm = run_check("cpu.virtualization", aarch64_machine(), KVM)
    assert kvm.status is Status.PASS
    assert "kernel provides KVM" in kvm.summary


# --- cpu.hardware-mmu ----------------------------------------------------------------
def test_hardware_mmu_ept_and_unrestricted_guest_pass():
    result = run_check("cpu.hardware-mmu", intel_desktop())
    assert result.status is Status.PASS
    assert "EPT and unrestricted guest" in result.summary
    assert result.evidence["cpu_ept"] is True and result.evidence["kvm_intel_ept"] is True


def test_hardware_mmu_kvm_intel_ept_off_fails_for_workstation_warns_for_kvm():
    tree = intel_desktop(params={"kvm_intel": {"ept": "N"}})
    ws = run_check("cpu.hardware-mmu", tree, WS)
    assert ws.status is Status.FAIL
    assert "ept=N" in ws.summary
    assert "kvm_intel ept=0" in ws.remediation
    assert ws.evidence["kvm_intel_ept"] is False
    assert run_check("cpu.hardware-mmu", tree, KVM).status is Status.WARN


def test_hardware_mmu_cpu_without_ept_or_unrestricted_guest_fails_for_workstation():
    tree = intel_desktop(vmx_flags="vnmi preemption_timer invvpid tsc_offset vtpr vapic")
    result = run_check("cpu.hardware-mmu", tree)
    assert result.status is Status.FAIL
    assert "lacks EPT and unrestricted guest" in result.summary
    assert "shadow paging" in result.summary


OLD_KERNEL_VMX_FEATURES = ("ept", "tpr_shadow", "vnmi", "flexpriority", "vpid", "ept_ad", "cpuid")


def test_hardware_mmu_kernel_that_names_no_vmx_features_cannot_confirm():
    # A kernel before the VMX feature names (and without 4.12's `cpuid` flag): no `ept` proves nothing.
    tree = intel_desktop(vmx_flags=None, modules=("kvm",), remove_flags=OLD_KERNEL_VMX_FEATURES)
    result = run_check("cpu.hardware-mmu", tree, WS)
    assert result.status is Status.WARN
    assert "cannot confirm" in result.summary
    assert "names no VMX features" in result.summary
    assert "modprobe kvm_intel" in result.remediation
    assert result.evidence["cpu_ept"] is None


def test_hardware_mmu_pre_5_9_flags_line_with_vmx_features_but_no_ept_proves_no_ept():
    # Core 2 under a kernel before `vmx flags`: tpr_shadow vnmi flexpriority, no ept (lkml2010-x86_64-core2-e6550).
    tree = intel_desktop(vmx_flags=None, modules=("kvm",), remove_flags=("ept", "vpid", "ept_ad", "cpuid"))
    ws = run_check("cpu.hardware-mmu", tree, WS)
    assert ws.status is Status.FAIL
    assert "lacks EPT" in ws.summary and "tpr_shadow" in ws.summary
    assert ws.evidence["cpu_ept"] is False
    assert ws.evidence["cpuinfo_lines"][0].startswith("flags")
    assert run_check("cpu.hardware-mmu", tree, KVM).status is Status.WARN


def test_hardware_mmu_pre_5_9_ept_in_flags_line():
    tree = intel_desktop(vmx_flags=None, modules=("kvm",))
    result = run_check("cpu.hardware-mmu", tree, WS)
    assert result.status is Status.WARN  # EPT yes; unrestricted guest unknown without `vmx flags` or kvm_intel
    assert "VT-x with EPT" in result.summary and "cannot confirm unrestricted guest" in result.summary
    assert run_check("cpu.hardware-mmu", intel_desktop(vmx_flags=None), WS).status is Status.PASS  # kvm_intel says Y


def test_hardware_mmu_amd_old_kernel_without_svm_features_cannot_confirm():
    old = ("npt", "lbrv", "svm_lock", "nrip_save", "tsc_scale", "vmcb_clean", "flushbyasid", "decodeassists",
           "pausefilter", "pfthreshold", "avic", "v_vmsave_vmload", "vgif", "cpuid")
    result = run_check("cpu.hardware-mmu", amd_desktop(modules=("kvm",), remove_flags=old), WS)
    assert result.status is Status.WARN
    assert "cannot confirm nested page tables" in result.summary
    assert result.evidence["cpu_npt"] is None


def test_hardware_mmu_amd_k8_without_svm_features_on_a_newer_kernel_lacks_npt():
    # Opteron 2216 (K8 rev F) under RHEL 7: svm, no SVM features at all, but `vmmcall` dates the kernel.
    old = ("npt", "lbrv", "svm_lock", "nrip_save", "tsc_scale", "vmcb_clean", "flushbyasid", "decodeassists",
           "pausefilter", "pfthreshold", "avic", "v_vmsave_vmload", "vgif", "cpuid")
    result = run_check("cpu.hardware-mmu", amd_desktop(modules=("kvm",), remove_flags=old, add_flags=("vmmcall",)), WS)
    assert result.status is Status.FAIL
    assert "vmmcall" in result.summary


def test_hardware_mmu_amd_npt_passes():
    result = run_check("cpu.hardware-mmu", amd_desktop())
    assert result.status is Status.PASS
    assert "NPT" in result.summary
    assert {key: result.evidence[key] for key in ("cpu_npt", "kvm_amd_npt")} == {"cpu_npt": True, "kvm_amd_npt": True}
    assert result.evidence["basis"] == "`npt` in the flags line"


def test_hardware_mmu_kvm_amd_npt_0_fails_for_workstation_warns_for_kvm():
    tree = amd_desktop(params={"kvm_amd": {"npt": "0"}})
    ws = run_check("cpu.hardware-mmu", tree, WS)
    assert ws.status is Status.FAIL
    assert "npt=0" in ws.summary and "kvm_amd npt=0" in ws.remediation
    assert run_check("cpu.hardware-mmu", tree, KVM).status is Status.WARN


def test_hardware_mmu_amd_cpu_without_npt_fails():
    result = run_check("cpu.hardware-mmu", amd_desktop(remove_flags=("npt",)))
    assert result.status is Status.FAIL
    assert "nested page tables" in result.summary


def test_hardware_mmu_skips_without_vmx_or_svm():
    result = run_check("cpu.hardware-mmu", pvm_host())
    assert result.status is Status.SKIP
    assert "cpu.virtualization" in result.summary


# --- cpu.firmware ----------------------------------------------------------------------
def test_firmware_visible_vmx_passes_even_offline():
    result = run_check("cpu.firmware", intel_desktop())
    assert result.status is Status.PASS
    assert "vmx on every CPU" in result.summary


def test_firmware_loaded_kvm_amd_proves_svm_is_on():
    result = run_check("cpu.firmware", amd_desktop(), live=user())
    assert result.status is Status.PASS
    assert "kvm_amd is loaded" in result.summary


def test_firmware_amd_as_root_with_vm_cr_svmdis_fails():
    tree = amd_desktop(svm=False, modules=("kvm",), kvm_present=False)
    live = root(msr={0xC0010114: 0x18})  # SVMDIS | LOCK
    result = run_check("cpu.firmware", tree, live=live)
    assert result.status is Status.FAIL
    assert "SVMDIS=1" in result.summary
    assert "SVM Mode" in result.remediation
    assert result.evidence["register"] == "0xC0010114"
    assert result.evidence["svm_disabled"] is True and result.evidence["locked"] is True
    assert ("read_msr", 0xC0010114, 0) in live.calls


def test_firmware_amd_as_root_with_vm_cr_clear_passes():
    tree = amd_desktop(svm=False, modules=("kvm",), kvm_present=False)
    result = run_check("cpu.firmware", tree, live=root(msr={0xC0010114: 0x0}))
    assert result.status is Status.PASS
    assert "SVMDIS=0" in result.summary


def test_firmware_intel_locked_with_vmx_outside_smx_off_fails():
    tree = intel_desktop(vmx=False, modules=("kvm",), kvm_present=False)
    result = run_check("cpu.firmware", tree, live=root(msr={0x3A: 0x1}))
    assert result.status is Status.FAIL
    assert "disabled in firmware and locked" in result.summary
    assert "Intel Virtualization Technology" in result.remediation
    assert result.evidence["register"] == "0x3A"
    assert result.evidence["value"] == "0x1"
    assert result.evidence["locked"] is True and result.evidence["vmx_outside_smx"] is False


@pytest.mark.parametrize(
    "value, words",
    [(0x5, "lock=1, VMX outside SMX=1"), (0x0, "unlocked")],
)
def test_firmware_intel_feature_control_enabled_or_unlocked_passes(value, words):
    tree = intel_desktop(vmx=False, modules=("kvm",), kvm_present=False)
    result = run_check("cpu.firmware", tree, live=root(msr={0x3A: value}))
    assert result.status is Status.PASS
    assert words in result.summary


def test_firmware_not_root_skips_and_says_root_would_read_the_msr():
    tree = intel_desktop(vmx=False, modules=("kvm",), kvm_present=False)
    live = user(msr={0x3A: 0x1})
    result = run_check("cpu.firmware", tree, live=live)
    assert result.status is Status.SKIP
    assert "run as root" in result.summary and "IA32_FEATURE_CONTROL" in result.summary
    assert result.evidence["skipped"] == "reading MSRs needs root"
    assert not [call for call in live.calls if call[0] == "read_msr"]


def test_firmware_missing_msr_device_skips_mentioning_modprobe_msr():
    tree = amd_desktop(svm=False, modules=("kvm",), kvm_present=False)
    result = run_check("cpu.firmware", tree, live=root(msr_errno=errno.ENOENT))
    assert result.status is Status.SKIP
    assert "modprobe msr" in result.summary and "/dev/cpu/0/msr" in result.summary
    assert result.evidence["error"]["errno_name"] == "ENOENT"


def test_firmware_msr_read_error_skips_with_the_errno():
    tree = intel_desktop(vmx=False, modules=("kvm",), kvm_present=False)
    result = run_check("cpu.firmware", tree, live=root(msr_errno=errno.EIO))
    assert result.status is Status.SKIP
    assert "EIO" in result.summary


def test_firmware_offline_without_visible_vmx_skips_with_the_offline_reason():
    tree = intel_desktop(vmx=False, modules=("kvm",), kvm_present=False)
    result = run_check("cpu.firmware", tree)
    assert result.status is Status.SKIP
    assert "needs the machine itself" in result.summary and "--root" in result.summary


def test_firmware_skips_off_x86():
    assert run_check("cpu.firmware", aarch64_machine(), KVM).status is Status.SKIP


def test_firmware_inside_a_vm_does_not_blame_the_firmware_setup():
    """Inside a VM the MSR is the hypervisor's: skipped, saying so (not an error, not a firmware fix)."""
    tree = kvm_guest(nested=False)
    result = run_check("cpu.firmware", tree, live=root(msr={0x3A: 0x1}, cpuid="KVMKVMKVM"))
    assert result.status is Status.SKIP
    assert result.summary.startswith("a VM under kvm: its MSRs are the hypervisor's virtual registers")
    assert result.remediation is None


# --- cpu.timekeeping --------------------------------------------------------------------
def test_timekeeping_invariant_tsc_passes():
    result = run_check("cpu.timekeeping", intel_desktop())
    assert result.status is Status.PASS
    assert "constant_tsc, nonstop_tsc" in result.summary


def test_timekeeping_without_nonstop_tsc_warns():
    result = run_check("cpu.timekeeping", intel_desktop(remove_flags=("nonstop_tsc",)))
    assert result.status is Status.WARN
    assert "nonstop_tsc" in result.summary and "constant_tsc" not in result.summary
    assert "chrony" in result.remediation
    assert result.evidence["nonstop_tsc"] is False


def test_timekeeping_skips_off_x86():
    assert run_check("cpu.timekeeping", aarch64_machine(), KVM).status is Status.SKIP


# --- kernel.version -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "target, release, status, words",
    [
        (WS, "5.4.0-150-generic", Status.FAIL, "older than 5.10.0"),
        (WS, "5.15.0-100-generic", Status.WARN, "5.17.0+ is recommended"),
        (WS, "6.8.0-45-generic", Status.PASS, "needs 5.10.0+"),
        (KVM, "2.6.18-419.el5", Status.FAIL, "older than 2.6.22"),
        (KVM, "4.4.0-210-generic", Status.WARN, "4.5.0+ is recommended"),
        (KVM, "5.4.0-150-generic", Status.PASS, "needs 2.6.22+"),
    ],
)
def test_kernel_version_against_the_targets_minimum_and_recommendation(target, release, status, words):
    result = run_check("kernel.version", intel_desktop(kernel=release), target)
    assert result.status is status
    assert words in result.summary
    assert result.evidence["release"] == release


def test_kernel_version_below_minimum_says_what_the_minimum_brings():
    result = run_check("kernel.version", intel_desktop(kernel="5.4.0-150-generic"), WS)
    assert "KVM_CAP_X86_USER_SPACE_MSR" in result.summary
    assert "5.10.0 or newer" in result.remediation


RHEL8 = "4.18.0-513.5.1.el8_9.x86_64"


@pytest.mark.parametrize(("capabilities", "status", "words"), [
    ({"KVM_CAP_X86_USER_SPACE_MSR": 1, "KVM_CAP_XSAVE2": 4096}, Status.PASS, "answers live: the feature is backported"),
    ({"KVM_CAP_X86_USER_SPACE_MSR": 1, "KVM_CAP_XSAVE2": 0}, Status.WARN, "but not KVM_CAP_XSAVE2"),
    ({"KVM_CAP_X86_USER_SPACE_MSR": 0}, Status.FAIL, "older than 5.10.0"),
])
def test_kernel_version_below_the_minimum_with_the_capability_live_is_a_backport(capabilities, status, words):
    """Reverted, RHEL 8's 4.18 failed 'older than 5.10' while kvm.capabilities showed KVM_CAP_X86_USER_SPACE_MSR."""
    tree = intel_desktop(kernel=RHEL8, os=("rhel", "8.9"))
    live = FakeLiveSystem(FakeKvmBackend(capabilities=capabilities))
    result = run_check("kernel.version", tree, WS, live=live)
    assert result.status is status and words in result.summary


def test_kernel_version_of_a_backporting_distribution_offline_is_undecided():
    """Offline, a RHEL kernel's number does not tell its KVM features: undecided, not failed."""
    result = run_check("kernel.version", intel_desktop(kernel=RHEL8, os=("rhel", "8.9")), WS)
    assert result.status is Status.SKIP and result.undecided
    assert "rhel kernels carry backported KVM features" in result.summary
    # Other distributions number their kernels as upstream does: the number decides.
    assert run_check("kernel.version", intel_desktop(kernel="5.4.0-150-generic"), WS).status is Status.FAIL


def test_kernel_version_garbage_release_is_an_error():
    result = run_check("kernel.version", intel_desktop(kernel="garbage-kernel"))
    assert result.status is Status.ERROR
    assert "cannot parse the kernel release 'garbage-kernel'" in result.summary


def test_kernel_version_unreadable_release_is_an_error():
    tree = intel_desktop().without("/proc/sys/kernel/osrelease", "/proc/version")
    result = run_check("kernel.version", tree)
    assert result.status is Status.ERROR
    assert "cannot tell the kernel release" in result.summary


def test_kernel_version_falls_back_to_proc_version():
    tree = intel_desktop(kernel="6.1.0-18-amd64").without("/proc/sys/kernel/osrelease")
    result = run_check("kernel.version", tree)
    assert result.status is Status.PASS
    assert result.evidence["source"] == "/proc/version"


# --- kvm.module ------------------------------------------------------------------------------
def test_module_built_in_seen_only_under_sys_module_passes():
    tree = intel_desktop(modules=(), builtin=("kvm", "kvm_intel"), proc_modules_file=False)
    result = run_check("kvm.module", tree)
    assert result.status is Status.PASS
    assert "kvm_intel provides KVM, built into the kernel" == result.summary
    assert result.evidence["module"]["state"] == "builtin"
    assert "ENOENT" in result.evidence["sources"]["/proc/modules"]


def test_module_pvm_built_in_passes():
    result = run_check("kvm.module", pvm_host())
    assert result.status is Status.PASS
    assert result.summary == "kvm_pvm provides KVM, built into the kernel"


def test_module_loaded_through_proc_modules_passes():
    result = run_check("kvm.module", intel_desktop())
    assert result.status is Status.PASS
    assert result.summary == "kvm_intel provides KVM, loaded"
    assert result.evidence["module"]["source"] == "/proc/modules"


def test_module_kvm_without_a_vendor_module_fails_naming_the_vendor_module():
    result = run_check("kvm.module", intel_desktop(modules=("kvm", "irqbypass")))
    assert result.status is Status.FAIL
    assert "no vendor module" in result.summary
    assert "sudo modprobe kvm_intel" in result.remediation
    assert "Operation not supported" in result.remediation


@pytest.mark.parametrize("vendor", ["CentaurHauls", "  Shanghai  "])
def test_module_on_centaur_and_zhaoxin_names_kvm_intel(vendor):
    # Their CPUs implement VMX, which kvm_intel drives (cpuvendors.py), not "kvm_intel or kvm_amd".
    tree = x86_machine(vendor=vendor, model="ZHAOXIN KaiXian KX-U6780A@2.7GHz", extension_flags=["vmx"],
                       modules=("kvm", "irqbypass"))
    result = run_check("kvm.module", tree)
    assert result.status is Status.FAIL
    assert "sudo modprobe kvm_intel" in result.remediation
    assert "kvm_amd" not in result.remediation


@pytest.mark.parametrize("vendor, register", [("  Shanghai  ", 0x3A), ("CentaurHauls", 0x3A), ("HygonGenuine", 0xC0010114)])
def test_firmware_reads_the_msr_of_the_vendors_extension(vendor, register):
    tree = x86_machine(vendor=vendor, model="x86 CPU", extension_flags=[], modules=("kvm",), kvm_present=False)
    live = root(msr={register: 0x0})
    result = run_check("cpu.firmware", tree, live=live)
    assert result.evidence["register"] == f"0x{register:X}"
    assert [call for call in live.calls if call[0] == "read_msr"] == [("read_msr", register, 0)]
    assert result.status is Status.PASS  # 0: unlocked (VT-x) or SVMDIS clear (AMD-V)


def test_module_none_fails_with_modprobe_and_modules_load():
    result = run_check("kvm.module", amd_desktop(modules=("tun",)))
    assert result.status is Status.FAIL
    assert "no KVM module" in result.summary
    assert "sudo modprobe kvm_amd" in result.remediation
    assert "/etc/modules-load.d/kvm.conf" in result.remediation


def test_module_both_sources_unreadable_is_an_error():
    tree = intel_desktop(modules=(), proc_modules_file=False).without("/sys/module")
    result = run_check("kvm.module", tree)
    assert result.status is Status.ERROR
    assert "cannot tell which modules are loaded" in result.summary


# --- kvm.device --------------------------------------------------------------------------------
def test_device_char_10_232_passes():
    result = run_check("kvm.device", intel_desktop())
    assert result.status is Status.PASS
    assert "10:232, mode 0660" in result.summary
    assert result.evidence["device"] == "10:232"


def test_device_with_wrong_numbers_fails():
    tree = intel_desktop(kvm=kvm_node(minor=233))
    result = run_check("kvm.device", tree)
    assert result.status is Status.FAIL
    assert "found char 10:233, expected char 10:232" in result.summary
    assert "udevadm trigger" in result.remediation


def test_device_that_is_a_regular_file_fails():
    tree = intel_desktop(kvm_present=False).with_files({"/dev/kvm": ""})
    result = run_check("kvm.device", tree)
    assert result.status is Status.FAIL
    assert "found file" in result.summary


def test_device_missing_with_module_loaded_suggests_recreating_the_node():
    result = run_check("kvm.device", intel_desktop(kvm_present=False))
    assert result.status is Status.FAIL
    assert result.summary == "/dev/kvm does not exist"
    assert "mknod /dev/kvm c 10 232" in result.remediation


def test_device_missing_without_module_says_load_it():
    result = run_check("kvm.device", intel_desktop(modules=("tun",), kvm_present=False))
    assert result.status is Status.FAIL
    assert "Load the KVM module first" in result.remediation


def test_device_missing_in_a_container_says_pass_the_device():
    tree = intel_desktop(kvm_present=False).with_files({"/.dockerenv": "", "/proc/1/cgroup": "0::/docker/" + "a" * 64 + "\n"})
    result = run_check("kvm.device", tree)
    assert result.status is Status.FAIL
    assert "--device /dev/kvm" in result.remediation


def test_device_missing_beside_a_lone_dockerenv_is_not_blamed_on_a_container():
    """A VM built from a container image keeps /.dockerenv: by itself it proves nothing."""
    result = run_check("kvm.device", intel_desktop(kvm_present=False).with_files({"/.dockerenv": ""}))
    assert result.status is Status.FAIL and "container" not in result.remediation


def test_device_offline_tree_without_dev_skips():
    result = run_check("kvm.device", intel_desktop(dev=False))
    assert result.status is Status.SKIP
    assert "not captured" in result.summary


# --- kvm.nested -----------------------------------------------------------------------------------
def test_nested_y_passes():
    result = run_check("kvm.nested", intel_desktop())
    assert result.status is Status.PASS
    assert "kvm_intel nested=Y" in result.summary
    assert result.evidence["source"] == "/sys/module/kvm_intel/parameters/nested"


def test_nested_1_for_kvm_amd_passes():
    result = run_check("kvm.nested", amd_desktop())
    assert result.status is Status.PASS
    assert "kvm_amd nested=1" in result.summary


def test_nested_n_warns_with_the_modprobe_option():
    result = run_check("kvm.nested", intel_desktop(params={"kvm_intel": {"nested": "N"}}))
    assert result.status is Status.WARN
    assert "nested=N" in result.summary and "WSL2" in result.summary
    assert "options kvm_intel nested=1" in result.remediation
    assert "kvm_intel.nested=1" in result.remediation  # the built-in variant


def test_nested_unexpected_value_warns():
    result = run_check("kvm.nested", intel_desktop(params={"kvm_intel": {"nested": "maybe"}}))
    assert result.status is Status.WARN
    assert "unexpected value 'maybe'" in result.summary


def test_nested_unreadable_parameter_warns_with_the_reason():
    tree = intel_desktop()
    result = run_check("kvm.nested", tree, errors={"/sys/module/kvm_intel/parameters/nested": "Permission denied (EACCES)"})
    assert result.status is Status.WARN
    assert "cannot read /sys/module/kvm_intel/parameters/nested" in result.summary
    assert "EACCES" in result.summary


def test_nested_skips_without_kvm_intel_or_kvm_amd():
    result = run_check("kvm.nested", pvm_host())
    assert result.status is Status.SKIP
    assert result.evidence["kvm_module"] == "kvm_pvm"


# --- vmware.kvm-support ----------------------------------------------------------------------------------
KNOWN_KERNEL = "6.18.3-1-generic"  # within vmware_caps.CHECKED_THROUGH
HYPOTHETICAL = vmware_caps.VmwareCapability("KVM_CAP_X86_VMWARE_TEST", 9001, (7, 2, 0), "the VMware backdoor per VM",
                                            required_bits=0b011)


def _with_vmware_capability(value: int) -> FakeLiveSystem:
    """A live system whose KVM answers the hypothetical capability with `value`."""
    backend = FakeKvmBackend(capabilities_by_number={HYPOTHETICAL.number: value},
                             extra_capability_names={HYPOTHETICAL.number: HYPOTHETICAL.name})
    return root(kvm=backend)


def _kconfig(value: str) -> dict:
    line = f"# {vmware_caps.CONFIG_SYMBOL} is not set" if value == "n" else f"{vmware_caps.CONFIG_SYMBOL}={value}"
    return {f"/boot/config-{KNOWN_KERNEL}": f"CONFIG_KVM=m\n{line}\n"}


def test_kvm_support_on_a_known_kernel_fails_waiting_on_upstream():
    result = run_check("vmware.kvm-support", intel_desktop(kernel=KNOWN_KERNEL), live=root())
    assert result.status is Status.FAIL and result.severity is Severity.REQUIRED
    assert result.waiting_on_upstream
    assert f"Linux {KNOWN_KERNEL} has no VMware KVM support" in result.summary
    assert "no released kernel has it yet" in result.summary and "6.18" in result.summary
    assert "Zack Rusin" in result.remediation and "--skip vmware.kvm-support" in result.remediation
    assert result.evidence["checked_through"] == "6.18.0" and result.evidence["checked_on"] == vmware_caps.CHECKED_ON


def test_kvm_support_is_information_for_the_kvm_target():
    result = run_check("vmware.kvm-support", intel_desktop(kernel=KNOWN_KERNEL), KVM)
    assert result.severity is Severity.INFO


def test_kvm_support_on_a_kernel_newer_than_the_table_is_an_error_never_a_pass():
    result = run_check("vmware.kvm-support", intel_desktop(kernel="7.3.1-100.fc44.x86_64"), live=root())
    assert result.status is Status.ERROR and not result.waiting_on_upstream
    assert "newer than kvmready knows" in result.summary and "Linux 6.18" in result.summary
    assert "Update kvmready" in result.remediation


def test_kvm_support_never_asks_a_capability_before_the_release_that_defines_it(monkeypatch):
    monkeypatch.setattr(vmware_caps, "VMWARE_CAPABILITIES", (HYPOTHETICAL,))
    result = run_check("vmware.kvm-support", intel_desktop(kernel="7.1.9-1-generic"), live=_with_vmware_capability(3))
    assert result.status is Status.ERROR
    assert "ioctl" not in result.evidence and result.evidence["capabilities_defined"] == []


def test_kvm_support_passes_on_the_live_capability_a_release_defines(monkeypatch):
    monkeypatch.setattr(vmware_caps, "VMWARE_CAPABILITIES", (HYPOTHETICAL,))
    result = run_check("vmware.kvm-support", intel_desktop(kernel="7.2.0-1-generic"), live=_with_vmware_capability(0b111))
    assert result.status is Status.PASS
    assert "KVM_CAP_X86_VMWARE_TEST = 7" in result.summary
    assert result.evidence["ioctl"] == "KVM_CHECK_EXTENSION"
    assert result.evidence["values"] == {"KVM_CAP_X86_VMWARE_TEST": 7}


@pytest.mark.parametrize("value", [0, 0b001])  # not offered; offered without every bit Workstation needs
def test_kvm_support_fails_when_kvm_does_not_offer_what_its_release_defines(monkeypatch, value):
    monkeypatch.setattr(vmware_caps, "VMWARE_CAPABILITIES", (HYPOTHETICAL,))
    result = run_check("vmware.kvm-support", intel_desktop(kernel="7.2.0-1-generic"), live=_with_vmware_capability(value))
    assert result.status is Status.FAIL and not result.waiting_on_upstream
    assert "does not offer KVM_CAP_X86_VMWARE_TEST" in result.summary
    assert vmware_caps.CONFIG_SYMBOL in result.remediation


def test_a_defined_vmware_capability_is_queried_by_the_live_probe(monkeypatch):
    monkeypatch.setattr(vmware_caps, "VMWARE_CAPABILITIES", (HYPOTHETICAL,))
    backend = FakeKvmBackend(capabilities_by_number={HYPOTHETICAL.number: 3})
    facts = make_facts(intel_desktop(kernel="7.2.0-1-generic"), user(kvm=backend))
    assert facts.live.kvm.capability_numbers.get(HYPOTHETICAL.name) == HYPOTHETICAL.number
    assert run_check("vmware.kvm-support", facts).status is Status.PASS


@pytest.mark.parametrize("value, status", [("y", Status.PASS), ("m", Status.PASS), ("n", Status.FAIL)])
def test_kvm_support_offline_reads_the_kernel_configuration_of_a_defining_release(monkeypatch, value, status):
    monkeypatch.setattr(vmware_caps, "VMWARE_CAPABILITIES", (HYPOTHETICAL._replace(first_release=(6, 18, 0)),))
    result = run_check("vmware.kvm-support", intel_desktop(kernel=KNOWN_KERNEL).with_files(_kconfig(value)))
    assert result.status is status
    assert result.evidence["kernel_config"]["source"] == f"/boot/config-{KNOWN_KERNEL}"
    assert result.evidence["kernel_config"]["value"] == value


def test_kvm_support_offline_without_configuration_on_a_defining_release_cannot_tell(monkeypatch):
    monkeypatch.setattr(vmware_caps, "VMWARE_CAPABILITIES", (HYPOTHETICAL._replace(first_release=(6, 18, 0)),))
    result = run_check("vmware.kvm-support", intel_desktop(kernel=KNOWN_KERNEL))
    assert result.status is Status.ERROR
    assert "no kernel configuration" in result.summary


def test_kvm_support_out_of_tree_series_in_the_configuration_only_warns():
    """VMware's unmerged series built in: its capability numbers clash with mainline's, so it is never probed."""
    result = run_check("vmware.kvm-support", intel_desktop(kernel=KNOWN_KERNEL).with_files(_kconfig("y")), live=root())
    assert result.status is Status.WARN
    assert "out-of-tree" in result.summary and "clash" in result.summary


def test_kvm_support_reads_proc_config_gz_first():
    import gzip

    config = gzip.compress(f"{vmware_caps.CONFIG_SYMBOL}=y\n".encode())
    tree = intel_desktop(kernel=KNOWN_KERNEL).with_files({"/proc/config.gz": config, **_kconfig("n")})
    result = run_check("vmware.kvm-support", tree)
    assert result.evidence["kernel_config"]["source"] == "/proc/config.gz"
    assert result.status is Status.WARN


def test_kvm_support_with_a_corrupt_config_gz_falls_back_to_boot():
    tree = intel_desktop(kernel=KNOWN_KERNEL).with_files({"/proc/config.gz": b"\x1f\x8b garbage", **_kconfig("y")})
    result = run_check("vmware.kvm-support", tree)
    assert result.evidence["kernel_config"]["source"] == f"/boot/config-{KNOWN_KERNEL}"


def test_kvm_support_without_a_kernel_release_is_an_error():
    tree = intel_desktop().without("/proc/sys/kernel/osrelease", "/proc/version")
    result = run_check("vmware.kvm-support", tree)
    assert result.status is Status.ERROR
    assert "kernel release is unknown" in result.summary


def test_kvm_support_skips_off_x86():
    result = run_check("vmware.kvm-support", aarch64_machine(), KVM)
    assert result.status is Status.SKIP


def test_kvm_support_explanation_carries_its_dated_sources():
    from kvmready.checks import REGISTRY

    spec = REGISTRY["vmware.kvm-support"].spec
    assert any("20250422161304.579394-1-zack.rusin@broadcom.com" in source for source in spec.sources)
    assert any("aIEkrc7Mdf2ia1Mm@google.com" in source for source in spec.sources)
    assert "6.18" in spec.what


# --- vmware.backdoor -----------------------------------------------------------------------------------
@pytest.mark.parametrize("value, state", [("Y", "on for every VM"), ("N", "off")])
def test_backdoor_is_context_whatever_its_value(value, state):
    result = run_check("vmware.backdoor", intel_desktop(params={"kvm": {"enable_vmware_backdoor": value}}))
    assert result.status is Status.PASS and result.severity is Severity.INFO
    assert f"kvm.enable_vmware_backdoor={value}" in result.summary and state in result.summary
    assert "0x5658" in result.detail and "vmware.kvm-support" in result.detail
    assert not result.remediation  # never advises the system-wide switch
    assert result.evidence["value"] == value


def test_backdoor_is_information_for_both_targets():
    for target in (WS, KVM):
        assert run_check("vmware.backdoor", intel_desktop(), target).severity is Severity.INFO


def test_backdoor_parameter_missing_says_this_kernel_has_no_switch():
    tree = intel_desktop().without("/sys/module/kvm/parameters/enable_vmware_backdoor")
    result = run_check("vmware.backdoor", tree)
    assert result.status is Status.PASS
    assert "no system-wide VMware backdoor switch" in result.summary
    assert result.evidence["error"] == "no such parameter"


def test_backdoor_parameter_unreadable_is_not_called_absent():
    """Reverted, an unreadable parameter file passed as 'this kernel's KVM has no system-wide switch'."""
    path = "/sys/module/kvm/parameters/enable_vmware_backdoor"
    result = run_check("vmware.backdoor", intel_desktop(), errors={path: "Permission denied (EACCES)"})
    assert result.status is Status.SKIP
    assert result.summary == f"cannot read the system-wide VMware backdoor switch: {path}: Permission denied (EACCES)"


def test_backdoor_skips_when_kvm_is_not_loaded():
    result = run_check("vmware.backdoor", intel_desktop(modules=("tun",), kvm_present=False))
    assert result.status is Status.SKIP
    assert "kvm.module" in result.summary


def test_backdoor_skips_off_x86():
    result = run_check("vmware.backdoor", aarch64_machine(), KVM)
    assert result.status is Status.SKIP
    assert "x86 interface" in result.summary


# --- conflicts.virtualbox -------------------------------------------------------------------------------------
VBOX = ("vboxnetadp", "vboxnetflt", "vboxdrv")


def vbox_host(kernel: str = "6.14.0-27-generic", version: Optional[str] = "7.1.6 r167084", virt_at_load: Optional[str] = "Y",
              modules: Sequence[str] = ("kvm_intel", "kvm") + VBOX) -> Tree:
    params = {"kvm": {"enable_virt_at_load": virt_at_load}} if virt_at_load is not None else {}
    tree = intel_desktop(kernel=kernel, modules=modules, params=params)
    return tree.with_files({"/sys/module/vboxdrv/version": version + "\n"}) if version is not None else tree


def test_virtualbox_absent_passes():
    result = run_check("conflicts.virtualbox", intel_desktop())
    assert result.status is Status.PASS
    assert result.summary == "no VirtualBox drivers loaded"


def test_virtualbox_7_1_on_6_12_is_told_to_set_virt_at_load_0():
    result = run_check("conflicts.virtualbox", vbox_host(version="7.1.6 r167084"), live=user())
    assert result.status is Status.WARN
    assert "VirtualBox 7.1.6 r167084" in result.summary and "VERR_VMX_IN_VMX_ROOT_MODE" in result.summary
    assert "enable_virt_at_load=0" in result.remediation and "remove" not in result.remediation
    assert "kvm_intel" in result.remediation
    assert result.evidence["kvm_holds_virtualization_from_load"] is True
    assert result.evidence["virtualbox_modules"] == ["vboxdrv", "vboxnetflt", "vboxnetadp"]
    assert result.evidence["virtualbox_version"] == "7.1.6 r167084"


def test_virtualbox_7_2_8_is_the_last_release_that_needs_the_override():
    result = run_check("conflicts.virtualbox", vbox_host(version="7.2.8_Ubuntu r169000"))
    assert "options kvm enable_virt_at_load=0" in result.remediation


def test_virtualbox_7_2_10_with_the_override_is_told_to_remove_it():
    result = run_check("conflicts.virtualbox", vbox_host(version="7.2.10 r170234", virt_at_load="N"))
    assert result.status is Status.WARN
    assert "VERR_SVM_HOST_SVME_NOT_ENABLED" in result.summary
    assert result.remediation.startswith("Let KVM hold VT-x/AMD-V again: remove `enable_virt_at_load=0`")
    assert "options kvm enable_virt_at_load=0" not in result.remediation


def test_virtualbox_7_2_10_beside_kvm_holding_vtx_is_warned_off_the_override():
    result = run_check("conflicts.virtualbox", vbox_host(version="7.2.10 r170234", virt_at_load="Y"))
    assert result.status is Status.WARN
    assert "as VirtualBox 7.2.10 and later need" in result.summary
    assert "Do not add enable_virt_at_load=0" in result.remediation


@pytest.mark.parametrize("virt_at_load", ["Y", "N"])
def test_virtualbox_7_2_10_and_later_on_linux_6_12_itself_still_need_the_override(virt_at_load):
    """void-packages #61332: 7.2.14 works on 6.18, 7.0 and 7.1 but on 6.12 only with enable_virt_at_load=0.
    Reverted, 6.12 with the override was told to remove it, and without it warned off adding it."""
    result = run_check("conflicts.virtualbox", vbox_host(kernel="6.12.48-1-lts", version="7.2.14 r172000",
                                                         virt_at_load=virt_at_load))
    assert result.evidence["linux_6_12_exception"] is True
    assert "remove `enable_virt_at_load=0`" not in (result.remediation or "")
    assert result.status is Status.WARN
    if virt_at_load == "Y":
        assert "on Linux 6.12 itself even VirtualBox 7.2.10 and later cannot start VMs" in result.summary
        assert "options kvm enable_virt_at_load=0" in result.remediation
    else:  # the override is set, as 6.12 needs: what is left is the first-come rule of any two hypervisors
        assert "whichever starts a VM first holds VT-x/AMD-V" in result.summary


def test_virtualbox_between_the_known_releases_says_so():
    """Reverted, 7.2.9 (read) was 'its release, which kvmready could not read'."""
    result = run_check("conflicts.virtualbox", vbox_host(version="7.2.9 r171000"))
    assert "7.2.9 lies between the releases known to need the override (up to 7.2.8)" in result.summary
    assert "could not read" not in result.summary


def test_virtualbox_without_kvm_competes_with_nothing():
    """Reverted, VirtualBox without any KVM module was 'loaded beside KVM ... (KVM with EBUSY)'."""
    result = run_check("conflicts.virtualbox", vbox_host(modules=VBOX, virt_at_load=None))
    assert result.status is Status.PASS and "KVM is not, so they compete with nothing now" in result.summary


def test_virtualbox_versions_compare_as_versions_not_strings():
    """7.2.10 is newer than 7.2.8 (as strings it sorts before it); 7.10 newer than 7.2."""
    from kvmready.checks.conflicts import vbox_release

    assert vbox_release("7.2.10 r170234") > vbox_release("7.2.8 r169000")
    remediation = run_check("conflicts.virtualbox", vbox_host(version="7.10.0 r1", virt_at_load="N")).remediation
    assert remediation.startswith("Let KVM hold VT-x/AMD-V again")


@pytest.mark.parametrize("raw", ["garbage\x1b[31m", "", "r170234 7.2.10", "99999999999999999999.x"])
def test_virtualbox_version_that_does_not_parse_still_decides_and_shows_the_raw_string(raw):
    result = run_check("conflicts.virtualbox", vbox_host(version=raw))
    assert result.status is Status.WARN
    assert "which kvmready could not read" in result.summary
    assert "If VirtualBox is 7.2.8 or older" in result.remediation and "If it is 7.2.10 or newer" in result.remediation
    assert result.evidence["virtualbox_version"] == (raw or None) or result.evidence["virtualbox_version"] == raw


def test_virtualbox_version_file_missing_gives_both_fixes_and_says_why():
    result = run_check("conflicts.virtualbox", vbox_host(version=None))
    assert "If VirtualBox is 7.2.8 or older" in result.remediation
    assert result.evidence["virtualbox_version"] is None
    assert "/sys/module/vboxdrv/version" in result.evidence["virtualbox_version_error"]


def test_virtualbox_on_6_12_without_the_parameter_file_still_assumes_the_default_y():
    result = run_check("conflicts.virtualbox", vbox_host(kernel="6.12.0-1-generic", virt_at_load=None))
    assert result.status is Status.WARN
    assert result.evidence["kvm_holds_virtualization_from_load"] is True


def test_virtualbox_7_1_with_the_override_already_set_uses_first_come_wording():
    result = run_check("conflicts.virtualbox", vbox_host(version="7.1.6 r167084", virt_at_load="N"))
    assert result.status is Status.WARN
    assert "whichever starts a VM first" in result.summary
    assert result.evidence["kvm_holds_virtualization_from_load"] is False


def test_virtualbox_before_6_12_uses_first_come_wording():
    result = run_check("conflicts.virtualbox", vbox_host(kernel="6.6.0-1-generic", virt_at_load=None), live=user())
    assert result.status is Status.WARN
    assert "whichever starts a VM first" in result.summary and "KVM with EBUSY" in result.summary
    assert "modprobe -r vboxnetadp vboxnetflt vboxdrv" in result.remediation
    assert "enable_virt_at_load" not in result.remediation


def test_virtualbox_holding_vtx_now_is_told_by_kvm_create_vm_ebusy():
    live = user(kvm=FakeKvmBackend(create_vm_errno=errno.EBUSY))
    result = run_check("conflicts.virtualbox", vbox_host(kernel="6.6.0-1-generic", virt_at_load=None), live=live)
    assert result.status is Status.WARN
    assert "KVM_CREATE_VM returned EBUSY" in result.summary
    assert "Power off the VirtualBox VMs" in result.remediation
    assert result.evidence["kvm_create_vm_ebusy"] is True


def test_virtualbox_sources_name_the_tracker_tickets():
    from kvmready.checks import REGISTRY

    assert any("711 and 713" in source for source in REGISTRY["conflicts.virtualbox"].spec.sources)


# --- conflicts.vmware-vmmon -------------------------------------------------------------------------------------
def test_vmmon_absent_passes():
    result = run_check("conflicts.vmware-vmmon", intel_desktop())
    assert result.status is Status.PASS
    assert "no legacy VMware drivers" in result.summary


def test_vmmon_loaded_beside_kvm_says_what_is_known_without_claiming_ebusy():
    tree = intel_desktop(modules=("kvm_intel", "kvm", "vmmon", "vmnet"))
    result = run_check("conflicts.vmware-vmmon", tree, live=user())
    assert result.status is Status.PASS
    assert "vmmon, vmnet" in result.summary and "task.c" in result.summary
    assert "EBUSY" not in result.summary
    assert "modprobe -r vmnet vmmon" in result.detail
    assert result.evidence["vmware_modules"] == ["vmmon", "vmnet"]


def test_vmmon_loaded_with_an_observed_ebusy_warns_without_blaming_vmmon():
    tree = intel_desktop(modules=("kvm_intel", "kvm", "vmmon", "vmnet"))
    live = user(kvm=FakeKvmBackend(create_vm_errno=errno.EBUSY))
    result = run_check("conflicts.vmware-vmmon", tree, live=live)
    assert result.status is Status.WARN
    assert "KVM_CREATE_VM returned EBUSY here" in result.summary and "another hypervisor" in result.summary
    assert result.evidence["kvm_create_vm_ebusy"] is True


def test_vmmon_unknown_module_list_is_an_error():
    tree = intel_desktop(proc_modules_file=False).without("/sys/module")
    result = run_check("conflicts.vmware-vmmon", tree)
    assert result.status is Status.ERROR


# --- host.hypervisor ----------------------------------------------------------------------------------------------
def test_hypervisor_bare_metal_passes():
    result = run_check("host.hypervisor", intel_desktop())
    assert result.status is Status.PASS
    assert "bare metal" in result.summary
    assert result.evidence["hypervisor"] is None


def test_hypervisor_guest_with_vmx_exposed_warns():
    result = run_check("host.hypervisor", kvm_guest(nested=True), WS, live=user(cpuid="KVMKVMKVM"))
    assert result.status is Status.WARN
    assert "a VM under kvm with VT-x/AMD-V exposed" in result.summary
    assert result.evidence["nested_exposed"] is True
    assert {"source": "cpuid 0x40000000", "value": "KVMKVMKVM", "suggests": "kvm", "vendor": None} in result.evidence["clues"]


def test_hypervisor_guest_without_vmx_fails_for_workstation_and_warns_for_kvm():
    tree = kvm_guest(nested=False)
    ws = run_check("host.hypervisor", tree, WS)
    assert ws.status is Status.FAIL
    assert "does not expose VT-x/AMD-V" in ws.summary
    assert "host-passthrough" in ws.remediation
    assert ws.evidence["nested_exposed"] is False
    assert run_check("host.hypervisor", tree, KVM).status is Status.WARN


def test_hypervisor_pvm_guest_explains_that_kvm_still_works_through_kvm_pvm():
    result = run_check("host.hypervisor", pvm_host(), KVM)
    assert result.status is Status.WARN
    assert "kvm_pvm" in result.detail


def test_hypervisor_hyperv_guest_names_the_powershell_switch():
    tree = kvm_guest(nested=False, dmi={"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine"},
                     clocksource="hyperv_clocksource_tsc_page")
    result = run_check("host.hypervisor", tree)
    assert result.status is Status.FAIL
    assert "under hyperv" in result.summary
    assert "ExposeVirtualizationExtensions" in result.remediation


def test_hypervisor_only_the_cpuinfo_flag_is_an_unidentified_hypervisor():
    tree = kvm_guest(nested=False, dmi={}, clocksource="tsc")
    result = run_check("host.hypervisor", tree)
    assert result.status is Status.FAIL
    assert "an unidentified hypervisor" in result.summary


def test_hypervisor_xen_dom0_fails_even_for_kvm():
    tree = intel_desktop(clocksource="xen", dmi={}).with_files({
        "/sys/hypervisor/type": "xen\n",
        "/proc/xen/capabilities": "control_d\n",
    })
    for target in (WS, KVM):
        result = run_check("host.hypervisor", tree, target)
        assert result.status is Status.FAIL
        assert "dom0" in result.summary
        assert "without Xen" in result.remediation
        assert result.evidence["xen_role"] == "dom0"
    assert run_check("host.hypervisor", tree, KVM).severity is Severity.RECOMMENDED


def test_hypervisor_names_the_vendor_beside_the_hypervisor_and_its_advice():
    tree = kvm_guest(nested=False, dmi={"sys_vendor": "Amazon EC2", "product_name": "c5.large", "bios_vendor": "Amazon EC2"})
    result = run_check("host.hypervisor", tree, WS)
    assert result.status is Status.FAIL
    assert "a VM under kvm (amazon)" in result.summary
    assert "metal" in result.remediation  # EC2's own answer, not the generic KVM one
    assert (result.evidence["hypervisor"], result.evidence["vendor"]) == ("kvm", "amazon")


def test_hypervisor_dmi_alone_names_a_guest_and_never_says_bare_metal():
    result = run_check("host.hypervisor", openstack_nova_guest(), WS)
    assert result.status is Status.ERROR  # no cpuinfo: whether VT-x is exposed cannot be read
    assert "bare metal" not in result.summary
    assert (result.evidence["hypervisor"], result.evidence["vendor"]) == ("kvm", "openstack")
    assert {"source": "/sys/class/dmi/id/product_name", "value": "OpenStack Nova", "suggests": "kvm", "vendor": "openstack"} in result.evidence["clues"]


S390_FEATURES = "vendor_id       : IBM/S390\n# processors    : 2\nbogomips per cpu: 3033.00\nfeatures        : esan3 zarch stfle msa ldisp eimm dfp edat etf3eh highgprs te vx sie\n"


def test_hypervisor_ibm_z_lpar_is_first_level_not_bare_metal():
    tree = Tree({"/proc/cpuinfo": S390_FEATURES, "/proc/sysinfo": "Manufacturer: IBM\nType: 2964\nLPAR Number: 21\nLPAR Name: LP21\n"})
    for target in (WS, KVM):
        result = run_check("host.hypervisor", tree, target)
        assert result.status is Status.PASS
        assert "LPAR" in result.summary and "bare metal" not in result.summary
        assert (result.evidence["hypervisor"], result.evidence["vendor"]) == ("lpar", "ibm")


def test_hypervisor_ibm_z_without_sysinfo_is_some_hypervisor():
    result = run_check("host.hypervisor", Tree({"/proc/cpuinfo": S390_FEATURES}), KVM)
    assert result.status is Status.WARN
    assert "always runs under a hypervisor" in result.summary
    assert result.evidence["hypervisor"] == "unknown"


def test_hypervisor_arm64_guest_with_kvm_present_exposes_it():
    result = run_check("host.hypervisor", aarch64_machine(dmi=QEMU_DMI), KVM)
    assert result.status is Status.WARN and "hardware virtualization exposed" in result.summary
    assert result.evidence["nested_exposed"] is True


def test_hypervisor_arm64_guest_without_kvm_where_modules_and_dev_were_read_does_not_expose_it():
    tree = aarch64_machine(dmi=QEMU_DMI, builtin=(), kvm_present=False)
    result = run_check("host.hypervisor", tree, KVM)
    assert result.status is Status.WARN  # kvm target: a warning; cpu.arch and kvm.module decide
    assert result.summary == "a VM under qemu that does not expose hardware virtualization to its guests"


@pytest.mark.parametrize("unread, named", [
    (("/proc/modules", "/sys/module"), "the module list and /dev/kvm could not be read"),
    ((), "/dev/kvm could not be read"),
])
def test_hypervisor_arm64_guest_whose_kvm_evidence_is_unread_cannot_tell(unread, named):
    # No kvm module or /dev/kvm in a tree that lacks them proves nothing: arm64 cpuinfo never shows EL2.
    tree = aarch64_machine(dmi=QEMU_DMI, builtin=(), kvm_present=False).without("/dev", *unread)
    result = run_check("host.hypervisor", tree, KVM)
    assert result.status is Status.ERROR
    assert result.summary.startswith("a VM under qemu; whether it exposes hardware virtualization to its guests cannot be told")
    assert result.summary.endswith(f"on aarch64 cpuinfo never shows it, and {named}")
    assert result.evidence["nested_exposed"] is None


@pytest.mark.parametrize("machine", [aarch64_machine, intel_desktop])
def test_hypervisor_without_dmi_or_a_device_tree_is_not_called_bare_metal(machine):
    """cpuinfo is a weak witness (arm64 rarely names a hypervisor in it; older VirtualBox sets no hypervisor flag);
    DMI or a device tree would name one, and without either 'bare metal' would be a guess."""
    with_dmi = run_check("host.hypervisor", machine(), KVM)
    assert with_dmi.status is Status.PASS and with_dmi.summary == "no hypervisor found: this is bare metal"
    result = run_check("host.hypervisor", machine().without("/sys/class/dmi"), KVM)
    assert result.status is Status.WARN
    assert "neither DMI (/sys/class/dmi) nor a device tree" in result.summary and "bare metal" not in result.summary
    assert result.evidence["platform_seen"] is False
    # A VM is then a possibility the advice names too.
    no_vmx = intel_desktop(vmx=False, modules=("kvm",), kvm_present=False).without("/sys/class/dmi")
    virtualization = run_check("cpu.virtualization", no_vmx, WS)
    assert "If this is a VM (host.hypervisor could not tell)" in virtualization.remediation


def test_hypervisor_of_an_unknown_architecture_is_not_bare_metal():
    result = run_check("host.hypervisor", Tree({"/proc/cpuinfo": "foo\t: bar\n"}), KVM)
    assert result.status is Status.ERROR
    assert result.summary.startswith("cannot tell whether this is a VM: the architecture is unknown")


def test_hypervisor_sun4v_is_an_ldoms_guest():
    tree = Tree({"/proc/cpuinfo": "cpu\t\t: UltraSparc T5 (Niagara5)\ntype\t\t: sun4v\nncpus probed\t: 24\nncpus active\t: 24\n"})
    result = run_check("host.hypervisor", tree, WS)
    assert result.evidence["hypervisor"] == "ldoms"
    assert result.status is Status.FAIL and "bare metal" not in result.summary


def test_hypervisor_qemu_cpu_model_without_hypervisor_flag_is_a_guest():
    tree = intel_desktop(vmx=False, dmi={}, modules=("tun",)).with_files({})
    tree["/proc/cpuinfo"] = str(tree["/proc/cpuinfo"]).replace("12th Gen Intel(R) Core(TM) i7-12700", "Intel Xeon Processor (Skylake, IBRS)")
    result = run_check("host.hypervisor", tree, WS)
    assert result.evidence["hypervisor"] == "qemu"
    assert "bare metal" not in result.summary


# --- host.distribution --------------------------------------------------------------------------------------------
def test_distribution_ubuntu_24_04_is_a_listed_workstation_host():
    result = run_check("host.distribution", intel_desktop(os=("ubuntu", "24.04")))
    assert result.status is Status.PASS
    assert "listed Workstation host" in result.summary


def test_distribution_debian_warns_for_workstation_passes_for_kvm():
    tree = intel_desktop(os=("debian", "12"), os_name="Debian GNU/Linux 12 (bookworm)")
    ws = run_check("host.distribution", tree, WS)
    assert ws.status is Status.WARN
    assert "not on the list of Workstation host systems" in ws.summary
    assert "ubuntu" in ws.remediation
    assert run_check("host.distribution", tree, KVM).status is Status.PASS


def test_distribution_derivative_names_its_base():
    tree = intel_desktop(os=("linuxmint", "22"), os_like="ubuntu debian")
    result = run_check("host.distribution", tree)
    assert result.status is Status.WARN
    assert "based on ubuntu" in result.summary


def test_distribution_unlisted_ubuntu_release_warns_with_the_listed_ones():
    result = run_check("host.distribution", intel_desktop(os=("ubuntu", "23.10")))
    assert result.status is Status.WARN
    assert "version 23.10 is not a listed Workstation host" in result.summary
    assert "24.04" in result.remediation


def test_distribution_rhel_minor_release_matches_its_major():
    assert run_check("host.distribution", intel_desktop(os=("rhel", "9.4"))).status is Status.PASS


def test_distribution_without_os_release_is_an_error():
    result = run_check("host.distribution", intel_desktop().without("/etc/os-release"))
    assert result.status is Status.ERROR
    assert "/etc/os-release" in result.summary


# --- resources ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "target, cpus, status",
    [(WS, 1, Status.WARN), (WS, 2, Status.PASS), (KVM, 1, Status.WARN), (KVM, 2, Status.PASS)],
)
def test_cpus_thresholds_per_target(target, cpus, status):
    result = run_check("resources.cpus", intel_desktop(cpus=cpus), target)
    assert result.status is status
    assert result.evidence["logical_cpus"] == cpus


def test_cpus_one_is_below_vmwares_recommendation_with_its_reason():
    result = run_check("resources.cpus", intel_desktop(cpus=1), WS)
    assert result.summary.startswith("1 logical CPU; 2+ recommended")
    assert "more than one virtual CPU only on a host with at least two" in result.summary
    assert "Virtual Machine Processor Support" in result.evidence["thresholds_source"]


def test_cpus_below_a_minimum_fails_and_says_so(monkeypatch):
    from kvmready import targets
    from kvmready.model import Target

    strict = targets.THRESHOLDS[Target.WORKSTATION]._replace(min_cpus=2, recommended_cpus=4)
    monkeypatch.setitem(targets.THRESHOLDS, Target.WORKSTATION, strict)
    result = run_check("resources.cpus", intel_desktop(cpus=1), WS)
    assert result.status is Status.FAIL
    assert "at least 2 needed" in result.summary and "more CPUs" in result.remediation


# MemTotal as real machines report it: installed memory minus firmware, crash kernel and graphics reservations.
MEMTOTAL_OF_4_GB_MACHINE = 3.8  # GiB; a 4 GB laptop shows 3.7-3.9
MEMTOTAL_OF_2_GB_MACHINE = 1.9


@pytest.mark.parametrize(
    "target, gib, status",
    [(WS, 1.7, Status.FAIL), (WS, MEMTOTAL_OF_2_GB_MACHINE, Status.WARN), (WS, 3.5, Status.WARN),
     (WS, MEMTOTAL_OF_4_GB_MACHINE, Status.PASS), (WS, 32, Status.PASS),
     (KVM, 0.8, Status.FAIL), (KVM, 1.5, Status.WARN), (KVM, 1.9, Status.PASS)],
)
def test_memory_thresholds_per_target(target, gib, status):
    result = run_check("resources.memory", intel_desktop(mem_gib=gib), target)
    assert result.status is status
    assert result.evidence["total_bytes"] == int(gib * 1024 * 1024) * 1024


def test_memory_of_a_4_gb_machine_meets_vmwares_recommendation():
    result = run_check("resources.memory", intel_desktop(mem_gib=MEMTOTAL_OF_4_GB_MACHINE), WS)
    assert result.status is Status.PASS
    assert result.summary == "3.8 GiB of memory (MemTotal): as much as a machine with 4.0 GiB installed shows, as recommended"


def test_memory_below_minimum_names_both_sizes_and_the_source():
    result = run_check("resources.memory", intel_desktop(mem_gib=1.5), WS)
    assert result.summary == "1.5 GiB of memory (MemTotal): less than a machine with 2.0 GiB installed, the minimum"
    assert "2 GB of memory minimum, 4 GB or more recommended" in result.evidence["thresholds_source"]
    assert result.evidence["minimum_installed_bytes"] == 2 * GIB
    assert result.evidence["minimum_memtotal_bytes"] == int(2 * GIB * 0.9)


def test_memory_without_meminfo_is_an_error():
    result = run_check("resources.memory", intel_desktop().without("/proc/meminfo"))
    assert result.status is Status.ERROR
    assert "/proc/meminfo" in result.summary


@pytest.mark.parametrize(
    "target, free_gib, status",
    [(WS, 19, Status.WARN), (WS, 20, Status.PASS), (KVM, 9, Status.WARN), (KVM, 10, Status.PASS)],
)
def test_disk_thresholds_per_target(target, free_gib, status):
    live = user(disk=(1000 * GIB, free_gib * GIB))
    result = run_check("resources.disk", intel_desktop(), target, live=live, vm_dir="/")
    assert result.status is status
    assert result.evidence["free_bytes"] == free_gib * GIB
    assert ("disk_usage", "/") in live.calls


def test_disk_low_space_suggests_another_vm_dir():
    live = user(disk=(100 * GIB, 5 * GIB))
    result = run_check("resources.disk", intel_desktop(), WS, live=live, vm_dir="/")
    assert "5.0 GiB free for VMs at /" in result.summary
    assert "--vm-dir" in result.remediation


def test_disk_statvfs_failure_is_an_error():
    live = user(disk=errno.EIO)
    result = run_check("resources.disk", intel_desktop(), WS, live=live, vm_dir="/")
    assert result.status is Status.ERROR
    assert "EIO" in result.summary


def test_disk_offline_skips():
    result = run_check("resources.disk", intel_desktop())
    assert result.status is Status.SKIP
    assert "needs the machine itself" in result.summary


# --- devices.tun / devices.vhost-net ---------------------------------------------------------------------------------
@pytest.mark.parametrize("check_id, path, module", [("devices.tun", "/dev/net/tun", "tun"),
                                                    ("devices.vhost-net", "/dev/vhost-net", "vhost_net")])
def test_network_device_present_passes(check_id, path, module):
    result = run_check(check_id, intel_desktop())
    assert result.status is Status.PASS
    assert path in result.summary


@pytest.mark.parametrize("check_id, path, module, knob, status", [
    ("devices.tun", "/dev/net/tun", "tun", "tun", Status.FAIL),  # no bridged/NAT networking at all
    ("devices.vhost-net", "/dev/vhost-net", "vhost_net", "vhost_net", Status.WARN),  # only slower networking
])
def test_network_device_missing_says_modprobe(check_id, path, module, knob, status):
    result = run_check(check_id, intel_desktop(**{knob: False}))
    assert result.status is status
    assert f"{path} does not exist" in result.summary
    assert f"sudo modprobe {module}" in result.remediation
    assert f"--device {path}" in result.remediation


@pytest.mark.parametrize("check_id", ["devices.tun", "devices.vhost-net"])
def test_network_device_offline_without_dev_skips(check_id):
    result = run_check(check_id, intel_desktop(dev=False))
    assert result.status is Status.SKIP
    assert "not captured" in result.summary


def test_network_device_with_wrong_kind_fails():
    tree = intel_desktop().with_nodes({"/dev/net/tun": char_node(10, 201, 0o666)})
    result = run_check("devices.tun", tree)
    assert result.status is Status.FAIL
    assert "not the expected character device" in result.summary


# --- devices.render-node ---------------------------------------------------------------------------------------------
def test_render_node_hardware_i915_passes():
    result = run_check("devices.render-node", intel_desktop(render="i915"))
    assert result.status is Status.PASS
    assert "renderD128 (i915)" in result.summary


def test_render_node_vgem_is_software_and_warns():
    result = run_check("devices.render-node", intel_desktop(render="vgem"))
    assert result.status is Status.WARN
    assert "software rendering" in result.summary
    assert "vgem" in result.summary


def test_render_node_virtio_gpu_warns_about_the_outer_hypervisor():
    result = run_check("devices.render-node", intel_desktop(render="virtio_gpu"))
    assert result.status is Status.WARN
    assert "virtual GPU of the outer hypervisor" in result.summary


def test_render_node_without_driver_warns():
    tree = intel_desktop().without("/sys/class/drm")
    result = run_check("devices.render-node", tree)
    assert result.status is Status.WARN
    assert "driver unknown" in result.summary


def test_render_node_none_warns():
    result = run_check("devices.render-node", intel_desktop(render=None))
    assert result.status is Status.WARN
    assert "no GPU render node" in result.summary
    assert "render` group" in result.remediation


def test_render_node_offline_tree_without_dev_or_drm_skips():
    result = run_check("devices.render-node", intel_desktop(dev=False, render=None))
    assert result.status is Status.SKIP
    assert "not captured" in result.summary


def test_render_node_offline_tree_without_dev_reads_sysfs():
    result = run_check("devices.render-node", intel_desktop(dev=False, render="amdgpu"))
    assert result.status is Status.PASS
    assert "renderD128 (amdgpu)" in result.summary


# --- security.secure-boot / security.lockdown ---------------------------------------------------------------------------
def test_secure_boot_on_with_lockdown_warns_with_mokutil_steps():
    result = run_check("security.secure-boot", intel_desktop(secure_boot=True, lockdown="integrity"))
    assert result.status is Status.WARN
    assert result.summary.startswith("UEFI Secure Boot is on, and this kernel refuses unsigned modules (lockdown 'integrity')")
    assert "Key was rejected" in result.summary
    assert "mokutil --import" in result.remediation and "/lib/modules/$(uname -r)/build/scripts/sign-file" in result.remediation
    assert result.evidence["secure_boot"] is True


def test_secure_boot_alone_does_not_refuse_unsigned_modules():
    """Reverted, Secure Boot on meant 'the kernel refuses unsigned modules' even where neither lockdown nor
    module.sig_enforce was on (an upstream kernel loads them, tainted)."""
    result = run_check("security.secure-boot", intel_desktop(secure_boot=True, lockdown="none"))
    assert result.status is Status.PASS
    assert "neither locks down nor enforces module signatures" in result.summary


def test_secure_boot_off_with_enforced_signatures_still_warns():
    """Reverted, `module.sig_enforce=1` with Secure Boot off read 'out-of-tree modules load unsigned'."""
    tree = intel_desktop(secure_boot=False).with_files({"/sys/module/module/parameters/sig_enforce": "Y\n"})
    result = run_check("security.secure-boot", tree)
    assert result.status is Status.WARN and "(module.sig_enforce)" in result.summary


def test_lockdown_from_the_command_line_says_to_remove_it():
    """Reverted, lockdown=integrity on the command line (Secure Boot off) was told to turn Secure Boot off."""
    tree = intel_desktop(secure_boot=False, lockdown="integrity", cmdline="root=/dev/sda1 ro lockdown=integrity")
    result = run_check("security.lockdown", tree)
    assert result.status is Status.WARN
    assert "`lockdown=integrity` on the kernel command line" in result.remediation
    assert "Secure Boot off" not in result.remediation


def test_secure_boot_off_passes():
    result = run_check("security.secure-boot", intel_desktop(secure_boot=False))
    assert result.status is Status.PASS
    assert "Secure Boot is off" in result.summary


def test_secure_boot_legacy_bios_passes():
    result = run_check("security.secure-boot", intel_desktop(uefi=False))
    assert result.status is Status.PASS
    assert result.summary == "no /sys/firmware/efi: the kernel did not boot through UEFI, so no Secure Boot"


def test_secure_boot_not_captured_skips():
    result = run_check("security.secure-boot", intel_desktop(uefi=None))
    assert result.status is Status.SKIP
    assert "/sys/firmware" in result.summary


def test_secure_boot_variable_too_short_is_an_error():
    tree = intel_desktop().with_files({
        "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c": b"\x06\x00"})
    result = run_check("security.secure-boot", tree)
    assert result.status is Status.ERROR
    assert "2 bytes" in result.summary


def test_secure_boot_uefi_without_the_variable_is_an_error():
    result = run_check("security.secure-boot", intel_desktop(secure_boot=None))
    assert result.status is Status.ERROR
    assert "SecureBoot" in result.summary


def test_lockdown_none_passes():
    result = run_check("security.lockdown", intel_desktop(lockdown="none"))
    assert result.status is Status.PASS


@pytest.mark.parametrize("mode", ["integrity", "confidentiality"])
def test_lockdown_on_warns(mode):
    result = run_check("security.lockdown", intel_desktop(lockdown=mode))
    assert result.status is Status.WARN
    assert f"'{mode}'" in result.summary
    assert "security.secure-boot" in result.remediation


def test_lockdown_absent_file_in_a_populated_securityfs_means_none():
    tree = intel_desktop(lockdown=None).with_files({"/sys/kernel/security/apparmor/profiles": ""})
    result = run_check("security.lockdown", tree)
    assert result.status is Status.PASS
    assert result.evidence["lockdown"] == "none"


def test_lockdown_unknown_skips():
    result = run_check("security.lockdown", intel_desktop(lockdown=None))
    assert result.status is Status.SKIP
    assert "lockdown state unknown" in result.summary


def test_lockdown_garbage_skips_with_the_content():
    tree = intel_desktop().with_files({"/sys/kernel/security/lockdown": "whatever\n"})
    result = run_check("security.lockdown", tree)
    assert result.status is Status.SKIP
    assert "unexpected content" in result.summary


# --- the tree builder itself -----------------------------------------------------------------------------------------
def test_treebuilder_writes_a_root_tree_that_reads_the_same(tmp_path):
    from kvmready.facts import Facts
    from kvmready.host import DirectoryHost

    tree = intel_desktop(secure_boot=True, lockdown="integrity")
    root = tree.write(tmp_path / "root")
    facts = Facts(DirectoryHost(str(root)))
    assert facts.cpu.vmx_cpus == 8
    assert facts.firmware.secure_boot is True and facts.firmware.lockdown == "integrity"
    assert facts.modules.get("kvm_intel").state == "live"
    assert facts.dev_uncaptured  # git and write() hold no device nodes
    assert lockdown_text("integrity") == "none [integrity] confidentiality\n"
    assert parse_release(facts.kernel.release) == (6, 8, 0)


# -- built-in vendor modules: /sys/module lists them whether or not they initialised ---------------------
def test_both_vendor_modules_built_in_the_cpus_own_provides_kvm():
    """A kernel with kvm_intel and kvm_amd built in lists both; on an AMD CPU kvm_amd is the one at work."""
    tree = amd_desktop(modules=(), builtin=("kvm", "kvm_intel", "kvm_amd"),
                       params={"kvm_amd": {"nested": "0", "npt": "1"}, "kvm_intel": {"nested": "Y"}})
    module = run_check("kvm.module", tree)
    assert module.status is Status.PASS and module.summary == "kvm_amd provides KVM, built into the kernel"
    nested = run_check("kvm.nested", tree)
    assert nested.status is Status.WARN and nested.summary.startswith("kvm_amd nested=0")
    firmware = run_check("cpu.firmware", tree)
    assert firmware.status is Status.PASS and firmware.summary.startswith("kvm_amd is built in and /dev/kvm exists")


def test_a_built_in_vendor_module_without_dev_kvm_did_not_initialise():
    """Firmware has VT-x off: the kernel hides vmx, kvm_intel's init fails, yet /sys/module/kvm_intel exists."""
    tree = intel_desktop(vmx=False, modules=(), builtin=("kvm", "kvm_intel"), kvm_present=False)
    module = run_check("kvm.module", tree)
    assert module.status is Status.FAIL
    assert module.summary == "kvm_intel is built into the kernel, but /dev/kvm does not exist: its initialisation failed"
    virtualization = run_check("cpu.virtualization", tree)
    assert virtualization.status is Status.FAIL and "filtered cpuinfo" not in virtualization.summary
    assert "Intel Virtualization Technology" in virtualization.remediation
    device = run_check("kvm.device", tree)
    assert "mknod" not in device.remediation and "initialises, which it did not" in device.remediation


def test_firmware_trusts_a_shown_vmx_only_on_kernels_that_hide_it():
    """Before Linux 5.6 the kernel showed vmx whatever the firmware said (feat_ctl.c came in 5.6)."""
    old = intel_desktop(vmx_flags=None, modules=(), kernel="5.4.0-99-generic")
    result = run_check("cpu.firmware", old)
    assert result.status is Status.SKIP and result.undecided
    assert "kernels before 5.6 show it whatever the firmware says" in result.summary
    new = intel_desktop(vmx_flags=None, modules=(), kernel="6.8.0-45-generic")
    assert run_check("cpu.firmware", new).summary.startswith("firmware leaves VT-x on")
    # The `vmx flags` line came with the hiding: it tells a 5.6+ kernel where the release is unknown.
    unknown_release = intel_desktop(modules=()).without("/proc/sys/kernel/osrelease", "/proc/version")
    assert run_check("cpu.firmware", unknown_release).summary.startswith("firmware leaves VT-x on")


# -- a kernel without loadable-module support: modprobe cannot help -------------------------------------------------
MONOLITHIC = {"/boot/config-6.8.0-45-generic": "CONFIG_KVM=y\n# CONFIG_MODULES is not set\n# CONFIG_VHOST_NET is not set\n"}


def test_a_device_missing_from_a_kernel_without_modules_is_not_told_to_modprobe():
    """Reverted, a monolithic kernel (this development VM's) was told `sudo modprobe vhost_net`."""
    result = run_check("devices.vhost-net", intel_desktop(vhost_net=False).with_files(MONOLITHIC), KVM)
    assert "modprobe" not in result.remediation
    assert result.remediation.startswith("This kernel cannot load modules (`# CONFIG_MODULES is not set` in "
                                         "/boot/config-6.8.0-45-generic): boot a kernel built with `CONFIG_VHOST_NET=y`")
    # With modules, modprobe it is.
    assert "`sudo modprobe vhost_net`" in run_check("devices.vhost-net", intel_desktop(vhost_net=False), KVM).remediation


def test_a_missing_vendor_module_in_a_kernel_without_modules_asks_for_a_kernel_built_with_it():
    tree = intel_desktop(modules=(), builtin=("kvm",)).with_files(MONOLITHIC)
    result = run_check("kvm.module", tree)
    assert result.status is Status.FAIL and "modprobe" not in result.remediation
    assert "`CONFIG_KVM_INTEL=y` or `CONFIG_KVM_AMD=y`" in result.remediation
