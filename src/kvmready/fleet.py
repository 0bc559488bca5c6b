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
are not validated against the schema here.  A file of up to MAX_FILE_BYTES
is read whole; a larger one can only be JSON Lines, and is read a chunk at a
time (memory bounded by MAX_LINE_BYTES, whatever the file's size).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import stat
import sys
from collections import Counter
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from kvmready.model import Verdict, tool_info
from kvmready.text import clean_text

VERDICTS = tuple(verdict.value for verdict in Verdict)
NOT_READY = tuple(verdict.value for verdict in Verdict if not verdict.is_ready)
MAX_FILE_BYTES = 16 * 1024 * 1024  # one JSON document (a report, an Ansible result) is read whole: at most this
MAX_LINE_BYTES = 16 * 1024 * 1024  # one line of JSON Lines, which are read a chunk at a time, whatever the file's size
CHUNK_BYTES = 1024 * 1024
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
    """An input without a readable report: a file, a line of JSON Lines (`file:N`), or a run of lines (`file:N-M`)."""

    source: str
    error: str
    inputs: int = 1  # the malformed inputs it stands for: a run's lines that are not JSON objects (blank lines aside)


class NotAReport(ValueError):
    """A document that holds no kvmready report; the message says what it is instead."""


# The malformed inputs listed by name; all of them are counted.
MAX_MALFORMED_LISTED = 1000


class Summary(NamedTuple):
    """What a fleet adds up to: counters, the hosts that are not ready, and the malformed inputs.

    Memory grows with the hosts that are not ready (each is listed), not with
    the number of reports read.
    """

    files: int
    reports: int
    verdict_counts: Mapping[str, int]
    target_counts: Mapping[str, int]
    failing: Mapping[str, int]  # check id -> hosts where it failed
    not_ready_entries: Tuple[Entry, ...]
    malformed: Tuple[Malformed, ...]  # the first MAX_MALFORMED_LISTED, in reading order
    malformed_count: int  # their inputs, and those not listed

    @classmethod
    def of(cls, files: int, entries: Iterable[Entry], malformed: Iterable[Malformed] = ()) -> Summary:
        tally = Tally()
        tally.files = files
        for entry in entries:
            tally.add(entry)
        for bad in malformed:
            tally.add_malformed(bad)
        return tally.summary()

    @property
    def verdicts(self) -> Dict[str, int]:
        counts = dict(self.verdict_counts)
        ordered = {verdict: counts.pop(verdict, 0) for verdict in VERDICTS}
        ordered.update(sorted(counts.items()))  # a verdict from a newer kvmready, kept as is
        return ordered

    @property
    def targets(self) -> Dict[str, int]:
        return dict(sorted(self.target_counts.items()))

    @property
    def malformed_omitted(self) -> int:
        return self.malformed_count - sum(bad.inputs for bad in self.malformed)

    def failing_checks(self, top: Optional[int] = None) -> List[Tuple[str, int]]:
        """(check id, hosts where it failed), the most common first."""
        ranked = sorted(self.failing.items(), key=lambda item: (-item[1], item[0]))
        return ranked if top is None else ranked[:top]

    def not_ready(self) -> List[Entry]:
        return sorted(self.not_ready_entries, key=lambda e: (e.host, e.source))

    def to_dict(self, top: Optional[int] = None, version: Optional[str] = None) -> Dict[str, Any]:
        if version is None:
            from kvmready import __version__

            version = __version__
        return {
            "schema_version": 1,
            "kind": "fleet_summary",
            "tool": tool_info(version),
            "inputs": {"files": self.files, "reports": self.reports, "malformed": self.malformed_count},
            "hosts": self.reports,
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
            "malformed": [
                {"source": clean_text(bad.source), "error": clean_text(bad.error), "inputs": bad.inputs} for bad in self.malformed
            ],
            "malformed_omitted": self.malformed_omitted,
        }


class Tally:
    """Adds reports up one at a time: counters, not-ready hosts, the first malformed inputs."""

    def __init__(self) -> None:
        self.files = 0
        self.reports = 0
        self.verdicts: Counter[str] = Counter()
        self.targets: Counter[str] = Counter()
        self.failing: Counter[str] = Counter()
        self.not_ready: List[Entry] = []
        self.malformed: List[Malformed] = []
        self.malformed_count = 0

    def add(self, entry: Entry) -> None:
        self.reports += 1
        self.verdicts[entry.verdict] += 1
        self.targets[entry.target or "unknown"] += 1
        self.failing.update(entry.failing)
        if entry.verdict in NOT_READY:
            self.not_ready.append(entry._replace(failing=()))  # the counts have them

    def add_malformed(self, bad: Malformed) -> None:
        self.malformed_count += bad.inputs
        if len(self.malformed) < MAX_MALFORMED_LISTED:
            self.malformed.append(bad)

    def summary(self) -> Summary:
        return Summary(
            files=self.files,
            reports=self.reports,
            verdict_counts=dict(self.verdicts),
            target_counts=dict(self.targets),
            failing=dict(self.failing),
            not_ready_entries=tuple(self.not_ready),
            malformed=tuple(self.malformed),
            malformed_count=self.malformed_count,
        )


def _optional_text(value: Optional[str]) -> Optional[str]:
    return None if value is None else clean_text(value)


# -- reading -------------------------------------------------------------------


def iter_files(paths: Iterable[str]) -> Iterator[Tuple[str, Optional[str]]]:
    """(path, problem): every file under `paths`, sorted per directory; problem is set when a path is unusable.

    A directory that cannot be listed (permission denied, gone while walking) is one such path, with the
    reason: skipping it would make its reports vanish without a word.
    """
    for path in paths:
        if path == STDIN:
            yield path, None
            continue
        try:
            is_directory = stat.S_ISDIR(os.stat(path).st_mode)
        except OSError as error:  # os.path.exists would call a path under an unreadable directory missing
            missing = error.errno in (errno.ENOENT, errno.ENOTDIR)
            yield path, "no such file or directory" if missing else f"cannot read: {error.strerror or error}"
            continue
        if not is_directory:
            yield path, None
            continue
        unreadable: List[OSError] = []
        for directory, subdirs, names in os.walk(path, onerror=unreadable.append):
            yield from _unreadable_directories(unreadable)
            subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
            for name in sorted(names):
                if not name.startswith("."):
                    yield os.path.join(directory, name), None
        yield from _unreadable_directories(unreadable)


def _unreadable_directories(errors: List[OSError]) -> Iterator[Tuple[str, str]]:
    """The directories os.walk could not list (its onerror collects them), with why; empties `errors`."""
    for error in errors:
        yield str(error.filename), f"cannot read the directory: {error.strerror or error}"
    errors.clear()


def _display_name(path: str) -> str:
    """The host name a report without one gets: its file name, without .json/.jsonl."""
    if path == STDIN:
        return "stdin"
    name = os.path.basename(path.rstrip(os.sep)) or path
    for suffix in (".jsonl", ".json"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def unwrap(document: Any) -> Dict[str, Any]:
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
            inner = _parse(stdout)
        except ValueError as error:
            raise NotAReport(f"the Ansible task's stdout is not JSON: {error}") from None
        return unwrap(inner)
    if document.get("unreachable"):
        raise NotAReport(f"Ansible: host unreachable: {str(document.get('msg', ''))[:300]}")
    if document.get("failed") or "msg" in document:
        raise NotAReport(f"Ansible: task failed: {str(document.get('msg', ''))[:300]}")
    raise NotAReport("a JSON object without a kvmready verdict")


def entry_of(report: Dict[str, Any], source: str, fallback_host: str) -> Entry:
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
    # An entry that is not an object (or lacks status or id) is skipped on purpose, not counted as malformed: it
    # names no check that failed, the verdict the summary counts stands without it, and `malformed` means an
    # input with no readable report, which this report is not.  kvmready never writes one (the schema forbids it).
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


def _first_reason(report: Dict[str, Any], checks: List[Any]) -> Tuple[Optional[str], Optional[str]]:
    """The first check behind the verdict and its summary."""
    by_id = {check["id"]: check for check in checks if isinstance(check, dict) and isinstance(check.get("id"), str)}
    reasons = report.get("reasons")
    if isinstance(reasons, list) and reasons and isinstance(reasons[0], str):
        summary = (by_id.get(reasons[0]) or {}).get("summary")
        return reasons[0], summary if isinstance(summary, str) else None
    for status in ("fail", "error"):  # an older or hand-made report without reasons
        for check_id, check in by_id.items():
            if check.get("severity") == "required" and check.get("status") == status:
                summary = check.get("summary")
                return check_id, summary if isinstance(summary, str) else None
    error = report.get("error")
    if isinstance(error, str) and error:
        return None, f"kvmready failed: {error}"
    return None, None


Item = Union[Entry, Malformed]
# kvmready's own jsonl: the check lines before a report line; more than this is not a report.
MAX_PENDING_CHECK_LINES = 10000


def _parse(text: Union[str, bytes]) -> Any:
    """json.loads that fails with ValueError only (deep nesting raises RecursionError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _item(document: Any, source: str, fallback_host: str, pending: Optional[List[Dict[str, Any]]] = None) -> Item:
    """The Entry of one document, or why it is none; never an exception, whatever the document holds."""
    try:
        report = unwrap(document)
        if pending is not None and report.get("type") == "report" and "checks" not in report:
            report = dict(report, checks=pending)
        return entry_of(report, source, fallback_host)
    except NotAReport as error:
        return Malformed(source, str(error))
    except Exception as error:  # a shape no rule above foresaw: this input, not the whole summary
        return Malformed(source, f"unreadable report ({type(error).__name__}: {error})")


def _parse_line(raw: bytes) -> Any:
    """One line of JSON Lines, decoded on its own: a stray byte that is not UTF-8 spoils that line only."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8: byte 0x{raw[error.start]:02x} at column {error.start + 1}") from None
    try:
        return _parse(text)
    except ValueError as error:
        raise ValueError(f"not JSON: {error}") from None


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit} bytes"


