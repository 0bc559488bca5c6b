"""Whether this host is a container, from the files container runtimes leave behind."""

from typing import NamedTuple, Tuple

from kvmready.host import Host

# Docker creates /.dockerenv, Podman /run/.containerenv.
CONTAINER_MARKERS = ("/.dockerenv", "/run/.containerenv")


class ContainerInfo(NamedTuple):
    markers: Tuple[str, ...] = ()  # the marker files present

    @property
    def is_container(self) -> bool:
        return bool(self.markers)


def collect(host: Host) -> ContainerInfo:
    return ContainerInfo(markers=tuple(path for path in CONTAINER_MARKERS if host.exists(path)))
