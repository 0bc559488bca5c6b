"""/proc/cpuinfo: vendor, model, logical CPUs, flags of every CPU, `vmx flags`.

Every processor block is read, not only the first: firmware can leave VT-x
off on some CPUs, and the kernel then hides `vmx` on those alone.
"""

from typing import Dict, FrozenSet, Iterator, NamedTuple, Optional

from kvmready.host import Host, ReadError

CPUINFO = "/proc/cpuinfo"
# 16 MiB holds the cpuinfo of machines with thousands of CPUs.
CPUINFO_LIMIT = 16 * 1024 * 1024

X86_VENDORS = {
    "GenuineIntel": "Intel",
    "AuthenticAMD": "AMD",
    "HygonGenuine": "Hygon",
    "CentaurHauls": "Centaur",
    "  Shanghai  ": "Zhaoxin",
}
ARM_IMPLEMENTERS = {
    "0x41": "ARM",
    "0x42": "Broadcom",
    "0x43": "Cavium",
    "0x46": "Fujitsu",
    "0x48": "HiSilicon",
    "0x4e": "NVIDIA",
    "0x50": "APM",
    "0x51": "Qualcomm",
    "0x61": "Apple",
    "0x6d": "Microsoft",
    "0xc0": "Ampere",
}


class CpuInfo(NamedTuple):
    error: Optional[str] = None  # why /proc/cpuinfo could not be read
    vendor: Optional[str] = None  # vendor_id as the kernel prints it, or the ARM implementer's name
    model: Optional[str] = None
    logical_cpus: Optional[int] = None
    flags: FrozenSet[str] = frozenset()  # union of every flags/features line
    flag_lines: int = 0  # processor blocks that carry a flags/features line
    vmx_cpus: int = 0  # blocks whose flags include vmx
    svm_cpus: int = 0
    vmx_features: Optional[FrozenSet[str]] = None  # union of `vmx flags` lines; None when absent
    arch_hint: Optional[str] = None  # the architecture the format gives away
    garbage_lines: int = 0  # lines that were not `key : value`

    @property
    def readable(self) -> bool:
        return self.error is None

    @property
    def virtualization(self) -> Optional[str]:
        """The hardware virtualization extension the kernel shows, if any."""
        if self.vmx_cpus:
            return "vt-x"
        if self.svm_cpus:
            return "amd-v"
        if self.arch_hint == "s390x" and "sie" in self.flags:
            return "sie"
        return None

    @property
    def vendor_name(self) -> Optional[str]:
        return X86_VENDORS.get(self.vendor or "", self.vendor)

    def evidence(self) -> dict:
        data: Dict[str, object] = {"source": CPUINFO}
        if self.error:
            data["error"] = self.error
            return data
        data.update(
            vendor=self.vendor,
            logical_cpus=self.logical_cpus,
            cpus_with_flags=self.flag_lines,
            cpus_with_vmx=self.vmx_cpus,
            cpus_with_svm=self.svm_cpus,
            hypervisor_flag="hypervisor" in self.flags,
        )
        return data


def collect(host: Host) -> CpuInfo:
    try:
        text = host.read_text(CPUINFO, CPUINFO_LIMIT)
    except ReadError as error:
        return CpuInfo(error=error.reason)
    return parse(text)


def parse(text: str) -> CpuInfo:
    """One pass over the lines; identical flag lines (every CPU of a machine, usually) share one set."""
    scan = _Scan()
    for line in _each_line(text):
        scan.feed(line)
    scan.end_block()
    first = scan.first
    if not first:
        return CpuInfo(error="no `key : value` lines (empty or not a cpuinfo file)", garbage_lines=scan.garbage)
    union = frozenset().union(*scan.flag_sets.values()) if scan.flag_sets else frozenset()
    return CpuInfo(
        vendor=_vendor(first),
        model=_model(first),
        logical_cpus=scan.processors or _declared_cpus(first),
        flags=union,
        flag_lines=scan.flag_lines,
        vmx_cpus=scan.vmx_cpus,
        svm_cpus=scan.svm_cpus,
        vmx_features=frozenset().union(*scan.vmx_sets.values()) if scan.vmx_sets else None,
        arch_hint=_arch_hint(first, union),
        garbage_lines=scan.garbage,
    )


