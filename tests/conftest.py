"""Shared test set-up.

The guard: a test that is not marked `integration` must never look at the
real machine. Building a Host on `/` or calling the real LiveSystem fails
the test at once (pre-commit's "don't write to the home directory", for
/proc, /sys and /dev).
"""

from __future__ import annotations

import os

import pytest

import kvmready.facts.live as live_module
import kvmready.host as host_module

_real_directory_init = host_module.DirectoryHost.__init__


@pytest.fixture(autouse=True)
def _no_real_machine(request, monkeypatch):
    if request.node.get_closest_marker("integration"):
        yield
        return

    def guarded_init(self, root: str = "/") -> None:
        try:
            resolved = os.path.realpath(root)
        except OSError:
            resolved = None  # the real __init__ says why
        if resolved == "/":
            pytest.fail("a unit test built a Host on the real root; use a fixture tree or mark it integration")
        _real_directory_init(self, root)

    def forbidden(*args, **kwargs):
        pytest.fail("a unit test used the real LiveSystem; use tests.fakes or mark it integration")

    monkeypatch.setattr(host_module.DirectoryHost, "__init__", guarded_init)
    for name in live_system_api():
        is_property = isinstance(vars(live_module.LiveSystem)[name], property)
        monkeypatch.setattr(live_module.LiveSystem, name, property(forbidden) if is_property else forbidden)
    yield


def live_system_api():
    """Every public method and property of the real LiveSystem: what a unit test must never reach."""
    return sorted(name for name in vars(live_module.LiveSystem) if not name.startswith("_"))
