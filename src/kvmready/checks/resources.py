"""Resources: logical CPUs, memory, free disk where VMs live."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvmready.checks.base import (
    CheckSpec,
    errored,
    gib,
    passed,
    threshold_outcome,
    unreadable,
    warned,
)
from kvmready.facts.cpuinfo import CPUINFO
from kvmready.facts.memory import MEMINFO
from kvmready.model import Outcome

if TYPE_CHECKING:
    from kvmready.facts import Facts
    from kvmready.targets import Policy



def check_cpus(facts: Facts, policy: Policy) -> Outcome:
    cpu = facts.cpu
    if cpu.error is not None:
        return unreadable("the number of CPUs", CPUINFO, cpu.error)
    count = cpu.logical_cpus
    evidence = {"source": CPUINFO, "logical_cpus": count, "minimum": policy.min_cpus, "recommended": policy.recommended_cpus}
    if count is None:
        return errored("cannot count CPUs: /proc/cpuinfo has no processor entries", evidence)
    cpus = f"{count} logical CPU{'s' if count != 1 else ''}"
    return threshold_outcome(
        count, policy.min_cpus, policy.recommended_cpus, evidence,
        below_minimum=(f"{cpus}; at least {policy.min_cpus} needed (one for the host, one for a guest)", "Give the machine (or this VM) more CPUs."),
        below_recommended=(f"{cpus}; {policy.recommended_cpus}+ recommended (a VM with N vCPUs wants N logical CPUs)", "Add CPUs, or give guests fewer vCPUs than the host has."),
        enough=f"{count} logical CPUs",
    )


def check_memory(facts: Facts, policy: Policy) -> Outcome:
    memory = facts.memory
    total = memory.total_bytes
    if memory.error or total is None:
        return unreadable("the memory size", MEMINFO, memory.error or "no MemTotal")
    evidence = memory.evidence()
    evidence.update(minimum_bytes=policy.min_memory_bytes, recommended_bytes=policy.recommended_memory_bytes, thresholds_source=policy.memory_source)
    return threshold_outcome(
        total, policy.min_memory_bytes, policy.recommended_memory_bytes, evidence,
        below_minimum=(f"{gib(total)} of memory; at least {gib(policy.min_memory_bytes)} needed", "Add memory: every running VM needs its guest memory on top of what the host uses."),
        below_recommended=(f"{gib(total)} of memory; {gib(policy.recommended_memory_bytes)} recommended", "Add memory, or give guests small memory sizes."),
        enough=f"{gib(total)} of memory",
    )


def check_disk(facts: Facts, policy: Policy) -> Outcome:
    usage = facts.require_live().disk
    if usage is None:
        return errored("the VM folder was not measured")
    evidence = usage.to_dict()
    evidence["recommended_free_bytes"] = policy.recommended_free_disk_bytes
    if usage.error or usage.free_bytes is None:
        return errored(f"cannot measure free space at {usage.measured_at}: {usage.error}", evidence)
    where = usage.path if usage.measured_at == usage.path else f"{usage.path} (not created yet; measured {usage.measured_at})"
    if usage.free_bytes < policy.recommended_free_disk_bytes:
        return warned(
            f"{gib(usage.free_bytes)} free for VMs at {where}; {gib(policy.recommended_free_disk_bytes)} recommended",
            "Free space there, or keep VMs on a larger file system (`--vm-dir` checks another place).",
            evidence,
        )
    return passed(f"{gib(usage.free_bytes)} free for VMs at {where}", evidence)



CPUS = CheckSpec(
    "resources.cpus", "Logical CPUs", "resources", check_cpus,
    what="The number of logical CPUs in /proc/cpuinfo against the target's minimum and recommendation.",
    why="The host needs a CPU of its own beside each guest vCPU.",
    fix="More CPUs for the machine or VM.",
)


MEMORY = CheckSpec(
    "resources.memory", "Memory", "resources", check_memory,
    what="MemTotal from /proc/meminfo against the target's minimum and recommendation (Workstation: 4 GiB needed, 8 GiB recommended).",
    why="Each running guest needs its memory on top of the host's own.",
    fix="More memory.",
)


DISK = CheckSpec(
    "resources.disk", "Free disk for VMs", "resources", check_disk, live=True,
    what="Free space on the file system that holds --vm-dir (default ~/vmware; its nearest existing parent when it does not exist yet).",
    why="A desktop guest takes tens of GiB.",
    fix="Free space, or put VMs elsewhere.",
)
