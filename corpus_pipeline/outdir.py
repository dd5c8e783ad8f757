"""Who owns an output folder: a fingerprint of what is written there, a lock, and refusals.

A verb that writes a dataset (``extract``, ``mask``, ``pack``, ``run``) first *claims* its output
folder (:func:`claim`):

1. It takes the folder's lock, ``.corpus-pipeline.lock`` (``outdir_lock.py``: one run writes a
   folder at a time). The lock is released when the verb ends, successfully or not
   (:func:`releasing`).
2. It looks at what the folder holds. The *fingerprint* of a run is the sha256 of a canonical
   JSON of what determines its output: the verb, its config dataclasses, its inputs (paths,
   sizes, mtimes; the input manifest's sha256 for a dataset input), the vocabulary's sha256,
   formats, shard count, shard name and the package version. It is recorded in
   ``.corpus-pipeline.json`` while the run is unfinished, in every completion marker, and in
   the manifest (``manifest.json`` or ``run.json``) of the finished dataset. The folder is
   accepted when it is empty, when it holds an unfinished run of the same fingerprint (the run
   resumes: shards whose marker has the fingerprint are kept) or a finished dataset of the same
   fingerprint (the run redoes it: same bytes, see the determinism rules). Anything else is
   refused in one line naming the difference, unless ``--overwrite`` is given: then the folder
   is emptied first, but only when it looks like ours (our manifest, state file, markers or
   lock) and holds no file that corpus-pipeline does not write. So a typo'd ``--output ~
   --overwrite`` never removes a home folder.
3. At the end of a successful run, :func:`finish` removes every file the manifests do not name
   (stale shards of another shard count, scratch folders, temp names), then the state file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from corpus_pipeline import __version__, fsio, outdir_lock
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.common import is_temp_name
from corpus_pipeline.outdir_lock import LOCK, TAKEOVER

STATE = ".corpus-pipeline.json"
MANIFESTS = ("manifest.json", "run.json")
# Files a user (or another verb) adds to a finished dataset and a rerun keeps.
REPORTS = ("report.png",)
# Folders and names our verbs write in an output folder: anything else is not ours.
_FORMAT_DIRS = ("hdf5", "tfrecord", "mmap")
_SCRATCH_DIRS = (".markers", ".work", ".chunks")
_RUN_DIRS = ("docs", "unpacked", "packed", "validation")
_DOC_SHARD = re.compile(r".+_\d{5,}\.(txt|jsonl)")
_KINDS = ("documents", "instances", "packed")

_held: list[tuple[str, str]] = []  # (folder, lock text) of the locks this process holds
# Folders of _held that their claim created (local ones), with the highest folder it created
# on the way (``--output new/a/b`` creates ``new`` too).
_created: dict[str, str] = {}


def fingerprint(verb: str, **parts: Any) -> dict[str, Any]:
    """What determines a verb's output, and its sha256 (``{"sha256": ..., **what}``).

    ``parts`` are JSON-able values (config dataclasses as ``asdict``, inputs, formats...).
    """
    what = {"verb": verb, "version": __version__, **parts}
    canonical = json.dumps(what, sort_keys=True, separators=(",", ":"), default=str)
    # The JSON form (tuples as lists), so a fingerprint read back from a file compares equal.
    return {
        "sha256": hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        **json.loads(canonical),
    }


def input_files(paths: Iterable[str]) -> dict[str, Any]:
    """The inputs of a run as a fingerprint part: every file at or below ``paths`` with its
    size and mtime, reduced to a count and a sha256 (a manifest need not list 10k files)."""
    rows = [
        [fsio.abspath(p), size, mtime] for path in paths for p, size, mtime in fsio.stat_files(path)
    ]
    canonical = json.dumps(rows, separators=(",", ":"))
    return {"files": len(rows), "sha256": hashlib.sha256(canonical.encode("utf-8")).hexdigest()}


def manifest_files(manifest: dict[str, Any]) -> list[str]:
    """Paths (relative to the dataset folder) of every file a manifest names, itself included."""
    files = ["manifest.json"]
    for shard in manifest.get("shards", []):
        if "path" in shard:  # a documents shard
            files.append(shard["path"])
        for entries in (shard.get("files") or {}).values():
            files.extend(e["path"] for e in entries)
    files.extend(e["path"] for e in (manifest.get("megatron") or {}).get("files", []))
    return files


F = TypeVar("F", bound=Callable[..., Any])


def releasing(fn: F) -> F:
    """Decorate a verb's ``run``: the locks it claims are released when it returns or raises.

    When it raises, a folder that its claim created and that holds nothing of value yet (see
    :func:`_discard_unfinished`) is removed: a failed command leaves no empty output behind.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        depth = len(_held)
        failed = True
        try:
            result = fn(*args, **kwargs)
            failed = False
            return result
        finally:
            while len(_held) > depth:
                out, text = _held.pop()
                root = _created.pop(out, None)
                if failed and root is not None:
                    _discard_unfinished(out, text, root)
                else:
                    outdir_lock.release(out, text)

    return wrapper  # type: ignore[return-value]


