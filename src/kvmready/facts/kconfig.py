"""The running kernel's build configuration: /proc/config.gz, else /boot/config-<release>.

`CONFIG_X=y` (or `=m`, or a value) is kept as written; `# CONFIG_X is not
set` is "n".  A symbol that is not mentioned at all did not exist in that
kernel's Kconfig.  Symbols are looked up one at a time in the text: a
distribution config has ~10,000 lines and the checks ask for one of them, so
parsing every line would cost start-up time for nothing.
"""

from typing import Dict, NamedTuple, Optional

from kvmready.host import Host, ReadError

PROC_CONFIG_GZ = "/proc/config.gz"  # CONFIG_IKCONFIG_PROC
BOOT_CONFIG = "/boot/config-{release}"  # what distributions install beside the kernel
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a distribution config is about 300 KB


class KernelConfig(NamedTuple):
    text: str = ""
    source: Optional[str] = None
    error: Optional[str] = None  # why no configuration could be read

    def get(self, symbol: str) -> Optional[str]:
        """`y`, `m`, `n` (not set) or a value; None when the configuration does not mention it."""
        if not (symbol.startswith("CONFIG_") and symbol.isidentifier()):
            raise ValueError(f"not a Kconfig symbol: {symbol!r}")
        text = "\n" + self.text
        # The last line about the symbol wins, as in Kconfig itself.
        assigned = text.rfind(f"\n{symbol}=")
        unset = text.rfind(f"\n# {symbol} is not set")
        if assigned < 0 and unset < 0:
            return None
        if unset > assigned:
            return "n"
        start = assigned + len(symbol) + 2
        end = text.find("\n", start)
        return text[start:end if end >= 0 else len(text)].strip().strip('"')

    def evidence(self, symbol: str) -> Dict[str, Optional[str]]:
        data = {"source": self.source, "symbol": symbol, "value": self.get(symbol)}
        if self.error:
            data["error"] = self.error
        return data


def collect(host: Host, release: Optional[str]) -> KernelConfig:
    errors = []
    try:
        return KernelConfig(_gunzip(host.read_bytes(PROC_CONFIG_GZ, MAX_CONFIG_BYTES)), PROC_CONFIG_GZ)
    except ReadError as error:
        errors.append(str(error))
    except ValueError as error:
        errors.append(f"{PROC_CONFIG_GZ}: {error}")
    if release:
        path = BOOT_CONFIG.format(release=release)
        try:
            return KernelConfig(host.read_text(path, MAX_CONFIG_BYTES), path)
        except ReadError as error:
            errors.append(str(error))
    return KernelConfig(error="; ".join(errors))


def _gunzip(data: bytes) -> str:
    """zlib's own gzip decoding (CRC and length checked at the end): the gzip module costs an import."""
    import zlib

    stream = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        text = stream.decompress(data, MAX_CONFIG_BYTES + 1)
    except zlib.error as error:
        raise ValueError(f"not a gzip file ({error})") from None
    if len(text) > MAX_CONFIG_BYTES:
        raise ValueError(f"decompresses to more than {MAX_CONFIG_BYTES} bytes")
    if not stream.eof:
        raise ValueError("the gzip stream is truncated")
    return text.decode("utf-8", "replace")
