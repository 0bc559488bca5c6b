"""host.container: which runtime, from evidence weighed together; and what the KVM checks say inside one.

Each tree holds what that runtime really leaves behind (the cgroup lines,
mountinfo root lines and marker files are copied from real containers'
/proc as their documentation and issue reports show them).
"""

from __future__ import annotations

import errno

import pytest
from fakes import FakeKvmBackend, FakeLiveSystem
from treebuilder import intel_desktop, make_facts, run_check

from kvmready.facts import container
from kvmready.host import MemoryHost
from kvmready.model import Status

DOCKER_ID = "3f1c1c1e5b2a" + "0" * 52
EXT4_ROOT = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n"
DOCKER_OVERLAY_ROOT = (
    "600 540 0:51 / / rw,relatime master:289 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/ABC:"
    "/var/lib/docker/overlay2/l/DEF,upperdir=/var/lib/docker/overlay2/1a2b/diff,workdir=/var/lib/docker/overlay2/1a2b/work\n"
)
PODMAN_OVERLAY_ROOT = (
    "471 405 0:44 / / rw,relatime - overlay overlay rw,lowerdir=/var/lib/containers/storage/overlay/l/X,"
    "upperdir=/var/lib/containers/storage/overlay/9f/diff,workdir=/var/lib/containers/storage/overlay/9f/work\n"
)
LIVE_CD_OVERLAY_ROOT = "25 1 0:30 / / rw,relatime - overlay /cow rw,lowerdir=/run/live/rootfs/filesystem.squashfs,upperdir=/run/live/overlay/rw\n"

TREES = {
    "docker, cgroup v1": ({"/.dockerenv": b"", "/proc/1/cgroup": f"12:devices:/docker/{DOCKER_ID}\n0::/docker/{DOCKER_ID}\n".encode()}, "docker"),
    "docker, cgroup v2 namespace": ({"/.dockerenv": b"", "/proc/1/cgroup": b"0::/\n", "/proc/1/mountinfo": DOCKER_OVERLAY_ROOT.encode()}, "docker"),
    "podman": ({"/run/.containerenv": b'engine="podman-4.9.3"\nname="kvm-test"\nid="ab12"\nimage="fedora:40"\nrootless=1\n',
                "/proc/1/mountinfo": PODMAN_OVERLAY_ROOT.encode()}, "podman"),
    "lxc": ({"/proc/1/cgroup": b"0::/lxc.payload.builder\n"}, "lxc"),
    "kind: a kubernetes pod inside a docker node": (
        {"/proc/1/cgroup": f"0::/docker/{DOCKER_ID}/kubepods/besteffort/pod1a2b/{DOCKER_ID}\n".encode()}, "kubernetes"),
    "kubernetes": ({"/var/run/secrets/kubernetes.io/serviceaccount/token": b"eyJhbGciOi...",
                    "/proc/1/cgroup": b"0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-3ab.scope\n"}, "kubernetes"),
    "systemd-nspawn": ({"/run/systemd/container": b"systemd-nspawn\n", "/proc/1/cgroup": b"0::/init.scope\n"}, "systemd-nspawn"),
    "wsl": ({"/proc/sys/kernel/osrelease": b"5.15.153.1-microsoft-standard-WSL2\n"}, "wsl"),
    "docker: its marker on an overlay root": ({"/.dockerenv": b"", "/proc/1/cgroup": b"0::/\n",
                                               "/proc/1/mountinfo": b"88 70 0:40 / / rw - overlay overlay rw,lowerdir=/l,upperdir=/u\n"}, "docker"),
    # A VM built from a container image keeps Docker's marker (the development machine does):
    "VM with a stray /.dockerenv": ({"/.dockerenv": b"", "/proc/1/cgroup": b"9:name=systemd:/\n0::/\n",
                                     "/proc/1/mountinfo": EXT4_ROOT.encode()}, None),
    "live CD: an overlay root without a runtime": ({"/proc/1/mountinfo": LIVE_CD_OVERLAY_ROOT.encode()}, None),
    "bare metal": ({"/proc/1/cgroup": b"0::/init.scope\n", "/proc/1/mountinfo": EXT4_ROOT.encode()}, None),
}


@pytest.mark.parametrize("name", list(TREES))
def test_each_runtime_is_named_from_what_it_leaves_behind(name):
    files, expected = TREES[name]
    info = container.collect(MemoryHost(files))
    assert info.name == expected
    assert info.evidence()["container"] == expected
    assert info.clues, "every answer shows the clues it weighed"


