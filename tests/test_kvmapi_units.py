"""Unit tests for kvmready.kvmapi that never touch /dev/kvm.

The ioctl seam (kvmapi._raw_ioctl) is replaced by FakeKvm, which plays the
kernel: the "vCPU fd" it hands out is a temporary file, so the real mmap code
maps it and KVM_RUN "exits" are written into that file.
"""

from __future__ import annotations

import errno
import os
import pickle
import signal
import struct
import threading
import time

import pytest

from kvmready import kvmapi
from kvmready.kvmabi import KVM_API_VERSION, KVM_DEVICE
from kvmready.kvmapi import (
    CAPABILITIES,
    SMOKE_GUEST_CODE,
    Capability,
    GuestRun,
    KvmError,
    KvmHandle,
    KvmVm,
)

RUN_SIZE = 3 * 4096
IO_DATA_OFFSET = 4096


# --- helpers ---------------------------------------------------------------
def make_run_buffer(reason: int, size: int = RUN_SIZE) -> bytearray:
    buf = bytearray(size)
    struct.pack_into("=I", buf, 8, reason)
    return buf


def io_exit(port: int = 0x3F8, value: int = 0x4B, direction: int = 1,
            size: int = 1, count: int = 1, data_offset: int = IO_DATA_OFFSET) -> bytearray:
    buf = make_run_buffer(2)
    struct.pack_into("=BBHIQ", buf, 32, direction, size, port, count, data_offset)
    if data_offset < len(buf):
        buf[data_offset] = value
    return buf


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Hang:
    """A scripted KVM_RUN that blocks until a signal handler raises."""


class FakeKvm:
    """Stands in for the kernel behind kvmapi._raw_ioctl."""

    def __init__(self, tmp_path, exits, fail_on: int | None = None):
        self.exits = list(exits)  # bytearray kvm_run images, Hang() or an errno
        self.fail_on = fail_on
        self.calls: list[int] = []
        self.regions: list[tuple] = []
        self.sregs_set: bytes | None = None
        self.regs_set: tuple | None = None
        self.vcpu_ids: list[int] = []
        self.vcpu_path = tmp_path / "vcpu"
        self.vcpu_fd = -1

    def __call__(self, fd, request, arg=0):
        self.calls.append(request)
        if request == self.fail_on:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        handler = {
            kvmapi.KVM_SET_USER_MEMORY_REGION: self._set_region,
            kvmapi.KVM_CREATE_VCPU: self._create_vcpu,
            kvmapi.KVM_GET_SREGS: self._get_sregs,
            kvmapi.KVM_SET_SREGS: self._set_sregs,
            kvmapi.KVM_SET_REGS: self._set_regs,
            kvmapi.KVM_RUN: self._run,
        }.get(request)
        if handler is None:
            return 0
        return handler(fd, arg)

    def _set_region(self, fd, arg):
        self.regions.append(struct.unpack(kvmapi.MEMORY_REGION_FORMAT, arg))
        return 0

    def _create_vcpu(self, fd, arg):
        self.vcpu_ids.append(arg)
        self.vcpu_fd = os.open(self.vcpu_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.ftruncate(self.vcpu_fd, RUN_SIZE)
        return self.vcpu_fd

    def _get_sregs(self, fd, arg):
        # x86 reset state: CS selector 0xf000, base 0xffff0000, limit 0xffff
        struct.pack_into(kvmapi.SEGMENT_HEAD_FORMAT, arg, 0, 0xFFFF0000, 0xFFFF, 0xF000)
        return 0

    def _set_sregs(self, fd, arg):
        self.sregs_set = bytes(arg)
        return 0

    def _set_regs(self, fd, arg):
        self.regs_set = struct.unpack(kvmapi.REGS_FORMAT, arg)
        return 0

    def _run(self, fd, arg):
        step = self.exits.pop(0) if self.exits else make_run_buffer(5)
        if isinstance(step, Hang):
            read_end, write_end = os.pipe()
            try:
                os.read(read_end, 1)  # blocks; PEP 475 retries unless a handler raises
            finally:
                os.close(read_end)
                os.close(write_end)
            raise AssertionError("unreachable: nothing ever writes to the pipe")
        if isinstance(step, int):
            raise OSError(step, os.strerror(step))
        os.pwrite(fd, bytes(step), 0)
        return 0


@pytest.fixture
def fake_vm(tmp_path, monkeypatch):
    """A KvmVm on a harmless fd (/dev/null) whose ioctls go to a FakeKvm."""
    vms = []

    def build(exits=(), fail_on=None):
        fake = FakeKvm(tmp_path, exits, fail_on)
        monkeypatch.setattr(kvmapi, "_raw_ioctl", fake)
        vm = KvmVm(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), RUN_SIZE)
        vms.append(vm)
        return vm, fake

    yield build
    for vm in vms:
        vm.close()


