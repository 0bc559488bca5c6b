"""Whether this host is a container, and which runtime, weighed from evidence that cannot fool itself.

A marker file alone proves little: a VM built from a container image keeps
Docker's `/.dockerenv` (the development machine, a Firecracker microVM, has
one), so it counts only beside other evidence.  What decides, strongest first
(systemd-detect-virt's order and names where it has them):

- an explicit declaration: `/run/systemd/container` (systemd writes the
  `container=` it was started with there), `container=` in PID 1's
  environment (live only: the environment is never read from a tree or kept
  in a snapshot; LiveSystem hands over that one value), Podman's
  `/run/.containerenv` (`engine="podman-…"`);
- Kubernetes: the service-account mount every pod gets by default;
- PID 1's cgroup path (cgroup v1, or v2 without a cgroup namespace):
  `/docker/<id>`, `/kubepods…`, `/lxc/…`, `/machine.slice/machine-…`, `libpod-…`;
- the root file system: an overlay root, whose upper directory names the
  runtime (`/var/lib/docker/…`, `/var/lib/containers/…`, containerd);
- WSL: `microsoft` in the kernel release, or its interop handler.
"""

import re
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from kvmready.host import Host, ReadError

SYSTEMD_CONTAINER = "/run/systemd/container"
PODMAN_CONTAINERENV = "/run/.containerenv"
DOCKERENV = "/.dockerenv"
PID1_CGROUP = "/proc/1/cgroup"
PID1_MOUNTINFO = "/proc/1/mountinfo"
KUBERNETES_SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
WSL_INTEROP = "/proc/sys/fs/binfmt_misc/WSLInterop"
OSRELEASE = "/proc/sys/kernel/osrelease"
PID1_ENVIRONMENT = "PID 1's environment (container=)"

# `container=` values (systemd's container interface) -> the name kvmready reports.
DECLARED = {
    "docker": "docker", "podman": "podman", "lxc": "lxc", "lxc-libvirt": "lxc", "systemd-nspawn": "systemd-nspawn",
    "rkt": "rkt", "wsl": "wsl", "oci": "oci", "proot": "proot", "pouch": "pouch",
}
# PID 1's cgroup path -> runtime, in order of precedence (kind's `/docker/<id>/kubepods/...` is kubernetes).
# Pattern strings, compiled by `re` on first use.
CGROUP_PATTERNS: Tuple[Tuple[str, str], ...] = (
    (r"kubepods", "kubernetes"),
    (r"/docker[/-][0-9a-f]{12,}", "docker"),
    (r"libpod[-_]", "podman"),
    (r"/lxc[/.]|/lxc\.payload", "lxc"),
    (r"/machine\.slice/machine-", "systemd-nspawn"),
    (r"containerd|cri-containerd", "containerd"),
)
# An overlay root's upper directory -> runtime.
OVERLAY_PATHS = (("/var/lib/docker/", "docker"), ("/var/lib/containers/", "podman"), ("containerd", "containerd"))
OVERLAY_FS = ("overlay", "aufs", "fuse-overlayfs")


class Clue(NamedTuple):
    source: str
    value: str
    suggests: Optional[str]  # a runtime, or None for evidence that only supports another clue
    decisive: bool  # enough on its own

    def to_dict(self) -> Dict[str, Any]:
        return {"source": self.source, "value": self.value, "suggests": self.suggests, "decisive": self.decisive}


class ContainerInfo(NamedTuple):
    name: Optional[str] = None  # None: not a container (as far as the evidence goes)
    clues: Tuple[Clue, ...] = ()

    @property
    def is_container(self) -> bool:
        return self.name is not None

    def evidence(self) -> Dict[str, Any]:
        return {"container": self.name, "clues": [clue.to_dict() for clue in self.clues]}


def collect(host: Host, pid1_container_env: Optional[str] = None) -> ContainerInfo:
    """`pid1_container_env`: `container=` from PID 1's environment, when the live system could read it."""
    clues: List[Clue] = []

    def read(path: str, limit: int = 64 * 1024) -> Optional[str]:
        try:
            return host.read_text(path, limit)
        except ReadError:
            return None

    declared = (read(SYSTEMD_CONTAINER) or "").strip()
    if declared:
        clues.append(Clue(SYSTEMD_CONTAINER, declared, DECLARED.get(declared, declared), True))
    if pid1_container_env:
        clues.append(Clue(PID1_ENVIRONMENT, pid1_container_env, DECLARED.get(pid1_container_env, pid1_container_env), True))
    containerenv = read(PODMAN_CONTAINERENV)
    if containerenv is not None:
        engine = re.search(r'^engine="([a-z]+)', containerenv, re.M)
        clues.append(Clue(PODMAN_CONTAINERENV, engine.group(0) if engine else "present", engine.group(1) if engine else "podman", True))
    if host.exists(KUBERNETES_SERVICE_ACCOUNT):
        clues.append(Clue(KUBERNETES_SERVICE_ACCOUNT, "present", "kubernetes", True))
    clues.extend(_cgroup(read(PID1_CGROUP)))
    clues.extend(_root_filesystem(read(PID1_MOUNTINFO, 4 * 1024 * 1024)))
    release = (read(OSRELEASE) or "").lower()
    if "microsoft" in release or host.exists(WSL_INTEROP):
        clues.append(Clue(OSRELEASE if "microsoft" in release else WSL_INTEROP, release.strip() or "present", "wsl", True))
    if host.exists(DOCKERENV):
        clues.append(Clue(DOCKERENV, "present", "docker", False))
    return ContainerInfo(_decide(clues), tuple(clues))


def _cgroup(text: Optional[str]) -> List[Clue]:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    for line in lines:
        path = line.split(":", 2)[-1]
        for pattern, runtime in CGROUP_PATTERNS:
            if re.search(pattern, path):
                return [Clue(PID1_CGROUP, line, runtime, True)]
    # Seen, and naming no runtime (cgroup v2 inside a namespace reads `0::/` and tells nothing).
    return [Clue(PID1_CGROUP, lines[-1], None, False)] if lines else []


def _root_filesystem(mountinfo: Optional[str]) -> List[Clue]:
    """The file system mounted at `/` (mountinfo field 5 is the mount point; after ` - ` the type and source)."""
    for line in (mountinfo or "").splitlines():
        fields, _, tail = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or parts[4] != "/":
            continue
        fstype = tail.split()[0] if tail.split() else ""
        if fstype not in OVERLAY_FS:
            return [Clue(PID1_MOUNTINFO, f"/ on {fstype or 'an unnamed file system'}", None, False)]
        runtime = next((name for marker, name in OVERLAY_PATHS if marker in tail), None)
        # An overlay root alone is also a live CD's: it decides only when its paths name a runtime.
        return [Clue(PID1_MOUNTINFO, f"/ on {fstype}" + (f" ({runtime})" if runtime else ""), runtime, runtime is not None)]
    return []


def _decide(clues: List[Clue]) -> Optional[str]:
    decisive = [clue.suggests for clue in clues if clue.decisive and clue.suggests]
    if decisive:
        # Kubernetes says more than the runtime under it; otherwise the strongest (first) clue.
        return "kubernetes" if "kubernetes" in decisive else decisive[0]
    overlay_root = any(clue.source == PID1_MOUNTINFO and clue.value.split()[2] in OVERLAY_FS for clue in clues)
    dockerenv = any(clue.source == DOCKERENV for clue in clues)
    if dockerenv and overlay_root:  # the marker and a container's root file system, together
        return "docker"
    return None
