"""Live KVM checks: the current user opens /dev/kvm, the API answers, a VM and a guest run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

from kvmready.checks import advice
from kvmready.checks.base import CheckSpec, errored, failed, passed, skipped
from kvmready.facts import safe
from kvmready.facts.modules import PARAVIRTUAL_KVM_MODULES
from kvmready.kvmabi import KVM_API_VERSION
from kvmready.kvmabi import KVM_DEVICE as KVM
from kvmready.model import Outcome

if TYPE_CHECKING:
    from kvmready.facts import Facts
    from kvmready.facts.accounts import Group
    from kvmready.facts.live import Credentials, Failure
    from kvmready.targets import Policy


UDEV_RULE = 'KERNEL=="kvm", GROUP="kvm", MODE="0660", OPTIONS+="static_node=kvm"'
UDEV_RULE_FILE = "/etc/udev/rules.d/99-kvmready-kvm.rules"
HYPERVISOR_DRIVERS = ("vboxdrv", "vmmon", "vboxnetflt", "vboxnetadp")


def _user(facts: Facts) -> Dict[str, Any]:
    credentials = facts.require_live().credentials
    groups = facts.groups
    return {
        "uid": credentials.uid,
        "username": credentials.username,
        "groups": sorted(groups.name_of(gid) for gid in set(credentials.groups) | {credentials.gid}),
    }


def check_access(facts: Facts, policy: Policy) -> Outcome:
    live = facts.require_live()
    probe = live.kvm
    node = facts.devices.get(KVM).node
    user = _user(facts)
    evidence: Dict[str, Any] = {"device": probe.device, "user": user, "acl": live.device_acl}
    if node is not None:
        evidence.update(owner=node.uid, group=facts.groups.name_of(node.gid), mode=f"{node.mode:04o}")
    error = probe.open_error
    if error is None:
        return passed(f"{user['username'] or 'uid ' + str(live.credentials.uid)} can open {KVM} read-write", evidence)
    evidence["error"] = error.to_dict()
    own = _checker_failure(error, evidence)
    if own:
        return own
    container = facts.container
    if container.name is not None:
        evidence["container"] = container.evidence()
    if error.errno_name == "ENOENT":
        return failed(f"{KVM} does not exist (see kvm.device)", "Load the KVM module (see kvm.module); it creates the device.", evidence)
    if error.errno_name == "EACCES":
        fix = _access_fix(facts, evidence)
        if container.name is not None:
            fix += (f" Inside this {container.name} container the group must be the host's kvm group id: run the "
                    "container with it (`--group-add <the host's kvm gid>`) or as a user in it.")
        return failed(_denied_summary(facts), fix, evidence)
    if error.errno_name == "EPERM":
        if container.name is not None:
            fix = advice.sentence(f"This {container.name} container's device cgroup does not allow {KVM}: "
                                  f"{advice.container_device(container.name)}")
        else:
            fix = (f"For a systemd service, `DeviceAllow={KVM} rw`; in a container, pass the device (`--device {KVM}`, "
                   "Kubernetes: a device plugin such as KubeVirt's devices.kubevirt.io/kvm); otherwise check the audit "
                   "log for the denying security module.")
        return failed(
            f"opening {KVM} is not permitted (EPERM): a device cgroup, seccomp filter or security module forbids it, "
            "whatever the file permissions say",
            fix,
            evidence,
        )
    if error.errno_name in ("ENXIO", "ENODEV"):
        return failed(
            f"{KVM} exists but no driver answers it ({error.errno_name}): the KVM module is not loaded",
            "Load the KVM module (see kvm.module), then recreate the node if needed (`sudo udevadm trigger --name-match=kvm`).",
            evidence,
        )
    return failed(f"opening {KVM} failed: {error.message} ({error.errno_name})", None, evidence)


def _denied_summary(facts: Facts) -> str:
    node = facts.devices.get(KVM).node
    who = facts.require_live().credentials.username or f"uid {facts.require_live().credentials.uid}"
    if node is None:
        return f"{who} may not open {KVM} (permission denied)"
    return f"{who} may not open {KVM} (owner {node.uid}, group {facts.groups.name_of(node.gid)}, mode {node.mode:04o})"


def _access_fix(facts: Facts, evidence: Dict[str, Any]) -> str:
    node = facts.devices.get(KVM).node
    credentials = facts.require_live().credentials
    groups = facts.groups
    steps: List[str] = []
    if node is not None and node.mode & 0o060 == 0o060 and node.gid != 0:  # the group may write: only membership is missing
        group = groups.by_gid(node.gid)
        group_name = group.name if group else str(node.gid)
    else:
        steps.append(
            f"give the kvm group read-write access with a udev rule: "
            f"`echo '{UDEV_RULE}' | sudo tee {UDEV_RULE_FILE}` then "
            "`sudo udevadm control --reload-rules && sudo udevadm trigger --name-match=kvm` "
            "(create the group first if needed: `sudo groupadd --system kvm`)"
        )
        group_name = "kvm"
    target = groups.by_name.get(group_name)
    member_on_disk = _listed_member(target, credentials)
    in_session = target is not None and (target.gid in credentials.groups or target.gid == credentials.gid)
    evidence["group_membership"] = {"group": group_name, "listed_in_etc_group": member_on_disk, "in_this_session": in_session}
    if member_on_disk and not in_session:
        steps.append(
            f"you are in the {group_name} group in /etc/group but this session started before that: "
            f"log out and back in (or run `newgrp {group_name}`)"
        )
    elif not member_on_disk:
        steps.append(f"add yourself to the group: `sudo usermod -aG {group_name} $USER`, then log out and back in")
    return " ".join(f"{index}. {step[0].upper()}{step[1:]}." for index, step in enumerate(steps, 1))


def _listed_member(group: Optional[Group], credentials: Credentials) -> bool:
    """In the group by /etc/group's member list, or as the primary group."""
    if group is None:
        return False
    return bool(credentials.username and credentials.username in group.members) or group.gid == credentials.gid


