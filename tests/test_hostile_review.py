"""Issue 12, the hostile review: one regression test (or group) per finding, in process.

Each test reproduces the input the review used and asserts what users
expect instead; each fails if its fix is reverted (the docstrings say how).
The findings that need a real process (closed or full stdout, early
readers, signals, a FIFO on --snapshot, stdin) are in
tests/test_hostile_review_processes.py.

Refusals are held to the CLI's contract: exit 2, exactly one line on stderr
(`kvmready: error: ...`), nothing on stdout, and the path left as it was.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import stat
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
from fakes import FakeKvmBackend, FakeLiveSystem
from helpers import NOBODY, run_as_nobody, run_cli
from hostile import TOLERATED, base_files, base_manifest, snapshot_archive
from prometheus_client.parser import text_string_to_metric_families
from treebuilder import Tree, intel_desktop, kvm_guest, make_facts, pvm_host, run_check

from kvmready import fleet, orchestration, snapshot
from kvmready.facts.live import LiveSystem
from kvmready.model import Status, Target
from kvmready.render import OutputFormat

EACCES = "Permission denied (EACCES)"
TEMPORARY = re.compile(r"^\..*\.tmp$")  # outfile's temporary dot-files


# -- shared assertions ------------------------------------------------------------------------


def assert_refused(result: Any, pattern: str = "") -> None:
    """Exit 2, one `kvmready: error:` line on stderr matching `pattern`, nothing on stdout (so no traceback)."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kvmready: error: "), result.stderr
    assert re.search(pattern, lines[0]), lines[0]


def temporary_files(directory: Path) -> List[str]:
    return [name for name in os.listdir(directory) if TEMPORARY.match(name)]


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (chown, mknod, dropping to nobody)")


# -- 1. -o FILE: only ever a regular file --------------------------------------------------------

MINIMAL_REPORT = {"schema_version": 1, "verdict": "ready", "target": "workstation", "host": {"hostname": "web-1"}, "checks": []}


def _json_output(data: bytes) -> bool:
    return isinstance(json.loads(data), dict)


def _gzip_output(data: bytes) -> bool:
    return data[:2] == b"\x1f\x8b"


@pytest.fixture(params=["check", "snapshot", "fleet summarize"])
def writer(request, tmp_path, monkeypatch):
    """(run(output) -> Result, is_valid(bytes) -> bool): a command that takes -o, on a host the test owns."""
    command = request.param
    tree = intel_desktop()
    if command == "check":
        return (lambda output: run_cli(["check", "--format", "json", "-o", output], facts_factory=lambda: make_facts(tree))), _json_output
    if command == "snapshot":
        capture = orchestration.capture_snapshot
        monkeypatch.setattr(orchestration, "capture_snapshot",
                            lambda vm_dir: capture(vm_dir, live_system=FakeLiveSystem(), root_host=tree.host()))
        return (lambda output: run_cli(["snapshot", "-o", output])), _gzip_output
    report = tmp_path / "inputs" / "web-1.json"
    report.parent.mkdir()
    report.write_text(json.dumps(MINIMAL_REPORT))
    return (lambda output: run_cli(["fleet", "summarize", "--format", "json", str(report), "-o", output])), _json_output


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.close()  # the socket file stays


def _char_device(path: Path) -> None:
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a second /dev/null, in tmp_path
    except PermissionError:
        pytest.skip("mknod needs root (CAP_MKNOD)")


def _directory(path: Path) -> None:
    path.mkdir()
    (path / "inside").write_text("kept\n")


NODES = {"fifo": (_fifo, stat.S_ISFIFO, "a FIFO"), "socket": (_socket, stat.S_ISSOCK, "a socket"),
         "char-device": (_char_device, stat.S_ISCHR, "a character device"), "directory": (_directory, stat.S_ISDIR, "a directory")}


