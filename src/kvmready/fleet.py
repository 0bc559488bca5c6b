"""Summaries over many kvmready reports: `kvmready fleet summarize`.

Pure logic, no CLI; `kvmready.render.fleet` turns a Summary into text.  Inputs are files or directories (walked recursively,
dot-files skipped) holding any of:

- a kvmready JSON report (`kvmready check --format json`);
- JSON Lines: one report per line, or kvmready's own `--format jsonl`
  (`{"type": "check", ...}` lines, then their `{"type": "report", ...}` line);
- an Ansible `--tree` file: the setup module's result, with the fact under
  `ansible_facts.ansible_local.kvmready`, or a `command`/`shell` result whose
  `stdout` is the report (a not-ready host exits 1, so Ansible calls the task
  failed; its stdout is still read).

Anything else is listed as malformed with the reason, never fatal.  The hot
path is one `json.loads` per file and a few dict look-ups per check; reports
are not validated against the schema here.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections import Counter
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from kvmready.text import clean_text

VERDICTS = ("ready", "ready_with_warnings", "not_ready", "indeterminate")
NOT_READY = ("not_ready", "indeterminate")
MAX_FILE_BYTES = 16 * 1024 * 1024
STDIN = "-"


class Entry(NamedTuple):
    """One report, reduced to what the summary needs."""

    host: str
    source: str
    target: Optional[str]
    verdict: str
    reason: Optional[str]  # the first check behind the verdict
    reason_summary: Optional[str]
    failing: Tuple[str, ...]  # ids of the checks that ended in `fail`


class Malformed(NamedTuple):
    source: str
    error: str


class NotAReport(ValueError):
    """A document that holds no kvmready report; the message says what it is instead."""


class Summary(NamedTuple):
    files: int
    entries: Tuple[Entry, ...]
    malformed: Tuple[Malformed, ...]

    @property
    def verdicts(self) -> Dict[str, int]:
        counts = Counter(entry.verdict for entry in self.entries)
        ordered = {verdict: counts.pop(verdict, 0) for verdict in VERDICTS}
        ordered.update(sorted(counts.items()))  # a verdict from a newer kvmready, kept as is
        return ordered

    @property
    def targets(self) -> Dict[str, int]:
        return dict(sorted(Counter(entry.target or "unknown" for entry in self.entries).items()))

    def failing_checks(self, top: Optional[int] = None) -> List[Tuple[str, int]]:
        """(check id, hosts where it failed), the most common first."""
        counts = Counter(check_id for entry in self.entries for check_id in entry.failing)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return ranked if top is None else ranked[:top]

    def not_ready(self) -> List[Entry]:
        return sorted((e for e in self.entries if e.verdict in NOT_READY), key=lambda e: (e.host, e.source))

    def to_dict(self, top: Optional[int] = None, version: Optional[str] = None) -> dict:
        if version is None:
            from kvmready import __version__ as version
        return {
            "schema_version": 1,
            "kind": "fleet_summary",
            "tool": {"name": "kvmready", "version": version},
            "inputs": {"files": self.files, "reports": len(self.entries), "malformed": len(self.malformed)},
            "hosts": len(self.entries),
            "verdicts": {clean_text(verdict): count for verdict, count in self.verdicts.items()},
            "targets": {clean_text(target): count for target, count in self.targets.items()},
            "failing_checks": [{"id": clean_text(check_id), "hosts": hosts} for check_id, hosts in self.failing_checks(top)],
            "not_ready": [
                {
                    "host": clean_text(entry.host),
                    "verdict": clean_text(entry.verdict),
                    "target": _optional_text(entry.target),
                    "reason": _optional_text(entry.reason),
                    "summary": _optional_text(entry.reason_summary),
                    "source": clean_text(entry.source),
                }
                for entry in self.not_ready()
            ],
            "malformed": [{"source": clean_text(bad.source), "error": clean_text(bad.error)} for bad in sorted(self.malformed)],
        }


def _optional_text(value: Optional[str]) -> Optional[str]:
    return None if value is None else clean_text(value)


# -- reading -------------------------------------------------------------------


def iter_files(paths: Iterable[str]) -> Iterator[Tuple[str, Optional[str]]]:
    """(path, problem): every file under `paths`, sorted per directory; problem is set when a path is unusable."""
    for path in paths:
        if path == STDIN:
            yield path, None
        elif os.path.isdir(path):
            for directory, subdirs, names in os.walk(path):
                subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
                for name in sorted(names):
                    if not name.startswith("."):
                        yield os.path.join(directory, name), None
        elif os.path.exists(path):
            yield path, None
        else:
            yield path, "no such file or directory"


def _read(path: str) -> bytes:
    if path == STDIN:
        return sys.stdin.buffer.read()
    # os.open/fstat/os.read: a third of the time of open().read(limit) over thousands of small files.
    # O_NONBLOCK so that a FIFO among the inputs cannot hang the run; it is refused below.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotAReport("not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise NotAReport(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        parts = []
        room = MAX_FILE_BYTES + 1
        want = info.st_size + 1
        while room > 0:
            chunk = os.read(fd, min(want, room))
            if not chunk:
                break
            parts.append(chunk)
            room -= len(chunk)
            want = 1024 * 1024
    finally:
        os.close(fd)
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    if len(data) > MAX_FILE_BYTES:
        raise NotAReport(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    return data


def _display_name(path: str) -> str:
    """The host name a report without one gets: its file name, without .json/.jsonl."""
    if path == STDIN:
        return "stdin"
    name = os.path.basename(path.rstrip(os.sep)) or path
    for suffix in (".jsonl", ".json"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def unwrap(document: Any) -> dict:
    """The kvmready report inside `document` (a report, an Ansible tree result), or NotAReport."""
    if not isinstance(document, dict):
        raise NotAReport(f"a JSON {type(document).__name__}, not a kvmready report")
    if "verdict" in document and "schema_version" in document:
        return document
    facts = document.get("ansible_facts")
    local = facts.get("ansible_local") if isinstance(facts, dict) else document.get("ansible_local")
    if isinstance(local, dict):
        fact = local.get("kvmready")
        if fact is None:
            raise NotAReport("Ansible facts without ansible_local.kvmready (is kvmready.fact installed and executable?)")
        if not isinstance(fact, dict):
            raise NotAReport(f"the Ansible fact failed: {str(fact)[:300]}")
        return unwrap(fact)
    stdout = document.get("stdout")
    if isinstance(stdout, str) and stdout.strip():
        try:
            inner = json.loads(stdout)
        except ValueError as error:
            raise NotAReport(f"the Ansible task's stdout is not JSON: {error}") from None
        return unwrap(inner)
    if document.get("unreachable"):
        raise NotAReport(f"Ansible: host unreachable: {str(document.get('msg', ''))[:300]}")
    if document.get("failed") or "msg" in document:
        raise NotAReport(f"Ansible: task failed: {str(document.get('msg', ''))[:300]}")
    raise NotAReport("a JSON object without a kvmready verdict")


def entry_of(report: dict, source: str, fallback_host: str) -> Entry:
    verdict = report.get("verdict")
    if not isinstance(verdict, str) or not verdict:
        raise NotAReport("the report has no verdict")
    host = report.get("host")
    hostname = host.get("hostname") if isinstance(host, dict) else None
    checks = report.get("checks")
    if checks is None:
        checks = []
    if not isinstance(checks, list):
        raise NotAReport("the report's checks are not a list")
    failing = []
    for check in checks:  # the hot loop: ten thousand reports of some thirty checks
        try:
            if check["status"] == "fail":
                check_id = check["id"]
                if isinstance(check_id, str):
                    failing.append(check_id)
        except (KeyError, TypeError):
            continue
    reason = summary = None
    if verdict in NOT_READY:  # only the not-ready list shows a reason
        reason, summary = _first_reason(report, checks)
    target = report.get("target")
    return Entry(
        host=hostname if isinstance(hostname, str) and hostname else fallback_host,
        source=source,
        target=target if isinstance(target, str) else None,
        verdict=verdict,
        reason=reason,
        reason_summary=summary,
        failing=tuple(failing),
    )


def _first_reason(report: dict, checks: list) -> Tuple[Optional[str], Optional[str]]:
    """The first check behind the verdict and its summary."""
    by_id = {check.get("id"): check for check in checks if isinstance(check, dict)}
    reasons = report.get("reasons")
    if isinstance(reasons, list) and reasons and isinstance(reasons[0], str):
        summary = (by_id.get(reasons[0]) or {}).get("summary")
        return reasons[0], summary if isinstance(summary, str) else None
    for status in ("fail", "error"):  # an older or hand-made report without reasons
        for check_id, check in by_id.items():
            if isinstance(check_id, str) and check.get("severity") == "required" and check.get("status") == status:
                summary = check.get("summary")
                return check_id, summary if isinstance(summary, str) else None
    error = report.get("error")
    if isinstance(error, str) and error:
        return None, f"kvmready failed: {error}"
    return None, None


def _lines(text: str, path: str, name: str) -> Tuple[List[Entry], List[Malformed]]:
    """JSON Lines: reports one a line, or kvmready's jsonl (check lines, then their report line)."""
    entries: List[Entry] = []
    malformed: List[Malformed] = []
    pending: List[dict] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        source = f"{path}:{number}"
        try:
            document = json.loads(line)
        except ValueError as error:
            malformed.append(Malformed(source, f"not JSON: {error}"))
            continue
        if isinstance(document, dict) and document.get("type") == "check":
            pending.append(document)
            continue
        try:
            report = unwrap(document)
            if report.get("type") == "report" and "checks" not in report:
                report = dict(report, checks=pending)
            pending = []
            entries.append(entry_of(report, source, f"{name}:{number}"))
        except NotAReport as error:
            malformed.append(Malformed(source, str(error)))
    if pending:
        malformed.append(Malformed(path, f"{len(pending)} check line(s) without the report line that ends them"))
    return entries, malformed