def _needs_open(facts: Facts) -> Optional[Outcome]:
    error = facts.require_live().kvm.open_error
    if error is not None:
        return skipped(f"needs {KVM} open, which failed (see kvm.access)", {"error": error.to_dict()})
    return None


def check_api(facts: Facts, policy: Policy) -> Outcome:
    blocked = _needs_open(facts)
    if blocked:
        return blocked
    probe = facts.require_live().kvm
    evidence: Dict[str, Any] = {"ioctl": "KVM_GET_API_VERSION", "device": probe.device}
    if probe.api_error:
        evidence["error"] = probe.api_error.to_dict()
        own = _checker_failure(probe.api_error, evidence)
        if own:
            return own
        return failed(
            f"KVM_GET_API_VERSION failed ({probe.api_error.errno_name}): {probe.device} does not answer like KVM",
            f"Check that {KVM} is the KVM device (see kvm.device) and that the KVM module is loaded.",
            evidence,
        )
    evidence.update(api_version=probe.api_version, expected=KVM_API_VERSION)
    if probe.api_version != KVM_API_VERSION:
        return failed(
            f"KVM API version {probe.api_version}; every KVM user requires {KVM_API_VERSION}",
            "This kernel's KVM predates the stable API (2.6.22): upgrade the kernel.",
            evidence,
        )
    return passed(f"KVM API version {KVM_API_VERSION}", evidence)


def check_capabilities(facts: Facts, policy: Policy) -> Outcome:
    blocked = _needs_open(facts) or _needs_api(facts)
    if blocked:
        return blocked
    probe = facts.require_live().kvm
    evidence: Dict[str, Any] = {
        "ioctl": "KVM_CHECK_EXTENSION",
        "scope": probe.capability_scope,
        "values": dict(sorted(probe.capabilities.items())),
        "numbers": dict(sorted(probe.capability_numbers.items())),
        "errors": {name: failure.to_dict() for name, failure in probe.capability_errors.items()},
        "required": dict(policy.required_capabilities),
    }
    missing = [name for name in policy.required_capabilities if probe.capabilities.get(name, 0) <= 0]
    evidence["missing"] = missing
    count = len(probe.capabilities)
    if missing:
        reasons = "; ".join(f"{name} ({policy.required_capabilities[name]})" for name in missing)
        return failed(
            f"{len(missing)} needed capabilit{'y' if len(missing) == 1 else 'ies'} absent: {reasons}",
            "Boot a newer kernel whose KVM offers them (see kernel.version); on a paravirtual or nested KVM they may never be offered.",
            evidence,
        )
    return passed(
        f"all {len(policy.required_capabilities)} needed capabilities present ({count} queried on the {probe.capability_scope} fd)",
        evidence,
    )