# --- ioctl numbers and struct layouts ------------------------------------------------
@pytest.mark.parametrize("name, value", [
    ("KVM_GET_API_VERSION", 0xAE00),
    ("KVM_CREATE_VM", 0xAE01),
    ("KVM_CHECK_EXTENSION", 0xAE03),
    ("KVM_GET_VCPU_MMAP_SIZE", 0xAE04),
    ("KVM_CREATE_VCPU", 0xAE41),
    ("KVM_SET_USER_MEMORY_REGION", 0x4020AE46),
    ("KVM_RUN", 0xAE80),
    ("KVM_GET_REGS", 0x8090AE81),
    ("KVM_SET_REGS", 0x4090AE82),
    ("KVM_GET_SREGS", 0x8138AE83),
    ("KVM_SET_SREGS", 0x4138AE84),
])
def test_ioctl_numbers_match_the_uapi_values(name, value):
    assert getattr(kvmapi, name) == value


def test_ioc_encodes_direction_size_type_and_number():
    assert kvmapi._ioc(kvmapi._IOC_READ | kvmapi._IOC_WRITE, 0x05, 8) == 0xC008AE05


@pytest.mark.parametrize("fmt, size", [
    ("MEMORY_REGION_FORMAT", 32),
    ("REGS_FORMAT", 144),
    ("SEGMENT_FORMAT", 24),
    ("DTABLE_FORMAT", 16),
    ("SREGS_FORMAT", 312),
    ("RUN_IO_FORMAT", 16),
])
def test_struct_sizes(fmt, size):
    assert struct.calcsize(getattr(kvmapi, fmt)) == size


def test_kvm_run_offsets():
    assert kvmapi.RUN_IMMEDIATE_EXIT_OFFSET == 1
    assert kvmapi.RUN_EXIT_REASON_OFFSET == 8
    assert kvmapi.RUN_UNION_OFFSET == 32


def test_smoke_guest_code_and_constants():
    assert SMOKE_GUEST_CODE == bytes([0xBA, 0xF8, 0x03, 0xB0, 0x4B, 0xEE, 0xF4])
    assert KVM_API_VERSION == 12
    assert KVM_DEVICE == "/dev/kvm"


# --- capabilities -------------------------------------------------------------
REQUIRED_CAPS = {
    "KVM_CAP_IRQCHIP": 0, "KVM_CAP_HLT": 1, "KVM_CAP_USER_MEMORY": 3,
    "KVM_CAP_NR_VCPUS": 9, "KVM_CAP_NR_MEMSLOTS": 10, "KVM_CAP_TSC_CONTROL": 60,
    "KVM_CAP_MAX_VCPUS": 66, "KVM_CAP_ENABLE_CAP_VM": 98,
    "KVM_CAP_SPLIT_IRQCHIP": 121, "KVM_CAP_X2APIC_API": 129,
    "KVM_CAP_IMMEDIATE_EXIT": 136, "KVM_CAP_X86_DISABLE_EXITS": 143,
    "KVM_CAP_NESTED_STATE": 157, "KVM_CAP_X86_USER_SPACE_MSR": 188,
    "KVM_CAP_X86_MSR_FILTER": 189, "KVM_CAP_EXIT_HYPERCALL": 201,
    "KVM_CAP_XSAVE2": 208,
}


def test_capabilities_include_the_required_numbers():
    by_name = {cap.name: cap.number for cap in CAPABILITIES}
    for name, number in REQUIRED_CAPS.items():
        assert by_name.get(name) == number, name


def test_capabilities_are_unique_ordered_and_described():
    numbers = [cap.number for cap in CAPABILITIES]
    assert numbers == sorted(set(numbers))
    assert len({cap.name for cap in CAPABILITIES}) == len(CAPABILITIES)
    for cap in CAPABILITIES:
        assert isinstance(cap, Capability)
        assert cap.name.startswith("KVM_CAP_")
        assert 0 < len(cap.purpose) <= 80


def test_capabilities_never_probe_the_unmerged_vmware_numbers():
    assert not {239, 240, 241} & {cap.number for cap in CAPABILITIES}


def test_capability_is_frozen():
    with pytest.raises(AttributeError):
        CAPABILITIES[0].number = 5


