"""Every output format, rendered from one set of reports (pip-audit style).

The reports: synthetic ones built straight from the model (every status at
every severity, hostile text in every field, an empty host), the pipeline on
every captured host under tests/fixtures/hosts, and the pipeline on built
trees with the fake live system (ready hosts, a real guest run).  Every
OutputFormat member renders every one of them; then each machine format is
held to its consumer's rules:

- JUnit XML valid against junit-10.xsd (Jenkins' xunit plugin's schema,
  tests/data/), then parsed with xml.etree: counts, one testcase per check,
  classname, per-check times, failure texts, and "failures or errors exactly
  when the exit code gates";
- Prometheus text parsed with prometheus_client's parser, plus the rules that
  parser lets through (one HELP/TYPE per metric, before its samples,
  contiguous groups, unique series, no timestamps, a final newline);
- NFD feature files: every line against the Kubernetes label rules (written
  out here from the documentation, not imported), under 64 KiB.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import pytest
import xmlschema
from fakes import FakeKvmBackend, FakeLiveSystem, guest_emulation_stop
from helpers import FIXED_NOW, GENERATED_AT, GOLDENS, UPDATE_GOLDENS, fixture_root, real_host_names, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families
from treebuilder import KVM_GID, amd_desktop, intel_desktop, kvm_guest, make_facts, pvm_host

from kvmready import runner
from kvmready.checks import CATEGORY_ORDER, RANKS
from kvmready.facts import Facts
from kvmready.host import DirectoryHost
from kvmready.model import CheckResult, Report, Severity, Status, Target, Verdict
from kvmready.render import OutputFormat, junit, nfd
from kvmready.render.nfd import NfdRenderer
from kvmready.schema import schema

FORMAT_GOLDENS = GOLDENS / "formats"
JUNIT_XSD = Path(__file__).resolve().parent / "data" / "junit-10.xsd"
TEST_VERSION = "0.0.0+test"
HOSTILE = 'q"uote\\back\nline\r\x00nul\x1bESC\x7f tab\t ünï 中 \U0001f600 \ud800 ]]> <&> ${x} %s'

# -- the reports ---------------------------------------------------------------

ALL_COMBOS: List[Tuple[Severity, Status]] = [(sev, status) for sev in Severity for status in Status]
# The golden files' reports use these ids, so that a new check in the registry leaves them alone.
GOLDEN_IDS = (
    "conflicts.virtualbox", "cpu.arch", "cpu.hardware-mmu", "cpu.virtualization", "devices.tun",
    "host.distribution", "host.hypervisor", "kernel.version", "kvm.access", "kvm.api",
    "kvm.device", "kvm.guest", "kvm.module", "kvm.nested", "resources.memory",
)


def make_check(check_id: str, severity: Severity, status: Status, **overrides) -> CheckResult:
    fields = dict(
        id=check_id,
        title=f"Title of {check_id}",
        category=check_id.split(".")[0],
        severity=severity,
        status=status,
        summary=f"{check_id} ended in {status.value}",
        detail=f"why {check_id} is {status.value}" if status is not Status.PASS else "",
        remediation=f"fix {check_id}" if status in (Status.FAIL, Status.WARN) else None,
        evidence={"status": status.value, "nested": {"list": [1, 2, None], "flag": True}},
        rank=RANKS.get(check_id, len(RANKS)),
        duration=0.000125 * (1 + len(check_id) % 7),  # distinct, stable times for the golden files
    )
    fields.update(overrides)
    return CheckResult(**fields)


def make_report(
    checks: List[CheckResult],
    *,
    target: Target = Target.WORKSTATION,
    strict: bool = False,
    exit_zero: bool = False,
    host: Optional[Mapping] = None,
    hostname: Optional[str] = "web-1.example.com",
) -> Report:
    """A report from the model, with the runner's own verdict, reasons and exit code."""
    verdict = runner.verdict_of(checks)
    return Report(
        tool_version=TEST_VERSION,
        target=target,
        verdict=verdict,
        exit_code=runner.exit_code_of(verdict, strict, exit_zero),
        host=dict(host) if host is not None else sample_host(hostname),
        checks=tuple(sorted(checks, key=lambda c: c.id)),
        reasons=tuple(runner.reasons_of(checks, verdict)),
        generated_at=GENERATED_AT,
        strict=strict,
        categories=CATEGORY_ORDER,
        duration=sum(check.duration for check in checks) + 0.0015,  # the run: the checks and the host summary
    )


def sample_host(hostname: Optional[str] = "web-1.example.com") -> dict:
    return {
        "hostname": hostname,
        "arch": "x86_64",
        "live": True,
        "source": "live",
        "kernel": {"release": "6.8.0-45-generic", "version": [6, 8, 0]},
        "os": {"id": "ubuntu", "version": "24.04", "name": "Ubuntu 24.04.1 LTS"},
        "cpu": {"vendor": "GenuineIntel", "model": "Intel(R) Core(TM) i7", "logical_cpus": 8, "virtualization": "vt-x"},
        "hypervisor": None,
        "container": None,
        "kvm": {"module": "kvm_intel", "device": True, "api_version": 12, "paravirtual": False},
        "memory_bytes": 16 * 1024**3,
    }


def empty_host() -> dict:
    return {
        "hostname": None,
        "arch": None,
        "live": False,
        "source": "root",
        "kernel": {"release": None, "version": None},
        "os": {"id": None, "version": None, "name": None},
        "cpu": {"vendor": None, "model": None, "logical_cpus": None, "virtualization": None},
        "hypervisor": None,
        "container": None,
        "kvm": {"module": None, "device": None, "api_version": None, "paravirtual": None},
        "memory_bytes": None,
    }


def all_pass(ids=GOLDEN_IDS) -> List[CheckResult]:
    return [make_check(check_id, Severity.REQUIRED, Status.PASS) for check_id in ids]


