"""A corpus of hostile snapshot archives, built at test time (no binary blobs in git).

Every builder writes one file (or arranges one path) under a directory the
test owns and returns the path to pass to `kvmready check --snapshot`.  Most
archives are the valid base snapshot of `base_files()`/`base_manifest()` plus
exactly one defect, so a rejection can only come from that defect (the test
suite also proves the base itself is accepted).

Archives are written byte by byte with raw tar headers (`header`, `tar`), so
every field a hostile writer controls can be set: names with `..`, absolute
names, link and device types, GNU and PAX extensions, sizes the data does not
have.  Decompression bombs stay small on disk: a gzip stream may consist of
many members, so 1 GiB of zeros is one compressed MiB of zeros repeated 1024
times (about 1 MB on disk), and a header that claims 1 TiB needs no data at
all.

    for case in HOSTILE:            # each must give exit 2 and one error line
        path = case.build(tmp_path)
    for case in TOLERATED:          # valid archives with garbage contents: never exit 2
        ...

A case with `bug` set is a known defect of the reader (see the reason).
"""

from __future__ import annotations

import bz2
import functools
import gzip
import io
import json
import lzma
import os
import random
import stat
import zipfile
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Union

from kvmready.facts.live import Credentials, DiskUsage, GuestResult, KvmProbe, LiveFacts
from kvmready.kvmapi import CAPABILITIES, LOOP_INSTRUCTIONS, SMOKE_BYTE, SMOKE_PORT, STAGE_NAMES

BLOCK = 512
KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB

CAPTURED_AT = "2026-01-02T03:04:05Z"
MTIME = 1767323045  # CAPTURED_AT as a Unix time
MANIFEST = "manifest.json"

# The reader's documented limits (README: 16 MiB compressed, 4096 members,
# 16 MiB per member, 64 MiB in all); kept here so the corpus states what it attacks.
LIMIT_ARCHIVE = 16 * MIB
LIMIT_MEMBERS = 4096
LIMIT_MEMBER = 16 * MIB
LIMIT_TOTAL = 64 * MIB
LIMIT_MANIFEST = 4 * MIB

Data = Union[str, bytes]


def _b(value: Data) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


# -- the valid base snapshot --------------------------------------------------------

CPUINFO = "".join(
    f"processor\t: {cpu}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 154\n"
    f"model name\t: 12th Gen Intel(R) Core(TM) i7-1265U\n"
    "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc nonstop_tsc cpuid pni vmx ssse3 sse4_1 sse4_2 "
    "x2apic popcnt aes xsave avx rdrand ept vpid flexpriority\n"
    "vmx flags\t: vnmi preemption_timer invvpid ept_x_only ept_ad flexpriority tsc_offset vtpr mtf vapic ept "
    "vpid unrestricted_guest\n\n"
    for cpu in range(4)
)


def base_files() -> Dict[str, bytes]:
    """The files of a ready Intel desktop, as a snapshot stores them under root/."""
    return {
        "/proc/cpuinfo": CPUINFO.encode(),
        "/proc/sys/kernel/osrelease": b"6.8.0-45-generic\n",
        "/proc/sys/kernel/hostname": b"hostile\n",
        "/proc/version": b"Linux version 6.8.0-45-generic (buildd@lcy02) (gcc 13.2.0) #45-Ubuntu SMP\n",
        "/proc/cmdline": b"BOOT_IMAGE=/vmlinuz-6.8.0-45-generic root=/dev/nvme0n1p2 ro quiet\n",
        "/proc/meminfo": b"MemTotal:       32768000 kB\nMemFree:        20000000 kB\nMemAvailable:   24000000 kB\n",
        "/proc/modules": (
            b"kvm_intel 409600 0 - Live 0x0000000000000000\n"
            b"kvm 1384448 1 kvm_intel, Live 0x0000000000000000\n"
            b"tun 61440 0 - Live 0x0000000000000000\n"
        ),
        "/etc/os-release": b'NAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nID_LIKE=debian\nPRETTY_NAME="Ubuntu 24.04.1 LTS"\n',
        "/etc/group": b"root:x:0:\nkvm:x:992:alice\nrender:x:993:alice\nalice:x:1000:\n",
        "/sys/module/kvm/parameters/enable_vmware_backdoor": b"N\n",
        "/sys/module/kvm_intel/parameters/ept": b"Y\n",
        "/sys/module/kvm_intel/parameters/nested": b"Y\n",
        "/sys/module/kvm_intel/parameters/unrestricted_guest": b"Y\n",
        "/sys/kernel/security/lockdown": b"[none] integrity confidentiality\n",
        "/sys/class/dmi/id/sys_vendor": b"LENOVO\n",
        "/sys/class/dmi/id/product_name": b"21AH\n",
    }


def _node(kind: str, mode: str, uid: int, gid: int, device: Optional[str] = None) -> dict:
    data = {"kind": kind, "mode": mode, "uid": uid, "gid": gid}
    if device:
        data["device"] = device
    return data


