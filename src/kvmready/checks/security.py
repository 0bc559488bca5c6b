"""Secure Boot and kernel lockdown: what they mean for unsigned kernel modules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional

from kvmready.checks.base import CheckSpec, errored, passed, skipped, warned
from kvmready.model import Outcome

MOK_STEPS = (
    "Sign the modules with a Machine Owner Key: create one (`openssl req -new -x509 -newkey rsa:2048 -keyout MOK.priv "
    "-outform DER -out MOK.der -nodes -days 36500 -subj \"/CN=VMware/\"`), enroll it (`sudo mokutil --import MOK.der`, "
    "reboot, confirm in the MOK manager), then sign each module (`sudo /lib/modules/$(uname -r)/build/scripts/sign-file "
    "sha256 MOK.priv MOK.der $(modinfo -n vmnet)`) again after every rebuild."
)

if TYPE_CHECKING:
    from kvmready.facts import Facts
    from kvmready.targets import Policy



SIG_ENFORCE = "/sys/module/module/parameters/sig_enforce"
REFUSED_MODULES = "VMware's vmnet, the classic vmmon, VirtualBox's vboxdrv"


def unsigned_modules_refused(facts: Facts, evidence: Dict[str, Any]) -> Optional[bool]:
    """Whether this kernel refuses unsigned modules: lockdown (integrity, confidentiality) or module.sig_enforce does;
    Secure Boot alone does not (an upstream kernel with Secure Boot on loads them, tainted).  None: unknown."""
    lockdown = facts.firmware.lockdown
    enforce = facts.module_params("module").flag("sig_enforce")
    evidence.update(lockdown=lockdown, sig_enforce=enforce, sig_enforce_source=SIG_ENFORCE)
    if enforce or lockdown in ("integrity", "confidentiality"):
        return True
    if enforce is False and lockdown == "none":
        return False
    return None


def check_secure_boot(facts: Facts, policy: Policy) -> Outcome:
    info = facts.firmware
    evidence = info.secure_boot_evidence()
    refused = unsigned_modules_refused(facts, evidence)
    if info.uefi is None:
        return skipped("not captured: the tree has no /sys/firmware", evidence)
    if not info.uefi and not refused:
        return passed("no /sys/firmware/efi: the kernel did not boot through UEFI, so no Secure Boot", evidence)
    if info.uefi and info.secure_boot is None:
        return errored(f"cannot read the SecureBoot EFI variable: {info.secure_boot_error}", evidence)
    booted = "UEFI Secure Boot is on" if info.secure_boot else "UEFI Secure Boot is off" if info.uefi else "no UEFI boot"
    if refused:
        return warned(f"{booted}, and this kernel refuses unsigned modules ({_why_refused(evidence)}): {REFUSED_MODULES} "
                      "load only when signed with an enrolled key ('Key was rejected by service')", MOK_STEPS, evidence)
    if refused is False:
        tail = "; this kernel neither locks down nor enforces module signatures" if info.secure_boot else ""
        return passed(f"{booted}{tail}: unsigned out-of-tree modules load (tainting the kernel)", evidence)
    if info.secure_boot:  # lockdown or sig_enforce unreadable: what distribution kernels do under Secure Boot
        return warned(f"{booted}: distribution kernels then refuse unsigned out-of-tree modules ({REFUSED_MODULES}); "
                      f"this kernel's lockdown and {SIG_ENFORCE} could not be read to tell", MOK_STEPS, evidence)
    return passed(f"{booted} (whether this kernel enforces module signatures otherwise could not be read: see security.lockdown)",
                  evidence)


def _why_refused(evidence: Dict[str, Any]) -> str:
    reasons = []
    if evidence.get("lockdown") in ("integrity", "confidentiality"):
        reasons.append(f"lockdown '{evidence['lockdown']}'")
    if evidence.get("sig_enforce"):
        reasons.append("module.sig_enforce")
    return " and ".join(reasons)


def check_lockdown(facts: Facts, policy: Policy) -> Outcome:
    info = facts.firmware
    evidence = info.lockdown_evidence()
    if info.lockdown is None:
        return skipped(f"lockdown state unknown: {info.lockdown_error} (securityfs not mounted, not captured, or no lockdown support)", evidence)
    if info.lockdown == "none":
        return passed("kernel lockdown is off", evidence)
    from_cmdline = facts.kernel.cmdline_params.get("lockdown")
    if from_cmdline:
        evidence["cmdline"] = f"lockdown={from_cmdline}"
        fix = (f"This lockdown comes from `lockdown={from_cmdline}` on the kernel command line (/proc/cmdline): remove it "
               "from the boot loader's configuration and reboot, or sign out-of-tree modules (see security.secure-boot).")
    elif info.secure_boot:
        fix = ("Lockdown follows Secure Boot here: sign out-of-tree modules with an enrolled key (see security.secure-boot), "
               "or turn Secure Boot off in the firmware setup.")
    else:
        fix = ("Neither Secure Boot nor the command line asks for it, so this kernel locks down by its build "
               "(CONFIG_LOCK_DOWN_KERNEL_FORCE_*): sign out-of-tree modules (see security.secure-boot) or boot another kernel.")
    return warned(
        f"kernel lockdown is '{info.lockdown}': unsigned modules are refused and /dev/mem, MSR writes and similar are blocked",
        fix,
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
        "kernel/module/signing.c: a kernel refuses unsigned modules when module.sig_enforce is set or lockdown is on "
        "(security/lockdown); Secure Boot refuses them only through the distribution's lockdown-on-Secure-Boot "
        "patches, and an upstream kernel loads them, tainted",
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
