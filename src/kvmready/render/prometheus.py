"""Prometheus text format 0.0.4 for node_exporter's textfile collector.

Write it with `kvmready check --format prometheus --output DIR/kvmready.prom`
(a temporary dot-file, then a rename, so the collector never reads half a
file).  Every metric is a gauge with `# HELP` and `# TYPE` before its one
contiguous group of samples; samples never carry a timestamp (the collector
drops the whole file when one does): the time of the run is the value of
`kvmready_last_run_timestamp_seconds`.  Every series carries the `target`
label, so one file per target (`kvmready-workstation.prom`,
`kvmready-kvm.prom`) can sit side by side.

    kvmready_ready{target}                         1 ready (with or without warnings), else 0
    kvmready_verdict{target,verdict}               one-hot over the four verdicts
    kvmready_waiting_on_upstream{target}           1 when only checks upstream owes fail (report's waiting_on_upstream)
    kvmready_exit_code{target}                     what `kvmready check` exited with
    kvmready_checks{target,status}                 how many checks ended in each status
    kvmready_check_status{target,check,severity,status}  one-hot per check over the five statuses
    kvmready_build_info{target,version}            always 1: which kvmready wrote the file
    kvmready_host_info{target,source,...}          always 1: what kvmready found that node_exporter
                                                   does not export (kvm_module, kvm_paravirtual,
                                                   virtualization, hypervisor, hypervisor_vendor); a
                                                   fact it could not find is no label
    kvmready_last_run_timestamp_seconds{target}    Unix time of the run
    kvmready_last_run_duration_seconds{target}     how long the checks took

Host facts node_exporter already exports stay out: the kernel release and
the architecture are in `node_uname_info`, the distribution in
`node_os_info`.  No label value is ever empty: Prometheus treats an empty
value as no label at all, so an unknown fact is left out instead.  The file
passes `promtool check metrics` (tests/test_render_formats.py runs it where
promtool is installed).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

from kvmready.model import STATUS_ORDER, Report, Verdict, epoch_seconds
from kvmready.render.common import dig
from kvmready.text import clean_text

Labels = Sequence[Tuple[str, Any]]
Value = Union[int, float]

# C0 controls (but line feed, which is escaped) and DEL: no parser needs them in a label.
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f]")


def escape_label_value(value: Any) -> str:
    """Backslash, double quote and line feed escaped; control characters dropped; lone surrogates replaced."""
    text = "" if value is None else str(value)
    text = _CONTROL.sub("", clean_text(text))
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{escape_label_value(value)}"' for name, value in sorted(labels)) + "}"


class _Writer:
    def __init__(self) -> None:
        self.lines: List[str] = []

    def metric(self, name: str, help_text: str, samples: Iterable[Tuple[Labels, Value]]) -> None:
        self.lines.append(f"# HELP {name} {escape_help(help_text)}")
        self.lines.append(f"# TYPE {name} gauge")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(labels)} {_value(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _value(value: Value) -> str:
    """An integer as it is; a float as a plain decimal to the microsecond."""
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(int(value))


def present(labels: Labels) -> List[Tuple[str, Any]]:
    """The labels whose value is not empty once escaped (Prometheus reads an empty value as no label)."""
    return [(name, value) for name, value in labels if escape_label_value(value)]


def _flag(value: Any) -> Optional[str]:
    return None if value is None else ("true" if value else "false")


def host_labels(report: Report) -> List[Tuple[str, Any]]:
    """kvmready's findings about the host that node_exporter does not export, for kvmready_host_info."""
    host = report.host
    return present(
        [
            ("hypervisor", dig(host, "hypervisor")),
            ("hypervisor_vendor", dig(host, "hypervisor_vendor")),
            ("kvm_module", dig(host, "kvm", "module")),
            ("kvm_paravirtual", _flag(dig(host, "kvm", "paravirtual"))),
            ("source", dig(host, "source")),
            ("target", report.target.value),
            ("virtualization", dig(host, "cpu", "virtualization")),
        ]
    )


class PrometheusRenderer:
    def render(self, report: Report) -> str:
        return _render(report)


def _render(report: Report) -> str:
    target = ("target", report.target.value)
    out = _Writer()
    ready = report.verdict.is_ready
    out.metric(
        "kvmready_ready",
        "1 when the host is ready for the target (verdict ready or ready_with_warnings), else 0.",
        [([target], 1 if ready else 0)],
    )
    out.metric(
        "kvmready_verdict",
        "The verdict of the last kvmready run, one-hot: 1 for the verdict it reached, 0 for the others.",
        [([target, ("verdict", verdict.value)], 1 if verdict is report.verdict else 0) for verdict in sorted(Verdict, key=lambda v: v.value)],
    )
    out.metric(
        "kvmready_waiting_on_upstream",
        "1 when the host is ready in every other respect: the only failing required checks wait on something "
        "upstream has not shipped (the report's waiting_on_upstream, e.g. vmware.kvm-support), else 0.",
        [([target], 1 if report.waiting_on_upstream else 0)],
    )
    out.metric(
        "kvmready_exit_code",
        "The exit code of the last kvmready run: 0 ready, 1 not ready, 3 indeterminate.",
        [([target], report.exit_code)],
    )
    summary = report.summary
    out.metric(
        "kvmready_checks",
        "How many checks ended in each status in the last kvmready run.",
        [([target, ("status", status.value)], summary[status.value]) for status in sorted(STATUS_ORDER, key=lambda s: s.value)],
    )
    out.metric(
        "kvmready_check_status",
        "The status of each check in the last kvmready run, one-hot over pass, warn, fail, skip and error; severity is the check's for the target.",
        [
            (
                [("check", check.id), ("severity", check.severity.value), ("status", status.value), target],
                1 if status is check.status else 0,
            )
            for check in sorted(report.checks, key=lambda c: c.id)
            for status in sorted(STATUS_ORDER, key=lambda s: s.value)
        ],
    )
    out.metric(
        "kvmready_build_info",
        "Always 1; version is the kvmready that wrote this file.",
        [(present([target, ("version", report.tool_version)]), 1)],
    )
    out.metric(
        "kvmready_host_info",
        "Always 1; the labels are what kvmready found that node_exporter does not export: the KVM module, "
        "whether that KVM is paravirtual (kvm_pvm: only PVM-enabled guest kernels run natively), "
        "the CPU's virtualization (vt-x, amd-v, sie), the hypervisor this host runs under (nested only) and who "
        "provides it where the evidence names them (hypervisor_vendor: amazon, google, …), and "
        "where the facts came from (live, root, snapshot). A fact kvmready could not find is left out.",
        [(host_labels(report), 1)],
    )
    out.metric(
        "kvmready_last_run_timestamp_seconds",
        "Unix time at which the last kvmready run made its report.",
        [([target], epoch_seconds(report.generated_at))],
    )
    out.metric(
        "kvmready_last_run_duration_seconds",
        "How long the last kvmready run took to read the host and run its checks, in seconds.",
        [([target], float(report.duration))],
    )
    return out.text()
