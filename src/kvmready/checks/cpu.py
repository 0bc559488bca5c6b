"""CPU checks: architecture, VT-x/AMD-V, EPT/NPT, firmware state, timekeeping."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, FrozenSet, List, Optional, Tuple

from kvmready import cpuvendors
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


# Where KVM exists, by the kernel's family and word size (the kernel's, never the CPU's).
# Sources: x86, arm64, s390x, powerpc, MIPS, RISC-V (Linux 5.16) and LoongArch (6.7) have arch/*/kvm;
# 32-bit ARM hosts lost KVM in Linux 5.7 (the kvm-arm "goodbye" series, 2020); s390's KVM has only ever
# run on 64-bit (z/Architecture) kernels; ia64's KVM was removed in Linux 3.19; alpha, parisc and
# sparc never had one.  32-bit hosts elsewhere (x86-32, powerpc e500/e300, MIPS32, RV32) are what
# Arnd Bergmann's "KVM: drop 32-bit host support on all architectures" (December 2024) removes.
KVM_64BIT_FAMILIES = ("x86", "arm", "powerpc", "s390", "riscv", "loongarch", "mips")
KVM_NEVER = {
    "ia64": "Linux removed KVM for ia64 in 3.19 (and ia64 itself in 6.7)",
    "alpha": "Linux has no KVM for Alpha",
    "parisc": "Linux has no KVM for PA-RISC",
    "sparc": "Linux has no KVM for SPARC (sun4v machines use LDoms instead)",
}
KVM_32BIT_GONE = {
    "arm": "Linux 5.7 removed KVM for 32-bit ARM hosts",
    "s390": "KVM on s390 runs only on a 64-bit (s390x) kernel",
}
KVM_32BIT_FADING = "32-bit KVM hosts remain only in older kernels: upstream is removing them (\"KVM: drop 32-bit host support on all architectures\", 2024)"
# MIPS: only the VZ virtualization ASE runs KVM guests since trap-and-emulate KVM was removed (Linux 5.13).
MIPS_VZ = "vz"


def check_arch(facts: Facts, policy: Policy) -> Outcome:
    arch = facts.arch
    evidence = arch.evidence()
    if arch.family is None and not arch.not_x86:
        return errored(f"cannot tell the architecture: {arch.error}", evidence)
    if policy.target is Target.WORKSTATION:
        return _arch_for_workstation(facts, evidence)
    return _arch_for_kvm(facts, evidence)


def _arch_for_workstation(facts: Facts, evidence: Dict[str, Any]) -> Outcome:
    arch = facts.arch
    if arch.family is None:
        return failed(
            f"not an x86 machine ({arch.error}): VMware Workstation runs only on 64-bit x86 (x86_64) hosts",
            "Use an x86_64 machine; Workstation has no build for other architectures.",
            evidence,
        )
    if not arch.is_x86:
        return failed(
            f"{arch.label}: VMware Workstation runs only on 64-bit x86 (x86_64) hosts",
            "Use an x86_64 machine; Workstation has no build for other architectures.",
            evidence,
        )
    if arch.bits == 64:
        return passed(f"{arch.name}: a 64-bit x86 kernel, which VMware Workstation requires; shown by {arch.source}", evidence)
    capable = "lm" in safe_flags(facts)
    if arch.bits == 32:
        return failed(
            f"{arch.name}: a 32-bit x86 kernel, shown by {arch.source}; VMware Workstation needs a 64-bit (x86_64) kernel",
            "Install a 64-bit (x86_64/amd64) distribution"
            + ("; the CPU supports long mode (`lm`), so only the system needs replacing." if capable else
               "; this CPU has no 64-bit mode (`lm`), so a different machine is needed."),
            evidence,
        )
    return errored(
        "x86, but cannot tell whether the kernel is 32- or 64-bit"
        + (" (the CPU could run either: `lm`)" if capable else "")
        + ": nothing in this tree shows the kernel's word size",
        evidence,
        remediation="Run kvmready on the machine itself, or include /proc/sys/kernel/osrelease, /proc/sys/kernel/arch "
        "or a complete /proc/cpuinfo in the captured tree.",
    )


def _arch_for_kvm(facts: Facts, evidence: Dict[str, Any]) -> Outcome:
    arch = facts.arch
    family, bits, label = arch.family, arch.bits, arch.label
    if family is None:
        return errored(f"cannot tell which architecture this is ({arch.error}), so not whether it has KVM", evidence)
    if family in KVM_NEVER:
        return failed(f"{label}: {KVM_NEVER[family]}", "Use a machine whose architecture KVM supports: "
                      + ", ".join(KVM_64BIT_FAMILIES) + " (64-bit kernels).", evidence)
    if family not in KVM_64BIT_FAMILIES:
        return errored(f"{label}: kvmready does not know whether KVM exists here", evidence)
    if family == "mips":
        line = safe_value(facts, "ases implemented")
        ases = (line or "").split()
        evidence["ases_implemented"] = ases if line is not None else None
        if line is None:
            return errored(f"{label}: KVM on MIPS needs the VZ extension, and this /proc/cpuinfo has no `ASEs implemented` line", evidence)
        if MIPS_VZ not in ases:
            return failed(f"{label} without the VZ extension: MIPS runs KVM guests only with VZ (trap-and-emulate KVM was removed in Linux 5.13)",
                          "Use a MIPS CPU with VZ (P5600, I6400, Octeon III, Loongson-3) or another architecture.", evidence)
    if bits == 64:
        return passed(f"{label}: a 64-bit kernel of an architecture with KVM", evidence)
    if bits is not None and family in KVM_32BIT_GONE:
        return failed(f"{label}: {KVM_32BIT_GONE[family]}", "Install a 64-bit kernel (the CPU may well support one).", evidence)
    if bits is not None:
        return warned(f"{label}: a 32-bit kernel; {KVM_32BIT_FADING}", "Install a 64-bit kernel where the CPU supports one.", evidence)
    if family in KVM_32BIT_GONE:
        return errored(f"{label}: cannot tell whether the kernel is 64-bit, and only a 64-bit kernel has KVM here", evidence)
    return warned(f"{label}: KVM exists for this family, but cannot tell whether the kernel is 64-bit; {KVM_32BIT_FADING}",
                  "Run kvmready on the machine itself to see the kernel's architecture.", evidence)


def safe_flags(facts: Facts) -> FrozenSet[str]:
    try:
        return facts.cpu.flags
    except Exception:
        return frozenset()


def safe_value(facts: Facts, key: str) -> Optional[str]:
    try:
        return facts.cpu.value(key)
    except Exception:
        return None


def check_virtualization(facts: Facts, policy: Policy) -> Outcome:
    cpu = facts.cpu
    arch = facts.arch
    if arch.known_not_x86 and policy.target is Target.WORKSTATION:
        return skipped(f"not applicable on {arch.label or 'a machine that is not x86'}: Workstation needs x86_64 (see cpu.arch)", arch.evidence())
    if cpu.error is not None:
        return unreadable("the CPU's virtualization support", CPUINFO, cpu.error)
    evidence = cpu.evidence()
    if arch.known_not_x86:
        return _non_x86_virtualization(facts, policy, arch.label or "not x86", evidence)
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
            where = f"under {advice.hypervisor_label(hypervisor.name, hypervisor.vendor)}: {advice.expose_nested(hypervisor.name, hypervisor.vendor)}" if hypervisor.is_guest else ""
            fix = "VMware Workstation guests are unmodified operating systems and need VT-x or AMD-V. Run on bare metal " \
                  "or in a VM with nested virtualization exposed" + (f" ({where})" if where else "") + "."
            return failed(summary, fix, evidence)
        return warned(summary, "Use PVM-enabled guest kernels, or expose VT-x/AMD-V to run unmodified guests.", evidence)
    if hypervisor.is_guest:
        evidence["hypervisor"] = hypervisor.name
        return warn_or_fail(
            must,
            f"no VT-x/AMD-V: this is a VM under {advice.hypervisor_label(hypervisor.name, hypervisor.vendor)}, which does not expose hardware virtualization to it",
            advice.sentence(advice.expose_nested(hypervisor.name, hypervisor.vendor)),
            evidence,
        )
    vendor = cpu.vendor
    working = _vendor_module_initialised(facts)  # loaded, or built in beside /dev/kvm: VT-x/AMD-V is there
    if working:
        return warned(
            f"{facts.kvm_module} is working, which needs VT-x/AMD-V, yet /proc/cpuinfo shows neither vmx nor svm "
            "(a filtered cpuinfo, as some containers present)",
            "Nothing to fix if kvm.guest passes; otherwise read the host's real /proc/cpuinfo.",
            evidence,
        )
    # Where nothing shows whether this is a VM (no DMI or device tree read), the fix may be the outer hypervisor's.
    maybe_vm = "" if hypervisor.platform_seen else (
        " If this is a VM (host.hypervisor could not tell), expose VT-x/AMD-V from the outer hypervisor instead.")
    if cpuvendors.extension_of(vendor) == cpuvendors.VMX:
        return failed(
            "no VT-x (vmx) in /proc/cpuinfo: the CPU lacks it, or firmware disabled it and the kernel hides the flag",
            advice.INTEL_FIRMWARE + " `sudo kvmready check --only cpu.firmware` reads IA32_FEATURE_CONTROL to tell which."
            + maybe_vm,
            evidence,
        )
    if cpuvendors.extension_of(vendor) == cpuvendors.SVM:
        return failed(
            "no AMD-V (svm) in /proc/cpuinfo: the CPU lacks it or firmware disabled SVM",
            advice.AMD_FIRMWARE + maybe_vm,
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
    if facts.arch.family == "s390":
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
            f"{arch}: cpuinfo carries no virtualization flag here; the kernel provides KVM ({provider or KVM_DEVICE})",
            evidence,
        )
    return skipped(
        f"{arch} shows no virtualization flag in cpuinfo; kvm.module and kvm.device decide",
        evidence,
    )


def check_hardware_mmu(facts: Facts, policy: Policy) -> Outcome:
    cpu = facts.cpu
    elsewhere = x86_only(facts, "")
    if elsewhere and facts.arch.known_not_x86:  # another architecture: no cpuinfo needed to step aside
        return elsewhere
    if cpu.error is not None:
        return unreadable("EPT/NPT support", CPUINFO, cpu.error)
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


# Before Linux 5.6 printed a `vmx flags` line, the kernel named a few VMX features in the flags line itself
# (Linux-defined word 8 of arch/x86/include/asm/cpufeatures.h: tpr_shadow, vnmi, flexpriority, ept, vpid,
# later ept_ad).  Where it names any of them, a missing `ept` means the CPU has no EPT.
VMX_FEATURES_IN_FLAGS = ("tpr_shadow", "vnmi", "flexpriority", "vpid", "ept_ad")
# AMD's SVM features (CPUID 0x8000000A EDX), named in the same word once the kernel reported them.
SVM_FEATURES_IN_FLAGS = ("lbrv", "svm_lock", "nrip_save", "tsc_scale", "vmcb_clean", "flushbyasid", "decodeassists",
                         "pausefilter", "pfthreshold", "avic", "v_vmsave_vmload", "vgif", "x2avic", "v_spec_ctrl")
# Flags a kernel sets on every CPU that postdate the VMX/SVM feature names: such a kernel would have printed
# ept/npt.  cpuid: X86_FEATURE_CPUID (Linux 4.12); vmmcall: X86_FEATURE_VMMCALL, set on every AMD CPU,
# defined in word 8 after the SVM feature bits.
NEWER_KERNEL_MARKERS = ("cpuid", "vmmcall")


def _flags_line(cpu: CpuInfo) -> Optional[str]:
    return cpu.line("flags")


def _intel_mmu(facts: Facts, policy: Policy) -> Outcome:
    cpu = facts.cpu
    features = cpu.vmx_features
    evidence: Dict[str, Any] = {"vmx_flags_line": sorted(features) if features is not None else None}
    hw_ept, hw_ug, basis, lines = _intel_hardware(cpu)
    params = facts.module_params("kvm_intel") if facts.modules.has("kvm_intel") else None
    ept_param = params.flag("ept") if params else None
    ug_param = params.flag("unrestricted_guest") if params else None
    evidence.update(cpu_ept=hw_ept, cpu_unrestricted_guest=hw_ug, kvm_intel_ept=ept_param, kvm_intel_unrestricted_guest=ug_param,
                    basis=basis, cpuinfo_lines=lines)
    must = policy.target is Target.WORKSTATION
    if hw_ept is False or hw_ug is False:
        missing = " and ".join(name for name, ok in (("EPT", hw_ept), ("unrestricted guest", hw_ug)) if ok is False)
        return warn_or_fail(must, f"the CPU lacks {missing}, shown by {basis}; guests run with shadow paging, slowly",
                            "Use a CPU from 2010 or later (Westmere and newer have EPT and unrestricted guest).", evidence)
    if ept_param is False or ug_param is False:
        off = [name for name, value in (("ept", ept_param), ("unrestricted_guest", ug_param)) if value is False]
        if hw_ept is None:
            return warn_or_fail(must, "kvm_intel runs with " + ", ".join(f"{name}=N" for name in off)
                                + ": the CPU lacks it, or it was turned off (this kernel prints no VMX features to tell which)",
                                "If the CPU has EPT (Nehalem, 2008, and newer), remove any `kvm_intel ept=0` option and reload kvm_intel.",
                                evidence)
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
    if hw_ept:
        return warned(f"VT-x with EPT, shown by {basis}; cannot confirm unrestricted guest: kernels before 5.6 do not print it and "
                      "kvm_intel's parameters are unreadable",
                      "Load kvm_intel (`sudo modprobe kvm_intel`) or use a kernel 5.6+ that prints `vmx flags`.", evidence)
    return warned(f"cannot confirm EPT and unrestricted guest: {basis}, and kvm_intel's parameters are unreadable",
                  "Load kvm_intel (`sudo modprobe kvm_intel`) or use a kernel 5.6+ that prints `vmx flags`.", evidence)


def _intel_hardware(cpu: CpuInfo) -> Tuple[Optional[bool], Optional[bool], str, List[str]]:
    """(EPT, unrestricted guest, how this is known, the cpuinfo lines that show it)."""
    features = cpu.vmx_features
    if features is not None:
        line = cpu.line("vmx flags") or ""
        return "ept" in features, "unrestricted_guest" in features, "the `vmx flags` line (Linux 5.6+)", [line]
    flags = cpu.flags
    line = _flags_line(cpu) or ""
    shown = [name for name in VMX_FEATURES_IN_FLAGS + ("ept",) if name in flags]
    if "ept" in flags:
        return True, None, "`ept` in the flags line, where kernels before 5.6 name VMX features", [line]
    if shown:
        return False, False, (f"the flags line naming VMX features ({', '.join(shown)}) but not `ept`, "
                              "which unrestricted guest needs"), [line]
    markers = [name for name in NEWER_KERNEL_MARKERS if name in flags]
    if markers:
        return False, False, (f"a flags line without VMX features from a kernel that names them (`{markers[0]}`: Linux 4.12+); "
                              "unrestricted guest needs EPT"), [line]
    return None, None, "this kernel names no VMX features in /proc/cpuinfo (older kernels did not)", [line] if line else []


def _amd_mmu(facts: Facts, policy: Policy) -> Outcome:
    cpu = facts.cpu
    hw_npt, basis, lines = _amd_hardware(cpu)
    params = facts.module_params("kvm_amd") if facts.modules.has("kvm_amd") else None
    npt_param = params.flag("npt") if params else None
    evidence = {"cpu_npt": hw_npt, "kvm_amd_npt": npt_param, "basis": basis, "cpuinfo_lines": lines}
    must = policy.target is Target.WORKSTATION
    if hw_npt is False:
        return warn_or_fail(must, f"the CPU lacks nested page tables (NPT/RVI), shown by {basis}; guests run with shadow paging, slowly",
                            "Use an AMD CPU with RVI (Barcelona, 2007, or newer).", evidence)
    if npt_param is False:
        if hw_npt is None:
            return warn_or_fail(must, "kvm_amd runs with npt=0: the CPU lacks NPT, or it was turned off (this kernel prints no SVM features to tell which)",
                                "If the CPU has NPT (family 10h, 2007, and newer), remove any `kvm_amd npt=0` option and reload kvm_amd.", evidence)
        return warn_or_fail(must, "kvm_amd runs with npt=0 although the CPU has NPT", "Remove the `kvm_amd npt=0` option from /etc/modprobe.d or the kernel command line and reload kvm_amd.", evidence)
    if hw_npt:
        return passed("AMD-V with nested page tables (NPT)", evidence)
    if npt_param:
        return passed("kvm_amd uses nested page tables (NPT)", evidence)
    return warned(f"cannot confirm nested page tables (NPT): {basis}, and kvm_amd's parameters are unreadable",
                  "Load kvm_amd (`sudo modprobe kvm_amd`) to see its npt parameter, or use a newer kernel.", evidence)


def _amd_hardware(cpu: CpuInfo) -> Tuple[Optional[bool], str, List[str]]:
    flags = cpu.flags
    line = _flags_line(cpu) or ""
    if "npt" in flags:
        return True, "`npt` in the flags line", [line]
    shown = [name for name in SVM_FEATURES_IN_FLAGS if name in flags]
    if shown:
        return False, f"the flags line naming SVM features ({', '.join(shown)}) but not `npt`", [line]
    markers = [name for name in NEWER_KERNEL_MARKERS if name in flags]
    if markers:
        return False, f"a flags line without `npt` from a kernel newer than the SVM feature names (`{markers[0]}`)", [line]
    return None, "this kernel names none of AMD's SVM features (npt, lbrv, svm_lock, nrip_save; older kernels did not)", [line] if line else []


# Since Linux 5.6 the kernel clears the vmx flag when firmware left VT-x disabled (arch/x86/kernel/cpu/feat_ctl.c,
# "x86/cpu: Clear VMX feature flag if VMX is not fully enabled", tip x86/cpu, January 2020); older kernels show
# vmx whatever the firmware says.
VMX_HIDDEN_SINCE = (5, 6, 0)


def _vendor_module_initialised(facts: Facts) -> Optional[Outcome]:
    """A pass when a vendor module evidently initialised, which it does not while firmware disables virtualization.

    A loaded module proves it (its init refused otherwise).  A built-in one does not: /sys/module/<name> exists for
    any built-in module with parameters, whether its init succeeded or not, so there /dev/kvm, which only a
    successful init registers, must exist too.
    """
    name = facts.kvm_module  # this CPU vendor's module: a kernel may build in the other one too
    module = facts.modules.get(name) if name in HARDWARE_KVM_MODULES else None
    if module is None:
        return None
    if not module.builtin:
        return passed(f"{name} is loaded, and it refuses to load while firmware disables virtualization", {"module": module.to_dict()})
    if facts.devices.get(KVM_DEVICE).present:
        return passed(f"{name} is built in and {KVM_DEVICE} exists: its initialisation, which fails while firmware "
                      "disables virtualization, succeeded", {"module": module.to_dict(), "kvm_device": True})
    return None


FEATURE_CONTROL_LOCK = 1 << 0
FEATURE_CONTROL_VMX_OUTSIDE_SMX = 1 << 2
VM_CR_LOCK = 1 << 3
VM_CR_SVMDIS = 1 << 4


def check_firmware(facts: Facts, policy: Policy) -> Outcome:
    cpu = facts.cpu
    elsewhere = x86_only(facts, "")
    if elsewhere and facts.arch.known_not_x86:  # another architecture: no cpuinfo needed to step aside
        return elsewhere
    if cpu.error is not None:
        return unreadable("the firmware's virtualization setting", CPUINFO, cpu.error)
    if elsewhere:
        return elsewhere
    if facts.hypervisor.paravirtual_xen:
        return skipped("a Xen PV guest: no firmware of its own, and VT-x is out of reach anyway (see cpu.virtualization)")
    version = facts.kernel.version
    # The `vmx flags` line came in the same series as the hiding: where it is printed, the kernel hides vmx too.
    hides_vmx = (version is not None and version >= VMX_HIDDEN_SINCE) or cpu.vmx_features is not None
    if cpu.vmx_cpus and cpu.vmx_cpus == cpu.flag_lines and hides_vmx:
        return passed("firmware leaves VT-x on: the kernel shows vmx on every CPU (it hides it when firmware disables VT-x)", cpu.evidence())
    initialised = _vendor_module_initialised(facts)
    if initialised:
        return initialised
    hypervisor = facts.hypervisor
    if hypervisor.is_guest:
        return skipped(
            f"a VM under {advice.hypervisor_label(hypervisor.name, hypervisor.vendor)}: its MSRs are the hypervisor's virtual registers, not firmware settings "
            "(host.hypervisor says how to expose VT-x/AMD-V)",
            {"hypervisor": hypervisor.name},
        )
    live = facts.live
    if live is None:
        shown = ""
        if cpu.vmx_cpus:
            kernel = "this kernel's release is unknown" if version is None else f"Linux {'.'.join(map(str, version[:2]))}"
            shown = f"vmx is shown, but {kernel}, and kernels before 5.6 show it whatever the firmware says; "
        return skipped(f"{shown}the MSR that tells needs the machine itself ({facts.offline_reason})", undecided=True)
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
    elsewhere = x86_only(facts, "")
    if elsewhere and facts.arch.known_not_x86:  # another architecture: no cpuinfo needed to step aside
        return elsewhere
    if cpu.error is not None:
        return unreadable("the TSC's behaviour", CPUINFO, cpu.error)
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
    what="The running kernel's architecture and word size, from the host's own files: /proc/sys/kernel/arch, the kernel "
    "release's suffix, uname(2) when live, the ELF class of the kernel's vDSO, and what the kernel prints (the cpuinfo layout, "
    "/proc/modules addresses, HighTotal). The CPU's `lm` flag says only what the CPU could run, never what runs.",
    why="VMware Workstation is built for 64-bit x86 kernels only; KVM exists on a handful of architectures, mostly as 64-bit kernels.",
    fix="Use an x86_64 machine with a 64-bit (x86_64/amd64) distribution for Workstation.",
    sources=(
        "VMware Workstation 16.x/17.x host requirements: a 64-bit x86 CPU and a 64-bit host operating system "
        "(Broadcom KB 80807)",
        "arch/x86/kernel/cpu/proc.c: fdiv_bug, f00f_bug and coma_bug are printed only by 32-bit (CONFIG_X86_32)"
        " kernels",
        "KVM by architecture: arch/*/kvm in Linux (RISC-V from 5.16, LoongArch from 6.7); ia64's KVM removed in"
        " 3.19, 32-bit ARM hosts' in 5.7; alpha, parisc and sparc never had one",
    ),
)


VIRTUALIZATION = CheckSpec(
    "cpu.virtualization", "Hardware virtualization (VT-x/AMD-V)", "cpu", check_virtualization,
    what="vmx (Intel VT-x) or svm (AMD-V) on every CPU in /proc/cpuinfo, plus what provides KVM when neither is visible (kvm_pvm, a hypervisor that hides it).",
    why="Unmodified guests need VT-x or AMD-V. The kernel hides vmx when firmware disables VT-x; paravirtual KVM (kvm_pvm) runs only PVM-enabled Linux guests.",
    fix="Enable VT-x/SVM in the firmware setup; in a VM, expose nested virtualization from the outer hypervisor.",
    sources=(
        "Intel SDM vol. 3C, chapter 24 (VMX: CPUID.1:ECX bit 5); AMD64 APM vol. 2, chapter 15 (SVM: CPUID "
        "8000_0001h:ECX bit 2)",
        "arch/x86/kernel/cpu/feat_ctl.c (Linux 5.6, \"x86/cpu: Clear VMX feature flag if VMX is not fully "
        "enabled\"): the kernel hides vmx when firmware left VT-x disabled and locked",
        "PVM: \"[RFC PATCH 00/73] KVM: x86/PVM: Introduce a new hypervisor\" (Lai Jiangshan, 2024-02-26; "
        "lore.kernel.org/kvm/20240226143630.33643-1-jiangshanlai@gmail.com): KVM without VMX/SVM for "
        "PVM-enabled guests",
    ),
)


HARDWARE_MMU = CheckSpec(
    "cpu.hardware-mmu", "EPT/NPT and unrestricted guest", "cpu", check_hardware_mmu,
    what="Intel EPT and unrestricted guest (the `vmx flags` line; before Linux 5.6 the VMX features in the flags line; "
    "kvm_intel ept/unrestricted_guest) or AMD NPT (the npt flag beside the other SVM features, kvm_amd npt). A kernel too old "
    "to name these features cannot show their absence: that is unknown, not missing.",
    why="Without a hardware MMU guests fall back to shadow paging; modern Workstation releases require EPT/RVI, and VT-x without unrestricted guest cannot run real-mode guest code directly.",
    fix="Remove `ept=0`, `unrestricted_guest=0` or `npt=0` module options; older CPUs need replacing.",
    sources=(
        "VMware Workstation 17 host requirements: a CPU launched in 2011 or later (Westmere, 2010, supported), "
        "all of which have EPT/RVI and unrestricted guest",
        "Documentation/admin-guide/kernel-parameters.txt: kvm-intel.ept, kvm-intel.unrestricted_guest (disabled"
        " by KVM when EPT is), kvm-amd.npt",
        "arch/x86/include/asm/cpufeatures.h (word 8, VMX/SVM features in the flags line) and vmxfeatures.h (the"
        " `vmx flags` line from Linux 5.6: commit 14442a159cf4, \"x86/cpu: Print VMX flags in /proc/cpuinfo using"
        " VMX_FEATURES_*\", in the same tip x86/cpu series, January 2020, as feat_ctl.c)",
    ),
)


FIRMWARE = CheckSpec(
    "cpu.firmware", "Virtualization enabled in firmware", "cpu", check_firmware,
    what="As root, IA32_FEATURE_CONTROL (0x3A, Intel) or VM_CR (0xC0010114, AMD) through /dev/cpu/0/msr; the visible vmx flag already proves Intel firmware enabled VT-x.",
    why="Firmware can disable VT-x/AMD-V and lock the setting; then no software change helps and only the firmware setup does.",
    fix="Enable 'Intel Virtualization Technology' or 'SVM Mode' in the firmware setup, then power-cycle.",
    sources=(
        "Intel SDM vol. 3C, 23.7: IA32_FEATURE_CONTROL (MSR 0x3A) bit 0 lock, bit 2 VMX outside SMX",
        "AMD64 APM vol. 2, 15.30.1: VM_CR (MSR 0xC001_0114) bit 4 SVMDIS, bit 3 LOCK",
        "msr(4): /dev/cpu/N/msr, readable by root only",
    ),
)


TIMEKEEPING = CheckSpec(
    "cpu.timekeeping", "Invariant TSC", "cpu", check_timekeeping,
    what="The constant_tsc and nonstop_tsc flags.",
    why="With an invariant TSC guest clocks stay steady across frequency changes and deep sleep states.",
    fix="Nothing on the host; run time synchronisation in guests.",
    sources=(
        "Intel SDM vol. 3B, 18.17.1 (invariant TSC: CPUID 8000_0007h:EDX bit 8); Linux's constant_tsc and "
        "nonstop_tsc flags (arch/x86/include/asm/cpufeatures.h)",
    ),
)
