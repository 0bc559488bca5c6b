"""What every command shares: one-line messages, bad input as exit 2, writing the output, colour."""

from __future__ import annotations

import enum
import os
import sys
from typing import IO, Any, List, NoReturn, Optional, Union

import typer
from typer.core import TyperGroup

from kvmready.model import ExitCode
from kvmready.outfile import STDOUT_NAMES, OutputError, write_atomically
from kvmready.text import printable


class Color(str, enum.Enum):
    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


def say(line: str) -> None:
    """One line for people on stderr, control characters escaped; a closed or full stderr is not an error."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(printable(line) + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def fail_input(message: str) -> NoReturn:
    """Bad input: one clear line on stderr, exit 2, never a traceback."""
    say(f"kvmready: error: {message}")
    raise typer.Exit(int(ExitCode.USAGE))


class CommandRequired(TyperGroup):
    """A command group that, called with nothing at all, prints its help and exits 2: a usage error.

    click's own `no_args_is_help` exits 0 up to click 8.1 (what Python 3.9
    gets) and 2 from 8.2 on; the exit code must not depend on which click
    is installed.  `--help` still exits 0.
    """

    def parse_args(self, ctx: Any, args: List[str]) -> List[str]:
        if not args and not ctx.resilient_parsing:
            text = ctx.get_help()  # typer's rich help prints itself and returns ""
            if text:
                typer.echo(text)
            ctx.exit(int(ExitCode.USAGE))
        return super().parse_args(ctx, args)


def use_color(choice: Color, stream: Optional[IO[str]]) -> bool:
    """Whether to colour `stream`.

    `--color always|never` wins (no-color.org: a command-line flag overrides
    the environment).  Under `auto`: FORCE_COLOR set to anything but the empty
    string forces colour (force-color.org), NO_COLOR set to anything but the
    empty string turns it off (no-color.org), else colour a terminal whose
    TERM is not `dumb`.
    """
    if choice is not Color.AUTO:
        return choice is Color.ALWAYS
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("NO_COLOR") or stream is None:
        return False
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        return False
    return terminal and os.environ.get("TERM", "") not in ("dumb", "unknown")


def terminal_width() -> int:
    import shutil

    return max(40, shutil.get_terminal_size((80, 24)).columns)


def write_output(content: Union[str, bytes], output: Optional[str]) -> None:
    """Standard output (also for `-` and `/dev/stdout`), or FILE written atomically.

    A reader that goes away early (`| head`, `| grep -q`) is not an error:
    the rest is dropped and the command exits with the code it meant to.
    A closed or full standard output, or a path that cannot take the output,
    is one line and exit 2.
    """
    if output is None or output in STDOUT_NAMES:
        _write_stdout(content)
        return
    try:
        write_atomically(output, content)
    except OutputError as error:
        fail_input(str(error))
    except OSError as error:
        fail_input(f"cannot write {output}: {error.strerror or error}")


def _write_stdout(content: Union[str, bytes]) -> None:
    stream = sys.stdout
    if stream is None:
        fail_input("cannot write the output: standard output is closed")
    # Reports are UTF-8 whatever the locale says; nothing in them can stop the write.
    data = content.encode("utf-8", "replace") if isinstance(content, str) else content
    try:
        binary = getattr(stream, "buffer", None)
        if binary is None:  # a text-only stream (a test runner's): text goes as text
            stream.write(data.decode("utf-8", "replace"))
            stream.flush()
        else:
            stream.flush()
            binary.write(data)
            binary.flush()
    except BrokenPipeError:
        # Keep Python from failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
    except OSError as error:
        fail_input(f"cannot write the output to standard output: {error.strerror or error}")
