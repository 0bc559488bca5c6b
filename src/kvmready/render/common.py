"""Small helpers several renderers share."""

from __future__ import annotations

from typing import Any, Mapping


def dig(mapping: Any, *keys: str) -> Any:
    """`dig(report.host, "kernel", "release")`: the nested value, or None where any level is missing or not a mapping."""
    for key in keys:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping
