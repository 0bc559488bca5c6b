"""The distribution, from os-release (`/etc/os-release`, else `/usr/lib/os-release`).

Parsed here rather than by `distro`'s file readers because those open paths
directly: with a foreign root they follow absolute links out of it, and they
cannot read a snapshot.  The format is the one os-release(5) defines: shell
style `KEY=value` assignments with optional quotes.
"""

import shlex
from typing import Dict, NamedTuple, Optional, Tuple

from kvmready.host import Host, ReadError

OS_RELEASE_FILES = ("/etc/os-release", "/usr/lib/os-release")


class OsInfo(NamedTuple):
    id: Optional[str] = None
    version_id: Optional[str] = None
    name: Optional[str] = None  # PRETTY_NAME, else NAME VERSION
    id_like: Tuple[str, ...] = ()
    source: Optional[str] = None
    error: Optional[str] = None

    def to_dict(self) -> dict:
        return {"id": self.id, "version": self.version_id, "name": self.name}

    def evidence(self) -> dict:
        data = {"source": self.source, "id": self.id, "version_id": self.version_id, "id_like": list(self.id_like)}
        if self.error:
            data["error"] = self.error
        return data


def collect(host: Host) -> OsInfo:
    errors = []
    for path in OS_RELEASE_FILES:
        try:
            text = host.read_text(path, 64 * 1024)
        except ReadError as exc:
            errors.append(exc)
            continue
        return parse(text, source=path)
    if all("ENOENT" in error.reason for error in errors):
        return OsInfo(error=f"neither {' nor '.join(OS_RELEASE_FILES)} exists")
    return OsInfo(error="; ".join(str(error) for error in errors))


def parse(text: str, source: Optional[str] = None) -> OsInfo:
    values = parse_assignments(text)
    if not values:
        return OsInfo(source=source, error=f"{source}: no KEY=value lines")
    os_id = values.get("ID", "linux").strip().lower() or "linux"
    name = values.get("PRETTY_NAME") or " ".join(
        part for part in (values.get("NAME"), values.get("VERSION")) if part
    )
    return OsInfo(
        id=os_id,
        version_id=values.get("VERSION_ID") or None,
        name=name or None,
        id_like=tuple(values.get("ID_LIKE", "").lower().split()),
        source=source,
    )


def parse_assignments(text: str) -> Dict[str, str]:
    """`KEY="a value"` lines as a dict; malformed lines are skipped, never fatal."""
    values: Dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        key = key.strip()
        if not key.replace("_", "").isalnum():
            continue
        try:
            words = shlex.split(raw, comments=True)
        except ValueError:  # an unbalanced quote: keep the raw text
            words = [raw.strip().strip("\"'")]
        values[key] = " ".join(words)
    return values
