"""The kernel release against the minimum KVM features a target uses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional

from kvmready.checks.base import CheckSpec, errored, passed, skipped, threshold_outcome, warned
from kvmready.facts.kernel import format_version
from kvmready.model import Outcome

# Distributions whose kernels carry KVM features far past their release number (RHEL 8: 4.18, RHEL 9: 5.14).
# Source: the QEMU documentation's host requirements ("Red Hat Enterprise Linux 7 is also supported, since the
# required functionality was backported") and the RHEL 8 kernel's KVM_CAP_X86_USER_SPACE_MSR.
BACKPORTING_DISTRIBUTIONS = ("rhel", "centos", "rocky", "almalinux", "ol", "sles", "sled")

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
    below_minimum = info.version < policy.min_kernel
    if below_minimum or info.version < policy.recommended_kernel:
        decided = _decided_by_capabilities(facts, policy, evidence, below_minimum)
        if decided is not None:
            return decided
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


def _decided_by_capabilities(facts: Facts, policy: Policy, evidence: Dict[str, Any], below_minimum: bool) -> Optional[Outcome]:
    """A kernel below a threshold whose capability KVM answers live has it backported: the answer decides, not the
    number.  Offline, a backporting distribution's kernel below the minimum is undecided.  None: the number decides."""
    release = facts.kernel.release
    live = facts.live
    answers = live.kvm.capabilities if live is not None else {}
    wanted = policy.min_kernel_capability if below_minimum else policy.recommended_kernel_capability
    if wanted is None:
        return None
    if live is not None:
        evidence["capability_answers"] = {name: answers.get(name) for name in (policy.min_kernel_capability,
                                                                               policy.recommended_kernel_capability) if name}
    if answers.get(wanted, 0) > 0:
        threshold = policy.min_kernel if below_minimum else policy.recommended_kernel
        if below_minimum and policy.recommended_kernel_capability and answers.get(policy.recommended_kernel_capability, 0) <= 0:
            return warned(f"Linux {release} has {wanted} (it answers live: backported to this kernel), but not "
                          f"{policy.recommended_kernel_capability}: {policy.recommended_kernel_why}",
                          "Upgrade to a kernel with it when you can.", evidence)
        return passed(f"Linux {release} is numbered below {format_version(threshold)}, but {wanted} answers live: "
                      "the feature is backported to this kernel", evidence)
    os_id = facts.os.id or ""
    if below_minimum and live is None and os_id in BACKPORTING_DISTRIBUTIONS:
        return skipped(f"Linux {release} is numbered below {format_version(policy.min_kernel)}, but {os_id} kernels carry "
                       f"backported KVM features: whether it has {wanted} shows only on the machine itself (kvm.capabilities)",
                       evidence, undecided=True)
    return None



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
        "QEMU documentation: its default KVM CPU features need Linux 4.5 or newer (\"Red Hat Enterprise Linux 7 is also "
        "supported, since the required functionality was backported\")",
        "Backports: a kernel numbered below a threshold whose capability KVM_CHECK_EXTENSION answers on the machine has "
        "the feature (RHEL 8's 4.18 has KVM_CAP_X86_USER_SPACE_MSR); the live answer decides",
    ),
)
