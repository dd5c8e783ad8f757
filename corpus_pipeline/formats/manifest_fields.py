"""The JSON <-> dataclass conversion every part of a manifest uses (``formats/manifest_model.py``).

Typed field access that names the missing or mistyped key, fields left out of the JSON when
None, and unknown keys kept and written back, so reading then writing a manifest loses nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import field
from typing import Any, TypeVar

_T = TypeVar("_T")


class IncompleteManifest(ValueError):
    """A manifest misses a field the model needs, or holds a value of the wrong type."""


def omitted() -> Any:
    """A field left out of the JSON when None (written only by some verbs or versions)."""
    return field(default=None, metadata={"omit_none": True})


def extra_keys() -> Any:
    """The field that holds the keys no other field knows (written back as they are)."""
    return field(default_factory=dict, metadata={"extra": True})


def _jsonify(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, list | tuple):
        return [_jsonify(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonify(v) for k, v in value.items()}
    return value


class Model:
    """``to_json`` for the dataclasses of a manifest: fields in order, ``None`` left out where the
    field says so, unknown keys (``extra``) written back."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this part (plain dicts, lists and scalars)."""
        out: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.metadata.get("extra"):
                extra = value
            elif value is not None or not f.metadata.get("omit_none"):
                out[f.name] = _jsonify(value)
        return {**extra, **out}


def _known(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls) if not f.metadata.get("extra"))


def unknown_keys(cls: type, d: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``d`` that ``cls`` has no field for (kept as they are)."""
    known = _known(cls)
    return {k: v for k, v in d.items() if k not in known}


def get_typed(d: Mapping[str, Any], key: str, kind: type[_T], where: str = "") -> _T:
    """``d[key]`` checked to be a ``kind`` (an int is not a bool, a float may be an int)."""
    if not isinstance(d, Mapping) or key not in d:
        raise IncompleteManifest(f"{where}{key}")
    value = d[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise IncompleteManifest(f"{where}{key}")
    return value  # type: ignore[no-any-return]


def opt_typed(d: Mapping[str, Any], key: str, kind: type[_T], where: str = "") -> _T | None:
    """:func:`get_typed`, or None when the key is missing or null."""
    return None if d.get(key) is None else get_typed(d, key, kind, where)


def get_dict(d: Mapping[str, Any], key: str, where: str = "") -> dict[str, Any]:
    """A copy of ``d[key]``, checked to be an object."""
    return dict(get_typed(d, key, dict, where))


def opt_dict(d: Mapping[str, Any], key: str, where: str = "") -> dict[str, Any] | None:
    """:func:`get_dict`, or None when the key is missing or null."""
    return None if d.get(key) is None else get_dict(d, key, where)


__all__ = [
    "IncompleteManifest",
    "Model",
    "extra_keys",
    "get_dict",
    "get_typed",
    "omitted",
    "opt_dict",
    "opt_typed",
    "unknown_keys",
]
