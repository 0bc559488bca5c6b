"""What each target requires: the thresholds.

A target changes severities (in the registry, `kvmready.checks`) and
thresholds (here), never the probes.  Every number a check compares against
lives in `THRESHOLDS`, with where it comes from.
"""

from typing import Dict, Mapping, NamedTuple

from kvmready.model import Target, Version

GIB = 1024**3


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

