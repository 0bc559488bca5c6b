"""/proc/cpuinfo: vendor, model, logical CPUs, flags of every CPU, `vmx flags`, the layout's architecture.

Every processor block is read, not only the first: firmware can leave VT-x
off on some CPUs, and the kernel then hides `vmx` on those alone.

Each architecture's kernel writes its own cpuinfo layout, so the layout
names the family (`arch : IA-64`, `type : sun4v`, `isa : rv64imafdc` ...).
Where the kernel prints something that depends on how it was built, the
layout also tells the kernel's word size (see `_arch`); what the CPU could
do (x86's `lm`, MIPS's `mips64r2`) never does: a 64-bit-capable CPU often
runs a 32-bit kernel.
"""

import re
from types import MappingProxyType
from typing import Callable, Dict, FrozenSet, Mapping, NamedTuple, Optional, Tuple

from kvmready.cpuvendors import X86_VENDORS
from kvmready.host import Host, ReadError
from kvmready.text import each_line

CPUINFO = "/proc/cpuinfo"
# 16 MiB holds the cpuinfo of machines with thousands of CPUs.
CPUINFO_LIMIT = 16 * 1024 * 1024

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


class CpuArch(NamedTuple):
    """What the cpuinfo layout, which the kernel writes, says about the architecture."""

    family: Optional[str] = None  # x86, arm, powerpc, s390, sparc, mips, loongarch, riscv, ia64, alpha, parisc
    bits: Optional[int] = None  # the running kernel's word size (31 for s390's ESA mode), when the layout tells
    machine: Optional[str] = None  # the kernel's machine name (`uname -m`), when the layout tells
    lines: Tuple[str, ...] = ()  # the cpuinfo lines that decided, as the kernel printed them
    reason: str = ""  # how those lines decide
    not_x86: bool = False  # readable, but with no x86 signature: not x86, even when the family is not recognised

    def to_dict(self) -> dict:
        return {"family": self.family, "bits": self.bits, "machine": self.machine, "lines": list(self.lines), "reason": self.reason}


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
    arch: CpuArch = CpuArch()  # the architecture the layout gives away
    garbage_lines: int = 0  # lines that were not `key : value`
    first_lines: Mapping[str, str] = MappingProxyType({})  # normalised key -> its first line, as printed

    def line(self, key: str) -> Optional[str]:
        """The first line of this key (`model name`, `platform` ...), as the kernel printed it."""
        return self.first_lines.get(key)

    def value(self, key: str) -> Optional[str]:
        line = self.first_lines.get(key)
        return line.partition(":")[2].strip() if line is not None else None

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
        if self.arch.family == "s390" and "sie" in self.flags:
            return "sie"
        return None

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
    for line in each_line(text):
        scan.feed(line)
    scan.end_block()
    first = scan.first
    if not first:
        return CpuInfo(error="no `key : value` lines (empty or not a cpuinfo file)", garbage_lines=scan.garbage)
    union = frozenset().union(*scan.flag_sets.values()) if scan.flag_sets else frozenset()
    return CpuInfo(
        vendor=_vendor(first),
        model=_model(first),
        logical_cpus=scan.processors or _declared_cpus(first) or (1 if "processor name" in first else None),
        flags=union,
        flag_lines=scan.flag_lines,
        vmx_cpus=scan.vmx_cpus,
        svm_cpus=scan.svm_cpus,
        vmx_features=frozenset().union(*scan.vmx_sets.values()) if scan.vmx_sets else None,
        arch=_arch(first, scan.first_lines, union, scan.flag_lines > 0, scan.garbage),
        garbage_lines=scan.garbage,
        first_lines=MappingProxyType(scan.first_lines),
    )


class _Scan:
    """The running state of one pass: blocks (blank lines, or a repeated `processor`, separate them)."""

    def __init__(self) -> None:
        self.first: Dict[str, str] = {}  # the first value seen for every key (s390 puts shared keys in a header block)
        self.first_lines: Dict[str, str] = {}  # the first line of every key, as printed (evidence)
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
        value = line[colon + 1 :].strip()
        if key == "processor" and not value.isdecimal():
            key = "processor name"  # old ARM kernels print `Processor : ARMv7 Processor rev 4 (v7l)` once, not per CPU
        if key in _BLOCK_KEYS:
            if key == "processor" and key in self._block:  # a block boundary without the blank line
                self.end_block()
            self._block.setdefault(key, value)
        if key not in self.first:
            self.first[key] = value
            self.first_lines[key] = line.strip()

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
    for key in ("model name", "cpu model", "cpu", "processor name", "uarch", "hardware"):
        value = first.get(key, "").strip()
        if value and value != "-":
            return value
    return None


