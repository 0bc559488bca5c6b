"""Host: every file kvmready reads goes through here.

A host is a root: the live system (`/`), a directory (`--root DIR`) or a
snapshot held in memory.  Reads are bounded, read-only and never leave the
root.  Inside a foreign root, symbolic links are resolved the way `chroot`
would resolve them (an absolute target starts again at the root, `..` stops
at the root), one path component at a time through directory descriptors,
so no link, however hostile, reaches a file of the machine doing the
analysis.  Every failure is a `ReadError` carrying the path and a reason,
which facts turn into "unknown" with that reason.
"""

import errno
import os
import stat
from typing import Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

from kvmready.text import clean_text

DEFAULT_READ_LIMIT = 256 * 1024
MAX_LINK_HOPS = 40

_FILE_KINDS = (
    (stat.S_ISREG, "file"),
    (stat.S_ISDIR, "dir"),
    (stat.S_ISCHR, "char"),
    (stat.S_ISBLK, "block"),
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISLNK, "link"),
)


class ReadError(Exception):
    """A path could not be read; `reason` is a short human phrase."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class Node(NamedTuple):
    """What `stat` says about a path (device numbers only for device nodes)."""

    kind: str  # file, dir, char, block, fifo, socket
    mode: int  # permission bits, e.g. 0o660
    uid: int
    gid: int
    major: Optional[int] = None
    minor: Optional[int] = None
    size: int = 0

    def to_dict(self) -> dict:
        data = {"kind": self.kind, "mode": f"{self.mode:04o}", "uid": self.uid, "gid": self.gid}
        if self.major is not None:
            data["device"] = f"{self.major}:{self.minor}"
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> "Node":
        major = minor = None
        if data.get("device"):
            major_text, _, minor_text = str(data["device"]).partition(":")
            major, minor = int(major_text), int(minor_text)
        return cls(
            kind=str(data["kind"]),
            mode=int(str(data.get("mode", "0")), 8),
            uid=int(data.get("uid", -1)),
            gid=int(data.get("gid", -1)),
            major=major,
            minor=minor,
        )


def node_from_stat(st: os.stat_result) -> Node:
    kind = next((name for test, name in _FILE_KINDS if test(st.st_mode)), "other")
    is_device = kind in ("char", "block")
    return Node(
        kind=kind,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        major=os.major(st.st_rdev) if is_device else None,
        minor=os.minor(st.st_rdev) if is_device else None,
        size=st.st_size,
    )


def os_reason(error: OSError) -> str:
    """`[Errno 13] Permission denied` becomes `Permission denied (EACCES)`."""
    name = errno.errorcode.get(error.errno or 0, "")
    text = error.strerror or str(error)
    return f"{text} ({name})" if name else text


def _normalise(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"host paths are absolute: {path!r}")
    return path


class Host:
    """The read-only view of one machine's files."""

    live: bool = False
    origin: str = ""  # how the user named it: "/", "--root DIR", "--snapshot FILE"

    def read_bytes(self, path: str, limit: int = DEFAULT_READ_LIMIT) -> bytes:
        raise NotImplementedError

    def list_dir(self, path: str) -> List[str]:
        raise NotImplementedError

    def node(self, path: str) -> Optional[Node]:
        """The node at path after resolving links, or None if it does not exist."""
        raise NotImplementedError

    def read_text(self, path: str, limit: int = DEFAULT_READ_LIMIT) -> str:
        # Kernel files are ASCII; foreign trees may hold anything, so never fail on decoding.
        return self.read_bytes(path, limit).decode("utf-8", errors="replace")

    def read_value(self, path: str, limit: int = 4096) -> str:
        """A one-value sysfs/procfs file, stripped."""
        return self.read_text(path, limit).strip()

    def exists(self, path: str) -> bool:
        try:
            return self.node(path) is not None
        except ReadError:
            return False

    def describe(self) -> dict:
        return {"live": self.live, "origin": self.origin}


