"""CPU checks: architecture, VT-x/AMD-V, EPT/NPT, firmware state, timekeeping."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

from kvmready.checks import advice
from kvmready.checks.base import (
    CheckSpec,
    errored,
    failed,
    passed,
    skipped,
    unreadable,
    warn_or_fail,
    warned,
    x86_only,
)
from kvmready.facts.cpuinfo import CPUINFO, CpuInfo
from kvmready.facts.modules import HARDWARE_KVM_MODULES
from kvmready.kvmabi import KVM_DEVICE
from kvmready.model import Outcome, Target

if TYPE_CHECKING:
    from kvmready.facts import Facts
    from kvmready.targets import Policy


KVM_ARCHES = ("x86_64", "aarch64", "s390x", "ppc64le", "ppc64", "riscv64", "loongarch64")
X86_VENDORS_WITH_VMX = ("GenuineIntel", "CentaurHauls", "  Shanghai  ")
X86_VENDORS_WITH_SVM = ("AuthenticAMD", "HygonGenuine")


def check_arch(facts: Facts, policy: Policy) -> Outcome:
    arch = facts.arch
    evidence = arch.evidence()
    if arch.name is None:
        return errored(f"cannot tell the architecture: {arch.error}", evidence)
    if policy.target is Target.WORKSTATION:
        if arch.name == "x86_64":
            return passed("x86_64, which VMware Workstation requires", evidence)
        return failed(
            f"{arch.name}: VMware Workstation runs only on 64-bit x86 (x86_64) hosts",
            "Use an x86_64 machine; Workstation has no build for other architectures.",
            evidence,
        )
    if arch.name in KVM_ARCHES:
        return passed(f"{arch.name}: KVM supports this architecture", evidence)
    return failed(
        f"{arch.name}: the kernel has no KVM for this architecture",
        "Use a machine whose architecture KVM supports: " + ", ".join(KVM_ARCHES) + ".",
        evidence,
    )


def check_virtualization(facts: Facts, policy: Policy) -> Outcome:
    cpu = facts.cpu
    if cpu.error is not None:
        return unreadable("the CPU's virtualization support", CPUINFO, cpu.error)
    arch = facts.arch.name
    evidence = cpu.evidence()
    if arch and arch not in ("x86_64", "i686"):
        return _non_x86_virtualization(facts, policy, arch, evidence)
    if cpu.flag_lines == 0:
        return errored("cannot tell: /proc/cpuinfo has no flags line", evidence)
    extension = "vmx" if cpu.vmx_cpus else "svm" if cpu.svm_cpus else None
    if extension and facts.hypervisor.paravirtual_xen:
        evidence["xen_guest_type"] = "PV"
        return failed(
            f"a Xen PV guest: /proc/cpuinfo lists {extension}, but a paravirtual guest's kernel can never use VT-x/AMD-V",
            "Run this system as an HVM guest with `nestedhvm=1` in its Xen domain configuration, or on bare metal.",
            evidence,
        )
    if extension:
        return _visible_extension(cpu, extension, evidence)
    return _missing_extension(facts, policy, evidence)


def _visible_extension(cpu: CpuInfo, extension: str, evidence: Dict[str, Any]) -> Outcome:
    name = "VT-x" if extension == "vmx" else "AMD-V"
    count = cpu.vmx_cpus if extension == "vmx" else cpu.svm_cpus
    if count < cpu.flag_lines:
        return failed(
            f"{name} ({extension}) on only {count} of {cpu.flag_lines} CPUs: KVM refuses to load unless every CPU has it",
            advice.firmware_advice(cpu.vendor) or "Enable hardware virtualization for every CPU in the firmware setup.",
            evidence,
            detail="Firmware left the extension off on some CPUs; the kernel hides the flag there.",
        )
    return passed(f"{name} ({extension}) on all {count} CPUs", evidence)


def _missing_extension(facts: Facts, policy: Policy, evidence: Dict[str, Any]) -> Outcome:
    cpu = facts.cpu
    must = policy.needs_hardware_virtualization
    modules = facts.modules
    hypervisor = facts.hypervisor
    evidence["kvm_module"] = facts.kvm_module
    if modules.has("kvm_pvm"):
        summary = f"no VT-x/AMD-V; KVM here is paravirtual: {advice.PVM_GUESTS}"
        if must:
            where = f"under {advice.hypervisor_label(hypervisor.name)}: {advice.expose_nested(hypervisor.name)}" if hypervisor.is_guest else ""
            fix = "VMware Workstation guests are unmodified operating systems and need VT-x or AMD-V. Run on bare metal " \
                  "or in a VM with nested virtualization exposed" + (f" ({where})" if where else "") + "."
            return failed(summary, fix, evidence)
        return warned(summary, "Use PVM-enabled guest kernels, or expose VT-x/AMD-V to run unmodified guests.", evidence)
    if hypervisor.is_guest:
        evidence["hypervisor"] = hypervisor.name
        return warn_or_fail(
            must,
            f"no VT-x/AMD-V: this is a VM under {advice.hypervisor_label(hypervisor.name)}, which does not expose hardware virtualization to it",
            advice.sentence(advice.expose_nested(hypervisor.name)),
            evidence,
        )
    vendor = cpu.vendor
    loaded = [name for name in HARDWARE_KVM_MODULES if modules.has(name)]
    if loaded:
        return warned(
            f"{loaded[0]} is loaded, which needs VT-x/AMD-V, yet /proc/cpuinfo shows neither vmx nor svm "
            "(a filtered cpuinfo, as some containers present)",
            "Nothing to fix if kvm.guest passes; otherwise read the host's real /proc/cpuinfo.",
            evidence,
        )
    if vendor in X86_VENDORS_WITH_VMX:
        return failed(
            "no VT-x (vmx) in /proc/cpuinfo: the CPU lacks it, or firmware disabled it and the kernel hides the flag",
            advice.INTEL_FIRMWARE + " `sudo kvmready check --only cpu.firmware` reads IA32_FEATURE_CONTROL to tell which.",
            evidence,
        )
    if vendor in X86_VENDORS_WITH_SVM:
        return failed(
            "no AMD-V (svm) in /proc/cpuinfo: the CPU lacks it or firmware disabled SVM",
            advice.AMD_FIRMWARE,
            evidence,
        )
    return failed(
        "no VT-x or AMD-V in /proc/cpuinfo: this CPU cannot run hardware-accelerated guests",
        "Use a CPU with Intel VT-x or AMD-V.",
        evidence,
    )


def _non_x86_virtualization(facts: Facts, policy: Policy, arch: str, evidence: Dict[str, Any]) -> Outcome:
    if policy.target is Target.WORKSTATION:
        return skipped(f"not applicable on {arch}: Workstation needs x86_64 (see cpu.arch)", evidence)
    cpu = facts.cpu
    if arch == "s390x":
        if "sie" in cpu.flags:
            return passed("s390x with SIE (start interpretive execution) available to KVM", evidence)
        return failed(
            "s390x without the `sie` facility: this LPAR or guest cannot run KVM guests",
            "Run on an LPAR, or on a KVM/z/VM guest whose host offers nested virtualization (`kvm.nested=1` on the host).",
            evidence,
        )
    provider = facts.kvm_module
    evidence["kvm_module"] = provider
    device = facts.devices.get(KVM_DEVICE)
    if provider or device.present:
        return passed(
            f"{arch}: cpuinfo carries no virtualization flag here; the kernel provides KVM ({provider or '/dev/kvm'})",
            evidence,
        )
    return skipped(
        f"{arch} shows no virtualization flag in cpuinfo; kvm.module and kvm.device decide",
        evidence,
    )


def check_hardware_mmu(facts: Facts, policy: Policy) -> Outcome:
    cpu = facts.cpu
    if cpu.error is not None:
        return unreadable("EPT/NPT support", CPUINFO, cpu.error)
    elsewhere = x86_only(facts, "")
    if elsewhere:
        return elsewhere
    extension = cpu.virtualization
    if facts.hypervisor.paravirtual_xen:
        return skipped("a Xen PV guest cannot use VT-x, so EPT/NPT do not matter (see cpu.virtualization)")
    if extension == "vt-x":
        return _intel_mmu(facts, policy)
    if extension == "amd-v":
        return _amd_mmu(facts, policy)
    return skipped("no VT-x/AMD-V visible, so no EPT/NPT to check (see cpu.virtualization)")


def _intel_mmu(facts: Facts, policy: Policy) -> Outcome:
    cpu = facts.cpu
    features = cpu.vmx_features
    evidence: Dict[str, Any] = {"vmx_flags_line": sorted(features) if features is not None else None}
    hw_ept = ("ept" in features) if features is not None else ("ept" in cpu.flags or None)
    hw_ug = ("unrestricted_guest" in features) if features is not None else None
    params = facts.module_params("kvm_intel") if facts.modules.has("kvm_intel") else None
    ept_param = params.flag("ept") if params else None
    ug_param = params.flag("unrestricted_guest") if params else None
    evidence.update(cpu_ept=hw_ept, cpu_unrestricted_guest=hw_ug, kvm_intel_ept=ept_param, kvm_intel_unrestricted_guest=ug_param)
    must = policy.target is Target.WORKSTATION
    if hw_ept is False or hw_ug is False:
        missing = " and ".join(name for name, ok in (("EPT", hw_ept), ("unrestricted guest", hw_ug)) if ok is False)
        return warn_or_fail(must, f"the CPU lacks {missing}: guests run with shadow paging, slowly", "Use a CPU from 2010 or later (Westmere and newer have EPT and unrestricted guest).", evidence)
    if ept_param is False or ug_param is False:
        off = [name for name, value in (("ept", ept_param), ("unrestricted_guest", ug_param)) if value is False]
        return warn_or_fail(
            must,
            "kvm_intel runs with " + ", ".join(f"{name}=N" for name in off) + " although the CPU has it",
            "Remove the `" + "`/`".join(f"kvm_intel {name}=0" for name in off) + "` option from /etc/modprobe.d or the kernel command line and reload kvm_intel.",
            evidence,
        )
    if hw_ept and (hw_ug or ug_param):
        return passed("VT-x with EPT and unrestricted guest", evidence)
    if ept_param and ug_param:
        return passed("kvm_intel uses EPT and unrestricted guest", evidence)
    return warned("cannot confirm EPT and unrestricted guest: no `vmx flags` line and kvm_intel parameters unreadable", "Load kvm_intel (`sudo modprobe kvm_intel`) or use a kernel 5.8+ that prints `vmx flags`.", evidence)


def _amd_mmu(facts: Facts, policy: Policy) -> Outcome:
    cpu = facts.cpu
    hw_npt = "npt" in cpu.flags
    params = facts.module_params("kvm_amd") if facts.modules.has("kvm_amd") else None
    npt_param = params.flag("npt") if params else None
    evidence = {"cpu_npt": hw_npt, "kvm_amd_npt": npt_param}
    must = policy.target is Target.WORKSTATION
    if not hw_npt:
        return warn_or_fail(must, "the CPU lacks nested page tables (NPT/RVI): guests run with shadow paging, slowly", "Use an AMD CPU with RVI (Barcelona, 2007, or newer).", evidence)
    if npt_param is False:
        return warn_or_fail(must, "kvm_amd runs with npt=0 although the CPU has NPT", "Remove the `kvm_amd npt=0` option from /etc/modprobe.d or the kernel command line and reload kvm_amd.", evidence)
    return passed("AMD-V with nested page tables (NPT)", evidence)


FEATURE_CONTROL_LOCK = 1 << 0
FEATURE_CONTROL_VMX_OUTSIDE_SMX = 1 << 2
VM_CR_LOCK = 1 << 3
VM_CR_SVMDIS = 1 << 4


def check_firmware(facts: Facts, policy: Policy) -> Outcome:
    cpu = facts.cpu
    if cpu.error is not None:
        return unreadable("the firmware's virtualization setting", CPUINFO, cpu.error)
    elsewhere = x86_only(facts, "")
    if elsewhere:
        return elsewhere
    if facts.hypervisor.paravirtual_xen:
        return skipped("a Xen PV guest: no firmware of its own, and VT-x is out of reach anyway (see cpu.virtualization)")
    if cpu.vmx_cpus and cpu.vmx_cpus == cpu.flag_lines:
        return passed("firmware leaves VT-x on: the kernel shows vmx on every CPU (it hides it when firmware disables VT-x)", cpu.evidence())
    for module in HARDWARE_KVM_MODULES:
        if facts.modules.has(module):
            return passed(f"{module} is loaded, and it refuses to load while firmware disables virtualization", {"module": module})
    hypervisor = facts.hypervisor
    if hypervisor.is_guest:
        return skipped(
            f"a VM under {advice.hypervisor_label(hypervisor.name)}: its MSRs are the hypervisor's virtual registers, not firmware settings "
            "(host.hypervisor says how to expose VT-x/AMD-V)",
            {"hypervisor": hypervisor.name},
        )
    live = facts.live
    if live is None:
        return skipped(f"the MSR that tells needs the machine itself ({facts.offline_reason})")
    reading = live.msr
    if reading is None:
        return skipped(f"no firmware virtualization MSR is known for vendor {cpu.vendor!r}")
    evidence = reading.to_dict()
    if reading.skipped:
        register = "IA32_FEATURE_CONTROL (0x3A)" if reading.register == 0x3A else "VM_CR (0xC0010114)"
        return skipped(f"run as root to read {register}, which tells whether firmware disabled virtualization", evidence)
    if reading.error is not None:
        register = "IA32_FEATURE_CONTROL" if reading.register == 0x3A else "VM_CR"
        if reading.error.errno_name == "ENOENT":
            return skipped(f"cannot read {register}: {reading.path} is missing (`modprobe msr` would create it; kvmready never loads modules)", evidence)
        return skipped(f"cannot read {register} through {reading.path}: {reading.error.message} ({reading.error.errno_name})", evidence)
    if reading.value is None:
        return skipped(f"the MSR reading at {reading.path} recorded no value", evidence)
    if reading.register == 0x3A:
        return _feature_control(reading.value, evidence)
    return _vm_cr(reading.value, evidence)


def _feature_control(value: int, evidence: dict) -> Outcome:
    locked = bool(value & FEATURE_CONTROL_LOCK)
    enabled = bool(value & FEATURE_CONTROL_VMX_OUTSIDE_SMX)
    evidence.update(locked=locked, vmx_outside_smx=enabled)
    if locked and not enabled:
        return failed("VT-x is disabled in firmware and locked (IA32_FEATURE_CONTROL lock=1, VMX outside SMX=0)", advice.INTEL_FIRMWARE, evidence)
    if not locked:
        return passed("firmware left IA32_FEATURE_CONTROL unlocked; the kernel enables VT-x itself", evidence)
    return passed("firmware enables VT-x (IA32_FEATURE_CONTROL lock=1, VMX outside SMX=1)", evidence)


def _vm_cr(value: int, evidence: dict) -> Outcome:
    disabled = bool(value & VM_CR_SVMDIS)
    evidence.update(svm_disabled=disabled, locked=bool(value & VM_CR_LOCK))
    if disabled:
        return failed("AMD-V is disabled in firmware (VM_CR.SVMDIS=1)", advice.AMD_FIRMWARE, evidence)
    return passed("firmware enables AMD-V (VM_CR.SVMDIS=0)", evidence)


def check_timekeeping(facts: Facts, policy: Policy) -> Outcome:
    cpu = facts.cpu
    if cpu.error is not None:
        return unreadable("the TSC's behaviour", CPUINFO, cpu.error)
    elsewhere = x86_only(facts, "")
    if elsewhere:
        return elsewhere
    present = {flag: flag in cpu.flags for flag in ("constant_tsc", "nonstop_tsc")}
    evidence = {"source": CPUINFO, **present}
    missing = [flag for flag, ok in present.items() if not ok]
    if not missing:
        return passed("invariant TSC (constant_tsc, nonstop_tsc): guest clocks stay steady", evidence)
    return warned(
        "the TSC lacks " + " and ".join(missing) + ": guest clocks can drift across frequency changes and sleep",
        "Nothing to change on the host; enable time synchronisation in the guests (VMware Tools, chrony).",
        evidence,
    )



ARCH = CheckSpec(
    "cpu.arch", "CPU architecture", "cpu", check_arch,
    what="The machine architecture, from the host's own files (/proc/sys/kernel/arch, the cpuinfo format, the kernel release).",
    why="VMware Workstation is built for x86_64 only; KVM itself exists on a handful of architectures.",
    fix="Use an x86_64 machine for Workstation.",
)


VIRTUALIZATION = CheckSpec(
    "cpu.virtualization", "Hardware virtualization (VT-x/AMD-V)", "cpu", check_virtualization,
    what="vmx (Intel VT-x) or svm (AMD-V) on every CPU in /proc/cpuinfo, plus what provides KVM when neither is visible (kvm_pvm, a hypervisor that hides it).",
    why="Unmodified guests need VT-x or AMD-V. The kernel hides vmx when firmware disables VT-x; paravirtual KVM (kvm_pvm) runs only PVM-enabled Linux guests.",
    fix="Enable VT-x/SVM in the firmware setup; in a VM, expose nested virtualization from the outer hypervisor.",
)


HARDWARE_MMU = CheckSpec(
    "cpu.hardware-mmu", "EPT/NPT and unrestricted guest", "cpu", check_hardware_mmu,
    what="Intel EPT and unrestricted guest (the `vmx flags` line, kvm_intel ept/unrestricted_guest) or AMD NPT (the npt flag, kvm_amd npt).",
    why="Without a hardware MMU guests fall back to shadow paging; modern Workstation releases require EPT/RVI, and VT-x without unrestricted guest cannot run real-mode guest code directly.",
    fix="Remove `ept=0`, `unrestricted_guest=0` or `npt=0` module options; older CPUs need replacing.",
)


FIRMWARE = CheckSpec(
    "cpu.firmware", "Virtualization enabled in firmware", "cpu", check_firmware,
    what="As root, IA32_FEATURE_CONTROL (0x3A, Intel) or VM_CR (0xC0010114, AMD) through /dev/cpu/0/msr; the visible vmx flag already proves Intel firmware enabled VT-x.",
    why="Firmware can disable VT-x/AMD-V and lock the setting; then no software change helps and only the firmware setup does.",
    fix="Enable 'Intel Virtualization Technology' or 'SVM Mode' in the firmware setup, then power-cycle.",
)


TIMEKEEPING = CheckSpec(
    "cpu.timekeeping", "Invariant TSC", "cpu", check_timekeeping,
    what="The constant_tsc and nonstop_tsc flags.",
    why="With an invariant TSC guest clocks stay steady across frequency changes and deep sleep states.",
    fix="Nothing on the host; run time synchronisation in guests.",
)
