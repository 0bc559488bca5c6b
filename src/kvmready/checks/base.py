"""What every check module shares: the spec, outcome shorthands, byte formats."""

from typing import Any, Callable, Mapping, NamedTuple, Optional

from kvmready.model import Outcome, Status


class CheckSpec(NamedTuple):
    """A check: stable id, its help (shown by `kvmready explain`) and the function."""

    id: str
    title: str
    category: str
    run: Callable[..., Outcome]  # (facts, policy) -> Outcome
    what: str  # what it checks
    why: str  # why it matters
    fix: str  # how to fix it, in general
    live: bool = False  # needs the machine itself: skipped for --root trees


def passed(summary: str, evidence: Optional[Mapping[str, Any]] = None, detail: str = "") -> Outcome:
    return Outcome(Status.PASS, summary, detail, None, dict(evidence or {}))


def warned(summary: str, remediation: Optional[str], evidence: Optional[Mapping[str, Any]] = None, detail: str = "") -> Outcome:
    return Outcome(Status.WARN, summary, detail, remediation, dict(evidence or {}))


def failed(summary: str, remediation: Optional[str], evidence: Optional[Mapping[str, Any]] = None, detail: str = "") -> Outcome:
    return Outcome(Status.FAIL, summary, detail, remediation, dict(evidence or {}))


def skipped(summary: str, evidence: Optional[Mapping[str, Any]] = None, detail: str = "") -> Outcome:
    return Outcome(Status.SKIP, summary, detail, None, dict(evidence or {}))


def errored(summary: str, evidence: Optional[Mapping[str, Any]] = None, detail: str = "", remediation: Optional[str] = None) -> Outcome:
    return Outcome(Status.ERROR, summary, detail, remediation, dict(evidence or {}))


def unreadable(what: str, path: str, reason: str, evidence: Optional[Mapping[str, Any]] = None) -> Outcome:
    """The input a check needs could not be read: the check cannot be decided."""
    data = {"source": path, "error": reason}
    data.update(evidence or {})
    problem = "does not exist" if "ENOENT" in reason else f"is unreadable ({reason})"
    return errored(f"cannot tell {what}: {path} {problem}", data)


def warn_or_fail(must: bool, summary: str, remediation: Optional[str], evidence=None, detail: str = "") -> Outcome:
    """Fail where the target needs the thing, warn where it only helps."""
    status = Status.FAIL if must else Status.WARN
    return Outcome(status, summary, detail, remediation, dict(evidence or {}))


def gib(value: Optional[int]) -> str:
    if value is None:
        return "unknown"
    return f"{value / 1024 ** 3:.1f} GiB"
