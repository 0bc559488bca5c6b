"""The fakes stand in for the real machine only if they keep its interface.

FakeLiveSystem must answer everything LiveSystem does, with the same
parameters; the fake KVM backend, handle and VM may offer less than the
real ones (only what facts/live.py calls) but nothing the real ones lack.
The conftest guard is derived from LiveSystem itself, so a new live method
is kept away from unit tests by construction; the test below shows it.
"""

from __future__ import annotations

import inspect

import pytest
from conftest import live_system_api
from fakes import FakeHandle, FakeKvmBackend, FakeLiveSystem, FakeVm

from kvmready import kvmapi
from kvmready.facts.live import LiveSystem


def public(cls: type) -> dict:
    return {name: value for klass in reversed(cls.__mro__[:-1]) for name, value in vars(klass).items()
            if not name.startswith("_")}


def parameters(member) -> list:
    """The parameter names of a method (a property has none)."""
    if isinstance(member, (property, classmethod, staticmethod)):
        return []
    return [name for name in inspect.signature(member).parameters if name != "self"]


# Taken at import, before the guard (conftest) replaces LiveSystem's methods for each test.
REAL_LIVE_SYSTEM = public(LiveSystem)


def test_the_fake_live_system_answers_everything_the_real_one_does():
    real, fake = REAL_LIVE_SYSTEM, public(FakeLiveSystem)
    missing = sorted(set(real) - set(fake))
    assert not missing, f"FakeLiveSystem lacks {missing}"
    for name, member in real.items():
        assert isinstance(member, property) == isinstance(fake[name], property), name
        assert parameters(member) == parameters(fake[name]), name


@pytest.mark.parametrize("fake, real", [(FakeKvmBackend, kvmapi.KvmBackend), (FakeHandle, kvmapi.KvmHandle),
                                        (FakeVm, kvmapi.KvmVm)])
def test_the_fake_kvm_objects_offer_nothing_the_real_ones_lack(fake, real):
    real_api, fake_api = public(real), public(fake)
    # Test-only helpers of the backend (what was called, whether everything was closed) are not KVM's API.
    invented = sorted(set(fake_api) - set(real_api) - {"everything_closed", "operations", "root"})
    assert not invented, f"{fake.__name__} offers {invented}, which {real.__name__} does not"
    for name in set(fake_api) & set(real_api):
        real_params = parameters(real_api[name])
        if parameters(fake_api[name]) != ["args", "kwargs"]:  # a fake that accepts anything
            assert parameters(fake_api[name]) == real_params, name


def test_the_guard_covers_every_live_method():
    assert set(live_system_api()) == set(REAL_LIVE_SYSTEM)
    system = LiveSystem()
    for name in live_system_api():
        with pytest.raises(pytest.fail.Exception, match="real LiveSystem"):
            member = getattr(system, name)  # a property fails here
            member()
