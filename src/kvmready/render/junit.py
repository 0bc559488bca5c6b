"""JUnit XML, as GitLab (`artifacts:reports:junit`) and Jenkins (`junit`) read it.

One `<testsuites>` with one `<testsuite>` (this host, this target) and one
`<testcase>` per check, in the report's order (sorted by id):

    <testcase name="kvm.device" classname="kvmready.<host>" time="0.000153">

The file is valid against junit-10.xsd, the schema Jenkins' xunit plugin
validates against and pytest writes to (tests/data/junit-10.xsd): so
`<testsuites>` carries tests, failures, errors and time but no `skipped`
(which only `<testsuite>` may carry).  `time` is in seconds: a testcase's is
how long its check took (the facts it was first to read included), the
suite's how long the run took.

The test report mirrors the exit code: a testcase fails exactly when its
check is one of the reasons `kvmready check` exits non-zero.

- a `required` check that ended in `fail` -> `<failure>`;
- a `required` check that ended in `error` -> `<error>`;
- `skip` (any severity) -> `<skipped>`;
- a warning (a `warn` of a required or recommended check, or a `fail` or
  `error` of a recommended one) passes, with the text in `<system-out>`;
  under `--strict` (where warnings exit 1) it is a `<failure>` (`<error>`
  for an `error`);
- everything else passes; `info` checks never fail the report, as they
  never change the verdict.

So, without `--exit-zero`, the report has failures or errors if and only if
the exit code is non-zero, and the CI test widget agrees with the job.
Each `<failure>`/`<error>` carries the check's summary as `message` and its
detail, remediation and evidence (JSON) as text.  Every string is stripped
of the characters XML 1.0 cannot carry (control characters, lone
surrogates), so any evidence text yields a well-formed file.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any, Optional

from kvmready.model import CheckResult, Report, Severity, Status, Verdict
from kvmready.render.common import dig

# XML 1.0 Char production; everything else (NUL, ESC, lone surrogates, U+FFFE/FFFF) is dropped.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Jenkins splits classname at the last dot into package and class: keep the host one segment.
_NOT_CLASS_SEGMENT = re.compile(r"[^A-Za-z0-9_-]")

UNKNOWN_HOST = "unknown"


def xml_text(value: Any) -> str:
    """`value` as a string XML 1.0 can carry."""
    return _NOT_XML.sub("", str(value))


def host_name(report: Report) -> str:
    hostname = dig(report.host, "hostname")
    return xml_text(hostname) if hostname else UNKNOWN_HOST


def classname(report: Report) -> str:
    """`kvmready.<host>`, the host as one segment (dots and other characters become `_`)."""
    segment = _NOT_CLASS_SEGMENT.sub("_", host_name(report)) or UNKNOWN_HOST
    return f"kvmready.{segment}"


def outcome(check: CheckResult, strict: bool) -> Optional[str]:
    """`failure`, `error`, `skipped`, or None for a passing testcase."""
    if check.status is Status.SKIP:
        return "skipped"
    if check.is_warning and not strict:
        return None  # a warning passes, as it leaves the exit code 0
    if check.is_warning or check.severity is Severity.REQUIRED:
        return {Status.FAIL: "failure", Status.WARN: "failure", Status.ERROR: "error"}.get(check.status)
    return None


def _evidence(check: CheckResult) -> str:
    return json.dumps(dict(check.evidence), indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _body(check: CheckResult) -> str:
    """Detail, remediation and evidence: the text of a failure, an error or system-out."""
    parts = [f"{check.id}: {check.title} ({check.severity.value}, {check.status.value})", check.summary]
    if check.detail:
        parts.append(check.detail)
    if check.remediation:
        parts.append(f"Fix: {check.remediation}")
    parts.append(f"Evidence: {_evidence(check)}")
    return "\n\n".join(parts) + "\n"


def seconds(value: float) -> str:
    """A duration as JUnit's `time`: seconds, a plain decimal (no exponent) to the microsecond."""
    return f"{max(value, 0.0):.6f}"


def _testcase(parent: ET.Element, check: CheckResult, klass: str, strict: bool) -> Optional[str]:
    case = ET.SubElement(parent, "testcase", {"name": xml_text(check.id), "classname": klass, "time": seconds(check.duration)})
    kind = outcome(check, strict)
    if kind == "skipped":
        ET.SubElement(case, "skipped", {"message": xml_text(check.summary)})
    elif kind is not None:
        element = ET.SubElement(case, kind, {"message": xml_text(check.summary), "type": check.status.value})
        element.text = xml_text(_body(check))
    if kind is None:
        out = ET.SubElement(case, "system-out")
        prefix = "WARNING: " if check.is_warning else ""
        out.text = xml_text(prefix + _body(check))
    return kind


def _properties(parent: ET.Element, report: Report) -> None:
    values = [
        ("kvmready.version", report.tool_version),
        ("target", report.target.value),
        ("verdict", report.verdict.value),
        ("exit_code", str(report.exit_code)),
        ("strict", "true" if report.strict else "false"),
        ("reasons", ",".join(report.reasons)),
        ("generated_at", report.generated_at),
        ("hostname", dig(report.host, "hostname") or ""),
        ("kernel", dig(report.host, "kernel", "release") or ""),
    ]
    properties = ET.SubElement(parent, "properties")
    for name, value in values:
        ET.SubElement(properties, "property", {"name": name, "value": xml_text(value)})


def _verdict_case(parent: ET.Element, report: Report, klass: str) -> None:
    case = ET.SubElement(parent, "testcase", {"name": "verdict", "classname": klass, "time": seconds(0.0)})
    if report.observed_nothing:
        message = "nothing was checked: every selected check skipped or could not run"
    else:
        message = f"not decided here: {', '.join(report.undecided)} could not be observed"
    element = ET.SubElement(case, "error", {"message": message, "type": report.verdict.value})
    element.text = xml_text(f"{message} ({', '.join(report.reasons)}); the verdict is {report.verdict.value}, exit {report.exit_code}")


class JunitRenderer:
    def render(self, report: Report) -> str:
        return _render(report)


def _render(report: Report) -> str:
    klass = classname(report)
    host = host_name(report)
    root = ET.Element("testsuites", {"name": "kvmready"})
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": f"{klass} ({report.target.value})",
            "hostname": host,
            # Ant's JUnit schema: ISO 8601 without a zone (the report's time is UTC).
            "timestamp": report.generated_at.rstrip("Z"),
        },
    )
    _properties(suite, report)
    counts = {"failure": 0, "error": 0, "skipped": 0}
    for check in report.checks:
        kind = _testcase(suite, check, klass, report.strict)
        if kind is not None:
            counts[kind] += 1
    cases = len(report.checks)
    if report.verdict is Verdict.INDETERMINATE and not counts["failure"] + counts["error"]:
        # Nothing was observed, or a required check could not be (a --root tree runs no guest): the exit code
        # is 3, and a JUnit consumer must see red too.
        _verdict_case(suite, report, klass)
        counts["error"] += 1
        cases += 1
    tests = {"tests": str(cases), "failures": str(counts["failure"]), "errors": str(counts["error"])}
    elapsed = {"time": seconds(max(report.duration, sum(check.duration for check in report.checks)))}
    root.attrib.update({**tests, **elapsed})
    suite.attrib.update({**tests, "skipped": str(counts["skipped"]), **elapsed})  # junit-10.xsd: `skipped` on a testsuite only
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
