"""Run the selected checks over the facts and decide the verdict.

One broken check never stops the run: its exception becomes an `error`
result with the message, and every other check still runs.
"""

from __future__ import annotations

import datetime
import fnmatch
import time
from typing import Iterable, List, Optional, Sequence

from kvmready import __version__
from kvmready.checks import CATEGORY_ORDER, CHECKS, RANKS, Row
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
    nothing_observed,
    utc_timestamp,
)
from kvmready.targets import Policy
from kvmready.targets import policy as policy_for


class SelectionError(ValueError):
    """--only/--skip named something that matches no check."""


def select(only: Sequence[str] = (), skip: Sequence[str] = ()) -> List[Row]:
    """Checks by exact id, category (`kvm`) or glob (`kvm.*`), in registry order.

    A selector that is empty or matches no check, and a selection that leaves
    nothing to check, are errors: a verdict over zero checks would say
    `ready` after checking nothing.
    """
    _reject_unknown(only, "--only")
    _reject_unknown(skip, "--skip")
    chosen = [
        row
        for row in CHECKS
        if (not only or _matches_any(row.spec.id, only)) and not (skip and _matches_any(row.spec.id, skip))
    ]
    if not chosen:
        asked = " ".join([f"--only {','.join(only)}"] * bool(only) + [f"--skip {','.join(skip)}"] * bool(skip))
        raise SelectionError(f"{asked} leaves no check to run; `kvmready list` shows the ids")
    return chosen


def _matches(check_id: str, pattern: str) -> bool:
    return check_id == pattern or check_id.split(".", 1)[0] == pattern or fnmatch.fnmatchcase(check_id, pattern)


def _matches_any(check_id: str, patterns: Iterable[str]) -> bool:
    return any(_matches(check_id, pattern) for pattern in patterns)


def _reject_unknown(patterns: Iterable[str], option: str) -> None:
    for pattern in patterns:
        if not pattern:
            raise SelectionError(f"{option} got an empty name; give check ids, categories or globs, separated by commas")
        if not any(_matches(check_id, pattern) for check_id in RANKS):
            raise SelectionError(f"{option} {pattern!r} matches no check; `kvmready list` shows the ids")


def run_check(row: Row, facts: Facts, policy: Policy) -> CheckResult:
    spec = row.spec
    started = time.perf_counter()
    outcome = _outcome(row, facts, policy)
    duration = time.perf_counter() - started
    evidence = dict(outcome.evidence)
    captured_at = facts.captured_live.captured_at if facts.captured_live is not None else None
    if spec.live and captured_at and outcome.status is not Status.SKIP:
        evidence["captured_at"] = captured_at
    return CheckResult(
        id=spec.id,
        title=spec.title,
        category=spec.category,
        severity=row.severity(policy.target),
        status=outcome.status,
        summary=outcome.summary,
        detail=outcome.detail,
        remediation=outcome.remediation,
        evidence=evidence,
        rank=RANKS[spec.id],
        waiting_on_upstream=outcome.waiting_on_upstream and outcome.status is Status.FAIL,
        undecided=outcome.undecided and outcome.status is Status.SKIP,
        duration=duration,
    )


def _outcome(row: Row, facts: Facts, policy: Policy) -> Outcome:
    try:
        if row.spec.live and facts.live is None:
            return Outcome(Status.SKIP, f"needs the machine itself: {facts.offline_reason}", undecided=True)
        return row.spec.run(facts, policy)
    except Exception as error:  # a crashing probe is this check's error, never the run's
        return Outcome(
            Status.ERROR,
            f"the probe failed: {type(error).__name__}: {error}",
            evidence={"exception": type(error).__name__, "message": str(error)},
        )


def run(facts: Facts, target: Target, only: Sequence[str] = (), skip: Sequence[str] = ()) -> List[CheckResult]:
    policy = policy_for(target)
    return [run_check(row, facts, policy) for row in select(only, skip)]


def verdict_of(results: Sequence[CheckResult]) -> Verdict:
    required = [r for r in results if r.severity is Severity.REQUIRED]
    if any(r.status is Status.FAIL for r in required):
        return Verdict.NOT_READY
    if any(r.status is Status.ERROR or r.undecided for r in required) or nothing_observed(results):
        return Verdict.INDETERMINATE
    if any(r.is_warning for r in results):
        return Verdict.READY_WITH_WARNINGS
    return Verdict.READY


def reasons_of(results: Sequence[CheckResult], verdict: Verdict) -> List[str]:
    """The checks behind the verdict, most important first."""
    required = [r for r in results if r.severity is Severity.REQUIRED]
    if verdict is Verdict.NOT_READY:
        decisive = [r for r in required if r.status is Status.FAIL]
        decisive += [r for r in required if r.status is Status.ERROR]
    elif verdict is Verdict.INDETERMINATE:
        decisive = [r for r in required if r.status is Status.ERROR or r.undecided] or list(results)  # nothing observed
    else:
        decisive = []
    decisive += [r for r in results if r.is_warning and r not in decisive]
    blocking = {Status.FAIL: 0, Status.ERROR: 1}
    ordered = sorted(decisive, key=lambda r: (r.severity is not Severity.REQUIRED, blocking.get(r.status, 2), r.rank))
    return [r.id for r in ordered]


def waiting_on_upstream_of(results: Sequence[CheckResult]) -> List[str]:
    """The required checks that fail only because upstream has not shipped something, when without them the
    verdict would be ready (with or without warnings): "ready in every other respect".  Else nothing."""
    waiting = [r for r in results if r.waiting_on_upstream and r.severity is Severity.REQUIRED]
    rest = [r for r in results if r not in waiting]
    if waiting and verdict_of(rest).is_ready:
        return [r.id for r in sorted(waiting, key=lambda r: r.rank)]
    return []


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

    started = time.perf_counter()
    host = host_summary(facts)
    duration = time.perf_counter() - started + sum(result.duration for result in results)
    verdict = verdict_of(results)
    return Report(
        tool_version=__version__,
        target=target,
        verdict=verdict,
        exit_code=exit_code_of(verdict, strict, exit_zero),
        host=host,
        checks=tuple(sorted(results, key=lambda r: r.id)),
        reasons=tuple(reasons_of(results, verdict)),
        generated_at=utc_timestamp(now),
        strict=strict,
        categories=CATEGORY_ORDER,
        waiting_on_upstream=tuple(waiting_on_upstream_of(results)),
        duration=duration,
    )