def _read_head(read: Callable[[int], bytes], first: int) -> bytes:
    """Up to MAX_FILE_BYTES + 1 bytes: a file that fits is read whole (first: the size to ask for at once)."""
    parts = []
    room = MAX_FILE_BYTES + 1
    want = first
    while room > 0:
        chunk = read(min(want, room))
        if not chunk:
            break
        parts.append(chunk)
        room -= len(chunk)
        want = CHUNK_BYTES
    return parts[0] if len(parts) == 1 else b"".join(parts)


_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark, which some Windows tools write first: skipped


def _chunks(head: bytes, read: Optional[Callable[[int], bytes]] = None) -> Iterator[bytes]:
    """`head` a chunk at a time, then what `read` still gives."""
    size = min(CHUNK_BYTES, MAX_LINE_BYTES)  # so that only a line begun in earlier chunks can be over-long
    for start in range(len(_BOM) if head.startswith(_BOM) else 0, len(head), size):
        yield head[start : start + size]
    head = b""  # read_items let go of it too: only the chunk in hand stays in memory
    while read is not None:
        chunk = read(size)
        if not chunk:
            return
        yield chunk


# A line that may hold a JSON object: the only kind json.loads is asked about.
_OBJECT_START = re.compile(rb"^[ \t\r]*\{", re.MULTILINE)
_BLANKS = b" \t\r\f\v"  # with the newline, what bytes.strip() strips: a line of only these is blank
RawLine = Union[Malformed, Tuple[int, bytes]]


