"""CLI flags generated from the config dataclasses (``corpus_pipeline/config.py``).

A field declared with :func:`corpus_pipeline.config.option` becomes the flag ``--`` + its
name with dashes (``max_per_pack`` -> ``--max-per-pack``), with the field's help and default.
A flag the user did not give stays ``None`` in the parsed namespace, so the dataclass default
(or a preset's value) applies: the default is written once, in the dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from corpus_pipeline.errors import UserError

C = TypeVar("C")


def flag_name(f: dataclasses.Field[Any]) -> str:
    """The flag of a config field (``--max-per-pack`` for ``max_per_pack``)."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, int) and value >= 1_000_000:
        return f"{value:,}"
    return str(value)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None


def _base_type(hint: Any) -> Any:
    """``int`` for ``int | None``; the hint itself otherwise."""
    if typing.get_origin(hint) is tuple:
        return tuple
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if len(args) == 1 else hint


def add_options(
    p: argparse.ArgumentParser | Any,
    cls: type,
    *,
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    help_override: Mapping[str, str] | None = None,
    default_help: Mapping[str, str] | None = None,
) -> None:
    """Add one flag per field of the config dataclass ``cls`` to parser (or group) ``p``.

    A field whose flag the parser already has (``--seed`` of masking and packing) is skipped:
    one flag sets both.

    Args:
        p: An ``ArgumentParser`` or an argument group.
        cls: A config dataclass.
        only: Field names to add (default: all).
        skip: Field names not to add.
        help_override: Help text by field name, for a verb where the field means more (the
            default is still appended).
        default_help: The default's description by field name, for a verb whose default
            is not the field's (``pack --seed``: the input's seed).
    """
    hints = typing.get_type_hints(cls)
    wanted = set(only) if only is not None else None
    actions = p._actions if hasattr(p, "_actions") else []
    have = {s for a in actions for s in a.option_strings}
    for f in dataclasses.fields(cls):
        if (wanted is not None and f.name not in wanted) or f.name in skip:
            continue
        name = flag_name(f)
        if name in have:
            continue
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = (default_help or {}).get(f.name) or meta.get("default_help") or _show(default)
        text = (help_override or {}).get(f.name) or meta.get("help") or f.name.replace("_", " ")
        kwargs: dict[str, Any] = {
            "dest": f.name,
            "default": None,
            "help": f"{text} (default {shown})",
        }
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        base = _base_type(hints[f.name])
        strings = [name, *meta.get("aliases", ())]
        if base is bool:
            if default is False:
                kwargs["action"] = "store_true"
                kwargs.pop("metavar", None)
            else:
                kwargs["action"] = argparse.BooleanOptionalAction
        elif base is tuple:
            kwargs["type"] = _int_list
        else:
            kwargs["type"] = base
            kwargs.setdefault("metavar", {int: "N", float: "X"}.get(base, "TEXT"))
        p.add_argument(*strings, **kwargs)
        have.update(strings)


def from_args(args: argparse.Namespace, cls: type[C], base: Mapping[str, Any] | None = None) -> C:
    """The config ``cls`` from parsed flags: dataclass defaults, then ``base``, then the flags
    the user gave.

    Raises:
        UserError: A flag is below its field's minimum.
    """
    values = dict(base or {})
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        given = getattr(args, f.name, None)
        if given is None:
            continue
        minimum = f.metadata.get("minimum")
        if minimum is not None and given < minimum:
            raise UserError(f"{flag_name(f)} must be >= {minimum} (got {given})")
        values[f.name] = given
    return cls(**values)
