"""Minimal, leak-proof access to the Linux KVM ioctl API (x86-64).

This is the only module of kvmready that issues ioctls or maps memory.  It
opens /dev/kvm, queries the API version and capabilities, creates a VM and
runs a seven-byte real-mode guest that writes 'K' to port 0x3f8 and halts.

Facts used here come from include/uapi/linux/kvm.h (KVMIO = 0xAE) and
asm-generic/ioctl.h.  Nothing happens at import time beyond defining
constants; fcntl, mmap, signal and ctypes are imported where needed so the
CLI starts fast.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import time
from typing import TYPE_CHECKING, NamedTuple

from kvmready.kvmabi import KVM_DEVICE

if TYPE_CHECKING:
    from typing import Callable

__all__ = [
    "CAPABILITIES", "SMOKE_GUEST_CODE",
    "Capability", "GuestRun", "KvmBackend", "KvmError", "KvmHandle", "KvmVm",
]

# --- ioctl numbers ----------------------------------------------------------
# asm-generic/ioctl.h: number = dir << 30 | size << 16 | type << 8 | nr.
_IOC_NONE = 0
_IOC_WRITE = 1
_IOC_READ = 2
KVMIO = 0xAE


def _ioc(direction: int, nr: int, size: int = 0) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


# Struct layouts, native x86-64 order, no implicit padding ("=").
# struct kvm_userspace_memory_region {u32 slot, flags; u64 gpa, size, uaddr}
MEMORY_REGION_FORMAT = "=IIQQQ"
# struct kvm_regs: rax..r15 (16 x u64), rip, rflags
REGS_FORMAT = "=18Q"
REGS_RIP_INDEX = 16
REGS_RFLAGS_INDEX = 17
# struct kvm_segment: u64 base, u32 limit, u16 selector, u8 type, present,
# dpl, db, s, l, g, avl, unusable, padding
SEGMENT_FORMAT = "=QIH10B"
# struct kvm_dtable: u64 base, u16 limit, u16 padding[3]
DTABLE_FORMAT = "=QH3H"
# struct kvm_sregs: cs ds es fs gs ss tr ldt, gdt idt, cr0 cr2 cr3 cr4 cr8
# efer apic_base, interrupt_bitmap[4]
SREGS_FORMAT = "=" + SEGMENT_FORMAT[1:] * 8 + DTABLE_FORMAT[1:] * 2 + "7Q4Q"
SREGS_CS_OFFSET = 0  # cs is the first member
SEGMENT_HEAD_FORMAT = "=QIH"  # base, limit, selector

KVM_GET_API_VERSION = _ioc(_IOC_NONE, 0x00)
KVM_CREATE_VM = _ioc(_IOC_NONE, 0x01)
KVM_CHECK_EXTENSION = _ioc(_IOC_NONE, 0x03)
KVM_GET_VCPU_MMAP_SIZE = _ioc(_IOC_NONE, 0x04)
KVM_CREATE_VCPU = _ioc(_IOC_NONE, 0x41)
KVM_SET_USER_MEMORY_REGION = _ioc(
    _IOC_WRITE, 0x46, struct.calcsize(MEMORY_REGION_FORMAT)
)
KVM_RUN = _ioc(_IOC_NONE, 0x80)
KVM_GET_REGS = _ioc(_IOC_READ, 0x81, struct.calcsize(REGS_FORMAT))
KVM_SET_REGS = _ioc(_IOC_WRITE, 0x82, struct.calcsize(REGS_FORMAT))
KVM_GET_SREGS = _ioc(_IOC_READ, 0x83, struct.calcsize(SREGS_FORMAT))
KVM_SET_SREGS = _ioc(_IOC_WRITE, 0x84, struct.calcsize(SREGS_FORMAT))

# --- struct kvm_run (the mmap of a vCPU fd) ---------------------------------
RUN_IMMEDIATE_EXIT_OFFSET = 1
RUN_EXIT_REASON_FORMAT = "=I"
RUN_EXIT_REASON_OFFSET = 8
RUN_UNION_OFFSET = 32
# KVM_EXIT_IO: u8 direction, u8 size, u16 port, u32 count, u64 data_offset
RUN_IO_FORMAT = "=BBHIQ"
# KVM_EXIT_FAIL_ENTRY: u64 hardware_entry_failure_reason, u32 cpu
RUN_FAIL_ENTRY_FORMAT = "=QI"
# KVM_EXIT_INTERNAL_ERROR: u32 suberror, u32 ndata
RUN_INTERNAL_FORMAT = "=II"
# KVM_EXIT_UNKNOWN: u64 hardware_exit_reason; KVM_EXIT_MMIO: u64 phys_addr
RUN_U64_FORMAT = "=Q"
# KVM_EXIT_EXCEPTION: u32 exception, u32 error_code
RUN_EXCEPTION_FORMAT = "=II"
# KVM_EXIT_SYSTEM_EVENT: u32 type
RUN_SYSTEM_EVENT_FORMAT = "=I"

KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1

EXIT_REASONS: dict[int, str] = dict(enumerate((
    "UNKNOWN", "EXCEPTION", "IO", "HYPERCALL", "DEBUG", "HLT", "MMIO",
    "IRQ_WINDOW_OPEN", "SHUTDOWN", "FAIL_ENTRY", "INTR", "SET_TPR",
    "TPR_ACCESS", "S390_SIEIC", "S390_RESET", "DCR", "NMI", "INTERNAL_ERROR",
    "OSI", "PAPR_HCALL", "S390_UCONTROL", "WATCHDOG", "S390_TSCH", "EPR",
    "SYSTEM_EVENT", "S390_STSI", "IOAPIC_EOI", "HYPERV", "ARM_NISV",
    "X86_RDMSR", "X86_WRMSR", "DIRTY_RING_FULL", "AP_RESET_HOLD",
    "X86_BUS_LOCK", "XEN", "RISCV_SBI", "RISCV_CSR", "NOTIFY",
    "LOONGARCH_IOCSR", "MEMORY_FAULT", "TDX",
)))
_EXIT_IO = 2
_EXIT_HLT = 5

INTERNAL_SUBERRORS = {
    1: "instruction emulation failed",
    2: "simultaneous exceptions",
    3: "exit while delivering an event",
    4: "unexpected exit reason",
}

# --- the smoke guest ----------------------------------------------------------
SMOKE_GUEST_CODE = bytes.fromhex("BAF803B04BEEF4")  # mov dx,0x3f8; mov al,'K'; out dx,al; hlt
SMOKE_PORT = 0x3F8
SMOKE_BYTE = 0x4B  # 'K'
GUEST_PAGE_SIZE = 4096
GUEST_PHYS_ADDR = 0x1000
GUEST_SLOT = 0
GUEST_RFLAGS = 0x2  # bit 1 is reserved and must be set
_EXPECTED_EXITS = ("IO", "HLT")

# Hang guard: after the first SIGALRM the timer keeps firing at this interval
# so a signal that slipped in just before KVM_RUN entered the kernel is
# followed by one that lands while it blocks.
_ALARM_REPEAT_S = 0.01
# Extra time a child process gets to start when the guard must run there.
_CHILD_STARTUP_ALLOWANCE_S = 10.0


# --- public data types ---------------------------------------------------------
class KvmError(Exception):
    """A failed KVM operation: which operation, errno and the OS message."""

    def __init__(self, operation: str, errno_: int, strerror: str | None = None):
        strerror = strerror or os.strerror(errno_)
        super().__init__(operation, errno_, strerror)
        self.operation = operation
        self.errno = errno_
        self.strerror = strerror

    def __str__(self) -> str:
        return f"{self.operation} failed: [Errno {self.errno}] {self.strerror}"


class Capability(NamedTuple):
    name: str
    number: int
    purpose: str


CAPABILITIES: tuple[Capability, ...] = (
    Capability("KVM_CAP_IRQCHIP", 0, "in-kernel interrupt controller emulation"),
    Capability("KVM_CAP_HLT", 1, "idle vCPUs halt in the kernel"),
    Capability("KVM_CAP_USER_MEMORY", 3, "guest RAM backed by user-space mappings"),
    Capability("KVM_CAP_NR_VCPUS", 9, "recommended vCPUs per VM"),
    Capability("KVM_CAP_NR_MEMSLOTS", 10, "memory slots for RAM, ROM and device BARs"),
    Capability("KVM_CAP_TSC_CONTROL", 60, "set the guest TSC frequency (snapshots, migration)"),
    Capability("KVM_CAP_MAX_VCPUS", 66, "hard limit of vCPUs per VM"),
    Capability("KVM_CAP_ENABLE_CAP_VM", 98, "per-VM feature switches via KVM_ENABLE_CAP"),
    Capability("KVM_CAP_CHECK_EXTENSION_VM", 105, "capability queries on the VM fd"),
    Capability("KVM_CAP_SPLIT_IRQCHIP", 121, "LAPIC in kernel, PIC/IOAPIC in user space (VMware's model)"),
    Capability("KVM_CAP_X2APIC_API", 129, "x2APIC IDs for guests with many vCPUs"),
    Capability("KVM_CAP_IMMEDIATE_EXIT", 136, "race-free kick of a running vCPU"),
    Capability("KVM_CAP_X86_DISABLE_EXITS", 143, "let HLT/PAUSE/MWAIT run without exits"),
    Capability("KVM_CAP_NESTED_STATE", 157, "save/restore nested guests (Hyper-V/VBS in the VM)"),
    Capability("KVM_CAP_X86_USER_SPACE_MSR", 188, "forward MSR accesses to user space"),
    Capability("KVM_CAP_X86_MSR_FILTER", 189, "choose which MSRs user space handles"),
    Capability("KVM_CAP_EXIT_HYPERCALL", 201, "hypercalls that exit to user space (bitmask)"),
    Capability("KVM_CAP_XSAVE2", 208, "full XSAVE state (AMX) for save/restore"),
)


class GuestRun(NamedTuple):
    """Outcome of running the tiny real-mode guest."""

    ok: bool
    exits: tuple[str, ...]
    port: int | None
    byte: int | None
    runs: int
    duration_ns: int
    problem: str | None


# --- the syscall seam ---------------------------------------------------------
def _raw_ioctl(fd: int, request: int, arg: int | bytearray = 0) -> int:
    """The single place that calls ioctl(2); tests replace it to inject faults.

    A bytearray argument is passed as a pointer and updated in place.
    """
    import fcntl

    return fcntl.ioctl(fd, request, arg)


def _ioctl(fd: int, operation: str, request: int, arg: int | bytearray = 0) -> int:
    if fd < 0:  # closed object; fcntl would raise ValueError, not OSError
        raise KvmError(operation, errno.EBADF)
    try:
        return _raw_ioctl(fd, request, arg)
    except OSError as exc:
        raise KvmError(operation, exc.errno or errno.EIO, exc.strerror) from None


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass  # already gone; closing is best effort


class KvmBackend:
    """The real implementation; tests use fakes with the same duck type."""

    def open_device(self, path: str = KVM_DEVICE) -> KvmHandle:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise KvmError("open", exc.errno or errno.EIO, exc.strerror) from None
        return KvmHandle(fd, path)


class KvmHandle:
    """An open /dev/kvm (system ioctls). Context manager; close() is idempotent."""

    def __init__(self, fd: int, path: str = KVM_DEVICE):
        self._fd = fd
        self.path = path

    def __enter__(self) -> KvmHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def api_version(self) -> int:
        return _ioctl(self._fd, "KVM_GET_API_VERSION", KVM_GET_API_VERSION)

    def check_extension(self, number: int) -> int:
        return _ioctl(self._fd, "KVM_CHECK_EXTENSION", KVM_CHECK_EXTENSION, number)

    def vcpu_mmap_size(self) -> int:
        return _ioctl(self._fd, "KVM_GET_VCPU_MMAP_SIZE", KVM_GET_VCPU_MMAP_SIZE)

    def create_vm(self) -> KvmVm:
        # The run area size is a system ioctl; fetch it now so the VM does not
        # need this handle later.
        mmap_size = self.vcpu_mmap_size()
        fd = _ioctl(self._fd, "KVM_CREATE_VM", KVM_CREATE_VM, 0)
        return KvmVm(fd, mmap_size, self.path)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            _close_fd(fd)


class KvmVm:
    """A VM fd. Context manager; close() is idempotent."""

    def __init__(self, fd: int, vcpu_mmap_size: int, device_path: str = KVM_DEVICE):
        self._fd = fd
        self._vcpu_mmap_size = vcpu_mmap_size
        self._next_vcpu_id = 0  # vCPUs live as long as the VM, so ids are not reused
        self.device_path = device_path

    def __enter__(self) -> KvmVm:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def check_extension(self, number: int) -> int:
        return _ioctl(self._fd, "KVM_CHECK_EXTENSION", KVM_CHECK_EXTENSION, number)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            _close_fd(fd)

    def run_smoke_guest(
        self,
        code: bytes = SMOKE_GUEST_CODE,
        *,
        max_runs: int = 8,
        timeout_s: float = 1.0,
    ) -> GuestRun:
        """Run `code` in real mode at 0x1000 and report its exits.

        The first call uses vCPU id 0; a repeated call on the same VM uses the
        next id, because KVM keeps a vCPU until its VM is destroyed.
        """
        if not 0 < len(code) <= GUEST_PAGE_SIZE:
            raise ValueError(f"guest code must be 1..{GUEST_PAGE_SIZE} bytes")
        if max_runs < 1 or not timeout_s > 0:
            raise ValueError("max_runs must be >= 1 and timeout_s > 0")
        if self._fd < 0:
            raise KvmError("KVM_SET_USER_MEMORY_REGION", errno.EBADF)
        try:
            return _run_session(self, _AlarmGuard(timeout_s), code, max_runs)
        except _GuardUnavailable as exc:
            return _run_in_child(self.device_path, code, max_runs, timeout_s, str(exc))


# --- the hang guard ---------------------------------------------------------
class _GuestTimeout(Exception):
    """Raised from the SIGALRM handler to break out of a blocked KVM_RUN."""


class _GuardUnavailable(Exception):
    """SIGALRM cannot be used here (not the main thread, or a foreign C handler)."""


class _AlarmGuard:
    """Bounds KVM_RUN with SIGALRM (ITIMER_REAL) on the main thread.

    A signal arriving while KVM_RUN blocks in the guest makes the ioctl
    return EINTR (exit reason INTR).  What fcntl.ioctl then does depends on
    the Python version: 3.9-3.13 run the Python handler and raise
    InterruptedError (verified here); newer CPython retries ioctl on EINTR
    like PEP 475, so a handler that only set a flag would loop forever.  The
    handler therefore *raises* _GuestTimeout, which ends either variant, but
    only while `in_call` is set and at most once per call, so the exception
    cannot escape from unrelated code such as the cleanup.

    After the deadline the timer repeats every 10 ms: Python handlers run
    only between bytecodes, so a signal landing just before the syscall
    starts is consumed without interrupting it; the next one lands inside.
    The handler also sets kvm_run.immediate_exit, so any later KVM_RUN
    returns at once instead of entering the guest.

    The previous SIGALRM handler and ITIMER_REAL are restored on exit, the
    timer minus the time spent here (fired at once if already overdue).
    """

    def __init__(self, timeout_s: float):
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            raise _GuardUnavailable("signals work only on the main thread")
        self._signal = signal
        self.timeout_s = timeout_s
        self.expired = False
        self.in_call = False
        self.run_area = None  # kvm_run mapping, for immediate_exit
        old = signal.getsignal(signal.SIGALRM)
        if old is None:  # installed from C: we could not put it back
            raise _GuardUnavailable("SIGALRM has a handler that Python cannot restore")
        self._old_handler = old
        self._old_timer = (0.0, 0.0)
        self._armed_at = 0.0

    def __enter__(self) -> _AlarmGuard:
        signal = self._signal
        try:
            signal.signal(signal.SIGALRM, self._on_alarm)
        except ValueError as exc:  # not the main thread of the main interpreter
            raise _GuardUnavailable(str(exc)) from None
        self._armed_at = time.monotonic()
        self._old_timer = signal.setitimer(
            signal.ITIMER_REAL, self.timeout_s, _ALARM_REPEAT_S
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        signal = self._signal
        self.in_call = False  # from here on the handler never raises
        signal.setitimer(signal.ITIMER_REAL, 0)
        # signal.signal() first runs any pending Python handler (ours, inert).
        signal.signal(signal.SIGALRM, self._old_handler)
        delay, interval = self._old_timer
        if delay > 0:
            remaining = delay - (time.monotonic() - self._armed_at)
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 1e-6), interval)

    def _on_alarm(self, signum: int, frame: object) -> None:
        self.expired = True
        area = self.run_area
        if area is not None:
            try:
                area[RUN_IMMEDIATE_EXIT_OFFSET] = 1
            except (ValueError, TypeError, IndexError):
                pass  # mapping already closed
        if self.in_call:
            self.in_call = False  # raise at most once per call()
            raise _GuestTimeout

    def call(self, fn: Callable[[], object]) -> object:
        """Run fn; raise _GuestTimeout if the deadline passes before or during it."""
        if self.expired:
            raise _GuestTimeout
        self.in_call = True
        try:
            return fn()
        finally:
            self.in_call = False


# --- decoding kvm_run ------------------------------------------------------------
class _ExitInfo:
    """One decoded exit; the I/O fields are None for other exit reasons."""

    __slots__ = ("reason", "name", "detail", "direction", "size", "port", "count", "data")

    def __init__(self, reason: int, name: str, detail: str, direction: int | None = None,
                 size: int | None = None, port: int | None = None,
                 count: int | None = None, data: bytes | None = None):
        self.reason, self.name, self.detail = reason, name, detail
        self.direction, self.size, self.port = direction, size, port
        self.count, self.data = count, data


def _exit_name(reason: int) -> str:
    return EXIT_REASONS.get(reason, f"UNKNOWN({reason})")


def _decode_exit(run) -> _ExitInfo:  # run: any buffer holding a kvm_run
    """Decode exit_reason and the relevant union member of a kvm_run buffer."""
    (reason,) = struct.unpack_from(RUN_EXIT_REASON_FORMAT, run, RUN_EXIT_REASON_OFFSET)
    name = _exit_name(reason)
    if reason == _EXIT_IO:
        return _decode_io(run, reason, name)
    return _ExitInfo(reason, name, _exit_detail(run, reason, name))


def _decode_io(run, reason: int, name: str) -> _ExitInfo:
    direction, size, port, count, data_offset = struct.unpack_from(
        RUN_IO_FORMAT, run, RUN_UNION_OFFSET
    )
    end = data_offset + size * count
    data = bytes(run[data_offset:end]) if end <= len(run) else None
    verb = "out" if direction == KVM_EXIT_IO_OUT else "in"
    detail = f"{verb} port {port:#x}, size {size}, count {count}"
    return _ExitInfo(reason, name, detail, direction, size, port, count, data)


def _exit_detail(run, reason: int, name: str) -> str:
    union = RUN_UNION_OFFSET
    if name == "FAIL_ENTRY":
        hw_reason, cpu = struct.unpack_from(RUN_FAIL_ENTRY_FORMAT, run, union)
        return f"hardware_entry_failure_reason {hw_reason:#x} on cpu {cpu}"
    if name == "INTERNAL_ERROR":
        suberror, _ndata = struct.unpack_from(RUN_INTERNAL_FORMAT, run, union)
        what = INTERNAL_SUBERRORS.get(suberror, "unknown")
        return f"suberror {suberror} ({what})"
    if name == "UNKNOWN":
        (hw_reason,) = struct.unpack_from(RUN_U64_FORMAT, run, union)
        return f"hardware_exit_reason {hw_reason:#x}"
    if name == "MMIO":
        (addr,) = struct.unpack_from(RUN_U64_FORMAT, run, union)
        return f"guest-physical address {addr:#x} is not RAM"
    if name == "EXCEPTION":
        vector, code = struct.unpack_from(RUN_EXCEPTION_FORMAT, run, union)
        return f"exception {vector}, error code {code:#x}"
    if name == "SYSTEM_EVENT":
        (event,) = struct.unpack_from(RUN_SYSTEM_EVENT_FORMAT, run, union)
        return f"event type {event}"
    if name == "SHUTDOWN":
        return "the guest triple-faulted"
    return f"exit reason {reason}"


# --- judging the exits -----------------------------------------------------------
def _describe_byte(value: int) -> str:
    char = chr(value)
    return f"{value:#04x} ({char!r})" if char.isprintable() else f"{value:#04x}"


def _io_problem(info: _ExitInfo) -> str | None:
    if info.port != SMOKE_PORT:
        return f"guest wrote to port {info.port:#x}, expected {SMOKE_PORT:#x}"
    if info.direction != KVM_EXIT_IO_OUT or info.size != 1 or info.count != 1:
        return f"unexpected I/O ({info.detail}), expected a one-byte out to {SMOKE_PORT:#x}"
    if info.data is None:
        return "the I/O data offset points outside the kvm_run mapping"
    if info.data[0] != SMOKE_BYTE:
        return (f"guest wrote {_describe_byte(info.data[0])} to port {info.port:#x}, "
                f"expected {_describe_byte(SMOKE_BYTE)}")
    return None


def _also(problem: str | None, more: str) -> str:
    return f"{problem}; {more}" if problem else more


class _Outcome:
    __slots__ = ("exits", "port", "byte", "runs", "problem")

    def __init__(self, exits: tuple[str, ...], port: int | None, byte: int | None,
                 runs: int, problem: str | None):
        self.exits, self.port, self.byte, self.runs, self.problem = (
            exits, port, byte, runs, problem)


def _drive_guest(
    run_once: Callable[[], None], run_area, max_runs: int, timeout_s: float
) -> _Outcome:
    """Call run_once() (one KVM_RUN) until HLT, an unexpected exit or the bound.

    run_once raises _GuestTimeout when the deadline passes and
    InterruptedError when an unrelated signal cut KVM_RUN short (retried).
    """
    exits: list[str] = []
    port = byte = problem = None
    runs = 0
    while runs < max_runs:
        runs += 1
        try:
            run_once()
        except _GuestTimeout:
            timeout = (f"timeout: the guest did not halt within {timeout_s:g} s "
                       f"(KVM_RUN interrupted after {len(exits)} exit(s))")
            problem = _also(problem, timeout)
            break
        except InterruptedError:
            continue  # a foreign signal interrupted KVM_RUN; run again
        info = _decode_exit(run_area)
        exits.append(info.name)
        if info.reason == _EXIT_IO:
            if port is None:
                port = info.port
                if info.direction == KVM_EXIT_IO_OUT and info.data:
                    byte = info.data[0]
            if problem is None:
                problem = (_io_problem(info) if len(exits) == 1
                           else f"unexpected extra I/O exit: {info.detail}")
            continue  # port I/O is harmless: let the guest go on
        if info.reason == _EXIT_HLT:
            if problem is None and tuple(exits) != _EXPECTED_EXITS:
                problem = "guest halted without writing to port 0x3f8"
            break
        problem = _also(problem, f"unexpected {info.name} exit: {info.detail}")
        break
    else:
        problem = _also(problem, f"guest did not halt within {max_runs} KVM_RUN calls")
    return _Outcome(tuple(exits), port, byte, runs, problem)


# --- one guest run: resources and their cleanup ---------------------------------
def _map_anonymous(size: int):
    import mmap

    try:
        return mmap.mmap(-1, size, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS,
                         mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError as exc:
        raise KvmError("mmap", exc.errno or errno.ENOMEM, exc.strerror) from None


def _map_vcpu(fd: int, size: int):
    import mmap

    try:
        # mmap dup()s the fd; the copy is closed with the mapping.
        return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError as exc:
        raise KvmError("mmap", exc.errno or errno.ENOMEM, exc.strerror) from None
    except ValueError as exc:  # e.g. a size of 0 from KVM_GET_VCPU_MMAP_SIZE
        raise KvmError("mmap", errno.EINVAL, str(exc)) from None


def _address_of(mapping) -> int:
    import ctypes

    anchor = ctypes.c_char.from_buffer(mapping)
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor  # release the buffer export, or mapping.close() would fail


def _prepare_vcpu(vm: KvmVm, code: bytes, cleanup: contextlib.ExitStack):
    """Memory, slot 0, vCPU and its kvm_run mapping; each registers its undo."""
    memory = _map_anonymous(GUEST_PAGE_SIZE)
    cleanup.callback(memory.close)
    memory[: len(code)] = code
    _set_slot(vm._fd, GUEST_PAGE_SIZE, _address_of(memory))
    # Deleting the slot (size 0) lets the VM run a guest again later.
    cleanup.callback(_delete_slot, vm._fd)
    vcpu_fd = _ioctl(vm._fd, "KVM_CREATE_VCPU", KVM_CREATE_VCPU, vm._next_vcpu_id)
    cleanup.callback(_close_fd, vcpu_fd)
    vm._next_vcpu_id += 1
    run_area = _map_vcpu(vcpu_fd, vm._vcpu_mmap_size)
    cleanup.callback(run_area.close)
    _set_real_mode_registers(vcpu_fd)
    return vcpu_fd, run_area


def _set_slot(vm_fd: int, size: int, address: int) -> None:
    region = bytearray(struct.pack(MEMORY_REGION_FORMAT, GUEST_SLOT, 0,
                                   GUEST_PHYS_ADDR, size, address))
    _ioctl(vm_fd, "KVM_SET_USER_MEMORY_REGION", KVM_SET_USER_MEMORY_REGION, region)


def _delete_slot(vm_fd: int) -> None:
    try:
        _set_slot(vm_fd, 0, 0)
    except KvmError:
        pass  # the VM may be closed already; its slots die with it


def _set_real_mode_registers(vcpu_fd: int) -> None:
    """CS base 0 / selector 0 (rest of the reset state kept), RIP 0x1000."""
    sregs = bytearray(struct.calcsize(SREGS_FORMAT))
    _ioctl(vcpu_fd, "KVM_GET_SREGS", KVM_GET_SREGS, sregs)
    _base, limit, _selector = struct.unpack_from(SEGMENT_HEAD_FORMAT, sregs, SREGS_CS_OFFSET)
    struct.pack_into(SEGMENT_HEAD_FORMAT, sregs, SREGS_CS_OFFSET, 0, limit, 0)
    _ioctl(vcpu_fd, "KVM_SET_SREGS", KVM_SET_SREGS, sregs)
    values = [0] * 18
    values[REGS_RIP_INDEX] = GUEST_PHYS_ADDR
    values[REGS_RFLAGS_INDEX] = GUEST_RFLAGS
    _ioctl(vcpu_fd, "KVM_SET_REGS", KVM_SET_REGS, bytearray(struct.pack(REGS_FORMAT, *values)))


def _run_vcpu(vcpu_fd: int, guard: _AlarmGuard) -> None:
    """One KVM_RUN under the guard; EINTR becomes _GuestTimeout after the deadline."""
    try:
        guard.call(lambda: _raw_ioctl(vcpu_fd, KVM_RUN, 0))
    except InterruptedError:
        if guard.expired:
            raise _GuestTimeout from None
        raise  # a foreign signal: _drive_guest runs again
    except OSError as exc:
        raise KvmError("KVM_RUN", exc.errno or errno.EIO, exc.strerror) from None


def _run_session(vm: KvmVm, guard: _AlarmGuard, code: bytes, max_runs: int) -> GuestRun:
    start = time.perf_counter_ns()
    # ExitStack runs every registered undo, in reverse, even if one fails.
    with contextlib.ExitStack() as cleanup:
        vcpu_fd, run_area = _prepare_vcpu(vm, code, cleanup)
        with guard:  # leaves before the mapping is closed
            guard.run_area = run_area
            outcome = _drive_guest(lambda: _run_vcpu(vcpu_fd, guard), run_area,
                                  max_runs, guard.timeout_s)
        duration = time.perf_counter_ns() - start
    ok = (outcome.problem is None and outcome.exits == _EXPECTED_EXITS
          and outcome.port == SMOKE_PORT and outcome.byte == SMOKE_BYTE)
    problem = None if ok else (outcome.problem or f"unexpected exits {outcome.exits}")
    return GuestRun(ok, outcome.exits, outcome.port, outcome.byte, outcome.runs,
                    duration, problem)


# --- fallback off the main thread ---------------------------------------------------
# The child imports this package from where the parent found it (isolated mode: no user site, no PYTHONPATH).
_CHILD_BOOT = (
    "import sys\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "from kvmready.kvmapi import _child_main\n"
    "_child_main(sys.argv[2:])\n"
)


def _run_in_child(path: str, code: bytes, max_runs: int, timeout_s: float,
                  why: str) -> GuestRun:
    """Run the guest in a fresh VM in a child process, whose main thread can
    use the SIGALRM guard; the parent kills the child if even that overruns.
    (A VM cannot be shared: KVM ties it to the process that created it.)"""
    import json
    import subprocess
    import sys

    start = time.perf_counter_ns()
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    argv = [sys.executable, "-I", "-S", "-c", _CHILD_BOOT, package_parent,
            path, code.hex(), str(max_runs), repr(timeout_s)]

    def failed(problem: str) -> GuestRun:
        return GuestRun(False, (), None, None, 0, time.perf_counter_ns() - start,
                        f"{problem} (guest run in a child process because {why})")

    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout_s
                              + _CHILD_STARTUP_ALLOWANCE_S, check=False)
    except subprocess.TimeoutExpired:
        return failed(f"timeout: the child running the guest overran {timeout_s:g} s and was killed")
    except (OSError, ValueError) as exc:
        return failed(f"could not start the child process: {exc}")
    try:
        reply = json.loads(done.stdout)
    except ValueError:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        return failed(f"the child process failed (exit status {done.returncode}): {last}")
    if "error" in reply:
        raise KvmError(*reply["error"])
    run = reply["run"]
    run["exits"] = tuple(run["exits"])
    return GuestRun(**run)


def _child_main(args: list[str]) -> None:
    import json
    import sys

    path, code_hex, max_runs, timeout_s = args
    try:
        with KvmBackend().open_device(path) as kvm, kvm.create_vm() as vm:
            run = vm.run_smoke_guest(bytes.fromhex(code_hex), max_runs=int(max_runs),
                                     timeout_s=float(timeout_s))
        reply = {"run": run._asdict()}
    except KvmError as exc:
        reply = {"error": [exc.operation, exc.errno, exc.strerror]}
    sys.stdout.write(json.dumps(reply))
