"""The running kernel: release, version tuple, command line, architecture.

Kernel releases are parsed with a regex first (`packaging` rejects
`6.8.0-45-generic`); only the numeric prefix is compared.

The architecture is the kernel's, not the CPU's: a 64-bit-capable CPU often
runs a 32-bit kernel, and only a 64-bit x86 kernel hosts VMware Workstation.
`detect_arch` takes the kernel's machine name where the host tells it
(/proc/sys/kernel/arch, the release's suffix, uname(2) live, the ELF class of
the kernel's vDSO) and otherwise the family and word size the kernel's own
printing shows (the cpuinfo layout, /proc/modules address width, HighTotal
in /proc/meminfo).  When the family is known but the word size is not, the
name stays unknown and the report shows the family ("x86").
"""

import re
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from kvmready.facts.cpuinfo import CpuArch
from kvmready.host import Host, ReadError
from kvmready.model import Version

OSRELEASE = "/proc/sys/kernel/osrelease"
PROC_VERSION = "/proc/version"
CMDLINE = "/proc/cmdline"
ARCH_SYSCTL = "/proc/sys/kernel/arch"

_RELEASE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")
_VERSION_LINE = re.compile(r"^Linux version (\S+)")
CPU_BYTEORDER = "/sys/kernel/cpu_byteorder"
MODULES_DIR = "/lib/modules"
PROC_MODULES = "/proc/modules"
MEMINFO = "/proc/meminfo"

# Distribution kernels put the architecture at the end of the release: Fedora/RHEL `.x86_64`, `.i686`,
# `.el5PAE`; Debian `-amd64`, `-arm64`, `-686`, `-686-pae`; Ubuntu `-generic-pae`; SUSE `-pae`.
_RELEASE_ARCH = (
    r"[.-](x86_64|amd64|aarch64|arm64|s390x|ppc64le|ppc64|riscv64|loongarch64|i[3-6]86)$"
    r"|-([4-6]86(?:-pae|-bigmem)?|generic-pae|pae)$"
    r"|[0-9](PAE)$"
)
ARCH_ALIASES = {
    "amd64": "x86_64", "arm64": "aarch64", "i386": "i686", "i486": "i686", "i586": "i686",
    "686": "i686", "686-pae": "i686", "686-bigmem": "i686", "486": "i686", "586": "i686",
    "generic-pae": "i686", "pae": "i686",
}
# The kernel's machine names (`uname -m`) and what they say: (family, word size).
MACHINES: Dict[str, Tuple[str, int]] = {
    "x86_64": ("x86", 64), "i686": ("x86", 32),
    "aarch64": ("arm", 64), "armv7l": ("arm", 32), "armv6l": ("arm", 32), "armv7b": ("arm", 32),
    "ppc64le": ("powerpc", 64), "ppc64": ("powerpc", 64), "ppc": ("powerpc", 32),
    "s390x": ("s390", 64), "s390": ("s390", 31),
    "riscv64": ("riscv", 64), "riscv32": ("riscv", 32),
    "loongarch64": ("loongarch", 64),
    "mips64": ("mips", 64), "mips": ("mips", 32),
    "sparc64": ("sparc", 64), "sparc": ("sparc", 32),
    "parisc64": ("parisc", 64), "parisc": ("parisc", 32),
    "ia64": ("ia64", 64), "alpha": ("alpha", 64),
}
# The one machine name a family and word size imply (powerpc 64 is ppc64 or ppc64le; 32-bit ARM has many).
CANONICAL: Dict[Tuple[str, int], str] = {
    key: name for name, key in MACHINES.items() if key not in (("powerpc", 64), ("arm", 32))
}
X86_ARCHES = ("x86_64", "i686")
KNOWN_ARCHES = set(MACHINES)
# ELF e_machine values (include/uapi/linux/elf-em.h) -> family.
ELF_MACHINES = {
    3: "x86", 62: "x86", 40: "arm", 183: "arm", 20: "powerpc", 21: "powerpc", 22: "s390", 243: "riscv",
    258: "loongarch", 8: "mips", 2: "sparc", 18: "sparc", 43: "sparc", 50: "ia64", 15: "parisc", 0x9026: "alpha",
}
VDSO_LIMIT = 1024 * 1024


def parse_release(release: str) -> Optional[Version]:
    """`6.8.0-45-generic` -> (6, 8, 0); `6.18` -> (6, 18, 0); garbage -> None."""
    match = _RELEASE.match(release.strip())
    if not match:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def format_version(version: Version) -> str:
    return ".".join(str(part) for part in version)


