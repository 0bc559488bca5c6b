"""Write a file atomically: a temporary file beside it, fsync, rename.

Collectors that read the file (node_exporter, nfd-worker) never see half of
it; a failed write leaves the old file and no temporary file behind.
"""

from __future__ import annotations

import os
import tempfile
from typing import Union


def write_atomically(path: str, content: Union[str, bytes], mode: int = 0o644) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    # A dot-file: nfd-worker and node_exporter (*.prom) both ignore it while it is being written.
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        data = content.encode("utf-8") if isinstance(content, str) else content
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
