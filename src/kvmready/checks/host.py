"""The host as a whole: the hypervisor it runs under, its distribution."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from kvmready.checks import advice
from kvmready.checks.base import (
    CheckSpec,
    errored,
    passed,
    unreadable,
    warn_or_fail,
    warned,
)
from kvmready.checks.cpu import KVM_NEVER
from kvmready.kvmabi import KVM_DEVICE
from kvmready.model import Outcome, Target

if TYPE_CHECKING:
    from kvmready.facts import Facts
    from kvmready.facts.hypervisor import HypervisorInfo
    from kvmready.targets import Policy


# os-release ID -> VERSION_ID values (or major versions) listed as Workstation hosts.
# Sources: Broadcom KB 80807 (Workstation 17.x host list: Ubuntu, RHEL, CentOS,
# Oracle Linux, openSUSE, SLES) and the Workstation 25H2 notes (Fedora 42, RHEL 10).
WORKSTATION_HOST_OSES = {
    "ubuntu": ("20.04", "22.04", "24.04"),
    "rhel": ("8", "9", "10"),
    "centos": ("8", "9", "10"),
    "ol": ("8", "9"),
    "opensuse-leap": ("15",),
    "sles": ("15",),
    "fedora": ("42",),
}
WORKSTATION_HOST_OSES_SOURCE = "Broadcom KB 80807 and the Workstation 25H2 release notes"


def check_hypervisor(facts: Facts, policy: Policy) -> Outcome:
    info = facts.hypervisor
    evidence = info.evidence()
    if not info.is_guest:
        return _no_hypervisor_found(facts, info, evidence)
    name = info.name
    label = advice.hypervisor_label(name, info.vendor)
    if name == "lpar":
        return passed(
            "an IBM Z logical partition (LPAR) under PR/SM, the machine's firmware hypervisor: KVM runs in an LPAR "
            "as a first-level hypervisor, not nested",
            evidence,
        )
    if name == "unknown" and facts.arch.family == "s390":
        return warned(
            "on IBM Z, Linux always runs under a hypervisor (PR/SM in an LPAR, z/VM or KVM), and nothing here says which: "
            "/proc/sysinfo, which names it, is not in this tree",
            "Read /proc/sysinfo on the machine (`VM00 Control Program` names z/VM or KVM; LPAR lines alone mean first level).",
            evidence,
        )
    if name == "xen" and info.xen_role == "dom0":
        return warn_or_fail(
            True,
            "this is Xen's dom0: the Xen hypervisor owns VT-x/AMD-V, so KVM cannot run here",
            "Boot the machine without Xen (choose the plain Linux entry in the boot menu).",
            evidence,
        )
    if facts.arch.family in KVM_NEVER:
        return warn_or_fail(
            policy.needs_hardware_virtualization,
            f"a VM under {label}, on {facts.arch.label}, which has no KVM at all (see cpu.arch)",
            "Use a machine whose architecture KVM supports (see cpu.arch).",
            evidence,
        )
    cpu = facts.cpu
    if cpu.error is not None:
        return unreadable("whether nested virtualization is exposed", "/proc/cpuinfo", cpu.error, evidence)
    extension, exposed, fix = _nested_exposure(facts, info)
    evidence["nested_exposed"] = exposed
    if exposed is None:
        return errored(
            f"a VM under {label}; whether it exposes {extension} to its guests cannot be told: on "
            f"{facts.arch.label} cpuinfo never shows it, and {' and '.join(_unread_kvm_sources(facts))} could not be read",
            evidence,
        )
    if exposed:
        return warned(
            f"a VM under {label} with {extension} exposed: guests run nested, expect slower I/O and exits",
            "For full speed run on bare metal; here, give this VM dedicated CPUs and enough memory.",
            evidence,
        )
    if facts.modules.has("kvm_pvm"):
        detail = f"KVM works here through kvm_pvm: {advice.PVM_GUESTS}."
    else:
        detail = ""
    return warn_or_fail(
        policy.needs_hardware_virtualization,
        f"a VM under {label} that does not expose {extension} to its guests",
        advice.sentence(fix),
        evidence,
        detail=detail,
    )


def _no_hypervisor_found(facts: Facts, info: HypervisorInfo, evidence: Dict[str, Any]) -> Outcome:
    """Bare metal only on evidence: finding nothing in sources that could not be read proves nothing."""
    cpu = facts.cpu
    unread = "; ".join(info.unreadable)
    if cpu.error is not None:
        also = f", nor could {unread}" if unread else ""
        return unreadable(f"whether this is a VM (no other source names a hypervisor{also})", "/proc/cpuinfo", cpu.error, evidence)
    arch = facts.arch
    if arch.family is None:
        return errored("cannot tell whether this is a VM: the architecture is unknown (see cpu.arch), and with it where "
                       "a hypervisor would show", evidence)
    if arch.is_x86 and cpu.flag_lines == 0:
        return errored("cannot tell whether this is a VM: /proc/cpuinfo has no flags line, where x86 shows the hypervisor flag", evidence)
    if arch.family == "s390":  # only machines from before the z990 could run without PR/SM
        evidence["cpuinfo_lines"] = [line for line in (cpu.line("vendor_id"), cpu.line("processor 0")) if line]
        return warned(
            "no hypervisor found, but on IBM Z that proves nothing: this machine type could also run in an LPAR "
            "or under z/VM, and /proc/sysinfo, which would tell, is not here",
            "Read /proc/sysinfo on the machine.",
            evidence,
        )
    if not info.platform_seen and not info.bare_metal_shown:
        # cpuinfo is a weak witness: off x86 it rarely names a hypervisor, and not every x86 hypervisor sets the
        # hypervisor flag (older VirtualBox does not); the platform's own description (DMI, device tree) would.
        return warned(
            "no hypervisor found, but neither DMI (/sys/class/dmi) nor a device tree (/proc/device-tree) could be read, "
            "where a VM's platform names its hypervisor: this may still be a VM",
            "Run kvmready on the machine itself, or capture it with `kvmready snapshot`.",
            evidence,
        )
    if unread:
        return warned(
            f"no hypervisor found, but {unread}: this may still be a VM",
            "Run kvmready as root, or capture the host with `kvmready snapshot` as root.",
            evidence,
        )
    return passed("no hypervisor found: this is bare metal", evidence)


def _nested_exposure(facts: Facts, info: HypervisorInfo) -> Tuple[str, Optional[bool], str]:
    """(the extension's name on this architecture, whether this VM sees it or None when nothing here tells,
    how to expose it)."""
    arch = facts.arch
    virtualization = facts.cpu.virtualization
    if arch.family == "s390":
        return "SIE", virtualization == "sie", advice.S390_NESTED
    if not arch.known_not_x86:
        exposed = virtualization in ("vt-x", "amd-v") and not info.paravirtual_xen
        return "VT-x/AMD-V", exposed, advice.expose_nested(info.name, info.vendor)
    return "hardware virtualization", _kvm_present(facts), advice.GENERIC_NESTED


def _kvm_present(facts: Facts) -> Optional[bool]:
    """Where cpuinfo shows no virtualization flag, KVM being present is the evidence, and its absence only
    where the module list and /dev were both read (arm64 registers /dev/kvm only when it booted at EL2)."""
    if facts.kvm_module is not None or facts.devices.get(KVM_DEVICE).present:
        return True
    return None if _unread_kvm_sources(facts) else False


def _unread_kvm_sources(facts: Facts) -> List[str]:
    unread = [] if facts.modules.known else ["the module list"]
    if facts.devices.get(KVM_DEVICE).error is not None or facts.dev_uncaptured:
        unread.append(KVM_DEVICE)
    return unread


def check_distribution(facts: Facts, policy: Policy) -> Outcome:
    info = facts.os
    evidence = info.evidence()
    if info.error:
        return errored(f"cannot tell the distribution: {info.error}", evidence)
    label = info.name or f"{info.id} {info.version_id or ''}".strip()
    if policy.target is not Target.WORKSTATION:
        return passed(f"{label}: any distribution with a KVM-enabled kernel works", evidence)
    versions = WORKSTATION_HOST_OSES.get(info.id or "")
    evidence["supported_hosts"] = {os_id: list(v) for os_id, v in WORKSTATION_HOST_OSES.items()}
    evidence["supported_hosts_source"] = WORKSTATION_HOST_OSES_SOURCE
    if versions is None:
        related = [like for like in info.id_like if like in WORKSTATION_HOST_OSES]
        based = f" (it is based on {', '.join(related)})" if related else ""
        return warned(
            f"{label} is not on the list of Workstation host systems{based}; Workstation may still run",
            "Expect to build and test on your own; the supported hosts are "
            + ", ".join(sorted(WORKSTATION_HOST_OSES)) + ".",
            evidence,
        )
    version = info.version_id or ""
    if any(version == listed or version.startswith(listed + ".") for listed in versions):
        return passed(f"{label} is a listed Workstation host", evidence)
    return warned(
        f"{label}: version {version or 'unknown'} is not a listed Workstation host (listed: {', '.join(versions)})",
        f"Prefer a listed release of {info.id}: {', '.join(versions)}.",
        evidence,
    )



HYPERVISOR = CheckSpec(
    "host.hypervisor", "Nested: the hypervisor this host runs under", "host", check_hypervisor,
    what="Whether this host is itself a VM (DMI, /sys/hypervisor, /proc/xen, /proc/sysinfo, the device tree, the cpuinfo "
    "hypervisor flag, virtual CPU models and partition platforms, clocksource, virtual PCI devices), which hypervisor and "
    "vendor, and whether it exposes VT-x/AMD-V. Bare metal only on evidence.",
    why="Inside a VM, KVM needs the outer hypervisor to expose nested virtualization, and guests run slower.",
    fix="Expose nested virtualization in the outer hypervisor, or run on bare metal.",
    sources=(
        "systemd-detect-virt (src/basic/virt.c) and virt-what: DMI vendors, CPUID signatures, /sys/hypervisor, "
        "/proc/xen, the device tree",
        "Intel SDM / AMD APM: CPUID.1:ECX bit 31 (hypervisor present) and the vendor signature at leaf "
        "0x40000000",
        "Documentation/virt/kvm/x86/running-nested-guests.rst: exposing VT-x/AMD-V to a guest (-cpu host, "
        "nested=1)",
    ),
)


DISTRIBUTION = CheckSpec(
    "host.distribution", "Host distribution", "host", check_distribution,
    what="The distribution from /etc/os-release, compared with the host systems VMware lists for Workstation.",
    why="Outside the list Workstation may work, but VMware does not test it.",
    fix="Use a listed distribution release for a supported setup.",
    sources=(
        "Broadcom KB 80807: the host operating systems supported by Workstation 17.x (Ubuntu, RHEL, CentOS, "
        "Oracle Linux, openSUSE, SLES); Workstation 25H2 release notes (Fedora 42 and RHEL 10 hosts)",
        "os-release(5): /etc/os-release, else /usr/lib/os-release",
    ),
)
