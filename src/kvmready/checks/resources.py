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
from kvmready.targets import MEMTOTAL_SHARE, memtotal_for

if TYPE_CHECKING:
    from kvmready.facts import Facts
    from kvmready.targets import Policy



def check_cpus(facts: Facts, policy: Policy) -> Outcome:
    cpu = facts.cpu
    if cpu.error is not None:
        return unreadable("the number of CPUs", CPUINFO, cpu.error)
    count = cpu.logical_cpus
    evidence = {"source": CPUINFO, "logical_cpus": count, "minimum": policy.min_cpus, "recommended": policy.recommended_cpus,
                "thresholds_source": policy.cpus_source}
    if count is None:
        return errored("cannot count CPUs: /proc/cpuinfo has no processor entries", evidence)
    cpus = f"{count} logical CPU{'s' if count != 1 else ''}"
    return threshold_outcome(
        count, policy.min_cpus, policy.recommended_cpus, evidence,
        below_minimum=(f"{cpus}; at least {policy.min_cpus} needed", "Give the machine (or this VM) more CPUs."),
        below_recommended=(f"{cpus}; {policy.recommended_cpus}+ recommended: a VM gets more than one virtual CPU only on a "
                           "host with at least two", "Add CPUs, or give guests one vCPU."),
        enough=cpus,
    )


def check_memory(facts: Facts, policy: Policy) -> Outcome:
    memory = facts.memory
    total = memory.total_bytes
    if memory.error or total is None:
        return unreadable("the memory size", MEMINFO, memory.error or "no MemTotal")
    minimum, recommended = memtotal_for(policy.min_memory_bytes), memtotal_for(policy.recommended_memory_bytes)
    evidence = memory.evidence()
    evidence.update(
        minimum_installed_bytes=policy.min_memory_bytes, recommended_installed_bytes=policy.recommended_memory_bytes,
        minimum_memtotal_bytes=minimum, recommended_memtotal_bytes=recommended, memtotal_share=MEMTOTAL_SHARE,
        thresholds_source=policy.memory_source,
    )
    shown = f"{gib(total)} of memory (MemTotal)"
    return threshold_outcome(
        total, minimum, recommended, evidence,
        below_minimum=(f"{shown}: less than a machine with {gib(policy.min_memory_bytes)} installed, the minimum",
                       "Add memory: every running VM needs its guest memory on top of what the host uses."),
        below_recommended=(f"{shown}: less than a machine with {gib(policy.recommended_memory_bytes)} installed, as recommended",
                           "Add memory, or give guests small memory sizes."),
        enough=f"{shown}: as much as a machine with {gib(policy.recommended_memory_bytes)} installed shows, as recommended",
    )


def check_disk(facts: Facts, policy: Policy) -> Outcome:
    usage = facts.require_live().disk
    if usage is None:
        return errored("the VM folder was not measured")
    evidence = usage.to_dict()
    evidence["recommended_free_bytes"] = policy.recommended_free_disk_bytes
    if usage.error or usage.free_bytes is None:
        # A failed measurement has no measured_at: name the folder asked about, never "at None".
        return errored(f"cannot measure free space at {usage.measured_at or usage.path}: {usage.error}", evidence)
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
    what="The number of logical CPUs in /proc/cpuinfo against the target's minimum and recommendation "
    "(Workstation: 1 needed, 2 recommended).",
    why="A VM gets more than one virtual CPU only on a host with at least two logical processors, and the host "
    "needs CPU time of its own.",
    fix="More CPUs for the machine or VM.",
    sources=(
        "VMware Workstation host requirements: 64-bit x86 CPU, 1.3 GHz or faster, multiprocessor systems supported",
        "VMware Workstation/Player \"Virtual Machine Processor Support\": one virtual processor on a host with one or "
        "more logical processors, more only on a host with at least two",
    ),
)


MEMORY = CheckSpec(
    "resources.memory", "Memory", "resources", check_memory,
    what="MemTotal from /proc/meminfo against the target's minimum and recommendation of installed memory "
    "(Workstation: 2 GiB needed, 4 GiB recommended). MemTotal is a little less than what is installed (a 4 GiB "
    "machine shows 3.7-3.9 GiB), so a machine meets N GiB when MemTotal is at least 90% of N.",
    why="Each running guest needs its memory on top of the host's own.",
    fix="More memory.",
    sources=("VMware Workstation 16.x/17.x host requirements: 2 GB of memory minimum, 4 GB or more recommended",),
)


DISK = CheckSpec(
    "resources.disk", "Free disk for VMs", "resources", check_disk, live=True,
    what="Free space on the file system that holds --vm-dir (default ~/vmware; its nearest existing parent when it does not exist yet).",
    why="A desktop guest takes tens of GiB.",
    fix="Free space, or put VMs elsewhere.",
    sources=(
        "VMware Workstation 16.x/17.x host requirements: 1.2 GB of disk for the application, plus each VM's "
        "disk",
    ),
)