def _declared_cpus(first: Dict[str, str]) -> Optional[int]:
    # s390, sparc64 and alpha declare their count instead of printing a block per CPU.
    for key in ("# processors", "ncpus active", "cpus detected"):
        declared = first.get(key, "")
        if declared.isdecimal():
            return int(declared)
    return None


# -- the architecture the layout tells -------------------------------------------------------------
# Keys only x86 kernels print (arch/x86/kernel/cpu/proc.c).
X86_KEYS = ("vendor_id", "cpu family", "flags", "fpu_exception", "cpuid level", "wp", "fdiv_bug")
# Printed per CPU by 32-bit x86 kernels only: show_cpuinfo_misc() in arch/x86/kernel/cpu/proc.c prints
# fdiv_bug, f00f_bug and coma_bug (hlt_bug before 3.x) under CONFIG_X86_32; the 64-bit variant prints
# `fpu`, `fpu_exception`, `cpuid level` and `wp` alone.
X86_32_ONLY_KEYS = ("fdiv_bug", "f00f_bug", "coma_bug", "hlt_bug")
# The patterns below are strings that `re` compiles on first use and caches: most runs need none of them,
# and compiling them all at import cost about a millisecond of every run's start-up.
X86_MODEL_WORDS = r"\b(Intel|AMD|Pentium|Celeron|Xeon|Athlon|Opteron|EPYC|Ryzen|Hygon|Zhaoxin|VIA)\b"
# Platforms Linux builds only into 64-bit powerpc kernels (arch/powerpc/platforms/*/Kconfig: `depends on PPC64`).
PPC64_ONLY_PLATFORMS = ("pSeries", "PowerNV", "PS3", "Cell", "Maple", "maple", "iSeries", "PA Semi PWRficient")
# POWER4 and later run only 64-bit kernels (a 32-bit powerpc kernel supports 6xx/7xx/74xx, 4xx, 8xx, e200-e500).
PPC64_ONLY_CPUS = r"^POWER(4|5|6|7|8|9|1[0-9])"
# CPUs without 64-bit mode: 601/603/604, 740/750 (G3), 74xx (G4), 8xx, 4xx, e200, e300, e500 (not e5500/e6500).
PPC32_ONLY_CPUS = r"^(60[134]|7[0-9]{2}(/7[0-9]{2})?|74[0-9]{2}|e200|e300|e500(?!0)|8xx|MPC8|PPC4[0-9]{2}|4[0-9]{2}[A-Z]|476)"
# MIPS ISAs with 64-bit registers: MIPS III and later, MIPS64 (the `isa` line of arch/mips/kernel/proc.c).
MIPS64_ISAS = r"^(mips[345]$|mips64)"
ARM_PLATFORM = r"\((v[0-9]+[a-z]*?)([lb])\)\s*$"


def _arch(first: Dict[str, str], lines: Dict[str, str], flags: FrozenSet[str], has_flags: bool, garbage: int) -> CpuArch:
    """The family and, where the kernel's own printing shows it, the kernel's word size."""
    for detect in _FAMILIES:
        found = detect(first, lines, flags, has_flags)
        if found is not None:
            return found
    # "Not x86" only for what still reads as a cpuinfo file: random bytes with a colon in them prove nothing.
    plausible = any(key in first for key in CPUINFO_KEYS) and garbage <= len(first)
    if not plausible:
        return CpuArch(reason="not a recognisable cpuinfo layout")
    return CpuArch(not_x86=True, reason="no x86 signature (vendor_id, flags, cpu family) and no layout kvmready knows")


# Keys every architecture's cpuinfo has some of.
CPUINFO_KEYS = ("processor", "processor name", "bogomips", "cpu", "cpu model", "model name", "model", "features", "hardware", "cpu mhz")


def _picked(lines: Dict[str, str], *keys: str) -> Tuple[str, ...]:
    return tuple(lines[key] for key in keys if key in lines)


Detector = Callable[[Dict[str, str], Dict[str, str], FrozenSet[str], bool], Optional[CpuArch]]


def _s390(first: Dict[str, str], lines: Dict[str, str], flags: FrozenSet[str], has_flags: bool) -> Optional[CpuArch]:
    if first.get("vendor_id") != "IBM/S390" and "bogomips per cpu" not in first:
        return None
    seen = _picked(lines, "vendor_id", "features")
    if "features" not in first:
        return CpuArch("s390", None, None, seen, "no `features` line (kernels before 2.6.2x), so neither `zarch` nor its absence shows")
    if "zarch" in first["features"].split():
        return CpuArch("s390", 64, "s390x", seen, "`zarch`: z/Architecture mode is active, which only a 64-bit kernel runs in "
                       "(facility bit 2, setup_hwcaps() in arch/s390/kernel/setup.c)")
    return CpuArch("s390", 31, "s390", seen, "`features` without `zarch`: ESA/390 mode, in which only a 31-bit kernel runs")


