"""What every command shares: bad input as one line and exit 2, writing the output, colour."""

from __future__ import annotations

import enum
import os
import sys
from typing import IO, NoReturn, Optional

import typer

from kvmready.model import ExitCode


class Color(str, enum.Enum):
    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


def fail_input(message: str) -> NoReturn:
    """Bad input: one clear line on stderr, exit 2, never a traceback."""
    sys.stderr.write(f"kvmready: error: {message}\n")
    raise typer.Exit(int(ExitCode.USAGE))


def use_color(choice: Color, stream: IO[str]) -> bool:
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
