"""The registry: every check once, in the order a reader should fix things, with its severity per target.

This table is the only place that says which checks exist, in which order
they are reported and how much each matters for each target; `runner`,
`kvmready list`, `kvmready explain`, the README's table and the renderers
all derive from it.  Adding a check means its module (the function and its
`CheckSpec`) plus one row here.

The order is the order of the reasons for a verdict: root causes (the wrong
machine, no VT-x, no KVM) before their consequences, and those before
comfort items.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, NamedTuple, Tuple

from kvmready.checks import (
    conflicts,
    cpu,
    devices,
    host,
    kernel,
    kvm,
    live,
    resources,
    security,
    vmware,
)
from kvmready.checks.base import CheckSpec
from kvmready.model import Severity, Target

REQ, REC, INFO = Severity.REQUIRED, Severity.RECOMMENDED, Severity.INFO


class Row(NamedTuple):
    """One registered check and how much it matters for each target."""

    spec: CheckSpec
    workstation: Severity
    kvm: Severity

    def severity(self, target: Target) -> Severity:
        return self.workstation if target is Target.WORKSTATION else self.kvm


CHECKS: Tuple[Row, ...] = (
    #    check                      workstation  kvm
    Row(cpu.ARCH, REQ, REQ),  # Workstation has no build for other machines; KVM exists on a few
    Row(cpu.VIRTUALIZATION, REQ, REQ),  # no VT-x/AMD-V: no unmodified guest, whatever else is right
    Row(cpu.FIRMWARE, REQ, REQ),  # firmware can switch VT-x off; only its setup screen turns it on
    Row(host.HYPERVISOR, REQ, REC),  # inside a VM, the outer hypervisor decides all of the above
    Row(kvm.MODULE, REQ, REQ),  # without the module there is no /dev/kvm
    Row(kvm.DEVICE, REQ, REQ),  # the node every KVM user opens
    Row(live.ACCESS, REQ, REQ),  # hypervisors run as the user, not as root
    Row(live.API, REQ, REQ),  # anything but API 12 is not the KVM the ioctls expect
    Row(live.CREATE_VM, REQ, REQ),  # EBUSY here: another hypervisor holds VT-x/AMD-V
    Row(live.GUEST, REQ, REQ),  # the proof: guest code ran
    Row(cpu.HARDWARE_MMU, REQ, REC),  # EPT/NPT: modern Workstation needs it, KVM is only slower without
    Row(live.CAPABILITIES, REQ, REC),  # the KVM features a VMware-style front end builds on
    Row(kernel.VERSION, REQ, REQ),  # the release those features arrived in
    Row(vmware.KVM_SUPPORT, REQ, INFO),  # what only upstream can ship: VMware's KVM support
    Row(resources.MEMORY, REQ, REC),  # guests need their memory on top of the host's
    Row(resources.CPUS, REQ, REC),  # a CPU for the host beside each vCPU
    Row(conflicts.VIRTUALBOX, REC, REC),  # another hypervisor competing for VT-x/AMD-V
    Row(conflicts.VMWARE_VMMON, REC, INFO),  # the classic Workstation's driver, replaced by KVM
    Row(vmware.BACKDOOR, INFO, INFO),  # the legacy system-wide switch, as context
    Row(kvm.NESTED, REC, INFO),  # guests that run hypervisors themselves (VBS, WSL2)
    Row(resources.DISK, REC, INFO),  # room for the VMs' disks
    Row(devices.TUN, INFO, REC),  # QEMU's bridged and NAT networking (Workstation uses vmnet)
    Row(devices.VHOST_NET, INFO, INFO),  # faster virtio networking (QEMU, not Workstation)
    Row(devices.RENDER_NODE, REC, INFO),  # 3D acceleration
    Row(security.SECURE_BOOT, REC, INFO),  # unsigned out-of-tree modules refused
    Row(security.LOCKDOWN, REC, INFO),  # the same, enforced by the kernel
    Row(host.DISTRIBUTION, REC, INFO),  # VMware tests only the hosts it lists
    Row(cpu.TIMEKEEPING, REC, INFO),  # steady guest clocks
)

# Categories in the order the table groups them: the machine, then KVM, then what surrounds it.
CATEGORY_ORDER: Tuple[str, ...] = (
    "cpu",  # the processor and its firmware
    "kernel",  # the running kernel's release
    "kvm",  # the module, the device, and the live proof
    "host",  # the machine as a whole: the hypervisor it runs under, its distribution
    "vmware",  # what VMware's guests need from KVM
    "conflicts",  # other hypervisors' drivers
    "resources",  # CPUs, memory, disk
    "devices",  # networking and graphics devices
    "security",  # Secure Boot and lockdown
)

REGISTRY: Mapping[str, Row] = {row.spec.id: row for row in CHECKS}
RANKS: Mapping[str, int] = {check_id: rank for rank, check_id in enumerate(REGISTRY)}  # the order a reader sees


def catalog() -> List[Dict[str, Any]]:
    """Every check as data, in registry order: what `kvmready list`, `explain` and the README show."""
    return [
        {
            "id": row.spec.id,
            "title": row.spec.title,
            "category": row.spec.category,
            "severity": {Target.WORKSTATION.value: row.workstation.value, Target.KVM.value: row.kvm.value},
            "live": row.spec.live,
            "what": row.spec.what,
            "why": row.spec.why,
            "fix": row.spec.fix,
            "sources": list(row.spec.sources),
        }
        for row in CHECKS
    ]
