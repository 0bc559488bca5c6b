"""A Node Feature Discovery feature file for the `local` source.

nfd-worker reads every file in /etc/kubernetes/node-feature-discovery/features.d/
and turns each `<prefix>/<name>=<value>` line into a node label.  Write it
with `kvmready check --format nfd --output .../features.d/kvmready` (a
temporary dot-file, which nfd-worker ignores, then a rename).

Every name and value follows the Kubernetes label rules: names and values at
most 63 characters, alphanumeric at both ends, `-`, `_` and `.` inside; the
prefix a DNS subdomain outside kubernetes.io and k8s.io.  A value that does
not fit is made to fit (other characters become `-`, then it is cut and
trimmed); a label with nothing left is left out.  The file stays far under
nfd-worker's 64 KiB limit (checked here anyway).

Expiry: before the labels the file carries nfd-worker's directive
`# +expiry-time=<RFC 3339 time>`, the report's time plus `--nfd-expiry`
(DEFAULT_EXPIRY, two hours).  nfd-worker ignores the labels after that time,
so when the timer or DaemonSet that rewrites the file stops, the labels go
at nfd-worker's next re-discovery instead of describing the node forever.
`--nfd-expiry never` leaves the directive out.  nfd-worker reads the file
again when it changes (recent releases watch features.d; older ones at every
sleepInterval), so each rewrite renews the expiry.

Labels, under DEFAULT_PREFIX (`kvmready.io`):

    ready=true|false                 verdict ready or ready_with_warnings
    waiting-on-upstream=true|false   ready in every other respect: only checks upstream owes fail
    verdict=ready|ready_with_warnings|not_ready|indeterminate
    target=workstation|kvm
    version=0.1.0                    kvmready's version
    reason=cpu.virtualization        the first check behind the verdict (when there is one)
    failed-checks=2                  how many checks ended in `fail`
    kvm-usable=true|false            kvm.guest: a real guest ran, at hardware speed (left out when the check was skipped)
    kvm-device=true|false            /dev/kvm is the KVM device
    kvm-module=kvm_intel             the module that provides KVM
    kvm-paravirtual=true|false       KVM without VT-x/AMD-V (kvm_pvm): only PVM-enabled guest kernels run natively
    nested=true|false                this node is itself a VM
    hypervisor=kvm                   the hypervisor it runs under (nested only)
    hypervisor-vendor=amazon         who provides that VM, where the evidence names them
    virtualization=vt-x|amd-v|sie|none
    kernel-version.major=6, kernel-version.minor=8
    check.<check id>=pass|warn|fail|skip|error   one per check
"""

from __future__ import annotations

import re
from typing import Any, List, Optional, Tuple

from kvmready.model import TIMESTAMP_FORMAT, Report, Status, epoch_seconds
from kvmready.render.common import dig

DEFAULT_PREFIX = "kvmready.io"
DEFAULT_EXPIRY = "2h"  # four runs of the documented 30-minute timer
EXPIRY_DIRECTIVE = "# +expiry-time="  # nfd-worker's local source: RFC 3339, applies to the lines after it
NEVER = ("never", "none", "0")
MAX_EXPIRY_SECONDS = 3650 * 86400
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
MAX_FILE_BYTES = 65536  # nfd-worker's MaxFeatureFileSize: larger files are skipped
MAX_NAME = 63
MAX_VALUE = 63

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
PREFIX_RE = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
# NFD's own namespaces are the only kubernetes.io ones it accepts.
_ALLOWED_K8S = ("feature.node.kubernetes.io", "profile.node.kubernetes.io")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def prefix_problem(prefix: str) -> Optional[str]:
    """Why `prefix` cannot be a label prefix, or None when it can."""
    if len(prefix) > 253 or not PREFIX_RE.match(prefix):
        return f"{prefix!r} is not a DNS subdomain (lower-case letters, digits, '-' and '.', at most 253 characters)"
    if prefix in _ALLOWED_K8S:
        return None
    for reserved in ("kubernetes.io", "k8s.io"):
        if prefix == reserved or prefix.endswith("." + reserved):
            return f"{prefix!r} is reserved for Kubernetes (nfd-master drops labels under {reserved})"
    return None


def parse_expiry(text: str) -> Optional[int]:
    """`2h`, `90m`, `1d12h`, `45s` -> seconds; `never` (or `none`, `0`) -> None.  ValueError otherwise."""
    cleaned = text.strip().lower()
    if cleaned in NEVER:
        return None
    match = _DURATION.match(cleaned)
    if not cleaned or not match:
        raise ValueError(f"{text!r} is not a duration: use a number with d, h, m or s (2h, 90m, 1d12h), or never")
    days, hours, minutes, secs = (int(part or 0) for part in match.groups())
    total = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    if not 0 < total <= MAX_EXPIRY_SECONDS:
        raise ValueError(f"{text!r}: give a duration between 1s and 3650d, or never")
    return total


