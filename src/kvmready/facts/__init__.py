"""Facts: everything kvmready knows about a host, each source parsed once.

Facts are computed on first use and then kept, so `--only kvm.device` reads
only what that check needs.  A parser that crashes keeps its exception, and
every check that needs that fact reports `error` with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple, TypeVar

from kvmready import cpuvendors
from kvmready.facts import (
    accounts,
    container,
    cpuinfo,
    devices,
    firmware,
    hypervisor,
    kconfig,
    kernel,
    memory,
    modules,
    osinfo,
)
from kvmready.facts.live import LiveFacts
from kvmready.host import Host, ReadError

if TYPE_CHECKING:
    from kvmready.facts.accounts import GroupTable
    from kvmready.facts.container import ContainerInfo
    from kvmready.facts.cpuinfo import CpuInfo
    from kvmready.facts.devices import DeviceFacts
    from kvmready.facts.firmware import FirmwareInfo
    from kvmready.facts.hypervisor import HypervisorInfo
    from kvmready.facts.kconfig import KernelConfig
    from kvmready.facts.kernel import ArchInfo, KernelInfo
    from kvmready.facts.memory import MemoryInfo
    from kvmready.facts.modules import ModuleParams, ModuleTable
    from kvmready.facts.osinfo import OsInfo

HOSTNAME = "/proc/sys/kernel/hostname"

T = TypeVar("T")


def safe(compute: Callable[[], T]) -> Optional[T]:
    """The value, or None when computing it raised: for facts that only add detail."""
    try:
        return compute()
    except Exception:
        return None


class Facts:
    def __init__(
        self,
        host: Host,
        live_system: Any = None,
        captured_live: Optional[LiveFacts] = None,
        vm_dir: Optional[str] = None,
        offline_reason: Optional[str] = None,
    ) -> None:
        self.host = host
        self.live_system = live_system
        self.captured_live = captured_live
        self.vm_dir = vm_dir
        self._offline_reason = offline_reason
        self._memo: Dict[str, Tuple[bool, Any]] = {}

    def _get(self, key: str, compute: Callable[[], T]) -> T:
        if key not in self._memo:
            try:
                self._memo[key] = (True, compute())
            except Exception as error:  # kept, so every user of this fact sees the same error
                self._memo[key] = (False, error)
        ok, value = self._memo[key]
        if not ok:
            raise value
        result: T = value
        return result

    # -- static facts, from the host's files --------------------------------
    @property
    def cpu(self) -> CpuInfo:
        return self._get("cpu", lambda: cpuinfo.collect(self.host))

    @property
    def kernel(self) -> KernelInfo:
        return self._get("kernel", lambda: kernel.collect(self.host))

    @property
    def kernel_config(self) -> KernelConfig:
        return self._get("kconfig", lambda: kconfig.collect(self.host, safe(lambda: self.kernel.release)))

    @property
    def arch(self) -> ArchInfo:
        def module_bits() -> Optional[Tuple[int, str]]:
            table = safe(lambda: self.modules)
            if table is None or table.address_bits is None:
                return None
            return table.address_bits, table.address_line or ""

        def compute() -> ArchInfo:
            return kernel.detect_arch(
                self.host,
                safe(lambda: self.cpu.arch),
                safe(lambda: self.kernel.release),
                module_bits=module_bits,
                highmem=lambda: bool(safe(lambda: self.memory.highmem)),
            )

        return self._get("arch", compute)

    @property
    def modules(self) -> ModuleTable:
        return self._get("modules", lambda: modules.collect(self.host))

    def module_params(self, name: str) -> ModuleParams:
        return self._get(f"params:{name}", lambda: modules.read_params(self.host, name))

    def module_version(self, name: str) -> Tuple[Optional[str], Optional[str]]:
        """(version, why unknown) of a loaded module, from /sys/module/<name>/version."""
        return self._get(f"version:{name}", lambda: modules.read_version(self.host, name))

    @property
    def devices(self) -> DeviceFacts:
        return self._get("devices", lambda: devices.collect(self.host))

    @property
    def memory(self) -> MemoryInfo:
        return self._get("memory", lambda: memory.collect(self.host))

    @property
    def os(self) -> OsInfo:
        return self._get("os", lambda: osinfo.collect(self.host))

    @property
    def hypervisor(self) -> HypervisorInfo:
        flag = safe(lambda: "hypervisor" in self.cpu.flags) or False
        cpu = safe(lambda: self.cpu)
        return self._get("hypervisor", lambda: hypervisor.collect(self.host, flag, self.cpuid_signature, cpu=cpu))

    @property
    def cpuid_signature(self) -> Optional[str]:
        """CPUID leaf 0x40000000 of the machine itself (live or captured); None when unknown."""
        if self.captured_live is not None:
            return self.captured_live.cpuid_signature
        system = self.live_system
        if system is None:
            return None

        def ask() -> Optional[str]:
            signature: Optional[str] = system.cpuid_signature()
            return signature

        return self._get("cpuid", ask)

    @property
    def firmware(self) -> FirmwareInfo:
        return self._get("firmware", lambda: firmware.collect(self.host))

    @property
    def container(self) -> ContainerInfo:
        return self._get("container", lambda: container.collect(self.host, self.pid1_container_env))

    @property
    def pid1_container_env(self) -> Optional[str]:
        """`container=` of PID 1's environment (live or captured); None when unknown or unset."""
        if self.captured_live is not None:
            return self.captured_live.pid1_container_env
        system = self.live_system
        if system is None:
            return None

        def ask() -> Optional[str]:
            value: Optional[str] = system.pid1_container_env()
            return value

        return self._get("pid1_container_env", ask)

    @property
    def groups(self) -> GroupTable:
        return self._get("groups", lambda: accounts.collect(self.host))

    @property
    def hostname(self) -> Optional[str]:
        def compute() -> Optional[str]:
            try:
                return self.host.read_value(HOSTNAME) or None
            except ReadError:
                return None

        return self._get("hostname", compute)

    @property
    def kvm_module(self) -> Optional[str]:
        """The module that provides KVM: the vendor module if any, else `kvm` itself.

        A kernel may build in both kvm_intel and kvm_amd (/sys/module lists each, whatever the CPU): the one for
        this CPU's vendor is the one that provides KVM; the other one's initialisation failed on this CPU.
        """
        table = self.modules
        present = [name for name in modules.KVM_VENDOR_MODULES if table.has(name)]
        own = cpuvendors.KVM_MODULE_FOR.get(cpuvendors.extension_of(safe(lambda: self.cpu.vendor)) or "")
        if own:
            present = [name for name in present if name == own or name not in modules.HARDWARE_KVM_MODULES]
        if present:
            return own if own in present else present[0]
        return "kvm" if table.has("kvm") else None

    # -- live facts -----------------------------------------------------------
    @property
    def is_live(self) -> bool:
        return self.live_system is not None

    @property
    def live(self) -> Optional[LiveFacts]:
        """Observed now (live), replayed (snapshot), or None (offline tree)."""
        if self.captured_live is not None:
            return self.captured_live
        if self.live_system is None:
            return None

        def compute() -> LiveFacts:
            from kvmready.facts import live
            from kvmready.vmware_caps import capabilities_for

            vendor = safe(lambda: self.cpu.vendor)
            vmware = capabilities_for(safe(lambda: self.kernel.version))
            extra = tuple((cap.name, cap.number) for cap in vmware)
            return live.probe(self.live_system, vendor=vendor, vm_dir=self.vm_dir, extra_capabilities=extra)

        return self._get("live", compute)

    def require_live(self) -> LiveFacts:
        """The live facts, for the checks that run only where there are some (the runner skips them elsewhere)."""
        live = self.live
        if live is None:
            raise RuntimeError(f"no live facts here: {self.offline_reason}")
        return live

    @property
    def dev_uncaptured(self) -> bool:
        """A --root tree without /dev: device nodes are unknown, not missing."""
        return not self.is_live and self.captured_live is None and not self.devices.dev_present

    @property
    def offline_reason(self) -> str:
        return self._offline_reason or "live probes run only on the machine itself, not on a --root tree"
