"""Fakes of the live interface: the KVM backend and the LiveSystem.

`FakeKvmBackend` has the duck type of `kvmready.kvmapi.KvmBackend`
(open_device -> handle with api_version/check_extension/create_vm/close;
VM with check_extension/run_smoke_guest/close) and raises the real
`kvmready.kvmapi.KvmError` with the operation the real backend would name,
so every errno at every step can be injected:

    FakeKvmBackend(open_errno=errno.EACCES)
    FakeKvmBackend(api_errno=errno.ENOTTY)          # or api_version=11
    FakeKvmBackend(capabilities={"KVM_CAP_SPLIT_IRQCHIP": 0})
    FakeKvmBackend(capability_errnos={"KVM_CAP_IRQCHIP": errno.EINVAL})
    FakeKvmBackend(create_vm_errno=errno.EBUSY)
    FakeKvmBackend(guest=guest_problem("..."))        # a run that went wrong
    FakeKvmBackend(guest_error=("KVM_CREATE_VCPU", errno.EINVAL))

It records every call and every handle/VM it hands out, so tests can prove
that the code under test closes what it opened.

`FakeLiveSystem` has the duck type of `kvmready.facts.live.LiveSystem`
(kvm, capabilities(), credentials(), has_acl(), read_msr(), msr_path,
disk_usage(), cpuid_signature()); it never touches the machine.
"""

from __future__ import annotations

import errno as errno_module
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from kvmready.facts.live import MSR_PATH, Credentials
from kvmready.kvmapi import CAPABILITIES, SMOKE_BYTE, SMOKE_PORT, STAGE_NAMES, GuestRun, KvmError

GIB = 1024**3

# name -> number of every capability the real LiveSystem asks about.
CAPABILITY_NUMBERS: Dict[str, int] = {cap.name: cap.number for cap in CAPABILITIES}
# What this repository's development machine answered (see reference/kvm.md); everything else 1.
DEFAULT_CAPABILITY_VALUES: Dict[str, int] = {name: 1 for name in CAPABILITY_NUMBERS}
DEFAULT_CAPABILITY_VALUES.update(
    KVM_CAP_NR_VCPUS=2,
    KVM_CAP_NR_MEMSLOTS=32764,
    KVM_CAP_MAX_VCPUS=1024,
    KVM_CAP_X86_DISABLE_EXITS=14,
    KVM_CAP_XSAVE2=4096,
)

GUEST_DURATION_NS = 1_234_567  # fixed, so golden files stay stable
GUEST_LOOP_NS = 98_765  # 200,000 instructions in ~0.1 ms: hardware speed


def guest_ok(duration_ns: int = GUEST_DURATION_NS, loop_ns: int = GUEST_LOOP_NS) -> GuestRun:
    """What the real smoke guest returns when KVM runs it natively: every stage, then the timed loop."""
    return GuestRun(True, ("IO",) * 5 + ("HLT",), SMOKE_PORT, SMOKE_BYTE, 6, duration_ns, None,
                    STAGE_NAMES, None, loop_ns)


def guest_problem(problem: str, *, byte: Optional[int] = None, port: Optional[int] = SMOKE_PORT,
                  exits: Sequence[str] = ("IO", "HLT"), runs: int = 2,
                  duration_ns: int = GUEST_DURATION_NS, stages: Sequence[str] = (),
                  stopped_in: Optional[str] = "real") -> GuestRun:
    """A guest run that ended with ok=False and a problem (wrong byte, odd exit, timeout)."""
    return GuestRun(False, tuple(exits), port, byte, runs, duration_ns, problem, tuple(stages), stopped_in)


def guest_emulation_stop() -> GuestRun:
    """What the real smoke guest gives on kvm_pvm (the development machine): emulated up to long mode,
    then the emulator cannot do lock cmpxchg16b."""
    problem = ("stopped in long mode: unexpected INTERNAL_ERROR exit (suberror 1 (instruction emulation failed)) "
               "after reaching real, protected, long")
    return guest_problem(problem, byte=ord("L"), exits=("IO", "IO", "IO", "INTERNAL_ERROR"), runs=4,
                         stages=STAGE_NAMES[:3], stopped_in="long")


def guest_wrong_byte(value: int = 0x41) -> GuestRun:
    """The guest wrote another byte than 'R' and halted (the wording the real backend uses)."""
    problem = (f"guest wrote {value:#04x} ({chr(value)!r}) to port {SMOKE_PORT:#x} in real mode, "
               "expected 0x52 ('R'), the real-mode progress byte; "
               "stopped in real mode: the guest halted before its first progress byte")
    return guest_problem(problem, byte=value)


def kvm_error(operation: str, number: int, message: Optional[str] = None) -> KvmError:
    return KvmError(operation, number, message or os.strerror(number))


ErrorSpec = Union[int, Tuple[str, int], BaseException]


def _raise(default_operation: str, spec: ErrorSpec) -> None:
    """An errno (operation defaults to the step), an (operation, errno) pair, or an exception."""
    if isinstance(spec, BaseException):
        raise spec
    if isinstance(spec, tuple):
        operation, number = spec
        raise kvm_error(operation, number)
    raise kvm_error(default_operation, int(spec))