@pytest.mark.parametrize("kind", sorted(NODES))
@pytest.mark.parametrize("through_a_link", [False, True], ids=["direct", "via-symlink"])
def test_output_refuses_a_node_that_is_not_a_regular_file(writer, tmp_path, kind, through_a_link):
    """Reverted, os.replace puts a regular file where the FIFO/socket/device/directory was (or fails with a traceback)."""
    run, _ = writer
    make, still, words = NODES[kind]
    work = tmp_path / "out"
    work.mkdir()
    node = work / "node"
    make(node)
    before = os.lstat(node)
    target = node
    if through_a_link:
        target = work / "link"
        target.symlink_to(node.name)
    assert_refused(run(str(target)), rf"{re.escape(str(target))}.* is {words}; -o writes regular files only")
    after = os.lstat(node)
    assert still(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert not through_a_link or os.readlink(target) == node.name
    if kind == "directory":
        assert os.listdir(node) == ["inside"]
    assert temporary_files(work) == []


def test_output_refuses_dev_null_and_leaves_it_a_device(writer):
    """`-o /dev/null` as root: reverted, the machine's /dev/null becomes a regular file."""
    needs_root()
    run, _ = writer
    before = os.stat("/dev/null")
    assert_refused(run("/dev/null"), r"/dev/null is a character device")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev == os.makedev(1, 3)
    assert temporary_files(Path("/dev")) == []


def test_output_writes_through_a_symlink_and_keeps_the_link(writer, tmp_path):
    """Reverted, the rename lands on the link's name: the link becomes a file and the target keeps its old content."""
    run, is_valid = writer
    work = tmp_path / "out"
    (work / "real").mkdir(parents=True)
    target = work / "real" / "report"
    target.write_text("old\n")
    link = work / "link"
    link.symlink_to("real/report")
    result = run(str(link))
    assert result.exit_code != 2 and "Traceback" not in result.stderr, result.stderr
    assert link.is_symlink() and os.readlink(link) == "real/report"
    assert is_valid(target.read_bytes())
    assert temporary_files(work) == [] and temporary_files(work / "real") == []


def test_output_to_a_dangling_symlink_creates_its_target(writer, tmp_path):
    run, is_valid = writer
    link = tmp_path / "link"
    link.symlink_to("made-now")
    result = run(str(link))
    assert result.exit_code != 2, result.stderr
    assert link.is_symlink() and is_valid((tmp_path / "made-now").read_bytes())


def test_output_keeps_an_existing_files_mode_and_owner(writer, tmp_path):
    """Reverted (mkstemp's 0600 and root's ownership renamed over it), the file turns 0600 root:root."""
    needs_root()
    run, is_valid = writer
    target = tmp_path / "report"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    os.chown(target, 1234, 1234)
    result = run(str(target))
    assert result.exit_code != 2, result.stderr
    after = os.stat(target)
    assert (stat.S_IMODE(after.st_mode), after.st_uid, after.st_gid) == (0o640, 1234, 1234)
    assert is_valid(target.read_bytes())
    assert temporary_files(tmp_path) == []


def test_a_new_output_file_honours_the_umask(writer, tmp_path):
    """Reverted, a new file is mkstemp's 0600 whatever the umask."""
    run, is_valid = writer
    target = tmp_path / "report"
    old = os.umask(0o027)
    try:
        result = run(str(target))
    finally:
        os.umask(old)
    assert result.exit_code != 2, result.stderr
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert is_valid(target.read_bytes())
    assert temporary_files(tmp_path) == []


@pytest.mark.parametrize("name", ["-", "/dev/stdout"])
def test_output_dash_and_dev_stdout_mean_standard_output(writer, tmp_path, monkeypatch, name):
    """Reverted, `-o -` writes a file named `-` and `-o /dev/stdout` renames a file over the stdout node."""
    run, is_valid = writer
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    result = run(name)
    assert result.exit_code != 2, result.stderr
    assert is_valid(result.stdout_bytes)
    assert set(os.listdir(tmp_path)) == before


@pytest.mark.parametrize(("name", "pattern"), [
    ("", r"-o got an empty path"),
    ("new/", r"new/ ends with /, which names a directory"),
    ("existing/", r"existing/ ends with /, which names a directory"),
])
def test_output_refuses_an_empty_path_or_one_that_ends_with_a_slash(writer, tmp_path, monkeypatch, name, pattern):
    """Reverted, `-o ''` wrote to standard output (a binary snapshot onto the terminal), `-o new/` created a file
    `new` and `-o existing/` replaced the file `existing`."""
    run, _ = writer
    monkeypatch.chdir(tmp_path)
    (tmp_path / "existing").write_text("kept\n")
    before = set(os.listdir(tmp_path))
    result = run(name)
    assert_refused(result, pattern)
    assert result.stdout_bytes == b""
    assert set(os.listdir(tmp_path)) == before and (tmp_path / "existing").read_text() == "kept\n"


def test_a_signal_inside_mkstemp_leaves_no_temporary_file(tmp_path, monkeypatch):
    """Reverted (mkstemp outside the signal hold), Ctrl-C while mkstemp's open was in flight raised before the
    temporary file's name was known, and the file stayed."""
    import signal as signal_module

    from kvmready import outfile

    real_mkstemp = tempfile.mkstemp

    def interrupted_mkstemp(*args, **kwargs):
        created = real_mkstemp(*args, **kwargs)
        os.kill(os.getpid(), signal_module.SIGINT)  # arrives as the file exists, before mkstemp returns
        return created

    monkeypatch.setattr(tempfile, "mkstemp", interrupted_mkstemp)
    previous = signal_module.signal(signal_module.SIGINT, signal_module.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            outfile.write_atomically(str(tmp_path / "out.json"), "{}\n")
    finally:
        signal_module.signal(signal_module.SIGINT, previous)
    assert os.listdir(tmp_path) == []


# -- 2. host text is not rich markup -----------------------------------------------------------------

BRACKETED = [
    ("os_name", "Acme Linux 3 [/usr merged]"),
    ("hostname", "a[/]b"),
    ("hostname", "[bold]x[/bold]"),
    ("kernel", "6.8.0-45-[bold]x[/bold]"),
    ("render", "[testing]"),
]


@pytest.mark.parametrize(("knob", "value"), BRACKETED, ids=[f"{knob}={value}" for knob, value in BRACKETED])
def test_table_shows_bracketed_host_text_literally(knob, value):
    """Reverted (markup on), `[/]` raises rich's MarkupError, `[bold]x[/bold]` prints as `x`, `[testing]` vanishes."""
    tree = intel_desktop(**{knob: value})
    wide = {"COLUMNS": "400"}  # no folding: the text must appear whole
    table = run_cli(["check", "--format", "table"], facts_factory=lambda: make_facts(tree), env=wide)
    as_json = run_cli(["check", "--format", "json"], facts_factory=lambda: make_facts(tree), env=wide)
    assert table.stderr == "" and "Traceback" not in table.stdout
    assert value in table.stdout
    assert table.exit_code == as_json.exit_code == json.loads(as_json.stdout)["exit_code"]


# -- 3. nothing to check is a usage error -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--skip", "*"], r"leaves no check to run"),
        (["--only", "kvm.*", "--skip", "kvm.*"], r"leaves no check to run"),
        (["--only", ""], r"--only got an empty name"),
        (["--only", ","], r"--only got an empty name"),
        (["--skip", ""], r"--skip got an empty name"),
        (["--strict", "--exit-zero"], r"--strict and --exit-zero exclude each other"),
    ],
    ids=["skip-everything", "only-and-skip-cancel", "only-empty", "only-comma", "skip-empty", "strict-and-exit-zero"],
)
def test_selections_that_check_nothing_are_usage_errors(args, pattern):
    """Reverted, these ran zero (or all) checks and printed a verdict: `ready` after checking nothing."""
    assert_refused(run_cli(["check", "--format", "json", *args], facts_factory=lambda: make_facts(intel_desktop())), pattern)


