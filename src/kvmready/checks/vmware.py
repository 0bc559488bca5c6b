"""VMware's KVM support: what a KVM-backed Workstation needs from the kernel, and the legacy backdoor switch.

`vmware.kvm-support` decides, from evidence only: the capability, probed
live, where a kernel release defines it; the kernel's build configuration
otherwise.  What kvmready knows of upstream lives in `kvmready.vmware_caps`
(one dated table).  `vmware.backdoor` only reports the old system-wide
`kvm.enable_vmware_backdoor` switch, as context.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from kvmready import vmware_caps
from kvmready.checks.base import CheckSpec, errored, failed, passed, skipped, warned, x86_only
from kvmready.facts.kernel import format_version
from kvmready.model import Outcome, Status

if TYPE_CHECKING:
    from kvmready.facts import Facts
    from kvmready.targets import Policy

BACKDOOR_PARAM = "enable_vmware_backdoor"
TOOLS_FEATURES = (
    "VMware Tools (open-vm-tools) reach the host through the backdoor I/O ports 0x5658/0x5659: "
    "time synchronisation, guest information, copy and paste, drag and drop, display resizing, "
    "shared folders, graceful shutdown, the absolute mouse (vmmouse) and the VMware pseudo performance counters"
)
CHECKED = f"Linux {vmware_caps.CHECKED_THROUGH[0]}.{vmware_caps.CHECKED_THROUGH[1]}, checked on {vmware_caps.CHECKED_ON}"
WATCH_UPSTREAM = (
    "Nothing to change on this host: wait for a kernel release with VMware's KVM support. Watch the kvm mailing list "
    "for Zack Rusin's series (v2: \"KVM: Improve VMware guest support\", 2025-04-22) and the kernel's release notes for "
    "KVM_CAP_X86_VMWARE, then upgrade the kernel and kvmready. Until then, gate CI on everything else: "
    "`kvmready check --skip vmware.kvm-support`."
)


def check_kvm_support(facts: Facts, policy: Policy) -> Outcome:
    elsewhere = x86_only(facts, ": VMware's KVM support is an x86 interface")
    if elsewhere:
        return elsewhere
    kernel = facts.kernel
    version = kernel.version
    evidence: Dict[str, Any] = {
        "kernel": kernel.release,
        "checked_through": format_version(vmware_caps.CHECKED_THROUGH),
        "checked_on": vmware_caps.CHECKED_ON,
        "checked_against": vmware_caps.CHECKED_AGAINST,
    }
    if version is None:
        return errored("cannot tell: the kernel release is unknown (see kernel.version)", evidence)
    defined = vmware_caps.capabilities_for(version)
    evidence["capabilities_defined"] = [f"{cap.name} ({cap.number}, since {format_version(cap.first_release)})" for cap in defined]
    live = _live_answer(facts, defined, evidence)
    if live is not None:
        return live
    configured = _configured(facts, evidence)
    release = kernel.release
    if configured == "enabled":
        if defined:
            return passed(f"Linux {release} is built with {vmware_caps.CONFIG_SYMBOL}, the VMware support that release defines", evidence)
        return warned(
            f"Linux {release} is built with {vmware_caps.CONFIG_SYMBOL}: it carries VMware's out-of-tree patch series, "
            "not merged upstream, whose capability numbers clash with mainline's, so kvmready cannot probe it",
            "A KVM-backed Workstation may or may not speak this version of the interface; VMware's release notes will say.",
            evidence,
        )
    if configured == "disabled":
        return failed(
            f"Linux {release} knows VMware's KVM support but is built without it ({vmware_caps.CONFIG_SYMBOL} is not set)",
            f"Use a kernel built with {vmware_caps.CONFIG_SYMBOL}=y (your distribution's, or rebuild with it).",
            evidence,
        )
    if defined:
        return errored(
            f"cannot tell whether Linux {release} was built with VMware's KVM support: no live answer from /dev/kvm "
            "and no kernel configuration to read",
            evidence,
            remediation="Run kvmready on the machine itself, or include /proc/config.gz or /boot/config-<release> in the tree.",
        )
    if vmware_caps.beyond_knowledge(version):
        return errored(
            f"Linux {release} is newer than kvmready knows: its knowledge of VMware's KVM support ends at {CHECKED}",
            evidence,
            remediation="Update kvmready, whose newer releases know newer kernels; until then "
            "`kvmready check --skip vmware.kvm-support` gates on everything else.",
        )
    return Outcome(
        Status.FAIL,
        f"Linux {release} has no VMware KVM support, and no released kernel has it yet (kvmready knows releases up to {CHECKED}): "
        "a KVM-backed Workstation cannot run on any Linux today",
        "VMware's patches (CONFIG_KVM_VMWARE, KVM_CAP_X86_VMWARE) are still in review on the kvm mailing list.",
        WATCH_UPSTREAM,
        evidence,
        waiting_on_upstream=True,
    )


def _live_answer(facts: Facts, defined: Tuple[vmware_caps.VmwareCapability, ...], evidence: Dict[str, Any]) -> Optional[Outcome]:
    """The capability as KVM itself answers it, where a release defines it and /dev/kvm opened."""
    live = facts.live
    if not defined or live is None or not live.kvm.opened:
        return None
    values = {cap.name: live.kvm.capabilities.get(cap.name) for cap in defined}
    evidence["ioctl"] = "KVM_CHECK_EXTENSION"
    evidence["values"] = values
    if any(value is None for value in values.values()):
        return None  # not asked (a snapshot from an older kvmready): fall back to the configuration
    missing = [cap.name for cap in defined if not cap.offered(values[cap.name] or 0)]
    if not missing:
        return passed("KVM offers VMware's guest support: " + ", ".join(f"{name} = {value}" for name, value in values.items()), evidence)
    return failed(
        f"KVM_CHECK_EXTENSION says this kernel does not offer {', '.join(missing)}, which its release defines "
        f"(built without {vmware_caps.CONFIG_SYMBOL}?)",
        f"Use a kernel built with {vmware_caps.CONFIG_SYMBOL}=y.",
        evidence,
    )


def _configured(facts: Facts, evidence: Dict[str, Any]) -> Optional[str]:
    """"enabled", "disabled", or None when the configuration is unknown or does not mention the symbol."""
    config = facts.kernel_config
    evidence["kernel_config"] = config.evidence(vmware_caps.CONFIG_SYMBOL)
    value = config.get(vmware_caps.CONFIG_SYMBOL)
    if value in ("y", "m"):
        return "enabled"
    if value == "n":
        return "disabled"
    return None


def check_backdoor(facts: Facts, policy: Policy) -> Outcome:
    elsewhere = x86_only(facts, ": the VMware backdoor is an x86 interface")
    if elsewhere:
        return elsewhere
    params = facts.module_params("kvm")
    path = params.path(BACKDOOR_PARAM)
    value = params.get(BACKDOOR_PARAM)
    evidence = {"source": path, "value": value}
    context = (
        "The system-wide switch is legacy: review of VMware's KVM patches called it \"generally deprecated\" in favour of a "
        "per-VM capability, which a KVM-backed Workstation enables for its own VMs (see vmware.kvm-support)."
    )
    if value is None:
        reason = params.errors.get(BACKDOOR_PARAM) or params.error or "no such parameter"
        evidence["error"] = reason
        if not facts.modules.known:
            return skipped("cannot tell whether KVM is loaded and how its VMware backdoor is set: no module list could be read", evidence)
        if not facts.modules.has("kvm"):
            return skipped("KVM is not loaded, so its VMware backdoor switch cannot be read (see kvm.module)", evidence)
        read_error = params.errors.get(BACKDOOR_PARAM)
        if read_error and "ENOENT" not in read_error:  # the parameter is there, but this user may not read it
            return skipped(f"cannot read the system-wide VMware backdoor switch: {path}: {reason}", evidence, detail=context)
        return passed(f"this kernel's KVM has no system-wide VMware backdoor switch ({path}: {reason})", evidence, detail=context)
    state = "on for every VM" if params.flag(BACKDOOR_PARAM) else "off"
    return passed(f"kvm.{BACKDOOR_PARAM}={value}: the legacy system-wide VMware backdoor is {state}", evidence,
                  detail=f"{TOOLS_FEATURES}. {context}")


KVM_SUPPORT = CheckSpec(
    "vmware.kvm-support", "VMware's KVM support in the kernel", "vmware", check_kvm_support,
    what="Whether the running kernel carries what a KVM-backed VMware Workstation needs from KVM: VMware's per-VM "
    "capability (KVM_CAP_X86_VMWARE, probed live where a kernel release defines it) or, offline, "
    "CONFIG_KVM_VMWARE in the kernel's configuration. kvmready knows releases up to "
    f"{CHECKED}; no released kernel has the support yet, so on those this check fails with `waiting_on_upstream`.",
    why="VMware's Workstation on KVM forwards its backdoor and hypercalls through this support; without it no "
    "KVM-backed Workstation runs, however ready the rest of the host is.",
    fix="Wait for a kernel release with VMware's KVM support and upgrade to it; meanwhile gate on the rest with "
    "`--skip vmware.kvm-support`.",
    sources=vmware_caps.SOURCES,
)


BACKDOOR = CheckSpec(
    "vmware.backdoor", "The legacy system-wide VMware backdoor switch", "vmware", check_backdoor,
    what="kvm.enable_vmware_backdoor (since about Linux 4.17), the old switch that lets every VM use the VMware backdoor "
    "I/O ports; reported as context, never as something to turn on.",
    why=TOOLS_FEATURES + ". A KVM-backed Workstation turns the backdoor on per VM through the capability that "
    "vmware.kvm-support checks; the system-wide switch would open it for every VM on the host.",
    fix="Nothing to set here; see vmware.kvm-support.",
    sources=(
        "kvm.enable_vmware_backdoor: arch/x86/kvm/x86.c; Liran Alon's series, 2017-12 (commits 9e86948041f2, 9718420e9fd4)",
        "Review of VMware's KVM patches: the parameter is \"generally deprecated\" (Paolo Bonzini, 2024-11-09; "
        "lore.kernel.org/kvm/c60b32a3-e699-4a8c-8d52-09b34c4d5269@redhat.com)",
    ),
)