def base_live() -> dict:
    """The live section: built from the model classes, so it stays in the format the reader expects."""
    probe = KvmProbe(
        api_version=12,
        capabilities={cap.name: 1 for cap in CAPABILITIES},
        capability_numbers={cap.name: cap.number for cap in CAPABILITIES},
        capability_scope="vm",
        vm_created=True,
        guest=GuestResult(True, ("IO",) * 5 + ("HLT",), SMOKE_PORT, SMOKE_BYTE, 6, 1_234_567, None,
                          STAGE_NAMES, None, 98_765, LOOP_INSTRUCTIONS),
        duration_ns=2_000_000,
    )
    live = LiveFacts(
        kvm=probe,
        credentials=Credentials(1000, 1000, 1000, (992, 1000), "alice"),
        device_acl=False,
        msr=None,
        disk=DiskUsage("/home/alice/vmware", 1000 * GIB, 500 * GIB, "/home/alice"),
    ).to_dict()
    live["cpuid_signature"] = None
    return json.loads(json.dumps(live))  # plain JSON types only


def base_manifest(files: Optional[Mapping[str, bytes]] = None) -> dict:
    files = base_files() if files is None else files
    return {
        "format": "kvmready-snapshot",
        "format_version": 1,
        "tool": {"name": "kvmready", "version": "0.1.0"},
        "captured_at": CAPTURED_AT,
        "hostname": "hostile",
        "vm_dir": "~/vmware",
        "files": {path: len(data) for path, data in sorted(files.items())},
        "read_errors": {"/proc/sys/kernel/arch": "No such file or directory (ENOENT)"},
        "listings": {
            "/dev": ["dri", "kvm", "net", "vhost-net"],
            "/dev/dri": ["card0", "renderD128"],
            "/sys/module": ["kvm", "kvm_intel", "tun"],
            "/sys/module/kvm/parameters": ["enable_vmware_backdoor"],
            "/sys/module/kvm_intel/parameters": ["ept", "nested", "unrestricted_guest"],
        },
        "list_errors": {"/sys/firmware/efi/efivars": "No such file or directory (ENOENT)"},
        "nodes": {
            "/dev/kvm": _node("char", "0660", 0, 992, "10:232"),
            "/dev/net/tun": _node("char", "0666", 0, 0, "10:200"),
            "/dev/vhost-net": _node("char", "0660", 0, 992, "10:238"),
            "/sys/firmware": _node("dir", "0755", 0, 0),
            "/sys/firmware/efi": None,
        },
        "node_errors": {},
        "live": base_live(),
    }


def manifest_bytes(manifest: object) -> bytes:
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()


# -- raw tar writing ---------------------------------------------------------------

REGTYPE, LNKTYPE, SYMTYPE, CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE, CONTTYPE = b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7"
GNU_LONGNAME, GNU_LONGLINK, GNU_SPARSE = b"L", b"K", b"S"
PAX_HEADER, PAX_GLOBAL = b"x", b"g"


def _octal(value: int, width: int) -> bytes:
    """A numeric field: octal with a NUL, or GNU base-256 when it does not fit."""
    if 0 <= value < 8 ** (width - 1):
        return b"%0*o" % (width - 1, value) + b"\0"
    return b"\x80" + value.to_bytes(width - 1, "big")


def header(
    name: Data,
    *,
    size: int = 0,
    typeflag: bytes = REGTYPE,
    linkname: Data = b"",
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: int = MTIME,
    devmajor: int = 0,
    devminor: int = 0,
    gnu: bool = False,
    patch: Optional[Mapping[int, bytes]] = None,
) -> bytes:
    """One 512-byte tar header, ustar (or GNU magic), with any field the caller wants."""
    raw_name = _b(name)
    prefix = b""
    if len(raw_name) > 100:
        cut = raw_name.rfind(b"/", 0, 156)
        prefix, raw_name = raw_name[:cut], raw_name[cut + 1 :]
    buf = bytearray(BLOCK)
    buf[0:100] = raw_name[:100].ljust(100, b"\0")
    buf[100:108] = _octal(mode, 8)
    buf[108:116] = _octal(uid, 8)
    buf[116:124] = _octal(gid, 8)
    buf[124:136] = _octal(size, 12)
    buf[136:148] = _octal(mtime, 12)
    buf[156:157] = typeflag
    buf[157:257] = _b(linkname)[:100].ljust(100, b"\0")
    buf[257:265] = b"ustar  \0" if gnu else b"ustar\x0000"
    buf[265:297] = b"root".ljust(32, b"\0")
    buf[297:329] = b"root".ljust(32, b"\0")
    buf[329:337] = _octal(devmajor, 8)
    buf[337:345] = _octal(devminor, 8)
    if not gnu:
        buf[345:500] = prefix[:155].ljust(155, b"\0")
    for offset, value in (patch or {}).items():
        buf[offset : offset + len(value)] = value
    buf[148:156] = b" " * 8
    buf[148:156] = b"%06o\0 " % sum(buf)
    return bytes(buf)


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


def pax_record(key: str, value: Data) -> bytes:
    body = b" " + key.encode() + b"=" + _b(value) + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


class Member(NamedTuple):
    """One archive member as a hostile writer would put it."""

    name: Data
    data: bytes = b""
    typeflag: bytes = REGTYPE
    size: Optional[int] = None  # the size field, when it should lie about the data
    linkname: Data = b""
    devmajor: int = 0
    devminor: int = 0
    pax: Optional[Mapping[str, Data]] = None  # a PAX extended header in front of it
    gnu: bool = False
    patch: Optional[Mapping[int, bytes]] = None

    def to_bytes(self) -> bytes:
        out = b""
        if self.pax:
            records = b"".join(pax_record(key, value) for key, value in self.pax.items())
            out += header("././@PaxHeader", size=len(records), typeflag=PAX_HEADER) + _pad(records)
        size = len(self.data) if self.size is None else self.size
        out += header(
            self.name,
            size=size,
            typeflag=self.typeflag,
            linkname=self.linkname,
            devmajor=self.devmajor,
            devminor=self.devminor,
            gnu=self.gnu,
            patch=self.patch,
        )
        return out + _pad(self.data)