def _ia64(first: Dict[str, str], lines: Dict[str, str], flags: FrozenSet[str], has_flags: bool) -> Optional[CpuArch]:
    if first.get("arch") != "IA-64":
        return None
    return CpuArch("ia64", 64, "ia64", _picked(lines, "arch", "family"), "Itanium (IA-64) has only a 64-bit Linux kernel")


def _alpha(first: Dict[str, str], lines: Dict[str, str], flags: FrozenSet[str], has_flags: bool) -> Optional[CpuArch]:
    if first.get("cpu") != "Alpha":
        return None
    return CpuArch("alpha", 64, "alpha", _picked(lines, "cpu", "cpu model"), "Alpha has only a 64-bit Linux kernel")


def _parisc(first: Dict[str, str], lines: Dict[str, str], flags: FrozenSet[str], has_flags: bool) -> Optional[CpuArch]:
    family = first.get("cpu family", "")
    if not family.startswith("PA-RISC"):
        return None
    seen = _picked(lines, "cpu family", "cpu")
    if family.startswith("PA-RISC 1"):
        return CpuArch("parisc", 32, "parisc", seen, "a PA-RISC 1.x CPU runs only 32-bit kernels")
    return CpuArch("parisc", None, None, seen, "a PA-RISC 2.0 CPU runs 32- and 64-bit kernels; cpuinfo does not say which")


def _loongarch(first: Dict[str, str], lines: Dict[str, str], flags: FrozenSet[str], has_flags: bool) -> Optional[CpuArch]:
    if "loongarch" not in first.get("isa", "").lower():
        return None
    return CpuArch("loongarch", 64, "loongarch64", _picked(lines, "cpu family", "isa"),
                   "Linux builds LoongArch kernels only as 64-bit (arch/loongarch/Kconfig: 64BIT def_bool y, 32BIT without a prompt)")


def _sparc(first: Dict[str, str], lines: Dict[str, str], flags: FrozenSet[str], has_flags: bool) -> Optional[CpuArch]:
    machine_type = first.get("type", "")
    if not machine_type.startswith("sun4") and "ncpus probed" not in first and "sparc" not in first.get("cpu", "").lower():
        return None
    seen = _picked(lines, "cpu", "type")
    if machine_type in ("sun4u", "sun4v", "sun4us"):
        return CpuArch("sparc", 64, "sparc64", seen, f"{machine_type} machines run only the sparc64 kernel (the 32-bit port supports sun4m, sun4d and LEON)")
    if machine_type.startswith("sun4"):
        return CpuArch("sparc", 32, "sparc", seen, f"{machine_type} machines run only the 32-bit sparc kernel")
    return CpuArch("sparc", None, None, seen, "no `type` line, which tells sun4u/sun4v (64-bit) from sun4m/sun4d (32-bit)")


def _mips(first: Dict[str, str], lines: Dict[str, str], flags: FrozenSet[str], has_flags: bool) -> Optional[CpuArch]:
    if "cpu model" not in first or not any(key in first for key in ("system type", "isa", "byteorder", "ases implemented")):
        return None
    seen = _picked(lines, "cpu model", "isa")
    isas = first.get("isa", "").split()
    if isas and not any(re.match(MIPS64_ISAS, isa) for isa in isas):
        return CpuArch("mips", 32, "mips", seen, "the CPU implements no 64-bit MIPS ISA (MIPS III or MIPS64), so the kernel is 32-bit")
    return CpuArch("mips", None, None, seen, "cpuinfo shows what the CPU implements (`isa`), not whether the kernel is 32- or 64-bit")


def _riscv(first: Dict[str, str], lines: Dict[str, str], flags: FrozenSet[str], has_flags: bool) -> Optional[CpuArch]:
    isa = first.get("isa", "")
    if not isa.startswith(("rv32", "rv64")):
        return None
    bits = 64 if isa.startswith("rv64") else 32
    return CpuArch("riscv", bits, f"riscv{bits}", _picked(lines, "isa"),
                   "the kernel prints its own XLEN as the `isa` prefix (arch/riscv/kernel/cpu.c, CONFIG_32BIT/CONFIG_64BIT)")


