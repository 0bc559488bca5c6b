"""The `host` section of the report: the facts a reader wants at a glance.

Each field is read defensively: a fact whose parser failed shows as null
here, while the checks that need it report the error.
"""

from __future__ import annotations

from typing import Optional

from kvmready.facts import Facts, safe
from kvmready.facts.modules import PARAVIRTUAL_KVM_MODULES
from kvmready.kvmabi import KVM_DEVICE


def empty_host(hostname: Optional[str] = None, live: bool = True, source: str = "live") -> dict:
    """The host section when nothing could be read: every fact unknown."""
    return {
        "hostname": hostname,
        "arch": None,
        "live": live,
        "source": source,
        "kernel": {"release": None, "version": None},
        "os": {"id": None, "version": None, "name": None},
        "cpu": {"vendor": None, "model": None, "logical_cpus": None, "virtualization": None},
        "hypervisor": None,
        "hypervisor_vendor": None,
        "container": None,
        "kvm": {"module": None, "device": None, "api_version": None, "paravirtual": None},
        "memory_bytes": None,
    }


def host_summary(facts: Facts) -> dict:
    live = safe(lambda: facts.live)
    unknown = empty_host()
    summary = {
        "hostname": safe(lambda: facts.hostname),
        "arch": safe(lambda: facts.arch.label),
        "live": facts.is_live,
        "source": _source(facts),
        "kernel": safe(lambda: _kernel(facts)) or unknown["kernel"],
        "os": safe(lambda: facts.os.to_dict()) or unknown["os"],
        "cpu": safe(lambda: _cpu(facts)) or unknown["cpu"],
        "hypervisor": safe(lambda: facts.hypervisor.name),
        "hypervisor_vendor": safe(lambda: facts.hypervisor.vendor),
        "container": safe(lambda: facts.container.name),
        "kvm": {
            "module": safe(lambda: facts.kvm_module),
            "device": safe(lambda: _device(facts)),
            "api_version": live.kvm.api_version if live is not None else None,
            "paravirtual": safe(lambda: _paravirtual(facts)),
        },
        "memory_bytes": safe(lambda: facts.memory.total_bytes),
    }
    if facts.captured_live is not None:
        summary["captured_at"] = facts.captured_live.captured_at
    return summary


def _source(facts: Facts) -> str:
    if facts.is_live:
        return "live"
    if facts.captured_live is not None:
        return "snapshot"
    return "root"


def _kernel(facts: Facts) -> dict:
    kernel = facts.kernel
    return {"release": kernel.release, "version": list(kernel.version) if kernel.version else None}


def _cpu(facts: Facts) -> dict:
    cpu = facts.cpu
    # A Xen PV guest lists vmx it can never use: report what is usable.
    usable = None if safe(lambda: facts.hypervisor.paravirtual_xen) else cpu.virtualization
    return {
        "vendor": cpu.vendor,
        "model": cpu.model,
        "logical_cpus": cpu.logical_cpus,
        "virtualization": usable,
    }


def _paravirtual(facts: Facts) -> Optional[bool]:
    module = facts.kvm_module
    return None if module is None else module in PARAVIRTUAL_KVM_MODULES


def _device(facts: Facts) -> Optional[bool]:
    devices = facts.devices
    node = devices.get(KVM_DEVICE)
    if node.error:
        return None
    if not node.present and facts.dev_uncaptured:
        return None  # /dev not captured: unknown, not absent
    return node.is_expected_char_device