def _not_blank_lines(span: bytes) -> int:
    """How many lines of `span` are not blank, in C: a regular expression matching each line takes 1.2 s over
    8 million lines, this 0.03 s.  With the blanks deleted, a blank line is an empty one, and runs of newlines
    squeezed to one leave a newline per line that is not blank (but a leading one)."""
    squeezed = span.translate(None, _BLANKS)
    while b"\n\n" in squeezed:
        squeezed = squeezed.replace(b"\n\n", b"\n")
    count = squeezed.count(b"\n")
    if squeezed.startswith(b"\n"):
        count -= 1
    if squeezed and not squeezed.endswith(b"\n"):
        count += 1
    return count


class _Run:
    """Consecutive lines that are not JSON objects (blank lines aside): one malformed entry however many, counted
    by bytes methods in C, not one Python object a line (8 million lines of `1`: 0.3 s, not 24 s)."""

    def __init__(self) -> None:
        self.first = self.last = self.count = 0

    def add(self, span: bytes, number: int) -> None:
        """The lines of `span`, whole lines of which the first is line `number`."""
        count = _not_blank_lines(span)
        if not count:
            return
        if not self.count:
            self.first = number + span.count(b"\n", 0, len(span) - len(span.lstrip()))
        self.last = number + span.count(b"\n", 0, len(span.rstrip()))
        self.count += count

    def flush(self, path: str) -> Iterator[Malformed]:
        if self.count == 1:
            yield Malformed(f"{path}:{self.first}", "not a JSON object")
        elif self.count:
            yield Malformed(f"{path}:{self.first}-{self.last}", f"{self.count} lines that are not JSON objects", self.count)
        self.count = 0