def with_statuses(assignments: Dict[str, Tuple[Severity, Status]], ids=None, overrides=None) -> List[CheckResult]:
    """Every registered check (or `ids`): passing and required unless assigned."""
    checks = []
    for check_id in sorted(RANKS) if ids is None else ids:
        severity, status = assignments.get(check_id, (Severity.REQUIRED, Status.PASS))
        checks.append(make_check(check_id, severity, status, **(overrides or {}).get(check_id, {})))
    return checks


def mixed_checks() -> List[CheckResult]:
    """Every (severity, status) pair once, on real check ids."""
    assert len(GOLDEN_IDS) == len(ALL_COMBOS) and set(GOLDEN_IDS) <= set(RANKS)
    return with_statuses(dict(zip(GOLDEN_IDS, ALL_COMBOS)), ids=GOLDEN_IDS)


def hostile_report() -> Report:
    host = sample_host(HOSTILE)
    host["kernel"] = {"release": HOSTILE, "version": [6, 8, 0]}
    host["os"] = {"id": HOSTILE, "version": HOSTILE, "name": HOSTILE}
    host["hypervisor"] = HOSTILE
    host["kvm"] = {"module": HOSTILE, "device": True, "api_version": 12, "paravirtual": False}
    host["container"] = HOSTILE
    host["cpu"] = dict(host["cpu"], model=HOSTILE, vendor=HOSTILE)
    text = dict(summary=HOSTILE, detail=HOSTILE, remediation=HOSTILE, title=HOSTILE,
                evidence={HOSTILE: HOSTILE, "bytes": "\x00\x01\x02\x1f", "list": [HOSTILE]})
    checks = with_statuses(dict(zip(GOLDEN_IDS, ALL_COMBOS)), ids=GOLDEN_IDS, overrides={i: text for i in GOLDEN_IDS})
    return make_report(checks, host=host)


def synthetic_reports() -> Dict[str, Report]:
    ids = sorted(RANKS)
    required_warn = {ids[0]: (Severity.REQUIRED, Status.WARN)}
    recommended_fail = {ids[1]: (Severity.RECOMMENDED, Status.FAIL), ids[2]: (Severity.RECOMMENDED, Status.ERROR)}
    return {
        "mixed": make_report(mixed_checks()),
        "mixed-strict": make_report(mixed_checks(), strict=True),
        "mixed-exit-zero": make_report(mixed_checks(), exit_zero=True),
        "ready": make_report(all_pass(), target=Target.KVM),
        "every-check-passes": make_report(all_pass(sorted(RANKS))),
        "warnings": make_report(with_statuses({**required_warn, **recommended_fail})),
        "warnings-strict": make_report(with_statuses({**required_warn, **recommended_fail}), strict=True),
        "info-only-failures": make_report(with_statuses({ids[3]: (Severity.INFO, Status.FAIL), ids[4]: (Severity.INFO, Status.ERROR)})),
        "indeterminate": make_report(with_statuses({"kvm.module": (Severity.REQUIRED, Status.ERROR)})),
        "not-ready-guest": make_report(with_statuses({"kvm.guest": (Severity.REQUIRED, Status.FAIL)})),
        "all-skipped": make_report([make_check(i, Severity.REQUIRED, Status.SKIP) for i in ids], host=empty_host()),
        "no-checks": make_report([], host=empty_host()),
        "nested-guest": make_report(all_pass(), host=dict(sample_host("vm1"), hypervisor="kvm")),
        "hostile": hostile_report(),
    }


def pipeline_reports() -> Dict[str, Report]:
    """Captured hosts (offline) and built trees with the fake live system, through the real runner."""
    reports: Dict[str, Report] = {}

    def add(name: str, facts: Facts, target: Target) -> None:
        reports[f"{name}-{target.value}"] = runner.build_report(facts, target, runner.run(facts, target), now=FIXED_NOW)

    for host in real_host_names():
        for target in Target:
            add(host, Facts(DirectoryHost(str(fixture_root(host)))), target)
    desktop = dict(groups=(1000, KVM_GID))
    trees = {
        "intel-desktop": (lambda: intel_desktop(params={"kvm": {"enable_vmware_backdoor": "Y"}}), lambda: FakeLiveSystem(**desktop)),
        "amd-desktop": (lambda: amd_desktop(kernel="6.14.0-27-generic"), lambda: FakeLiveSystem(**desktop)),
        "kvm-guest": (lambda: kvm_guest(nested=True), lambda: FakeLiveSystem(cpuid="KVMKVMKVM", **desktop)),
        "no-kvm-group": (lambda: intel_desktop(), lambda: FakeLiveSystem()),
        # kvm_pvm as the development machine shows it: VMs are created, an unmodified guest stops where it is emulated.
        "pvm-host": (pvm_host, lambda: FakeLiveSystem.root(FakeKvmBackend(guest=guest_emulation_stop()), cpuid="KVMKVMKVM")),
    }
    for name, (tree, live) in trees.items():
        for target in Target:
            add(name, make_facts(tree(), live(), vm_dir="/"), target)
    return reports


_CACHE: Dict[str, Report] = {}


def every_report() -> Dict[str, Report]:
    if not _CACHE:
        _CACHE.update(synthetic_reports())
        _CACHE.update(pipeline_reports())
    return _CACHE


REPORT_NAMES = sorted(set(synthetic_reports()) | {f"{h}-{t.value}" for h in real_host_names() for t in Target}
                      | {f"{n}-{t.value}" for n in ("intel-desktop", "amd-desktop", "kvm-guest", "no-kvm-group", "pvm-host")
                         for t in Target})


@pytest.fixture(params=REPORT_NAMES)
def report(request) -> Report:
    return every_report()[request.param]


