"""Snapshot archives: the recording host, the archive writer and reader, the replaying host.

A snapshot holds what the facts read on one machine so that another can
judge it.  This module only moves bytes (the host layer): `RecordingHost`
remembers every answer the live host gave, `write_archive` packs them with
a manifest, `read_archive` reads an archive as hostile input (in memory only,
nothing is extracted; regular files only, no absolute or `..` names, no links
or device nodes; limits on archive size, member count, member size and total
size) and `SnapshotHost` replays it.  Any problem is a `SnapshotError` with
one clear sentence.  Capturing (building facts and running every check
through a `RecordingHost`) and opening a snapshot as facts are orchestration:
`kvmready.app`.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import posixpath
import stat
import sys
import tarfile
import zlib
from typing import IO, Any, Dict, Iterator, List, Mapping, Optional, Tuple, cast

from kvmready.host import DEFAULT_READ_LIMIT, Host, Node, ReadError
from kvmready.model import epoch_seconds
from kvmready.text import clean_text

FORMAT = "kvmready-snapshot"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ROOT_PREFIX = "root"

MAX_ARCHIVE_BYTES = 16 * 1024 * 1024  # compressed, on disk
MAX_MEMBERS = 4096
MAX_MEMBER_BYTES = 16 * 1024 * 1024  # the largest file a fact reads (cpuinfo)
MAX_TOTAL_BYTES = 64 * 1024 * 1024  # uncompressed, all members
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# kvmready's own manifests nest four levels (live -> probe -> guest -> stages); anything far deeper is hostile,
# and would exhaust Python's recursion limit in the checks that walk it.
MAX_MANIFEST_DEPTH = 32

# Never stored, whatever reads them: secrets, home directories, environments.
PRIVATE_PREFIXES = ("/home/", "/root/", "/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/ssh/", "/run/user/")
PRIVATE_NAMES = ("environ", "cmdline_env")


class SnapshotError(Exception):
    """The archive cannot be used; the message says why in one sentence."""


def is_private(path: str) -> bool:
    # Judge the canonical spelling: `/etc//shadow` and `/etc/../etc/shadow` are /etc/shadow.
    directory = path.endswith("/")
    path = "/" + posixpath.normpath(path).lstrip("/")
    if directory and path != "/":
        path += "/"  # list_dir asks about `path + "/"`: prefixes such as "/etc/ssh/" need the slash
    if path.startswith(PRIVATE_PREFIXES) or path in ("/home", "/root"):
        return True
    return path.startswith("/proc/") and posixpath.basename(path) in PRIVATE_NAMES


# What a capture stores at most, so that its own reader always accepts it (one member is the manifest).
CAPTURE_MAX_FILES = MAX_MEMBERS - 1
CAPTURE_MAX_BYTES = MAX_TOTAL_BYTES


class RecordingHost(Host):
    """Wraps the live host and remembers every answer it gave, within the archive's limits."""

    def __init__(self, inner: Host) -> None:
        self.inner = inner
        self.live = inner.live
        self.origin = inner.origin
        self.files: Dict[str, bytes] = {}
        self.stored_bytes = 0
        self.withheld = 0  # files read but not stored: over the limits
        self.read_errors: Dict[str, str] = {}
        self.listings: Dict[str, List[str]] = {}
        self.list_errors: Dict[str, str] = {}
        self.nodes: Dict[str, Optional[Node]] = {}
        self.node_errors: Dict[str, str] = {}

    def read_bytes(self, path: str, limit: int = DEFAULT_READ_LIMIT) -> bytes:
        if is_private(path):
            raise ReadError(path, "withheld: private data is never read")
        try:
            data = self.inner.read_bytes(path, limit)
        except ReadError as error:
            self.read_errors[path] = error.reason
            raise
        if path not in self.files and (len(self.files) >= CAPTURE_MAX_FILES or self.stored_bytes + len(data) > CAPTURE_MAX_BYTES):
            self.withheld += 1
            self.read_errors[path] = f"not stored: a snapshot holds at most {CAPTURE_MAX_FILES} files and {CAPTURE_MAX_BYTES} bytes"
            return data
        if path not in self.files:
            self.stored_bytes += len(data)
        self.files[path] = data
        return data

    def list_dir(self, path: str) -> List[str]:
        if is_private(path + "/"):
            raise ReadError(path, "withheld: private data is never read")
        try:
            names = self.inner.list_dir(path)
        except ReadError as error:
            self.list_errors[path] = error.reason
            raise
        self.listings[path] = list(names)
        return names

    def node(self, path: str) -> Optional[Node]:
        if is_private(path):
            raise ReadError(path, "withheld: private data is never read")
        try:
            node = self.inner.node(path)
        except ReadError as error:
            self.node_errors[path] = error.reason
            raise
        self.nodes[path] = node
        return node