END = b"\0" * (2 * BLOCK)


def tar(members: Iterable[Member], end: bool = True) -> bytes:
    return b"".join(member.to_bytes() for member in members) + (END if end else b"")


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def file_members(files: Mapping[str, bytes]) -> List[Member]:
    return [Member(f"root{path}", data) for path, data in sorted(files.items())]


def snapshot_archive(
    files: Optional[Mapping[str, bytes]] = None,
    manifest: object = None,
    *,
    raw_manifest: Optional[bytes] = None,
    before: Sequence[Member] = (),
    after: Sequence[Member] = (),
    members: Optional[Sequence[Member]] = None,
) -> bytes:
    """The base snapshot (or these files), with members added before/after or replaced."""
    files = base_files() if files is None else dict(files)
    if raw_manifest is None:
        raw_manifest = manifest_bytes(base_manifest(files) if manifest is None else manifest)
    if members is None:
        members = [Member(MANIFEST, raw_manifest)] + file_members(files)
    return gz(tar([*before, *members, *after]))


@functools.cache
def zeros_gz(mib: int = 1) -> bytes:
    """One gzip member holding `mib` MiB of zeros (about 1 KB a MiB)."""
    return gz(b"\0" * (mib * MIB))


def zeros_stream(size: int) -> bytes:
    """`size` zero bytes (a multiple of 1 MiB) as concatenated gzip members: ~1 KB on disk per MiB."""
    assert size % MIB == 0
    return zeros_gz(1) * (size // MIB)


# -- writing into the test's directory -----------------------------------------------


class Case(NamedTuple):
    """One archive (or archive path) and what the CLI must do with it."""

    name: str
    make: Optional[Callable[[], bytes]] = None  # the archive's bytes
    expect: str = ""  # a regex the error line (after "kvmready: error: ") must match
    max_seconds: Optional[float] = None  # a sanity bound on the rejection time
    outcome: str = "reject"  # reject: exit 2; tolerate: exit 0/1/3; either: no traceback and valid output
    needs_non_root: bool = False
    place: Optional[Callable[[Path], Path]] = None  # arranges the path itself (missing, a directory, a loop ...)

    def build(self, directory: Union[str, os.PathLike]) -> Path:
        """Write the archive (or arrange the path) under directory; return what to pass to --snapshot."""
        if self.place is not None:
            return self.place(Path(directory))
        assert self.make is not None
        path = Path(directory) / f"{self.name}.tar.gz"
        path.write_bytes(self.make())
        return path


NOT_ARCHIVE = r"not a readable \.tar\.gz archive"
OUTSIDE = r"outside root/|not a plain path"
LINK = r"is a link; snapshots hold regular files only"
SPECIAL = r"is a device or special file; snapshots hold regular files only"
NON_REGULAR = r"non-regular member|regular files only"
MALFORMED_LIVE = r"live results are malformed"


def _base_with(**changes: object) -> Callable[[], bytes]:
    def make() -> bytes:
        manifest = base_manifest()
        manifest.update(changes)
        return snapshot_archive(manifest=manifest)

    return make


def _base_without(key: str) -> Callable[[], bytes]:
    def make() -> bytes:
        manifest = base_manifest()
        del manifest[key]
        return snapshot_archive(manifest=manifest)

    return make


def _map_entry(key: str, host_path: str, value: object) -> Callable[[], bytes]:
    """The base manifest with one more entry in one of its path maps."""

    def make() -> bytes:
        manifest = base_manifest()
        manifest[key] = dict(manifest[key])
        manifest[key][host_path] = value
        return snapshot_archive(manifest=manifest)

    return make


def _live_change(edit: Callable[[dict], None]) -> Callable[[], bytes]:
    def make() -> bytes:
        manifest = base_manifest()
        edit(manifest["live"])
        return snapshot_archive(manifest=manifest)

    return make


def _raw_manifest(raw: bytes) -> Callable[[], bytes]:
    return lambda: snapshot_archive(raw_manifest=raw)


def _extra_files(members: Sequence[Member], listed: Optional[Mapping[str, int]] = None, where: str = "after") -> Callable[[], bytes]:
    """The base snapshot plus members; `listed` adds their sizes to the manifest (so only the defect counts)."""

    def make() -> bytes:
        manifest = base_manifest()
        manifest["files"].update(listed or {})
        kwargs = {where: members}
        return snapshot_archive(manifest=manifest, **kwargs)

    return make


def _set(path: Sequence[str], value: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        for key in path[:-1]:
            data = data[key]
        data[path[-1]] = value

    return edit


def _delete(path: Sequence[str]) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        for key in path[:-1]:
            data = data[key]
        del data[path[-1]]

    return edit


# -- the bombs -----------------------------------------------------------------------


def huge_member_claim() -> bytes:
    """A regular member whose header says 1 GiB, and 1 GiB of zeros really behind it (~1 MB on disk)."""
    files = base_files()
    head = tar([Member(MANIFEST, manifest_bytes(base_manifest(files)))], end=False)
    head += header("root/proc/cpuinfo", size=GIB)
    return gz(head) + zeros_stream(GIB) + gz(END)


def gnu_sparse_1gib() -> bytes:
    """An old-GNU sparse member ('S'): 512 bytes stored, 1 GiB real size."""
    sparse_map = _octal(GIB - BLOCK, 12) + _octal(BLOCK, 12)  # one chunk at the very end
    patch = {386: sparse_map, 482: b"\0", 483: _octal(GIB, 12)}
    member = Member("root/proc/cpuinfo", b"x" * BLOCK, typeflag=GNU_SPARSE, gnu=True, patch=patch)
    return gz(tar([Member(MANIFEST, manifest_bytes(base_manifest())), member]))


def pax_sparse_1gib() -> bytes:
    """A PAX (GNU sparse 0.1) member: 512 bytes stored, 1 GiB real size."""
    pax = {
        "GNU.sparse.map": f"{GIB - BLOCK},{BLOCK}",
        "GNU.sparse.size": str(GIB),
        "GNU.sparse.name": "root/proc/cpuinfo",
    }
    member = Member("root/proc/GNUSparseFile.0/cpuinfo", b"x" * BLOCK, pax=pax)
    return gz(tar([Member(MANIFEST, manifest_bytes(base_manifest())), member]))


def pax_size_1gib() -> bytes:
    """A PAX `size` record saying 1 GiB for a regular member (the ustar size field says 512)."""
    member = Member("root/proc/cpuinfo", b"x" * BLOCK, pax={"size": str(GIB)})
    return gz(tar([Member(MANIFEST, manifest_bytes(base_manifest())), member], end=False)) + gz(END)


def extension_header_bomb(typeflag: bytes, claim: int = TIB) -> Callable[[], bytes]:
    """A GNU long-name/long-link or PAX header that claims `claim` bytes of header data (none follows).

    tarfile reads such a header's data in one `read(size)`, so the reader must
    bound the stream before tarfile sees it; the archive is under 100 bytes.
    """

    def make() -> bytes:
        return gz(header("././@LongLink", size=claim, typeflag=typeflag) + b"\0" * (8 * BLOCK))

    return make


def members_add_up() -> bytes:
    """Five 15 MiB members of zeros: each under the 16 MiB member limit, 75 MiB together (~80 KB on disk)."""
    files = base_files()
    size = 15 * MIB
    extra = {f"/var/zero{index}": size for index in range(5)}
    manifest = base_manifest(files)
    manifest["files"].update(extra)
    out = [gz(tar([Member(MANIFEST, manifest_bytes(manifest))] + file_members(files), end=False))]
    for path in extra:
        out.append(gz(header(f"root{path}", size=size)))
        out.append(zeros_stream(size))
    out.append(gz(END))
    return b"".join(out)


@functools.cache
def many_members(count: int = 100_000) -> bytes:
    """`count` empty regular members under root/ (tar headers written directly: ~0.3 s for 100k)."""
    template = bytearray(header("root/t/00000000", size=0))
    template[148:156] = b" " * 8
    base_sum = sum(template) - sum(b"00000000")
    chunks = [tar([Member(MANIFEST, manifest_bytes(base_manifest()))], end=False)]
    for index in range(count):
        digits = b"%08d" % index
        block = bytearray(template)
        block[7:15] = digits
        block[148:156] = b"%06o\0 " % (base_sum + sum(digits))
        chunks.append(bytes(block))
    chunks.append(END)
    return gzip.compress(b"".join(chunks), compresslevel=1, mtime=0)


def truncated_half() -> bytes:
    data = snapshot_archive()
    return data[: len(data) // 2]


def truncated_tar_in_complete_gzip() -> bytes:
    raw = tar([Member(MANIFEST, manifest_bytes(base_manifest()))] + file_members(base_files()))
    return gz(raw[: len(raw) // 2 + 100])


def bad_crc() -> bytes:
    data = bytearray(snapshot_archive())
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    return bytes(data)


def garbage_after_manifest() -> bytes:
    """The manifest, then a block of garbage where the next header should be: the files listed are missing."""
    return gz(tar([Member(MANIFEST, manifest_bytes(base_manifest()))], end=False) + bytes(range(256)) * 2 + END)


def _plain_tar() -> bytes:
    return gzip.decompress(snapshot_archive())


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(MANIFEST, manifest_bytes(base_manifest()))
    return buffer.getvalue()


def _random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).getrandbits(8 * size).to_bytes(size, "little")


PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"


def oversized_file(directory: Path) -> Path:
    """17 MiB on disk (sparse: no blocks used), over the 16 MiB archive limit."""
    path = Path(directory) / "oversized.tar.gz"
    with open(path, "wb") as handle:
        handle.write(snapshot_archive())
        handle.truncate(LIMIT_ARCHIVE + MIB)
    return path


# -- the archive path itself ------------------------------------------------------


def missing_path(directory: Path) -> Path:
    return Path(directory) / "does-not-exist.tar.gz"


def directory_path(directory: Path) -> Path:
    path = Path(directory) / "a-directory.tar.gz"
    path.mkdir()
    return path


def through_a_file(directory: Path) -> Path:
    parent = Path(directory) / "plain-file"
    parent.write_bytes(snapshot_archive())
    return parent / "snapshot.tar.gz"


def symlink_loop(directory: Path) -> Path:
    a, b = Path(directory) / "loop-a.tar.gz", Path(directory) / "loop-b.tar.gz"
    os.symlink(b.name, a)
    os.symlink(a.name, b)
    return a


def dangling_symlink(directory: Path) -> Path:
    path = Path(directory) / "dangling.tar.gz"
    os.symlink("nowhere/at/all.tar.gz", path)
    return path


def unreadable_file(directory: Path) -> Path:
    path = Path(directory) / "unreadable.tar.gz"
    path.write_bytes(snapshot_archive())
    path.chmod(0)
    return path


# -- tolerated: valid archives whose contents are garbage -----------------------------


def _with_files(changes: Mapping[str, bytes]) -> Callable[[], bytes]:
    def make() -> bytes:
        files = base_files()
        files.update(changes)
        return snapshot_archive(files)

    return make


def _all_files_garbage() -> bytes:
    files = {path: _random_bytes(len(data), seed) for seed, (path, data) in enumerate(sorted(base_files().items()))}
    return snapshot_archive(files)


GARBAGE = b"\x00\xff\xfe\x80garbage\x00\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc\n\x00" * 64


def _cpuinfo_binary() -> bytes:
    return snapshot_archive({**base_files(), "/proc/cpuinfo": _random_bytes(4096, 1)})


def _odd_strings() -> bytes:
    manifest = base_manifest()
    manifest["read_errors"]["/proc/sysinfo"] = "Permission denied (EACCES) \u202e\U0001f4a5 \x1b[31mred\x1b[0m"
    manifest["hostname"] = "h\u00f6st\u202e"
    return snapshot_archive(manifest=manifest)


def _surrogate_listing() -> bytes:
    manifest = base_manifest()
    manifest["listings"]["/dev/dri"] = ["card0", "renderD128\udcff"]
    return snapshot_archive(manifest=manifest)


def _many_listed() -> bytes:
    manifest = base_manifest()
    manifest["files"].update({f"/f/{index}": 1 for index in range(100_000)})
    return snapshot_archive(manifest=manifest)


def _surrogate_reason() -> bytes:
    manifest = base_manifest()
    manifest["read_errors"]["/proc/sysinfo"] = "denied \udcff\ud800 (EACCES)"
    manifest["hostname"] = "h\udcffst"
    return snapshot_archive(manifest=manifest)


def _dir_member(name: str) -> Callable[[], bytes]:
    return lambda: snapshot_archive(after=[Member(name, typeflag=DIRTYPE)])


HOSTILE: List[Case] = [
    # names
    Case("traversal-root-dotdot", _extra_files([Member("root/../../etc/passwd", b"root:x:0:0::/root:/bin/sh\n")]), OUTSIDE),
    Case("traversal-dotdot", _extra_files([Member("../x", b"x")]), OUTSIDE),
    Case("traversal-inner", _extra_files([Member("root/proc/../../../../etc/passwd", b"x")]), OUTSIDE),
    Case("traversal-pax-path", _extra_files([Member("root/ok", b"x", pax={"path": "root/../../../etc/cron.d/evil"})]), OUTSIDE),
    Case("traversal-long-gnu-name", _extra_files([
        Member("././@LongLink", b"root/" + b"../" * 60 + b"etc/passwd\0", typeflag=GNU_LONGNAME, gnu=True),
        Member("root/short", b"x", gnu=True),
    ]), OUTSIDE),
    Case("absolute-name", _extra_files([Member("/etc/passwd", b"x")]), OUTSIDE),
    Case("absolute-root-name", _extra_files([Member("/root/proc/cpuinfo", b"x")]), OUTSIDE),
    Case("dot-slash-name", _extra_files([Member("./root/proc/cpuinfo", b"x")]), OUTSIDE),
    Case("name-outside-root", _extra_files([Member("etc/passwd", b"x")]), OUTSIDE),
    Case("name-is-root", _extra_files([Member("root", b"x")]), OUTSIDE),
    Case("name-dot-component", _extra_files([Member("root/proc/./cpuinfo", b"x")], {"/proc/./cpuinfo": 1}), OUTSIDE),
    Case("name-nul-via-pax", _extra_files([Member("root/ok", b"x", pax={"path": "root/proc/cpu\0info"})]), OUTSIDE),
    Case(
        "name-double-slash",
        _extra_files([Member("root//proc/cpuinfo", b"x")], {"//proc/cpuinfo": 1}),
        r"not a plain path",
    ),
    Case(
        "dir-member-traversal",
        _dir_member("root/../../../etc/cron.d/"),
        OUTSIDE,
    ),
    Case(
        "dir-member-absolute",
        _dir_member("/etc/"),
        OUTSIDE,
    ),
    # links, devices, special files
    Case("symlink-absolute", _extra_files([Member("root/proc/evil", typeflag=SYMTYPE, linkname="/etc/passwd")]), LINK),
    Case("symlink-escaping", _extra_files([Member("root/proc/evil", typeflag=SYMTYPE, linkname="../../../../etc/shadow")]), LINK),
    Case("symlink-replacing-a-file", lambda: snapshot_archive(
        members=[Member(MANIFEST, manifest_bytes(base_manifest()))]
        + [Member("root/proc/cpuinfo", typeflag=SYMTYPE, linkname="/proc/cpuinfo")]
        + [m for m in file_members(base_files()) if m.name != "root/proc/cpuinfo"],
    ), LINK),
    Case("hardlink-etc-passwd", _extra_files([Member("root/etc/passwd", typeflag=LNKTYPE, linkname="/etc/passwd")]), LINK),
    Case("hardlink-inside", _extra_files([Member("root/proc/again", typeflag=LNKTYPE, linkname="root/proc/cpuinfo")]), LINK),
    Case("char-device", _extra_files([Member("root/dev/kvm", typeflag=CHRTYPE, devmajor=10, devminor=232)]), SPECIAL),
    Case("block-device", _extra_files([Member("root/dev/sda", typeflag=BLKTYPE, devmajor=8, devminor=0)]), SPECIAL),
    Case("fifo", _extra_files([Member("root/run/fifo", typeflag=FIFOTYPE)]), SPECIAL),
    Case("unknown-type", _extra_files([Member("root/proc/odd", b"x", typeflag=b"Z")]), NON_REGULAR),
    # decompression bombs and limits
    Case("member-claims-1gib", huge_member_claim, r"claims 1073741824 bytes, over the 16777216 byte limit", max_seconds=3.0),
    Case("gnu-sparse-1gib", gnu_sparse_1gib, NON_REGULAR + r"|over the", max_seconds=3.0),
    Case("pax-sparse-1gib", pax_sparse_1gib, NON_REGULAR + r"|over the", max_seconds=3.0),
    Case("pax-size-1gib", pax_size_1gib, r"claims 1073741824 bytes", max_seconds=3.0),
    Case("members-add-up", members_add_up, r"members add up to more than 67108864 bytes", max_seconds=10.0),
    Case("100k-members", many_members, r"more than 4096 members", max_seconds=3.0),
    *[
        Case(
            f"header-bomb-{label}",
            extension_header_bomb(flag),
            NOT_ARCHIVE + r"|more than|larger than|limit",
            max_seconds=3.0,
        )
        for label, flag in (("gnu-longname", GNU_LONGNAME), ("gnu-longlink", GNU_LONGLINK), ("pax", PAX_HEADER), ("pax-global", PAX_GLOBAL))
    ],
    Case("archive-over-16mib", place=oversized_file, expect=r"larger than 16777216 bytes"),
    # broken compression and not archives
    Case("truncated-gzip-half", truncated_half, NOT_ARCHIVE),
    Case("truncated-tar-in-gzip", truncated_tar_in_complete_gzip, NOT_ARCHIVE + r"|truncated|lacks"),
    Case(
        "gzip-bad-crc",
        bad_crc,
        NOT_ARCHIVE,
    ),
    Case(
        "truncated-gzip-trailer",
        lambda: snapshot_archive()[:-8],
        NOT_ARCHIVE,
    ),
    Case("garbage-header", garbage_after_manifest, r"the manifest lists /\S+ but the archive lacks it|" + NOT_ARCHIVE),
    Case("not-archive-text", lambda: b"this is not an archive\n" * 10, NOT_ARCHIVE),
    Case("not-archive-empty", lambda: b"", NOT_ARCHIVE),
    Case("not-archive-png", lambda: PNG_HEADER + _random_bytes(512, 2), NOT_ARCHIVE),
    Case("not-archive-random", lambda: _random_bytes(4096, 3), NOT_ARCHIVE),
    Case("plain-tar", _plain_tar, NOT_ARCHIVE),
    Case("zip", _zip, NOT_ARCHIVE),
    Case("bzip2-tar", lambda: bz2.compress(_plain_tar()), NOT_ARCHIVE),
    Case("xz-tar", lambda: lzma.compress(_plain_tar()), NOT_ARCHIVE),
    Case("gzip-of-text", lambda: gz(b"hello\n" * 100), NOT_ARCHIVE),
    Case("gzip-of-random", lambda: gz(_random_bytes(8192, 4)), NOT_ARCHIVE),
    Case("empty-tar", lambda: gz(END), NOT_ARCHIVE + r"|no manifest\.json"),
    # the manifest
    Case("no-manifest", lambda: snapshot_archive(members=file_members(base_files())), r"no manifest\.json; not a kvmready snapshot"),
    Case("manifest-not-json", _raw_manifest(b"{this is not json"), r"manifest\.json is not JSON"),
    Case("manifest-not-utf8", _raw_manifest(b'{"format": "\xff\xfe"}'), r"manifest\.json is not JSON"),
    Case("manifest-binary", _raw_manifest(_random_bytes(2048, 5)), r"manifest\.json is not JSON"),
    Case("manifest-empty", _raw_manifest(b""), r"manifest\.json is not JSON"),
    Case("manifest-array", _raw_manifest(b"[1, 2, 3]"), r"not a kvmready snapshot manifest"),
    Case("manifest-string", _raw_manifest(b'"kvmready-snapshot"'), r"not a kvmready snapshot manifest"),
    Case("manifest-wrong-format", _base_with(format="tarball"), r"not a kvmready snapshot manifest"),
    Case("manifest-no-format", _base_without("format"), r"not a kvmready snapshot manifest"),
    Case("manifest-version-2", _base_with(format_version=2), r"snapshot format version 2; this kvmready reads 1"),
    Case("manifest-version-string", _base_with(format_version="1"), r"snapshot format version '1'"),
    Case("manifest-version-missing", _base_without("format_version"), r"snapshot format version None"),
    Case(
        "manifest-version-true",
        _base_with(format_version=True),
        r"snapshot format version True",
    ),
    *[
        Case(f"manifest-no-{key}", _base_without(key), rf"field '{key}' is missing or not a")
        for key in ("files", "read_errors", "listings", "list_errors", "nodes", "node_errors", "live", "captured_at")
    ],
    Case("manifest-files-list", _base_with(files=["/proc/cpuinfo"]), r"field 'files' is missing or not a dict"),
    Case("manifest-live-string", _base_with(live="kvm works"), r"field 'live' is missing or not a dict"),
    Case("manifest-captured-at-garbage", _base_with(captured_at="yesterday"), r"captured_at 'yesterday' is not a UTC timestamp"),
    Case("manifest-captured-at-number", _base_with(captured_at=1767323045), r"field 'captured_at' is missing or not a str"),
    Case(
        "manifest-too-large",
        lambda: snapshot_archive(raw_manifest=manifest_bytes({**base_manifest(), "padding": "x" * (LIMIT_MANIFEST + 1)})),
        r"manifest\.json is larger than 4194304 bytes",
    ),
    Case(
        "manifest-deeply-nested",
        _raw_manifest(b"[" * 100_000 + b"]" * 100_000),
        r"manifest\.json is not JSON|not a kvmready snapshot manifest",
    ),
    *[
        # Deep enough to pass json.loads yet (before the depth limit) overflow the recursive scrub of the manifest.
        Case(
            f"manifest-extra-key-nested-{depth}",
            lambda depth=depth: snapshot_archive(raw_manifest=manifest_bytes(base_manifest())[:-2]
                                                 + b',"deep":' + b"[" * depth + b"]" * depth + b"}\n"),
            r"manifest\.json nests deeper than 32 levels",
        )
        for depth in (40, 500)
    ],
    Case(
        "manifest-infinite-uid",
        _map_entry("nodes", "/dev/kvm", {"kind": "char", "mode": "0660", "uid": float("inf"), "gid": 0, "device": "10:232"}),
        r"has the wrong shape",
    ),
    Case(
        "manifest-live-infinite-uid",
        _live_change(_set(("credentials", "uid"), float("inf"))),
        MALFORMED_LIVE,
    ),
    Case(
        "manifest-live-negative-free-space",  # reverted, the table said "-0.0 GiB free"
        _live_change(_set(("disk", "free_bytes"), -10)),
        MALFORMED_LIVE,
    ),
    Case(
        "manifest-live-nan-duration",
        _live_change(_set(("kvm", "guest", "duration_ns"), float("nan"))),
        MALFORMED_LIVE,
    ),
    # unsafe paths and wrong shapes in the manifest's maps
    *[
        Case(f"manifest-unsafe-{key}-{label}", _map_entry(key, bad, value), r"names an unsafe path")
        for key, value in (
            ("files", 1), ("read_errors", "EACCES"), ("listings", ["a"]), ("list_errors", "EACCES"),
            ("nodes", None), ("node_errors", "EACCES"),
        )
        for label, bad in (
            ("dotdot", "/proc/../../etc/shadow"), ("relative", "etc/passwd"), ("dot", "/proc/./cpuinfo"),
            ("nul", "/proc/cpu\0info"), ("empty", ""), ("trailing-slash", "/proc/"),
        )
    ],
    Case("manifest-files-size-string", _map_entry("files", "/proc/other", "12"), r"has the wrong shape"),
    Case("manifest-files-size-bool", _map_entry("files", "/proc/other", True), r"has the wrong shape"),
    Case("manifest-error-not-string", _map_entry("read_errors", "/proc/other", {"errno": 13}), r"has the wrong shape"),
    Case("manifest-listing-slash", _map_entry("listings", "/sys/module", ["kvm", "../../etc"]), r"has the wrong shape"),
    Case("manifest-listing-empty-name", _map_entry("listings", "/sys/module", [""]), r"has the wrong shape"),
    Case("manifest-listing-not-list", _map_entry("listings", "/sys/module", "kvm"), r"has the wrong shape"),
    Case("manifest-listing-number", _map_entry("listings", "/sys/module", [1, 2]), r"has the wrong shape"),
    Case("manifest-node-bad-device", _map_entry("nodes", "/dev/kvm", {"kind": "char", "mode": "0660", "device": "ten:x"}), r"has the wrong shape"),
    Case("manifest-node-bad-mode", _map_entry("nodes", "/dev/kvm", {"kind": "char", "mode": "0999"}), r"has the wrong shape"),
    Case("manifest-node-no-kind", _map_entry("nodes", "/dev/kvm", {"mode": "0660"}), r"has the wrong shape"),
    Case("manifest-node-list", _map_entry("nodes", "/dev/kvm", ["char", 10, 232]), r"has the wrong shape"),
    # the live section
    Case("live-empty", _base_with(live={}), MALFORMED_LIVE),
    Case("live-no-kvm", _live_change(_delete(("kvm",))), MALFORMED_LIVE),
    Case("live-no-credentials", _live_change(_delete(("credentials",))), MALFORMED_LIVE),
    Case("live-uid-text", _live_change(_set(("credentials", "uid"), "root")), MALFORMED_LIVE),
    Case("live-groups-number", _live_change(_set(("credentials", "groups"), 5)), MALFORMED_LIVE),
    Case("live-kvm-string", _live_change(_set(("kvm",), "yes")), MALFORMED_LIVE),
    Case("live-guest-list", _live_change(_set(("kvm", "guest"), [1, 2])), MALFORMED_LIVE),
    Case("live-capabilities-list", _live_change(_set(("kvm", "capabilities"), ["KVM_CAP_IRQCHIP"])), MALFORMED_LIVE),
    Case("live-capability-text", _live_change(_set(("kvm", "capabilities", "KVM_CAP_IRQCHIP"), "many")), MALFORMED_LIVE),
    Case("live-open-error-string", _live_change(_set(("kvm", "open_error"), "EACCES")), MALFORMED_LIVE),
    Case("live-msr-register-garbage", _live_change(_set(("msr",), {"register": "zz", "path": "/dev/cpu/0/msr"})), MALFORMED_LIVE),
    Case("live-disk-number", _live_change(_set(("disk",), 5)), MALFORMED_LIVE),
    Case(
        "live-cpuid-signature-number",
        _live_change(_set(("cpuid_signature",), 12345)),
        MALFORMED_LIVE,
    ),
    # members against the manifest
    Case("duplicate-member", lambda: snapshot_archive(after=[Member("root/proc/cpuinfo", CPUINFO.encode())]), r"/proc/cpuinfo appears twice"),
    Case(
        "duplicate-manifest",
        lambda: snapshot_archive(after=[Member(MANIFEST, manifest_bytes({**base_manifest(), "hostname": "second"}))]),
        r"manifest\.json appears twice",
    ),
    Case("member-not-in-manifest", _extra_files([Member("root/etc/passwd", b"root:x:0:0::/root:/bin/sh\n")]), r"root/etc/passwd does not match the manifest"),
    Case("member-size-mismatch", lambda: snapshot_archive(manifest={**base_manifest(), "files": {**base_manifest()["files"], "/proc/cpuinfo": 1}}), r"root/proc/cpuinfo does not match the manifest"),
    Case("manifest-claims-missing-file", _map_entry("files", "/proc/zoneinfo", 100), r"the manifest lists /proc/zoneinfo but the archive lacks it"),
    Case("manifest-lists-100k-files", _many_listed, r"the manifest lists /f/0 but the archive lacks it"),
    # the archive path itself
    Case("path-missing", place=missing_path, expect=r"cannot read \(No such file or directory\)"),
    Case("path-directory", place=directory_path, expect=r"a directory; --snapshot reads a \.tar\.gz file, or - for standard input"),
    Case("path-through-a-file", place=through_a_file, expect=r"cannot read \(Not a directory\)"),
    Case("path-symlink-loop", place=symlink_loop, expect=r"cannot read \(Too many levels of symbolic links\)"),
    Case("path-dangling-symlink", place=dangling_symlink, expect=r"cannot read \(No such file or directory\)"),
    Case("path-unreadable", place=unreadable_file, expect=r"cannot read \(Permission denied\)", needs_non_root=True),
]


TOLERATED: List[Case] = [
    Case("base", snapshot_archive, outcome="tolerate"),
    Case("cpuinfo-binary", _cpuinfo_binary, outcome="tolerate"),
    Case("every-file-random-bytes", _all_files_garbage, outcome="tolerate"),
    Case("every-file-invalid-utf8", lambda: snapshot_archive({p: GARBAGE for p in base_files()}), outcome="tolerate"),
    Case("every-file-empty", lambda: snapshot_archive({p: b"" for p in base_files()}), outcome="tolerate"),
    Case("every-file-nul", lambda: snapshot_archive({p: b"\0" * 300 for p in base_files()}), outcome="tolerate"),
    Case("latin1-os-release", _with_files({"/etc/os-release": 'NAME="D\xe9bian"\nID=d\xe9bian\nPRETTY_NAME="D\xe9bian \xff"\n'.encode("latin-1")}), outcome="tolerate"),
    Case("hostname-invalid-utf8", _with_files({"/proc/sys/kernel/hostname": b"h\xff\xfe\x00st\n"}), outcome="tolerate"),
    Case("cpuinfo-2mib-line", _with_files({"/proc/cpuinfo": b"flags\t: " + b"vmx " * (512 * KIB) + b"\n"}), outcome="tolerate"),
    Case("modules-garbage", _with_files({"/proc/modules": b"\xff\xfe kvm \x00 1 2 3 Live\n" * 50}), outcome="tolerate"),
    Case("odd-unicode-strings", _odd_strings, outcome="tolerate"),
    # A lone surrogate (JSON "\udcff") in a listing: shown as U+FFFD, never written out as invalid UTF-8.
    Case("listing-non-utf8-name", _surrogate_listing, outcome="tolerate"),
    Case("read-error-lone-surrogate", _surrogate_reason, outcome="tolerate"),
]


ALL_CASES: Dict[str, Case] = {case.name: case for case in HOSTILE + TOLERATED}
assert len(ALL_CASES) == len(HOSTILE) + len(TOLERATED), "case names must be unique"


def tree_listing(root: Union[str, os.PathLike]) -> Dict[str, tuple]:
    """Every entry under root: relative path -> (kind, size); symlinks are not followed."""
    listing: Dict[str, tuple] = {}
    root = os.fspath(root)
    for current, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(current, name)
            st = os.lstat(full)
            kind = "dir" if stat.S_ISDIR(st.st_mode) else "link" if stat.S_ISLNK(st.st_mode) else "file"
            listing[os.path.relpath(full, root)] = (kind, st.st_size if kind == "file" else 0)
    return listing
