"""The kernel release against the minimum KVM features a target uses."""

from __future__ import annotations

from kvmready.checks.base import CheckSpec, errored, failed, passed, warned
from kvmready.facts.kernel import format_version
from kvmready.model import Outcome


def check_version(facts, policy) -> Outcome:
    info = facts.kernel
    evidence = info.evidence()
    evidence.update(minimum=format_version(policy.min_kernel), recommended=format_version(policy.recommended_kernel))
    if info.release is None:
        return errored(f"cannot tell the kernel release: {info.error}", evidence)
    if info.version is None:
        return errored(f"cannot parse the kernel release {info.release!r}: it does not start with MAJOR.MINOR", evidence)
    release = info.release
    if info.version < policy.min_kernel:
        return failed(
            f"Linux {release} is older than {format_version(policy.min_kernel)}: {policy.min_kernel_why}",
            f"Install a kernel {format_version(policy.min_kernel)} or newer (your distribution's current or HWE kernel) and reboot into it.",
            evidence,
        )
    if info.version < policy.recommended_kernel:
        return warned(
            f"Linux {release} works, but {format_version(policy.recommended_kernel)}+ is recommended: {policy.recommended_kernel_why}",
            f"Upgrade to a kernel {format_version(policy.recommended_kernel)} or newer when you can.",
            evidence,
        )
    return passed(f"Linux {release} (needs {format_version(policy.min_kernel)}+)", evidence)



VERSION = CheckSpec(
    "kernel.version", "Kernel version", "kernel", check_version,
    what="The running kernel's release (/proc/sys/kernel/osrelease), its MAJOR.MINOR.PATCH compared with the target's minimum and recommended versions.",
    why="Workstation on KVM relies on KVM features that arrived in specific releases (user-space MSR exits in 5.10, XSAVE2 in 5.17); the KVM API itself is stable since 2.6.22.",
    fix="Boot a newer kernel: the distribution's current or hardware-enablement kernel.",
)
