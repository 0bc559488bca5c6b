"""Groups from /etc/group: who is in the group that owns /dev/kvm."""

from types import MappingProxyType
from typing import Dict, Mapping, NamedTuple, Optional, Tuple

from kvmready.host import Host, ReadError

ETC_GROUP = "/etc/group"


class Group(NamedTuple):
    name: str
    gid: int
    members: Tuple[str, ...]


class GroupTable(NamedTuple):
    by_name: Mapping[str, Group] = MappingProxyType({})
    error: Optional[str] = None

    def by_gid(self, gid: int) -> Optional[Group]:
        for group in self.by_name.values():
            if group.gid == gid:
                return group
        return None

    def name_of(self, gid: int) -> str:
        group = self.by_gid(gid)
        return group.name if group else str(gid)


def collect(host: Host) -> GroupTable:
    try:
        text = host.read_text(ETC_GROUP, 4 * 1024 * 1024)
    except ReadError as exc:
        return GroupTable(error=exc.reason)
    return parse(text)


def parse(text: str) -> GroupTable:
    groups: Dict[str, Group] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) != 4 or not fields[2].strip().isdecimal() or not fields[0]:
            continue  # NIS `+` lines, comments and garbage
        members = tuple(member for member in fields[3].strip().split(",") if member)
        groups.setdefault(fields[0], Group(fields[0], int(fields[2]), members))
    return GroupTable(groups)