def _arm(first: Dict[str, str], lines: Dict[str, str], flags: FrozenSet[str], has_flags: bool) -> Optional[CpuArch]:
    name = first.get("processor name") or first.get("model name", "")
    platform = re.search(ARM_PLATFORM, name) if "(v" in name else None  # spares x86 the compile
    is_arm = "cpu architecture" in first or "cpu implementer" in first or bool(platform) or "(aarch64)" in name
    if not is_arm and not ("hardware" in first and "processor name" in first):  # 2.4-era ARM: Processor, Hardware, Revision
        return None
    seen = _picked(lines, "processor name", "model name", "cpu architecture")
    if first.get("cpu architecture") in ("8", "AArch64") or "(aarch64)" in name:
        return CpuArch("arm", 64, "aarch64", seen, "only the arm64 kernel prints `CPU architecture: 8` (arch/arm64/kernel/cpuinfo.c); "
                       "32-bit ARM kernels print 7 or lower, even on ARMv8 CPUs")
    machine = None
    if platform and platform.group(1) in ("v6", "v7"):  # uname is arch_name + endianness: armv6l, armv7l (arch/arm/mm/proc-v6/v7.S)
        machine = f"arm{platform.group(1)}{platform.group(2)}"
    return CpuArch("arm", 32, machine, seen, "a 32-bit ARM kernel: the arm64 kernel always prints `CPU architecture: 8`")


def _powerpc(first: Dict[str, str], lines: Dict[str, str], flags: FrozenSet[str], has_flags: bool) -> Optional[CpuArch]:
    cpu = first.get("cpu", "")
    markers = ("platform", "timebase", "pmac-generation", "motherboard")
    if not (any(key in first for key in markers) or cpu.upper().startswith(("POWER", "PPC")) or "(pvr " in first.get("revision", "")):
        return None
    platform = first.get("platform", "")
    seen = _picked(lines, "cpu", "platform")
    if platform in PPC64_ONLY_PLATFORMS:
        return CpuArch("powerpc", 64, None, seen, f"the {platform} platform exists only in 64-bit kernels (CONFIG_PPC64); "
                       "cpuinfo does not show the byte order (ppc64 or ppc64le)")
    if re.match(PPC64_ONLY_CPUS, cpu):
        return CpuArch("powerpc", 64, None, seen, "POWER4 and later run only 64-bit kernels; cpuinfo does not show the byte order (ppc64 or ppc64le)")
    if re.match(PPC32_ONLY_CPUS, cpu):
        return CpuArch("powerpc", 32, "ppc", seen, f"a CPU without 64-bit mode ({cpu}) runs only 32-bit kernels")
    return CpuArch("powerpc", None, None, seen, "this CPU runs 32- and 64-bit kernels; cpuinfo does not say which")


def _x86(first: Dict[str, str], lines: Dict[str, str], flags: FrozenSet[str], has_flags: bool) -> Optional[CpuArch]:
    vendor = first.get("vendor_id", "")
    if vendor not in X86_VENDORS and not any(key in first for key in X86_KEYS) and not re.search(X86_MODEL_WORDS, first.get("model name", "")):
        return None
    family = _picked(lines, "vendor_id")
    bug_keys = [key for key in X86_32_ONLY_KEYS if key in first]
    if bug_keys:
        return CpuArch("x86", 32, "i686", family + _picked(lines, *bug_keys),
                       f"`{bug_keys[0]}` is printed only by 32-bit x86 kernels (CONFIG_X86_32 in arch/x86/kernel/cpu/proc.c)")
    if has_flags and "lm" not in flags:
        return CpuArch("x86", 32, "i686", family + _picked(lines, "flags"), "no `lm` (long mode) in the flags: this CPU cannot run a 64-bit kernel")
    if "fpu_exception" in first or "wp" in first:
        return CpuArch("x86", 64, "x86_64", family + _picked(lines, "fpu_exception", "wp"),
                       "`fpu_exception`/`wp` without `fdiv_bug`: a 64-bit x86 kernel's layout "
                       "(arch/x86/kernel/cpu/proc.c prints fdiv_bug, f00f_bug and coma_bug only under CONFIG_X86_32)")
    return CpuArch("x86", None, None, family, "no `fdiv_bug` or `fpu_exception` line, which tell a 32- from a 64-bit kernel; "
                   "`lm` only says the CPU could run a 64-bit one")


# Most specific layouts first: parisc and LoongArch print `cpu family` too, s390 a `vendor_id`.
_FAMILIES: Tuple[Detector, ...] = (_s390, _ia64, _alpha, _parisc, _loongarch, _sparc, _mips, _riscv, _arm, _powerpc, _x86)
