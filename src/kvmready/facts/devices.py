"""Device nodes around KVM: /dev/kvm, /dev/net/tun, /dev/vhost-net, GPU render nodes.

A captured tree usually has no /dev (devtmpfs is not part of a disk image),
so "the tree has no /dev" is recorded apart from "this node is missing".
"""

from types import MappingProxyType
from typing import Mapping, NamedTuple, Optional, Tuple

from kvmready.host import Host, Node, ReadError
from kvmready.kvmabi import KVM_DEVICE

TUN = "/dev/net/tun"
VHOST_NET = "/dev/vhost-net"
DRI = "/dev/dri"
DRM_CLASS = "/sys/class/drm"

# The kernel's fixed misc-device numbers (Documentation/admin-guide/devices.txt).
EXPECTED_NUMBERS = {KVM_DEVICE: (10, 232), TUN: (10, 200), VHOST_NET: (10, 238)}


class DeviceNode(NamedTuple):
    path: str
    node: Optional[Node] = None  # None: missing
    error: Optional[str] = None  # stat failed

    @property
    def present(self) -> bool:
        return self.node is not None

    @property
    def is_expected_char_device(self) -> bool:
        if self.node is None or self.node.kind != "char":
            return False
        expected = EXPECTED_NUMBERS.get(self.path)
        return expected is None or (self.node.major, self.node.minor) == expected

    def evidence(self) -> dict:
        data: dict = {"path": self.path, "present": self.present}
        if self.node is not None:
            data.update(self.node.to_dict())
            expected = EXPECTED_NUMBERS.get(self.path)
            if expected:
                data["expected_device"] = f"{expected[0]}:{expected[1]}"
        if self.error:
            data["error"] = self.error
        return data


class RenderNode(NamedTuple):
    name: str  # renderD128
    driver: Optional[str]  # i915, amdgpu, nvidia, virtio_gpu, vgem ...
    driver_source: Optional[str]

    def to_dict(self) -> dict:
        return {"name": self.name, "driver": self.driver, "driver_source": self.driver_source}


class DeviceFacts(NamedTuple):
    dev_present: bool  # the host has a populated /dev at all
    nodes: Mapping[str, DeviceNode] = MappingProxyType({})
    render_nodes: Tuple[RenderNode, ...] = ()
    render_error: Optional[str] = None

    def get(self, path: str) -> DeviceNode:
        return self.nodes[path]


def stat_node(host: Host, path: str) -> DeviceNode:
    try:
        return DeviceNode(path, host.node(path))
    except ReadError as exc:
        return DeviceNode(path, error=exc.reason)


def collect(host: Host) -> DeviceFacts:
    try:
        dev_present = bool(host.list_dir("/dev"))
    except ReadError:
        dev_present = False
    nodes = {path: stat_node(host, path) for path in (KVM_DEVICE, TUN, VHOST_NET)}
    render_nodes, render_error = _render_nodes(host)
    return DeviceFacts(dev_present, nodes, render_nodes, render_error)


def _render_nodes(host: Host) -> Tuple[Tuple[RenderNode, ...], Optional[str]]:
    names = []
    error = None
    for directory in (DRI, DRM_CLASS):  # sysfs still lists them when /dev is not captured
        try:
            names = [name for name in host.list_dir(directory) if name.startswith("renderD")]
            error = None
            break
        except ReadError as exc:
            error = f"{directory}: {exc.reason}"
    return tuple(_render_node(host, name) for name in names), (error if not names else None)


def _render_node(host: Host, name: str) -> RenderNode:
    uevent = f"{DRM_CLASS}/{name}/device/uevent"
    try:
        for line in host.read_text(uevent).splitlines():
            key, _, value = line.partition("=")
            if key == "DRIVER" and value.strip():
                return RenderNode(name, value.strip(), uevent)
    except ReadError:
        pass
    return RenderNode(name, None, None)
