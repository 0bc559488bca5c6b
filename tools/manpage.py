#!/usr/bin/env python3
"""Write kvmready(1), the man page, from the CLI itself: `python tools/manpage.py > docs/kvmready.1`.

Every command, argument and option comes from the typer app (through the
click command typer builds), so the page cannot drift from `--help`:
tests/test_manpage.py regenerates it and compares (KVMREADY_UPDATE_GOLDENS=1
rewrites docs/kvmready.1).  Standard library and the app only; the date is
left out so the output depends on the code alone.

    man ./docs/kvmready.1
"""

from __future__ import annotations

import os
import sys
from typing import Any, List

try:
    import kvmready
except ImportError:  # run from a checkout without an install
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
    import kvmready

HIDDEN = {"--help", "--install-completion", "--show-completion"}


def roff(text: str) -> str:
    """Text as roff: backslashes and hyphens escaped, no line may start with a control character."""
    escaped = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in escaped.splitlines())


def option_label(param: Any) -> str:
    names = ", ".join(f"\\fB{roff(name)}\\fR" for name in list(param.opts) + list(param.secondary_opts))
    if getattr(param, "is_flag", False):
        return names
    choices = getattr(param.type, "choices", None)
    if choices:
        return f"{names} \\fI{roff('|'.join(str(choice) for choice in choices))}\\fR"
    return f"{names} \\fI{roff(param.metavar or param.type.name.upper())}\\fR"


def describe(param: Any) -> str:
    text = param.help or ""
    default = param.default
    if not getattr(param, "is_flag", False) and default not in (None, (), []) and not callable(default):
        value = getattr(default, "value", default)
        text += f" Default: {value}."
    return roff(text)


def command_section(name: str, command: Any) -> List[str]:
    lines = [f".SS {roff(name)}"]
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    usage = " ".join([f"\\fBkvmready {roff(name)}\\fR", "[\\fIOPTIONS\\fR]"] + [f"\\fI{roff(a.metavar or a.name.upper())}\\fR" for a in arguments])
    lines += [usage, ".PP", roff((command.help or "").strip())]
    for param in command.params:
        if param.param_type_name == "argument" or HIDDEN & set(param.opts):
            continue
        lines += [".TP", option_label(param), describe(param)]
    return lines


def manpage() -> str:
    import typer

    from kvmready.cli import EXIT_CODES, app

    root = typer.main.get_command(app)
    lines = [
        '.TH KVMREADY 1 "" "kvmready ' + kvmready.__version__ + '" "User Commands"',
        ".SH NAME",
        "kvmready \\- can this Linux host run KVM and a KVM\\-backed VMware Workstation?",
        ".SH SYNOPSIS",
        "\\fBkvmready\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".br",
        "\\fBpython \\-m kvmready\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        roff((root.help or "").strip()),
        ".SH COMMANDS",
    ]
    for name, command in root.commands.items():
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for sub_name, sub in subcommands.items():
                lines += command_section(f"{name} {sub_name}", sub)
        else:
            lines += command_section(name, command)
    lines += [".SH GLOBAL OPTIONS"]
    for param in root.params:
        if param.opts[0] == "--help":
            continue
        lines += [".TP", option_label(param), describe(param)]
    lines += [".TP", "\\fB\\-h\\fR, \\fB\\-\\-help\\fR", "Show the help of kvmready or of a command and exit."]
    lines += [".SH EXIT STATUS", roff(EXIT_CODES)]
    lines += [
        ".SH ENVIRONMENT",
        ".TP", "\\fBNO_COLOR\\fR", "Set to a non\\-empty value: no colour under \\fB\\-\\-color auto\\fR.",
        ".TP", "\\fBFORCE_COLOR\\fR", "Set to a non\\-empty value: colour under \\fB\\-\\-color auto\\fR, also on a pipe; it wins over NO_COLOR.",
        ".SH SEE ALSO",
        "README.md and docs/integrations.md in kvmready's source; \\fBkvmready explain\\fR \\fIID\\fR for any check.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(manpage())
