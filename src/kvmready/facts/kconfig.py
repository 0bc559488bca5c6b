"""The running kernel's build configuration: /proc/config.gz, else /boot/config-<release>.

`CONFIG_X=y` (or `=m`, or a value) is kept as written; `# CONFIG_X is not
set` is kept as "n".  A symbol that is not mentioned at all did not exist in
that kernel's Kconfig.
"""

from io import BytesIO
from types import MappingProxyType
from typing import Dict, Mapping, NamedTuple, Optional

from kvmready.host import Host, ReadError

PROC_CONFIG_GZ = "/proc/config.gz"  # CONFIG_IKCONFIG_PROC
BOOT_CONFIG = "/boot/config-{release}"  # what distributions install beside the kernel
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a distribution config is about 300 KB


class KernelConfig(NamedTuple):
    values: Mapping[str, str] = MappingProxyType({})
    source: Optional[str] = None
    error: Optional[str] = None  # why no configuration could be read

    def get(self, symbol: str) -> Optional[str]:
        """`y`, `m`, `n` (not set) or a value; None when the configuration does not mention it."""
        return self.values.get(symbol)

    def evidence(self, symbol: str) -> Dict[str, Optional[str]]:
        data = {"source": self.source, "symbol": symbol, "value": self.get(symbol)}
        if self.error:
            data["error"] = self.error
        return data


def collect(host: Host, release: Optional[str]) -> KernelConfig:
    errors = []
    try:
        return KernelConfig(parse(_gunzip(host.read_bytes(PROC_CONFIG_GZ, MAX_CONFIG_BYTES))), PROC_CONFIG_GZ)
    except ReadError as error:
        errors.append(str(error))
    except ValueError as error:
        errors.append(f"{PROC_CONFIG_GZ}: {error}")
    if release:
        path = BOOT_CONFIG.format(release=release)
        try:
            return KernelConfig(parse(host.read_text(path, MAX_CONFIG_BYTES)), path)
        except ReadError as error:
            errors.append(str(error))
    return KernelConfig(error="; ".join(errors))


def _gunzip(data: bytes) -> str:
    import gzip
    import zlib

    try:
        with gzip.GzipFile(fileobj=BytesIO(data)) as stream:
            text = stream.read(MAX_CONFIG_BYTES + 1)
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"not a gzip file ({error})") from None
    if len(text) > MAX_CONFIG_BYTES:
        raise ValueError(f"decompresses to more than {MAX_CONFIG_BYTES} bytes")
    return text.decode("utf-8", "replace")


def parse(text: str) -> Dict[str, str]:
    values: Dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# CONFIG_") and line.endswith(" is not set"):
            values[line[2:-len(" is not set")]] = "n"
        elif line.startswith("CONFIG_") and "=" in line:
            symbol, _, value = line.partition("=")
            values[symbol] = value.strip().strip('"')
    return values