class DirectoryHost(Host):
    """A host rooted at a directory: the live `/` or a foreign tree."""

    def __init__(self, root: str = "/") -> None:
        if not root:
            raise ReadError(root, "an empty path names no directory")
        try:
            self.root = os.path.realpath(root)  # strict=False, yet a magic link (/proc/1/root) can refuse
        except OSError as error:
            raise ReadError(root, f"cannot be resolved: {os_reason(error)}") from None
        self.live = self.root == "/"
        self.origin = "/" if self.live else f"--root {root}"
        try:  # one look now, so that an unusable root is one clear error rather than every check's
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.listdir(fd)
            finally:
                os.close(fd)
        except NotADirectoryError:
            raise ReadError(root, "not a directory") from None
        except FileNotFoundError:
            raise ReadError(root, "no such directory") from None
        except OSError as error:
            raise ReadError(root, f"cannot be read: {os_reason(error)}") from None

    # -- public API --------------------------------------------------------
    def read_bytes(self, path: str, limit: int = DEFAULT_READ_LIMIT) -> bytes:
        path = _normalise(path)
        try:
            if self.live:
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            else:
                fd = self._open_final(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                return _read_regular(fd, path, limit)
            finally:
                os.close(fd)
        except OSError as error:
            raise ReadError(path, os_reason(error)) from None

    def list_dir(self, path: str) -> List[str]:
        path = _normalise(path)
        try:
            if self.live:
                names = os.listdir(path)
            else:
                fd = self._open_final(path, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    names = os.listdir(fd)
                finally:
                    os.close(fd)
            # A name that is not UTF-8 cannot appear in a report as is.
            return sorted(clean_text(name) for name in names)
        except OSError as error:
            raise ReadError(path, os_reason(error)) from None

    def node(self, path: str) -> Optional[Node]:
        path = _normalise(path)
        try:
            if self.live:
                return node_from_stat(os.stat(path))
            parent, name = self._resolve(path)
            try:
                if name is None:
                    return node_from_stat(os.fstat(parent))
                return node_from_stat(os.stat(name, dir_fd=parent, follow_symlinks=False))
            finally:
                os.close(parent)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None
        except OSError as error:
            raise ReadError(path, os_reason(error)) from None

    # -- confined resolution for foreign roots ------------------------------
    def _open_final(self, path: str, flags: int) -> int:
        parent, name = self._resolve(path)
        try:
            if name is None:  # the root itself
                return os.open(".", flags | os.O_CLOEXEC, dir_fd=parent)
            # Opening a device node can have side effects (a tape rewinds): look first.
            kind = node_from_stat(os.stat(name, dir_fd=parent, follow_symlinks=False)).kind
            if kind not in ("file", "dir"):
                raise ReadError(path, f"not a regular file ({kind})")
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        finally:
            os.close(parent)

    def _resolve(self, path: str) -> Tuple[int, Optional[str]]:
        """Walk path inside the root; return (fd of the parent dir, final name).

        The final component is a non-link (or missing) entry of the parent.
        The caller owns the returned descriptor.
        """
        pending = [part for part in path.split("/") if part not in ("", ".")]
        pending.reverse()  # a stack: the next component is at the end
        stack = [os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
        hops = 0
        try:
            while pending:
                name = pending.pop()
                if name == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                try:
                    st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
                except FileNotFoundError:
                    if pending:
                        raise
                    return self._keep_parent(stack), name
                if stat.S_ISLNK(st.st_mode):
                    hops += 1
                    if hops > MAX_LINK_HOPS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                    target = os.readlink(name, dir_fd=stack[-1])
                    if target.startswith("/"):
                        while len(stack) > 1:  # absolute targets start again at the root
                            os.close(stack.pop())
                    pending.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))
                    continue
                if not pending:
                    return self._keep_parent(stack), name
                if not stat.S_ISDIR(st.st_mode):
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                stack.append(os.open(name, flags, dir_fd=stack[-1]))
            return self._keep_parent(stack), None
        except BaseException:
            for fd in stack:
                os.close(fd)
            raise

    @staticmethod
    def _keep_parent(stack: List[int]) -> int:
        for fd in stack[:-1]:
            os.close(fd)
        return stack[-1]


def _read_regular(fd: int, path: str, limit: int) -> bytes:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        kind = node_from_stat(st).kind
        raise ReadError(path, f"not a regular file ({kind})")
    chunks = []
    remaining = limit + 1  # one byte more tells us the file is over the limit
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    data = b"".join(chunks)
    if len(data) > limit:
        raise ReadError(path, f"larger than the {limit} byte limit")
    return data


class MemoryHost(Host):
    """A host whose files live in memory (an opened snapshot, or a test)."""

    def __init__(
        self,
        files: Mapping[str, bytes],
        nodes: Optional[Mapping[str, Node]] = None,
        errors: Optional[Mapping[str, str]] = None,
        origin: str = "memory",
    ) -> None:
        self._files: Dict[str, bytes] = {_normalise(p).rstrip("/") or "/": d for p, d in files.items()}
        self._nodes: Dict[str, Node] = dict(nodes or {})
        self._errors: Dict[str, str] = dict(errors or {})
        self._dirs = _parent_dirs(list(self._files) + list(self._nodes) + list(self._errors))
        self.origin = origin

    def read_bytes(self, path: str, limit: int = DEFAULT_READ_LIMIT) -> bytes:
        path = _normalise(path)
        if path in self._errors:
            raise ReadError(path, self._errors[path])
        if path in self._files:
            data = self._files[path]
            if len(data) > limit:
                raise ReadError(path, f"larger than the {limit} byte limit")
            return data
        if path in self._dirs:
            raise ReadError(path, "not a regular file (dir)")
        if path in self._nodes:
            raise ReadError(path, f"not a regular file ({self._nodes[path].kind})")
        raise ReadError(path, "No such file or directory (ENOENT)")

    def list_dir(self, path: str) -> List[str]:
        path = _normalise(path).rstrip("/") or "/"
        if path in self._errors:
            raise ReadError(path, self._errors[path])
        if path not in self._dirs:
            if path in self._files:
                raise ReadError(path, "Not a directory (ENOTDIR)")
            raise ReadError(path, "No such file or directory (ENOENT)")
        prefix = path.rstrip("/") + "/"
        names = set()
        unreadable = [entry for entry, reason in self._errors.items() if "ENOENT" not in reason]
        for entry in list(self._files) + list(self._nodes) + list(self._dirs) + unreadable:
            if entry.startswith(prefix) and entry != path:
                names.add(entry[len(prefix):].split("/", 1)[0])
        return sorted(names)

    def node(self, path: str) -> Optional[Node]:
        path = _normalise(path).rstrip("/") or "/"
        if path in self._nodes:
            return self._nodes[path]
        if path in self._files:
            return Node(kind="file", mode=0o644, uid=0, gid=0, size=len(self._files[path]))
        if path in self._dirs:
            return Node(kind="dir", mode=0o755, uid=0, gid=0)
        if path in self._errors and "ENOENT" not in self._errors[path]:
            return Node(kind="file", mode=0o000, uid=0, gid=0)  # there, but unreadable
        return None


def _parent_dirs(paths: Iterable[str]) -> set:
    dirs = {"/"}
    for path in paths:
        parts = path.strip("/").split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            dirs.add("/" + "/".join(parts[:depth]))
    return dirs