def expiry_time(generated_at: str, seconds: int) -> str:
    """The report's time plus `seconds`, in RFC 3339 (as nfd-worker's time.RFC3339 parses it)."""
    import time

    moment = epoch_seconds(generated_at) + seconds
    return time.strftime(TIMESTAMP_FORMAT, time.gmtime(moment))


def label_part(value: Any, limit: int = MAX_VALUE) -> str:
    """`value` made into a label name or value: `-_.` inside, alphanumeric ends, at most `limit` characters."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    text = _NOT_LABEL.sub("-", str(value))
    return text[:limit].strip("-_.")[:limit].strip("-_.")


def _status(report: Report, check_id: str) -> Optional[Status]:
    for check in report.checks:
        if check.id == check_id:
            return check.status
    return None


def _bool(value: bool) -> str:
    return "true" if value else "false"


def labels(report: Report) -> List[Tuple[str, str]]:
    """(name, value) pairs before sanitising, in file order."""
    host = report.host
    pairs: List[Tuple[str, Any]] = [
        ("ready", _bool(report.verdict.is_ready)),
        ("waiting-on-upstream", _bool(bool(report.waiting_on_upstream))),
        ("verdict", report.verdict.value),
        ("target", report.target.value),
        ("version", report.tool_version),
    ]
    if report.reasons:
        pairs.append(("reason", report.reasons[0]))
    pairs.append(("failed-checks", str(report.summary[Status.FAIL.value])))

    guest = _status(report, "kvm.guest")
    if guest is Status.PASS:
        pairs.append(("kvm-usable", "true"))
    elif guest in (Status.FAIL, Status.ERROR):
        pairs.append(("kvm-usable", "false"))
    device = dig(host, "kvm", "device")
    if isinstance(device, bool):
        pairs.append(("kvm-device", _bool(device)))
    module = dig(host, "kvm", "module")
    if module:
        pairs.append(("kvm-module", module))
    paravirtual = dig(host, "kvm", "paravirtual")
    if isinstance(paravirtual, bool):
        pairs.append(("kvm-paravirtual", _bool(paravirtual)))

    hypervisor = dig(host, "hypervisor")
    if hypervisor:
        pairs.append(("nested", "true"))
        pairs.append(("hypervisor", hypervisor))
        vendor = dig(host, "hypervisor_vendor")
        if vendor:
            pairs.append(("hypervisor-vendor", vendor))
    elif _status(report, "host.hypervisor") in (Status.PASS, Status.WARN, Status.FAIL):
        pairs.append(("nested", "false"))

    virtualization = dig(host, "cpu", "virtualization")
    if virtualization:
        pairs.append(("virtualization", virtualization))
    elif _status(report, "cpu.virtualization") in (Status.PASS, Status.WARN, Status.FAIL):
        pairs.append(("virtualization", "none"))

    version = dig(host, "kernel", "version")
    if isinstance(version, (list, tuple)) and len(version) >= 2:
        pairs.append(("kernel-version.major", str(version[0])))
        pairs.append(("kernel-version.minor", str(version[1])))

    for check in sorted(report.checks, key=lambda c: c.id):
        pairs.append((f"check.{check.id}", check.status.value))
    return [(name, str(value)) for name, value in pairs]


class NfdRenderer:
    """`expiry`: a duration for parse_expiry (`2h`), or None for no expiry directive."""

    def __init__(self, prefix: str = DEFAULT_PREFIX, expiry: Optional[str] = DEFAULT_EXPIRY) -> None:
        problem = prefix_problem(prefix)
        if problem:
            raise ValueError(problem)
        self.prefix = prefix
        self.expiry_seconds = parse_expiry(expiry) if expiry is not None else None

    def render(self, report: Report) -> str:
        return _render(report, self.prefix, self.expiry_seconds)


def _render(report: Report, prefix: str, expiry_seconds: Optional[int] = None) -> str:
    header = [
        f"# kvmready {label_part(report.tool_version)}: Node Feature Discovery labels for target {report.target.value}",
        f"# generated {_CONTROL.sub(' ', report.generated_at)}; rewritten by `kvmready check --format nfd --output <this file>`",
    ]
    if expiry_seconds is not None:
        header.append(f"{EXPIRY_DIRECTIVE}{expiry_time(report.generated_at, expiry_seconds)}")
    lines = []
    seen = set()
    for name, value in labels(report):
        safe_name = label_part(name, MAX_NAME)
        safe_value = label_part(value, MAX_VALUE)
        if safe_name and safe_value and safe_name not in seen:
            seen.add(safe_name)
            lines.append(f"{prefix}/{safe_name}={safe_value}")
    text = "\n".join(header + lines) + "\n"
    while len(text.encode("utf-8")) >= MAX_FILE_BYTES and lines:  # never with real reports
        lines.pop()
        text = "\n".join(header + lines) + "\n"
    return text