# --- KvmError -------------------------------------------------------------------
def test_kvm_error_message_and_fields():
    exc = KvmError("KVM_CREATE_VM", errno.EBUSY)
    assert exc.operation == "KVM_CREATE_VM"
    assert exc.errno == errno.EBUSY
    assert exc.strerror == os.strerror(errno.EBUSY)
    assert str(exc) == "KVM_CREATE_VM failed: [Errno 16] Device or resource busy"


def test_kvm_error_survives_pickling():
    exc = pickle.loads(pickle.dumps(KvmError("KVM_RUN", errno.EFAULT, "Bad address")))
    assert (exc.operation, exc.errno, exc.strerror) == ("KVM_RUN", errno.EFAULT, "Bad address")


def test_ioctl_on_closed_fd_is_ebadf_with_the_operation():
    with pytest.raises(KvmError) as info:
        kvmapi._ioctl(-1, "KVM_CHECK_EXTENSION", kvmapi.KVM_CHECK_EXTENSION, 3)
    assert (info.value.operation, info.value.errno) == ("KVM_CHECK_EXTENSION", errno.EBADF)


def test_ioctl_failure_carries_name_and_errno(monkeypatch):
    def failing(fd, request, arg=0):
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")

    monkeypatch.setattr(kvmapi, "_raw_ioctl", failing)
    with pytest.raises(KvmError) as info:
        KvmHandle(5).api_version()
    assert info.value.operation == "KVM_GET_API_VERSION"
    assert info.value.errno == errno.ENOTTY


def test_open_missing_path_is_open_enoent(tmp_path):
    with pytest.raises(KvmError) as info:
        kvmapi.KvmBackend().open_device(str(tmp_path / "missing"))
    assert (info.value.operation, info.value.errno) == ("open", errno.ENOENT)


# --- handle and VM wiring with a fake ioctl -----------------------------------------
def test_handle_passes_requests_and_closes_once(monkeypatch):
    seen = []

    def fake(fd, request, arg=0):
        seen.append((request, arg))
        if request == kvmapi.KVM_CREATE_VM:
            return os.open(os.devnull, os.O_RDONLY)
        return {kvmapi.KVM_GET_API_VERSION: 12, kvmapi.KVM_GET_VCPU_MMAP_SIZE: RUN_SIZE}.get(request, 7)

    monkeypatch.setattr(kvmapi, "_raw_ioctl", fake)
    before = open_fds()
    with KvmHandle(os.open(os.devnull, os.O_RDONLY)) as handle:
        assert handle.api_version() == 12
        assert handle.check_extension(3) == 7
        assert handle.vcpu_mmap_size() == RUN_SIZE
        with handle.create_vm() as vm:
            assert vm.check_extension(105) == 7
        assert vm.closed
        vm.close()
    assert handle.closed
    handle.close()
    assert open_fds() == before
    assert (kvmapi.KVM_CHECK_EXTENSION, 3) in seen
    assert (kvmapi.KVM_CREATE_VM, 0) in seen
    with pytest.raises(KvmError) as info:
        handle.create_vm()
    assert info.value.errno == errno.EBADF


# --- decoding kvm_run ----------------------------------------------------------------
def test_decode_io_exit():
    info = kvmapi._decode_exit(io_exit(port=0x3F8, value=0x4B))
    assert (info.name, info.port, info.direction, info.size, info.count) == ("IO", 0x3F8, 1, 1, 1)
    assert info.data == b"K"


def test_decode_io_exit_with_data_outside_the_mapping():
    info = kvmapi._decode_exit(io_exit(data_offset=RUN_SIZE))
    assert info.data is None
    assert "outside" in kvmapi._io_problem(info)


@pytest.mark.parametrize("reason, layout, expected", [
    (9, ("=QI", 0x80000021, 3), "hardware_entry_failure_reason 0x80000021 on cpu 3"),
    (17, ("=II", 1, 0), "suberror 1 (instruction emulation failed)"),
    (0, ("=Q", 0x30), "hardware_exit_reason 0x30"),
    (6, ("=Q", 0x5000), "0x5000"),
    (8, None, "triple-faulted"),
])
def test_decode_other_exits(reason, layout, expected):
    buf = make_run_buffer(reason)
    if layout:
        struct.pack_into(layout[0], buf, 32, *layout[1:])
    info = kvmapi._decode_exit(buf)
    assert info.name == kvmapi.EXIT_REASONS[reason]
    assert expected in info.detail


