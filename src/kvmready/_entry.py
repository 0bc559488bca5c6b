"""The console-script entry point (and `python -m kvmready`), kept free of imports so it can tune start-up.

Garbage collection: a run allocates a few hundred thousand objects in
imports and frees almost none of them before exit, so the cyclic collector
only costs time, in passes during the imports and in its sweep at shutdown
(together about 13 ms of a ~55 ms run).  It is off for the run, and what is
left is frozen before exit so finalisation skips it.

Signals: Ctrl-C (SIGINT), SIGTERM and SIGHUP raise `Stopped` instead of
killing the process or raising KeyboardInterrupt (which Typer would turn
into "Aborted!" and exit 1 on older releases).  No library catches it, so
every `finally` still runs (a half-written --output temporary file is
removed, /dev/kvm closed).  The handler first ignores further signals, so a
second Ctrl-C cannot interrupt the cleanup with a traceback.  Ctrl-C exits
130 with one line; SIGTERM and SIGHUP, after the cleanup, end the process by
that same signal, as its sender expects.
"""

import gc
import os
import signal
import sys

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# Wider than any terminal.  rich lays the help out at $COLUMNS, so COLUMNS=1000000000 took 8 GB and minutes.
MAX_COLUMNS = 1000


class Stopped(BaseException):
    """A stop signal, on its way to exit 130 (SIGINT) or death by the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _ignore_stop_signals() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _on_stop_signal(signum: int, frame: object) -> None:
    _ignore_stop_signals()
    raise Stopped(signum)


def _on_unraisable(unraisable: "sys.UnraisableHookArgs") -> None:
    """A stop signal that landed in a weakref callback or a __del__ (the import machinery has both) raises Stopped
    where no exception can propagate: Python would print "Exception ignored" with a traceback and run on.  Raise it
    again a moment later, from another thread, as an asynchronous exception in the main thread, so that it lands in
    ordinary code and stops the run as any other does.  Stop signals stay ignored meanwhile (the handler ignored
    them), so a second Ctrl-C cannot land in here; should the exception land in such a context again, this hook
    runs again and so does the retry."""
    stop = unraisable.exc_value
    if isinstance(stop, Stopped):
        import threading

        again = threading.Timer(0.001, _raise_in_main, (threading.main_thread().ident, stop.signum))
        again.daemon = True
        again.start()
        return
    sys.__unraisablehook__(unraisable)


def _raise_in_main(thread_id: int, signum: int) -> None:
    import ctypes

    class StoppedBy(Stopped):  # an asynchronous exception is given as a class: this one knows its signal
        def __init__(self) -> None:
            super().__init__(signum)

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(StoppedBy))


def _bound_columns() -> None:
    """COLUMNS past MAX_COLUMNS is MAX_COLUMNS for everything that reads it (rich, shutil)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isascii() and columns.isdigit() and (len(columns) > 6 or int(columns) > MAX_COLUMNS):
        os.environ["COLUMNS"] = str(MAX_COLUMNS)


def main() -> None:
    gc.disable()
    _bound_columns()
    sys.unraisablehook = _on_unraisable
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_stop_signal)
    try:
        from kvmready.cli import app

        app()
    except Stopped as stop:
        _ignore_stop_signals()
        _stop(stop.signum)
    except OSError as error:
        _unwritable(error)
    finally:
        _ignore_stop_signals()  # shutdown is quick; a late signal must not print a traceback from it
        gc.freeze()


def _unwritable(error: OSError) -> None:
    """An OSError no command caught: in practice typer's help, a usage message or the completion script that could
    not be written (`--help >/dev/full`, `--badopt 2>/dev/full`, an unwritable ~/.bashrc).  One line, exit 2."""
    where = f": {error.filename}" if error.filename else ""
    try:
        sys.stderr.write(f"kvmready: error: cannot write{where}: {error.strerror or error}\n")
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass  # no stderr to tell
    _drop_unwritten_output()
    sys.exit(2)


def _drop_unwritten_output() -> None:
    """Point stdout and stderr at /dev/null, so the interpreter's flush at exit cannot fail once more."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                os.dup2(null, stream.fileno())
    except (AttributeError, OSError, ValueError):
        pass


def _stop(signum: int) -> None:
    name = signal.Signals(signum).name
    try:
        sys.stderr.write("kvmready: interrupted\n" if signum == signal.SIGINT else f"kvmready: stopped by {name}\n")
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass  # no stderr to tell
    if signum == signal.SIGINT:
        from kvmready.model import ExitCode

        sys.exit(int(ExitCode.INTERRUPTED))
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    sys.exit(128 + signum)  # only if the signal did not end the process
