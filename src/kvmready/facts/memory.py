"""Memory from /proc/meminfo (of the host's own tree, never the analysing machine)."""

from typing import NamedTuple, Optional

from kvmready.host import Host, ReadError

MEMINFO = "/proc/meminfo"


class MemoryInfo(NamedTuple):
    total_bytes: Optional[int] = None
    available_bytes: Optional[int] = None
    error: Optional[str] = None
    highmem: bool = False  # a HighTotal line: CONFIG_HIGHMEM, which only 32-bit kernels have

    def evidence(self) -> dict:
        data = {"source": MEMINFO, "total_bytes": self.total_bytes, "available_bytes": self.available_bytes}
        if self.error:
            data["error"] = self.error
        return data


def collect(host: Host) -> MemoryInfo:
    try:
        text = host.read_text(MEMINFO)
    except ReadError as exc:
        return MemoryInfo(error=exc.reason)
    return parse(text)


def parse(text: str) -> MemoryInfo:
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdecimal():
            unit = fields[1].lower() if len(fields) > 1 else ""
            values[key.strip()] = int(fields[0]) * (1024 if unit == "kb" else 1)
    if "MemTotal" not in values:
        return MemoryInfo(error="no MemTotal line")
    return MemoryInfo(values["MemTotal"], values.get("MemAvailable"), highmem="HighTotal" in values)