def normalise_arch(name: str) -> str:
    name = name.strip().lower()
    return ARCH_ALIASES.get(name, name)


def machine_facts(name: Optional[str]) -> Optional[Tuple[str, int]]:
    """(family, word size) of a kernel machine name; armv5tel and other 32-bit ARM names included."""
    if not name:
        return None
    if name in MACHINES:
        return MACHINES[name]
    if re.fullmatch(r"armv[0-9][a-z0-9]*[lb]", name):
        return ("arm", 32)
    return None


class KernelInfo(NamedTuple):
    release: Optional[str] = None
    version: Optional[Version] = None
    source: Optional[str] = None  # where the release came from
    error: Optional[str] = None  # why no release could be read
    cmdline: Optional[str] = None
    cmdline_error: Optional[str] = None

    @property
    def cmdline_params(self) -> Dict[str, str]:
        """`kvm.enable_vmware_backdoor=1 quiet` -> {"kvm.enable_vmware_backdoor": "1", "quiet": ""}.

        Module parameters are normalised to underscores (`kvm-intel.nested` == `kvm_intel.nested`).
        """
        params: Dict[str, str] = {}
        for word in (self.cmdline or "").split(" -- ")[0].split():
            key, _, value = word.partition("=")
            module, dot, name = key.partition(".")
            if dot:
                key = f"{module.replace('-', '_')}.{name.replace('-', '_')}"
            params[key] = value
        return params

    def evidence(self) -> dict:
        data = {"source": self.source or OSRELEASE, "release": self.release}
        if self.version:
            data["version"] = format_version(self.version)
        if self.error:
            data["error"] = self.error
        return data


def collect(host: Host) -> KernelInfo:
    release, source, error = _release(host)
    try:
        cmdline, cmdline_error = host.read_value(CMDLINE, 64 * 1024), None
    except ReadError as exc:
        cmdline, cmdline_error = None, exc.reason
    return KernelInfo(
        release=release,
        version=parse_release(release) if release else None,
        source=source,
        error=error,
        cmdline=cmdline,
        cmdline_error=cmdline_error,
    )


def _release(host: Host) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    errors = []
    try:
        release = host.read_value(OSRELEASE)
        if release:
            return release, OSRELEASE, None
        errors.append(f"{OSRELEASE}: empty")
    except ReadError as exc:
        errors.append(str(exc))
    try:
        match = _VERSION_LINE.match(host.read_value(PROC_VERSION))
        if match:
            return match.group(1), PROC_VERSION, None
        errors.append(f"{PROC_VERSION}: no `Linux version` line")
    except ReadError as exc:
        errors.append(str(exc))
    if host.live:
        import os

        return os.uname().release, "uname(2)", None
    return None, None, "; ".join(errors)


class ArchClue(NamedTuple):
    """One thing the host says about the kernel's architecture, and where it says it."""

    source: str
    lines: Tuple[str, ...]  # as read
    family: Optional[str] = None
    bits: Optional[int] = None
    machine: Optional[str] = None
    reason: str = ""
    used: bool = True  # False: read, but it contradicts a stronger source

    def to_dict(self) -> dict:
        data = {"source": self.source, "lines": list(self.lines), "family": self.family, "bits": self.bits,
                "machine": self.machine, "reason": self.reason}
        if not self.used:
            data["used"] = False
        return data


class ArchInfo(NamedTuple):
    name: Optional[str]  # the kernel's machine name (`uname -m`), normalised; None when the host does not tell it
    source: Optional[str]  # where the name, or else the family, came from
    error: Optional[str] = None
    family: Optional[str] = None  # x86, arm, powerpc, s390, sparc, mips, loongarch, riscv, ia64, alpha, parisc
    bits: Optional[int] = None  # the kernel's word size: 64, 32 (31 for s390's ESA mode), None when unknown
    clues: Tuple[ArchClue, ...] = ()
    not_x86: bool = False  # no family recognised, but the cpuinfo has no x86 signature either

    @property
    def label(self) -> Optional[str]:
        """What the report's `host.arch` shows: the machine name, else the family (`x86`: x86 of unknown width)."""
        return self.name or self.family

    @property
    def is_x86(self) -> bool:
        return self.family == "x86"

    @property
    def known_not_x86(self) -> bool:
        return (self.family is not None and self.family != "x86") or self.not_x86

    def evidence(self) -> dict:
        data = {"arch": self.label, "machine": self.name, "family": self.family, "bits": self.bits, "source": self.source,
                "clues": [clue.to_dict() for clue in self.clues]}
        if self.error:
            data["error"] = self.error
        return data