def test_unknown_exit_reason_gets_a_numbered_name():
    assert kvmapi._decode_exit(make_run_buffer(999)).name == "UNKNOWN(999)"
    assert kvmapi._exit_name(5) == "HLT"


# --- _drive_guest: the exit-judging loop ---------------------------------------------
def scripted(steps):
    """A run_once that copies the next scripted kvm_run image into `area`."""
    area = bytearray(RUN_SIZE)
    steps = list(steps)

    def run_once():
        step = steps.pop(0)
        if isinstance(step, BaseException) or (isinstance(step, type) and issubclass(step, BaseException)):
            raise step
        area[:] = step

    return run_once, area


def drive(steps, max_runs=8):
    run_once, area = scripted(steps)
    return kvmapi._drive_guest(run_once, area, max_runs, 1.0)


def test_drive_expected_sequence():
    out = drive([io_exit(), make_run_buffer(5)])
    assert (out.exits, out.port, out.byte, out.runs, out.problem) == (("IO", "HLT"), 0x3F8, 0x4B, 2, None)


def test_drive_wrong_byte_is_reported_and_the_guest_continues():
    out = drive([io_exit(value=0x41), make_run_buffer(5)])
    assert out.exits == ("IO", "HLT") and out.byte == 0x41
    assert "0x41" in out.problem and "0x4b" in out.problem


def test_drive_wrong_port():
    out = drive([io_exit(port=0x80), make_run_buffer(5)])
    assert out.port == 0x80 and "port 0x80" in out.problem


def test_drive_in_instead_of_out_has_no_byte():
    out = drive([io_exit(direction=0), make_run_buffer(5)])
    assert out.byte is None and "expected a one-byte out" in out.problem


def test_drive_stops_at_an_unexpected_exit():
    fail = make_run_buffer(9)
    struct.pack_into("=QI", fail, 32, 0x7, 0)
    out = drive([fail, make_run_buffer(5)])
    assert out.exits == ("FAIL_ENTRY",) and out.runs == 1
    assert "FAIL_ENTRY" in out.problem and "hardware_entry_failure_reason 0x7" in out.problem


def test_drive_halt_without_output():
    out = drive([make_run_buffer(5)])
    assert out.exits == ("HLT",) and "without writing" in out.problem


def test_drive_is_bounded_by_max_runs():
    out = drive([io_exit()] * 10, max_runs=3)
    assert out.runs == 3 and out.exits == ("IO", "IO", "IO")
    assert "within 3 KVM_RUN calls" in out.problem


def test_drive_timeout_is_a_problem_not_an_exception():
    out = drive([io_exit(), kvmapi._GuestTimeout])
    assert out.exits == ("IO",) and out.runs == 2
    assert out.problem.startswith("timeout")


def test_drive_retries_after_a_foreign_signal():
    out = drive([InterruptedError, io_exit(), make_run_buffer(5)])
    assert out.exits == ("IO", "HLT") and out.runs == 3 and out.problem is None


# --- the SIGALRM guard without KVM ----------------------------------------------------
def _previous_handler(signum, frame):
    raise AssertionError("the previous SIGALRM handler must not see the guard's alarms")


@pytest.fixture
def foreign_alarm():
    """A previous SIGALRM handler and a long ITIMER_REAL, removed afterwards."""
    old = signal.signal(signal.SIGALRM, _previous_handler)
    signal.setitimer(signal.ITIMER_REAL, 100.0)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def test_guard_interrupts_a_blocking_call_and_restores_state(foreign_alarm):
    read_end, write_end = os.pipe()
    start = time.monotonic()
    try:
        with pytest.raises(kvmapi._GuestTimeout):
            with kvmapi._AlarmGuard(0.1) as guard:
                guard.call(lambda: os.read(read_end, 1))  # would block forever
    finally:
        os.close(read_end)
        os.close(write_end)
    assert time.monotonic() - start < 1.0
    assert signal.getsignal(signal.SIGALRM) is _previous_handler
    remaining, _interval = signal.getitimer(signal.ITIMER_REAL)
    assert 98.0 < remaining <= 100.0