# -- every format renders every report -----------------------------------------


@pytest.mark.parametrize("output_format", list(OutputFormat))
def test_every_format_renders_every_report(output_format: OutputFormat, report: Report):
    text = output_format.renderer(width=100, color=False).render(report)
    assert isinstance(text, str) and text.strip()
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_the_enum_names_the_new_formats():
    assert {f.value for f in OutputFormat} >= {"table", "json", "jsonl", "junit", "prometheus", "nfd"}


def test_the_pipeline_reports_cover_every_verdict():
    verdicts = {r.verdict for name, r in every_report().items() if name not in synthetic_reports()}
    assert verdicts == set(Verdict)


def test_every_report_json_validates_against_the_shipped_schema(report: Report):
    validator = Draft202012Validator(schema())
    document = json.loads(OutputFormat.JSON.renderer().render(report))
    errors = sorted(validator.iter_errors(document), key=str)
    assert not errors, errors[0]
    # jsonl: the report line plus its check lines is the same report.
    lines = [json.loads(line) for line in OutputFormat.JSONL.renderer().render(report).splitlines()]
    head = dict(lines[-1])
    assert head.pop("type") == "report"
    head["checks"] = [{k: v for k, v in line.items() if k not in ("type", "hostname")} for line in lines[:-1]]
    assert not list(validator.iter_errors(head))
    assert head == document


# -- JUnit ---------------------------------------------------------------------


def parse_junit(text: str) -> ET.Element:
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    return ET.fromstring(text.encode("utf-8"))


def expected_classname(report: Report) -> str:
    hostname = report.host.get("hostname")
    return "kvmready." + (re.sub(r"[^A-Za-z0-9_-]", "_", junit.xml_text(hostname)) if hostname else "unknown")


_XSD: List[xmlschema.XMLSchema] = []


def junit_xsd() -> xmlschema.XMLSchema:
    if not _XSD:
        _XSD.append(xmlschema.XMLSchema(str(JUNIT_XSD)))
    return _XSD[0]


def test_junit_is_valid_against_junit_10_xsd(report: Report):
    text = OutputFormat.JUNIT.renderer().render(report)
    errors = list(junit_xsd().iter_errors(text))
    assert not errors, errors[0]


def test_the_xsd_check_can_fail():
    """The schema is strict where it matters: `skipped` on <testsuites> is what it rejected."""
    text = OutputFormat.JUNIT.renderer().render(every_report()["mixed"])
    assert junit_xsd().is_valid(text)
    assert not junit_xsd().is_valid(text.replace('<testsuites name="kvmready"', '<testsuites name="kvmready" skipped="1"', 1))
    assert not junit_xsd().is_valid(text.replace("<properties>", "<properties><bogus/>", 1))


def test_junit_times_are_the_checks_durations(report: Report):
    root = parse_junit(OutputFormat.JUNIT.renderer().render(report))
    cases = {case.get("name"): case for case in root.iter("testcase")}
    for check in report.checks:
        assert cases[junit.xml_text(check.id)].get("time") == f"{check.duration:.6f}"
    total = sum(check.duration for check in report.checks)
    for element in (root, root.find("testsuite")):
        assert re.fullmatch(r"\d+\.\d{6}", element.get("time"))
        assert float(element.get("time")) == pytest.approx(max(report.duration, total), abs=1e-6)
    if report.checks:
        assert float(root.get("time")) > 0


def test_junit_times_are_measured():
    """Through the runner, checks are timed and the run takes at least as long as its checks."""
    report = every_report()["intel-desktop-workstation"]
    assert all(check.duration >= 0 for check in report.checks) and any(check.duration > 0 for check in report.checks)
    assert report.duration >= sum(check.duration for check in report.checks) > 0
    assert report.to_dict() == runner.build_report(*_intel_desktop(), now=FIXED_NOW).to_dict()  # times stay out of the JSON


def _intel_desktop():
    facts = make_facts(intel_desktop(params={"kvm": {"enable_vmware_backdoor": "Y"}}), FakeLiveSystem(groups=(1000, KVM_GID)), vm_dir="/")
    return facts, Target.WORKSTATION, runner.run(facts, Target.WORKSTATION)


def test_junit_structure(report: Report):
    root = parse_junit(OutputFormat.JUNIT.renderer().render(report))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    cases = suite.findall("testcase")
    names = [junit.xml_text(c.id) for c in report.checks]
    red = [case for case in cases[: len(names)] if case.find("failure") is not None or case.find("error") is not None]
    if report.verdict is Verdict.INDETERMINATE and not red:
        names.append("verdict")  # nothing was observed: one red case says so, as the exit code 3 does
    assert [case.get("name") for case in cases] == names
    assert all(case.get("classname") == expected_classname(report) for case in cases)
    counted = Counter(child.tag for case in cases for child in case if child.tag in ("failure", "error", "skipped"))
    assert all(sum(child.tag in ("failure", "error", "skipped") for child in case) <= 1 for case in cases)
    for element in (root, suite):
        assert element.get("tests") == str(len(cases))
        assert element.get("failures") == str(counted["failure"])
        assert element.get("errors") == str(counted["error"])
        assert float(element.get("time")) >= 0
    assert suite.get("skipped") == str(counted["skipped"])
    assert root.get("skipped") is None  # not allowed on <testsuites> by junit-10.xsd
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert properties["verdict"] == report.verdict.value
    assert properties["exit_code"] == str(report.exit_code)
    assert properties["target"] == report.target.value


def test_junit_fails_exactly_when_the_exit_code_gates(report: Report):
    """Without --exit-zero: failures or errors in the test report <=> a non-zero exit."""
    root = parse_junit(OutputFormat.JUNIT.renderer().render(report))
    red = int(root.get("failures")) + int(root.get("errors"))
    gated = runner.exit_code_of(report.verdict, report.strict) != 0
    assert (red > 0) == gated


