"""Issue 12, the hostile review: the findings that need a real process.

A closed or full standard output, a reader that goes away early, a FIFO or
standard input as `--snapshot`, and signals (SIGTERM/SIGHUP during `-o`,
Ctrl-C at any moment) can only be reproduced by running `python -m
kvmready` with real file descriptors.  Every run has a timeout, so a
regression that blocks fails instead of hanging the suite; no assertion
depends on how long anything took.  Nothing here looks at the real machine:
checks run on trees under tmp_path, and the Ansible fact (which always
checks this machine) gets a tree through the same seam the unit tests use.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

import pytest
from hostile import snapshot_archive
from treebuilder import intel_desktop

SRC = Path(__file__).resolve().parent.parent / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC), "NO_COLOR": "1", "COLUMNS": "100"}
TIMEOUT = 60  # a hang guard only
TEMPORARY = re.compile(r"^\..*\.tmp$")

# Runs `kvmready` with `kvmready.orchestration.build_facts` rooted at the tree in $KVMREADY_TEST_ROOT:
# the Ansible fact always checks this machine, and this keeps it on a tree.
ROOTED_PROGRAM = """
import os, sys
from kvmready import orchestration
from kvmready.facts import Facts
from kvmready.host import DirectoryHost
orchestration.build_facts = lambda **kwargs: Facts(DirectoryHost(os.environ["KVMREADY_TEST_ROOT"]))
sys.argv = ["kvmready", *sys.argv[1:]]
from kvmready._entry import main
main()
"""

# Runs `kvmready` with the -o writer stalled after the temporary file is complete, before the rename:
# it says STALLED on stderr and waits for the test's signal.
STALLED_WRITE_PROGRAM = """
import os, sys, time
import kvmready.outfile as outfile
def stall(temporary, existing):
    os.write(2, b"STALLED\\n")
    time.sleep(600)
outfile._take_over_metadata = stall
sys.argv = ["kvmready", *sys.argv[1:]]
from kvmready._entry import main
main()
"""


def kvmready(*args: str, redirect: str = "", stdin: Optional[bytes] = None, program: Optional[str] = None,
             env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """`python -m kvmready ARGS` (or `python -c PROGRAM ARGS`), stdout and stderr captured as bytes.

    `redirect` is a shell redirection of stdout (`>&-`, `>/dev/full`), applied by bash before exec.
    """
    command = [sys.executable, "-c", program] if program else [sys.executable, "-m", "kvmready"]
    command += list(args)
    if redirect:
        command = ["bash", "-c", f'exec "$@" {redirect}', "bash", *command]
    return subprocess.run(command, input=stdin, capture_output=True, env={**ENV, **(env or {})}, timeout=TIMEOUT, check=False)


def assert_one_error_line(done: subprocess.CompletedProcess, pattern: str) -> None:
    stderr = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2, (done.returncode, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kvmready: error: "), stderr
    assert re.search(pattern, lines[0]), lines[0]


@pytest.fixture
def tree(tmp_path) -> Path:
    """A ready-looking Intel desktop as a --root tree: not ready for workstation (exit 1), waiting on upstream."""
    return intel_desktop().write(tmp_path / "tree")


@pytest.fixture
def report_file(tmp_path) -> Path:
    path = tmp_path / "reports" / "web-1.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"schema_version": 1, "verdict": "ready", "target": "workstation",
                                "host": {"hostname": "web-1"}, "checks": []}))
    return path


# -- 4. --snapshot: a FIFO never blocks; - reads standard input --------------------------------------


def test_snapshot_from_a_fifo_without_a_writer_is_refused_at_once(tmp_path):
    """Reverted (open() on the path), the run blocks until a writer comes: the timeout fails the test."""
    fifo = tmp_path / "snapshot.tar.gz"
    os.mkfifo(fifo)
    done = kvmready("check", "--snapshot", str(fifo))
    assert_one_error_line(done, rf"{re.escape(str(fifo))}: not a regular file; --snapshot reads a \.tar\.gz file, or - for standard input")
    assert done.stdout == b""


def test_snapshot_from_standard_input_gives_the_files_report(tmp_path):
    """Reverted, `-` was a file name: 'cannot read (No such file or directory)'."""
    archive = snapshot_archive()
    path = tmp_path / "host.tar.gz"
    path.write_bytes(archive)
    from_file = kvmready("check", "--snapshot", str(path), "--format", "json")
    from_stdin = kvmready("check", "--snapshot", "-", "--format", "json", stdin=archive)
    assert from_stdin.stderr == from_file.stderr == b""
    assert from_stdin.returncode == from_file.returncode == json.loads(from_file.stdout)["exit_code"]
    by_file, by_stdin = json.loads(from_file.stdout), json.loads(from_stdin.stdout)
    by_file.pop("generated_at")
    by_stdin.pop("generated_at")
    assert by_stdin == by_file


def test_snapshot_from_empty_standard_input_is_one_line():
    assert_one_error_line(kvmready("check", "--snapshot", "-", stdin=b""), r"-: not a readable \.tar\.gz archive")


def test_snapshot_from_closed_standard_input_says_so():
    """Reverted, the message was Python's: `-: cannot read ('NoneType' object has no attribute 'buffer')`."""
    command = ["bash", "-c", 'exec "$@" <&-', "bash", sys.executable, "-m", "kvmready", "check", "--snapshot", "-"]
    done = subprocess.run(command, capture_output=True, env=ENV, timeout=TIMEOUT, check=False)
    assert_one_error_line(done, r"^kvmready: error: -: standard input is closed")