class _CapabilityAnswers:
    """KVM_CHECK_EXTENSION as the kernel answers it: 0 for anything it does not know."""

    def __init__(self, backend: FakeKvmBackend, scope: str) -> None:
        self._backend = backend
        self._scope = scope

    def check_extension(self, number: int) -> int:
        backend = self._backend
        backend.calls.append((self._scope, "KVM_CHECK_EXTENSION", number))
        name = backend.names_by_number.get(number)
        if name is not None and name in backend.capability_errnos:
            _raise("KVM_CHECK_EXTENSION", backend.capability_errnos[name])
        if number in backend.capability_errnos_by_number:
            _raise("KVM_CHECK_EXTENSION", backend.capability_errnos_by_number[number])
        if name is not None and name in backend.capabilities:
            return backend.capabilities[name]
        return backend.capabilities_by_number.get(number, 0)


class FakeVm:
    def __init__(self, backend: FakeKvmBackend) -> None:
        self._backend = backend
        self._answers = _CapabilityAnswers(backend, "vm")
        self.closed = False
        self.close_calls = 0
        self.guest_runs = 0

    def check_extension(self, number: int) -> int:
        if self.closed:
            raise kvm_error("KVM_CHECK_EXTENSION", errno_module.EBADF)
        return self._answers.check_extension(number)

    def run_smoke_guest(self, *args: Any, **kwargs: Any) -> GuestRun:
        backend = self._backend
        backend.calls.append(("vm", "run_smoke_guest"))
        if self.closed:
            raise kvm_error("KVM_SET_USER_MEMORY_REGION", errno_module.EBADF)
        self.guest_runs += 1
        if backend.guest_error is not None:
            _raise("KVM_CREATE_VCPU", backend.guest_error)
        return backend.guest

    def close(self) -> None:
        self.close_calls += 1
        self.closed = True
        self._backend.calls.append(("vm", "close"))

    def __enter__(self) -> FakeVm:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class FakeHandle:
    def __init__(self, backend: FakeKvmBackend, path: str) -> None:
        self._backend = backend
        self.path = path
        self._answers = _CapabilityAnswers(backend, "system")
        self.closed = False
        self.close_calls = 0

    def api_version(self) -> int:
        backend = self._backend
        backend.calls.append(("system", "KVM_GET_API_VERSION"))
        if self.closed:
            raise kvm_error("KVM_GET_API_VERSION", errno_module.EBADF)
        if backend.api_errno is not None:
            _raise("KVM_GET_API_VERSION", backend.api_errno)
        return backend.api_version

    def check_extension(self, number: int) -> int:
        if self.closed:
            raise kvm_error("KVM_CHECK_EXTENSION", errno_module.EBADF)
        return self._answers.check_extension(number)

    def vcpu_mmap_size(self) -> int:
        return 12288

    def create_vm(self) -> FakeVm:
        backend = self._backend
        backend.calls.append(("system", "KVM_CREATE_VM"))
        if self.closed:
            raise kvm_error("KVM_CREATE_VM", errno_module.EBADF)
        if backend.create_vm_errno is not None:
            _raise("KVM_CREATE_VM", backend.create_vm_errno)
        vm = FakeVm(backend)
        backend.vms.append(vm)
        return vm

    def close(self) -> None:
        self.close_calls += 1
        self.closed = True
        self._backend.calls.append(("system", "close"))

    def __enter__(self) -> FakeHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class FakeKvmBackend:
    """The KVM backend with every step scripted."""

    def __init__(
        self,
        *,
        open_errno: Optional[ErrorSpec] = None,
        api_version: int = 12,
        api_errno: Optional[ErrorSpec] = None,
        capabilities: Optional[Mapping[str, int]] = None,
        capabilities_by_number: Optional[Mapping[int, int]] = None,
        capability_errnos: Optional[Mapping[str, ErrorSpec]] = None,
        capability_errnos_by_number: Optional[Mapping[int, ErrorSpec]] = None,
        create_vm_errno: Optional[ErrorSpec] = None,
        guest: Optional[GuestRun] = None,
        guest_error: Optional[ErrorSpec] = None,
        extra_capability_names: Optional[Mapping[int, str]] = None,
    ) -> None:
        self.open_errno = open_errno
        self.api_version = api_version
        self.api_errno = api_errno
        # Values override the defaults; a value of 0 is "absent", as KVM says it.
        self.capabilities: Dict[str, int] = dict(DEFAULT_CAPABILITY_VALUES)
        self.capabilities.update(capabilities or {})
        self.capabilities_by_number: Dict[int, int] = dict(capabilities_by_number or {})
        self.capability_errnos: Dict[str, ErrorSpec] = dict(capability_errnos or {})
        self.capability_errnos_by_number: Dict[int, ErrorSpec] = dict(capability_errnos_by_number or {})
        self.names_by_number: Dict[int, str] = {number: name for name, number in CAPABILITY_NUMBERS.items()}
        self.names_by_number.update(extra_capability_names or {})
        self.create_vm_errno = create_vm_errno
        self.guest = guest if guest is not None else guest_ok()
        self.guest_error = guest_error
        self.calls: List[tuple] = []
        self.opened_paths: List[str] = []
        self.handles: List[FakeHandle] = []
        self.vms: List[FakeVm] = []

    def open_device(self, path: str = "/dev/kvm") -> FakeHandle:
        self.calls.append(("open", path))
        self.opened_paths.append(path)
        if self.open_errno is not None:
            _raise("open", self.open_errno)
        handle = FakeHandle(self, path)
        self.handles.append(handle)
        return handle

    # -- what tests assert -------------------------------------------------
    @property
    def everything_closed(self) -> bool:
        return all(h.closed for h in self.handles) and all(vm.closed for vm in self.vms)

    def operations(self) -> List[str]:
        return [call[1] if len(call) > 1 and call[0] in ("system", "vm") else call[0] for call in self.calls]


