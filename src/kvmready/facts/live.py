"""Live-only observations: what opening /dev/kvm and running a guest show.

Everything here exists only on the machine kvmready runs on.  A `LiveSystem`
supplies the actions (the real one below, fakes in the tests); `probe`
turns them into `LiveFacts`, plain data that a snapshot can store and a
later analysis can replay (then marked with the capture time).
"""

import errno as errno_module
import os
import time
from types import MappingProxyType
from typing import Any, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

from kvmready import cpuvendors
from kvmready.kvmabi import KVM_API_VERSION, KVM_DEVICE

# MSRs that say whether firmware left hardware virtualization on.
IA32_FEATURE_CONTROL = 0x3A
AMD_VM_CR = 0xC0010114
MSR_PATH = "/dev/cpu/{cpu}/msr"
CPUID_PATH = "/dev/cpu/0/cpuid"
CPUID_HYPERVISOR_BIT = 1 << 31  # leaf 1, ECX


class Failure(NamedTuple):
    """One failed operation: which one, errno and the OS message."""

    operation: str
    errno: int
    message: str

    @property
    def errno_name(self) -> str:
        return errno_module.errorcode.get(self.errno, str(self.errno))

    def to_dict(self) -> dict:
        return {"operation": self.operation, "errno": self.errno, "errno_name": self.errno_name, "message": self.message}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Failure":
        return cls(str(data["operation"]), int(data["errno"]), str(data.get("message", "")))

    @classmethod
    def from_error(cls, operation: str, error: BaseException) -> "Failure":
        number = getattr(error, "errno", None) or 0
        message = getattr(error, "strerror", None) or str(error)
        return cls(getattr(error, "operation", operation), int(number), str(message))

    def __str__(self) -> str:
        return f"{self.operation}: {self.message} ({self.errno_name})"


