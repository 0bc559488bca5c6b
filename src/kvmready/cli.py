"""The command line: `kvmready check`, `list`, `explain`, `schema`.

Only typer and the small model/enums load at start-up; everything else is
imported by the command that needs it.  Reports go to stdout (or
`--output`), human chatter and errors to stderr, one line each.
"""

from __future__ import annotations

import enum
import os
import sys
from typing import List, NoReturn, Optional

import typer

from kvmready import __version__
from kvmready.model import DEFAULT_VM_DIR, ExitCode, Target
from kvmready.render import OutputFormat

app = typer.Typer(
    name="kvmready",
    help="Can this Linux host run a KVM-backed VMware Workstation? Checks with evidence, JSON and CI exit codes.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Color(str, enum.Enum):
    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


def fail_input(message: str) -> NoReturn:
    """Bad input: one clear line on stderr, exit 2, never a traceback."""
    sys.stderr.write(f"kvmready: error: {message}\n")
    raise typer.Exit(int(ExitCode.USAGE))


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"kvmready {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Readiness checks for KVM and a KVM-backed VMware Workstation."""


def _split(values: Optional[List[str]]) -> List[str]:
    """`--only a,b --only c` -> [a, b, c]."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def use_color(choice: Color, stream) -> bool:
    if choice is Color.ALWAYS:
        return True
    if choice is Color.NEVER or "NO_COLOR" in os.environ:
        return False
    return stream.isatty() and os.environ.get("TERM", "") not in ("dumb", "unknown")


def terminal_width() -> int:
    import shutil

    return max(40, shutil.get_terminal_size((80, 24)).columns)


def write_output(text: str, output: Optional[str]) -> None:
    """stdout, or FILE written atomically (temporary file in the same folder, then rename)."""
    if not output or output == "-":
        try:
            # Reports are UTF-8 whatever the locale says; nothing in them can stop the write.
            data = text.encode("utf-8", "replace")
            stream = getattr(sys.stdout, "buffer", None)
            if stream is None:
                sys.stdout.write(data.decode("utf-8"))
                sys.stdout.flush()
            else:
                sys.stdout.flush()
                stream.write(data)
                stream.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, and keep Python from failing again at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(int(ExitCode.NOT_READY)) from None
        except OSError as error:
            fail_input(f"cannot write the report to stdout: {error.strerror or error}")
        return
    from kvmready.outfile import write_atomically

    try:
        write_atomically(output, text)
    except OSError as error:
        fail_input(f"cannot write {output}: {error.strerror or error}")


def build_facts(*, root: Optional[str], vm_dir: str, snapshot: Optional[str] = None):
    """The facts of this machine (live), a --root tree (offline) or a --snapshot.  Tests replace this seam."""
    from kvmready.facts import Facts
    from kvmready.host import DirectoryHost, ReadError

    if snapshot is not None:
        if root is not None:
            fail_input("--root and --snapshot exclude each other")
        from kvmready.snapshot import SnapshotError, open_snapshot

        try:
            return open_snapshot(snapshot)[0]
        except SnapshotError as error:
            fail_input(str(error))
    try:
        if root is None:
            from kvmready.facts.live import LiveSystem

            return Facts(DirectoryHost("/"), live_system=LiveSystem(), vm_dir=vm_dir)
        host = DirectoryHost(root)
    except ReadError as error:
        fail_input(f"--root {root}: {error.reason}")
    if host.live:
        fail_input(f"--root {root} is this machine's own root; run without --root to check it live")
    return Facts(host)


@app.command()
def check(
    target: Target = typer.Option(Target.WORKSTATION, "--target", "-t", help="What the host should be ready for."),
    output_format: OutputFormat = typer.Option(OutputFormat.TABLE, "--format", "-f", help="Report format."),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="FILE", help="Write the report to FILE (atomically) instead of stdout."),
    only: Optional[List[str]] = typer.Option(None, "--only", metavar="ID", help="Run only these checks: ids, categories (kvm) or globs (kvm.*); repeat or separate with commas."),
    skip: Optional[List[str]] = typer.Option(None, "--skip", metavar="ID", help="Leave out these checks (same forms as --only)."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings too."),
    exit_zero: bool = typer.Option(False, "--exit-zero", help="Always exit 0 (report only)."),
    color: Color = typer.Option(Color.AUTO, "--color", help="Colour the table: auto (a terminal without NO_COLOR), always, never."),
    root: Optional[str] = typer.Option(None, "--root", metavar="DIR", help="Analyse the host tree at DIR (a mounted image, a copied /proc and /sys) instead of this machine."),
    snapshot: Optional[str] = typer.Option(None, "--snapshot", metavar="FILE", help="Judge the host captured in FILE by `kvmready snapshot`."),
    vm_dir: str = typer.Option(DEFAULT_VM_DIR, "--vm-dir", metavar="DIR", help="Where VMs will live (free-space check)."),
    nfd_prefix: Optional[str] = typer.Option(
        None, "--nfd-prefix", metavar="DOMAIN", help="Label prefix for --format nfd: a DNS subdomain you own (default kvmready.io)."
    ),
) -> None:
    """Check this host (or a --root tree, or a --snapshot) and report a verdict with evidence."""
    from kvmready.runner import SelectionError, build_report, run

    if nfd_prefix is not None:
        from kvmready.render.nfd import prefix_problem

        problem = prefix_problem(nfd_prefix)
        if problem:
            fail_input(f"--nfd-prefix: {problem}")
    facts = build_facts(root=root, vm_dir=vm_dir, snapshot=snapshot)
    try:
        results = run(facts, target, _split(only), _split(skip))
    except SelectionError as error:
        fail_input(str(error))
    report = build_report(facts, target, results, strict=strict, exit_zero=exit_zero)
    stream_color = use_color(color, sys.stdout) if not output else color is Color.ALWAYS
    text = output_format.render(report, width=terminal_width(), color=stream_color, nfd_prefix=nfd_prefix)
    write_output(text, output)
    if output:
        sys.stderr.write(f"kvmready: {report.verdict.value} (exit {report.exit_code}); report written to {output}\n")
    raise typer.Exit(report.exit_code)


@app.command("list")
def list_checks(
    output_format: OutputFormat = typer.Option(OutputFormat.TABLE, "--format", "-f", help="table or json."),
) -> None:
    """List every check: id, title, category and severity per target."""
    from kvmready.catalog import render_catalog

    if output_format not in (OutputFormat.TABLE, OutputFormat.JSON):
        fail_input("`kvmready list` writes table or json")
    sys.stdout.write(render_catalog(output_format is OutputFormat.JSON))


@app.command()
def explain(check_id: str = typer.Argument(..., metavar="ID", help="A check id, as `kvmready list` shows.")) -> None:
    """Explain one check: what it checks, why it matters, how to fix it."""
    from kvmready.catalog import explain_check

    text = explain_check(check_id)
    if text is None:
        fail_input(f"no check {check_id!r}; `kvmready list` shows the ids")
    sys.stdout.write(text)


@app.command("snapshot")
def take_snapshot(
    output: str = typer.Option(..., "--output", "-o", metavar="FILE", help="The archive to write (.tar.gz), atomically."),
    vm_dir: str = typer.Option(DEFAULT_VM_DIR, "--vm-dir", metavar="DIR", help="Where VMs will live (free-space check)."),
) -> None:
    """Capture what the checks read on this machine, to judge it elsewhere with `check --snapshot`."""
    from kvmready.outfile import write_atomically
    from kvmready.snapshot import capture, unreadable

    archive, manifest = capture(vm_dir)
    try:
        write_atomically(output, archive)
    except OSError as error:
        fail_input(f"cannot write {output}: {error.strerror or error}")
    sys.stderr.write(
        f"kvmready: snapshot of {manifest['hostname'] or 'this host'} written to {output} "
        f"({len(archive)} bytes, {len(manifest['files'])} files; {len(unreadable(manifest))} paths could not be read, "
        "listed in its manifest)\n"
    )


@app.command()
def schema() -> None:
    """Print the JSON Schema of the report (draft 2020-12)."""
    from kvmready.schema import schema_text

    sys.stdout.write(schema_text())


from kvmready import cli_integrations  # noqa: E402  (fleet and Ansible commands)

cli_integrations.register(app)