class SnapshotHost(Host):
    """Replays a recording: the same answers, and "not captured" for anything else."""

    live = False

    def __init__(self, manifest: Mapping[str, Any], files: Mapping[str, bytes], origin: str) -> None:
        self.origin = origin
        self._files = dict(files)
        self._read_errors = dict(manifest.get("read_errors", {}))
        self._listings = {path: list(names) for path, names in manifest.get("listings", {}).items()}
        self._list_errors = dict(manifest.get("list_errors", {}))
        self._nodes = {path: (Node.from_dict(data) if data else None) for path, data in manifest.get("nodes", {}).items()}
        self._node_errors = dict(manifest.get("node_errors", {}))

    def read_bytes(self, path: str, limit: int = DEFAULT_READ_LIMIT) -> bytes:
        if path in self._files:
            data = self._files[path]
            if len(data) > limit:
                raise ReadError(path, f"larger than the {limit} byte limit")
            return data
        raise ReadError(path, self._read_errors.get(path, "not captured in the snapshot"))

    def list_dir(self, path: str) -> List[str]:
        if path in self._listings:
            return list(self._listings[path])
        raise ReadError(path, self._list_errors.get(path, "not captured in the snapshot"))

    def node(self, path: str) -> Optional[Node]:
        if path in self._nodes:
            return self._nodes[path]
        raise ReadError(path, self._node_errors.get(path, "not captured in the snapshot"))


# -- writing ---------------------------------------------------------------------


def write_archive(manifest: Mapping[str, Any], files: Mapping[str, bytes]) -> bytes:
    """The .tar.gz of `manifest` and the captured files, byte for byte the same for the same capture."""
    buffer = io.BytesIO()
    mtime = epoch_seconds(manifest["captured_at"])
    # The gzip header carries a time too: pin it, so the same capture gives the same bytes.
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=mtime, filename="") as compressed:
        with tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive:
            _add(archive, MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode(), mtime)
            for path, data in sorted(files.items()):
                _add(archive, f"{ROOT_PREFIX}{path}", data, mtime)
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = mtime
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


# -- open ------------------------------------------------------------------------


MAX_UNCOMPRESSED_BYTES = MAX_TOTAL_BYTES + MAX_MANIFEST_BYTES + 4 * 512 * (MAX_MEMBERS + 2)


class _Bounded:
    """The decompressed stream for tarfile: no read or seek past MAX_UNCOMPRESSED_BYTES, whatever a header claims."""

    def __init__(self, stream: gzip.GzipFile, path: str) -> None:
        self._stream, self._path = stream, path

    def _over(self) -> SnapshotError:
        return SnapshotError(f"{self._path}: decompresses to more than {MAX_UNCOMPRESSED_BYTES} bytes; not a kvmready snapshot")

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or self._stream.tell() + size > MAX_UNCOMPRESSED_BYTES:
            raise self._over()
        return self._stream.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0 or offset > MAX_UNCOMPRESSED_BYTES:
            raise self._over()
        return self._stream.seek(offset)

    def tell(self) -> int:
        return self._stream.tell()

    def drain(self) -> None:
        """Read on to the end of the stream, so gzip checks its trailer (CRC-32 and length); more than the limit is an error."""
        while True:
            room = MAX_UNCOMPRESSED_BYTES - self._stream.tell()
            chunk = self._stream.read(min(65536, room + 1))
            if not chunk:
                return
            if len(chunk) > room:
                raise self._over()


