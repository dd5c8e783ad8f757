"""The JSON <-> dataclass conversion every part of a manifest uses (``formats/manifest_model.py``).

A part is a dataclass deriving from :class:`Model`; its fields say how it is read and written:

* the JSON key is the field's name, its value is checked against the field's type (an ``int``
  is not a ``bool``, a ``float`` may be written whole), and a part, or a list or object of
  parts, is read by that part's :meth:`Model.from_json`; an object of plain values
  (``counters``, ``config``) is copied as it is;
* a key that is missing or null reads as the field's default, as None when the type allows
  None, and otherwise names itself in :class:`IncompleteManifest` (``shards[].records``);
* :func:`omitted` fields are left out of the JSON when None; :func:`extra_keys` holds the keys
  no other field knows, written back as they are, so reading then writing loses nothing;
  :func:`if_absent` reads a required field that older manifests lack.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import field
from typing import Any, TypeVar

_M = TypeVar("_M", bound="Model")


class IncompleteManifest(ValueError):
    """A manifest misses a field the model needs, or holds a value of the wrong type."""


def omitted(*, tolerant: bool = False) -> Any:
    """A field left out of the JSON when None (written only by some verbs or versions).

    Args:
        tolerant: A value of another shape (not an object where a part is due, not a list where
            a list is due) reads as None instead of failing: parts a hand edit may have broken
            and that have their own check (the signature) or are only informative.
    """
    return field(default=None, metadata={"omit_none": True, "tolerant": tolerant})


def extra_keys() -> Any:
    """The field that holds the keys no other field knows (written back as they are)."""
    return field(default_factory=dict, metadata={"extra": True})


def if_absent(value: Any) -> dict[str, Any]:
    """The metadata of a field always written, read as if the JSON held ``value`` when older
    manifests lack it: ``field(metadata=if_absent({}))``."""
    return {"if_absent": value}


def _jsonify(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, list | tuple):
        return [_jsonify(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonify(v) for k, v in value.items()}
    return value


class Model:
    """The dataclasses of a manifest: ``to_json`` and ``from_json`` by their fields (the module
    docstring says how)."""

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

    @classmethod
    def from_json(cls: type[_M], d: Any, where: str = "") -> _M:
        """Read this part from its JSON object.

        Args:
            d: The object.
            where: Where it stands in the manifest (``vocab.``), to name a bad field.

        Raises:
            IncompleteManifest: A field is missing or of the wrong type (its name).
        """
        fields = _fields(cls)
        known = [f.name for f, _ in fields if not f.metadata.get("extra")]
        if not isinstance(d, Mapping):
            raise IncompleteManifest(where + known[0])
        values: dict[str, Any] = {}
        for f, kind in fields:
            if f.metadata.get("extra"):
                values[f.name] = {k: v for k, v in d.items() if k not in known}
            else:
                values[f.name] = _read_field(f, kind, d.get(f.name), where)
        return cls(**values)


_FIELDS: dict[type, list[tuple[dataclasses.Field[Any], Any]]] = {}


def _fields(cls: type) -> list[tuple[dataclasses.Field[Any], Any]]:
    """The fields of a part with their types (resolved once: the annotations are strings)."""
    if cls not in _FIELDS:
        hints = typing.get_type_hints(cls)
        _FIELDS[cls] = [(f, hints[f.name]) for f in dataclasses.fields(cls)]
    return _FIELDS[cls]


def _optional(kind: Any) -> Any:
    """The type inside ``T | None``, or None when ``kind`` does not allow None."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(rest) < len(typing.get_args(kind)):
            (only,) = rest
            return only
    return None


def _read_field(f: dataclasses.Field[Any], kind: Any, value: Any, where: str) -> Any:
    name = where + f.name
    inner = _optional(kind)
    if value is None and "if_absent" in f.metadata:
        value = copy.deepcopy(f.metadata["if_absent"])
    if value is None:
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        if inner is not None:
            return None
        raise IncompleteManifest(name)
    kind = kind if inner is None else inner
    if f.metadata.get("tolerant") and not _shaped(value, kind):
        return None
    return _convert(value, kind, name)


def _shaped(value: Any, kind: Any) -> bool:
    """``value`` is the container ``kind`` needs (an object for a part, a list for a list)."""
    if isinstance(kind, type) and issubclass(kind, Model):
        return isinstance(value, Mapping)
    if typing.get_origin(kind) is list:
        return isinstance(value, list)
    return True


def _convert(value: Any, kind: Any, name: str) -> Any:
    """``value`` checked against ``kind`` (and converted: parts read, floats made floats)."""
    if kind is Any:
        return value
    origin = typing.get_origin(kind)
    if origin is list:
        if not isinstance(value, list):
            raise IncompleteManifest(name)
        (item,) = typing.get_args(kind)
        return [_convert(v, item, f"{name}[]") for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise IncompleteManifest(name)
        item = typing.get_args(kind)[1]
        if item is Any or item in (int, float, str, bool):
            # Counters and timings are copied as written: a whole float stays whole.
            return dict(value)
        return {k: _convert(v, item, f"{name}.{k}") for k, v in value.items()}
    if isinstance(kind, type) and issubclass(kind, Model):
        if not isinstance(value, Mapping):
            raise IncompleteManifest(name)
        return kind.from_json(value, f"{name}.")
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise IncompleteManifest(name)
    return float(value) if kind is float else value


__all__ = [
    "IncompleteManifest",
    "Model",
    "extra_keys",
    "if_absent",
    "omitted",
]
