"""Orchestration: the one module the CLI calls.

It builds the facts of this machine (live), of a `--root` tree or of a
`--snapshot`, runs the checks and makes the report, captures and opens
snapshots, and writes the Ansible fact's report when nothing else can run.
Bad input is an `InputError` with one sentence; the CLI turns it into exit 2.
Nothing here parses files (facts do), judges (checks do) or formats text
beyond JSON for the Ansible fact (renderers do).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from kvmready import __version__
from kvmready.model import Report, Target, Verdict, tool_info, utc_timestamp

if TYPE_CHECKING:  # importing them at run time would cost every command start-up time
    import datetime

    from kvmready.facts import Facts
    from kvmready.host import Host


class InputError(Exception):
    """Input kvmready cannot use (an unreadable --root, a corrupt snapshot, an unknown check id)."""


def build_facts(*, root: Optional[str], vm_dir: str, snapshot: Optional[str] = None) -> Facts:
    """The facts of this machine (live), a --root tree (offline) or a --snapshot.  Tests replace this seam."""
    from kvmready.facts import Facts
    from kvmready.host import DirectoryHost, ReadError

    if snapshot is not None:
        if root is not None:
            raise InputError("--root and --snapshot exclude each other")
        return open_snapshot(snapshot)[0]
    if root is None:
        from kvmready.facts.live import LiveSystem

        vm_dir = checked_vm_dir(vm_dir)
        return Facts(DirectoryHost("/"), live_system=LiveSystem(), vm_dir=vm_dir)
    if not root:
        raise InputError("--root got an empty path; give the directory of a host tree")
    try:
        host = DirectoryHost(root)
    except ReadError as error:
        raise InputError(f"--root {root}: {error.reason}") from None
    if host.live:
        raise InputError(f"--root {root} is this machine's own root; run without --root to check it live")
    return Facts(host)


def checked_vm_dir(vm_dir: str) -> str:
    """`--vm-dir` as given, unless it is empty (which would measure the working directory)."""
    if not vm_dir:
        raise InputError("--vm-dir got an empty path; give the folder where VMs will live")
    return vm_dir


def check(
    facts: Facts,
    target: Target,
    *,
    only: Sequence[str] = (),
    skip: Sequence[str] = (),
    strict: bool = False,
    exit_zero: bool = False,
    now: Optional[datetime.datetime] = None,
) -> Report:
    """Run the selected checks for `target` and decide the verdict."""
    from kvmready.runner import SelectionError, build_report, run

    try:
        results = run(facts, target, only, skip)
    except SelectionError as error:
        raise InputError(str(error)) from None
    return build_report(facts, target, results, strict=strict, exit_zero=exit_zero, now=now)


def catalog() -> List[Dict[str, Any]]:
    """Every check as data (`kvmready list`, `explain`, the README's table)."""
    from kvmready.checks import catalog as registry_catalog

    return registry_catalog()


# -- snapshots -------------------------------------------------------------------


def capture_snapshot(vm_dir: str, live_system: Any = None, root_host: Optional[Host] = None) -> Tuple[bytes, Dict[str, Any]]:
    """Observe this machine through a recording host; return the archive bytes and its manifest.

    Every check of every target runs once, so the archive holds exactly the
    files the facts read (and what could not be read, with the reason), plus
    the live-only results (the KVM probe, the user's credentials, MSR, disk
    space, CPUID).
    """
    from kvmready.facts import Facts
    from kvmready.facts.live import LiveSystem
    from kvmready.host import DirectoryHost
    from kvmready.runner import run
    from kvmready.snapshot import FORMAT, FORMAT_VERSION, RecordingHost, write_archive
    from kvmready.summary import host_summary

    checked_vm_dir(vm_dir)
    recording = RecordingHost(root_host or DirectoryHost("/"))
    facts = Facts(recording, live_system=live_system or LiveSystem(), vm_dir=vm_dir)
    for target in Target:  # the union of what any check of any target reads
        run(facts, target)
    summary = host_summary(facts)
    live = facts.live.to_dict() if facts.live is not None else {}
    live["cpuid_signature"] = facts.cpuid_signature
    live["pid1_container_env"] = facts.pid1_container_env
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tool": tool_info(__version__),
        "captured_at": utc_timestamp(),
        "hostname": summary.get("hostname"),
        "vm_dir": vm_dir,
        "files": {path: len(data) for path, data in sorted(recording.files.items())},
        "read_errors": dict(sorted(recording.read_errors.items())),
        "listings": dict(sorted(recording.listings.items())),
        "list_errors": dict(sorted(recording.list_errors.items())),
        "nodes": {path: (node.to_dict() if node else None) for path, node in sorted(recording.nodes.items())},
        "node_errors": dict(sorted(recording.node_errors.items())),
        "withheld": recording.withheld,
        "live": live,
    }
    return write_archive(manifest, recording.files), manifest


def unreadable(manifest: Mapping[str, Any]) -> Dict[str, str]:
    """What could not be read at capture and why (the manifest's three error maps)."""
    merged: Dict[str, str] = {}
    for key in ("read_errors", "list_errors", "node_errors"):
        merged.update(manifest.get(key, {}))
    return dict(sorted(merged.items()))


def open_snapshot(path: str) -> Tuple[Facts, Dict[str, Any]]:
    """Read an archive safely; return (Facts, manifest).  A bad archive is an InputError."""
    from kvmready.facts import Facts
    from kvmready.facts.live import LiveFacts
    from kvmready.snapshot import SnapshotError, SnapshotHost, read_archive

    try:
        manifest, files = read_archive(path)
    except SnapshotError as error:
        raise InputError(str(error)) from None
    host = SnapshotHost(manifest, files, origin=f"--snapshot {path}")
    try:
        live = LiveFacts.from_dict(manifest["live"], captured_at=manifest["captured_at"])
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as error:
        raise InputError(f"{path}: the manifest's live results are malformed ({type(error).__name__}: {error})") from None
    return Facts(host, captured_live=live, vm_dir=manifest.get("vm_dir")), manifest


# -- the Ansible fact --------------------------------------------------------------


def ansible_fact(target: Target, vm_dir: str) -> str:
    """This machine's JSON report, or an `indeterminate` report with an `error`: never an exception."""
    import json

    try:
        from kvmready.render.json_report import JsonRenderer

        facts = build_facts(root=None, vm_dir=vm_dir)
        return JsonRenderer().render(check(facts, target, exit_zero=True))
    except InputError as error:
        message = f"kvmready could not read this host: {error}"
    except Exception as error:  # the fact must print JSON and exit 0, even on a bug
        message = f"{type(error).__name__}: {error}"
    return json.dumps(error_report(message, target), indent=2, ensure_ascii=False) + "\n"


def error_report(message: str, target: Target, generated_at: Optional[str] = None) -> Dict[str, Any]:
    """A report (valid against report-v1) that says the checks could not run, and why."""
    import socket

    from kvmready.summary import empty_host

    try:
        hostname: Optional[str] = socket.gethostname() or None
    except OSError:
        hostname = None
    report = Report(
        tool_version=__version__,
        target=target,
        verdict=Verdict.INDETERMINATE,
        exit_code=0,  # the Ansible fact always exits 0
        host=empty_host(hostname),
        checks=(),
        reasons=(),
        generated_at=generated_at or utc_timestamp(),
    )
    return {**report.to_dict(), "error": message}