def test_junit_maps_each_status():
    report = every_report()["mixed"]
    cases = {case.get("name"): case for case in parse_junit(OutputFormat.JUNIT.renderer().render(report)).iter("testcase")}
    for check in report.checks:
        case = cases[check.id]
        children = [child.tag for child in case]
        if check.status is Status.SKIP:
            assert children == ["skipped"]
            assert case.find("skipped").get("message") == check.summary
        elif check.severity is Severity.REQUIRED and check.status is Status.FAIL:
            assert children == ["failure"]
        elif check.severity is Severity.REQUIRED and check.status is Status.ERROR:
            assert children == ["error"]
        else:
            assert children == ["system-out"], (check.id, check.severity, check.status)
            warning = check.severity is not Severity.INFO and check.status is not Status.PASS
            assert case.find("system-out").text.startswith("WARNING: ") == warning
            assert check.summary in case.find("system-out").text


def test_junit_strict_turns_warnings_into_failures():
    report = every_report()["warnings-strict"]
    cases = {case.get("name"): case for case in parse_junit(OutputFormat.JUNIT.renderer().render(report)).iter("testcase")}
    for check in report.checks:
        if check.status is Status.PASS:
            assert cases[check.id].find("system-out") is not None
        elif check.status is Status.ERROR:
            assert cases[check.id].find("error").get("type") == "error"
        else:
            assert cases[check.id].find("failure").get("type") == check.status.value
    lenient = parse_junit(OutputFormat.JUNIT.renderer().render(every_report()["warnings"]))
    assert lenient.get("failures") == lenient.get("errors") == "0"


def test_junit_failure_carries_summary_detail_remediation_and_evidence():
    report = every_report()["not-ready-guest"]
    check = report.check("kvm.guest")
    case = next(c for c in parse_junit(OutputFormat.JUNIT.renderer().render(report)).iter("testcase") if c.get("name") == "kvm.guest")
    failure = case.find("failure")
    assert failure.get("message") == check.summary
    assert failure.get("type") == "fail"
    assert check.detail in failure.text
    assert f"Fix: {check.remediation}" in failure.text
    assert json.dumps(dict(check.evidence), indent=2, sort_keys=True) in failure.text


def test_junit_classname_keeps_the_host_one_segment():
    report = every_report()["mixed"]
    root = parse_junit(OutputFormat.JUNIT.renderer().render(report))
    assert {c.get("classname") for c in root.iter("testcase")} == {"kvmready.web-1_example_com"}
    assert root.find("testsuite").get("hostname") == "web-1.example.com"
    nameless = parse_junit(OutputFormat.JUNIT.renderer().render(every_report()["no-checks"]))
    assert nameless.find("testsuite").get("name") == "kvmready.unknown (workstation)"
    assert nameless.get("tests") == "0"


def test_junit_strips_what_xml_cannot_carry():
    report = every_report()["hostile"]
    text = OutputFormat.JUNIT.renderer().render(report)
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]", text)
    root = parse_junit(text)
    message = next(root.iter("failure")).get("message")
    assert message == junit.xml_text(HOSTILE)
    assert "]]>" in message and "<&>" in message and "\U0001f600" in message


@settings(max_examples=200, deadline=None)
@given(summary=st.text(min_size=1), detail=st.text(), evidence=st.dictionaries(st.text(), st.text()), hostname=st.text())
def test_junit_is_well_formed_for_any_text(summary, detail, evidence, hostname):
    checks = [make_check("kvm.guest", Severity.REQUIRED, Status.FAIL, summary=summary, detail=detail, evidence=evidence),
              make_check("kvm.api", Severity.REQUIRED, Status.SKIP, summary=summary)]
    report = make_report(checks, hostname=hostname or None)
    root = parse_junit(OutputFormat.JUNIT.renderer().render(report))
    failure = next(root.iter("failure"))
    # Attribute values survive except for what XML normalises: the stripped characters.
    assert failure.get("message") == junit.xml_text(summary)
    assert next(root.iter("skipped")).get("message") == junit.xml_text(summary)
    assert re.fullmatch(r"kvmready\.[A-Za-z0-9_-]+", next(root.iter("testcase")).get("classname"))


# -- Prometheus ------------------------------------------------------------------

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")


def textfile_rules(text: str) -> None:
    """What node_exporter's textfile collector needs and prometheus_client's parser does not check."""
    assert text.endswith("\n"), "the last line must end with a newline"
    assert "\r" not in text
    lines = text[:-1].split("\n")
    assert all(lines), "no empty lines"
    helps: Counter = Counter()
    types: Counter = Counter()
    finished = set()
    current = None
    for line in lines:
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            name = line.split(" ")[2]
            assert METRIC_NAME.match(name)
            (helps if line.startswith("# HELP ") else types)[name] += 1
            if line.startswith("# TYPE "):
                assert line.split(" ")[3] == "gauge"
            assert name not in finished and name != current, f"{name}: HELP/TYPE after its samples"
            continue
        assert not line.startswith("#"), line
        match = SAMPLE_LINE.match(line)
        assert match, f"not a sample (or a sample with a timestamp): {line!r}"
        name = match.group(1)
        assert types[name] == 1 and helps[name] == 1, f"{name}: a sample before its HELP and TYPE"
        if name != current:
            assert name not in finished, f"{name}: samples not contiguous"
            if current is not None:
                finished.add(current)
            current = name
    assert set(helps) == set(types) and all(n == 1 for n in helps.values()) and all(n == 1 for n in types.values())


