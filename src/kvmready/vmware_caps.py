"""What kvmready knows of VMware's KVM support in Linux: one dated table.

A KVM-backed VMware Workstation needs kernel support that VMware proposed
and mainline has not merged:

- "[PATCH 0/3] KVM: x86: Small changes to support VMware guests", Zack Rusin,
  30 Oct 2024 (lore.kernel.org/kvm/20241030033514.1728937-1-zack.rusin@broadcom.com):
  KVM_CAP_X86_VMWARE_BACKDOOR and KVM_CAP_X86_VMWARE_HYPERCALL;
- "[PATCH v2 0/5] KVM: Improve VMware guest support", 22 Apr 2025
  (lore.kernel.org/kvm/20250422161304.579394-1-zack.rusin@broadcom.com):
  CONFIG_KVM_VMWARE, capabilities BACKDOOR / HYPERCALL / NESTED_BACKDOOR_L0
  (numbers 239-241) and the exit KVM_EXIT_VMWARE (40);
- review, Sean Christopherson, 23 Jul 2025 (lore.kernel.org/kvm/aIEkrc7Mdf2ia1Mm@google.com):
  one KVM_CAP_X86_VMWARE whose KVM_CHECK_EXTENSION value is a bitmask.

None of it is merged: mainline has since given capabilities 239-251 and exit
reasons 40-43 to other features (ARM, RISC-V, guest_memfd, s390, TDX, SNP;
kvmtool's "update headers: Linux v6.18", 8 Jan 2026,
lore.kernel.org/kvm/20260108175753.1292097-4-suzuki.poulose@arm.com), so the
proposed numbers must never be probed.  `kvm.enable_vmware_backdoor` (since
about 4.17) is the old system-wide switch that review called "generally
deprecated" in favour of the per-VM capability (Paolo Bonzini, 9 Nov 2024,
lore.kernel.org/kvm/c60b32a3-e699-4a8c-8d52-09b34c4d5269@redhat.com).

When a release defines the capability, add its row to VMWARE_CAPABILITIES,
move CHECKED_THROUGH and CHECKED_ON, and the live probe asks for it on
kernels from that release on.
"""

from typing import NamedTuple, Optional, Tuple

from kvmready.model import Version

# The newest mainline release whose KVM interface was checked for VMware support, and when.
CHECKED_THROUGH: Version = (6, 18, 0)
CHECKED_ON = "2026-12-01"
# What was checked: the sources above, and the kvm list archive through mid-2026 (no v3 of the series).
CHECKED_AGAINST = (
    "include/uapi/linux/kvm.h up to Linux 6.18 (kvmtool's header sync of 8 Jan 2026) and the kvm mailing "
    "list through mid-2026: no VMware capability, no v3 of Zack Rusin's series"
)
# The Kconfig symbol VMware's series adds (v2, patch 1/5): a kernel built with it carries the series.
CONFIG_SYMBOL = "CONFIG_KVM_VMWARE"

SOURCES = (
    "[PATCH 0/3] KVM: x86: Small changes to support VMware guests (Zack Rusin, 2024-10-30; "
    "lore.kernel.org/kvm/20241030033514.1728937-1-zack.rusin@broadcom.com)",
    "[PATCH v2 0/5] KVM: Improve VMware guest support (2025-04-22; "
    "lore.kernel.org/kvm/20250422161304.579394-1-zack.rusin@broadcom.com)",
    "Review: one KVM_CAP_X86_VMWARE returning a bitmask (Sean Christopherson, 2025-07-23; "
    "lore.kernel.org/kvm/aIEkrc7Mdf2ia1Mm@google.com)",
    "kvmtool: update headers: Linux v6.18 (2026-01-08; lore.kernel.org/kvm/20260108175753.1292097-4-suzuki.poulose@arm.com): "
    "239-244 and exit 40 belong to other features",
)


class VmwareCapability(NamedTuple):
    name: str
    number: int
    first_release: Version  # the first kernel release whose uapi defines it
    enables: str
    # A bitmask capability (as review asked for): the bits a KVM-backed Workstation needs; 0: any value > 0.
    required_bits: int = 0

    def offered(self, value: int) -> bool:
        if value <= 0:
            return False
        return (value & self.required_bits) == self.required_bits


VMWARE_CAPABILITIES: Tuple[VmwareCapability, ...] = ()


def capabilities_for(version: Optional[Version]) -> Tuple[VmwareCapability, ...]:
    """The VMware capabilities a kernel of this version defines (never guessed from numbers alone)."""
    if version is None:
        return ()
    return tuple(cap for cap in VMWARE_CAPABILITIES if tuple(version) >= cap.first_release)


def beyond_knowledge(version: Optional[Version]) -> bool:
    """Whether this kernel is newer than the releases kvmready has checked (by MAJOR.MINOR)."""
    return version is not None and tuple(version[:2]) > CHECKED_THROUGH[:2]