def detect_arch(
    host: Host,
    cpu: Optional[CpuArch],
    release: Optional[str],
    module_bits: Optional[Callable[[], Optional[Tuple[int, str]]]] = None,
    highmem: Optional[Callable[[], bool]] = None,
) -> ArchInfo:
    """The tree's own kernel architecture: never the analysing machine's, unless the host is live.

    `cpu` is what the cpuinfo layout says; `module_bits` (the address width in
    /proc/modules and its line) and `highmem` are asked only when the stronger
    sources are silent.
    """
    clues: List[ArchClue] = []
    cpu_family = cpu.family if cpu is not None else None
    named = _named(host, release, cpu_family, clues, cpu.bits if cpu is not None else None)
    if named is not None:
        return named
    family = cpu_family
    bits = cpu.bits if cpu is not None else None
    machine = cpu.machine if cpu is not None else None
    source = "/proc/cpuinfo (format)" if family else None
    if cpu is not None and cpu.family:
        clues.append(ArchClue("/proc/cpuinfo", cpu.lines, cpu.family, cpu.bits, cpu.machine, cpu.reason))
    if family is None:
        found = _interfaces(host, clues)
        if found is not None:
            family, bits, machine, source = found
    if family is not None and bits is None:
        bits, machine, source = _kernel_bits(host, family, release, module_bits, highmem, clues, source)
    if family == "powerpc" and bits == 64 and machine is None:
        machine = _ppc64_byte_order(host, clues)
    if machine is None and family is not None and bits is not None:
        machine = CANONICAL.get((family, bits))
    if family is None:
        if cpu is not None and cpu.not_x86:
            return ArchInfo(None, "/proc/cpuinfo (format)", f"/proc/cpuinfo has no x86 signature: {cpu.reason}", clues=tuple(clues), not_x86=True)
        return ArchInfo(None, None, f"neither {ARCH_SYSCTL}, /proc/cpuinfo nor the kernel release tell the architecture", clues=tuple(clues))
    return ArchInfo(machine, source, None, family, bits, tuple(clues))


def _named(host: Host, release: Optional[str], cpu_family: Optional[str], clues: List[ArchClue],
           cpu_bits: Optional[int] = None) -> Optional[ArchInfo]:
    """The kernel's own machine name: /proc/sys/kernel/arch, the release's suffix, uname(2) when live."""
    try:
        raw = host.read_value(ARCH_SYSCTL)
        name = normalise_arch(raw)
        facts = machine_facts(name)
        clues.append(ArchClue(ARCH_SYSCTL, (raw,), facts[0] if facts else None, facts[1] if facts else None,
                              name if facts else None, "the kernel's machine name", used=facts is not None))
        if facts:
            return ArchInfo(name, ARCH_SYSCTL, None, facts[0], facts[1], tuple(clues))
    except ReadError:
        pass
    match = re.search(_RELEASE_ARCH, release or "")
    if match:
        suffix = next(group for group in match.groups() if group)
        name = normalise_arch(suffix)
        facts = machine_facts(name)
        # A release is only a name someone chose: the cpuinfo layout, which the kernel prints, wins over it.
        agrees = facts is not None and cpu_family in (None, facts[0])
        clues.append(ArchClue(f"{OSRELEASE} (suffix)", (release or "",), facts[0] if facts else None, facts[1] if facts else None,
                              name if facts else None, f"the release ends in `{suffix}`", used=agrees))
        if facts and agrees:
            return ArchInfo(name, f"{OSRELEASE} (suffix)", None, facts[0], facts[1], tuple(clues))
    if host.live:
        import os

        name = normalise_arch(os.uname().machine)
        facts = machine_facts(name)
        # A 32-bit personality (linux32, setarch i686: 32-bit build chroots) makes uname(2) say i686 on a 64-bit
        # kernel; the cpuinfo layout, which the kernel prints whatever the personality, wins where they differ.
        agrees = facts is not None and (cpu_family, cpu_bits) in ((None, None), (facts[0], None), (facts[0], facts[1]))
        clues.append(ArchClue("uname(2)", (name,), facts[0] if facts else None, facts[1] if facts else None, name if facts else None,
                              "the running kernel's machine name (under this process's personality)", used=agrees))
        if facts and agrees:
            return ArchInfo(name, "uname(2)", None, facts[0], facts[1], tuple(clues))
        if facts:
            return None  # the cpuinfo layout decides
        return ArchInfo(name, "uname(2)", None, None, None, tuple(clues))
    return None


