"""kvmready parses os-release itself (through the Host, so --root and snapshots work);
the `distro` package, reading the same files directly, must agree with it."""

from __future__ import annotations

import distro
import pytest
from helpers import fixture_root

from kvmready.facts import osinfo
from kvmready.host import DirectoryHost


@pytest.mark.integration
def test_live_machine_distribution_matches_distro():
    ours = osinfo.collect(DirectoryHost("/"))
    reference = distro.LinuxDistribution(include_lsb=False, include_uname=False, include_oslevel=False)
    assert ours.id == reference.id()
    assert (ours.version_id or "") == reference.version()
    assert ours.name == reference.name(pretty=True)


def test_fixture_distribution_matches_distro():
    root = fixture_root("firecracker-pvm-host")
    ours = osinfo.collect(DirectoryHost(str(root)))
    reference = distro.LinuxDistribution(include_lsb=False, include_uname=False, include_oslevel=False, root_dir=str(root))
    assert (ours.id, ours.version_id, ours.name) == (reference.id(), reference.version(), reference.name(pretty=True))