def test_snapshot_from_a_terminal_is_refused_rather_than_waited_for():
    """Reverted, `--snapshot -` on a terminal waited silently for a gzip archive someone would have to type."""
    import pty

    controller, terminal = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "kvmready", "check", "--snapshot", "-"], stdin=terminal,
                              capture_output=True, env=ENV, timeout=TIMEOUT, check=False)
    finally:
        os.close(controller)
        os.close(terminal)
    assert_one_error_line(done, r"^kvmready: error: -: standard input is a terminal")


# -- 8. a reader that goes away early keeps the verdict's exit code ----------------------------------


def _with_closed_reader(args: Sequence[str]) -> subprocess.CompletedProcess:
    """`kvmready ARGS | true` where `true` has already gone: every write to stdout fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = subprocess.Popen([sys.executable, "-m", "kvmready", *args], stdout=write_end,
                                   stderr=subprocess.PIPE, env=ENV)
    finally:
        os.close(write_end)
    _, stderr = process.communicate(timeout=TIMEOUT)
    return subprocess.CompletedProcess(process.args, process.returncode, b"", stderr)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [(["--exit-zero"], 0), ([], 1), (["--format", "json", "--exit-zero"], 0), (["--skip", "vmware.kvm-support"], 3),
     (["--only", "cpu"], 0)],
    ids=["exit-zero", "not-ready", "json-exit-zero", "undecided", "ready"],
)
def test_an_early_reader_keeps_the_verdicts_exit_code(tree, extra, expected):
    """Reverted, typer turned the BrokenPipeError into exit 1, whatever the verdict (and --exit-zero) asked for."""
    done = _with_closed_reader(["check", "--root", str(tree), *extra])
    assert done.returncode == expected, done.stderr
    assert done.stderr == b""


def test_an_early_reader_of_list_and_fleet_exits_0(report_file):
    for args in (["list"], ["fleet", "summarize", str(report_file)]):
        done = _with_closed_reader(args)
        assert (done.returncode, done.stderr) == (0, b""), args


def test_an_early_reader_in_a_shell_pipeline_keeps_the_exit_code(tree):
    """The way people write it: bash's PIPESTATUS holds kvmready's own status."""
    script = 'exec 3>&1; "$@" | true; echo "status=${PIPESTATUS[0]}" >&3'
    command = ["bash", "-c", script, "bash", sys.executable, "-m", "kvmready", "check", "--root", str(tree), "--exit-zero"]
    done = subprocess.run(command, capture_output=True, env=ENV, timeout=TIMEOUT, check=False)
    assert done.stdout == b"status=0\n" and b"Traceback" not in done.stderr, done.stderr


# -- 9. a closed or full standard output is one line and exit 2 ----------------------------------------


@pytest.mark.parametrize("redirect", [">&-", ">/dev/full"], ids=["closed", "full"])
def test_check_to_a_closed_or_full_stdout_is_one_line_and_exit_2(tree, redirect):
    """Reverted: a closed stdout was an AttributeError traceback, a full one an 'Exception ignored' at exit."""
    done = kvmready("check", "--root", str(tree), redirect=redirect)
    assert_one_error_line(done, r"standard output is closed" if redirect == ">&-" else r"No space left on device")


@pytest.mark.parametrize(
    "args", [["list"], ["schema"], ["explain", "kvm.device"], ["--version"], ["fleet", "schema"]],
    ids=["list", "schema", "explain", "version", "fleet-schema"],
)
@pytest.mark.parametrize("redirect", [">&-", ">/dev/full"], ids=["closed", "full"])
def test_every_command_to_a_closed_or_full_stdout_is_one_line_and_exit_2(args, redirect):
    done = kvmready(*args, redirect=redirect)
    assert_one_error_line(done, r"standard output is closed" if redirect == ">&-" else r"No space left on device")


@pytest.mark.parametrize("args", [["--help"], ["check", "--help"], ["fleet", "--help"], ["--show-completion", "bash"]],
                         ids=["help", "check-help", "fleet-help", "show-completion"])
def test_typers_own_output_to_a_full_stdout_is_one_line_and_exit_2(args):
    """Reverted, typer's help and completion script to /dev/full ended in an OSError traceback, exit 1."""
    assert_one_error_line(kvmready(*args, redirect=">/dev/full"), r"^kvmready: error: cannot write: No space left on device$")


