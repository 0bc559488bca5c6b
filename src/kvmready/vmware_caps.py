"""VMware's per-VM KVM capabilities: names, numbers and the releases that define them.

VMware's patch series (v1 2024-10-30, v2 2025-04-22) proposed
KVM_CAP_X86_VMWARE_BACKDOOR (239), KVM_CAP_X86_VMWARE_HYPERCALL (240) and
KVM_CAP_X86_VMWARE_NESTED_BACKDOOR_L0 (241); review asked for one
KVM_CAP_X86_VMWARE_EMULATION with flag bits instead.  None is merged up to
Linux 6.18, and mainline gave 239-244 to ARM, RISC-V and guest_memfd
capabilities, so those numbers must never be probed as VMware's.

When a release defines them, add one row per capability here: the live
probe queries it on kernels from that release on, and vmware.backdoor
prefers it to the system-wide parameter.
"""

from typing import NamedTuple, Optional, Tuple

from kvmready.model import Version


class VmwareCapability(NamedTuple):
    name: str
    number: int
    first_release: Version  # the first kernel release whose uapi defines it
    enables: str


VMWARE_CAPABILITIES: Tuple[VmwareCapability, ...] = ()


def capabilities_for(version: Optional[Version]) -> Tuple[VmwareCapability, ...]:
    """The VMware capabilities a kernel of this version defines (never guessed from numbers alone)."""
    if version is None:
        return ()
    return tuple(cap for cap in VMWARE_CAPABILITIES if tuple(version) >= cap.first_release)