def parse_prometheus(text: str) -> Dict[str, list]:
    families = {family.name: family for family in text_string_to_metric_families(text)}
    series = [(s.name, tuple(sorted(s.labels.items()))) for f in families.values() for s in f.samples]
    assert len(series) == len(set(series)), "duplicate series"
    for family in families.values():
        assert family.type == "gauge"
        assert family.documentation
        for sample in family.samples:
            assert sample.timestamp is None
            assert "target" in sample.labels
    return {name: family.samples for name, family in families.items()}


def test_prometheus_follows_the_textfile_rules(report: Report):
    text = OutputFormat.PROMETHEUS.renderer().render(report)
    textfile_rules(text)
    samples = parse_prometheus(text)
    assert set(samples) == {
        "kvmready_ready", "kvmready_verdict", "kvmready_waiting_on_upstream", "kvmready_exit_code", "kvmready_checks",
        "kvmready_check_status", "kvmready_build_info", "kvmready_host_info",
        "kvmready_last_run_timestamp_seconds", "kvmready_last_run_duration_seconds",
    }
    assert not any(name.endswith("_total") for name in samples)
    assert '=""' not in text, "an empty label value (Prometheus reads it as no label): leave the label out"


def promtool() -> Optional[str]:
    """promtool from $KVMREADY_PROMTOOL or PATH (.ci/run fetches Debian's where it can)."""
    found = os.environ.get("KVMREADY_PROMTOOL") or shutil.which("promtool")
    return found if found and os.access(found, os.X_OK) else None


@pytest.mark.skipif(promtool() is None, reason="promtool is not installed (Debian: the prometheus package; .ci/run fetches it)")
def test_prometheus_passes_promtool(report: Report):
    """Prometheus's own linter: `promtool check metrics` (exit 0 and no lint problem)."""
    text = OutputFormat.PROMETHEUS.renderer().render(report)
    done = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_prometheus_values(report: Report):
    samples = parse_prometheus(OutputFormat.PROMETHEUS.renderer().render(report))
    ready = report.verdict in (Verdict.READY, Verdict.READY_WITH_WARNINGS)
    assert [s.value for s in samples["kvmready_ready"]] == [1.0 if ready else 0.0]
    verdicts = {s.labels["verdict"]: s.value for s in samples["kvmready_verdict"]}
    assert verdicts == {v.value: (1.0 if v is report.verdict else 0.0) for v in Verdict}
    assert samples["kvmready_exit_code"][0].value == report.exit_code
    assert [s.value for s in samples["kvmready_waiting_on_upstream"]] == [1.0 if report.waiting_on_upstream else 0.0]
    assert {s.labels["status"]: s.value for s in samples["kvmready_checks"]} == {k: float(v) for k, v in report.summary.items()}
    per_check: Dict[str, Dict[str, float]] = {}
    for sample in samples["kvmready_check_status"]:
        per_check.setdefault(sample.labels["check"], {})[sample.labels["status"]] = sample.value
    assert set(per_check) == {c.id for c in report.checks}
    for check in report.checks:
        assert per_check[check.id] == {s.value: (1.0 if s is check.status else 0.0) for s in Status}
    assert samples["kvmready_last_run_timestamp_seconds"][0].value == FIXED_NOW.timestamp()
    (duration,) = samples["kvmready_last_run_duration_seconds"]
    assert duration.value == pytest.approx(report.duration, abs=1e-6)
    (build,) = samples["kvmready_build_info"]
    assert build.value == 1 and build.labels == {"target": report.target.value, "version": report.tool_version}
    (host,) = samples["kvmready_host_info"]
    assert host.value == 1
    expected = {
        "target": report.target.value,
        "source": report.host.get("source"),
        "kvm_module": (report.host.get("kvm") or {}).get("module"),
        "kvm_paravirtual": {True: "true", False: "false"}.get((report.host.get("kvm") or {}).get("paravirtual")),
        "virtualization": (report.host.get("cpu") or {}).get("virtualization"),
        "hypervisor": report.host.get("hypervisor"),
        "hypervisor_vendor": report.host.get("hypervisor_vendor"),
    }
    assert host.labels == {name: prometheus_label(value) for name, value in expected.items() if prometheus_label(value)}
    # What node_exporter exports already (node_uname_info, node_os_info) stays out.
    assert not {"kernel", "kernel_version", "arch", "os_id", "os_version", "version"} & set(host.labels)


def prometheus_label(value) -> str:
    """What a label value reads back as: control characters other than line feed are dropped, and a lone
    surrogate (an undecodable byte from the host) is U+FFFD, as in every other format."""
    text = "" if value is None else re.sub("[\ud800-\udfff]", "\ufffd", str(value))
    return re.sub("[\x00-\x09\x0b-\x1f\x7f]", "", text)


def test_prometheus_escapes_label_values():
    report = every_report()["hostile"]
    text = OutputFormat.PROMETHEUS.renderer().render(report)
    text.encode("utf-8")  # no lone surrogate left
    (info,) = parse_prometheus(text)["kvmready_host_info"]
    for label in ("hypervisor", "kvm_module"):
        assert info.labels[label] == prometheus_label(HOSTILE)
    assert '\\"' in text and "\\\\" in text and "\\n" in text


@settings(max_examples=200, deadline=None)
@given(hypervisor=st.text(), module=st.text())
def test_prometheus_any_label_value_round_trips(hypervisor, module):
    host = sample_host()
    host["hypervisor"] = hypervisor
    host["kvm"] = dict(host["kvm"], module=module)
    text = OutputFormat.PROMETHEUS.renderer().render(make_report(all_pass(), host=host))
    textfile_rules(text)
    assert '=""' not in text
    (info,) = parse_prometheus(text)["kvmready_host_info"]
    assert info.labels.get("hypervisor", "") == prometheus_label(hypervisor)
    assert info.labels.get("kvm_module", "") == prometheus_label(module)


