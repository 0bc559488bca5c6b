"""What every check module shares: the spec, outcome shorthands, the threshold ladder, byte formats."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Optional, Tuple, TypeVar

from kvmready.model import Outcome, Status, Version

if TYPE_CHECKING:
    from kvmready.facts import Facts
    from kvmready.targets import Policy

# A check: a pure function of the host's facts and the target's policy.
CheckFn = Callable[["Facts", "Policy"], Outcome]
Evidence = Optional[Mapping[str, Any]]


class CheckSpec(NamedTuple):
    """A check: stable id, its help (shown by `kvmready explain`) and the function."""

    id: str
    title: str
    category: str
    run: CheckFn
    what: str  # what it checks
    why: str  # why it matters
    fix: str  # how to fix it, in general
    live: bool = False  # needs the machine itself: skipped for --root trees
    sources: Tuple[str, ...] = ()  # where its figures and claims come from (`kvmready explain` shows them)


def passed(summary: str, evidence: Evidence = None, detail: str = "") -> Outcome:
    return Outcome(Status.PASS, summary, detail, None, dict(evidence or {}))


def warned(summary: str, remediation: Optional[str], evidence: Evidence = None, detail: str = "") -> Outcome:
    return Outcome(Status.WARN, summary, detail, remediation, dict(evidence or {}))


def failed(summary: str, remediation: Optional[str], evidence: Evidence = None, detail: str = "") -> Outcome:
    return Outcome(Status.FAIL, summary, detail, remediation, dict(evidence or {}))


def skipped(summary: str, evidence: Evidence = None, detail: str = "", *, undecided: bool = False) -> Outcome:
    """Not applicable here; or, `undecided`, not observable here (see Outcome.undecided)."""
    return Outcome(Status.SKIP, summary, detail, None, dict(evidence or {}), undecided=undecided)


def errored(summary: str, evidence: Evidence = None, detail: str = "", remediation: Optional[str] = None) -> Outcome:
    return Outcome(Status.ERROR, summary, detail, remediation, dict(evidence or {}))


def unreadable(what: str, path: str, reason: str, evidence: Evidence = None) -> Outcome:
    """The input a check needs could not be read: the check cannot be decided."""
    data = {"source": path, "error": reason}
    data.update(evidence or {})
    problem = "does not exist" if "ENOENT" in reason else f"is unreadable ({reason})"
    return errored(f"cannot tell {what}: {path} {problem}", data)


def warn_or_fail(must: bool, summary: str, remediation: Optional[str], evidence: Evidence = None, detail: str = "") -> Outcome:
    """Fail where the target needs the thing, warn where it only helps."""
    status = Status.FAIL if must else Status.WARN
    return Outcome(status, summary, detail, remediation, dict(evidence or {}))


Measure = TypeVar("Measure", int, Version)  # a count or size, or a kernel version


def threshold_outcome(
    value: Measure,
    minimum: Measure,
    recommended: Measure,
    evidence: Evidence,
    *,
    below_minimum: Tuple[str, str],
    below_recommended: Tuple[str, str],
    enough: str,
) -> Outcome:
    """The ladder every threshold uses: below the minimum fails, below the recommendation warns, else passes.

    `below_minimum` and `below_recommended` are (summary, remediation).
    """
    if value < minimum:
        return failed(*below_minimum, evidence)
    if value < recommended:
        return warned(*below_recommended, evidence)
    return passed(enough, evidence)


def x86_only(facts: Facts, what: str) -> Optional[Outcome]:
    """None on x86; otherwise the outcome of an x86-only check elsewhere (`what`: why it is x86-only)."""
    arch = facts.arch
    if arch.is_x86:
        return None
    if not arch.known_not_x86:
        return errored("cannot tell whether this applies: the architecture is unknown (see cpu.arch)", arch.evidence())
    return skipped(f"not applicable on {arch.label or 'a machine that is not x86'}{what}", arch.evidence())


def gib(value: Optional[int]) -> str:
    if value is None:
        return "unknown"
    return f"{value / 1024 ** 3:.1f} GiB"
