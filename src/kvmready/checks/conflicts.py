"""Other hypervisors' drivers that compete with KVM for VT-x/AMD-V.

Since Linux 6.12 KVM turns virtualization on when its module loads
(`kvm.enable_virt_at_load`, default Y), so a driver that wants VMX/SVM for
itself fails while KVM is loaded.  Before 6.12, or with the parameter off,
whichever hypervisor starts a VM first holds it and the other gets EBUSY.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from kvmready.checks.advice import sentence as advice_sentence
from kvmready.checks.base import CheckSpec, errored, passed, warned
from kvmready.facts.modules import HARDWARE_KVM_MODULES, parse_bool
from kvmready.model import Outcome

if TYPE_CHECKING:
    from packaging.version import Version

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


# VirtualBox's own releases changed what it needs from KVM on Linux 6.12+ (enable_virt_at_load=Y):
# up to 7.2.8 its VMs fail while KVM holds VT-x/AMD-V (VERR_VMX_IN_VMX_ROOT_MODE, VERR_SVM_IN_USE) and the
# fix is `enable_virt_at_load=0`; from 7.2.10 (June 2026) that same override breaks it
# (VERR_SVM_HOST_SVME_NOT_ENABLED): KVM must be absent or the parameter 1.  Sources: VirtualBox's
# GitHub tracker, issues 711 and 713 (VirtualBox/virtualbox); NixOS/nixpkgs #363887; Debian's
# virtualbox-kvm-autodisable.conf (VirtualBox/virtualbox #141).
VBOX_NEEDS_OVERRIDE_UP_TO = "7.2.8"
VBOX_BROKEN_BY_OVERRIDE_FROM = "7.2.10"
# Except on Linux 6.12 itself: there 7.2.10 and later still need the override (void-linux/void-packages #61332,
# VirtualBox 7.2.14 tested on 6.12, 6.18, 7.0 and 7.1, July 2026: "On linux-6.12 it does NOT work and requires
# `options kvm enable_virt_at_load=0`. However, every other kernel does not need this parameter.").
VBOX_OVERRIDE_STILL_NEEDED_ON = (6, 12)
VBOX_VERSION_FILE = "/sys/module/vboxdrv/version"
_VERSION_PREFIX = r"\d+(?:\.\d+){1,3}"

OVERRIDE_ON = ("`options kvm enable_virt_at_load=0` in /etc/modprobe.d (or `kvm.enable_virt_at_load=0` on the kernel "
               "command line), then reload kvm or reboot")
OVERRIDE_OFF = ("remove `enable_virt_at_load=0` from /etc/modprobe.d (Debian's virtualbox-kvm-autodisable.conf sets "
                "it) and from the kernel command line, then reload kvm or reboot")
NOT_AT_ONCE = "VirtualBox and KVM VMs still cannot run at the same time."


def vbox_release(raw: Optional[str]) -> Optional[Version]:
    """The release in vboxdrv's version string (`7.2.10 r170234`, `7.0.14_Ubuntu r161095`), or None."""
    from packaging.version import InvalidVersion, Version

    match = re.match(_VERSION_PREFIX, raw or "")
    if not match:
        return None
    try:
        return Version(match.group())
    except InvalidVersion:
        return None


