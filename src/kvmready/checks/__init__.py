"""The registry: every check, by id, in priority order.

The order is the order a user reads the reasons for a verdict in: root
causes (no VT-x, no KVM) before their consequences and before comfort items.
"""

from __future__ import annotations

from typing import Dict

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

_ALL = {spec.id: spec for module in (cpu, kernel, kvm, live, vmware, conflicts, host, resources, devices, security) for spec in module.SPECS}

PRIORITY = (
    "cpu.arch",
    "cpu.virtualization",
    "cpu.firmware",
    "host.hypervisor",
    "kvm.module",
    "kvm.device",
    "kvm.access",
    "kvm.api",
    "kvm.create-vm",
    "kvm.guest",
    "cpu.hardware-mmu",
    "kvm.capabilities",
    "kernel.version",
    "resources.memory",
    "resources.cpus",
    "conflicts.virtualbox",
    "conflicts.vmware-vmmon",
    "vmware.backdoor",
    "kvm.nested",
    "resources.disk",
    "devices.tun",
    "devices.vhost-net",
    "devices.render-node",
    "security.secure-boot",
    "security.lockdown",
    "host.distribution",
    "cpu.timekeeping",
)

REGISTRY: Dict[str, CheckSpec] = {check_id: _ALL[check_id] for check_id in PRIORITY}

CATEGORY_ORDER = ("cpu", "kernel", "kvm", "host", "vmware", "conflicts", "resources", "devices", "security")