def _raw_lines(chunks: Iterable[bytes], path: str) -> Iterator[RawLine]:
    """(line number, line) of each line that may hold a JSON object (it starts with `{`), read a chunk at a time.
    The lines between them are counted in runs (Malformed, one per run), and a line longer than MAX_LINE_BYTES is
    a Malformed of its own, dropped while read rather than kept whole."""
    number = 1  # the line that `buffer` starts
    buffer = bytearray()
    run = _Run()
    skipping = False  # inside an over-long line: everything up to its newline is dropped
    for chunk in chunks:
        if skipping:
            end = chunk.find(b"\n")
            if end < 0:
                continue
            chunk = chunk[end + 1 :]
            skipping = False
            number += 1
        buffer += chunk
        end = buffer.rfind(b"\n") + 1
        if not end:  # no line ends in this chunk
            if len(buffer) > MAX_LINE_BYTES:
                yield from run.flush(path)
                yield _too_long(path, number)
                buffer.clear()
                skipping = True
            continue
        block = bytes(buffer[:end])
        del buffer[:end]
        yield from _block_lines(block, number, path, run)
        number += block.count(b"\n")
    if buffer and not skipping:
        yield from _block_lines(bytes(buffer), number, path, run)
    yield from run.flush(path)


def _too_long(path: str, number: int) -> Malformed:
    return Malformed(f"{path}:{number}", f"a line longer than {_size(MAX_LINE_BYTES)}")


def _block_lines(block: bytes, number: int, path: str, run: _Run) -> Iterator[RawLine]:
    """The lines of `block` (whole lines; the first is line `number`), as _raw_lines gives them."""
    pos = 0
    end = block.find(b"\n")
    if (end if end >= 0 else len(block)) > MAX_LINE_BYTES:  # a line the earlier chunks began
        yield from run.flush(path)
        yield _too_long(path, number)
        if end < 0:
            return
        pos = end + 1
        number += 1
    for match in _OBJECT_START.finditer(block, pos):
        start = match.start()
        if start > pos:
            run.add(block[pos:start], number)
            number += block.count(b"\n", pos, start)
        end = block.find(b"\n", start)
        if end < 0:
            end = len(block)
        yield from run.flush(path)
        yield _too_long(path, number) if end - start > MAX_LINE_BYTES else (number, block[start:end])
        number += 1
        pos = end + 1
    if pos < len(block):
        run.add(block[pos:], number)