# Files only one architecture's kernel creates: where cpuinfo is missing or empty, they still tell the family.
ARCH_INTERFACES: Tuple[Tuple[str, str, Optional[int], str], ...] = (
    ("/proc/sysinfo", "s390", None, "only the s390 kernel provides /proc/sysinfo (arch/s390/kernel/sysinfo.c)"),
    ("/dev/mdesc", "sparc", 64, "the machine-description device exists only in sparc64 kernels (arch/sparc/kernel/mdesc.c, CONFIG_SPARC64)"),
    ("/proc/ppc64", "powerpc", 64, "only 64-bit powerpc kernels create /proc/ppc64 (arch/powerpc/kernel/proc_powerpc.c)"),
)


def _interfaces(host: Host, clues: List[ArchClue]) -> Optional[Tuple[str, Optional[int], Optional[str], str]]:
    for path, family, bits, reason in ARCH_INTERFACES:
        if host.exists(path):
            machine = CANONICAL.get((family, bits)) if bits else None
            clues.append(ArchClue(path, ("present",), family, bits, machine, reason))
            return family, bits, machine, f"{path} (exists)"
    return None


def _kernel_bits(
    host: Host,
    family: str,
    release: Optional[str],
    module_bits: Optional[Callable[[], Optional[Tuple[int, str]]]],
    highmem: Optional[Callable[[], bool]],
    clues: List[ArchClue],
    source: Optional[str],
) -> Tuple[Optional[int], Optional[str], Optional[str]]:
    """The kernel's word size where cpuinfo does not show it: (bits, machine name, source)."""
    found = module_bits() if module_bits is not None else None
    if found:
        width, line = found
        clues.append(ArchClue(PROC_MODULES, (line,), family, width, None,
                              f"module addresses are {width // 4} hex digits wide: the kernel's pointers are {width}-bit"))
        return width, None, f"{PROC_MODULES} (address width)"
    if highmem is not None and highmem():
        clues.append(ArchClue(MEMINFO, ("HighTotal: ...",), family, 32, None, "HighTotal: high memory (CONFIG_HIGHMEM) exists only in 32-bit kernels"))
        return 32, None, f"{MEMINFO} (HighTotal)"
    elf = _vdso(host, release, clues)
    if elf is not None and elf[0] == family:
        return elf[1], elf[2], f"{MODULES_DIR}/{release}/vdso (ELF class)"
    return None, None, source


def _vdso(host: Host, release: Optional[str], clues: List[ArchClue]) -> Optional[Tuple[str, int, Optional[str]]]:
    """The ELF class of the vDSO images `make vdso_install` puts beside the modules: (family, bits, machine).

    A 64-bit kernel also ships a 32-bit compat vDSO, so the widest one is the kernel's.
    """
    if not release or "/" in release or release.startswith("."):
        return None
    directory = f"{MODULES_DIR}/{release}/vdso"
    try:
        names = [name for name in host.list_dir(directory) if name.endswith(".so")][:4]
    except ReadError:
        return None
    best: Optional[Tuple[str, int, Optional[str]]] = None
    for name in names:
        try:
            header = host.read_bytes(f"{directory}/{name}", VDSO_LIMIT)[:20]
        except ReadError:
            continue
        parsed = _elf_header(header)
        if parsed is None:
            continue
        family, bits, little = parsed
        machine = CANONICAL.get((family, bits))
        if family == "powerpc" and bits == 64:
            machine = "ppc64le" if little else "ppc64"
        elif family == "arm" and bits == 32:
            machine = None
        clues.append(ArchClue(f"{directory}/{name}", (f"ELF class {bits}, e_machine {family}",), family, bits, machine,
                              "the kernel's own vDSO image"))
        if best is None or bits > best[1]:
            best = (family, bits, machine)
    return best


def _elf_header(data: bytes) -> Optional[Tuple[str, int, bool]]:
    if len(data) < 20 or data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return None
    little = data[5] == 1
    family = ELF_MACHINES.get(int.from_bytes(data[18:20], "little" if little else "big"))
    if family is None:
        return None
    return family, 64 if data[4] == 2 else 32, little


def _ppc64_byte_order(host: Host, clues: List[ArchClue]) -> Optional[str]:
    try:
        order = host.read_value(CPU_BYTEORDER)
    except ReadError:
        return None
    machine = {"little": "ppc64le", "big": "ppc64"}.get(order)
    clues.append(ArchClue(CPU_BYTEORDER, (order,), "powerpc", 64, machine, "the kernel's byte order"))
    return machine