def _needs_api(facts: Facts) -> Optional[Outcome]:
    probe = facts.require_live().kvm
    if probe.api_error or probe.api_version != KVM_API_VERSION:
        return skipped("needs a working KVM API (see kvm.api)")
    return None


def check_create_vm(facts: Facts, policy: Policy) -> Outcome:
    blocked = _needs_open(facts) or _needs_api(facts)
    if blocked:
        return blocked
    probe = facts.require_live().kvm
    evidence: Dict[str, Any] = {"ioctl": "KVM_CREATE_VM", "device": probe.device}
    if probe.vm_created:
        return passed("KVM_CREATE_VM created a VM", evidence)
    error = probe.create_vm_error
    if error is None:
        return errored("the KVM probe neither created a VM nor recorded why not", evidence)
    evidence["error"] = error.to_dict()
    own = _checker_failure(error, evidence)
    if own:
        return own
    if error.errno_name == "EBUSY":
        # The module list only adds names here; EBUSY is the proof either way.
        modules = safe(lambda: facts.modules)
        drivers = [name for name in HYPERVISOR_DRIVERS if modules is not None and modules.has(name)]
        evidence["other_hypervisor_modules"] = drivers
        named = f" ({', '.join(drivers)} loaded)" if drivers else ""
        return failed(
            f"KVM_CREATE_VM: EBUSY, another hypervisor holds VT-x/AMD-V{named}",
            "Power off VirtualBox or legacy VMware VMs and unload their drivers "
            "(`sudo modprobe -r vboxnetadp vboxnetflt vboxdrv`, or `sudo modprobe -r vmnet vmmon`); "
            "see conflicts.virtualbox and conflicts.vmware-vmmon for a lasting fix.",
            evidence,
        )
    fixes = {
        "EACCES": "A security module forbids KVM here: allow the KVM ioctls.",
        "EINVAL": "The kernel rejected the default VM type: the KVM module may be half-initialised; reload it.",
    }
    return failed(f"KVM_CREATE_VM failed: {error.message} ({error.errno_name})", fixes.get(error.errno_name), evidence)


# Hardware-assisted KVM runs guest code natively: the smoke guest's 200,000-instruction loop takes a
# fraction of a millisecond (around 10^9 instructions a second or more, nested included).  Where KVM
# can only emulate the guest, as kvm_pvm does for a guest kernel that is not PVM-enabled, it ran
# 0.5-0.9 million instructions a second (measured on the development machine, 2026-12-01, with a
# stock Debian kernel under `qemu-system-x86_64 -accel kvm`).  The bar sits between the two with
# a wide margin either way, so that a busy host's preemption cannot fail a native run.
MIN_GUEST_INSTRUCTIONS_PER_SECOND = 10_000_000


