"""Static KVM checks: the module that provides KVM, /dev/kvm, nesting."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

from kvmready import cpuvendors
from kvmready.checks import advice
from kvmready.checks.base import CheckSpec, errored, failed, passed, skipped, warned
from kvmready.facts.modules import HARDWARE_KVM_MODULES, PROC_MODULES
from kvmready.kvmabi import KVM_DEVICE as KVM
from kvmready.model import Outcome

if TYPE_CHECKING:
    from kvmready.facts import Facts
    from kvmready.targets import Policy


# Where a vendor module's initialisation failed (it alone registers /dev/kvm).
WHY_NO_INIT = ("see cpu.virtualization and cpu.firmware, and `sudo dmesg | grep -i kvm` for why (often VT-x/AMD-V "
               "disabled in the firmware setup)")


def _vendor_module(facts: Facts) -> str:
    extension = cpuvendors.extension_of(getattr(facts.cpu, "vendor", None))
    return cpuvendors.KVM_MODULE_FOR.get(extension or "", "kvm_intel or kvm_amd")


def check_module(facts: Facts, policy: Policy) -> Outcome:
    table = facts.modules
    evidence: Dict[str, Any] = {"sources": table.sources()}
    if not table.known:
        return errored(
            f"cannot tell which modules are loaded: {PROC_MODULES} ({table.proc_modules_error}) and "
            f"/sys/module ({table.sys_module_error}) both unreadable",
            evidence,
        )
    provider = facts.kvm_module
    module = table.get(provider) if provider is not None else None
    if provider is not None and module is not None:
        kvm = table.get("kvm")
        evidence.update(module=module.to_dict(), kvm=kvm.to_dict() if kvm is not None else None)
        how = "built into the kernel" if module.builtin else "loaded" if module.state == "live" else f"loaded (state: {module.state})"
        if provider == "kvm" and facts.arch.is_x86:
            wanted = _vendor_module(facts)
            return failed(
                f"kvm is {how}, but no vendor module (kvm_intel, kvm_amd, kvm_pvm) provides it",
                _load_vendor_module(facts, wanted),
                evidence,
            )
        device = facts.devices.get(KVM)
        if module.builtin and provider in HARDWARE_KVM_MODULES and device.node is None and device.error is None \
                and not facts.dev_uncaptured and facts.container.name is None:  # a container may just lack the node
            # /sys/module lists a built-in module whose initialisation failed too; only that init makes /dev/kvm.
            evidence["kvm_device"] = False
            return failed(
                f"{provider} is built into the kernel, but {KVM} does not exist: its initialisation failed",
                advice.sentence(WHY_NO_INIT),
                evidence,
            )
        return passed(f"{provider} provides KVM, {how}", evidence)
    if facts.arch.known_not_x86:
        return failed(
            "no KVM module: the kernel has no KVM loaded or built in",
            "Load it: `sudo modprobe kvm` (or build the kernel with CONFIG_KVM).",
            evidence,
        )
    wanted = _vendor_module(facts)
    monolithic = advice.no_module_support(facts)
    return failed(
        "no KVM module: neither kvm nor a vendor module is loaded or built in",
        advice.sentence(f"{monolithic}: boot a kernel built with `CONFIG_KVM=y` and `CONFIG_KVM_INTEL=y` or "
                        "`CONFIG_KVM_AMD=y`") if monolithic else
        f"Load it now with `sudo modprobe {wanted.split(' ')[0]}`, and at every boot with "
        f"`echo {wanted.split(' ')[0]} | sudo tee /etc/modules-load.d/kvm.conf`.",
        evidence,
    )


def _load_vendor_module(facts: Facts, wanted: str) -> str:
    monolithic = advice.no_module_support(facts)
    if monolithic:
        return advice.sentence(f"{monolithic}, and {wanted} is not built in: boot a kernel built with "
                               "`CONFIG_KVM_INTEL=y` or `CONFIG_KVM_AMD=y` for this CPU")
    return (f"Load the module for this CPU: `sudo modprobe {wanted}`. If it fails with 'Operation not supported', "
            "virtualization is off in firmware (see cpu.virtualization).")


def check_device(facts: Facts, policy: Policy) -> Outcome:
    devices = facts.devices
    node = devices.get(KVM)
    evidence = node.evidence()
    container = facts.container
    if container.is_container:
        evidence["container"] = container.evidence()
    if node.error:
        return errored(f"cannot stat {KVM}: {node.error}", evidence)
    found = node.node
    if found is None:
        if facts.dev_uncaptured:
            return skipped("not captured: the tree has no /dev; kvm.module tells whether the kernel provides KVM", evidence,
                           undecided=True)
        return failed(f"{KVM} does not exist", _missing_device_fix(facts), evidence)
    if not node.is_expected_char_device:
        kind = found.kind if found.kind != "char" else f"char {found.major}:{found.minor}"
        return failed(
            f"{KVM} is not the KVM device (found {kind}, expected char 10:232)",
            f"Remove the stray {KVM} and let udev recreate it (`sudo rm {KVM} && sudo udevadm trigger`), or reboot.",
            evidence,
        )
    return passed(f"{KVM} is the KVM character device (10:232, mode {found.mode:04o})", evidence)


def _missing_device_fix(facts: Facts) -> str:
    container = facts.container
    if container.name is not None:
        return advice.sentence(f"This is a {container.name} container, which has no {KVM} of its own: "
                               f"{advice.container_device(container.name)}; the host itself must have KVM")
    if facts.kvm_module is None:
        return f"Load the KVM module first (see kvm.module); it creates {KVM}."
    module = facts.modules.get(facts.kvm_module)
    if facts.kvm_module == "kvm" or (module is not None and module.builtin):
        # kvm_init in the vendor module registers /dev/kvm: without the node, that initialisation failed (or no
        # vendor module exists), and a node made by hand would lead nowhere.
        return (f"{KVM} is made when {facts.kvm_module if facts.kvm_module != 'kvm' else 'kvm_intel or kvm_amd'} "
                f"initialises, which it did not: {WHY_NO_INIT}.")
    return (
        f"The module is present but the node is not: recreate it with `sudo mknod {KVM} c 10 232` and fix its "
        "permissions, or check that udev runs (`sudo udevadm trigger --subsystem-match=misc`)."
    )


def check_nested(facts: Facts, policy: Policy) -> Outcome:
    table = facts.modules
    if not table.known:
        return errored(
            f"cannot tell whether kvm_intel or kvm_amd is loaded: {PROC_MODULES} ({table.proc_modules_error}) and "
            f"/sys/module ({table.sys_module_error}) both unreadable",
            {"sources": table.sources()},
        )
    module = facts.kvm_module if facts.kvm_module in HARDWARE_KVM_MODULES else None
    if module is None:
        return skipped("no kvm_intel or kvm_amd here, so no nested parameter to read", {"kvm_module": facts.kvm_module})
    params = facts.module_params(module)
    path = params.path("nested")
    value = params.get("nested")
    evidence = {"source": path, "value": value}
    if value is None:
        reason = params.errors.get("nested") or params.error or "no such parameter"
        evidence["error"] = reason
        return warned(f"cannot read {path} ({reason})", "Run as a user who can read the parameter, or check `cat " + path + "` as root.", evidence)
    enabled = params.flag("nested")
    if enabled:
        return passed(f"{module} nested={value}: guests can run their own hypervisors (Hyper-V, VBS, WSL2)", evidence)
    if enabled is None:
        return warned(f"{module} nested has an unexpected value {value!r}", None, evidence)
    return warned(
        f"{module} nested={value}: guests cannot use VT-x/AMD-V (Windows VBS, WSL2, Hyper-V, Docker Desktop inside a guest)",
        advice.sentence(advice.modprobe_option(module, "nested=1") + "; no VM may be running while it reloads"),
        evidence,
    )



MODULE = CheckSpec(
    "kvm.module", "KVM kernel module", "kvm", check_module,
    what="kvm and the module that provides it (kvm_intel, kvm_amd, kvm_pvm, …), loaded (/proc/modules) or built in (/sys/module, which is all there is on a monolithic kernel).",
    why="Without the vendor module there is no /dev/kvm.",
    fix="`sudo modprobe kvm_intel` or `sudo modprobe kvm_amd`, and list it in /etc/modules-load.d/ to load at boot.",
    sources=(
        "Linux virt/kvm and arch/x86/kvm: kvm.ko with kvm-intel.ko or kvm-amd.ko",
        "Documentation/ABI/stable/sysfs-module: /sys/module lists built-in modules too; /proc/modules only "
        "loadable ones",
    ),
)


DEVICE = CheckSpec(
    "kvm.device", "/dev/kvm device node", "kvm", check_device,
    what="/dev/kvm exists and is the KVM character device 10:232.",
    why="Every KVM user opens /dev/kvm; its absence means no module, no udev, or a container without the device passed in.",
    fix="Load the module; in a container pass `--device /dev/kvm`.",
    sources=(
        "Documentation/admin-guide/devices.txt: misc 10:232 is /dev/kvm",
    ),
)


NESTED = CheckSpec(
    "kvm.nested", "Nested virtualization for guests", "kvm", check_nested,
    what="The `nested` parameter of kvm_intel/kvm_amd (Y or 1; kvm_amd reports 1).",
    why="Guests that run a hypervisor themselves (Windows with VBS or WSL2, Hyper-V, Docker Desktop) need nested virtualization.",
    fix="`options kvm_intel nested=1` (or kvm_amd) in /etc/modprobe.d, then reload the module.",
    sources=(
        "Documentation/admin-guide/kernel-parameters.txt: kvm-intel.nested (on by default since Linux 4.20), "
        "kvm-amd.nested",
        "[PATCH v2 4/5] KVM: x86: Add support for legacy VMware backdoors in nested setups (2025-04-22): "
        "VMware's Windows guests with VBS run a hypervisor of their own",
    ),
)