def _worthless(rel: str) -> bool:
    """A file a failed run may lose: its state file, scratch (spills, chunks), temp names.
    Shards, completion markers and manifests are kept (a rerun resumes from them)."""
    parts = rel.split("/")
    return (
        rel == STATE
        or any(p in (".work", ".chunks") for p in parts[:-1])
        or is_temp_name(parts[-1])
    )


def _discard_unfinished(out: str, text: str, root: str) -> None:
    """After a failure: remove ``out`` (which this run created, with the folders up to
    ``root``) when everything in it is :func:`_worthless`, else only release its lock. Only
    what the listing names and empty folders go: a file that appears meanwhile keeps its
    folder."""
    files = _listing(out)
    if files and not all(_worthless(f) for f in files):
        outdir_lock.release(out, text)
        return
    fsio.delete([os.path.join(out, f) for f in files])
    outdir_lock.release(out, text)
    _remove_empty_dirs(out)
    d = os.path.abspath(out)
    while True:
        try:
            os.rmdir(d)
        except OSError:  # not empty: something that is not ours appeared
            return
        if d == root:
            return
        d = os.path.dirname(d)


# --- what the folder holds ------------------------------------------------------------------


def _listing(out: str) -> list[str]:
    """Every file below ``out`` (relative, ``/``-separated), our lock files excepted."""
    # Both filesystems list ``out`` + separator + the relative path.
    prefix = out.rstrip("/") + "/"
    rels = [p[len(prefix) :].replace(os.sep, "/") for p, _ in fsio.list_files(out)]
    return sorted(r for r in rels if r not in (LOCK, TAKEOVER))


def _ours(rel: str) -> bool:
    """A path our verbs write in an output folder (``run``'s sub-datasets included)."""
    parts = rel.split("/")
    if len(parts) > 1 and parts[0] in _RUN_DIRS:
        return _ours("/".join(parts[1:]))
    if len(parts) > 1:
        return parts[0] in _FORMAT_DIRS + _SCRATCH_DIRS or is_temp_name(parts[-1])
    name = parts[0]
    return (
        name in (*MANIFESTS, *REPORTS, STATE)
        or _DOC_SHARD.fullmatch(name) is not None
        or is_temp_name(name)
    )


def _read_json(out: str, rel: str) -> Any:
    path = fsio.join(out, rel)
    try:
        return json.loads(fsio.read_text(path))
    except (OSError, ValueError, UserError):
        return None


def _owner(out: str, files: Sequence[str]) -> tuple[str, dict[str, Any] | None] | None:
    """What made the folder: ``("unfinished" | "finished" | "markers", fingerprint or None)``;
    None when nothing in it says it is ours."""
    if STATE in files:
        state = _read_json(out, STATE)
        fp = state.get("fingerprint") if isinstance(state, dict) else None
        return "unfinished", fp if isinstance(fp, dict) else None
    for rel in MANIFESTS:
        if rel in files:
            m = _read_json(out, rel)
            if isinstance(m, dict) and (
                (rel == "run.json" and "datasets" in m) or m.get("kind") in _KINDS
            ):
                fp = m.get("fingerprint")
                return "finished", fp if isinstance(fp, dict) else None
    markers = [f for f in files if f.split("/")[-2:-1] == [".markers"] and f.endswith(".json")]
    if markers:
        shas = set()
        for rel in markers:
            m = _read_json(out, rel)
            shas.add(m.get("fingerprint") if isinstance(m, dict) else None)
        return "markers", {"sha256": shas.pop()} if len(shas) == 1 else None
    return None


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    flat: dict[str, Any] = {}
    for k, v in d.items():
        flat.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
    return flat


def _show(v: Any) -> str:
    if isinstance(v, list):
        return ",".join(str(x) for x in v) or "none"
    return "none" if v is None else str(v)