def test_a_stray_dockerenv_is_shown_but_does_not_decide():
    files, _ = TREES["VM with a stray /.dockerenv"]
    info = container.collect(MemoryHost(files))
    assert [(clue.source, clue.value, clue.decisive) for clue in info.clues] == [
        ("/proc/1/cgroup", "0::/", False), ("/proc/1/mountinfo", "/ on ext4", False), ("/.dockerenv", "present", False)]


def test_the_declared_container_wins_and_pid1_environment_counts():
    assert container.collect(MemoryHost({}), pid1_container_env="lxc").name == "lxc"
    assert container.collect(MemoryHost({"/.dockerenv": b""}), pid1_container_env="podman").name == "podman"
    assert container.collect(MemoryHost({}), pid1_container_env=None).name is None


def test_kubernetes_is_named_over_the_runtime_under_it():
    files = {"/var/run/secrets/kubernetes.io/serviceaccount/ca.crt": b"x", "/.dockerenv": b"",
             "/proc/1/cgroup": f"0::/docker/{DOCKER_ID}\n".encode()}
    assert container.collect(MemoryHost(files)).name == "kubernetes"


def test_unreadable_sources_are_no_evidence():
    errors = {path: "Permission denied (EACCES)" for path in ("/proc/1/cgroup", "/proc/1/mountinfo", "/run/systemd/container")}
    assert container.collect(MemoryHost({}, errors=errors)).name is None


# --- in the report and the checks ---------------------------------------------------------


def tree_with(files):
    return intel_desktop().with_files({path: data.decode() for path, data in files.items()})


def test_the_report_names_the_container_and_a_snapshot_keeps_pid1s_declaration():
    from kvmready.summary import host_summary

    facts = make_facts(tree_with(TREES["docker, cgroup v1"][0]), FakeLiveSystem())
    assert host_summary(facts)["container"] == "docker"
    facts = make_facts(intel_desktop(), FakeLiveSystem(container_env="systemd-nspawn"))
    assert host_summary(facts)["container"] == "systemd-nspawn"
    assert host_summary(make_facts(intel_desktop()))["container"] is None


@pytest.mark.parametrize("runtime, words", [
    ("docker, cgroup v1", "--device /dev/kvm"),
    ("kubernetes", "devices.kubevirt.io/kvm"),
    ("lxc", "unix-char path=/dev/kvm"),
    ("systemd-nspawn", "--bind=/dev/kvm"),
    ("wsl", "nestedVirtualization=true"),
])
def test_a_missing_device_in_a_container_says_how_to_pass_it_in(runtime, words):
    tree = tree_with(TREES[runtime][0]).with_nodes({"/dev/kvm": None})
    result = run_check("kvm.device", tree)
    assert result.status is Status.FAIL
    assert f"This is a {TREES[runtime][1]} container" in result.remediation and words in result.remediation
    assert result.evidence["container"]["container"] == TREES[runtime][1]


def test_a_built_in_kvm_module_without_dev_kvm_in_a_container_is_not_called_failed():
    """The host's built-in kvm_intel shows in a container's /sys/module; its /dev/kvm is simply not passed in."""
    files = {path: data.decode() for path, data in TREES["docker, cgroup v1"][0].items()}
    tree = intel_desktop(modules=(), builtin=("kvm", "kvm_intel"), kvm_present=False).with_files(files)
    assert run_check("kvm.module", tree).status is Status.PASS
    bare_metal = intel_desktop(modules=(), builtin=("kvm", "kvm_intel"), kvm_present=False)
    assert run_check("kvm.module", bare_metal).status is Status.FAIL


def test_a_vm_with_a_stray_dockerenv_is_not_told_it_is_a_container():
    tree = tree_with(TREES["VM with a stray /.dockerenv"][0]).with_nodes({"/dev/kvm": None})
    result = run_check("kvm.device", tree)
    assert result.status is Status.FAIL
    assert "container" not in result.remediation and "container" not in result.evidence


def test_eperm_in_a_container_names_its_device_cgroup():
    tree = tree_with(TREES["docker, cgroup v1"][0])
    result = run_check("kvm.access", tree, live=FakeLiveSystem(FakeKvmBackend(open_errno=errno.EPERM)))
    assert result.status is Status.FAIL
    assert "This docker container's device cgroup does not allow /dev/kvm" in result.remediation
    assert "--device /dev/kvm" in result.remediation


def test_eacces_in_a_container_points_at_the_hosts_group_id():
    tree = tree_with(TREES["podman"][0])
    result = run_check("kvm.access", tree, live=FakeLiveSystem(FakeKvmBackend(open_errno=errno.EACCES), groups=(1000,)))
    assert result.status is Status.FAIL
    assert "podman container the group must be the host's kvm group id" in result.remediation