def check_guest(facts: Facts, policy: Policy) -> Outcome:
    probe = facts.require_live().kvm
    blocked = _needs_open(facts) or _needs_api(facts)
    if blocked:
        return blocked
    if not probe.vm_created:
        return skipped("needs a VM (see kvm.create-vm)")
    if probe.guest_error:
        setup: Dict[str, Any] = {"error": probe.guest_error.to_dict()}
        own = _checker_failure(probe.guest_error, setup)
        if own:
            return own
        return failed(
            f"setting up the guest failed: {probe.guest_error}",
            "KVM created a VM but could not set up a vCPU for it; check `dmesg` for KVM errors.",
            setup,
        )
    guest = probe.guest
    if guest is None:
        return errored("the KVM probe created a VM but recorded no guest run", {"vm_created": True})
    evidence: Dict[str, Any] = guest.to_dict()
    evidence["duration_ms"] = round(guest.duration_ns / 1e6, 3)
    speed = guest.instructions_per_second
    evidence.update(instructions_per_second=None if speed is None else round(speed),
                    minimum_instructions_per_second=MIN_GUEST_INSTRUCTIONS_PER_SECOND)
    paravirtual = facts.kvm_module in PARAVIRTUAL_KVM_MODULES
    cause = " (kvm_pvm can only emulate a guest that is not PVM-enabled)" if paravirtual else ""
    if not guest.ok:
        return failed(
            f"the guest did not finish: {guest.problem}{cause}",
            _guest_fix(paravirtual),
            evidence,
            detail=advice.PVM_EMULATES if paravirtual else "",
        )
    if speed is None or speed < MIN_GUEST_INSTRUCTIONS_PER_SECOND:
        measured = "an unmeasured speed" if speed is None else f"{speed / 1e6:.2f} million instructions a second"
        return failed(
            f"the guest ran every stage, but its code ran at {measured} "
            f"(native KVM: {MIN_GUEST_INSTRUCTIONS_PER_SECOND / 1e6:.0f} million and far more): KVM emulates it{cause}",
            _guest_fix(paravirtual),
            evidence,
            detail=advice.PVM_EMULATES if paravirtual else "",
        )
    return passed(
        f"a guest went from real to protected to long mode, ran lock cmpxchg16b and "
        f"{(guest.loop_instructions or 0) // 1000}k instructions at {speed / 1e6:,.0f} million a second, "
        f"and halted ({guest.duration_ns / 1e6:.2f} ms, {guest.runs} KVM_RUN calls)",
        evidence,
    )


def _guest_fix(paravirtual: bool) -> str:
    if paravirtual:
        return ("Unmodified guests (Windows, stock Linux, VMware Workstation's) need VT-x/AMD-V: run on bare metal or "
                "in a VM whose hypervisor exposes nested virtualization (see host.hypervisor). On this KVM only "
                "PVM-enabled Linux guest kernels run natively.")
    return ("KVM creates VMs but does not run guest code as a real OS needs; check `dmesg` for KVM errors, "
            "the hardware-MMU settings (cpu.hardware-mmu) and, in a VM, the outer hypervisor's nesting.")


# errno names that say kvmready itself ran short of something: they tell nothing about the host's KVM.
CHECKER_LIMITS = {
    "EMFILE": "open files for this process (RLIMIT_NOFILE: `ulimit -n`)",
    "ENFILE": "open files on the whole system",
    "ENOMEM": "memory (or the memory cgroup's limit)",
    "EAGAIN": "a resource the kernel asks to retry for (processes, locked memory)",
}


def _checker_failure(failure: Failure, evidence: Dict[str, Any]) -> Optional[Outcome]:
    """An `error` when the probe failed for reasons of its own, not the host's KVM; else None."""
    limit = CHECKER_LIMITS.get(failure.errno_name)
    if limit:
        evidence["cause"] = "checker"
        return errored(
            f"{failure.operation} failed ({failure.errno_name}: {failure.message}): kvmready ran out of {limit}, "
            "so this says nothing about the host's KVM",
            evidence,
            remediation="Run kvmready again with more headroom (for example `ulimit -n 1024` first, or more memory).",
        )
    if failure.errno_name == "EPERM" and failure.operation != "open":
        evidence["cause"] = "sandbox"
        return errored(
            f"{failure.operation} was refused (EPERM) after {KVM} opened: a seccomp filter or security module "
            "(SELinux, AppArmor) forbids this process KVM's ioctls, so KVM itself was never asked",
            evidence,
            remediation="Run kvmready outside the sandbox, or allow the KVM ioctls there (for a container: a seccomp "
            "profile that permits ioctl on /dev/kvm; for a systemd service: SystemCallFilter); the audit log names the "
            "denying module.",
        )
    return None


ACCESS = CheckSpec(
    "kvm.access", "/dev/kvm opens for the current user", "kvm", check_access, live=True,
    what="Opens /dev/kvm read-write as the user running kvmready (so ACLs and groups count), and explains a refusal with owner, group, mode and the user's groups.",
    why="Hypervisors run as the desktop user; a device only root can open is useless to them, yet kvm-ok says 'can be used'.",
    fix="`sudo usermod -aG kvm $USER` and log in again; where the device is not group-writable, a udev rule giving the kvm group mode 0660.",
    sources=(
        "Documentation/virt/kvm/api.rst: userspace opens /dev/kvm read-write; access is the device node's mode,"
        " group and ACL",
        "systemd's rules.d/50-udev-default.rules.in: KERNEL==\"kvm\", GROUP=\"kvm\" (the mode is a build option)",
    ),
)


