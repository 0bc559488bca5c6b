"""The running kernel: release, version tuple, command line, architecture.

Kernel releases are parsed with a regex first (`packaging` rejects
`6.8.0-45-generic`); only the numeric prefix is compared.
"""

import re
from typing import Dict, NamedTuple, Optional, Tuple

from kvmready.host import Host, ReadError
from kvmready.model import Version

OSRELEASE = "/proc/sys/kernel/osrelease"
PROC_VERSION = "/proc/version"
CMDLINE = "/proc/cmdline"
ARCH_SYSCTL = "/proc/sys/kernel/arch"

_RELEASE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")
_VERSION_LINE = re.compile(r"^Linux version (\S+)")
# Distribution kernels put the architecture at the end of the release.
_RELEASE_ARCH = re.compile(r"[.-](x86_64|amd64|aarch64|arm64|s390x|ppc64le|ppc64|riscv64|i[3-6]86)$")
ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64", "i386": "i686", "i486": "i686", "i586": "i686"}
X86_ARCHES = ("x86_64", "i686")
KNOWN_ARCHES = {"x86_64", "i686", "aarch64", "armv7l", "s390x", "ppc64le", "ppc64", "riscv64", "loongarch64", "mips64"}


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


class ArchInfo(NamedTuple):
    name: Optional[str]
    source: Optional[str]
    error: Optional[str] = None

    @property
    def is_x86(self) -> bool:
        return self.name in X86_ARCHES

    def evidence(self) -> dict:
        data = {"arch": self.name, "source": self.source}
        if self.error:
            data["error"] = self.error
        return data


def detect_arch(host: Host, cpu_arch_hint: Optional[str], release: Optional[str]) -> ArchInfo:
    """The tree's own architecture: never the analysing machine's, unless the host is live."""
    try:
        value = normalise_arch(host.read_value(ARCH_SYSCTL))
        if value in KNOWN_ARCHES:
            return ArchInfo(value, ARCH_SYSCTL)
    except ReadError:
        pass
    if cpu_arch_hint:
        return ArchInfo(cpu_arch_hint, "/proc/cpuinfo (format)")
    match = _RELEASE_ARCH.search(release or "")
    if match:
        return ArchInfo(normalise_arch(match.group(1)), f"{OSRELEASE} (suffix)")
    if host.live:
        import os

        return ArchInfo(normalise_arch(os.uname().machine), "uname(2)")
    return ArchInfo(None, None, f"neither {ARCH_SYSCTL}, /proc/cpuinfo nor the kernel release tell the architecture")
