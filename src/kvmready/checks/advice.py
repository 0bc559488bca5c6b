"""Remediation text shared by several checks: one place per piece of advice."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from kvmready import cpuvendors

if TYPE_CHECKING:
    from kvmready.facts import Facts

# How to let a VM see VT-x/AMD-V, per outer hypervisor (host.hypervisor names).
EXPOSE_NESTED = {
    "kvm": "on the outer KVM host enable nesting (`options kvm_intel nested=1` or `options kvm_amd nested=1` "
    "in /etc/modprobe.d, then reload the module) and give this VM the host CPU model "
    "(QEMU `-cpu host`, libvirt `<cpu mode='host-passthrough'/>`)",
    "qemu": "run the outer QEMU with KVM and nesting (`-accel kvm -cpu host`, `kvm_intel nested=1` / `kvm_amd nested=1` "
    "on its host); pure emulation (TCG) cannot expose VT-x",
    "vmware": "power the VM off and tick Processors > 'Virtualize Intel VT-x/EPT or AMD-V/RVI' "
    "(`vhv.enable = \"TRUE\"` in the .vmx)",
    "hyperv": "on the Hyper-V host, with the VM off: "
    "`Set-VMProcessor -VMName <vm> -ExposeVirtualizationExtensions $true`",
    "virtualbox": "with the VM off: `VBoxManage modifyvm <vm> --nested-hw-virt on`",
    "xen": "use an HVM guest with `nestedhvm=1` in its domain configuration (PV guests can never use VT-x/AMD-V)",
    "parallels": "in the VM's Configuration > CPU & Memory > Advanced, enable nested virtualization",
    "amazon": "use a `*.metal` instance type, or an instance type whose documentation lists nested virtualization",
    "google": "recreate the VM with `--enable-nested-virtualization` on an Intel-based machine type",
}
GENERIC_NESTED = "enable nested virtualization for this VM in the outer hypervisor, or run on bare metal"
# s390x: the outer KVM (or z/VM) must offer the SIE facility to its guests.
S390_NESTED = (
    "on the outer KVM host load kvm with `nested=1` (`options kvm nested=1` in /etc/modprobe.d) and restart this "
    "guest; z/VM guests cannot run KVM"
)

INTEL_FIRMWARE = (
    "Enable 'Intel Virtualization Technology' (VT-x, sometimes 'VMX') in the firmware setup, usually under "
    "Advanced > CPU Configuration; save, then power the machine fully off and on. While firmware keeps VT-x off "
    "the kernel hides `vmx` from /proc/cpuinfo (dmesg: 'VMX (outside TXT) disabled by BIOS')."
)
AMD_FIRMWARE = (
    "Enable 'SVM Mode' (AMD-V) in the firmware setup, usually under Advanced > CPU Configuration; save, then "
    "power the machine fully off and on."
)

PVM_GUESTS = (
    "kvm_pvm (pagetable-based paravirtual KVM) runs PVM-enabled Linux guest kernels natively and can only "
    "emulate any other guest"
)
# What kvm_pvm does with a guest that is not PVM-enabled, as measured on the development machine
# (2026-12-01): a stock Debian kernel under `qemu-system-x86_64 -accel kvm` reached long mode by
# instruction emulation at 0.5-0.9 million instructions a second (TCG, pure software: ~170 million),
# then stopped with KVM_EXIT_INTERNAL_ERROR (emulation failure) at `lock cmpxchg16b`.
PVM_EMULATES = (
    "KVM here is kvm_pvm, paravirtual KVM without VT-x/AMD-V: it runs PVM-enabled Linux guest kernels natively. "
    "Any other guest (Windows, a stock Linux kernel, a VMware Workstation guest) it can only emulate, "
    "instruction by instruction, about a million instructions a second, and its emulator stops at instructions "
    "it does not implement (a stock Debian kernel stopped at `lock cmpxchg16b` here)."
)


# How a container gets the host's /dev/kvm, per runtime (facts.container names).  Sources: the
# `docker run --device` and `--device-cgroup-rule` reference, podman-run(1), KubeVirt's
# device plugin (resource devices.kubevirt.io/kvm), LXD/Incus `unix-char` devices,
# systemd-nspawn(1) --bind and systemd.resource-control(5) DeviceAllow, Microsoft's
# .wslconfig reference (nestedVirtualization, Windows 11).
CONTAINER_DEVICE = {
    "docker": "start the container with `--device /dev/kvm` (it also allows the device in the container's cgroup)",
    "podman": "start the container with `--device /dev/kvm`",
    "kubernetes": "request the device from a device plugin (KubeVirt's virt-handler offers the resource "
    "`devices.kubevirt.io/kvm`: put `devices.kubevirt.io/kvm: 1` in the container's resource limits), or run the pod "
    "privileged with a hostPath volume for /dev/kvm",
    "containerd": "pass the device in the container spec (`ctr run --device /dev/kvm`, or the OCI `linux.devices` "
    "list with the cgroup rule `c 10:232 rwm`)",
    "lxc": "add the device: `incus config device add <name> kvm unix-char path=/dev/kvm` (LXD: `lxc config device "
    "add ...`), or for LXC `lxc.cgroup2.devices.allow = c 10:232 rwm` with a bind mount of /dev/kvm",
    "systemd-nspawn": "start it with `--bind=/dev/kvm --property=DeviceAllow=/dev/kvm rw`",
    "wsl": "enable nested virtualization for WSL 2 (`nestedVirtualization=true` under `[wsl2]` in %UserProfile%\\.wslconfig, "
    "Windows 11), then `wsl --shutdown`",
}
GENERIC_CONTAINER_DEVICE = "give the container the host's /dev/kvm (character device 10:232) and allow it in its device cgroup"


def container_device(runtime: str) -> str:
    return CONTAINER_DEVICE.get(runtime, GENERIC_CONTAINER_DEVICE)


def hypervisor_label(name: Optional[str], vendor: Optional[str] = None) -> str:
    """`kvm (amazon)`: the hypervisor, and beside it who provides it when that is known."""
    label = "an unidentified hypervisor" if name is None or name == "unknown" else name
    return f"{label} ({vendor})" if vendor and vendor != name else label


def expose_nested(hypervisor: Optional[str], vendor: Optional[str] = None) -> str:
    """The provider's own switch first (EC2's metal instances, GCE's flag), else the hypervisor's."""
    return EXPOSE_NESTED.get(vendor or "") or EXPOSE_NESTED.get(hypervisor or "", GENERIC_NESTED)


def firmware_advice(vendor: Optional[str]) -> Optional[str]:
    return {cpuvendors.VMX: INTEL_FIRMWARE, cpuvendors.SVM: AMD_FIRMWARE}.get(cpuvendors.extension_of(vendor) or "")


def no_module_support(facts: Facts) -> Optional[str]:
    """Where the kernel's configuration shows no loadable-module support, the sentence that says so (modprobe and
    /etc/modules-load.d cannot help there); else None."""
    config = facts.kernel_config
    if config.get("CONFIG_MODULES") != "n":
        return None
    return f"this kernel cannot load modules (`# CONFIG_MODULES is not set` in {config.source})"


def load_module(facts: Facts, module: str, symbol: str) -> str:
    """How to get `module` (Kconfig `symbol`) into the running kernel: modprobe, or a kernel built with it."""
    monolithic = no_module_support(facts)
    if monolithic:
        return sentence(f"{monolithic}: boot a kernel built with `{symbol}=y`")
    return (f"`sudo modprobe {module}` (and `echo {module} | sudo tee /etc/modules-load.d/{module}.conf` to keep it)")


def modprobe_option(module: str, option: str) -> str:
    """Setting a module option persistently, and for a built-in module."""
    return (
        f"add `options {module} {option}` to /etc/modprobe.d/kvmready.conf and reload the module "
        f"(or, when {module} is built in, add `{module}.{option}` to the kernel command line and reboot)"
    )


def sentence(text: str) -> str:
    """Advice fragments read as sentences when they stand alone."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
