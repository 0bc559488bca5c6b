"""The Host abstraction: every read kvmready makes goes through it.

DirectoryHost is tested on small trees under tmp_path: bounded reads, no
FIFOs or directories opened as files, links resolved the way `chroot` would
(absolute targets start again at the root, `..` stops at the root), loops
and dangling links as errors.  A canary file outside the tree proves that
no link, however it is written, ever reads a file of the machine running
the tests.  MemoryHost (snapshots, tests) must behave the same way.
"""

from __future__ import annotations

import os
import threading

import pytest

from kvmready.host import DEFAULT_READ_LIMIT, DirectoryHost, MemoryHost, Node, ReadError

CANARY = b"CANARY: the host must never read this file\n"


@pytest.fixture
def layout(tmp_path):
    """(root of the tree, canary file outside it)."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "proc" / "sys" / "kernel").mkdir(parents=True)
    (root / "usr" / "lib" / "os-release").write_bytes(b"ID=tree\n")
    (root / "proc" / "sys" / "kernel" / "osrelease").write_bytes(b"6.8.0-45-generic\n")
    canary = tmp_path / "canary.txt"
    canary.write_bytes(CANARY)
    return root, canary


def host_of(root) -> DirectoryHost:
    return DirectoryHost(str(root))


def link(root, path: str, target: str) -> None:
    full = root / path.lstrip("/")
    full.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, full)


# -- DirectoryHost: plain reads ----------------------------------------------------------
def test_reads_a_file_of_the_tree(layout):
    root, _ = layout
    host = host_of(root)
    assert host.read_bytes("/usr/lib/os-release") == b"ID=tree\n"
    assert host.read_value("/proc/sys/kernel/osrelease") == "6.8.0-45-generic"


def test_a_foreign_root_is_not_live_and_says_where_it_is(layout):
    root, _ = layout
    host = host_of(root)
    assert host.live is False
    assert host.origin == f"--root {root}"
    assert host.describe() == {"live": False, "origin": f"--root {root}"}


def test_a_root_that_is_not_a_directory_is_refused(tmp_path):
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ReadError, match="not a directory"):
        DirectoryHost(str(file))
    with pytest.raises(ReadError, match="no such directory"):
        DirectoryHost(str(tmp_path / "missing"))


def test_host_paths_must_be_absolute(layout):
    root, _ = layout
    with pytest.raises(ValueError):
        host_of(root).read_bytes("etc/os-release")


def test_missing_file_is_a_read_error_naming_enoent(layout):
    root, _ = layout
    with pytest.raises(ReadError) as caught:
        host_of(root).read_bytes("/etc/nothing")
    assert caught.value.path == "/etc/nothing"
    assert "ENOENT" in caught.value.reason


def test_a_file_used_as_a_directory_is_a_read_error(layout):
    root, _ = layout
    host = host_of(root)
    with pytest.raises(ReadError, match="ENOTDIR"):
        host.read_bytes("/usr/lib/os-release/child")
    assert host.node("/usr/lib/os-release/child") is None


def test_undecodable_bytes_never_fail_read_text(layout):
    root, _ = layout
    (root / "etc" / "binary").write_bytes(b"ok\xff\xfe")
    assert host_of(root).read_text("/etc/binary") == "ok\ufffd\ufffd"


# -- bounded reads ----------------------------------------------------------------------------
def test_a_file_exactly_at_the_limit_is_read(layout):
    root, _ = layout
    (root / "etc" / "big").write_bytes(b"a" * 100)
    assert len(host_of(root).read_bytes("/etc/big", limit=100)) == 100


def test_a_file_over_the_limit_is_refused(layout):
    root, _ = layout
    (root / "etc" / "big").write_bytes(b"a" * 101)
    with pytest.raises(ReadError, match="larger than the 100 byte limit"):
        host_of(root).read_bytes("/etc/big", limit=100)


def test_the_default_limit_applies(layout):
    root, _ = layout
    (root / "etc" / "huge").write_bytes(b"a" * (DEFAULT_READ_LIMIT + 1))
    with pytest.raises(ReadError, match="byte limit"):
        host_of(root).read_bytes("/etc/huge")


# -- non-regular files ------------------------------------------------------------------------
def _returns_within(seconds: float, call):
    """Run call in a thread; fail (instead of hanging) if it blocks."""
    outcome = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the read blocked"
    return outcome


def test_a_fifo_is_refused_without_blocking(layout):
    root, _ = layout
    os.mkfifo(root / "etc" / "fifo")
    outcome = _returns_within(5, lambda: host_of(root).read_bytes("/etc/fifo"))
    assert isinstance(outcome.get("error"), ReadError)
    assert "not a regular file (fifo)" in outcome["error"].reason


def test_a_link_to_a_fifo_is_refused_without_blocking(layout):
    root, _ = layout
    os.mkfifo(root / "etc" / "fifo")
    link(root, "/etc/os-release", "fifo")
    outcome = _returns_within(5, lambda: host_of(root).read_bytes("/etc/os-release"))
    assert isinstance(outcome.get("error"), ReadError)
    assert "fifo" in outcome["error"].reason


def test_a_directory_is_not_read_as_a_file(layout):
    root, _ = layout
    with pytest.raises(ReadError, match=r"not a regular file \(dir\)"):
        host_of(root).read_bytes("/etc")


def test_a_fifo_is_described_by_node_without_opening_it(layout):
    root, _ = layout
    os.mkfifo(root / "etc" / "fifo")
    outcome = _returns_within(5, lambda: host_of(root).node("/etc/fifo"))
    assert outcome["value"].kind == "fifo"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_an_unreadable_file_is_a_read_error(layout):
    root, _ = layout
    secret = root / "etc" / "secret"
    secret.write_text("x")
    secret.chmod(0)
    with pytest.raises(ReadError, match="EACCES"):
        host_of(root).read_bytes("/etc/secret")


def test_an_unreadable_file_is_still_there_for_node(layout):
    root, _ = layout
    secret = root / "etc" / "secret"
    secret.write_text("x")
    secret.chmod(0)
    node = host_of(root).node("/etc/secret")
    assert node.kind == "file" and node.mode == 0


# -- links: inside the tree ------------------------------------------------------------------------
def test_a_relative_link_inside_the_tree_is_followed(layout):
    root, _ = layout
    link(root, "/etc/os-release", "../usr/lib/os-release")
    assert host_of(root).read_bytes("/etc/os-release") == b"ID=tree\n"


def test_an_absolute_link_is_rerooted_inside_the_tree(layout):
    root, _ = layout
    link(root, "/etc/os-release", "/usr/lib/os-release")  # on the real machine this file exists too
    assert host_of(root).read_bytes("/etc/os-release") == b"ID=tree\n"


def test_a_linked_directory_is_followed_inside_the_tree(layout):
    root, _ = layout
    link(root, "/lib", "usr/lib")
    host = host_of(root)
    assert host.read_bytes("/lib/os-release") == b"ID=tree\n"
    assert host.list_dir("/lib") == ["os-release"]
    assert host.node("/lib").kind == "dir"


def test_node_follows_the_final_link(layout):
    root, _ = layout
    link(root, "/etc/os-release", "/usr/lib/os-release")
    node = host_of(root).node("/etc/os-release")
    assert node.kind == "file"
    assert node.size == len(b"ID=tree\n")


def test_a_chain_of_links_is_followed(layout):
    root, _ = layout
    link(root, "/a", "/b")
    link(root, "/b", "c/../usr/lib/os-release")
    (root / "c").mkdir()
    assert host_of(root).read_bytes("/a") == b"ID=tree\n"


# -- links: never out of the tree --------------------------------------------------------------------
def test_dotdot_in_the_path_stops_at_the_root(layout):
    root, _ = layout
    host = host_of(root)
    assert host.read_bytes("/../../../usr/lib/os-release") == b"ID=tree\n"
    with pytest.raises(ReadError, match="ENOENT"):
        host.read_bytes("/../canary.txt")


def test_a_dotdot_link_never_reads_the_canary_outside(layout):
    root, canary = layout
    assert canary.parent == root.parent  # the canary sits right above the root
    link(root, "/etc/hostname", "../../canary.txt")
    link(root, "/etc/deep", "../../../../../../" + str(canary).lstrip("/"))
    host = host_of(root)
    for path in ("/etc/hostname", "/etc/deep"):
        with pytest.raises(ReadError, match="ENOENT"):
            host.read_bytes(path)
        assert host.node(path) is None


def test_a_dotdot_link_lands_on_the_trees_own_file(layout):
    root, _ = layout
    (root / "canary.txt").write_bytes(b"the tree's own file\n")
    link(root, "/etc/hostname", "../../canary.txt")
    assert host_of(root).read_bytes("/etc/hostname") == b"the tree's own file\n"


def test_an_absolute_link_to_the_canary_is_rerooted(layout):
    root, canary = layout
    link(root, "/etc/escape", str(canary))
    with pytest.raises(ReadError, match="ENOENT"):
        host_of(root).read_bytes("/etc/escape")


def test_a_link_to_etc_passwd_reads_the_trees_passwd_or_nothing(layout):
    root, _ = layout
    link(root, "/etc/users", "/etc/passwd")
    host = host_of(root)
    with pytest.raises(ReadError, match="ENOENT"):
        host.read_bytes("/etc/users")  # the real /etc/passwd exists, the tree's does not
    (root / "etc" / "passwd").write_bytes(b"tree:x:0:0::/:/bin/sh\n")
    assert host.read_bytes("/etc/users") == b"tree:x:0:0::/:/bin/sh\n"


def test_a_directory_link_climbing_out_is_held_at_the_root(layout):
    root, _ = layout
    (root / "canary.txt").write_bytes(b"inside\n")
    link(root, "/sys", "../../..")
    host = host_of(root)
    assert host.read_bytes("/sys/canary.txt") == b"inside\n"
    assert "canary.txt" in host.list_dir("/sys")
    assert "root" not in host.list_dir("/sys")  # tmp_path's own listing would show the root folder


def test_a_link_to_the_real_proc_lists_the_tree(layout):
    root, _ = layout
    link(root, "/dev", "/proc")
    assert host_of(root).list_dir("/dev") == ["sys"]


# -- links: loops and dangling ------------------------------------------------------------------------
def test_a_link_loop_is_eloop(layout):
    root, _ = layout
    link(root, "/etc/a", "b")
    link(root, "/etc/b", "/etc/a")
    host = host_of(root)
    with pytest.raises(ReadError, match="ELOOP"):
        host.read_bytes("/etc/a")
    with pytest.raises(ReadError, match="ELOOP"):
        host.node("/etc/a")
    assert host.exists("/etc/a") is False


def test_a_self_link_is_eloop(layout):
    root, _ = layout
    link(root, "/etc/self", "self")
    with pytest.raises(ReadError, match="ELOOP"):
        host_of(root).read_bytes("/etc/self")


def test_a_directory_loop_is_eloop(layout):
    root, _ = layout
    link(root, "/loop", "loop/x")
    with pytest.raises(ReadError, match="ELOOP"):
        host_of(root).list_dir("/loop")


def test_a_dangling_link_reads_as_missing(layout):
    root, _ = layout
    link(root, "/etc/dangling", "/nowhere/at/all")
    host = host_of(root)
    with pytest.raises(ReadError, match="ENOENT"):
        host.read_bytes("/etc/dangling")
    assert host.node("/etc/dangling") is None
    assert host.exists("/etc/dangling") is False


# -- list_dir and node -------------------------------------------------------------------------------
def test_list_dir_is_sorted(layout):
    root, _ = layout
    for name in ("zeta", "alpha", "mid"):
        (root / "etc" / name).write_text("")
    assert host_of(root).list_dir("/etc") == ["alpha", "mid", "zeta"]


def test_list_dir_of_the_root(layout):
    root, _ = layout
    assert host_of(root).list_dir("/") == ["etc", "proc", "usr"]


def test_list_dir_of_a_missing_directory_or_a_file_is_a_read_error(layout):
    root, _ = layout
    host = host_of(root)
    with pytest.raises(ReadError, match="ENOENT"):
        host.list_dir("/sys/module")
    with pytest.raises(ReadError, match="ENOTDIR"):
        host.list_dir("/usr/lib/os-release")


def test_node_of_directories_files_and_missing_paths(layout):
    root, _ = layout
    (root / "etc" / "group").write_bytes(b"kvm:x:992:\n")
    (root / "etc" / "group").chmod(0o640)
    host = host_of(root)
    assert host.node("/").kind == "dir"
    assert host.node("/etc").kind == "dir"
    group = host.node("/etc/group")
    assert (group.kind, group.mode, group.size) == ("file", 0o640, 11)
    assert group.major is None and group.minor is None
    assert host.node("/etc/nothing") is None
    assert host.node("/nothing/below") is None
    assert host.exists("/etc/group") and not host.exists("/etc/nothing")


def test_node_to_dict_round_trips():
    node = Node(kind="char", mode=0o660, uid=0, gid=992, major=10, minor=232)
    data = node.to_dict()
    assert data == {"kind": "char", "mode": "0660", "uid": 0, "gid": 992, "device": "10:232"}
    assert Node.from_dict(data) == node


# -- MemoryHost --------------------------------------------------------------------------------------
@pytest.fixture
def memory():
    return MemoryHost(
        files={
            "/proc/cpuinfo": b"processor : 0\n",
            "/sys/module/kvm/parameters/nested": b"Y\n",
            "/etc/os-release": b"ID=mem\n",
        },
        nodes={"/dev/kvm": Node(kind="char", mode=0o660, uid=0, gid=992, major=10, minor=232)},
        errors={"/sys/module/kvm_intel/parameters/ept": "Permission denied (EACCES)", "/proc/modules": "No such file or directory (ENOENT)"},
    )


def test_memory_reads_files_and_values(memory):
    assert memory.read_bytes("/proc/cpuinfo") == b"processor : 0\n"
    assert memory.read_value("/sys/module/kvm/parameters/nested") == "Y"
    assert memory.live is False


def test_memory_read_limit(memory):
    with pytest.raises(ReadError, match="larger than the 5 byte limit"):
        memory.read_bytes("/etc/os-release", limit=5)
    assert memory.read_bytes("/etc/os-release", limit=7) == b"ID=mem\n"


def test_memory_errors_are_read_errors_with_their_reason(memory):
    with pytest.raises(ReadError) as caught:
        memory.read_bytes("/sys/module/kvm_intel/parameters/ept")
    assert caught.value.reason == "Permission denied (EACCES)"


def test_memory_missing_file_is_enoent(memory):
    with pytest.raises(ReadError, match="ENOENT"):
        memory.read_bytes("/proc/meminfo")


def test_memory_device_nodes_and_directories_are_not_read_as_files(memory):
    with pytest.raises(ReadError, match=r"not a regular file \(char\)"):
        memory.read_bytes("/dev/kvm")
    with pytest.raises(ReadError, match=r"not a regular file \(dir\)"):
        memory.read_bytes("/sys/module")


def test_memory_list_dir_derives_directories(memory):
    assert memory.list_dir("/") == ["dev", "etc", "proc", "sys"]
    assert memory.list_dir("/sys/module") == ["kvm", "kvm_intel"]
    assert memory.list_dir("/sys/module/") == ["kvm", "kvm_intel"]
    assert memory.list_dir("/dev") == ["kvm"]


def test_memory_list_dir_errors(memory):
    with pytest.raises(ReadError, match="ENOTDIR"):
        memory.list_dir("/proc/cpuinfo")
    with pytest.raises(ReadError, match="ENOENT"):
        memory.list_dir("/run")


def test_memory_nodes(memory):
    assert memory.node("/dev/kvm") == Node(kind="char", mode=0o660, uid=0, gid=992, major=10, minor=232)
    assert memory.node("/proc/cpuinfo").kind == "file"
    assert memory.node("/proc/cpuinfo").size == len(b"processor : 0\n")
    assert memory.node("/sys/module").kind == "dir"
    assert memory.node("/nothing") is None


def test_memory_unreadable_path_exists_but_an_enoent_error_does_not(memory):
    unreadable = memory.node("/sys/module/kvm_intel/parameters/ept")
    assert unreadable is not None and unreadable.mode == 0
    assert memory.node("/proc/modules") is None
    assert memory.exists("/sys/module/kvm_intel/parameters/ept")
    assert not memory.exists("/proc/modules")


def test_memory_paths_must_be_absolute(memory):
    with pytest.raises(ValueError):
        memory.read_bytes("proc/cpuinfo")
    with pytest.raises(ValueError):
        MemoryHost({"relative/path": b""})


def test_memory_list_dir_shows_unreadable_entries(memory):
    assert memory.list_dir("/sys/module/kvm_intel/parameters") == ["ept"]