def _lines(chunks: Iterable[bytes], path: str, name: str) -> Iterator[Item]:
    """JSON Lines: reports one a line, or kvmready's jsonl (check lines, then their report line)."""
    pending: List[Dict[str, Any]] = []
    for raw in _raw_lines(chunks, path):
        if isinstance(raw, Malformed):
            yield raw
            continue
        number, line = raw
        source = f"{path}:{number}"
        try:
            document = _parse_line(line)
        except ValueError as error:
            yield Malformed(source, str(error))
            continue
        if isinstance(document, dict) and document.get("type") == "check":
            if len(pending) < MAX_PENDING_CHECK_LINES:
                pending.append(document)
                continue
            yield Malformed(source, f"more than {MAX_PENDING_CHECK_LINES} check lines without a report line")
            pending = []
            continue
        yield _item(document, source, f"{name}:{number}", pending)
        pending = []
    if pending:
        yield Malformed(path, f"{len(pending)} check line(s) without the report line that ends them")


_OBJECT_LINE = re.compile(rb"^[ \t]*\{.*\}[ \t\r]*$", re.MULTILINE)


def _looks_like_json_lines(data: bytes) -> bool:
    """Whether any line is a JSON object of its own (a broken first line must not hide the rest, nor a byte
    that is not UTF-8 on another line)."""
    for match in _OBJECT_LINE.finditer(data):
        try:
            if isinstance(_parse_line(match.group()), dict):
                return True
        except ValueError:
            continue
    return False


def read_items(path: str) -> Iterator[Item]:
    """The reports in one file, and what in it could not be read, one at a time.

    A file of up to MAX_FILE_BYTES is read whole: one JSON document, else JSON Lines.  A larger one can
    only be JSON Lines, and is read a chunk at a time (memory stays bounded by MAX_LINE_BYTES, whatever
    its size), when a line in its first MAX_FILE_BYTES is a JSON object.
    """
    name = _display_name(path)
    fd = None
    try:
        if path == STDIN:
            read: Callable[[int], bytes] = sys.stdin.buffer.read
            first = MAX_FILE_BYTES + 1
        else:
            # os.open/fstat/os.read: a third of the time of open().read(limit) over thousands of small files.
            # O_NONBLOCK so that a FIFO among the inputs cannot hang the run; it is refused below.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise NotAReport("not a regular file")
            read = functools.partial(os.read, fd)
            first = info.st_size + 1
        head = _read_head(read, first)
        if len(head) <= MAX_FILE_BYTES:
            yield from _whole(head, path, name)
        elif _looks_like_json_lines(head):
            chunks = _chunks(head, read)
            head = b""
            yield from _lines(chunks, path, name)
        else:
            yield Malformed(path, f"larger than {_size(MAX_FILE_BYTES)} (the most one JSON document may be), and not "
                                  f"JSON Lines: no line in its first {_size(MAX_FILE_BYTES)} is a JSON object")
    except NotAReport as error:
        yield Malformed(path, str(error))
    except OSError as error:
        yield Malformed(path, f"cannot read: {error.strerror or error}")
    finally:
        if fd is not None:
            os.close(fd)


def _whole(data: bytes, path: str, name: str) -> Iterator[Item]:
    """A file read whole: one JSON document, or JSON Lines."""
    if not data or data.isspace():
        yield Malformed(path, "empty")
        return
    try:
        document = _parse(data)
    except ValueError as error:
        if _looks_like_json_lines(data):
            yield from _lines(_chunks(data), path, name)
        else:
            yield Malformed(path, f"not JSON: {error}")
        return
    yield _item(document, path, name)


def summarize(paths: Sequence[str]) -> Summary:
    tally = Tally()
    for path, problem in iter_files(paths):
        tally.files += 1
        if problem:
            tally.add_malformed(Malformed(path, problem))
            continue
        for item in read_items(path):
            if isinstance(item, Entry):
                tally.add(item)
            else:
                tally.add_malformed(item)
    return tally.summary()
