"""Integration tests of kvmready.kvmapi against the real /dev/kvm.

Skipped as a whole when /dev/kvm is missing or cannot be opened.

The smoke guest walks real -> protected -> long mode.  On the development
machine and CI (Firecracker microVM, /dev/kvm from kvm_pvm, no VMX/SVM) it
reaches long mode, as it does on hardware KVM: the tests assert the full run.
Broken variants of the guest image stop in each stage; the guest loads a null
IDT first, so any fault is a triple fault (SHUTDOWN) on every KVM, which makes
those outcomes the same on PVM and hardware KVM.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import threading
import time

import pytest
from helpers import NOBODY, run_as_nobody

from kvmready import kvmapi
from kvmready.kvmabi import KVM_DEVICE
from kvmready.kvmapi import (
    CAPABILITIES,
    KvmBackend,
    KvmError,
    build_smoke_guest,
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
MMIO_CODE = bytes.fromhex("B04BA20050F4")  # mov [0x5000],al: no RAM there (guest RAM is 0x1000-0x4fff)
FULL = ("real", "protected", "long", "workload")
TO_LONG = FULL[:3]
# Paravirtual KVM reaches long mode only by emulating the guest, and its emulator stops at
# `lock cmpxchg16b` (the development machine and CI are such hosts); hardware KVM runs it all.
PARAVIRTUAL = os.path.isdir("/sys/module/kvm_pvm")


def assert_this_machines_full_run(result) -> None:
    """The standard image: every stage and the loop on hardware KVM; on kvm_pvm, the emulator's stop."""
    if PARAVIRTUAL:
        assert not result.ok and result.stages == TO_LONG and result.stopped_in == "long"
        assert result.exits == ("IO", "IO", "IO", "INTERNAL_ERROR")
        assert "instruction emulation failed" in result.problem and result.loop_ns is None
        return
    assert result.ok, result.problem
    assert result.stages == FULL and result.stopped_in is None
    assert result.exits == ("IO",) * 5 + ("HLT",)
    assert (result.port, result.byte, result.runs) == (0x3F8, kvmapi.LOOP_DONE_BYTE, 6)
    assert 0 < result.loop_ns < 50_000_000  # 200,000 instructions: well under a millisecond on hardware


def broken_guest(address: int, data: bytes) -> bytes:
    """The smoke guest image with `data` written at guest-physical `address`."""
    image = bytearray(build_smoke_guest())
    offset = address - kvmapi.GUEST_PHYS_ADDR
    image[offset:offset + len(data)] = data
    return bytes(image)


# The image halting right after 'L' (its jump to the workload replaced by hlt).
LONG_MODE_ONLY = broken_guest(kvmapi.LONG_ENTRY + 19, b"\xF4")


