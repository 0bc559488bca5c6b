"""The kernel release against the minimum KVM features a target uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvmready.checks.base import CheckSpec, errored, threshold_outcome
from kvmready.facts.kernel import format_version
from kvmready.model import Outcome

if TYPE_CHECKING:
    from kvmready.facts import Facts
    from kvmready.targets import Policy



def check_version(facts: Facts, policy: Policy) -> Outcome:
    info = facts.kernel
    evidence = info.evidence()
    evidence.update(minimum=format_version(policy.min_kernel), recommended=format_version(policy.recommended_kernel))
    if info.release is None:
        return errored(f"cannot tell the kernel release: {info.error}", evidence)
    if info.version is None:
        return errored(f"cannot parse the kernel release {info.release!r}: it does not start with MAJOR.MINOR", evidence)
    release, minimum, recommended = info.release, format_version(policy.min_kernel), format_version(policy.recommended_kernel)
    return threshold_outcome(
        info.version, policy.min_kernel, policy.recommended_kernel, evidence,
        below_minimum=(
            f"Linux {release} is older than {minimum}: {policy.min_kernel_why}",
            f"Install a kernel {minimum} or newer (your distribution's current or HWE kernel) and reboot into it.",
        ),
        below_recommended=(
            f"Linux {release} works, but {recommended}+ is recommended: {policy.recommended_kernel_why}",
            f"Upgrade to a kernel {recommended} or newer when you can.",
        ),
        enough=f"Linux {release} (needs {minimum}+)",
    )



VERSION = CheckSpec(
    "kernel.version", "Kernel version", "kernel", check_version,
    what="The running kernel's release (/proc/sys/kernel/osrelease), its MAJOR.MINOR.PATCH compared with the target's minimum and recommended versions.",
    why="The minimum is the release that first has every KVM capability the target requires (for Workstation "
    "KVM_CAP_X86_USER_SPACE_MSR, Linux 5.10; VMware publishes no kernel minimum of its own); the KVM API itself is "
    "stable since 2.6.22.",
    fix="Boot a newer kernel: the distribution's current or hardware-enablement kernel.",
    sources=(
        "KVM_CAP_X86_USER_SPACE_MSR: \"KVM: x86: Allow deflecting unknown MSR accesses to user space\" (Alexander Graf, "
        "2020-09), first in Linux 5.10",
        "KVM_CAP_XSAVE2: absent from the Linux 5.16-rc1 uapi header, present in 5.17's (kvmtool header syncs)",
        "Documentation/virt/kvm/api.rst: the KVM API is stable (version 12) since Linux 2.6.22",
        "QEMU documentation: its default KVM CPU features need Linux 4.5 or newer",
    ),
)