def _each_line(text: str) -> Iterator[str]:
    """Lines one at a time: a 4096-CPU cpuinfo is 7 MB, and a list of its lines would double it."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        if end < 0:
            end = len(text)
        yield text[start:end]
        start = end + 1


class _Scan:
    """The running state of one pass: blocks (blank lines, or a repeated `processor`, separate them)."""

    def __init__(self) -> None:
        self.first: Dict[str, str] = {}  # the first value seen for every key (s390 puts shared keys in a header block)
        self.flag_sets: Dict[str, FrozenSet[str]] = {}  # flags line -> its set, once per distinct line
        self.vmx_sets: Dict[str, FrozenSet[str]] = {}
        self.processors = self.flag_lines = self.vmx_cpus = self.svm_cpus = self.garbage = 0
        self._block: Dict[str, str] = {}
        self._keys: Dict[str, str] = {}

    def feed(self, line: str) -> None:
        colon = line.find(":")
        if colon < 0:
            if line.strip():
                self.garbage += 1
            else:
                self.end_block()
            return
        raw = line[:colon]
        key = self._keys.get(raw)
        if key is None:  # each spelling of a key is normalised once, not once per CPU
            key = self._keys[raw] = raw.strip().lower()
        if not key:
            self.garbage += 1
            return
        if key in _BLOCK_KEYS:
            if key == "processor" and key in self._block:  # a block boundary without the blank line
                self.end_block()
            self._block.setdefault(key, line[colon + 1 :].strip())
        if key not in self.first:
            self.first[key] = line[colon + 1 :].strip()

    def end_block(self) -> None:
        block = self._block
        if not block:
            return
        self._block = {}
        if "processor" in block:
            self.processors += 1
        line = block.get("flags", block.get("features"))
        if line is not None:
            flags = self.flag_sets.get(line)
            if flags is None:
                flags = self.flag_sets[line] = frozenset(line.split())
            self.flag_lines += 1
            self.vmx_cpus += "vmx" in flags
            self.svm_cpus += "svm" in flags
        vmx_line = block.get("vmx flags")
        if vmx_line is not None and vmx_line not in self.vmx_sets:
            self.vmx_sets[vmx_line] = frozenset(vmx_line.split())


# The per-CPU keys a block keeps; everything else only counts for `first`.
_BLOCK_KEYS = frozenset(("processor", "flags", "features", "vmx flags"))


def _vendor(first: Dict[str, str]) -> Optional[str]:
    if "vendor_id" in first:
        return first["vendor_id"] or None
    implementer = first.get("cpu implementer", "").lower()
    if implementer:
        return ARM_IMPLEMENTERS.get(implementer, f"ARM implementer {implementer}")
    if "mvendorid" in first:
        return first["mvendorid"]
    if first.get("cpu", "").upper().startswith("POWER"):
        return "IBM"
    return None


def _model(first: Dict[str, str]) -> Optional[str]:
    for key in ("model name", "cpu model", "cpu", "uarch", "hardware"):
        value = first.get(key, "").strip()
        if value and value != "-":
            return value
    return None


def _declared_cpus(first: Dict[str, str]) -> Optional[int]:
    declared = first.get("# processors", "")  # s390 declares its count instead of a block per CPU
    return int(declared) if declared.isdecimal() else None


def _arch_hint(first: Dict[str, str], flags: FrozenSet[str]) -> Optional[str]:
    vendor = first.get("vendor_id", "")
    if vendor == "IBM/S390" or "bogomips per cpu" in first:
        return "s390x"
    if vendor in X86_VENDORS or ("flags" in first and "fpu" in flags):
        return "x86_64" if "lm" in flags else "i686"
    if "cpu implementer" in first:
        return "aarch64" if first.get("cpu architecture", "").strip() in ("8", "AArch64") else "armv7l"
    if first.get("isa", "").startswith("rv64"):
        return "riscv64"
    if first.get("cpu", "").upper().startswith("POWER") or "platform" in first:
        return "ppc64le"
    return None