class FakeLiveSystem:
    """The LiveSystem duck type with everything configurable.

    - `kvm`: a FakeKvmBackend (a working one by default)
    - `uid`/`euid`/`gid`/`groups`/`username`: the process credentials
    - `acl`: what has_acl() answers for /dev/kvm (True, False or None)
    - `msr`: an int (every register reads it), a {register: value} dict, or
      an errno / OSError to raise; registers missing from a dict raise EIO
    - `disk`: (total_bytes, free_bytes), or an errno / OSError to raise
    - `cpuid`: the CPUID 0x40000000 signature (None on bare metal)
    - `container_env`: `container=` of PID 1's environment (None: unset or unreadable)
    - `capabilities`: the (name, number) pairs to query; default the real table
    """

    def __init__(
        self,
        kvm: Optional[FakeKvmBackend] = None,
        *,
        uid: int = 1000,
        euid: Optional[int] = None,
        gid: int = 1000,
        groups: Iterable[int] = (1000,),
        username: Optional[str] = "alice",
        acl: Optional[bool] = False,
        msr: Union[None, int, Mapping[int, int], BaseException] = None,
        msr_errno: Optional[int] = None,
        msr_path: str = MSR_PATH,
        disk: Union[Tuple[int, int], int, BaseException] = (1000 * GIB, 500 * GIB),
        cpuid: Optional[str] = None,
        container_env: Optional[str] = None,
        capabilities: Optional[Sequence[Tuple[str, int]]] = None,
    ) -> None:
        self._kvm = kvm if kvm is not None else FakeKvmBackend()
        self.uid = uid
        self.euid = uid if euid is None else euid
        self.gid = gid
        self.groups = tuple(sorted(set(groups)))
        self.username = username
        self.acl = acl
        self.msr = msr
        self.msr_errno = msr_errno
        self.msr_path = msr_path
        self.disk = disk
        self.cpuid = cpuid
        self.container_env = container_env
        self._capabilities = tuple(capabilities) if capabilities is not None else tuple(
            (cap.name, cap.number) for cap in CAPABILITIES
        )
        self.calls: List[tuple] = []

    @classmethod
    def root(cls, kvm: Optional[FakeKvmBackend] = None, **kwargs: Any) -> FakeLiveSystem:
        kwargs.setdefault("username", "root")
        return cls(kvm, uid=0, gid=0, groups=(0,), **kwargs)

    @property
    def kvm(self) -> FakeKvmBackend:
        return self._kvm

    def capabilities(self) -> Tuple[Tuple[str, int], ...]:
        self.calls.append(("capabilities",))
        return self._capabilities

    def credentials(self) -> Credentials:
        self.calls.append(("credentials",))
        return Credentials(self.uid, self.euid, self.gid, self.groups, self.username)

    def has_acl(self, path: str) -> Optional[bool]:
        self.calls.append(("has_acl", path))
        return self.acl

    def read_msr(self, register: int, cpu: int = 0) -> int:
        self.calls.append(("read_msr", register, cpu))
        if self.msr_errno is not None:
            raise OSError(self.msr_errno, os.strerror(self.msr_errno))
        value = self.msr
        if isinstance(value, BaseException):
            raise value
        if isinstance(value, Mapping):
            if register not in value:
                raise OSError(errno_module.EIO, os.strerror(errno_module.EIO))
            return int(value[register])
        if value is None:
            raise OSError(errno_module.ENOENT, os.strerror(errno_module.ENOENT))
        return int(value)

    def cpuid_signature(self) -> Optional[str]:
        self.calls.append(("cpuid_signature",))
        return self.cpuid

    def pid1_container_env(self) -> Optional[str]:
        self.calls.append(("pid1_container_env",))
        return self.container_env

    def disk_usage(self, path: str) -> Tuple[str, int, int]:
        """(measured path, total, free); `disk` is (total, free) measured at path, or (measured, total, free)."""
        self.calls.append(("disk_usage", path))
        disk = self.disk
        if isinstance(disk, BaseException):
            raise disk
        if isinstance(disk, int):
            raise OSError(disk, os.strerror(disk))
        return disk if len(disk) == 3 else (path, *disk)