def descriptor_without(selector: int, field: int, add: int = 0) -> tuple[int, bytes]:
    value = kvmapi.GDT_ENTRIES[selector // 8] & ~field | add
    return kvmapi.GDT_ADDR + selector, struct.pack("<Q", value)


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
def test_smoke_guest_walks_every_stage_or_stops_where_this_kvm_emulates(vm):
    result = vm.run_smoke_guest()
    assert_this_machines_full_run(result)
    assert 0 < result.duration_ns < 1_000_000_000


def test_smoke_guest_reaches_long_mode_on_any_kvm(vm):
    """Up to 'L' every KVM runs the image, paravirtual or not: the mode switches themselves work."""
    result = vm.run_smoke_guest(LONG_MODE_ONLY)
    assert result.stages == TO_LONG and result.exits == ("IO", "IO", "IO", "HLT")
    assert (result.port, result.byte, result.runs) == (0x3F8, ord("L"), 4)


def test_smoke_guest_twice_on_one_vm(vm):
    assert_this_machines_full_run(vm.run_smoke_guest())
    assert_this_machines_full_run(vm.run_smoke_guest())


def test_smoke_guest_run_time(kvm):
    """About a millisecond per run (median); generous bound against a busy machine."""
    durations = []
    for _ in range(30):
        with kvm.create_vm() as machine:
            result = machine.run_smoke_guest()
        assert_this_machines_full_run(result)
        durations.append(result.duration_ns)
    assert sorted(durations)[len(durations) // 2] < 50_000_000


# Each broken image stops in a known stage with a known exit on any KVM.
BROKEN = {
    # 32-bit code descriptor not present: the far jump out of real mode faults
    "code32 not present": (descriptor_without(0x08, kvmapi.SEG_PRESENT << 40), "real", ("real",), "SHUTDOWN"),
    # no 2 MiB page: the first fetch after CR0.PG page-faults
    "PD entry not present": ((kvmapi.PD_ADDR, bytes(8)), "protected", ("real", "protected"), "SHUTDOWN"),
    # a 64-bit code descriptor without L runs the 64-bit code as 32-bit code:
    # it stores to linear 0 (no RAM) instead of writing 'L'
    "code64 without L": (descriptor_without(0x18, kvmapi.SEG_FLAG_L << 52, kvmapi.SEG_FLAG_DB << 52),
                         "protected", ("real", "protected"), "MMIO"),
    # ud2 instead of hlt after 'L'
    "ud2 in long mode": ((kvmapi.LONG_ENTRY + 19, bytes.fromhex("0F0B")), "long", TO_LONG, "SHUTDOWN"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_guest_stops_in_the_stage_it_breaks(vm, name):
    (address, data), stage, stages, reason = BROKEN[name]
    result = vm.run_smoke_guest(broken_guest(address, data))
    assert not result.ok
    assert result.stages == stages and result.stopped_in == stage
    assert result.exits == ("IO",) * len(stages) + (reason,)
    assert result.problem.startswith(f"stopped in {stage} mode: unexpected {reason} exit (")
    assert result.problem.endswith(f"after reaching {', '.join(stages)}")


def test_without_long_mode_in_the_cpuid_the_guest_stops_in_protected_mode(vm, monkeypatch):
    """What a VMM that gives the vCPU no CPUID gets: KVM refuses EFER.LME (#GP, triple fault)."""
    monkeypatch.setattr(kvmapi.KvmVm, "supported_cpuid", lambda self: struct.pack("=II", 0, 0))
    result = vm.run_smoke_guest()
    assert result.stages == ("real", "protected") and result.stopped_in == "protected"
    assert result.exits == ("IO", "IO", "SHUTDOWN")
    assert result.problem == (
        "stopped in protected mode: unexpected SHUTDOWN exit (the guest triple-faulted) after reaching "
        "real, protected; KVM_GET_SUPPORTED_CPUID offers no long mode (CPUID.80000001H:EDX.LM clear), "
        "so the guest may not set EFER.LME")


def test_host_offers_long_mode(kvm):
    assert kvmapi.offers_long_mode(kvm.supported_cpuid())


def test_wrong_byte_is_reported(vm):
    result = vm.run_smoke_guest(WRONG_BYTE_CODE)
    assert not result.ok
    assert result.byte == 0x41 and result.stopped_in == "real" and result.stages == ()
    assert result.problem.startswith("guest wrote 0x41 ('A') to port 0x3f8 in real mode, expected 0x52 ('R')")


def test_other_port_is_reported(vm):
    result = vm.run_smoke_guest(OTHER_PORT_CODE)
    assert not result.ok and result.port == 0x80
    assert result.problem.startswith("guest wrote to port 0x80 in real mode")


def test_triple_fault_is_reported(vm):
    result = vm.run_smoke_guest(UD2_CODE)
    assert not result.ok
    assert result.exits == ("SHUTDOWN",)
    assert result.problem == ("stopped in real mode: unexpected SHUTDOWN exit (the guest triple-faulted) "
                              "before its first progress byte")


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
    assert result.problem.startswith("timeout in real mode:") and result.stopped_in == "real"


def test_guest_looping_in_long_mode_times_out_naming_the_stage(vm):
    result = vm.run_smoke_guest(broken_guest(kvmapi.LONG_ENTRY + 19, bytes.fromhex("EBFE")), timeout_s=0.2)
    assert not result.ok and result.stages == TO_LONG and result.stopped_in == "long"
    assert result.problem.startswith("timeout in long mode: the guest did not halt within 0.2 s")


def test_looping_guest_default_timeout_is_about_one_second(vm):
    start = time.monotonic()
    result = vm.run_smoke_guest(LOOP_CODE)
    assert time.monotonic() - start < 2.5
    assert "timeout" in result.problem


def test_vm_still_usable_after_a_timeout(vm):
    assert not vm.run_smoke_guest(LOOP_CODE, timeout_s=0.1).ok
    assert_this_machines_full_run(vm.run_smoke_guest())


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
    assert_this_machines_full_run(results["smoke"])
    assert not results["loop"].ok and "timeout" in results["loop"].problem
    assert results["elapsed"] < 5.0


# --- never leaks -------------------------------------------------------------------------
def test_no_leak_over_200_guest_runs_and_failures(kvm, monkeypatch):
    with kvm.create_vm() as warmup:  # first-use allocations (ctypes, mmap module)
        warmup.run_smoke_guest()
    before = resources()
    for _ in range(200):
        with kvm.create_vm() as machine:
            assert_this_machines_full_run(machine.run_smoke_guest())
    with kvm.create_vm() as machine:
        assert not machine.run_smoke_guest(LOOP_CODE, timeout_s=0.05).ok
    closed = kvm.create_vm()
    closed.close()
    with pytest.raises(KvmError):
        closed.run_smoke_guest()
    assert resources() == before

    real_ioctl = kvmapi._raw_ioctl
    for failing in ("KVM_GET_SUPPORTED_CPUID", "KVM_SET_USER_MEMORY_REGION", "KVM_CREATE_VCPU",
                    "KVM_SET_CPUID2", "KVM_GET_SREGS", "KVM_SET_SREGS", "KVM_SET_REGS", "KVM_RUN"):
        request = getattr(kvmapi, failing)

        def injected(fd, req, arg=0, _request=request):
            if req == _request:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return real_ioctl(fd, req, arg)

        monkeypatch.setattr(kvmapi, "_raw_ioctl", injected)
        # a fresh handle: the supported CPUID is asked once per handle
        with KvmBackend().open_device() as fresh, fresh.create_vm() as machine:
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


_LOW_NOFILE = r"""
import json, os, resource, sys
from kvmready import kvmapi
kvmapi._import_guest_modules()
try:
    with kvmapi.KvmBackend().open_device() as kvm, kvm.create_vm() as vm:
        kvm.supported_cpuid()
        lowest_free = os.dup(0)
        os.close(lowest_free)
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free + int(sys.argv[1]), hard))
        vm.run_smoke_guest()
    print(json.dumps({"ran": True}))
except kvmapi.KvmError as exc:
    print(json.dumps({"operation": exc.operation, "errno": exc.errno}))
"""


@pytest.mark.parametrize("free_fds, operation", [(0, "KVM_CREATE_VCPU"), (1, "mmap")])
def test_running_out_of_fds_is_emfile_naming_the_operation(free_fds, operation):
    """The checker's own fd limit (as under `prlimit --nofile=N`) shows as EMFILE, not as a host fault."""
    done = subprocess.run([sys.executable, "-c", _LOW_NOFILE, str(free_fds)],
                          capture_output=True, timeout=60, check=True)
    assert json.loads(done.stdout) == {"operation": operation, "errno": errno.EMFILE}


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


def _open_device() -> dict:
    try:
        KvmBackend().open_device().close()
        return {"opened": True}
    except KvmError as exc:
        return {"operation": exc.operation, "errno": exc.errno}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
def test_unprivileged_user_gets_eacces():
    mode = os.stat(KVM_DEVICE).st_mode
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        pytest.skip(f"{KVM_DEVICE} is accessible to others here (mode {mode & 0o777:o})")
    assert run_as_nobody(_open_device) == {"operation": "open", "errno": errno.EACCES, "uid": NOBODY}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
def test_the_guest_needs_only_the_device_fd_no_privilege():
    """/dev/kvm opened by root, the guest run by nobody through the inherited descriptor."""
    kvmapi._import_guest_modules()  # the interpreter's files may be unreadable to uid 65534
    handle = KvmBackend().open_device()

    def run_guest() -> dict:
        with handle, handle.create_vm() as machine:
            result = machine.run_smoke_guest()
        return {"ok": result.ok, "stages": list(result.stages), "problem": result.problem}

    try:
        reply = run_as_nobody(run_guest)
    finally:
        handle.close()
    if PARAVIRTUAL:
        assert not reply["ok"] and reply["stages"] == list(TO_LONG) and "emulation failed" in reply["problem"]
    else:
        assert reply == {"uid": NOBODY, "ok": True, "stages": list(FULL), "problem": None}
