"""What each target requires: severities per check and the thresholds.

A target changes severities and thresholds, never the probes.  Every number
a check compares against lives in `THRESHOLDS`, with where it comes from.
"""

from typing import Dict, Mapping, NamedTuple, Tuple

from kvmready.model import Severity, Target

REQ, REC, INFO = Severity.REQUIRED, Severity.RECOMMENDED, Severity.INFO

# check id -> (severity for workstation, severity for kvm)
SEVERITIES: Mapping[str, Tuple[Severity, Severity]] = {
    "cpu.arch": (REQ, REQ),
    "cpu.virtualization": (REQ, REQ),
    "cpu.hardware-mmu": (REQ, REC),
    "cpu.firmware": (REQ, REQ),
    "cpu.timekeeping": (REC, INFO),
    "kernel.version": (REQ, REQ),
    "kvm.module": (REQ, REQ),
    "kvm.device": (REQ, REQ),
    "kvm.access": (REQ, REQ),
    "kvm.api": (REQ, REQ),
    "kvm.capabilities": (REQ, REC),
    "kvm.create-vm": (REQ, REQ),
    "kvm.guest": (REQ, REQ),
    "kvm.nested": (REC, INFO),
    "vmware.backdoor": (REC, INFO),
    "conflicts.virtualbox": (REC, REC),
    "conflicts.vmware-vmmon": (REC, INFO),
    "host.hypervisor": (REQ, REC),
    "host.distribution": (REC, INFO),
    "resources.cpus": (REQ, REC),
    "resources.memory": (REQ, REC),
    "resources.disk": (REC, INFO),
    "devices.tun": (REC, REC),
    "devices.vhost-net": (REC, INFO),
    "devices.render-node": (REC, INFO),
    "security.secure-boot": (REC, INFO),
    "security.lockdown": (REC, INFO),
}

GIB = 1024**3

Version = Tuple[int, int, int]


class Policy(NamedTuple):
    """The thresholds of one target."""

    target: Target
    # Unmodified guests (Windows, stock Linux) need VT-x/AMD-V; paravirtual KVM is not enough.
    needs_hardware_virtualization: bool
    min_kernel: Version
    min_kernel_why: str
    recommended_kernel: Version
    recommended_kernel_why: str
    min_cpus: int
    recommended_cpus: int
    min_memory_bytes: int
    recommended_memory_bytes: int
    memory_source: str
    recommended_free_disk_bytes: int
    # capability name -> why this target needs it; checked by kvm.capabilities
    required_capabilities: Mapping[str, str]

    def severity(self, check_id: str) -> Severity:
        workstation, kvm = SEVERITIES[check_id]
        return workstation if self.target is Target.WORKSTATION else kvm


_COMMON_CAPABILITIES = {
    "KVM_CAP_USER_MEMORY": "guest memory from user space (KVM_SET_USER_MEMORY_REGION)",
    "KVM_CAP_IRQCHIP": "in-kernel interrupt controller",
}

THRESHOLDS: Dict[Target, Policy] = {
    Target.WORKSTATION: Policy(
        target=Target.WORKSTATION,
        needs_hardware_virtualization=True,
        min_kernel=(5, 10, 0),
        min_kernel_why="KVM_CAP_X86_USER_SPACE_MSR (5.10) lets a VMware-style VMX handle VMware's MSRs in user space",
        recommended_kernel=(5, 17, 0),
        recommended_kernel_why="KVM_CAP_XSAVE2 (5.17) exposes large XSAVE state (AMX) to guests",
        min_cpus=2,
        recommended_cpus=4,
        min_memory_bytes=4 * GIB,
        recommended_memory_bytes=8 * GIB,
        memory_source="VMware Workstation 17 requirements (4 GB minimum in some copies, 2 GB/4 GB in others); 8 GiB leaves room for a desktop guest",
        recommended_free_disk_bytes=20 * GIB,
        required_capabilities={
            **_COMMON_CAPABILITIES,
            "KVM_CAP_SPLIT_IRQCHIP": "split IRQ chip: VMware runs KVM's in-kernel APIC with its own I/O APIC",
            "KVM_CAP_X86_USER_SPACE_MSR": "VMware-specific MSRs handled in user space",
            "KVM_CAP_IMMEDIATE_EXIT": "interrupting a running vCPU without signals races",
        },
    ),
    Target.KVM: Policy(
        target=Target.KVM,
        needs_hardware_virtualization=False,
        min_kernel=(2, 6, 22),
        min_kernel_why="the KVM API is stable (version 12) since 2.6.22",
        recommended_kernel=(4, 5, 0),
        recommended_kernel_why="QEMU's default KVM CPU features need Linux 4.5 or newer",
        min_cpus=1,
        recommended_cpus=2,
        min_memory_bytes=1 * GIB,
        recommended_memory_bytes=2 * GIB,
        memory_source="a small guest plus the host's own needs",
        recommended_free_disk_bytes=10 * GIB,
        required_capabilities=dict(_COMMON_CAPABILITIES),
    ),
}


def policy(target: Target) -> Policy:
    return THRESHOLDS[target]

