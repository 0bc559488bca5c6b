"""One way to run kvmready in tests: through the CLI, or straight through the runner.

    result = run_cli(["check", "--root", str(fixture_root("lscpu-x86_64-epyc_7451")), "--format", "json"])
    result = run_cli(["check", "--format", "json"], facts_factory=lambda: Facts(DirectoryHost(str(tree))))
    report = report_for_root(fixture_root("firecracker-pvm-host"), "kvm")

`run_cli` drives `kvmready.cli.app` with typer's CliRunner (stdout and stderr
kept apart) and, when `facts_factory` is given, replaces the
`kvmready.orchestration.build_facts` seam for the duration of the call.  `report_for_root` builds
the facts of a directory tree, runs every check and returns the report as a
dict with a fixed `generated_at`.  `normalise` makes any report dict stable
enough for golden files.
"""

from __future__ import annotations

import datetime
import inspect
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union
from unittest import mock

from typer.testing import CliRunner

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures" / "hosts"
GOLDENS = TESTS / "goldens"

# Every report in a golden file carries this instead of the time it was made.
GENERATED_AT = "2000-01-01T00:00:00Z"
FIXED_NOW = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)

DEFAULT_ENV: Dict[str, str] = {"NO_COLOR": "1", "COLUMNS": "100"}
UPDATE_GOLDENS = os.environ.get("KVMREADY_UPDATE_GOLDENS") == "1"


def fixture_root(name: str) -> Path:
    """The sysroot of a captured host under tests/fixtures/hosts."""
    root = FIXTURES / name
    if not root.is_dir():
        raise FileNotFoundError(f"no fixture host {name!r} in {FIXTURES}")
    return root


def real_host_names() -> List[str]:
    """Every captured host (a folder with a sysroot, not the README)."""
    return sorted(entry.name for entry in FIXTURES.iterdir() if entry.is_dir())


def cli_runner() -> CliRunner:
    """typer's CliRunner with stdout and stderr kept apart, whatever click it runs on.

    typer up to 0.23 (what Python 3.9 gets) runs on click 8.1, whose runner
    mixes stderr into stdout unless told `mix_stderr=False` (and then refuses
    `result.stderr`); typer 0.24 on (its own vendored click) and click 8.2
    keep them apart and no longer take the argument.  Every test makes its
    runner here (tests/test_packaging.py holds them to it).
    """
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    return CliRunner()


def run_cli(
    args: Sequence[Union[str, os.PathLike]],
    facts_factory: Optional[Callable[[], Any]] = None,
    env: Optional[Mapping[str, Optional[str]]] = None,
):
    """Run `kvmready ARGS`; returns typer's Result (exit_code, stdout, stderr).

    `env` is laid over DEFAULT_ENV (a value of None removes the variable for the run).
    """
    from kvmready import cli, orchestration

    merged: Dict[str, Optional[str]] = dict(DEFAULT_ENV)
    merged.update(env or {})
    argv = [os.fspath(arg) for arg in args]
    runner = cli_runner()
    if facts_factory is None:
        return runner.invoke(cli.app, argv, env=merged, catch_exceptions=False)

    def build_facts(**_kwargs: Any) -> Any:
        return facts_factory()

    with mock.patch.object(orchestration, "build_facts", build_facts):
        return runner.invoke(cli.app, argv, env=merged, catch_exceptions=False)


def report_for_root(path: Union[str, os.PathLike], target: str = "workstation") -> dict:
    """The report dict of the tree at `path` for `target`, built without the CLI."""
    from kvmready.facts import Facts
    from kvmready.host import DirectoryHost
    from kvmready.model import Target
    from kvmready.runner import build_report, run

    facts = Facts(DirectoryHost(os.fspath(path)))
    chosen = Target(target)
    report = build_report(facts, chosen, run(facts, chosen), now=FIXED_NOW)
    return report.to_dict()


def normalise(report: Mapping[str, Any]) -> dict:
    """A copy of a report dict that is stable across runs: generated_at is a constant."""
    data = json.loads(json.dumps(report))  # a deep copy that also turns tuples into lists, as the CLI's JSON does
    if "generated_at" in data:
        data["generated_at"] = GENERATED_AT
    return data


def dump_json(data: Any) -> str:
    """How golden files are written: the tool's own JSON style."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def check_of(report: Mapping[str, Any], check_id: str) -> dict:
    """One check of a report dict, by id."""
    for check in report["checks"]:
        if check["id"] == check_id:
            return check
    raise KeyError(f"{check_id} not in the report")


def code_blocks(path: Union[str, os.PathLike], language: str) -> List[str]:
    """The fenced ```language blocks of a Markdown file, in order: recipes are tested as written."""
    import re

    text = Path(path).read_text(encoding="utf-8")
    return [match.group(1) for match in re.finditer(rf"^```{re.escape(language)}\n(.*?)^```$", text, re.M | re.S)]


NOBODY = 65534  # nobody/nogroup


def run_as_nobody(work: Callable[[], Dict[str, Any]], timeout_s: float = 120.0) -> Dict[str, Any]:
    """`work()` in a forked child that dropped to nobody/nogroup; its dict comes back as JSON.

    In process, not a new interpreter: the interpreter's own files sit in root's 0700 home, so an
    unprivileged process could not even start it (import what the child needs while still root).
    An exception in the child comes back as {"exception", "traceback"}; a child that does not answer
    within `timeout_s` is killed and the test fails."""
    import select
    import signal
    import traceback

    import pytest

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            payload = dict(work(), uid=os.getuid())
        except BaseException as error:  # anything: the parent reports it
            payload = {"exception": repr(error), "traceback": traceback.format_exc()}
        try:
            os.write(write_fd, json.dumps(payload, default=str).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([read_fd], [], [], timeout_s)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"the unprivileged child did not answer within {timeout_s} s")
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    payload = json.loads(b"".join(chunks) or b"{}")
    assert "exception" not in payload, payload.get("traceback")
    return payload
