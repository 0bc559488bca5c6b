"""/proc/cpuinfo: vendor, model, logical CPUs, flags of every CPU, `vmx flags`.

Every processor block is read, not only the first: firmware can leave VT-x
off on some CPUs, and the kernel then hides `vmx` on those alone.
"""

from typing import Dict, FrozenSet, List, NamedTuple, Optional, Tuple

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
    blocks, garbage = _blocks(text)
    if not blocks:
        return CpuInfo(error="no `key : value` lines (empty or not a cpuinfo file)", garbage_lines=garbage)
    first = _first_values(blocks)
    flags_per_block = [_flags_of(block) for block in blocks]
    flag_sets = [flags for flags in flags_per_block if flags is not None]
    vmx_features = [frozenset(b["vmx flags"].split()) for b in blocks if "vmx flags" in b]
    union = frozenset().union(*flag_sets) if flag_sets else frozenset()
    return CpuInfo(
        vendor=_vendor(first),
        model=_model(first),
        logical_cpus=_logical_cpus(blocks, first),
        flags=union,
        flag_lines=len(flag_sets),
        vmx_cpus=sum(1 for flags in flag_sets if "vmx" in flags),
        svm_cpus=sum(1 for flags in flag_sets if "svm" in flags),
        vmx_features=frozenset().union(*vmx_features) if vmx_features else None,
        arch_hint=_arch_hint(first, union),
        garbage_lines=garbage,
    )


def _blocks(text: str) -> Tuple[List[Dict[str, str]], int]:
    """Processor blocks as dicts of lower-case keys; blank lines separate them."""
    blocks: List[Dict[str, str]] = []
    current: Dict[str, str] = {}
    garbage = 0
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            garbage += 1
            continue
        key = key.strip().lower()
        if key in current and key == "processor":  # a block boundary without the blank line
            blocks.append(current)
            current = {}
        current.setdefault(key, value.strip())
    if current:
        blocks.append(current)
    return blocks, garbage


def _first_values(blocks: List[Dict[str, str]]) -> Dict[str, str]:
    """The first value seen for every key (s390 puts shared keys in a header block)."""
    merged: Dict[str, str] = {}
    for block in blocks:
        for key, value in block.items():
            merged.setdefault(key, value)
    return merged


def _flags_of(block: Dict[str, str]) -> Optional[FrozenSet[str]]:
    for key in ("flags", "features"):
        if key in block:
            return frozenset(block[key].split())
    return None


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


def _logical_cpus(blocks: List[Dict[str, str]], first: Dict[str, str]) -> Optional[int]:
    count = sum(1 for block in blocks if "processor" in block)
    if count:
        return count
    declared = first.get("# processors", "")  # s390
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
