"""The command line: `kvmready check`, `list`, `explain`, `schema`.

Only typer and the small model/enums load at start-up; everything else is
imported by the command that needs it.  Reports go to stdout (or
`--output`), human chatter and errors to stderr, one line each.
"""

# No `from __future__ import annotations` here: typer reads every command's annotations when it builds
# the CLI, and string annotations cost it an eval() each (about 4 ms of every run's start-up).
import sys
from typing import List, Optional

import typer

from kvmready import __version__
from kvmready.cli_common import Color, CommandRequired, fail_input, say, terminal_width, use_color, write_output
from kvmready.model import DEFAULT_VM_DIR, Target
from kvmready.outfile import STDOUT_NAMES
from kvmready.render import OutputFormat

# Shown under `--help` (the table is in README.md, "Exit codes").
EXIT_CODES = (
    "Exit codes: 0 ready (warnings allowed); 1 not ready (a required check failed; with --strict also a warning); "
    "2 usage or input error; 3 indeterminate (a required check could not be decided); 130 interrupted. "
    "--exit-zero always exits 0."
)

app = typer.Typer(
    name="kvmready",
    help="Can this Linux host run a KVM-backed VMware Workstation? Checks with evidence, JSON and CI exit codes.",
    epilog=EXIT_CODES,
    # --install-completion and --show-completion.  typer imports its completion code with itself, so this
    # adds two options and nothing to start-up; the scripts are made only when asked for.
    add_completion=True,
    no_args_is_help=True,
    cls=CommandRequired,  # no command: the help and exit 2, on every click
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        write_output(f"kvmready {__version__}\n", None)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Readiness checks for KVM and a KVM-backed VMware Workstation."""


def _split(values: Optional[List[str]]) -> List[str]:
    """`--only a,b --only c` -> [a, b, c]; an empty part stays, for the runner to refuse."""
    return [part.strip() for value in values or () for part in value.split(",")]


@app.command(epilog=EXIT_CODES)
def check(
    target: Target = typer.Option(Target.WORKSTATION, "--target", "-t", help="What the host should be ready for."),
    output_format: OutputFormat = typer.Option(OutputFormat.TABLE, "--format", "-f", help="Report format."),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="FILE", help="Write the report to FILE (atomically) instead of stdout."),
    only: Optional[List[str]] = typer.Option(None, "--only", metavar="ID", help="Run only these checks: ids, categories (kvm) or globs (kvm.*); repeat or separate with commas."),
    skip: Optional[List[str]] = typer.Option(None, "--skip", metavar="ID", help="Leave out these checks (same forms as --only)."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings too."),
    exit_zero: bool = typer.Option(False, "--exit-zero", help="Always exit 0 (report only)."),
    color: Color = typer.Option(
        Color.AUTO,
        "--color",
        help="Colour the table: auto (a terminal, unless NO_COLOR is set non-empty or TERM=dumb; FORCE_COLOR set non-empty forces it), always, never.",
    ),
    root: Optional[str] = typer.Option(None, "--root", metavar="DIR", help="Analyse the host tree at DIR (a mounted image, a copied /proc and /sys) instead of this machine."),
    snapshot: Optional[str] = typer.Option(None, "--snapshot", metavar="FILE", help="Judge the host captured in FILE by `kvmready snapshot` (- reads it from standard input)."),
    vm_dir: str = typer.Option(DEFAULT_VM_DIR, "--vm-dir", metavar="DIR", help="Where VMs will live (free-space check)."),
    nfd_prefix: Optional[str] = typer.Option(
        None, "--nfd-prefix", metavar="DOMAIN", help="Label prefix for --format nfd: a DNS subdomain you own (default kvmready.io)."
    ),
    nfd_expiry: Optional[str] = typer.Option(
        None,
        "--nfd-expiry",
        metavar="DURATION",
        help="For --format nfd: how long nfd-worker keeps the labels unless the file is rewritten (default 2h; 90m, 1d, never). Longer than the refresh interval.",
    ),
) -> None:
    """Check this host (or a --root tree, or a --snapshot) and report a verdict with evidence."""
    from kvmready import orchestration

    if strict and exit_zero:
        fail_input("--strict and --exit-zero exclude each other: one asks for more failures, the other for none")
    if nfd_prefix is not None:
        from kvmready.render.nfd import prefix_problem

        problem = prefix_problem(nfd_prefix)
        if problem:
            fail_input(f"--nfd-prefix: {problem}")
    if nfd_expiry is not None:
        from kvmready.render.nfd import parse_expiry

        try:
            parse_expiry(nfd_expiry)
        except ValueError as error:
            fail_input(f"--nfd-expiry: {error}")
    try:
        facts = orchestration.build_facts(root=root, vm_dir=vm_dir, snapshot=snapshot)
        report = orchestration.check(facts, target, only=_split(only), skip=_split(skip), strict=strict, exit_zero=exit_zero)
    except orchestration.InputError as error:
        fail_input(str(error))
    stream_color = use_color(color, sys.stdout) if not output or output in STDOUT_NAMES else color is Color.ALWAYS
    renderer = output_format.renderer(width=terminal_width(), color=stream_color, nfd_prefix=nfd_prefix, nfd_expiry=nfd_expiry)
    write_output(renderer.render(report), output)
    if output and output not in STDOUT_NAMES:
        say(f"kvmready: {report.verdict.value} (exit {report.exit_code}); report written to {output}")
    raise typer.Exit(report.exit_code)


@app.command("list")
def list_checks(
    output_format: OutputFormat = typer.Option(OutputFormat.TABLE, "--format", "-f", help="table or json."),
) -> None:
    """List every check: id, title, category and severity per target."""
    from kvmready import orchestration
    from kvmready.render.catalog import render_list

    if output_format not in (OutputFormat.TABLE, OutputFormat.JSON):
        fail_input("`kvmready list` writes table or json")
    write_output(render_list(orchestration.catalog(), as_json=output_format is OutputFormat.JSON), None)


@app.command()
def explain(check_id: str = typer.Argument(..., metavar="ID", help="A check id, as `kvmready list` shows.")) -> None:
    """Explain one check: what it checks, why it matters, how to fix it."""
    from kvmready import orchestration
    from kvmready.render.catalog import render_explanation

    entry = next((entry for entry in orchestration.catalog() if entry["id"] == check_id), None)
    if entry is None:
        fail_input(f"no check {check_id!r}; `kvmready list` shows the ids")
    write_output(render_explanation(entry), None)


@app.command("snapshot")
def take_snapshot(
    output: str = typer.Option(..., "--output", "-o", metavar="FILE", help="The archive to write (.tar.gz), atomically."),
    vm_dir: str = typer.Option(DEFAULT_VM_DIR, "--vm-dir", metavar="DIR", help="Where VMs will live (free-space check)."),
) -> None:
    """Capture what the checks read on this machine, to judge it elsewhere with `check --snapshot`."""
    from kvmready import orchestration

    to_stdout = output in STDOUT_NAMES
    if to_stdout and sys.stdout is not None and sys.stdout.isatty():
        fail_input("the snapshot is a binary .tar.gz: redirect standard output to a file or a pipe, or use -o FILE")
    archive, manifest = orchestration.capture_snapshot(vm_dir)
    write_output(archive, output)
    where = "standard output" if to_stdout else output
    withheld = f"; {manifest['withheld']} files over the archive's limits were not stored" if manifest["withheld"] else ""
    say(
        f"kvmready: snapshot of {manifest['hostname'] or 'this host'} written to {where} "
        f"({len(archive)} bytes, {len(manifest['files'])} files; {len(orchestration.unreadable(manifest))} paths could not be read, "
        f"listed in its manifest{withheld})"
    )


@app.command()
def schema() -> None:
    """Print the JSON Schema of the report (draft 2020-12)."""
    from kvmready.schema import schema_text

    write_output(schema_text(), None)


from kvmready import cli_integrations  # noqa: E402  (fleet and Ansible commands)

cli_integrations.register(app)
