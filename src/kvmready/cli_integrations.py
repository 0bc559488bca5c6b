"""Commands for the tools people already run: fleets of reports, Ansible facts.

`register(app)` adds them to the main CLI; keep this module's imports light,
it loads at start-up (typer only; everything else inside the commands).

    kvmready fleet summarize REPORTS...   hosts per verdict, common failures, who is not ready
    kvmready fleet schema                 the JSON Schema of `fleet summarize --format json`
    kvmready ansible-fact                 the JSON report, exit 0 always (an Ansible custom fact)
    kvmready ansible-fact --print-script  the /etc/ansible/facts.d/kvmready.fact wrapper
"""

# No `from __future__ import annotations` here: typer reads every command's annotations when it builds
# the CLI, and string annotations cost it an eval() each (about 4 ms of every run's start-up).
import enum
import sys
from typing import List, Optional

import typer

from kvmready.cli_common import CommandRequired, say, write_output
from kvmready.model import DEFAULT_VM_DIR, TIMESTAMP_FORMAT, Target


class FleetFormat(str, enum.Enum):
    TABLE = "table"
    JSON = "json"

    def __str__(self) -> str:
        return self.value


def register(app: typer.Typer) -> None:
    """Add the integration commands to `app`."""
    fleet = typer.Typer(
        name="fleet",
        help="Summaries over many kvmready reports: files, directories, JSON Lines, Ansible --tree output.",
        no_args_is_help=True,
        cls=CommandRequired,
        add_completion=False,
    )
    fleet.command("summarize")(fleet_summarize)
    fleet.command("schema")(fleet_schema)
    app.add_typer(fleet, name="fleet")
    app.command("ansible-fact")(ansible_fact)


def fleet_summarize(
    reports: List[str] = typer.Argument(
        ..., metavar="REPORTS...", help="Report files or directories of them (walked recursively); - reads stdin."
    ),
    output_format: FleetFormat = typer.Option(FleetFormat.TABLE, "--format", "-f", help="table or json."),
    top: Optional[int] = typer.Option(
        None, "--top", min=0, metavar="N", help="How many failing checks to list (default: 10 in the table, all in JSON; 0: all)."
    ),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="FILE", help="Write the summary to FILE (atomically) instead of stdout."),
) -> None:
    """Summarize many reports: hosts per verdict, the most common failing checks, the hosts that are not ready.

    Reads kvmready JSON reports, JSON Lines, and Ansible --tree files (the
    setup module's ansible_local.kvmready fact, or a command's stdout).
    Malformed inputs are listed, not fatal; exit 2 when no report could be read.
    """
    from kvmready import fleet
    from kvmready.render.fleet import FleetJsonRenderer, FleetTableRenderer

    summary = fleet.summarize(reports)
    limit = None if top == 0 else top
    if output_format is FleetFormat.JSON:
        text = FleetJsonRenderer(top=limit).render(summary)
    else:
        text = FleetTableRenderer(top=10 if top is None else limit).render(summary)
    write_output(text, output)
    if not summary.reports:
        say(f"kvmready: error: no readable kvmready report in {summary.files} input file(s)")
        raise typer.Exit(2)
    if summary.malformed_count:
        say(f"kvmready: {summary.malformed_count} malformed input(s), listed in the summary")


def fleet_schema() -> None:
    """Print the JSON Schema of `kvmready fleet summarize --format json` (draft 2020-12)."""
    from kvmready.schema import FLEET_SCHEMA_RESOURCE, schema_text

    write_output(schema_text(FLEET_SCHEMA_RESOURCE), None)


def ansible_fact(
    target: Target = typer.Option(Target.WORKSTATION, "--target", "-t", help="What the host should be ready for."),
    vm_dir: str = typer.Option(DEFAULT_VM_DIR, "--vm-dir", metavar="DIR", help="Where VMs will live (free-space check)."),
    print_script: bool = typer.Option(
        False, "--print-script", help="Print the fact script for /etc/ansible/facts.d/kvmready.fact instead of the report."
    ),
) -> None:
    """Print this host's JSON report and exit 0, whatever happens: an Ansible custom fact.

    Ansible reads it as ansible_local.kvmready.  When the checks cannot run,
    the report says verdict "indeterminate" with an "error" field.
    """
    if print_script:
        write_output(fact_script(target, vm_dir), None)
        return
    from kvmready import orchestration

    text = orchestration.ansible_fact(target, vm_dir)
    try:
        write_output(text, None)
    except typer.Exit:
        pass  # stdout closed or full: the fact promises exit 0, and there is nobody left to tell


def fact_script(target: Target, vm_dir: str = DEFAULT_VM_DIR) -> str:
    """A /bin/sh fact script that runs this very kvmready (same interpreter) and always exits 0.

    Ansible's setup module runs every executable *.fact in fact_path with no
    arguments, so the arguments are written into the script.  When kvmready
    cannot start at all (the interpreter or package gone), the script prints
    an `indeterminate` report with the error, so the fact is still JSON.
    """
    import json
    import os
    import shlex

    import kvmready
    from kvmready.orchestration import error_report

    python = sys.executable or "python3"
    command = [python, "-m", "kvmready", "ansible-fact", "--target", target.value]
    if vm_dir != DEFAULT_VM_DIR:
        command += ["--vm-dir", vm_dir]
    lines = [
        "#!/bin/sh",
        "# Ansible custom fact: ansible_local.kvmready is this host's kvmready JSON report.",
        "# Written by `kvmready ansible-fact --print-script`; install as /etc/ansible/facts.d/kvmready.fact",
        "# (mode 0755). It always exits 0: a failure is an `indeterminate` report with an `error`.",
    ]
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(kvmready.__file__)))
    if os.path.basename(package_parent) not in ("site-packages", "dist-packages"):
        # kvmready runs from a source tree (PYTHONPATH, an editable install): let the fact find it too.
        lines.append(f"PYTHONPATH={shlex.quote(package_parent)}${{PYTHONPATH:+:$PYTHONPATH}}; export PYTHONPATH")
    fallback = error_report(f"kvmready did not run: {shlex.join(command)} failed", target, generated_at="@GENERATED_AT@")
    fallback["host"]["hostname"] = None  # the script may be copied to other hosts
    head, tail = json.dumps(fallback, ensure_ascii=True).split('"@GENERATED_AT@"')
    head, tail = head + '"', '"' + tail
    lines += [
        f"report=$({shlex.join(command)}) && [ -n \"$report\" ] && {{ printf '%s\\n' \"$report\"; exit 0; }}",
        f"printf '%s%s%s\\n' {shlex.quote(head)} \"$(date -u +{TIMESTAMP_FORMAT})\" {shlex.quote(tail)}",
        "exit 0",
    ]
    return "\n".join(lines) + "\n"

