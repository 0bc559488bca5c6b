"""Write an output file atomically, and only ever a regular file.

The data goes to a temporary dot-file beside the file's final location,
is synced, and is renamed over it: collectors that read the file
(node_exporter, nfd-worker) never see half of it, and a failed or
interrupted write leaves the old file and no temporary file behind.

What `-o PATH` may replace: a regular file (which keeps its mode and owner)
or nothing.  A symbolic link is written through: the rename happens beside
the link's final target, so the link stays a link.  A directory, device,
FIFO or socket is refused (`OutputError`), since renaming over it would
replace the node itself (`-o /dev/full` as root used to turn the device into
a plain file).
"""

from __future__ import annotations

import os
import signal
import stat
from typing import Optional, Union

# Paths that mean "standard output" to people; the CLI writes to stdout for them.
STDOUT_NAMES = ("-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}  # those _entry turns into a clean stop


class OutputError(Exception):
    """The path cannot take the output; the message says why in one sentence."""


def final_path(path: str) -> str:
    """Where the data will land: `path` with every symbolic link resolved (a dangling link's target is created)."""
    if not path:
        raise OutputError("-o got an empty path; give a file, or - for standard output")
    if path.endswith("/"):
        raise OutputError(f"{path} ends with /, which names a directory; -o writes regular files only")
    try:
        return os.path.realpath(path)
    except OSError as error:  # a magic link its user may not follow (/proc/1/root/...)
        raise OutputError(f"{path} cannot be resolved: {error.strerror}") from None


def _existing(path: str) -> Optional[os.stat_result]:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def write_atomically(path: str, content: Union[str, bytes]) -> None:
    """Replace the regular file at `path` (or through the link at `path`) with `content`."""
    target = final_path(path)
    existing = _existing(target)
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        kind = next((name for test, name in _KINDS if test(existing.st_mode)), "not a regular file")
        shown = path if target == os.path.abspath(path) else f"{path} (-> {target})"
        raise OutputError(f"{shown} is {kind}; -o writes regular files only (use - for standard output)")
    import tempfile  # here, not at start-up: it pulls in random and shutil

    directory = os.path.dirname(target)
    # Stop signals wait while mkstemp creates the file: one arriving inside it would raise before its name is
    # known, and the file would stay.  Released below, a waiting signal raises where the cleanup can see it.
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    temporary = None
    try:
        # A dot-file: nfd-worker and node_exporter (*.prom) both ignore it while it is being written.
        fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        data = content.encode("utf-8") if isinstance(content, str) else content
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _take_over_metadata(temporary, existing)
        os.replace(temporary, target)
    except BaseException:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
    _sync_directory(directory)


def _take_over_metadata(temporary: str, existing: Optional[os.stat_result]) -> None:
    """An existing file keeps its mode and owner; a new one gets the usual 0666 minus the umask."""
    if existing is None:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        return
    if (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(temporary, existing.st_uid, existing.st_gid)
        except PermissionError:
            pass  # only root may give a file away; the content still lands
    os.chmod(temporary, stat.S_IMODE(existing.st_mode))


def _sync_directory(directory: str) -> None:
    """Make the rename itself durable (best effort: some file systems refuse fsync on directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