def read_archive(path: str) -> Tuple[dict, Dict[str, bytes]]:
    data = _read_bounded(path)
    manifest_bytes: Optional[bytes] = None
    files: Dict[str, bytes] = {}
    total = 0
    try:
        bounded = _Bounded(gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb"), path)
        with tarfile.open(fileobj=cast(IO[bytes], bounded), mode="r:") as archive:
            for count, member in enumerate(_members(archive), 1):
                if count > MAX_MEMBERS:
                    raise SnapshotError(f"{path}: more than {MAX_MEMBERS} members; not a kvmready snapshot")
                name = _check_member(path, member)
                if name is None:
                    continue
                total += member.size
                if total > MAX_TOTAL_BYTES:
                    raise SnapshotError(f"{path}: members add up to more than {MAX_TOTAL_BYTES} bytes")
                content = _read_member(archive, member)
                if name == MANIFEST:
                    if manifest_bytes is not None:  # which one would a reviewer have read?
                        raise SnapshotError(f"{path}: {MANIFEST} appears twice")
                    manifest_bytes = content
                elif name in files:
                    raise SnapshotError(f"{path}: {name} appears twice")
                else:
                    files[name] = content
        bounded.drain()
    except SnapshotError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise SnapshotError(f"{path}: not a readable .tar.gz archive ({type(error).__name__}: {error})") from None
    if manifest_bytes is None:
        raise SnapshotError(f"{path}: no {MANIFEST}; not a kvmready snapshot")
    manifest = _parse_manifest(path, manifest_bytes)
    _check_files_listed(path, manifest, files)
    return manifest, files


STDIN = "-"


def _read_bounded(path: str) -> bytes:
    """The archive's bytes: a regular file (never a FIFO or device, which could block or have side effects), or stdin for `-`."""
    try:
        if path == STDIN:
            if sys.stdin is None:
                raise SnapshotError("-: standard input is closed; pipe the archive in, or give its file")
            if sys.stdin.isatty():  # nobody types a gzip archive: waiting here would look like a hang
                raise SnapshotError("-: standard input is a terminal; pipe the archive in (`< FILE.tar.gz`), or give its file")
            data = _read_limited(sys.stdin.buffer.fileno())
        else:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                mode = os.fstat(fd).st_mode
                if not stat.S_ISREG(mode):
                    kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
                    raise SnapshotError(f"{path}: {kind}; --snapshot reads a .tar.gz file, or - for standard input")
                data = _read_limited(fd)
            finally:
                os.close(fd)
    except (OSError, AttributeError, ValueError) as error:  # AttributeError/ValueError: no usable stdin
        raise SnapshotError(f"{path}: cannot read ({getattr(error, 'strerror', None) or error})") from None
    if len(data) > MAX_ARCHIVE_BYTES:
        raise SnapshotError(f"{path}: larger than {MAX_ARCHIVE_BYTES} bytes; not a kvmready snapshot")
    return data


def _read_limited(fd: int) -> bytes:
    chunks = []
    room = MAX_ARCHIVE_BYTES + 1  # one byte more tells that the archive is over the limit
    while room > 0:
        chunk = os.read(fd, min(room, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        room -= len(chunk)
    return b"".join(chunks)


def _members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        member = archive.next()
        if member is None:
            return
        yield member


def _check_member(path: str, member: tarfile.TarInfo) -> Optional[str]:
    """The host path (or MANIFEST) a member stands for; None for directories; raises for anything unsafe."""
    name = member.name
    if member.isdir():
        bare = name.rstrip("/")
        if bare != ROOT_PREFIX and not (bare.startswith(ROOT_PREFIX + "/") and is_safe_path(bare[len(ROOT_PREFIX):])):
            raise SnapshotError(f"{path}: member {name!r} is outside {ROOT_PREFIX}/ or not a plain path")
        return None
    if not member.isreg() or member.issparse():
        kind = "link" if member.issym() or member.islnk() else "device or special file" if member.isdev() else "non-regular member"
        raise SnapshotError(f"{path}: {name!r} is a {kind}; snapshots hold regular files only")
    if member.size > MAX_MEMBER_BYTES:
        raise SnapshotError(f"{path}: {name!r} claims {member.size} bytes, over the {MAX_MEMBER_BYTES} byte limit")
    if name == MANIFEST:
        return MANIFEST
    if "\x00" in name or name.startswith("/") or not name.startswith(ROOT_PREFIX + "/"):
        raise SnapshotError(f"{path}: member {name!r} is outside {ROOT_PREFIX}/")
    host_path = name[len(ROOT_PREFIX):]
    if not is_safe_path(host_path):
        raise SnapshotError(f"{path}: member {name!r} is not a plain path (.., //, or .)")
    return host_path


def is_safe_path(path: str) -> bool:
    return path.startswith("/") and "//" not in path and posixpath.normpath(path) == path and "\x00" not in path and ".." not in path.split("/")


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    data = handle.read(member.size + 1) if handle else b""
    if len(data) != member.size:
        raise SnapshotError(f"member {member.name!r} is truncated")
    return data


def _parse_manifest(path: str, data: bytes) -> dict:
    if len(data) > MAX_MANIFEST_BYTES:
        raise SnapshotError(f"{path}: {MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise SnapshotError(f"{path}: {MANIFEST} is not JSON ({error})") from None
    try:
        manifest = scrub(manifest)
    except _TooDeep:
        raise SnapshotError(f"{path}: {MANIFEST} nests deeper than {MAX_MANIFEST_DEPTH} levels") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SnapshotError(f"{path}: {MANIFEST} is not a kvmready snapshot manifest")
    if type(manifest.get("format_version")) is not int or manifest.get("format_version") != FORMAT_VERSION:
        raise SnapshotError(f"{path}: snapshot format version {manifest.get('format_version')!r}; this kvmready reads {FORMAT_VERSION}")
    shapes = {
        "files": dict, "read_errors": dict, "listings": dict, "list_errors": dict,
        "nodes": dict, "node_errors": dict, "live": dict, "captured_at": str,
    }
    for key, kind in shapes.items():
        if not isinstance(manifest.get(key), kind):
            raise SnapshotError(f"{path}: {MANIFEST} field {key!r} is missing or not a {kind.__name__}")
    for key in ("files", "read_errors", "listings", "list_errors", "nodes", "node_errors"):
        for host_path, value in manifest[key].items():
            if not is_safe_path(host_path):
                raise SnapshotError(f"{path}: {MANIFEST} names an unsafe path {host_path!r}")
            _check_value(path, key, host_path, value)
    try:
        epoch_seconds(manifest["captured_at"])
    except ValueError:
        raise SnapshotError(f"{path}: {MANIFEST} captured_at {manifest['captured_at']!r} is not a UTC timestamp") from None
    return manifest


class _TooDeep(Exception):
    pass


def scrub(value: Any, depth: int = 0) -> Any:
    """JSON may carry lone surrogates (`"\\udcff"`), which no UTF-8 output can write: replace them.
    Nesting past MAX_MANIFEST_DEPTH raises _TooDeep."""
    if isinstance(value, str):
        return clean_text(value)
    if depth >= MAX_MANIFEST_DEPTH and isinstance(value, (list, dict)):
        raise _TooDeep()
    if isinstance(value, list):
        return [scrub(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {clean_text(key): scrub(item, depth + 1) for key, item in value.items()}
    return value


def _check_value(path: str, key: str, host_path: str, value: Any) -> None:
    if key.endswith("errors") and isinstance(value, str):
        return
    if key == "files" and isinstance(value, int) and not isinstance(value, bool):
        return
    if key == "listings" and isinstance(value, list) and all(isinstance(n, str) and n and "/" not in n for n in value):
        return
    if key == "nodes" and (value is None or _valid_node(value)):
        return
    raise SnapshotError(f"{path}: {MANIFEST} {key}[{host_path!r}] has the wrong shape")


def _valid_node(value: Any) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("kind"), str):
        return False
    try:
        Node.from_dict(value)
    except (KeyError, TypeError, ValueError, OverflowError):
        return False
    return True


def _check_files_listed(path: str, manifest: dict, files: Mapping[str, bytes]) -> None:
    listed = manifest["files"]
    for host_path, data in files.items():
        if listed.get(host_path) != len(data):
            raise SnapshotError(f"{path}: {ROOT_PREFIX}{host_path} does not match the manifest")
    missing = sorted(set(listed) - set(files))
    if missing:
        raise SnapshotError(f"{path}: the manifest lists {missing[0]} but the archive lacks it")