def test_prometheus_leaves_unknown_facts_out():
    """An empty label value reads as no label in Prometheus: an unknown fact is no label, not `=""`."""
    text = OutputFormat.PROMETHEUS.renderer().render(every_report()["all-skipped"])
    (info,) = parse_prometheus(text)["kvmready_host_info"]
    assert info.labels == {"target": "workstation", "source": "root"}
    assert 'kvmready_host_info{source="root",target="workstation"} 1\n' in text


def test_prometheus_rules_catch_what_the_parser_lets_through():
    """The structural checks above can fail: the parser alone accepts every one of these."""
    good = OutputFormat.PROMETHEUS.renderer().render(every_report()["ready"])
    lines = good.splitlines()
    assert lines[0].startswith("# HELP kvmready_ready") and lines[2].startswith("kvmready_ready{")

    def text(*parts):
        return "\n".join(parts) + "\n"

    broken = {
        "no final newline": (good[:-1], textfile_rules),
        "duplicate TYPE": (text(*lines[:2], lines[1], *lines[2:]), textfile_rules),
        "TYPE after samples": (text(lines[2], *lines[:2], *lines[3:]), textfile_rules),
        "not contiguous": (good + 'kvmready_ready{target="x"} 1\n', textfile_rules),
        "timestamp": (good.replace(lines[2], lines[2] + " 1700000000000"), textfile_rules),
        "duplicate series": (text(*lines[:3], lines[2], *lines[3:]), parse_prometheus),
    }
    for bad, rule in broken.values():
        list(text_string_to_metric_families(bad))  # the parser is happy ...
        with pytest.raises(AssertionError):  # ... the rule is not
            rule(bad)
    textfile_rules(text(*lines[:3], lines[2], *lines[3:]))  # (a duplicate is only the parse check's business)


# -- NFD -------------------------------------------------------------------------

