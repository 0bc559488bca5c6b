"""The registry and the DESIGN contracts agree."""

from __future__ import annotations

import re

from kvmready.checks import (
    CATEGORY_ORDER,
    CHECKS,
    RANKS,
    REGISTRY,
    conflicts,
    cpu,
    devices,
    host,
    kernel,
    kvm,
    live,
    resources,
    security,
    vmware,
)
from kvmready.checks.base import CheckSpec
from kvmready.model import Severity, Target

DESIGN_REQUIRED_IDS = {
    "cpu.arch", "cpu.virtualization", "kernel.version", "kvm.module", "kvm.device",
    "kvm.access", "kvm.api", "kvm.guest", "host.hypervisor",
}
CHECK_MODULES = (conflicts, cpu, devices, host, kernel, kvm, live, resources, security, vmware)


def _defined_specs():
    return [value for module in CHECK_MODULES for value in vars(module).values() if isinstance(value, CheckSpec)]


def test_every_defined_check_is_registered_once():
    registered = [row.spec for row in CHECKS]
    assert len(registered) == len(set(spec.id for spec in registered)), "a check id is registered twice"
    assert sorted(spec.id for spec in _defined_specs()) == sorted(spec.id for spec in registered)
    assert list(REGISTRY) == sorted(RANKS, key=RANKS.__getitem__) == [spec.id for spec in registered]


def test_every_check_has_a_severity_for_both_targets():
    for row in CHECKS:
        for target in Target:
            assert isinstance(row.severity(target), Severity), row.spec.id
    assert REGISTRY["host.hypervisor"].severity(Target.WORKSTATION) is Severity.REQUIRED
    assert REGISTRY["host.hypervisor"].severity(Target.KVM) is Severity.RECOMMENDED


def test_the_ids_the_design_requires_exist():
    assert DESIGN_REQUIRED_IDS <= set(REGISTRY)


def test_ids_are_stable_shapes_and_categories_are_known():
    for check_id, row in REGISTRY.items():
        assert re.fullmatch(r"[a-z]+\.[a-z0-9-]+", check_id)
        assert row.spec.id == check_id
        assert check_id.split(".")[0] == row.spec.category
        assert row.spec.category in CATEGORY_ORDER
    assert set(CATEGORY_ORDER) == {row.spec.category for row in CHECKS}, "a category without checks, or a check without a category"


def test_every_check_explains_itself():
    for row in CHECKS:
        for text in (row.spec.title, row.spec.what, row.spec.why, row.spec.fix):
            assert text.strip(), row.spec.id


def test_every_check_names_the_sources_of_its_figures_and_claims():
    """`kvmready explain` prints them; a check without any is a claim without a source."""
    unsourced = [row.spec.id for row in CHECKS if not row.spec.sources]
    assert not unsourced
    for row in CHECKS:
        assert all(isinstance(source, str) and len(source) > 20 for source in row.spec.sources), row.spec.id
