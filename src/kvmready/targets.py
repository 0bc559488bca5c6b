"""What each target requires: the thresholds.

A target changes severities (in the registry, `kvmready.checks`) and
thresholds (here), never the probes.  Every number a check compares against
lives in `THRESHOLDS`, with where it comes from.
"""

from typing import Dict, Mapping, NamedTuple, Optional

from kvmready.model import Target, Version

GIB = 1024**3

# MemTotal is what the kernel manages, not what is installed: firmware reservations, the crash
# kernel and integrated-GPU memory come off first (a 4 GiB machine shows 3.7-3.9 GiB).  A figure of
# N GiB installed is therefore met by MemTotal >= MEMTOTAL_SHARE * N.
MEMTOTAL_SHARE = 0.9


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
    cpus_source: str
    min_memory_bytes: int  # installed memory; compared with MemTotal through MEMTOTAL_SHARE
    recommended_memory_bytes: int
    memory_source: str
    recommended_free_disk_bytes: int
    disk_source: str
    # capability name -> why this target needs it; checked by kvm.capabilities
    required_capabilities: Mapping[str, str]
    # The capability each kernel threshold stands for: where KVM answers it live, a kernel below the threshold has
    # it backported (RHEL 8's 4.18 has KVM_CAP_X86_USER_SPACE_MSR), and the version alone must not fail it.
    min_kernel_capability: Optional[str] = None
    recommended_kernel_capability: Optional[str] = None


_COMMON_CAPABILITIES = {
    "KVM_CAP_USER_MEMORY": "guest memory from user space (KVM_SET_USER_MEMORY_REGION)",
    "KVM_CAP_IRQCHIP": "in-kernel interrupt controller",
}

THRESHOLDS: Dict[Target, Policy] = {
    Target.WORKSTATION: Policy(
        target=Target.WORKSTATION,
        needs_hardware_virtualization=True,
        # The newest of the capabilities this target requires (kvm.capabilities) decides: VMware has
        # published no kernel minimum of its own.
        min_kernel=(5, 10, 0),
        # Source: "KVM: x86: Allow deflecting unknown MSR accesses to user space" (Alexander Graf, 2020-09), in 5.10.
        min_kernel_why="the first release with every KVM capability a VMware-style VMX needs (the newest of them, "
        "KVM_CAP_X86_USER_SPACE_MSR, arrived in 5.10)",
        recommended_kernel=(5, 17, 0),
        recommended_kernel_why="KVM_CAP_XSAVE2 (5.17: absent from the 5.16-rc1 uapi header, present in 5.17's) exposes "
        "large XSAVE state (AMX) to guests",
        min_cpus=1,
        recommended_cpus=2,
        cpus_source="VMware's Workstation host requirements: a 64-bit x86 CPU, 1.3 GHz or faster, multiprocessor hosts "
        "supported; a VM gets one virtual CPU on a host with one or more logical processors and several only on a host "
        "with at least two (Workstation/Player documentation, \"Virtual Machine Processor Support\")",
        min_memory_bytes=2 * GIB,
        recommended_memory_bytes=4 * GIB,
        memory_source="VMware Workstation 16.x/17.x host requirements: 2 GB of memory minimum, 4 GB or more recommended "
        "(each running VM needs its own memory on top)",
        recommended_free_disk_bytes=20 * GIB,
        disk_source="VMware: 1.2 GB for the application plus each VM's disk; 20 GiB holds one desktop guest",
        required_capabilities={
            **_COMMON_CAPABILITIES,
            "KVM_CAP_SPLIT_IRQCHIP": "split IRQ chip: VMware runs KVM's in-kernel APIC with its own I/O APIC",
            "KVM_CAP_X86_USER_SPACE_MSR": "VMware-specific MSRs handled in user space",
            "KVM_CAP_IMMEDIATE_EXIT": "interrupting a running vCPU without signals races",
        },
        min_kernel_capability="KVM_CAP_X86_USER_SPACE_MSR",
        recommended_kernel_capability="KVM_CAP_XSAVE2",
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
        cpus_source="KVM runs on one CPU; a guest with N vCPUs wants N logical CPUs beside the host's own work",
        min_memory_bytes=1 * GIB,
        recommended_memory_bytes=2 * GIB,
        memory_source="no published figure for KVM hosts: 1 GiB holds a small guest beside a minimal host, 2 GiB a "
        "comfortable one",
        recommended_free_disk_bytes=10 * GIB,
        disk_source="room for one small guest image",
        required_capabilities=dict(_COMMON_CAPABILITIES),
    ),
}


def policy(target: Target) -> Policy:
    return THRESHOLDS[target]


def memtotal_for(installed_bytes: int) -> int:
    """The MemTotal a machine with `installed_bytes` of memory shows at least."""
    return int(installed_bytes * MEMTOTAL_SHARE)

