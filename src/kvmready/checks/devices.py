"""Devices around KVM: networking (tun, vhost-net) and the GPU render node."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

from kvmready.checks import advice
from kvmready.checks.base import CheckSpec, errored, failed, passed, skipped, warned
from kvmready.facts.devices import TUN as TUN_PATH
from kvmready.facts.devices import VHOST_NET as VHOST_NET_PATH
from kvmready.model import Outcome

if TYPE_CHECKING:
    from kvmready.facts import Facts
    from kvmready.targets import Policy


# Kernel drivers of render nodes: real GPUs and virtual GPUs of an outer hypervisor;
# anything else (vgem, vkms, simpledrm) renders in software.
HARDWARE_GPU_DRIVERS = ("i915", "xe", "amdgpu", "radeon", "nouveau", "nvidia", "nvidia-drm", "panfrost", "panthor", "msm", "v3d", "etnaviv", "lima", "mgag200", "ast")
VIRTUAL_GPU_DRIVERS = ("virtio_gpu", "virtio-pci", "vmwgfx", "qxl", "vboxvideo", "bochs-drm", "bochs_drm", "cirrus", "hyperv_drm")


def _device_check(facts: Facts, path: str, module: str, symbol: str, purpose: str, optional: bool = False) -> Outcome:
    """`optional`: guests work without it, only slower, so its absence is a warning."""
    node = facts.devices.get(path)
    evidence = node.evidence()
    if node.error:
        return errored(f"cannot stat {path}: {node.error}", evidence)
    if not node.present:
        if facts.dev_uncaptured:
            return skipped("not captured: the tree has no /dev", evidence)
        loaded = facts.modules.has(module)
        evidence["module_loaded"] = loaded
        missing = warned if optional else failed
        return missing(
            f"{path} does not exist: {purpose} unavailable",
            f"{advice.load_module(facts, module, symbol).rstrip('.')}; in a container, pass `--device {path}`.",
            evidence,
        )
    if not node.is_expected_char_device:
        return failed(f"{path} is not the expected character device", f"Remove it and reload the {module} module.", evidence)
    return passed(f"{path} is present ({purpose})", evidence)


def check_tun(facts: Facts, policy: Policy) -> Outcome:
    return _device_check(facts, TUN_PATH, "tun", "CONFIG_TUN", "bridged and NAT networking for guests")


def check_vhost_net(facts: Facts, policy: Policy) -> Outcome:
    return _device_check(facts, VHOST_NET_PATH, "vhost_net", "CONFIG_VHOST_NET", "in-kernel virtio-net acceleration", optional=True)


def check_render_node(facts: Facts, policy: Policy) -> Outcome:
    devices = facts.devices
    nodes = devices.render_nodes
    evidence: Dict[str, Any] = {"render_nodes": [node.to_dict() for node in nodes]}
    if not nodes:
        if devices.render_error and facts.dev_uncaptured:
            return skipped("not captured: the tree has neither /dev/dri nor /sys/class/drm", evidence)
        evidence["error"] = devices.render_error
        return warned(
            "no GPU render node (/dev/dri/renderD*): guests get no 3D acceleration",
            "Install the GPU's kernel driver (NVIDIA's proprietary driver, amdgpu or i915 come with most distributions) "
            "and check `ls -l /dev/dri`; add yourself to the `render` group if the node is not accessible.",
            evidence,
        )
    described = ", ".join(f"{node.name} ({node.driver or 'driver unknown'})" for node in nodes)
    hardware = [node for node in nodes if node.driver in HARDWARE_GPU_DRIVERS]
    if hardware:
        return passed(f"GPU render node: {described}", evidence)
    if any(node.driver in VIRTUAL_GPU_DRIVERS for node in nodes):
        return warned(
            f"only a virtual GPU of the outer hypervisor: {described}; 3D goes only as far as it passes through",
            "For real 3D, run on bare metal or pass a GPU through to this VM.",
            evidence,
        )
    if any(node.driver is None for node in nodes):
        return warned(f"render node without a known driver: {described}", "Check `ls -l /sys/class/drm/*/device/driver`.", evidence)
    return warned(
        f"render node driven by {described}: software rendering, no usable 3D",
        "Install the kernel driver for the real GPU; a software node (vgem, vkms) cannot accelerate guests.",
        evidence,
    )



TUN = CheckSpec(
    "devices.tun", "/dev/net/tun", "devices", check_tun,
    what="/dev/net/tun, the character device 10:200.",
    why="QEMU and libvirt create tap interfaces through it for bridged and NAT networking; VMware Workstation "
    "networks its guests through its own vmnet driver instead, so for it this is information only.",
    fix="`sudo modprobe tun`; in a container pass `--device /dev/net/tun`.",
    sources=(
        "Documentation/admin-guide/devices.txt: misc 10:200 is /dev/net/tun; "
        "Documentation/networking/tuntap.rst",
        "VMware Workstation networks guests through its vmnet driver (vmnet-only in "
        "mkubecek/vmware-host-modules), not tap",
    ),
)


VHOST_NET = CheckSpec(
    "devices.vhost-net", "/dev/vhost-net", "devices", check_vhost_net,
    what="/dev/vhost-net, the character device 10:238.",
    why="vhost-net moves virtio-net packet processing into the kernel: faster networking for QEMU guests (not used "
    "by VMware Workstation, whose guests network through vmnet).",
    fix="`sudo modprobe vhost_net`.",
    sources=(
        "Documentation/admin-guide/devices.txt: misc 10:238 is /dev/vhost-net; drivers/vhost/net.c",
    ),
)


RENDER_NODE = CheckSpec(
    "devices.render-node", "GPU render node for 3D", "devices", check_render_node,
    what="/dev/dri/renderD* (or /sys/class/drm) and the kernel driver behind each node.",
    why="Workstation's 3D acceleration renders guest graphics on the host GPU through a render node; software rendering gives no usable 3D.",
    fix="Install the GPU's kernel driver (NVIDIA proprietary, amdgpu, i915).",
    sources=(
        "VMware Workstation 16.x/17.x host requirements: 3D on a Linux host needs the latest NVIDIA proprietary"
        " drivers and OpenGL 4.5 or newer",
        "Documentation/gpu/drm-uapi.rst: render nodes /dev/dri/renderD128 and up",
    ),
)
