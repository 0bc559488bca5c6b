"""Secure Boot and kernel lockdown: what they mean for unsigned kernel modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvmready.checks.base import CheckSpec, errored, passed, skipped, warned
from kvmready.model import Outcome

MOK_STEPS = (
    "Sign the modules with a Machine Owner Key: create one (`openssl req -new -x509 -newkey rsa:2048 -keyout MOK.priv "
    "-outform DER -out MOK.der -nodes -days 36500 -subj \"/CN=VMware/\"`), enroll it (`sudo mokutil --import MOK.der`, "
    "reboot, confirm in the MOK manager), then sign each module (`sudo /usr/src/linux-headers-$(uname -r)/scripts/sign-file "
    "sha256 MOK.priv MOK.der $(modinfo -n vmnet)`) again after every rebuild."
)

if TYPE_CHECKING:
    from kvmready.facts import Facts
    from kvmready.targets import Policy



def check_secure_boot(facts: Facts, policy: Policy) -> Outcome:
    info = facts.firmware
    evidence = info.secure_boot_evidence()
    if info.uefi is None:
        return skipped("not captured: the tree has no /sys/firmware", evidence)
    if not info.uefi:
        return passed("booted without UEFI (legacy BIOS): no Secure Boot", evidence)
    if info.secure_boot is None:
        return errored(f"cannot read the SecureBoot EFI variable: {info.secure_boot_error}", evidence)
    if not info.secure_boot:
        return passed("UEFI Secure Boot is off: out-of-tree modules load unsigned", evidence)
    return warned(
        "UEFI Secure Boot is on: the kernel refuses unsigned out-of-tree modules (VMware's vmnet, the classic vmmon, "
        "VirtualBox's vboxdrv) with 'Key was rejected by service'",
        MOK_STEPS,
        evidence,
    )


def check_lockdown(facts: Facts, policy: Policy) -> Outcome:
    info = facts.firmware
    evidence = info.lockdown_evidence()
    if info.lockdown is None:
        return skipped(f"lockdown state unknown: {info.lockdown_error} (securityfs not mounted, not captured, or no lockdown support)", evidence)
    if info.lockdown == "none":
        return passed("kernel lockdown is off", evidence)
    return warned(
        f"kernel lockdown is '{info.lockdown}': unsigned modules are refused and /dev/mem, MSR writes and similar are blocked",
        "Lockdown usually follows Secure Boot: sign out-of-tree modules with an enrolled key (see security.secure-boot), "
        "or turn Secure Boot off in the firmware setup.",
        evidence,
    )



SECURE_BOOT = CheckSpec(
    "security.secure-boot", "UEFI Secure Boot", "security", check_secure_boot,
    what="The SecureBoot EFI variable (/sys/firmware/efi/efivars/SecureBoot-8be4df61-…).",
    why="With Secure Boot on, out-of-tree modules (VMware's vmnet, the classic vmmon) load only when signed with an enrolled key.",
    fix="Sign the modules with a MOK key enrolled through mokutil, or turn Secure Boot off.",
    sources=(
        "VMware KB 2146460 and mkubecek/vmware-host-modules #87: unsigned vmmon/vmnet are refused under Secure "
        "Boot (\"Key was rejected by service\") until signed with a MOK key enrolled by mokutil",
    ),
)


LOCKDOWN = CheckSpec(
    "security.lockdown", "Kernel lockdown", "security", check_lockdown,
    what="/sys/kernel/security/lockdown (none, integrity or confidentiality).",
    why="Lockdown refuses unsigned modules and blocks raw hardware access.",
    fix="Sign modules with an enrolled key, or boot without Secure Boot.",
    sources=(
        "kernel_lockdown(7) and security/lockdown/lockdown.c: integrity and confidentiality modes refuse "
        "unsigned modules",
    ),
)