def read_file(path: str) -> Tuple[List[Entry], List[Malformed]]:
    """The reports in one file, and what in it could not be read."""
    name = _display_name(path)
    try:
        data = _read(path)
    except NotAReport as error:
        return [], [Malformed(path, str(error))]
    except OSError as error:
        return [], [Malformed(path, f"cannot read: {error.strerror or error}")]
    if not data.strip():
        return [], [Malformed(path, "empty")]
    try:
        document = json.loads(data)
    except ValueError as error:
        # JSON Lines, when the first line is a JSON document of its own; else one broken file.
        try:
            text = data.decode("utf-8")
            first = text.lstrip().split("\n", 1)[0]
            json.loads(first)
        except ValueError:  # UnicodeDecodeError included
            return [], [Malformed(path, f"not JSON: {error}")]
        return _lines(text, path, name)
    try:
        return [entry_of(unwrap(document), path, name)], []
    except NotAReport as error:
        return [], [Malformed(path, str(error))]


def summarize(paths: Sequence[str]) -> Summary:
    entries: List[Entry] = []
    malformed: List[Malformed] = []
    files = 0
    for path, problem in iter_files(paths):
        files += 1
        if problem:
            malformed.append(Malformed(path, problem))
            continue
        found, bad = read_file(path)
        entries.extend(found)
        malformed.extend(bad)
    return Summary(files, tuple(entries), tuple(malformed))
