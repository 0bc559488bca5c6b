"""Other hypervisors' drivers that compete with KVM for VT-x/AMD-V.

Since Linux 6.12 KVM turns virtualization on when its module loads
(`kvm.enable_virt_at_load`, default Y), so a driver that wants VMX/SVM for
itself fails while KVM is loaded.  Before 6.12, or with the parameter off,
whichever hypervisor starts a VM first holds it and the other gets EBUSY.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from kvmready.checks.base import CheckSpec, errored, passed, warned
from kvmready.facts.modules import HARDWARE_KVM_MODULES
from kvmready.model import Outcome

if TYPE_CHECKING:
    from kvmready.facts import Facts
    from kvmready.targets import Policy


VIRT_AT_LOAD_SINCE = (6, 12, 0)
VIRTUALBOX_MODULES = ("vboxdrv", "vboxnetflt", "vboxnetadp", "vboxpci")
VMWARE_LEGACY_MODULES = ("vmmon", "vmnet")


def _loaded(facts: Facts, names: Sequence[str]) -> List[str]:
    return [name for name in names if facts.modules.has(name)]


def _virt_at_load(facts: Facts) -> Dict[str, Any]:
    """Whether KVM holds VT-x/AMD-V from module load, with what shows it."""
    version = facts.kernel.version
    params = facts.module_params("kvm") if facts.modules.has("kvm") else None
    value = params.get("enable_virt_at_load") if params else None
    if params is not None and value is not None:
        holds = params.flag("enable_virt_at_load")
    else:  # the parameter exists only from 6.12 on, where it defaults to Y
        holds = bool(version and version >= VIRT_AT_LOAD_SINCE and params is not None and not params.error)
    vendor = _loaded(facts, HARDWARE_KVM_MODULES)
    return {
        "kernel": facts.kernel.release,
        "enable_virt_at_load": value,
        "kvm_vendor_modules": vendor,
        "kvm_holds_virtualization_from_load": bool(holds and vendor),
    }


def _ebusy(facts: Facts) -> bool:
    live = facts.live
    error = live.kvm.create_vm_error if live else None
    return bool(error and error.errno_name == "EBUSY")


def _unknown_modules(facts: Facts) -> Optional[Outcome]:
    table = facts.modules
    if table.known:
        return None
    return errored("cannot tell which drivers are loaded: neither /proc/modules nor /sys/module could be read", {"sources": table.sources()})


def check_virtualbox(facts: Facts, policy: Policy) -> Outcome:
    unknown = _unknown_modules(facts)
    if unknown:
        return unknown
    drivers = _loaded(facts, VIRTUALBOX_MODULES)
    if not drivers:
        return passed("no VirtualBox drivers loaded", {"checked": list(VIRTUALBOX_MODULES)})
    state = _virt_at_load(facts)
    evidence = {"virtualbox_modules": drivers, **state, "kvm_create_vm_ebusy": _ebusy(facts)}
    ways_out = (
        "Two ways out: (1) let KVM take VT-x/AMD-V only while a KVM VM runs: `options kvm enable_virt_at_load=0` "
        "in /etc/modprobe.d (or `kvm.enable_virt_at_load=0` on the kernel command line), then reload kvm or reboot; "
        "(2) unload KVM while you use VirtualBox: `sudo modprobe -r kvm_intel kvm_amd`. "
        "Either way the two cannot run VMs at the same time."
    )
    if state["kvm_holds_virtualization_from_load"]:
        return warned(
            f"VirtualBox drivers ({', '.join(drivers)}) are loaded while KVM holds VT-x/AMD-V from load time "
            "(Linux 6.12+): VirtualBox VMs fail to start (VERR_VMX_IN_VMX_ROOT_MODE / VERR_SVM_IN_USE)",
            ways_out,
            evidence,
        )
    if evidence["kvm_create_vm_ebusy"]:
        return warned(
            f"VirtualBox ({', '.join(drivers)}) holds VT-x/AMD-V right now: KVM_CREATE_VM returned EBUSY, so KVM VMs fail",
            "Power off the VirtualBox VMs, or unload its drivers: `sudo modprobe -r vboxnetadp vboxnetflt vboxdrv`.",
            evidence,
        )
    return warned(
        f"VirtualBox drivers ({', '.join(drivers)}) are loaded: whichever hypervisor starts a VM first holds VT-x/AMD-V "
        "and the other fails (KVM with EBUSY)",
        "Do not run VirtualBox and KVM VMs at the same time, or unload the VirtualBox drivers: "
        "`sudo modprobe -r vboxnetadp vboxnetflt vboxdrv`.",
        evidence,
    )


def check_vmware_vmmon(facts: Facts, policy: Policy) -> Outcome:
    unknown = _unknown_modules(facts)
    if unknown:
        return unknown
    drivers = _loaded(facts, VMWARE_LEGACY_MODULES)
    if not drivers:
        return passed("no legacy VMware drivers (vmmon, vmnet) loaded", {"checked": list(VMWARE_LEGACY_MODULES)})
    state = _virt_at_load(facts)
    evidence = {"vmware_modules": drivers, **state, "kvm_create_vm_ebusy": _ebusy(facts)}
    retire = (
        "A KVM-backed Workstation does not need vmmon: once you switch, stop loading it "
        "(`sudo modprobe -r vmmon`, and remove it from /etc/modules-load.d)."
    )
    if evidence["kvm_create_vm_ebusy"]:
        return warned(
            "the classic Workstation's vmmon holds VT-x/AMD-V: KVM_CREATE_VM returned EBUSY, so KVM VMs fail "
            "while a classic Workstation VM runs",
            "Power off the classic Workstation VMs. " + retire,
            evidence,
        )
    if state["kvm_holds_virtualization_from_load"]:
        return warned(
            f"legacy VMware drivers ({', '.join(drivers)}) are loaded while KVM holds VT-x/AMD-V from load time; "
            "vmmon appears to share VMX root with another VMM (inferred from its source, unconfirmed)",
            "If classic Workstation VMs fail to power on, set `options kvm enable_virt_at_load=0` or unload kvm_intel/kvm_amd "
            "while they run. " + retire,
            evidence,
        )
    return warned(
        f"legacy VMware drivers ({', '.join(drivers)}) are loaded: while a classic Workstation VM runs, "
        "KVM cannot enable VT-x/AMD-V (KVM_CREATE_VM fails with EBUSY)",
        "Do not run classic Workstation and KVM VMs at the same time. " + retire,
        evidence,
    )



VIRTUALBOX = CheckSpec(
    "conflicts.virtualbox", "VirtualBox drivers", "conflicts", check_virtualbox,
    what="vboxdrv, vboxnetflt, vboxnetadp, vboxpci loaded, weighed against kvm.enable_virt_at_load (Linux 6.12+) and a KVM_CREATE_VM that returned EBUSY.",
    why="VirtualBox and KVM cannot both own VT-x/AMD-V; since 6.12 KVM owns it from module load, and VirtualBox VMs fail.",
    fix="`options kvm enable_virt_at_load=0`, or unload kvm_intel/kvm_amd while VirtualBox runs.",
)


VMWARE_VMMON = CheckSpec(
    "conflicts.vmware-vmmon", "Legacy VMware drivers", "conflicts", check_vmware_vmmon,
    what="The classic Workstation's vmmon and vmnet modules loaded beside KVM.",
    why="The classic Workstation's vmmon competes with KVM for VT-x/AMD-V; a KVM-backed Workstation no longer needs it.",
    fix="Unload vmmon/vmnet when moving to a KVM-backed Workstation.",
)
