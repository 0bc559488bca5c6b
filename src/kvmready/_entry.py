"""The console-script entry point (and `python -m kvmready`), kept free of imports so it can tune start-up.

Garbage collection: a run allocates a few hundred thousand objects in
imports and frees almost none of them before exit, so the cyclic collector
only costs time, in passes during the imports and in its sweep at shutdown
(together about 13 ms of a ~55 ms run).  It is off for the run, and what is
left is frozen before exit so finalisation skips it.

Ctrl-C: Typer turns KeyboardInterrupt into exit 130 (0.26+) or "Aborted!"
and exit 1 (older releases).  SIGINT raises `Interrupted` instead, which no
library catches, so every `finally` still runs (a half-written --output
temporary file is removed, /dev/kvm closed) and the exit is always 130.
"""

import gc
import signal
import sys


class Interrupted(BaseException):
    """Ctrl-C, on its way to exit 130."""


def _on_sigint(signum: int, frame: object) -> None:
    raise Interrupted


def main() -> None:
    gc.disable()
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        from kvmready.cli import app

        app()
    except Interrupted:
        from kvmready.model import ExitCode

        sys.stderr.write("kvmready: interrupted\n")
        sys.exit(int(ExitCode.INTERRUPTED))
    finally:
        gc.freeze()