def check_virtualbox(facts: Facts, policy: Policy) -> Outcome:
    unknown = _unknown_modules(facts)
    if unknown:
        return unknown
    drivers = _loaded(facts, VIRTUALBOX_MODULES)
    if not drivers:
        return passed("no VirtualBox drivers loaded", {"checked": list(VIRTUALBOX_MODULES)})
    state = _virt_at_load(facts)
    raw, version_error = facts.module_version("vboxdrv") if "vboxdrv" in drivers else (None, "vboxdrv is not loaded")
    release = vbox_release(raw)
    evidence = {"virtualbox_modules": drivers, "virtualbox_version": raw, "virtualbox_version_source": VBOX_VERSION_FILE,
                **state, "kvm_create_vm_ebusy": _ebusy(facts)}
    if version_error:
        evidence["virtualbox_version_error"] = version_error
    from packaging.version import Version

    shown = f"VirtualBox {raw}" if raw else "VirtualBox (version unknown)"
    if facts.kvm_module is None:  # nothing competes for VT-x/AMD-V: the KVM module is absent (see kvm.module)
        return passed(f"{shown} drivers ({', '.join(drivers)}) are loaded and KVM is not, so they compete with nothing "
                      "now (see kvm.module; once KVM loads, this check tells what VirtualBox needs from it)", evidence)
    needs_override = release is not None and release <= Version(VBOX_NEEDS_OVERRIDE_UP_TO)
    broken_by_override = release is not None and release >= Version(VBOX_BROKEN_BY_OVERRIDE_FROM)
    if broken_by_override and (facts.kernel.version or ())[:2] == VBOX_OVERRIDE_STILL_NEEDED_ON:
        # The 6.12 exception (see VBOX_OVERRIDE_STILL_NEEDED_ON): these releases need the override there.
        needs_override, broken_by_override = True, False
        evidence["linux_6_12_exception"] = True
    override_set = parse_bool(state["enable_virt_at_load"]) is False
    if broken_by_override and override_set:
        return warned(
            f"{shown} runs beside KVM with enable_virt_at_load=0, which breaks VirtualBox from {VBOX_BROKEN_BY_OVERRIDE_FROM} "
            "on (VERR_SVM_HOST_SVME_NOT_ENABLED)",
            advice_sentence(f"Let KVM hold VT-x/AMD-V again: {OVERRIDE_OFF}. {NOT_AT_ONCE}"),
            evidence,
        )
    if state["kvm_holds_virtualization_from_load"]:
        if broken_by_override:
            return warned(
                f"{shown} runs beside KVM, which holds VT-x/AMD-V from load time (Linux 6.12+), as VirtualBox "
                f"{VBOX_BROKEN_BY_OVERRIDE_FROM} and later need",
                NOT_AT_ONCE + " Do not add enable_virt_at_load=0: it breaks these VirtualBox releases.",
                evidence,
            )
        if needs_override:
            which = (f"on Linux 6.12 itself even VirtualBox {VBOX_BROKEN_BY_OVERRIDE_FROM} and later" if evidence.get("linux_6_12_exception")
                     else f"VirtualBox up to {VBOX_NEEDS_OVERRIDE_UP_TO}")
            return warned(
                f"{shown} runs beside KVM, which holds VT-x/AMD-V from load time (Linux 6.12+): {which} "
                "cannot start VMs then (VERR_VMX_IN_VMX_ROOT_MODE / VERR_SVM_IN_USE)",
                advice_sentence(f"Let KVM take VT-x/AMD-V only while a KVM VM runs: {OVERRIDE_ON}; or unload kvm_intel/kvm_amd "
                                f"while you use VirtualBox. {NOT_AT_ONCE}"),
                evidence,
            )
        release_known = (f", and {release} lies between the releases known to need the override (up to "
                         f"{VBOX_NEEDS_OVERRIDE_UP_TO}) and to break with it (from {VBOX_BROKEN_BY_OVERRIDE_FROM})"
                         if release is not None else ", which kvmready could not read")
        return warned(
            f"{shown} runs beside KVM, which holds VT-x/AMD-V from load time (Linux 6.12+): what VirtualBox needs depends "
            f"on its release{release_known}",
            f"If VirtualBox is {VBOX_NEEDS_OVERRIDE_UP_TO} or older: {OVERRIDE_ON}. If it is {VBOX_BROKEN_BY_OVERRIDE_FROM} "
            f"or newer: leave enable_virt_at_load at Y ({OVERRIDE_OFF} where set). {NOT_AT_ONCE}",
            evidence,
        )
    if evidence["kvm_create_vm_ebusy"]:
        return warned(
            f"{shown} holds VT-x/AMD-V right now: KVM_CREATE_VM returned EBUSY, so KVM VMs fail",
            "Power off the VirtualBox VMs, or unload its drivers: `sudo modprobe -r vboxnetadp vboxnetflt vboxdrv`.",
            evidence,
        )
    return warned(
        f"{shown} drivers ({', '.join(drivers)}) are loaded beside KVM: whichever starts a VM first holds VT-x/AMD-V and "
        "the other fails (KVM with EBUSY)",
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
    known = ("vmmon turns VT-x on only around each guest entry and saves and restores another hypervisor's state "
             "(vmmon-only/common/task.c), so classic Workstation VMs and KVM VMs are not known to conflict")
    if evidence["kvm_create_vm_ebusy"]:
        return warned(
            f"the classic Workstation's {', '.join(drivers)} are loaded and KVM_CREATE_VM returned EBUSY here; {known}, "
            "so another hypervisor may hold VT-x/AMD-V (see kvm.create-vm)",
            "Find which hypervisor holds VT-x/AMD-V (`lsmod`, running VMs); a KVM-backed Workstation does not need vmmon.",
            evidence,
        )
    return passed(
        f"the classic Workstation's {', '.join(drivers)} are loaded beside KVM; {known}",
        evidence,
        detail="A KVM-backed Workstation does not use vmmon: once you switch, `sudo modprobe -r vmnet vmmon` and remove "
        "them from /etc/modules-load.d.",
    )


VIRTUALBOX = CheckSpec(
    "conflicts.virtualbox", "VirtualBox drivers", "conflicts", check_virtualbox,
    what="vboxdrv, vboxnetflt, vboxnetadp, vboxpci loaded, VirtualBox's release (/sys/module/vboxdrv/version), "
    "kvm.enable_virt_at_load (Linux 6.12+) and a KVM_CREATE_VM that returned EBUSY.",
    why="VirtualBox and KVM cannot both run VMs at once. Since 6.12 KVM holds VT-x/AMD-V from module load: VirtualBox up "
    "to 7.2.8 then fails unless enable_virt_at_load=0, and VirtualBox 7.2.10 and later fail with that override (except on "
    "Linux 6.12 itself, where they still need it).",
    fix="VirtualBox up to 7.2.8 (and any release on Linux 6.12): `options kvm enable_virt_at_load=0`; 7.2.10 and later "
    "elsewhere: remove that override.",
    sources=(
        "VirtualBox GitHub tracker (VirtualBox/virtualbox) issues 711 and 713: 7.2.10 needs KVM absent or "
        "enable_virt_at_load=1 (VERR_SVM_HOST_SVME_NOT_ENABLED with the override)",
        "NixOS/nixpkgs #363887 (VERR_VMX_IN_VMX_ROOT_MODE), void-packages #53855 and VirtualBox/virtualbox #81 "
        "(VERR_SVM_IN_USE); Debian's virtualbox-kvm-autodisable.conf (VirtualBox/virtualbox #141)",
        "Linux 6.12 commit b4886fab6fb6 \"KVM: Add a module param to allow enabling virtualization when KVM is loaded\"",
        "void-linux/void-packages #61332 (VirtualBox 7.2.14, July 2026): tested on Linux 6.18, 7.0 and 7.1 without the "
        "override, and on 6.12, which still needs `options kvm enable_virt_at_load=0`",
    ),
)


VMWARE_VMMON = CheckSpec(
    "conflicts.vmware-vmmon", "Legacy VMware drivers", "conflicts", check_vmware_vmmon,
    what="The classic Workstation's vmmon and vmnet modules loaded beside KVM, and whether KVM_CREATE_VM saw EBUSY.",
    why="A KVM-backed Workstation replaces vmmon. vmmon itself shares VT-x: it enables it only around each guest entry "
    "and restores another hypervisor's state, so no conflict with KVM is known.",
    fix="Unload vmmon/vmnet once you move to a KVM-backed Workstation.",
    sources=("vmmon-only/common/task.c (Workstation 17.5.1 host modules, mkubecek/vmware-host-modules): VMXON around "
             "guest entry, foreign VMCS saved and restored",),
)
