"""VMware guest support in KVM: the backdoor VMware Tools talk through.

The per-VM capabilities from VMware's KVM patch series are not in any
released kernel yet (see `kvmready.vmware_caps`), so the check rests on the
system-wide `kvm.enable_vmware_backdoor` parameter until a release that
defines them runs here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional

from kvmready import vmware_caps
from kvmready.checks import advice
from kvmready.checks.base import CheckSpec, passed, skipped, warned, x86_only
from kvmready.facts.kernel import format_version
from kvmready.model import Outcome

BACKDOOR_PARAM = "enable_vmware_backdoor"
TOOLS_FEATURES = (
    "VMware Tools (open-vm-tools) reach the host through the backdoor I/O ports 0x5658/0x5659: "
    "time synchronisation, guest information, copy and paste, drag and drop, display resizing, "
    "shared folders, graceful shutdown, the absolute mouse (vmmouse) and the VMware pseudo performance counters"
)

if TYPE_CHECKING:
    from kvmready.facts import Facts
    from kvmready.targets import Policy



def check_backdoor(facts: Facts, policy: Policy) -> Outcome:
    elsewhere = x86_only(facts, ": the VMware backdoor is an x86 interface")
    if elsewhere:
        return elsewhere
    per_vm = _per_vm_capabilities(facts)
    if per_vm is not None:
        return per_vm
    params = facts.module_params("kvm")
    path = params.path(BACKDOOR_PARAM)
    value = params.get(BACKDOOR_PARAM)
    evidence = {"source": path, "value": value, "per_vm_capabilities_defined": [cap.name for cap in vmware_caps.VMWARE_CAPABILITIES]}
    fix = (
        f"{advice.sentence(advice.modprobe_option('kvm', 'enable_vmware_backdoor=1'))} "
        "The setting is read only when the module loads, applies to every VM, and costs a little speed "
        "(KVM intercepts #GP to emulate the port accesses)."
    )
    if value is None:
        reason = params.errors.get(BACKDOOR_PARAM) or params.error or "no such parameter"
        evidence["error"] = reason
        if not facts.modules.known:
            return skipped("cannot tell whether KVM is loaded and how its VMware backdoor is set: no module list could be read", evidence)
        if not facts.modules.has("kvm"):
            return skipped("KVM is not loaded, so its VMware backdoor setting cannot be read (see kvm.module)", evidence)
        return warned(f"this kernel's KVM has no VMware backdoor support ({path}: {reason})", "Use a kernel with KVM from 4.16 on.", evidence, detail=TOOLS_FEATURES + ".")
    if params.flag(BACKDOOR_PARAM):
        return passed(f"kvm.{BACKDOOR_PARAM}={value}: VMware Tools can reach the host", evidence, detail=TOOLS_FEATURES + ".")
    return warned(
        f"kvm.{BACKDOOR_PARAM}={value}: VMware Tools in guests cannot reach the host",
        fix,
        evidence,
        detail=TOOLS_FEATURES + ". No released kernel offers the per-VM VMware capabilities yet, so the system-wide parameter decides.",
    )


def _per_vm_capabilities(facts: Facts) -> Optional[Outcome]:
    kernel = facts.kernel
    defined = vmware_caps.capabilities_for(kernel.version)
    if not defined:
        return None
    live = facts.live
    evidence: Dict[str, Any] = {
        "kernel": kernel.release,
        "defined": {cap.name: {"number": cap.number, "since": format_version(cap.first_release)} for cap in defined},
    }
    if live is None or not live.kvm.opened:
        return None  # cannot ask the kernel: fall back to the module parameter
    values = {cap.name: live.kvm.capabilities.get(cap.name, 0) for cap in defined}
    evidence["values"] = values
    offered = [name for name, value in values.items() if value > 0]
    if len(offered) == len(defined):
        return passed("the kernel offers per-VM VMware support: " + ", ".join(offered), evidence)
    return None



BACKDOOR = CheckSpec(
    "vmware.backdoor", "VMware guest support in KVM", "vmware", check_backdoor,
    what="The per-VM VMware capabilities where the running kernel defines them, else the system-wide kvm.enable_vmware_backdoor parameter.",
    why=TOOLS_FEATURES + "; without the backdoor those features stop working.",
    fix="`options kvm enable_vmware_backdoor=1` in /etc/modprobe.d (or `kvm.enable_vmware_backdoor=1` on the kernel command line when KVM is built in), then reload KVM or reboot.",
)