# Kubernetes label rules (kubernetes.io/docs/concepts/overview/working-with-objects/labels/).
K8S_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
K8S_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def nfd_worker_parse(text: str, now: datetime.datetime) -> Tuple[Dict[str, str], List[str]]:
    """What nfd-worker's local source makes of a feature file at `now`: (labels, directive errors).

    Written after source/local/local.go (parseFeatureFile): lines are
    trimmed; `#` lines are comments, `# +` lines directives (`expiry-time=`
    RFC 3339, `no-label`, `no-feature`; anything else is an error it logs);
    the expiry in force applies to the lines after it, and a line whose
    expiry is before `now` is dropped; `key` alone means `key=true`.
    """
    labels: Dict[str, str] = {}
    errors: List[str] = []
    expiry = now
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("# +"):
                key, _, value = line[3:].partition("=")
                if key == "expiry-time":
                    try:
                        expiry = datetime.datetime.strptime(value.strip(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
                    except ValueError:
                        errors.append(line)
                elif key not in ("no-label", "no-feature"):
                    errors.append(line)
            continue
        if expiry < now:
            continue
        key, sep, value = line.partition("=")
        labels[key] = value if sep else "true"
    return labels, errors


def nfd_labels(text: str, prefix: str = nfd.DEFAULT_PREFIX) -> Dict[str, str]:
    assert text.endswith("\n")
    assert len(text.encode("utf-8")) < 65536
    labels: Dict[str, str] = {}
    directives = []
    for line in text[:-1].split("\n"):
        if line.startswith("#"):
            if line.startswith("# +"):
                assert not labels, "a directive after labels applies only to the labels after it"
                directives.append(line)
            continue
        key, _, value = line.partition("=")
        assert _ == "=", line
        line_prefix, _, name = key.partition("/")
        assert line_prefix == prefix
        assert len(prefix) <= 253 and DNS_SUBDOMAIN.match(prefix)
        assert not re.search(r"(^|\.)(kubernetes\.io|k8s\.io)$", prefix) or prefix == "feature.node.kubernetes.io"
        assert len(name) <= 63 and K8S_NAME.match(name), name
        assert 1 <= len(value) <= 63 and K8S_VALUE.match(value), value
        assert name not in labels, f"{name} twice"
        labels[name] = value
    assert all(re.fullmatch(r"# \+expiry-time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line) for line in directives), directives
    return labels


def test_nfd_every_line_is_a_valid_label(report: Report):
    labels = nfd_labels(OutputFormat.NFD.renderer().render(report))
    assert labels["ready"] == ("true" if report.verdict in (Verdict.READY, Verdict.READY_WITH_WARNINGS) else "false")
    assert labels["verdict"] == report.verdict.value
    assert labels["target"] == report.target.value
    assert labels["failed-checks"] == str(report.summary["fail"])
    for check in report.checks:
        assert labels[f"check.{check.id}"] == check.status.value
    if report.reasons:
        assert labels["reason"] == report.reasons[0]


def test_nfd_kvm_usable_and_nested():
    labels = nfd_labels(OutputFormat.NFD.renderer().render(every_report()["ready"]))
    assert labels["kvm-usable"] == "true" and labels["nested"] == "false"
    assert labels["kvm-module"] == "kvm_intel" and labels["virtualization"] == "vt-x"
    assert labels["kernel-version.major"] == "6" and labels["kernel-version.minor"] == "8"
    assert "hypervisor" not in labels
    labels = nfd_labels(OutputFormat.NFD.renderer().render(every_report()["not-ready-guest"]))
    assert labels["kvm-usable"] == "false" and labels["ready"] == "false" and labels["reason"] == "kvm.guest"
    labels = nfd_labels(OutputFormat.NFD.renderer().render(every_report()["nested-guest"]))
    assert labels["nested"] == "true" and labels["hypervisor"] == "kvm"
    skipped = nfd_labels(OutputFormat.NFD.renderer().render(every_report()["all-skipped"]))
    assert "kvm-usable" not in skipped and "nested" not in skipped and "kvm-device" not in skipped


def test_nfd_pipeline_hosts():
    guest = nfd_labels(OutputFormat.NFD.renderer().render(every_report()["kvm-guest-kvm"]))
    assert guest["nested"] == "true" and guest["kvm-usable"] == "true"
    desktop = nfd_labels(OutputFormat.NFD.renderer().render(every_report()["intel-desktop-workstation"]))
    # not ready for a KVM-backed Workstation (no released kernel has VMware's support), yet KVM itself is usable
    assert desktop["ready"] == "false" and desktop["kvm-usable"] == "true" and desktop["kvm-device"] == "true"
    assert desktop["waiting-on-upstream"] == "true" and guest["waiting-on-upstream"] == "false"
    offline = nfd_labels(OutputFormat.NFD.renderer().render(every_report()["lscpu-x86_64-epyc_7451-kvm"]))
    assert "kvm-usable" not in offline  # skipped offline: no claim either way
    assert desktop["kvm-paravirtual"] == "false"


def test_nfd_on_paravirtual_kvm_the_node_is_not_usable_and_says_why():
    """No scheduler should send QEMU or KubeVirt workloads to a kvm_pvm node."""
    labels = nfd_labels(OutputFormat.NFD.renderer().render(every_report()["pvm-host-kvm"]))
    assert labels["kvm-usable"] == "false" and labels["kvm-paravirtual"] == "true"
    assert labels["kvm-device"] == "true" and labels["kvm-module"] == "kvm_pvm"
    assert labels["ready"] == "false" and labels["reason"] == "kvm.guest"


def test_nfd_sanitises_hostile_values():
    labels = nfd_labels(OutputFormat.NFD.renderer().render(every_report()["hostile"]))
    assert nfd.label_part(HOSTILE) == "q-uote-back-line-nul-ESC-tab-n-x-s"
    for name in ("hypervisor", "kvm-module"):
        assert labels[name] == "q-uote-back-line-nul-ESC-tab-n-x-s"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.integers(), st.booleans()))
def test_nfd_label_part_always_fits(value):
    part = nfd.label_part(value)
    assert len(part) <= 63 and K8S_VALUE.match(part)
    name = nfd.label_part(value, nfd.MAX_NAME)
    assert name == "" or K8S_NAME.match(name)


def test_nfd_label_part_examples():
    assert nfd.label_part("6.8.0-45-generic") == "6.8.0-45-generic"
    assert nfd.label_part("Ubuntu 24.04.1 LTS") == "Ubuntu-24.04.1-LTS"
    assert nfd.label_part("-_.x.-_") == "x"
    assert nfd.label_part("a" * 100) == "a" * 63
    assert nfd.label_part("a" * 62 + "--b") == "a" * 62
    assert nfd.label_part("中文") == ""
    assert nfd.label_part(True) == "true"


def test_nfd_prefix():
    assert nfd.prefix_problem(nfd.DEFAULT_PREFIX) is None
    assert nfd.prefix_problem("feature.node.kubernetes.io") is None
    for bad in ("kubernetes.io", "node.kubernetes.io", "k8s.io", "x.k8s.io", "Upper.io", "-a.io", "a_b.io", "", "a" * 254):
        assert nfd.prefix_problem(bad), bad
    report = every_report()["ready"]
    assert nfd_labels(NfdRenderer(prefix="example.com").render(report), prefix="example.com")["ready"] == "true"
    assert OutputFormat.NFD.renderer(nfd_prefix="example.com").render(report).startswith("#")
    with pytest.raises(ValueError):
        NfdRenderer(prefix="kubernetes.io")


def test_nfd_expiry_directive_as_nfd_worker_reads_it(report: Report):
    text = OutputFormat.NFD.renderer().render(report)
    generated = datetime.datetime.strptime(report.generated_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    assert f"# +expiry-time={(generated + datetime.timedelta(hours=2)).strftime('%Y-%m-%dT%H:%M:%SZ')}\n" in text
    fresh, errors = nfd_worker_parse(text, generated + datetime.timedelta(hours=1, minutes=59))
    assert not errors
    assert {f"{nfd.DEFAULT_PREFIX}/{name}": value for name, value in nfd_labels(text).items()} == fresh
    stale, _ = nfd_worker_parse(text, generated + datetime.timedelta(hours=2, seconds=1))
    assert stale == {}, "labels outlive the expiry"


def test_nfd_expiry_is_configurable():
    report = every_report()["ready"]
    assert "# +expiry-time=2000-01-01T01:30:00Z\n" in NfdRenderer(expiry="90m").render(report)
    assert "# +expiry-time=2000-01-02T12:00:00Z\n" in NfdRenderer(expiry="1d12h").render(report)
    for never in ("never", "none", "0", None):
        text = NfdRenderer(expiry=never).render(report)
        assert "# +" not in text
        assert nfd_worker_parse(text, datetime.datetime(2100, 1, 1, tzinfo=datetime.timezone.utc))[0]  # never expires
    assert nfd.parse_expiry("45s") == 45 and nfd.parse_expiry(" 2H ") == 7200 and nfd.parse_expiry("1h30m") == 5400
    for bad in ("", "2", "h", "-1h", "2 h", "1.5h", "3651d", "1w", "soon"):
        with pytest.raises(ValueError):
            nfd.parse_expiry(bad)


def test_nfd_worker_parse_drops_expired_lines():
    """The model of nfd-worker's parser, checked against NFD's documented example."""
    text = ("# +expiry-time=2012-07-28T11:22:33Z\nvendor.io/feature1=featureValue\n\n"
            "# +expiry-time=2080-07-28T11:22:33Z\nvendor.io/feature2=featureValue2\n\n"
            "# +expiry-time=2070-07-28T11:22:33Z\nvendor.io/feature3=featureValue3\n\n"
            "# +expiry-time=2002-07-28T11:22:33Z\nvendor.io/feature4=featureValue4\n")
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    assert nfd_worker_parse(text, now) == ({"vendor.io/feature2": "featureValue2", "vendor.io/feature3": "featureValue3"}, [])
    assert nfd_worker_parse("# +bogus\nvendor.io/x\n", now) == ({"vendor.io/x": "true"}, ["# +bogus"])


def test_cli_nfd_expiry(tmp_path: Path):
    result = run_cli(["check", "--format", "nfd", "--nfd-expiry", "30m", "--exit-zero"], facts_factory=cli_facts)
    assert result.exit_code == 0
    assert re.search(r"^# \+expiry-time=\S+Z$", result.stdout, re.M)
    never = run_cli(["check", "--format", "nfd", "--nfd-expiry", "never", "--exit-zero"], facts_factory=cli_facts)
    assert "# +" not in never.stdout
    bad = run_cli(["check", "--format", "nfd", "--nfd-expiry", "soon"], facts_factory=cli_facts)
    assert bad.exit_code == 2 and bad.stdout == ""
    assert bad.stderr.startswith("kvmready: error: --nfd-expiry: ") and len(bad.stderr.splitlines()) == 1


def test_nfd_stays_under_64_kib():
    ids = [f"demo.check-{index:05d}-{'x' * 40}" for index in range(3000)]
    checks = tuple(make_check(i, Severity.INFO, Status.PASS) for i in ids)
    report = make_report([], hostname="big")._replace(checks=checks)
    text = NfdRenderer().render(report)
    assert len(text.encode("utf-8")) < nfd.MAX_FILE_BYTES
    labels = nfd_labels(text)
    assert labels["ready"] == "true" and len(labels) > 100


# -- golden files ------------------------------------------------------------------

GOLDEN_REPORTS = ("mixed", "hostile", "ready")
SUFFIX = {OutputFormat.JUNIT: "junit.xml", OutputFormat.PROMETHEUS: "prom", OutputFormat.NFD: "nfd"}


@pytest.mark.parametrize("name", GOLDEN_REPORTS)
@pytest.mark.parametrize("output_format", list(SUFFIX))
def test_golden_files(name: str, output_format: OutputFormat):
    """Reviewable examples; KVMREADY_UPDATE_GOLDENS=1 rewrites them."""
    text = output_format.renderer().render(every_report()[name])
    path = FORMAT_GOLDENS / f"{name}.{SUFFIX[output_format]}"
    if UPDATE_GOLDENS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    assert path.read_bytes().decode("utf-8") == text


# -- through the CLI: --output is atomic, the exit code still gates ------------------

CLI_HOST = "firecracker-pvm-host"


def cli_facts() -> Facts:
    return Facts(DirectoryHost(str(fixture_root(CLI_HOST))))


@pytest.mark.parametrize("output_format", ["junit", "prometheus", "nfd"])
def test_cli_writes_each_format_atomically(tmp_path: Path, output_format: str):
    target = tmp_path / f"kvmready.{output_format}"
    target.write_text("old\n")
    result = run_cli(["check", "--format", output_format, "--output", str(target)], facts_factory=cli_facts)
    facts = cli_facts()
    expected = runner.build_report(facts, Target.WORKSTATION, runner.run(facts, Target.WORKSTATION))
    assert result.exit_code == expected.exit_code == 1  # not ready: the exit code gates whatever the format
    assert result.stdout == ""
    text = target.read_text(encoding="utf-8")
    assert sorted(os.listdir(tmp_path)) == [target.name]  # no temporary file left behind
    if output_format == "junit":
        assert int(parse_junit(text).get("failures")) > 0
    elif output_format == "prometheus":
        textfile_rules(text)
        assert parse_prometheus(text)["kvmready_ready"][0].value == 0
    else:
        assert nfd_labels(text)["ready"] == "false"


def test_cli_exit_zero_keeps_the_junit_failures(tmp_path: Path):
    result = run_cli(["check", "--format", "junit", "--exit-zero"], facts_factory=cli_facts)
    assert result.exit_code == 0
    assert int(parse_junit(result.stdout).get("failures")) > 0


def test_prometheus_and_nfd_agree_that_pvm_kvm_is_paravirtual_and_unusable():
    """Issue 11: on kvm_pvm the node is not sent QEMU/KubeVirt workloads, in every integration format."""
    pvm, desktop = every_report()["pvm-host-kvm"], every_report()["intel-desktop-kvm"]
    labels = nfd_labels(OutputFormat.NFD.renderer().render(pvm))
    assert (labels["kvm-usable"], labels["kvm-paravirtual"], labels["ready"]) == ("false", "true", "false")
    for report, paravirtual, ready in ((pvm, "true", 0.0), (desktop, "false", 1.0)):
        samples = parse_prometheus(OutputFormat.PROMETHEUS.renderer().render(report))
        (info,) = samples["kvmready_host_info"]
        assert info.labels["kvm_paravirtual"] == paravirtual
        assert samples["kvmready_ready"][0].value == ready


def test_the_hypervisor_vendor_reaches_nfd_and_prometheus():
    aws = next(report for name, report in every_report().items() if name.startswith("virtwhat-aws-kvm"))
    assert (aws.host["hypervisor"], aws.host["hypervisor_vendor"]) == ("kvm", "amazon")
    labels = nfd_labels(OutputFormat.NFD.renderer().render(aws))
    assert (labels["hypervisor"], labels["hypervisor-vendor"]) == ("kvm", "amazon")
    (info,) = parse_prometheus(OutputFormat.PROMETHEUS.renderer().render(aws))["kvmready_host_info"]
    assert info.labels["hypervisor_vendor"] == "amazon"