class GuestResult(NamedTuple):
    """kvmapi.GuestRun as stored data, with the size of its timed loop.

    `stages` and `stopped_in` are empty and None in snapshots taken before
    the smoke guest walked to long mode; `loop_ns` is None where the loop
    did not run, and `loop_instructions` says how many instructions it was.
    """

    ok: bool
    exits: Tuple[str, ...]
    port: Optional[int]
    byte: Optional[int]
    runs: int
    duration_ns: int
    problem: Optional[str]
    stages: Tuple[str, ...] = ()
    stopped_in: Optional[str] = None
    loop_ns: Optional[int] = None
    loop_instructions: Optional[int] = None

    @property
    def instructions_per_second(self) -> Optional[float]:
        """How fast the guest's loop ran, where it ran."""
        if not self.loop_ns or not self.loop_instructions:
            return None
        return self.loop_instructions * 1e9 / self.loop_ns

    def to_dict(self) -> Dict[str, Any]:
        return {
            "ok": self.ok,
            "exits": list(self.exits),
            "port": self.port,
            "byte": self.byte,
            "runs": self.runs,
            "duration_ns": self.duration_ns,
            "problem": self.problem,
            "stages": list(self.stages),
            "stopped_in": self.stopped_in,
            "loop_ns": self.loop_ns,
            "loop_instructions": self.loop_instructions,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GuestResult":
        result = cls._load(data)
        if result.ok and not (isinstance(result.byte, int) and 0 <= result.byte <= 0xFF and isinstance(result.port, int) and 0 <= result.port <= 0xFFFF):
            raise ValueError("a guest that ran ok needs the byte (0-255) and port (0-65535) it wrote")
        return result

    @classmethod
    def _load(cls, data: Mapping[str, Any]) -> "GuestResult":
        return cls(
            ok=bool(data["ok"]),
            exits=tuple(str(name) for name in data.get("exits", ())),
            port=_optional_int(data.get("port")),
            byte=_optional_int(data.get("byte")),
            runs=int(data.get("runs", 0)),
            duration_ns=int(data.get("duration_ns", 0)),
            problem=data.get("problem"),
            stages=tuple(str(name) for name in data.get("stages") or ()),
            stopped_in=_optional_str(data.get("stopped_in")),
            loop_ns=_optional_int(data.get("loop_ns")),
            loop_instructions=_optional_int(data.get("loop_instructions")),
        )


class KvmProbe(NamedTuple):
    """The KVM steps in order; a step that failed stops the ones after it."""

    device: str = KVM_DEVICE
    open_error: Optional[Failure] = None
    api_version: Optional[int] = None
    api_error: Optional[Failure] = None
    capabilities: Mapping[str, int] = MappingProxyType({})  # name -> KVM_CHECK_EXTENSION value
    capability_numbers: Mapping[str, int] = MappingProxyType({})  # name -> number
    capability_errors: Mapping[str, Failure] = MappingProxyType({})
    capability_scope: Optional[str] = None  # "vm" or "system": which fd answered
    vm_created: bool = False
    create_vm_error: Optional[Failure] = None
    guest: Optional[GuestResult] = None
    guest_error: Optional[Failure] = None
    duration_ns: int = 0

    @property
    def opened(self) -> bool:
        return self.open_error is None

    def to_dict(self) -> dict:
        return {
            "device": self.device,
            "open_error": _dump(self.open_error),
            "api_version": self.api_version,
            "api_error": _dump(self.api_error),
            "capabilities": dict(self.capabilities),
            "capability_numbers": dict(self.capability_numbers),
            "capability_errors": {name: f.to_dict() for name, f in self.capability_errors.items()},
            "capability_scope": self.capability_scope,
            "vm_created": self.vm_created,
            "create_vm_error": _dump(self.create_vm_error),
            "guest": self.guest.to_dict() if self.guest else None,
            "guest_error": _dump(self.guest_error),
            "duration_ns": self.duration_ns,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "KvmProbe":
        probe = cls._load(data)
        if probe.open_error is None and probe.api_error is None and probe.api_version == KVM_API_VERSION:
            if not probe.vm_created and probe.create_vm_error is None:
                raise ValueError("the KVM probe neither created a VM nor says why not")
            if probe.vm_created and probe.guest is None and probe.guest_error is None:
                raise ValueError("the KVM probe created a VM but has no guest result")
        return probe

    @classmethod
    def _load(cls, data: Mapping[str, Any]) -> "KvmProbe":
        return cls(
            device=str(data.get("device", KVM_DEVICE)),
            open_error=_load(data.get("open_error")),
            api_version=_optional_int(data.get("api_version")),
            api_error=_load(data.get("api_error")),
            capabilities={str(k): int(v) for k, v in (data.get("capabilities") or {}).items()},
            capability_numbers={str(k): int(v) for k, v in (data.get("capability_numbers") or {}).items()},
            capability_errors={str(k): Failure.from_dict(v) for k, v in (data.get("capability_errors") or {}).items()},
            capability_scope=data.get("capability_scope"),
            vm_created=bool(data.get("vm_created")),
            create_vm_error=_load(data.get("create_vm_error")),
            guest=GuestResult.from_dict(data["guest"]) if data.get("guest") else None,
            guest_error=_load(data.get("guest_error")),
            duration_ns=int(data.get("duration_ns", 0)),
        )


class Credentials(NamedTuple):
    uid: int
    euid: int
    gid: int
    groups: Tuple[int, ...]  # supplementary groups of this process (the session's)
    username: Optional[str]

    def to_dict(self) -> dict:
        return {"uid": self.uid, "euid": self.euid, "gid": self.gid, "groups": list(self.groups), "username": self.username}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Credentials":
        return cls(
            uid=int(data["uid"]),
            euid=int(data.get("euid", data["uid"])),
            gid=int(data["gid"]),
            groups=tuple(int(g) for g in data.get("groups", ())),
            username=data.get("username"),
        )


class MsrReading(NamedTuple):
    register: int
    path: str
    value: Optional[int] = None
    error: Optional[Failure] = None
    skipped: Optional[str] = None  # why it was not attempted

    def to_dict(self) -> dict:
        return {
            "register": f"0x{self.register:X}",
            "path": self.path,
            "value": None if self.value is None else f"0x{self.value:X}",
            "error": _dump(self.error),
            "skipped": self.skipped,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MsrReading":
        value = data.get("value")
        return cls(
            register=int(str(data["register"]), 16),
            path=str(data.get("path", "")),
            value=None if value is None else int(str(value), 16),
            error=_load(data.get("error")),
            skipped=data.get("skipped"),
        )


class DiskUsage(NamedTuple):
    path: str
    total_bytes: Optional[int] = None
    free_bytes: Optional[int] = None
    measured_at: Optional[str] = None  # the nearest existing parent that was measured
    error: Optional[str] = None

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "measured_at": self.measured_at,
            "total_bytes": self.total_bytes,
            "free_bytes": self.free_bytes,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DiskUsage":
        return cls(
            path=str(data["path"]),
            total_bytes=_optional_int(data.get("total_bytes")),
            free_bytes=_optional_int(data.get("free_bytes")),
            measured_at=data.get("measured_at"),
            error=data.get("error"),
        )


class LiveFacts(NamedTuple):
    kvm: KvmProbe
    credentials: Credentials
    device_acl: Optional[bool] = None  # /dev/kvm carries a POSIX ACL
    msr: Optional[MsrReading] = None
    disk: Optional[DiskUsage] = None
    cpuid_signature: Optional[str] = None  # only in snapshots: the live run asks LiveSystem directly
    captured_at: Optional[str] = None  # set when replayed from a snapshot
    pid1_container_env: Optional[str] = None  # only in snapshots, like cpuid_signature

    def to_dict(self) -> dict:
        return {
            "kvm": self.kvm.to_dict(),
            "credentials": self.credentials.to_dict(),
            "device_acl": self.device_acl,
            "msr": self.msr.to_dict() if self.msr else None,
            "disk": self.disk.to_dict() if self.disk else None,
            "cpuid_signature": self.cpuid_signature,
            "pid1_container_env": self.pid1_container_env,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], captured_at: Optional[str] = None) -> "LiveFacts":
        return cls(
            kvm=KvmProbe.from_dict(data["kvm"]),
            credentials=Credentials.from_dict(data["credentials"]),
            device_acl=data.get("device_acl"),
            msr=MsrReading.from_dict(data["msr"]) if data.get("msr") else None,
            disk=DiskUsage.from_dict(data["disk"]) if data.get("disk") else None,
            cpuid_signature=_optional_str(data.get("cpuid_signature")),
            captured_at=captured_at,
            pid1_container_env=_optional_str(data.get("pid1_container_env")),
        )


class LiveSystem:
    """The real machine: KVM ioctls, process credentials, MSRs, disk space."""

    def __init__(self, kvm_backend: Any = None, msr_path: str = MSR_PATH) -> None:
        self._kvm_backend = kvm_backend
        self.msr_path = msr_path

    @property
    def kvm(self) -> Any:
        if self._kvm_backend is None:
            from kvmready.kvmapi import KvmBackend

            self._kvm_backend = KvmBackend()
        return self._kvm_backend

    def capabilities(self) -> Tuple[Tuple[str, int], ...]:
        from kvmready.kvmapi import CAPABILITIES

        return tuple((cap.name, cap.number) for cap in CAPABILITIES)

    def credentials(self) -> Credentials:
        uid = os.getuid()
        try:
            import pwd

            username: Optional[str] = pwd.getpwuid(uid).pw_name
        except (KeyError, ImportError):
            username = None
        return Credentials(uid, os.geteuid(), os.getgid(), tuple(sorted(set(os.getgroups()))), username)

    def has_acl(self, path: str) -> Optional[bool]:
        try:
            os.getxattr(path, "system.posix_acl_access")
            return True
        except OSError as error:
            if error.errno in (errno_module.ENODATA, errno_module.ENOTSUP):
                return False
            return None

    def read_msr(self, register: int, cpu: int = 0) -> int:
        fd = os.open(self.msr_path.format(cpu=cpu), os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(fd, 8, register)
        finally:
            os.close(fd)
        if len(data) != 8:
            raise OSError(errno_module.EIO, f"short MSR read ({len(data)} bytes)")
        return int.from_bytes(data, "little")

    def pid1_container_env(self) -> Optional[str]:
        """`container=` from PID 1's environment (systemd's container interface), or None.

        Only that one value leaves this method: the environment itself may
        hold secrets, and is never stored or reported.  Reading it needs the
        same user as PID 1, or root; elsewhere the answer is None.
        """
        try:
            with open("/proc/1/environ", "rb") as handle:
                data = handle.read(1024 * 1024)
        except OSError:
            return None
        for entry in data.split(b"\0"):
            if entry.startswith(b"container="):
                value = entry[len(b"container="):].decode("ascii", "replace")[:64]
                return value or None
        return None

    def cpuid_signature(self) -> Optional[str]:
        """The hypervisor's CPUID signature through the cpuid driver (root only), or None."""
        try:
            fd = os.open(CPUID_PATH, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            leaf1 = os.pread(fd, 16, 1)
            if len(leaf1) != 16 or not int.from_bytes(leaf1[8:12], "little") & CPUID_HYPERVISOR_BIT:
                return None  # bare metal: leaf 0x40000000 would be meaningless
            data = os.pread(fd, 16, 0x40000000)
        except OSError:
            return None
        finally:
            os.close(fd)
        text = data[4:16].decode("ascii", errors="replace").rstrip("\x00")
        return text or None

    def disk_usage(self, path: str) -> Tuple[str, int, int]:
        """(the path measured, total bytes, bytes free to users) for path or, while it does
        not exist yet, its nearest existing parent: where the VMs would land."""
        measured = os.path.abspath(path)
        while not os.path.exists(measured) and os.path.dirname(measured) != measured:
            measured = os.path.dirname(measured)
        if not os.path.isdir(measured):  # /etc/passwd, or a folder below it, can hold no VM
            raise NotADirectoryError(errno_module.ENOTDIR, os.strerror(errno_module.ENOTDIR), measured)
        # What psutil.disk_usage does, without its 8 ms import on every run.
        stats = os.statvfs(measured)
        return measured, stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize


def probe(
    system: Any,
    *,
    vendor: Optional[str],
    vm_dir: Optional[str],
    extra_capabilities: Tuple[Tuple[str, int], ...] = (),
    device: str = KVM_DEVICE,
) -> LiveFacts:
    """`extra_capabilities`: (name, number) pairs this kernel defines beyond the standard list (VMware's)."""
    credentials = system.credentials()
    return LiveFacts(
        kvm=probe_kvm(system, device, extra_capabilities),
        credentials=credentials,
        device_acl=system.has_acl(device),
        msr=probe_msr(system, vendor, credentials),
        disk=probe_disk(system, vm_dir) if vm_dir else None,
    )


def probe_kvm(system: Any, device: str = KVM_DEVICE, extra_capabilities: Tuple[Tuple[str, int], ...] = ()) -> KvmProbe:
    started = time.perf_counter_ns()
    steps: Dict[str, Any] = {"device": device}
    capabilities = tuple(system.capabilities()) + tuple(extra_capabilities)
    try:
        handle = system.kvm.open_device(device)
    except Exception as error:  # KvmError, or anything a broken backend raises
        steps["open_error"] = Failure.from_error("open", error)
        return KvmProbe(**steps, duration_ns=time.perf_counter_ns() - started)
    try:
        _run_steps(handle, capabilities, steps)
    finally:
        handle.close()
    return KvmProbe(**steps, duration_ns=time.perf_counter_ns() - started)


def _run_steps(handle: Any, capabilities: Sequence[Tuple[str, int]], steps: Dict[str, Any]) -> None:
    try:
        steps["api_version"] = handle.api_version()
    except Exception as error:
        steps["api_error"] = Failure.from_error("KVM_GET_API_VERSION", error)
        return
    if steps["api_version"] != KVM_API_VERSION:
        return  # the ioctl numbers below are only meaningful for API 12
    try:
        vm = handle.create_vm()
    except Exception as error:
        steps["create_vm_error"] = Failure.from_error("KVM_CREATE_VM", error)
        _query_capabilities(handle, capabilities, "system", steps)
        return
    try:
        steps["vm_created"] = True
        # The API documentation prefers asking the VM: some answers are per VM.
        _query_capabilities(vm, capabilities, "vm", steps)
        try:
            steps["guest"] = GuestResult(**_guest_fields(vm.run_smoke_guest()))
        except Exception as error:
            steps["guest_error"] = Failure.from_error("guest", error)
    finally:
        vm.close()


def _query_capabilities(target: Any, capabilities: Sequence[Tuple[str, int]], scope: str, steps: Dict[str, Any]) -> None:
    values: Dict[str, int] = {}
    numbers: Dict[str, int] = {}
    errors: Dict[str, Failure] = {}
    for name, number in capabilities:
        numbers[name] = number
        try:
            values[name] = int(target.check_extension(number))
        except Exception as error:
            errors[name] = Failure.from_error("KVM_CHECK_EXTENSION", error)
    steps.update(capabilities=values, capability_numbers=numbers, capability_errors=errors, capability_scope=scope)


def _guest_fields(run: Any) -> Dict[str, Any]:
    from kvmready.kvmapi import LOOP_INSTRUCTIONS

    loop_ns = getattr(run, "loop_ns", None)
    return {
        "ok": bool(run.ok),
        "exits": tuple(run.exits),
        "port": run.port,
        "byte": run.byte,
        "runs": int(run.runs),
        "duration_ns": int(run.duration_ns),
        "problem": run.problem,
        "stages": tuple(run.stages),
        "stopped_in": run.stopped_in,
        "loop_ns": None if loop_ns is None else int(loop_ns),
        "loop_instructions": LOOP_INSTRUCTIONS if loop_ns is not None else None,
    }


def msr_register(vendor: Optional[str]) -> Optional[int]:
    """The MSR where firmware leaves VT-x or AMD-V on or off, for this vendor's CPUs."""
    return {cpuvendors.VMX: IA32_FEATURE_CONTROL, cpuvendors.SVM: AMD_VM_CR}.get(cpuvendors.extension_of(vendor) or "")


def probe_msr(system: Any, vendor: Optional[str], credentials: Credentials) -> Optional[MsrReading]:
    register = msr_register(vendor)
    if register is None:
        return None
    path = system.msr_path.format(cpu=0)
    if credentials.euid != 0:
        return MsrReading(register, path, skipped="reading MSRs needs root")
    try:
        return MsrReading(register, path, value=system.read_msr(register))
    except OSError as error:
        return MsrReading(register, path, error=Failure.from_error("read MSR", error))


def probe_disk(system: Any, vm_dir: str) -> DiskUsage:
    path = os.path.abspath(os.path.expanduser(vm_dir))
    try:
        measured, total, free = system.disk_usage(path)
    except OSError as error:
        return DiskUsage(path, error=str(Failure.from_error("statvfs", error)))
    return DiskUsage(path, total, free, measured_at=measured)


def _dump(failure: Optional[Failure]) -> Optional[dict]:
    return failure.to_dict() if failure else None


def _load(data: Any) -> Optional[Failure]:
    return Failure.from_dict(data) if data else None


def _optional_str(value: Any) -> Optional[str]:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"expected text or null, got {type(value).__name__}")
    return value


def _optional_int(value: Any) -> Optional[int]:
    """A count, size, port or version from a snapshot: never negative."""
    if value is None:
        return None
    number = int(value)
    if number < 0:
        raise ValueError(f"expected a count or size, got {number}")
    return number