def describe_difference(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """``seed 1 vs 2, shards 8 vs 4``: what differs between two fingerprints, in a few words."""
    if not old or len(old) == 1:  # no fingerprint, or only a marker's sha256
        return "configuration unknown: made by an older corpus-pipeline or another run"
    if old.get("verb") != new.get("verb"):
        return f"made by `{old.get('verb')}`, this is `{new.get('verb')}`"
    a, b = _flatten(old), _flatten(new)
    diffs: list[str] = []
    for key in sorted(set(a) | set(b), key=lambda k: (k.startswith("inputs"), k)):
        if key == "sha256" or a.get(key) == b.get(key):
            continue
        leaf = key.split(".")[-1]
        if key.startswith("inputs"):
            item = "other inputs"
        elif key == "version":
            item = f"corpus-pipeline {_show(a.get(key))} vs {_show(b.get(key))}"
        else:
            item = f"{leaf} {_show(a.get(key))} vs {_show(b.get(key))}"
        if item not in diffs:
            diffs.append(item)
    return ", ".join(diffs[:4]) + (f" and {len(diffs) - 4} more" if len(diffs) > 4 else "")


def _examples(files: Sequence[str]) -> str:
    more = f" and {len(files) - 3} more" if len(files) > 3 else ""
    return ", ".join(files[:3]) + more


def _check(out: str, files: list[str], fp: dict[str, Any], overwrite: bool) -> str:
    """Refuse the folder or say what to do with it: ``fresh``, ``resume``, ``redo``, ``clear``."""
    if not files:
        return "fresh"
    owner = _owner(out, files)
    strangers = [f for f in files if not _ours(f)]
    if owner is None or strangers:
        listed = strangers or files
        return _refuse(
            f"{out} holds files that corpus-pipeline did not write ({_examples(listed)}): "
            + (
                "not removing them, even with --overwrite: choose another --output"
                if overwrite
                else "choose another --output, or empty it first"
            )
        )
    if overwrite:
        return "clear"
    state, old = owner
    if old is not None and old.get("sha256") == fp["sha256"]:
        return "resume" if state != "finished" else "redo"
    what = {
        "unfinished": "an unfinished dataset",
        "finished": "a dataset",
        "markers": "shards of an unfinished dataset",
    }[state]
    return _refuse(
        f"{out} holds {what} made with another configuration "
        f"({describe_difference(old, fp)}): pass --overwrite to replace it, or choose another "
        "--output"
    )


def _refuse(message: str) -> str:
    raise UserError(message)


def _remove(out: str, rels: Sequence[str]) -> None:
    fsio.delete([fsio.join(out, r) for r in rels])
    if not fsio.is_remote(out):
        _remove_empty_dirs(out)


def _remove_empty_dirs(out: str) -> None:
    for d, _, _ in os.walk(out, topdown=False):  # bottom-up: a folder after its subfolders
        if d != out:
            with contextlib.suppress(OSError):  # not empty: kept
                os.rmdir(d)


def _top_strangers(out: str) -> list[str]:
    """Entries of a local folder's top level that are not ours: found without walking a big
    folder (a typo'd ``--output ~``) to the bottom."""
    try:
        names = sorted(os.listdir(out))
    except OSError:
        return []
    dirs = (*_FORMAT_DIRS, *_SCRATCH_DIRS, *_RUN_DIRS)
    return [
        n + "/" if os.path.isdir(os.path.join(out, n)) else n
        for n in names
        if n not in (LOCK, TAKEOVER)
        and not (n in dirs if os.path.isdir(os.path.join(out, n)) else _ours(n))
    ]


def claim(out: str, fp: dict[str, Any], *, overwrite: bool = False) -> str:
    """Lock ``out`` (created if need be) and check it may receive a run of fingerprint ``fp``.

    Returns what the run does with what is there: ``fresh`` (nothing there), ``resume`` (an
    unfinished run of the same fingerprint: keep its finished shards), ``redo`` (a finished
    dataset of the same fingerprint: written again, its manifest removed first) or ``clear``
    (``--overwrite``: everything was removed). The lock is held until the function decorated
    with :func:`releasing` returns.

    Raises:
        UserError: The folder is being written by another run, or holds something else.
    """
    root = None
    if not fsio.is_remote(out):
        d = os.path.abspath(out)
        while not os.path.lexists(d) and os.path.dirname(d) != d:
            root, d = d, os.path.dirname(d)
    fsio.make_output_dir(out)
    text = outdir_lock.acquire(out)
    _held.append((out, text))
    if root is not None:
        _created[out] = root
    top = [] if fsio.is_remote(out) else _top_strangers(out)
    files = top or _listing(out)
    action = _check(out, files, fp, overwrite)
    if action == "clear":
        _remove(out, files)
    state = json.dumps({"fingerprint": fp, "started": outdir_lock.now()}, indent=2, sort_keys=True)
    fsio.write_text(fsio.join(out, STATE), state + "\n")
    if action == "redo":  # the folder must not look finished while it is rewritten
        _remove(out, [f for f in files if posixpath.basename(f) in MANIFESTS])
    return action


def finish(out: str, keep: Iterable[str]) -> list[str]:
    """After a successful run: remove every file below ``out`` but ``keep`` (relative paths:
    the files the manifests name, the manifests) and reports, then the state file.

    Returns what was removed (stale shards, scratch files).
    """
    keep_set = set(keep)
    files = _listing(out)
    stale = [
        f
        for f in files
        if f not in keep_set and f != STATE and posixpath.basename(f) not in REPORTS
    ]
    _remove(out, stale)
    fsio.delete([fsio.join(out, STATE)])
    return stale