API = CheckSpec(
    "kvm.api", "KVM API version", "kvm", check_api, live=True,
    what=f"KVM_GET_API_VERSION on {KVM} returns {KVM_API_VERSION}.",
    why="The KVM documentation tells applications to refuse any other value.",
    fix="A kernel from 2.6.22 on; a different answer means the device is not KVM.",
    sources=(
        "Documentation/virt/kvm/api.rst, 4.1: KVM_GET_API_VERSION returns 12 since Linux 2.6.22; \"Applications "
        "should refuse to run if KVM_GET_API_VERSION returns a value other than 12\"",
    ),
)


CAPABILITIES = CheckSpec(
    "kvm.capabilities", "KVM capabilities", "kvm", check_capabilities, live=True,
    what="KVM_CHECK_EXTENSION for the capabilities a VMware-style front end relies on (user memory, IRQ chip and split IRQ chip, vCPU and memory-slot limits, user-space MSR exits, hypercall exits, nested state, XSAVE2 …), each with its value.",
    why="A KVM without them cannot host Workstation's virtual hardware model even though simple VMs run.",
    fix="A newer kernel; paravirtual or nested KVM may not offer some of them at all.",
    sources=(
        "include/uapi/linux/kvm.h (capability numbers) and Documentation/virt/kvm/api.rst (what each means)",
        "VMware runs KVM's in-kernel APIC with the split IRQ chip (Doug Covelli, 2024-12-12, quoted in "
        "lore.kernel.org/kvm/Z2IXvsM0olS5GvbR@google.com)",
    ),
)


CREATE_VM = CheckSpec(
    "kvm.create-vm", "KVM creates a VM", "kvm", check_create_vm, live=True,
    what="KVM_CREATE_VM on /dev/kvm.",
    why="EBUSY here means another hypervisor (VirtualBox, legacy VMware vmmon) holds VT-x/AMD-V, so KVM cannot start VMs.",
    fix="Stop the other hypervisor's VMs and unload its driver.",
    sources=(
        "Documentation/virt/kvm/api.rst, 4.2: KVM_CREATE_VM",
        "arch/x86/kvm/vmx/vmx.c: enabling VMX fails with EBUSY when another hypervisor already set CR4.VMXE; "
        "QEMU then reports \"ioctl(KVM_CREATE_VM) failed: 16 Device or resource busy\" (quickemu #13)",
    ),
)


GUEST = CheckSpec(
    "kvm.guest", "A real guest runs", "kvm", check_guest, live=True,
    what="Runs a guest the way an operating system starts: real mode, protected mode, long mode with paging, then "
    "`lock cmpxchg16b` and a timed 200,000-instruction loop, each stage writing a byte to port 0x3f8 (bounded KVM_RUN "
    "calls, a timer guard). It passes when every stage ran and the loop ran at hardware speed (10 million "
    "instructions a second or more).",
    why="Only running guest code proves KVM works: paravirtual KVM (kvm_pvm) creates VMs, yet runs unmodified guests "
    "only by emulation and stops at instructions its emulator lacks, and peers that stop at the device or "
    "KVM_CREATE_VM call such a host usable.",
    fix="Check `dmesg` for KVM errors; on paravirtual KVM expose VT-x/AMD-V to this VM (nested virtualization) or "
    "run PVM-enabled guest kernels.",
    sources=(
        "Intel SDM vol. 3A, 9.9: switching to protected mode and to IA-32e (long) mode (CR0.PE, CR4.PAE, "
        "EFER.LME, CR0.PG)",
        "arch/x86/kvm/x86.c: KVM refuses EFER.LME unless the guest's CPUID (KVM_SET_CPUID2) has LM",
        "The 10 million instructions a second bar: measured on the development machine (2026-12-01): "
        "hardware-assisted KVM runs the loop at about 10^9 a second, kvm_pvm's emulation ran a stock Debian "
        "kernel at 0.5-0.9 million",
    ),
)
