"""Integration tests of kvmready.kvmapi against the real /dev/kvm.

Skipped as a whole when /dev/kvm is missing or cannot be opened.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import threading
import time

import pytest

from kvmready import kvmapi
from kvmready.kvmabi import KVM_DEVICE
from kvmready.kvmapi import (
    CAPABILITIES,
    KvmBackend,
    KvmError,
)

pytestmark = pytest.mark.integration

try:
    os.close(os.open(KVM_DEVICE, os.O_RDWR | os.O_CLOEXEC))
except OSError as exc:
    pytest.skip(f"{KVM_DEVICE} is not usable here: {exc}", allow_module_level=True)

LOOP_CODE = bytes.fromhex("EBFE")  # jmp $
WRONG_BYTE_CODE = bytes.fromhex("BAF803B041EEF4")  # writes 'A'
OTHER_PORT_CODE = bytes.fromhex("BA8000B04BEEF4")  # writes 'K' to port 0x80
UD2_CODE = bytes.fromhex("0F0B")  # #UD; no IVT in guest RAM ends in a triple fault
MMIO_CODE = bytes.fromhex("B04BA20050F4")  # mov [0x5000],al: no RAM there


@pytest.fixture
def kvm():
    with KvmBackend().open_device() as handle:
        yield handle


@pytest.fixture
def vm(kvm):
    with kvm.create_vm() as machine:
        yield machine


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def kvm_mappings() -> int:
    """Mappings the guest runs create: kvm_run (anon_inode:kvm-vcpu) and guest RAM."""
    with open("/proc/self/maps") as maps:
        return sum("kvm-vcpu" in line or "/dev/zero" in line for line in maps)


def resources() -> tuple[int, int]:
    return open_fds(), kvm_mappings()


# --- device and capabilities ------------------------------------------------------
def test_api_version_is_12(kvm):
    assert kvm.api_version() == 12


def test_capabilities_that_must_exist(kvm):
    values = {cap.name: kvm.check_extension(cap.number) for cap in CAPABILITIES}
    assert all(isinstance(v, int) and v >= 0 for v in values.values())
    for name in ("KVM_CAP_IRQCHIP", "KVM_CAP_HLT", "KVM_CAP_USER_MEMORY",
                 "KVM_CAP_NR_VCPUS", "KVM_CAP_NR_MEMSLOTS", "KVM_CAP_MAX_VCPUS",
                 "KVM_CAP_IMMEDIATE_EXIT"):
        assert values[name] > 0, name
    assert values["KVM_CAP_USER_MEMORY"] == 1
    assert values["KVM_CAP_MAX_VCPUS"] >= values["KVM_CAP_NR_VCPUS"]


def test_capabilities_on_the_vm_fd(kvm, vm):
    assert kvm.check_extension(105) > 0  # KVM_CAP_CHECK_EXTENSION_VM
    assert vm.check_extension(3) == 1
    assert vm.check_extension(10) > 0


def test_vcpu_mmap_size_holds_the_io_page(kvm):
    assert kvm.vcpu_mmap_size() >= 2 * 4096


def test_create_vm_and_close_twice(kvm):
    machine = kvm.create_vm()
    assert not machine.closed
    machine.close()
    machine.close()
    assert machine.closed


# --- the smoke guest -----------------------------------------------------------------
def test_smoke_guest_runs(vm):
    result = vm.run_smoke_guest()
    assert result.ok, result.problem
    assert result.exits == ("IO", "HLT")
    assert (result.port, result.byte, result.runs) == (0x3F8, 0x4B, 2)
    assert result.problem is None
    assert 0 < result.duration_ns < 1_000_000_000


def test_smoke_guest_twice_on_one_vm(vm):
    assert vm.run_smoke_guest().ok
    assert vm.run_smoke_guest().ok


def test_wrong_byte_is_reported(vm):
    result = vm.run_smoke_guest(WRONG_BYTE_CODE)
    assert not result.ok
    assert result.byte == 0x41
    assert "0x41" in result.problem and "expected 0x4b" in result.problem


def test_other_port_is_reported(vm):
    result = vm.run_smoke_guest(OTHER_PORT_CODE)
    assert not result.ok and result.port == 0x80
    assert "port 0x80" in result.problem


def test_triple_fault_is_reported(vm):
    result = vm.run_smoke_guest(UD2_CODE)
    assert not result.ok
    assert result.exits == ("SHUTDOWN",)
    assert "SHUTDOWN" in result.problem and "triple" in result.problem


def test_unexpected_mmio_exit_is_reported(vm):
    result = vm.run_smoke_guest(MMIO_CODE)
    assert not result.ok and result.exits == ("MMIO",)
    assert "MMIO" in result.problem and "0x5000" in result.problem


# --- never hangs -----------------------------------------------------------------------
def _old_alarm(signum, frame):
    raise AssertionError("the caller's SIGALRM handler must not see the guard's alarm")


def test_looping_guest_returns_in_bounded_time(vm):
    old = signal.signal(signal.SIGALRM, _old_alarm)
    signal.setitimer(signal.ITIMER_REAL, 100.0)
    try:
        start = time.monotonic()
        result = vm.run_smoke_guest(LOOP_CODE, timeout_s=0.2)
        elapsed = time.monotonic() - start
        assert signal.getsignal(signal.SIGALRM) is _old_alarm
        assert 98.0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 100.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert 0.15 < elapsed < 1.5
    assert not result.ok and result.runs == 1 and result.exits == ()
    assert "timeout" in result.problem


def test_looping_guest_default_timeout_is_about_one_second(vm):
    start = time.monotonic()
    result = vm.run_smoke_guest(LOOP_CODE)
    assert time.monotonic() - start < 2.5
    assert "timeout" in result.problem


def test_vm_still_usable_after_a_timeout(vm):
    assert not vm.run_smoke_guest(LOOP_CODE, timeout_s=0.1).ok
    assert vm.run_smoke_guest().ok


def test_off_the_main_thread_is_still_bounded(vm):
    results = {}

    def work():
        results["smoke"] = vm.run_smoke_guest()
        start = time.monotonic()
        results["loop"] = vm.run_smoke_guest(LOOP_CODE, timeout_s=0.2)
        results["elapsed"] = time.monotonic() - start

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(30)
    assert not worker.is_alive()
    assert results["smoke"].ok, results["smoke"].problem
    assert results["smoke"].exits == ("IO", "HLT") and results["smoke"].byte == 0x4B
    assert not results["loop"].ok and "timeout" in results["loop"].problem
    assert results["elapsed"] < 5.0


# --- never leaks -------------------------------------------------------------------------
def test_no_leak_over_200_guest_runs_and_failures(kvm, monkeypatch):
    with kvm.create_vm() as warmup:  # first-use allocations (ctypes, mmap module)
        warmup.run_smoke_guest()
    before = resources()
    for _ in range(200):
        with kvm.create_vm() as machine:
            assert machine.run_smoke_guest().ok
    with kvm.create_vm() as machine:
        assert not machine.run_smoke_guest(LOOP_CODE, timeout_s=0.05).ok
    closed = kvm.create_vm()
    closed.close()
    with pytest.raises(KvmError):
        closed.run_smoke_guest()
    assert resources() == before

    real_ioctl = kvmapi._raw_ioctl
    for failing in ("KVM_SET_USER_MEMORY_REGION", "KVM_CREATE_VCPU", "KVM_GET_SREGS",
                    "KVM_SET_SREGS", "KVM_SET_REGS", "KVM_RUN"):
        request = getattr(kvmapi, failing)

        def injected(fd, req, arg=0, _request=request):
            if req == _request:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return real_ioctl(fd, req, arg)

        monkeypatch.setattr(kvmapi, "_raw_ioctl", injected)
        with kvm.create_vm() as machine:
            with pytest.raises(KvmError) as info:
                machine.run_smoke_guest()
        assert (info.value.operation, info.value.errno) == (failing, errno.EIO)
        assert resources() == before, failing
    monkeypatch.setattr(kvmapi, "_raw_ioctl", real_ioctl)


def test_mmap_failure_is_a_kvm_error_and_leaks_nothing(kvm, monkeypatch):
    import mmap

    real_mmap = mmap.mmap

    def failing_for_vcpu(fd, *args, **kwargs):
        if fd >= 0:  # the kvm_run mapping; guest RAM is anonymous (fd -1)
            raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))
        return real_mmap(fd, *args, **kwargs)

    before = resources()
    monkeypatch.setattr(mmap, "mmap", failing_for_vcpu)
    with kvm.create_vm() as machine:
        with pytest.raises(KvmError) as info:
            machine.run_smoke_guest()
    monkeypatch.undo()
    assert (info.value.operation, info.value.errno) == ("mmap", errno.ENOMEM)
    assert resources() == before


# --- errors ------------------------------------------------------------------------------
def test_non_kvm_device_fails_on_the_first_ioctl():
    with KvmBackend().open_device(os.devnull) as handle:
        with pytest.raises(KvmError) as info:
            handle.api_version()
    assert info.value.operation == "KVM_GET_API_VERSION"
    assert info.value.errno == errno.ENOTTY
    assert str(info.value).startswith("KVM_GET_API_VERSION failed: [Errno 25]")


def test_missing_device_fails_to_open(tmp_path):
    with pytest.raises(KvmError) as info:
        KvmBackend().open_device(str(tmp_path / "no-kvm-here"))
    assert (info.value.operation, info.value.errno) == ("open", errno.ENOENT)


def test_closed_handle_reports_ebadf(kvm):
    kvm.close()
    with pytest.raises(KvmError) as info:
        kvm.create_vm()
    assert info.value.errno == errno.EBADF


def _probe_as_nobody(write_end: int) -> None:
    """Child side: drop to uid/gid 65534 and try to open /dev/kvm."""
    try:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        try:
            KvmBackend().open_device().close()
            reply = {"opened": True}
        except KvmError as exc:
            reply = {"operation": exc.operation, "errno": exc.errno}
    except BaseException as exc:  # report anything, never fall back into pytest
        reply = {"crash": repr(exc)}
    os.write(write_end, json.dumps(reply).encode())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
def test_unprivileged_user_gets_eacces():
    mode = os.stat(KVM_DEVICE).st_mode
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        pytest.skip(f"{KVM_DEVICE} is accessible to others here (mode {mode & 0o777:o})")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            _probe_as_nobody(write_end)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        reply = json.loads(reader.read() or b"{}")
    os.waitpid(pid, 0)
    assert reply == {"operation": "open", "errno": errno.EACCES}
