"""Run the selected checks over the facts and decide the verdict.

One broken check never stops the run: its exception becomes an `error`
result with the message, and every other check still runs.
"""

from __future__ import annotations

import datetime
import fnmatch
from typing import Iterable, List, Optional, Sequence

from kvmready import __version__
from kvmready.checks import PRIORITY, REGISTRY
from kvmready.checks.base import CheckSpec
from kvmready.facts import Facts
from kvmready.model import (
    CheckResult,
    ExitCode,
    Outcome,
    Report,
    Severity,
    Status,
    Target,
    Verdict,
)
from kvmready.targets import Policy
from kvmready.targets import policy as policy_for


class SelectionError(ValueError):
    """--only/--skip named something that matches no check."""


def select(only: Sequence[str] = (), skip: Sequence[str] = ()) -> List[CheckSpec]:
    """Checks by exact id, category (`kvm`) or glob (`kvm.*`), in priority order."""
    chosen = [check_id for check_id in PRIORITY if not only or _matches_any(check_id, only, "--only")]
    excluded = {check_id for check_id in PRIORITY if skip and _matches_any(check_id, skip, "--skip")}
    _reject_unknown(only, "--only")
    _reject_unknown(skip, "--skip")
    return [REGISTRY[check_id] for check_id in chosen if check_id not in excluded]


def _matches(check_id: str, pattern: str) -> bool:
    return check_id == pattern or check_id.split(".", 1)[0] == pattern or fnmatch.fnmatchcase(check_id, pattern)


def _matches_any(check_id: str, patterns: Iterable[str], option: str) -> bool:
    return any(_matches(check_id, pattern) for pattern in patterns)


def _reject_unknown(patterns: Iterable[str], option: str) -> None:
    for pattern in patterns:
        if not any(_matches(check_id, pattern) for check_id in PRIORITY):
            raise SelectionError(f"{option} {pattern!r} matches no check; `kvmready list` shows the ids")


def run_check(spec: CheckSpec, facts: Facts, policy: Policy) -> CheckResult:
    outcome = _outcome(spec, facts, policy)
    evidence = dict(outcome.evidence)
    captured_at = facts.captured_live.captured_at if facts.captured_live is not None else None
    if spec.live and captured_at and outcome.status is not Status.SKIP:
        evidence["captured_at"] = captured_at
    return CheckResult(
        id=spec.id,
        title=spec.title,
        category=spec.category,
        severity=policy.severity(spec.id),
        status=outcome.status,
        summary=outcome.summary,
        detail=outcome.detail,
        remediation=outcome.remediation,
        evidence=evidence,
    )


def _outcome(spec: CheckSpec, facts: Facts, policy: Policy) -> Outcome:
    try:
        if spec.live and facts.live is None:
            return Outcome(Status.SKIP, f"needs the machine itself: {facts.offline_reason}")
        return spec.run(facts, policy)
    except Exception as error:  # a crashing probe is this check's error, never the run's
        return Outcome(
            Status.ERROR,
            f"the probe failed: {type(error).__name__}: {error}",
            evidence={"exception": type(error).__name__, "message": str(error)},
        )


def run(facts: Facts, target: Target, only: Sequence[str] = (), skip: Sequence[str] = ()) -> List[CheckResult]:
    policy = policy_for(target)
    return [run_check(spec, facts, policy) for spec in select(only, skip)]


def verdict_of(results: Sequence[CheckResult]) -> Verdict:
    required = [r for r in results if r.severity is Severity.REQUIRED]
    if any(r.status is Status.FAIL for r in required):
        return Verdict.NOT_READY
    if any(r.status is Status.ERROR for r in required):
        return Verdict.INDETERMINATE
    if any(_is_warning(r) for r in results):
        return Verdict.READY_WITH_WARNINGS
    return Verdict.READY


def _is_warning(result: CheckResult) -> bool:
    if result.severity is Severity.INFO:
        return False
    if result.severity is Severity.REQUIRED:
        return result.status is Status.WARN
    return result.status in (Status.WARN, Status.FAIL, Status.ERROR)


def reasons_of(results: Sequence[CheckResult], verdict: Verdict) -> List[str]:
    """The checks behind the verdict, most important first."""
    if verdict is Verdict.NOT_READY:
        decisive = [r for r in results if r.severity is Severity.REQUIRED and r.status is Status.FAIL]
        decisive += [r for r in results if r.severity is Severity.REQUIRED and r.status is Status.ERROR]
        decisive += [r for r in results if _is_warning(r)]
    elif verdict is Verdict.INDETERMINATE:
        decisive = [r for r in results if r.severity is Severity.REQUIRED and r.status is Status.ERROR]
        decisive += [r for r in results if _is_warning(r)]
    else:
        decisive = [r for r in results if _is_warning(r)]
    order = {check_id: index for index, check_id in enumerate(PRIORITY)}
    blocking = {Status.FAIL: 0, Status.ERROR: 1}
    return [r.id for r in sorted(decisive, key=lambda r: (r.severity is not Severity.REQUIRED, blocking.get(r.status, 2), order[r.id]))]


def exit_code_of(verdict: Verdict, strict: bool = False, exit_zero: bool = False) -> int:
    if exit_zero:
        return ExitCode.READY
    code = {
        Verdict.READY: ExitCode.READY,
        Verdict.READY_WITH_WARNINGS: ExitCode.NOT_READY if strict else ExitCode.READY,
        Verdict.NOT_READY: ExitCode.NOT_READY,
        Verdict.INDETERMINATE: ExitCode.INDETERMINATE,
    }[verdict]
    return int(code)


def build_report(
    facts: Facts,
    target: Target,
    results: Sequence[CheckResult],
    *,
    strict: bool = False,
    exit_zero: bool = False,
    now: Optional[datetime.datetime] = None,
) -> Report:
    from kvmready.summary import host_summary

    verdict = verdict_of(results)
    moment = now or datetime.datetime.now(datetime.timezone.utc)
    return Report(
        tool_version=__version__,
        target=target,
        verdict=verdict,
        exit_code=exit_code_of(verdict, strict, exit_zero),
        host=host_summary(facts),
        checks=tuple(sorted(results, key=lambda r: r.id)),
        reasons=tuple(reasons_of(results, verdict)),
        generated_at=moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        strict=strict,
    )