def test_guard_sets_immediate_exit_and_refuses_later_calls():
    area = bytearray(RUN_SIZE)
    with kvmapi._AlarmGuard(0.05) as guard:
        guard.run_area = area
        deadline = time.monotonic() + 2.0
        while not guard.expired and time.monotonic() < deadline:
            sum(range(1000))  # bytecodes, so the handler gets to run
        assert guard.expired and area[1] == 1
        with pytest.raises(kvmapi._GuestTimeout):
            guard.call(lambda: None)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_guard_gives_an_overdue_previous_timer_back_at_once():
    fired = []
    old = signal.signal(signal.SIGALRM, lambda s, f: fired.append(s))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with kvmapi._AlarmGuard(5.0):
            time.sleep(0.1)  # the previous timer falls due while the guard holds SIGALRM
        deadline = time.monotonic() + 1.0
        while not fired and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fired == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_guard_is_unavailable_off_the_main_thread():
    seen = []
    worker = threading.Thread(target=lambda: seen.append(_try_guard()))
    worker.start()
    worker.join()
    assert seen == ["unavailable"]


def _try_guard():
    try:
        kvmapi._AlarmGuard(1.0)
    except kvmapi._GuardUnavailable:
        return "unavailable"
    return "available"


# --- run_smoke_guest end to end against FakeKvm ---------------------------------------
def test_fake_smoke_run_sets_up_real_mode_and_cleans_up(fake_vm):
    before = open_fds()
    vm, fake = fake_vm([io_exit(), make_run_buffer(5)])
    result = vm.run_smoke_guest()
    assert isinstance(result, GuestRun)
    assert (result.ok, result.exits, result.port, result.byte, result.runs) == (
        True, ("IO", "HLT"), 0x3F8, 0x4B, 2)
    assert result.problem is None and result.duration_ns > 0
    slot, flags, gpa, size, address = fake.regions[0]
    assert (slot, flags, gpa, size) == (0, 0, 0x1000, 4096) and address != 0
    assert fake.regions[-1][3] == 0  # slot deleted on the way out
    assert struct.unpack_from(kvmapi.SEGMENT_HEAD_FORMAT, fake.sregs_set, 0) == (0, 0xFFFF, 0)
    assert fake.regs_set[kvmapi.REGS_RIP_INDEX] == 0x1000
    assert fake.regs_set[kvmapi.REGS_RFLAGS_INDEX] == 0x2
    assert fake.vcpu_ids == [0]
    vm.close()
    assert open_fds() == before


def test_fake_second_run_uses_a_new_vcpu_id(fake_vm):
    vm, fake = fake_vm([io_exit(), make_run_buffer(5)] * 2)
    assert vm.run_smoke_guest().ok and vm.run_smoke_guest().ok
    assert fake.vcpu_ids == [0, 1]


def test_fake_hanging_guest_returns_after_the_timeout(fake_vm):
    vm, _fake = fake_vm([Hang()])
    start = time.monotonic()
    result = vm.run_smoke_guest(bytes.fromhex("EBFE"), timeout_s=0.2)
    assert time.monotonic() - start < 1.5
    assert not result.ok and result.problem.startswith("timeout")
    assert result.duration_ns >= 150_000_000


@pytest.mark.parametrize("failing", [
    "KVM_SET_USER_MEMORY_REGION", "KVM_CREATE_VCPU", "KVM_GET_SREGS",
    "KVM_SET_SREGS", "KVM_SET_REGS", "KVM_RUN",
])
def test_fake_failure_at_each_step_raises_and_leaks_nothing(fake_vm, failing):
    before = open_fds()
    vm, _fake = fake_vm(fail_on=getattr(kvmapi, failing))
    with pytest.raises(KvmError) as info:
        vm.run_smoke_guest()
    assert info.value.operation == failing and info.value.errno == errno.EIO
    vm.close()
    assert open_fds() == before


def test_kvm_run_error_other_than_eintr_raises(fake_vm):
    vm, _fake = fake_vm([errno.EFAULT])
    with pytest.raises(KvmError) as info:
        vm.run_smoke_guest()
    assert (info.value.operation, info.value.errno) == ("KVM_RUN", errno.EFAULT)


def test_run_on_a_closed_vm_is_a_kvm_error():
    vm = KvmVm(-1, RUN_SIZE)
    with pytest.raises(KvmError) as info:
        vm.run_smoke_guest()
    assert info.value.errno == errno.EBADF


@pytest.mark.parametrize("kwargs", [
    {"code": b""}, {"code": b"\x90" * 4097}, {"max_runs": 0}, {"timeout_s": 0},
])
def test_run_arguments_are_validated(kwargs):
    with pytest.raises(ValueError):
        KvmVm(-1, RUN_SIZE).run_smoke_guest(**kwargs)


def test_drive_keeps_every_problem():
    out = drive([io_exit(value=0x41), make_run_buffer(8)])
    assert out.exits == ("IO", "SHUTDOWN")
    assert "0x41" in out.problem and "SHUTDOWN" in out.problem
