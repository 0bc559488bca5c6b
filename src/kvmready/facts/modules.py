"""Kernel modules: loaded ones from /proc/modules, built-in ones from /sys/module.

`/proc/modules` is missing on monolithic kernels (or with `nomodule`), and it
never lists built-in code.  `/sys/module/<name>` exists for every loaded
module and for built-in code that has parameters; only loadable modules have
an `initstate` file there.
"""

from types import MappingProxyType
from typing import Dict, Mapping, NamedTuple, Optional, Tuple

from kvmready.host import Host, ReadError

PROC_MODULES = "/proc/modules"
SYS_MODULE = "/sys/module"
PROC_MODULES_LIMIT = 4 * 1024 * 1024

# The modules that provide KVM on top of `kvm` itself: hardware VT-x/AMD-V
# first, then paravirtual x86 (PVM) and POWER (HV, PR).
HARDWARE_KVM_MODULES = ("kvm_intel", "kvm_amd")
PARAVIRTUAL_KVM_MODULES = ("kvm_pvm",)  # KVM without VT-x/AMD-V: pagetable-based paravirtualisation
KVM_VENDOR_MODULES = HARDWARE_KVM_MODULES + PARAVIRTUAL_KVM_MODULES + ("kvm_hv", "kvm_pr")
# Without /proc/modules, /sys/module/<name>/initstate tells loaded from built in; kvmready reports it for these.
STATE_READ_FOR = ("kvm",) + KVM_VENDOR_MODULES
LISTED = "listed"  # in /sys/module (loaded or built in), its state not read


def module_name(name: str) -> str:
    """The kernel treats `-` and `_` alike in module names; sysfs shows `_`."""
    return name.strip().replace("-", "_")


class Module(NamedTuple):
    name: str
    state: str  # live, loading, unloading, builtin, or LISTED
    source: str  # PROC_MODULES or SYS_MODULE

    @property
    def builtin(self) -> bool:
        return self.state == "builtin"

    def to_dict(self) -> dict:
        return {"name": self.name, "state": self.state, "source": self.source}


class ModuleTable(NamedTuple):
    modules: Mapping[str, Module] = MappingProxyType({})
    proc_modules_error: Optional[str] = None
    sys_module_error: Optional[str] = None
    # The width of the load addresses in /proc/modules (the kernel pads pointers to 2 * sizeof(void *) hex
    # digits, zeros included when kptr_restrict hides them): 64 or 32, the kernel's word size; None if none.
    address_bits: Optional[int] = None
    address_line: Optional[str] = None  # the line that showed it

    @property
    def known(self) -> bool:
        """At least one source could be read, so an absent module is really absent."""
        return self.proc_modules_error is None or self.sys_module_error is None

    def get(self, name: str) -> Optional[Module]:
        return self.modules.get(module_name(name))

    def has(self, name: str) -> bool:
        return module_name(name) in self.modules

    def sources(self) -> dict:
        return {
            PROC_MODULES: self.proc_modules_error or "read",
            SYS_MODULE: self.sys_module_error or "read",
        }


def collect(host: Host) -> ModuleTable:
    modules: Dict[str, Module] = {}
    proc_error = sys_error = None
    address_bits = address_line = None
    try:
        for line in host.read_text(PROC_MODULES, PROC_MODULES_LIMIT).splitlines():
            fields = line.split()
            if len(fields) >= 5 and fields[0].replace("_", "").replace("-", "").isalnum():
                name = module_name(fields[0])
                modules[name] = Module(name, fields[4].lower(), PROC_MODULES)
                if address_bits is None and len(fields) >= 6:
                    address_bits = _address_bits(fields[5])
                    address_line = line.strip() if address_bits else None
    except ReadError as exc:
        proc_error = exc.reason
    try:
        entries = host.list_dir(SYS_MODULE)
    except ReadError as exc:
        sys_error = exc.reason
        entries = []
    for entry in entries:
        name = module_name(entry)
        if name in modules:
            continue
        # With /proc/modules read, what it does not list is built in.  Otherwise sysfs tells, one file per
        # module: read it only for the modules whose state a check reports (10,000 entries are common).
        if proc_error is None:
            state = "builtin"
        elif name in STATE_READ_FOR:
            state = _sys_state(host, entry)
        else:
            state = LISTED
        modules[name] = Module(name, state, SYS_MODULE)
    return ModuleTable(modules=modules, proc_modules_error=proc_error, sys_module_error=sys_error,
                       address_bits=address_bits, address_line=address_line)


def _address_bits(field: str) -> Optional[int]:
    """`0xffffffffc0780000` -> 64, `0xf8a5e000` -> 32: lib/vsprintf.c pads %p to 2 * sizeof(void *) digits."""
    digits = field[2:] if field.startswith("0x") else ""
    if not digits or any(ch not in "0123456789abcdefABCDEF" for ch in digits):
        return None
    return {16: 64, 8: 32}.get(len(digits))


def _sys_state(host: Host, entry: str) -> str:
    try:
        return host.read_value(f"{SYS_MODULE}/{entry}/initstate").lower() or "live"
    except ReadError:
        return "builtin"


class ModuleParams(NamedTuple):
    module: str
    values: Mapping[str, str] = MappingProxyType({})
    errors: Mapping[str, str] = MappingProxyType({})  # parameter -> why unreadable
    error: Optional[str] = None  # the parameters directory itself

    def get(self, name: str) -> Optional[str]:
        return self.values.get(name)

    def flag(self, name: str) -> Optional[bool]:
        """Y/N/1/0 as a bool: `kvm_amd` says `1` where `kvm_intel` says `Y`."""
        return parse_bool(self.values.get(name))

    def path(self, name: str) -> str:
        return f"{SYS_MODULE}/{self.module}/parameters/{name}"


def read_version(host: Host, module: str) -> Tuple[Optional[str], Optional[str]]:
    """(the version a loaded module declares in /sys/module/<name>/version, why none could be read)."""
    path = f"{SYS_MODULE}/{module_name(module)}/version"
    try:
        return host.read_value(path, 256) or None, None
    except ReadError as exc:
        return None, f"{path}: {exc.reason}"


def parse_bool(value: Optional[str]) -> Optional[bool]:
    if value is None:
        return None
    text = value.strip().lower()
    if text in ("y", "1", "yes", "on", "true"):
        return True
    if text in ("n", "0", "no", "off", "false"):
        return False
    return None


def read_params(host: Host, module: str) -> ModuleParams:
    module = module_name(module)
    directory = f"{SYS_MODULE}/{module}/parameters"
    try:
        names = host.list_dir(directory)
    except ReadError as exc:
        return ModuleParams(module, error=exc.reason)
    values: Dict[str, str] = {}
    errors: Dict[str, str] = {}
    for name in names:
        try:
            values[name] = host.read_value(f"{directory}/{name}")
        except ReadError as exc:  # some parameters are root-only (0400)
            errors[name] = exc.reason
    return ModuleParams(module, values, errors)