def test_a_selection_whose_every_check_skips_is_indeterminate_not_ready(tmp_path):
    """Reverted, `--only kvm.guest` on a --root tree skipped its one check and said READY, exit 0."""
    root = str(intel_desktop().write(tmp_path / "tree"))
    result = run_cli(["check", "--root", root, "--only", "kvm.guest", "--format", "json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 3
    assert report["verdict"] == "indeterminate" and report["reasons"] == ["kvm.guest"]
    table = run_cli(["check", "--root", root, "--only", "kvm.guest"], env={"COLUMNS": "100"})
    assert "INDETERMINATE" in table.stdout and "Nothing was checked: every selected check skipped or could not run" in table.stdout
    # A required check that could not be observed keeps it undecided beside one that was; alone, the other decides.
    assert run_cli(["check", "--root", root, "--only", "kvm.guest,kvm.module"]).exit_code == 3
    assert run_cli(["check", "--root", root, "--only", "kvm.module"]).exit_code == 0


# -- 5. terminal escapes never reach a human format raw; every format survives the hostile corpus ------

ESCAPES = "\x1b]0;pwned\x07\x1b[2J"
HUMAN_FORMATS = ["table", "junit", "prometheus", "nfd"]


def _escaping_tree() -> Tree:
    return intel_desktop(hostname=ESCAPES, os_name=f"Evil {ESCAPES} Linux")


def _escaping_snapshot(tmp_path: Path) -> Path:
    files = base_files()
    files["/proc/sys/kernel/hostname"] = ESCAPES.encode() + b"\n"
    manifest = base_manifest(files)
    manifest["hostname"] = ESCAPES
    path = tmp_path / "escapes.tar.gz"
    path.write_bytes(snapshot_archive(files, manifest))
    return path


def _check_escaping_host(source: str, tmp_path: Path, output_format: str) -> Any:
    if source == "root":
        root = _escaping_tree().write(tmp_path / "tree")
        return run_cli(["check", "--root", str(root), "--format", output_format])
    return run_cli(["check", "--snapshot", str(_escaping_snapshot(tmp_path)), "--format", output_format])


@pytest.mark.parametrize("source", ["root", "snapshot"])
@pytest.mark.parametrize("output_format", HUMAN_FORMATS)
def test_terminal_escapes_in_the_hostname_never_reach_a_human_format(tmp_path, source, output_format):
    """Reverted (no `printable`), the table prints ESC ]0; (a window title) and ESC [2J (clear screen) raw."""
    result = _check_escaping_host(source, tmp_path, output_format)
    assert result.exit_code in (0, 1, 3) and result.stderr == ""
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    if output_format == "table":
        assert r"\x1b]0;pwned\x07\x1b[2J" in result.stdout  # shown, as an escape


@pytest.mark.parametrize("source", ["root", "snapshot"])
def test_json_keeps_the_escaping_hostname_as_data(tmp_path, source):
    result = _check_escaping_host(source, tmp_path, "json")
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout  # JSON escapes them (\u001b)
    assert json.loads(result.stdout)["host"]["hostname"] == ESCAPES


def test_fleet_table_shows_escapes_from_reports_as_text(tmp_path):
    """Host name, target, verdict, check id and summary of a report: every one comes from the report file.

    Found by this test: the `targets:` line printed the target raw (fixed in render/fleet.py).
    """
    report = {
        "schema_version": 1, "verdict": "not_ready", "target": f"work{ESCAPES}station",
        "host": {"hostname": ESCAPES}, "reasons": [f"kvm.{ESCAPES}"],
        "checks": [{"id": f"kvm.{ESCAPES}", "status": "fail", "severity": "required", "summary": f"broke {ESCAPES}"}],
    }
    (tmp_path / "evil.json").write_text(json.dumps(report))
    result = run_cli(["fleet", "summarize", str(tmp_path / "evil.json")])
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert result.stdout.count(r"\x1b]0;pwned\x07") >= 4  # target, check id, host, reason


def _markup_and_control_archive(strings: Dict[str, str]) -> Callable[[], bytes]:
    """The base snapshot with host strings carrying markup, controls and (in the manifest) lone surrogates."""

    def make() -> bytes:
        files = base_files()
        files["/proc/sys/kernel/hostname"] = strings["hostname"].encode("utf-8", "surrogateescape") + b"\n"
        files["/proc/sys/kernel/osrelease"] = strings["release"].encode("utf-8", "surrogateescape") + b"\n"
        files["/etc/os-release"] = f'ID=acme\nPRETTY_NAME="{strings["os"]}"\n'.encode("utf-8", "surrogateescape")
        files["/proc/modules"] += f"{strings['module']} 16384 0 - Live 0x0\n".encode("utf-8", "surrogateescape")
        manifest = base_manifest(files)
        manifest["hostname"] = strings["hostname"]
        manifest["read_errors"]["/sys/hypervisor/type"] = strings["reason"]
        manifest["read_errors"]["/proc/sys/kernel/arch"] = strings["reason"]
        return snapshot_archive(files, manifest)

    return make


MARKUP_CASES = {
    "brackets": {"hostname": "a[/]b", "release": "6.8.0-[bold]x[/bold]", "os": "Acme [/usr merged]",
                 "module": "[testing]", "reason": "denied [red]really[/red] (EACCES)"},
    "controls": {"hostname": "h\x1b]0;pwned\x07st", "release": "6.8.0-\x1b[2J", "os": "Acme \x00 NUL \x07 BEL",
                 "module": "m\x1bod", "reason": "denied \x1b[31m\x00 (EACCES)"},
    "surrogates": {"hostname": "h\udcffst[/]", "release": "6.8.0-\udcfe", "os": "Acme \udcff",
                   "module": "mod\udcff", "reason": "denied \ud800\udcff (EACCES)"},
}


def _corpus() -> Dict[str, Callable[[], bytes]]:
    makers = {f"tolerated-{case.name}": case.make for case in TOLERATED if case.make is not None}
    makers.update({f"markup-{name}": _markup_and_control_archive(strings) for name, strings in MARKUP_CASES.items()})
    return makers


CORPUS = _corpus()


def _assert_valid(output_format: OutputFormat, text: str) -> None:
    text.encode("utf-8")  # writable as UTF-8: no lone surrogate left
    if output_format is OutputFormat.JSON:
        json.loads(text)
    elif output_format is OutputFormat.JSONL:
        for line in text.splitlines():
            json.loads(line)
    elif output_format is OutputFormat.JUNIT:
        ET.fromstring(text.encode("utf-8"))
    elif output_format is OutputFormat.PROMETHEUS:
        assert list(text_string_to_metric_families(text))
    else:
        assert "\x1b" not in text and "\x07" not in text and "\x00" not in text


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_hostile_corpus_renders_in_every_format(tmp_path, name):
    """Archives the reader accepts, with markup, controls and surrogates in host strings: every format, for both targets."""
    path = tmp_path / f"{name}.tar.gz"
    path.write_bytes(CORPUS[name]())
    facts, _ = orchestration.open_snapshot(str(path))
    for target in Target:
        report = orchestration.check(facts, target)
        for output_format in OutputFormat:
            text = output_format.renderer(width=100).render(report)
            _assert_valid(output_format, text)


@pytest.mark.parametrize("name", sorted(f"markup-{case}" for case in MARKUP_CASES))
def test_the_hostile_corpus_through_the_cli_table(tmp_path, name):
    path = tmp_path / f"{name}.tar.gz"
    path.write_bytes(CORPUS[name]())
    result = run_cli(["check", "--snapshot", str(path)])
    assert result.exit_code in (0, 1, 3) and result.stderr == ""
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout and "\x00" not in result.stdout


# -- 6. fleet summarize: malformed inputs are listed, never the end of the run ---------------------------


def _report_line(hostname: str, verdict: str = "ready") -> str:
    return json.dumps({**MINIMAL_REPORT, "verdict": verdict, "host": {"hostname": hostname}})


def test_fleet_lists_each_malformed_input_and_counts_the_rest(tmp_path):
    """Reverted: deep nesting ended the run with RecursionError, a list as a check id with TypeError
    (unhashable), and a broken first line made the whole JSON Lines file malformed."""
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    id_is_a_list = {**MINIMAL_REPORT, "verdict": "not_ready", "host": {"hostname": "odd-ids"},
                    "checks": [{"id": ["kvm", "device"], "status": "fail"}, {"id": "kvm.device", "status": "fail"}]}
    (tmp_path / "list-id.json").write_text(json.dumps(id_is_a_list))
    (tmp_path / "lines.jsonl").write_text('{"broken": \n' + _report_line("l-2") + "\n" + _report_line("l-3", "not_ready") + "\n")
    (tmp_path / "good.json").write_text(_report_line("good"))
    result = run_cli(["fleet", "summarize", "--format", "json", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "kvmready: 2 malformed input(s), listed in the summary\n"
    summary = json.loads(result.stdout)
    assert summary["inputs"] == {"files": 4, "reports": 4, "malformed": 2}
    assert [bad["source"] for bad in summary["malformed"]] == [str(tmp_path / "deep.json"), f"{tmp_path / 'lines.jsonl'}:1"]
    assert "nested too deeply" in summary["malformed"][0]["error"]
    assert summary["failing_checks"] == [{"id": "kvm.device", "hosts": 1}]
    assert sorted(entry["host"] for entry in summary["not_ready"]) == ["l-3", "odd-ids"]


def test_fleet_deep_nesting_inside_a_json_lines_file_is_one_line(tmp_path):
    deep_line = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (tmp_path / "mixed.jsonl").write_text(_report_line("first") + "\n" + deep_line + "\n" + _report_line("third") + "\n")
    result = run_cli(["fleet", "summarize", "--format", "json", str(tmp_path / "mixed.jsonl")])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["inputs"]["reports"] == 2
    assert [bad["source"] for bad in summary["malformed"]] == [f"{tmp_path / 'mixed.jsonl'}:2"]


def test_fleet_caps_the_malformed_list_and_counts_what_it_leaves_out(tmp_path):
    """Reverted (every malformed input kept), the list grows with the input and `malformed_omitted` is gone."""
    cap = fleet.MAX_MALFORMED_LISTED
    over = 7
    lines = [_report_line("good")] + ["{not json}"] * (cap + over)
    (tmp_path / "many.jsonl").write_text("\n".join(lines) + "\n")
    as_json = run_cli(["fleet", "summarize", "--format", "json", str(tmp_path / "many.jsonl")])
    assert as_json.exit_code == 0, as_json.stderr
    summary = json.loads(as_json.stdout)
    assert summary["inputs"] == {"files": 1, "reports": 1, "malformed": cap + over}
    assert len(summary["malformed"]) == cap and summary["malformed_omitted"] == over
    assert as_json.stderr == f"kvmready: {cap + over} malformed input(s), listed in the summary\n"
    table = run_cli(["fleet", "summarize", str(tmp_path / "many.jsonl")])
    assert f"malformed ({cap + over}):" in table.stdout and f"… and {over} more, not listed" in table.stdout


# -- 7. an unusable --root is one line and exit 2 -------------------------------------------------------


def _as_nobody(args: List[str]) -> Dict[str, Any]:
    """`kvmready ARGS` as nobody/nogroup, in a forked child (helpers.run_as_nobody)."""
    def work() -> Dict[str, Any]:
        result = run_cli(args)
        return {"exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}

    return run_as_nobody(work)


@pytest.fixture
def locked_root() -> Iterator[Path]:
    """A complete host tree in a root-owned 0700 directory that nobody may traverse into (like /proc/1/root)."""
    needs_root()
    base = Path(tempfile.mkdtemp(prefix="kvmready-locked-"))
    try:
        os.chmod(base, 0o755)  # the way there is open; only the root itself is closed
        root = intel_desktop().write(base / "root")
        os.chmod(root, 0o700)
        yield root
    finally:
        shutil.rmtree(base)


def test_an_unreadable_root_is_one_line_and_exit_2(locked_root):
    """Reverted (os.path.isdir only), nobody got past the check and every check errored: exit 3, a page of errors."""
    warm = run_cli(["check", "--root", str(locked_root), "--format", "json"])  # as root: it reads, and imports everything
    assert warm.exit_code in (0, 1)
    payload = _as_nobody(["check", "--root", str(locked_root), "--format", "json"])
    assert payload["uid"] == NOBODY
    assert payload["exit_code"] == 2 and payload["stdout"] == ""
    assert payload["stderr"] == f"kvmready: error: --root {locked_root}: cannot be read: Permission denied (EACCES)\n"


def test_a_root_that_cannot_be_resolved_is_one_line_and_exit_2():
    """/proc/1/root is a magic link that only PID 1's user may follow: realpath() itself raised, a traceback."""
    needs_root()
    payload = _as_nobody(["check", "--root", "/proc/1/root", "--format", "json"])
    assert payload["uid"] == NOBODY
    assert payload["exit_code"] == 2 and payload["stdout"] == ""
    # Python 3.9-3.12's realpath raises on the link (resolved); 3.13's leaves it, and opening it fails (read).
    assert re.fullmatch(r"kvmready: error: --root /proc/1/root: cannot be (resolved|read): Permission denied \(EACCES\)\n",
                        payload["stderr"]), payload["stderr"]


@pytest.mark.parametrize(
    ("root", "pattern"),
    [("", r"--root got an empty path"), ("/nonexistent/kvmready-host", r"--root /nonexistent/kvmready-host: no such directory")],
    ids=["empty", "missing"],
)
def test_an_empty_or_missing_root_is_one_line_and_exit_2(root, pattern):
    """Reverted, `--root ''` resolved to the working directory and checked it."""
    assert_refused(run_cli(["check", "--root", root]), pattern)


# -- 10. a relative --vm-dir that does not exist yet ---------------------------------------------------

_REAL_DISK_USAGE = LiveSystem.disk_usage  # taken before the autouse guard replaces it; statvfs of tmp_path only


class _RealDisk(FakeLiveSystem):
    """Fake in everything but disk space, which the real statvfs walk measures."""

    def disk_usage(self, path: str):
        return _REAL_DISK_USAGE(LiveSystem(), path)


def test_a_relative_vm_dir_that_does_not_exist_measures_its_nearest_parent(tmp_path, monkeypatch):
    """Reverted (no abspath), `vms/new` walked up to '' and statvfs('') failed: 'cannot measure free space at None'."""
    monkeypatch.chdir(tmp_path)
    result = run_check("resources.disk", intel_desktop(), live=_RealDisk(), vm_dir="vms/new")
    assert result.status in (Status.PASS, Status.WARN), result.summary
    assert result.evidence["path"] == str(tmp_path / "vms" / "new")
    assert result.evidence["measured_at"] == str(tmp_path)
    assert f"at {tmp_path / 'vms' / 'new'} (not created yet; measured {tmp_path})" in result.summary
    assert "None" not in result.summary


@pytest.mark.parametrize("below", ["", "vms"], ids=["the-file", "below-the-file"])
def test_a_vm_dir_that_is_a_file_is_not_measured_as_a_folder(tmp_path, below):
    """Reverted, --vm-dir /etc/passwd (or /etc/passwd/x) measured the file system of /etc as the VM folder."""
    a_file = tmp_path / "passwd"
    a_file.write_text("root:x:0:0::/root:/bin/sh\n")
    result = run_check("resources.disk", intel_desktop(), live=_RealDisk(), vm_dir=str(a_file / below) if below else str(a_file))
    assert result.status is Status.ERROR
    assert "Not a directory (ENOTDIR)" in result.summary


def test_an_empty_vm_dir_is_a_usage_error():
    """Reverted, `--vm-dir ''` measured the working directory's file system as the VM folder."""
    with pytest.raises(orchestration.InputError, match="--vm-dir got an empty path"):
        orchestration.build_facts(root=None, vm_dir="")
    with pytest.raises(orchestration.InputError, match="--vm-dir got an empty path"):
        orchestration.capture_snapshot("", live_system=FakeLiveSystem(), root_host=intel_desktop().host())


def test_disk_space_that_cannot_be_measured_names_the_folder_not_none():
    """Found by this review: a statvfs error read 'cannot measure free space at None' (fixed in checks/resources.py)."""
    result = run_check("resources.disk", intel_desktop(), live=FakeLiveSystem(disk=errno.EACCES), vm_dir="/vms/new")
    assert result.status is Status.ERROR
    assert result.summary == "cannot measure free space at /vms/new: statvfs: Permission denied (EACCES)"


# -- 11. host.hypervisor: no bare metal without evidence ------------------------------------------------

HYPERVISOR_SOURCES = ("/sys/hypervisor/type", "/sys/devices/system/clocksource/clocksource0/current_clocksource")


def _unreadable_sys(tree: Tree) -> Dict[str, str]:
    return {path: EACCES for path in [p for p in tree if p.startswith("/sys/")] + list(HYPERVISOR_SOURCES)}


def _all_text(result: Any) -> str:
    return " ".join(part or "" for part in (result.summary, result.detail, result.remediation))


def test_hypervisor_with_cpuinfo_and_sys_unreadable_is_not_bare_metal():
    """Reverted, finding nothing in unreadable sources passed as 'this is bare metal'."""
    tree = intel_desktop()
    result = run_check("host.hypervisor", tree, errors={"/proc/cpuinfo": EACCES, **_unreadable_sys(tree)})
    assert result.status is Status.ERROR
    assert "bare metal" not in _all_text(result)
    assert "/proc/cpuinfo is unreadable (Permission denied (EACCES))" in result.summary
    for source in ("/sys/class/dmi/id/sys_vendor", *HYPERVISOR_SOURCES):
        assert f"{source}: {EACCES}" in result.summary


def test_hypervisor_with_only_sys_unreadable_warns_and_names_it():
    tree = intel_desktop()
    result = run_check("host.hypervisor", tree, errors=_unreadable_sys(tree))
    assert result.status is Status.WARN
    assert result.summary.startswith("no hypervisor found, but /sys/class/dmi/id/sys_vendor: Permission denied")
    assert result.summary.endswith(": this may still be a VM")
    assert "bare metal" not in _all_text(result)


def test_hypervisor_with_only_cpuinfo_unreadable_is_an_error():
    result = run_check("host.hypervisor", intel_desktop(), errors={"/proc/cpuinfo": EACCES})
    assert result.status is Status.ERROR
    assert result.summary == ("cannot tell whether this is a VM (no other source names a hypervisor): "
                              "/proc/cpuinfo is unreadable (Permission denied (EACCES))")


# -- 12. wording that claimed what was not seen ----------------------------------------------------------


def test_kvm_module_from_a_root_does_not_say_live():
    """Reverted, a --root tree's module read 'loaded (live)', as if probed on the machine."""
    result = run_check("kvm.module", intel_desktop())
    assert result.summary == "kvm_intel provides KVM, loaded"


def test_a_module_in_another_state_names_it():
    tree = intel_desktop().with_files({"/proc/modules": "kvm_intel 1 0 - Loading 0x0\nkvm 1 1 kvm_intel, Live 0x0\n"})
    assert run_check("kvm.module", tree).summary == "kvm_intel provides KVM, loaded (state: loading)"


def test_an_unreadable_etc_is_not_a_missing_os_release():
    """Reverted, /etc/os-release unreadable beside a missing /usr/lib/os-release read 'does not exist'."""
    result = run_check("host.distribution", intel_desktop(), errors={"/etc/os-release": EACCES})
    assert result.status is Status.ERROR
    assert "does not exist" not in result.summary
    assert result.summary.startswith(f"cannot tell the distribution: /etc/os-release: {EACCES}")


def test_no_os_release_anywhere_says_so():
    result = run_check("host.distribution", intel_desktop().without("/etc/os-release"))
    assert result.summary == "cannot tell the distribution: neither /etc/os-release nor /usr/lib/os-release exists"


def test_an_unreadable_module_list_is_not_no_kvm_module():
    """Reverted, kvm.nested said 'no kvm_intel or kvm_amd here' (a skip) when it could read neither list."""
    result = run_check("kvm.nested", intel_desktop(), errors={"/proc/modules": EACCES, "/sys/module": EACCES})
    assert result.status is Status.ERROR
    assert "no kvm_intel or kvm_amd here" not in result.summary
    assert result.summary == (f"cannot tell whether kvm_intel or kvm_amd is loaded: /proc/modules ({EACCES}) and "
                              f"/sys/module ({EACCES}) both unreadable")


NONE_WORD = re.compile(r"\bNone\b")


def _broken_hosts() -> Iterator[Any]:
    """Reports from hosts where everything that can fail does: unreadable files and every live probe failing."""
    tree = intel_desktop()
    everything = {path: EACCES for path in list(tree) + ["/sys/module", "/usr/lib/os-release"]}
    failing = FakeLiveSystem(FakeKvmBackend(open_errno=errno.EACCES), disk=errno.EACCES, msr_errno=errno.EIO)
    probing = FakeLiveSystem.root(FakeKvmBackend(api_errno=errno.ENOTTY, create_vm_errno=errno.EBUSY), disk=errno.ENOENT)
    for facts in (
        make_facts(tree, errors=everything),
        make_facts(Tree(), live=FakeLiveSystem(disk=errno.ENOENT)),
        make_facts(tree, live=failing, errors=everything),
        make_facts(kvm_guest(nested=False), live=probing),
        make_facts(pvm_host(), live=failing),
    ):
        for target in Target:
            yield orchestration.check(facts, target)


def test_no_python_none_in_any_checks_text():
    """`None` rendered into a sentence is a bug ('at None'); scan every report the render tests and these hosts make."""
    from test_render_formats import every_report

    reports = list(every_report().values()) + list(_broken_hosts())
    found = {
        (report.host.get("hostname"), check.id, field): text
        for report in reports
        for check in report.checks
        for field, text in (("summary", check.summary), ("detail", check.detail), ("remediation", check.remediation))
        if text and NONE_WORD.search(text)
    }
    assert found == {}


# -- 13. snapshots: capture within the reader's limits; the gzip trailer is checked ----------------------


@pytest.fixture
def small_archive_limits(monkeypatch):
    """The reader takes at most 10 members (the manifest and 9 files); capture stores at most 9 files."""
    monkeypatch.setattr(snapshot, "MAX_MEMBERS", 10)
    monkeypatch.setattr(snapshot, "CAPTURE_MAX_FILES", 9)


def _many_modules_host() -> Tree:
    """A monolithic kernel's host (no /proc/modules) with more /sys/module entries than the reader takes members."""
    return pvm_host().with_files({f"/sys/module/builtin{index}/uevent": "" for index in range(300)})


def test_a_capture_over_the_member_limit_is_capped_and_its_reader_accepts_it(tmp_path, monkeypatch, small_archive_limits):
    """Reverted (no cap), the capture wrote more members than its own reader accepts: an archive nobody can open."""
    tree = _many_modules_host()
    capture = orchestration.capture_snapshot
    monkeypatch.setattr(orchestration, "capture_snapshot",
                        lambda vm_dir: capture(vm_dir, live_system=FakeLiveSystem(), root_host=tree.host()))
    path = tmp_path / "capped.tar.gz"
    taken = run_cli(["snapshot", "-o", str(path)])
    assert taken.exit_code == 0, taken.stderr
    assert re.fullmatch(r"kvmready: snapshot of vm written to \S+ \(\d+ bytes, 9 files; \d+ paths could not be read, "
                        r"listed in its manifest; [1-9]\d* files over the archive's limits were not stored\)\n", taken.stderr)
    manifest, files = snapshot.read_archive(str(path))
    assert len(files) == 9 and manifest["withheld"] >= 1
    capped = [path for path, reason in manifest["read_errors"].items() if reason.startswith("not stored: a snapshot holds at most 9 files")]
    assert len(capped) == manifest["withheld"]
    judged = run_cli(["check", "--snapshot", str(path), "--format", "json"])
    assert judged.exit_code in (0, 1, 3) and judged.stderr == ""
    said = json.dumps(json.loads(judged.stdout)["checks"])
    assert "not stored: a snapshot holds at most 9 files" in said


def test_a_capture_reads_the_state_of_kvm_modules_only():
    """Reverted (one initstate read per /sys/module entry), 300 built-in modules cost 300 archive members."""
    archive, manifest = orchestration.capture_snapshot("/vms", live_system=FakeLiveSystem(), root_host=_many_modules_host().host())
    assert not any(path.startswith("/sys/module/builtin") for path in list(manifest["files"]) + list(manifest["read_errors"]))
    assert len(manifest["listings"]["/sys/module"]) > 300 and len(manifest["files"]) < 40


def _gzip_with_a_large_tail(tail_bytes: int, corrupt_crc: bool) -> bytes:
    """The base snapshot, then `tail_bytes` of zeros after the tar's end inside the same gzip stream."""
    import gzip
    import zlib

    from hostile import END, MANIFEST, Member, file_members, manifest_bytes, tar

    raw = tar([Member(MANIFEST, manifest_bytes(base_manifest()))] + file_members(base_files()), end=False) + END
    raw += b"\0" * tail_bytes
    data = bytearray(gzip.compress(raw, compresslevel=1, mtime=0))
    if corrupt_crc:
        crc = zlib.crc32(raw) ^ 0xFFFFFFFF
        data[-8:-4] = crc.to_bytes(4, "little")
    return bytes(data)


def test_a_bad_gzip_trailer_after_the_uncompressed_limit_is_refused(tmp_path, monkeypatch):
    """Reverted, draining stopped silently at the limit, so a corrupt CRC past it (the old ~76 MiB point) went unseen.

    The limit is lowered to 1 MiB to stand for the real one; the archive decompresses to 2 MiB.
    """
    monkeypatch.setattr(snapshot, "MAX_UNCOMPRESSED_BYTES", 1024 * 1024)
    path = tmp_path / "tail.tar.gz"
    path.write_bytes(_gzip_with_a_large_tail(2 * 1024 * 1024, corrupt_crc=True))
    assert_refused(run_cli(["check", "--snapshot", str(path)]), r"decompresses to more than 1048576 bytes")


def test_a_good_gzip_with_a_zero_tail_is_accepted(tmp_path):
    """The control: the same archive with its CRC intact opens (so the refusals above are the trailer's)."""
    path = tmp_path / "tail.tar.gz"
    path.write_bytes(_gzip_with_a_large_tail(2 * 1024 * 1024, corrupt_crc=False))
    result = run_cli(["check", "--snapshot", str(path), "--format", "json"])
    assert result.exit_code in (0, 1, 3) and result.stderr == ""