def test_a_usage_error_that_cannot_be_shown_still_exits_2():
    """Reverted, `--badopt 2>/dev/full` failed to print the usage error and exited 1, which CI reads as not ready."""
    command = ["bash", "-c", 'exec "$@" 2>/dev/full', "bash", sys.executable, "-m", "kvmready", "check", "--badopt"]
    done = subprocess.run(command, capture_output=True, env=ENV, timeout=TIMEOUT, check=False)
    assert done.returncode == 2 and done.stdout == b""


def test_an_unwritable_completion_file_is_one_line_and_exit_2():
    """Reverted, --install-completion into a read-only home ended in a PermissionError traceback."""
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="kvmready-home-"))  # not under tmp_path, which nobody may not enter
    try:
        home.chmod(0o555)
        command = [sys.executable, "-m", "kvmready", "--install-completion", "bash"]
        if os.geteuid() == 0:  # root writes into a read-only directory anyway: be nobody
            if shutil.which("setpriv") is None:
                pytest.skip("setpriv is needed to drop to nobody")
            drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            probe = subprocess.run([*drop, sys.executable, "-c", "pass"], capture_output=True, timeout=TIMEOUT, check=False)
            if probe.returncode != 0:  # pyenv's shared libpython under /root, which nobody may not read
                pytest.skip(f"this interpreter cannot run as nobody: {probe.stderr.decode(errors='replace').strip()}")
            command = [*drop, *command]
        done = subprocess.run(command, capture_output=True, env={**ENV, "HOME": str(home), "SHELL": "/bin/bash"},
                              timeout=TIMEOUT, check=False)
        assert_one_error_line(done, r"cannot write: .*\.bashrc: Permission denied")
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("redirect", [">&-", ">/dev/full"], ids=["closed", "full"])
def test_fleet_summary_to_a_closed_or_full_stdout_is_one_line_and_exit_2(report_file, redirect):
    done = kvmready("fleet", "summarize", str(report_file), redirect=redirect)
    assert_one_error_line(done, r"standard output is closed" if redirect == ">&-" else r"No space left on device")


@pytest.mark.parametrize("redirect", [">&-", ">/dev/full"], ids=["closed", "full"])
def test_the_ansible_fact_exits_0_even_when_stdout_is_closed_or_full(tree, redirect):
    """The fact promises exit 0 whatever happens (the one line on stderr is for a person, if any).

    Reverted, a closed stdout was an AttributeError traceback and exit 1.
    """
    done = kvmready("ansible-fact", program=ROOTED_PROGRAM, redirect=redirect, env={"KVMREADY_TEST_ROOT": str(tree)})
    assert done.returncode == 0 and done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kvmready: error: cannot write the output"), lines


def test_the_ansible_fact_seam_reports_the_tree():
    """The control for the test above: the rooted fact really runs and prints the tree's report."""
    root = intel_desktop(hostname="fact-tree")
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        root.write(directory)
        done = kvmready("ansible-fact", program=ROOTED_PROGRAM, env={"KVMREADY_TEST_ROOT": directory})
    assert done.returncode == 0 and done.stderr == b""
    assert json.loads(done.stdout)["host"]["hostname"] == "fact-tree"


# -- 14. signals: SIGTERM/SIGHUP during -o leave no temporary file; Ctrl-C at any moment is exit 130 ------


