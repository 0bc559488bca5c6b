"""The registry, the severity table and the DESIGN contracts agree."""

from __future__ import annotations

import re

from kvmready.checks import _ALL, CATEGORY_ORDER, PRIORITY, REGISTRY
from kvmready.targets import SEVERITIES

DESIGN_REQUIRED_IDS = {
    "cpu.arch", "cpu.virtualization", "kernel.version", "kvm.module", "kvm.device",
    "kvm.access", "kvm.api", "kvm.guest", "host.hypervisor",
}


def test_every_defined_check_is_registered_once_in_priority_order():
    assert len(PRIORITY) == len(set(PRIORITY))
    assert set(PRIORITY) == set(_ALL)
    assert list(REGISTRY) == list(PRIORITY)


def test_every_check_has_a_severity_for_both_targets():
    assert set(SEVERITIES) == set(REGISTRY)


def test_the_ids_the_design_requires_exist():
    assert DESIGN_REQUIRED_IDS <= set(REGISTRY)


def test_ids_are_stable_shapes_and_categories_are_known():
    for check_id, spec in REGISTRY.items():
        assert re.fullmatch(r"[a-z]+\.[a-z0-9-]+", check_id)
        assert spec.id == check_id
        assert check_id.split(".")[0] == spec.category
        assert spec.category in CATEGORY_ORDER


def test_every_check_explains_itself():
    for spec in REGISTRY.values():
        for text in (spec.title, spec.what, spec.why, spec.fix):
            assert text.strip(), spec.id
