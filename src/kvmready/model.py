"""The result model: statuses, severities, check results and the report.

Frozen dataclasses and str enums, so results compare, sort and serialise
deterministically.
"""

import enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

if TYPE_CHECKING:
    import datetime

# A kernel (or any) version as (major, minor, patch).
Version = Tuple[int, int, int]

# Every time kvmready writes or reads: RFC 3339, UTC, whole seconds.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_timestamp(moment: "Optional[datetime.datetime]" = None) -> str:
    """`moment` (default: now) as TIMESTAMP_FORMAT in UTC."""
    import datetime

    moment = moment or datetime.datetime.now(datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).strftime(TIMESTAMP_FORMAT)


def tool_info(version: str) -> Dict[str, str]:
    """The `tool` object of every document kvmready writes (report, fleet summary, snapshot manifest)."""
    return {"name": "kvmready", "version": version}


def epoch_seconds(timestamp: str) -> int:
    """A TIMESTAMP_FORMAT string as Unix seconds; ValueError when it is not one."""
    import calendar
    import time

    return calendar.timegm(time.strptime(timestamp, TIMESTAMP_FORMAT))


class Status(str, enum.Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"  # not applicable or not possible here; the summary says why
    ERROR = "error"  # the probe broke or its input could not be read

    def __str__(self) -> str:
        return self.value


class Severity(str, enum.Enum):
    REQUIRED = "required"
    RECOMMENDED = "recommended"
    INFO = "info"

    def __str__(self) -> str:
        return self.value


class Target(str, enum.Enum):
    WORKSTATION = "workstation"  # a KVM-backed VMware Workstation
    KVM = "kvm"  # any KVM user: QEMU/libvirt, Firecracker, Android emulator

    def __str__(self) -> str:
        return self.value


class Verdict(str, enum.Enum):
    READY = "ready"
    READY_WITH_WARNINGS = "ready_with_warnings"
    NOT_READY = "not_ready"
    INDETERMINATE = "indeterminate"

    def __str__(self) -> str:
        return self.value

    @property
    def is_ready(self) -> bool:
        """Ready for the target, with or without warnings."""
        return self in (Verdict.READY, Verdict.READY_WITH_WARNINGS)


class ExitCode(enum.IntEnum):
    READY = 0
    NOT_READY = 1
    USAGE = 2
    INDETERMINATE = 3
    INTERRUPTED = 130


DEFAULT_VM_DIR = "~/vmware"  # where VMs live unless --vm-dir says otherwise

STATUS_ORDER = (Status.PASS, Status.WARN, Status.FAIL, Status.SKIP, Status.ERROR)


class Outcome(NamedTuple):
    """What a check function observed, before the registry adds id and severity."""

    status: Status
    summary: str
    detail: str = ""
    remediation: Optional[str] = None
    evidence: Mapping[str, Any] = MappingProxyType({})
    # A failure whose cause is that the world has not shipped something yet (no released kernel has
    # VMware's KVM support), not this host: see Report.waiting_on_upstream.
    waiting_on_upstream: bool = False
    # A skip because what decides the check could not be observed here (a --root tree has no live KVM, no /dev),
    # not because the check does not apply: a required one leaves the verdict `indeterminate`.
    undecided: bool = False


class CheckResult(NamedTuple):
    id: str
    title: str
    category: str
    severity: Severity
    status: Status
    summary: str
    detail: str
    remediation: Optional[str]
    evidence: Mapping[str, Any]
    rank: int = 0  # the check's place in the registry: the order a reader should see it in (not in the JSON)
    waiting_on_upstream: bool = False  # see Outcome
    undecided: bool = False  # see Outcome
    # Seconds the check took in this run, the facts it was first to read included (not in the JSON: see Report).
    duration: float = 0.0

    @property
    def is_warning(self) -> bool:
        """Whether this result makes the verdict `ready_with_warnings` (and `--strict` exit 1).

        A required check warns with `warn`; a recommended one with `warn`,
        `fail` or `error`; an info check never does.
        """
        if self.severity is Severity.INFO:
            return False
        if self.severity is Severity.REQUIRED:
            return self.status is Status.WARN
        return self.status in (Status.WARN, Status.FAIL, Status.ERROR)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "category": self.category,
            "severity": self.severity.value,
            "status": self.status.value,
            "summary": self.summary,
            "detail": self.detail,
            "remediation": self.remediation,
            "evidence": dict(self.evidence),
        }


def nothing_observed(results: Sequence["CheckResult"]) -> bool:
    """No check passed, warned or failed: every one skipped (`--only kvm.guest` on a --root tree) or broke.
    READY would claim what nobody looked at."""
    return bool(results) and all(r.status in (Status.SKIP, Status.ERROR) for r in results)


class Report(NamedTuple):
    tool_version: str
    target: Target
    verdict: Verdict
    exit_code: int
    host: Mapping[str, Any]
    checks: Tuple[CheckResult, ...]  # sorted by id
    reasons: Tuple[str, ...]  # ids of the checks that decide the verdict, most important first
    generated_at: str  # RFC 3339 UTC
    strict: bool = False
    categories: Tuple[str, ...] = ()  # category order for people (not in the JSON)
    # The required checks that fail only because upstream has not shipped something yet, when they are the
    # only failing required checks: "ready in every other respect".  Empty otherwise.
    waiting_on_upstream: Tuple[str, ...] = ()
    # Seconds the run took: every check (and the facts they read) plus the host summary.  Not in the
    # JSON, which describes the host and stays the same for the same input; JUnit's `time` attributes
    # and the Prometheus run-duration gauge carry it.
    duration: float = 0.0

    @property
    def summary(self) -> Dict[str, int]:
        counts = {status.value: 0 for status in STATUS_ORDER}
        for check in self.checks:
            counts[check.status.value] += 1
        return counts

    @property
    def undecided(self) -> Tuple[str, ...]:
        """The required checks that could not be observed here (see Outcome.undecided), in reading order."""
        return tuple(c.id for c in sorted(self.checks, key=lambda c: c.rank) if c.undecided and c.severity is Severity.REQUIRED)

    @property
    def observed_nothing(self) -> bool:
        return nothing_observed(self.checks)

    def check(self, check_id: str) -> CheckResult:
        for result in self.checks:
            if result.id == check_id:
                return result
        raise KeyError(check_id)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "schema_version": 1,
            "tool": tool_info(self.tool_version),
            "generated_at": self.generated_at,
            "target": self.target.value,
            "verdict": self.verdict.value,
            "exit_code": self.exit_code,
            "strict": self.strict,
            "reasons": list(self.reasons),
            "waiting_on_upstream": list(self.waiting_on_upstream),
            "host": dict(self.host),
            "summary": self.summary,
            "checks": [check.to_dict() for check in self.checks],
        }