def _wait_for_line(stream, expected: bytes) -> None:
    ready, _, _ = select.select([stream], [], [], TIMEOUT)
    assert ready, f"no {expected!r} within the hang guard"
    assert stream.readline() == expected


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("command", ["check", "fleet summarize"])
def test_a_stop_signal_during_output_leaves_the_old_file_and_no_temporary(tmp_path, tree, report_file, signum, command):
    """Reverted (the default action), the process died at once: its temporary file stayed in the directory."""
    out = tmp_path / "out"
    out.mkdir()
    target = out / "report"
    target.write_text("the previous report\n")
    args = ["check", "--root", str(tree)] if command == "check" else ["fleet", "summarize", str(report_file)]
    process = subprocess.Popen([sys.executable, "-c", STALLED_WRITE_PROGRAM, *args, "-o", str(target)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        _wait_for_line(process.stderr, b"STALLED\n")
        assert [name for name in os.listdir(out) if TEMPORARY.match(name)], "the writer should be mid-write"
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signum, stderr
    assert stderr == f"kvmready: stopped by {signal.Signals(signum).name}\n".encode() and stdout == b""
    assert os.listdir(out) == ["report"]
    assert target.read_text() == "the previous report\n"


def _caught_signals(pid: int) -> int:
    """The SigCgt mask of a process: which signals it has handlers for."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("SigCgt:"):
                return int(line.split()[1], 16)
    return 0


def _handles(mask: int, signum: int) -> bool:
    return bool(mask & (1 << (signum - 1)))


def _start_once_kvmready_handles_signals(args: List[str]) -> subprocess.Popen:
    """Start `kvmready ARGS` and return once its own handlers are in (SIGHUP is the last one installed).

    Python's start-up (site, runpy, the package import) runs before any kvmready code: a Ctrl-C there is
    Python's own KeyboardInterrupt, so this test begins where kvmready's entry point takes over.
    """
    process = subprocess.Popen([sys.executable, "-m", "kvmready", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=ENV)
    while process.poll() is None:
        try:
            if _handles(_caught_signals(process.pid), signal.SIGHUP):
                return process
        except FileNotFoundError:
            break
        time.sleep(0.0005)
    process.kill()
    pytest.fail(f"kvmready ended (exit {process.wait()}) before it installed its signal handlers")


def _interrupt(process: subprocess.Popen, storm: bool) -> None:
    """One Ctrl-C, or an impatient user's: Ctrl-C again and again until the process is gone."""
    process.send_signal(signal.SIGINT)
    while storm and process.poll() is None:
        time.sleep(0.0001)
        process.send_signal(signal.SIGINT)


def test_ctrl_c_at_any_moment_exits_130_without_a_traceback(tree):
    """Reverted (SIGINT handled without ignoring the next one, and not at all after main), a second Ctrl-C
    during the cleanup or one during shutdown printed a traceback; before that, Ctrl-C was typer's 'Aborted!'.

    SIGINT lands at delays spread over a whole run, from the first import after the handlers are in
    (typer, rich, the checks) to the last write, once or as a storm; a signal after the run's end finds
    the finished run.
    """
    if _handles(_caught_signals(os.getpid()), signal.SIGHUP):
        pytest.skip("this test process handles SIGHUP itself, so a child's SigCgt would not tell readiness")
    args = ["check", "--root", str(tree)]
    started = time.monotonic()
    whole = _start_once_kvmready_handles_signals(args)
    _, stderr = whole.communicate(timeout=TIMEOUT)
    run_length = time.monotonic() - started  # only to spread the delays; nothing asserts on time
    finished_code = whole.returncode
    assert finished_code == 1 and stderr == b""
    interrupted = 0
    runs = 20
    for index in range(runs):
        process = _start_once_kvmready_handles_signals(args)
        time.sleep(run_length * index / runs)
        _interrupt(process, storm=index % 2 == 1)
        _, stderr = process.communicate(timeout=TIMEOUT)
        assert b"Traceback" not in stderr, stderr.decode()
        if process.returncode == 130:
            assert stderr == b"kvmready: interrupted\n"
            interrupted += 1
        else:  # the run had ended before the signal came
            assert (process.returncode, stderr) == (finished_code, b""), stderr.decode()
    assert interrupted >= 1


# -- an absurd $COLUMNS ---------------------------------------------------------------------------------
@pytest.mark.parametrize("columns", ["1000000000", "9" * 5000])
def test_an_absurd_columns_is_bounded_for_the_help_and_the_table(tree, columns):
    # rich lays the help out at $COLUMNS: 10**9 took 8 GB and minutes before the entry point bounded it.
    for args in (["--help"], ["check", "--help"], ["check", "--root", str(tree), "--exit-zero"]):
        done = kvmready(*args, env={"COLUMNS": columns})
        assert done.returncode == 0, done.stderr
        lines = done.stdout.decode("utf-8").splitlines()
        assert lines and max(len(line) for line in lines) <= 1000, args
