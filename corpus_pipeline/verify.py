"""Verify a dataset folder against its manifest: every file, every record, every value.

This module decides what to check and in which order; each format checks its own shards
(``formats/checks/``: the HDF5, TFRecord and mmap schemas, values and layouts, the Megatron
sentence dataset, documents). What is checked:

* **The manifest itself** (read through ``formats/manifest.py``): its signature matches its
  content (an edit that drops a format or changes the seed would otherwise go unnoticed; an
  unsigned, older manifest is a warning), its shard indices are 0..N-1, its totals add up, and
  no format folder on disk is missing from ``formats``.
* **Files**: every file the layout needs (``formats/registry.py``) is listed in the manifest
  and present; its SHA-256 equals the manifest's (skipped by ``quick``); no stray temp files
  (``.<name>.tmp-*`` left by a killed writer) and no files the manifest does not list in the
  format folders (DLE's loader would pick up any name containing ``training``).
* **Each shard in each format**: the format's checks (``formats/checks/<format>.py``), then
  the records and instances they found against the manifest's.
* The optional Megatron sentence-level dataset (``manifest.megatron``).
* **Documents folders** (``extract``): each shard's SHA-256 and document count, missing and
  unlisted shard files.

Every file is streamed: memory does not grow with the shard size.

This is not a Beam pipeline on purpose: verification is I/O-bound and per file, and the
result must be read on the launcher anyway. Shards are verified in parallel by a process pool
(``workers``); the problems come back in a fixed order (shard, then format), whatever the
scheduling. A progress bar over the files (on stderr, only on a terminal, like the other
verbs' bars) shows how far it got.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from corpus_pipeline.errors import UserError
from corpus_pipeline.formats import registry
from corpus_pipeline.formats.checks import SHARD_CHECKS
from corpus_pipeline.formats.checks.common import CheckResult, CheckSpec, line
from corpus_pipeline.formats.checks.documents import check_document_shard
from corpus_pipeline.formats.checks.mmap import check_megatron
from corpus_pipeline.formats.common import is_temp_name, sha256_file
from corpus_pipeline.formats.documents import SUFFIX as DOC_SUFFIX
from corpus_pipeline.formats.manifest import (
    MANIFEST,
    is_signed,
    parse_manifest,
    read_manifest,
    signature_problem,
    unsigned_warning,
)
from corpus_pipeline.formats.manifest_model import (
    DatasetManifest,
    DocumentsManifest,
    FileEntry,
    Megatron,
    ShardEntry,
)

__all__ = ["VerifyReport", "verify_dataset", "run_verification", "is_temp_name"]

# A dataset with less than this many bytes of shards is verified in-process by default: a
# process pool costs more to start than it saves.
_POOL_MIN_BYTES = 64 << 20
_Task = tuple[CheckSpec, str, ShardEntry | Megatron]


@dataclass
class VerifyReport:
    """What :func:`run_verification` found.

    Attributes:
        problems: One line per problem, each naming the file (empty when all holds).
        shards: Shards checked.
        formats: Formats checked.
        files: Files checked.
        records: Records read (rows, records or sequences, all formats together).
        quick: True when the SHA-256 checks were skipped.
        warnings: Lines worth a look that are not failures (an unsigned manifest written
            before manifests were signed).
        kind: ``instances``, ``packed`` or ``documents`` (a folder written by ``extract``).
    """

    problems: list[str] = field(default_factory=list)
    shards: int = 0
    formats: tuple[str, ...] = ()
    files: int = 0
    records: int = 0
    quick: bool = False
    warnings: list[str] = field(default_factory=list)
    kind: str = "instances"

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def add(self, res: CheckResult) -> None:
        """Adds one check's problems and counts."""
        self.problems.extend(res.problems)
        self.files += res.files
        self.records += res.records

    def summary(self) -> str:
        """The one-line summary printed on success (or the problem count)."""
        if self.kind == "documents":
            what = (
                f"{self.shards} document shard{'s' if self.shards != 1 else ''}, "
                f"{self.files} files, {self.records} documents checked"
            )
        else:
            what = (
                f"{self.shards} shard{'s' if self.shards != 1 else ''} x "
                f"{len(self.formats)} format{'s' if len(self.formats) != 1 else ''} "
                f"({', '.join(self.formats)}), {self.files} files, {self.records} records checked"
            )
        sha = "sha256 skipped (--quick)" if self.quick else "sha256 verified"
        if self.ok:
            return f"OK: {what}, {sha}"
        return f"FAILED: {len(self.problems)} problem(s) in {what}"


def _progress(total: int) -> tqdm:
    """A bar over the files checked, as the other verbs show theirs (stderr, terminals only)."""
    return tqdm(total=total, desc="verify", unit="file", disable=None, file=sys.stderr)


# ------------------------------------------------------------------------------------------
# Files and shards


def _sha_problem(path: Path, want: str | None) -> str | None:
    got = sha256_file(path)
    if got == want:
        return None
    return line(path, f"sha256 {got[:16]}... differs from the manifest's {str(want)[:16]}...")


def _check_entries(spec: CheckSpec, entries: Sequence[FileEntry], res: CheckResult) -> None:
    """Presence and SHA-256 of manifest file entries."""
    for e in entries:
        path = Path(spec.out_dir) / e.path
        res.files += 1
        if not path.is_file():
            res.problems.append(line(path, "missing"))
        elif not spec.quick and (problem := _sha_problem(path, e.sha256)):
            res.problems.append(problem)


def _layout(spec: CheckSpec, fmt: str, shard: ShardEntry) -> list[str]:
    """The files the shard must have in ``fmt`` (the names of an older version when those are
    the ones listed: packed HDF5 shards were renamed, the old names are still valid)."""
    expected = registry.shard_files(fmt, spec.name, shard.index, spec.packed)
    legacy = registry.legacy_shard_files(fmt, spec.name, shard.index, spec.packed)
    if legacy is not None and shard.paths(fmt) == legacy:
        return legacy
    return expected


def _check_listing(spec: CheckSpec, fmt: str, shard: ShardEntry, res: CheckResult) -> None:
    """The manifest lists exactly the layout's files, each present with its sha256."""
    out = Path(spec.out_dir)
    expected = _layout(spec, fmt, shard)
    listed = shard.paths(fmt)
    if listed is None:
        res.problems.append(line(out / MANIFEST, f"shard {shard.index} lists no {fmt} files"))
        unhashed = dataclasses.replace(spec, quick=True)
        _check_entries(unhashed, [FileEntry(rel, "") for rel in expected], res)
        return
    for rel in expected:
        if rel not in listed:
            res.problems.append(
                line(out / rel, f"not listed in the manifest for shard {shard.index} ({fmt})")
            )
            if not (out / rel).is_file():
                res.problems.append(line(out / rel, "missing"))
    for rel in listed:
        if rel not in expected:
            res.problems.append(
                line(
                    out / rel, f"listed for shard {shard.index} ({fmt}) but not part of its layout"
                )
            )
    _check_entries(spec, shard.files[fmt], res)


def _verify_shard_format(spec: CheckSpec, fmt: str, shard: ShardEntry) -> CheckResult:
    """Every check of one shard in one format (runs in a worker process)."""
    res = CheckResult()
    if shard.is_empty:
        return res  # no files to check (files left at its names are strays: _stray_files)
    _check_listing(spec, fmt, shard, res)
    found = SHARD_CHECKS[fmt](spec, shard.index, _layout(spec, fmt, shard), res)
    if found is not None:
        (records, instances), where = found
        if records != shard.records:
            res.problems.append(
                line(where, f"{records} records, the manifest says {shard.records}")
            )
        if instances != shard.instances:
            res.problems.append(
                line(where, f"{instances} instances, the manifest says {shard.instances}")
            )
    return res


def _run_task(task: _Task) -> CheckResult:
    spec, fmt, payload = task
    if isinstance(payload, Megatron):
        res = CheckResult()
        listed = {e.path for e in payload.files}
        for rel in (f"{payload.prefix}.bin", f"{payload.prefix}.idx"):
            if rel not in listed:
                res.problems.append(
                    line(Path(spec.out_dir) / MANIFEST, f"megatron: {rel} is not listed in 'files'")
                )
        _check_entries(spec, payload.files, res)
        check_megatron(spec, payload, res)
        return res
    return _verify_shard_format(spec, fmt, payload)


def _task_files(task: _Task) -> int:
    """Files a task checks (what the progress bar counts)."""
    spec, fmt, payload = task
    if isinstance(payload, Megatron):
        return len(payload.files)
    if payload.is_empty:
        return 0
    return len(payload.files.get(fmt) or _layout(spec, fmt, payload))


def _run_tasks(tasks: list[_Task], workers: int) -> Iterator[CheckResult]:
    """Results in task order, whatever the scheduling."""
    if workers > 1 and len(tasks) > 1:
        # spawn: the parent may hold h5py/tokenizers threads that fork would copy mid-state.
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx) as ex:
            yield from ex.map(_run_task, tasks)  # map keeps the task order
    else:
        yield from (_run_task(t) for t in tasks)


def _temp_file_problems(entries: Iterable[os.DirEntry[str]]) -> list[str]:
    return [
        line(e.path, "stray temp file (a writer was killed): delete it")
        for e in entries
        if is_temp_name(e.name)
    ]


def _scan(d: Path) -> list[os.DirEntry[str]]:
    return sorted(os.scandir(d), key=lambda e: e.name)


def _stray_files(out: Path, manifest: DatasetManifest, formats: Sequence[str]) -> list[str]:
    """Temp files in the folder and its ``formats`` folders, and files the manifest omits."""
    listed = {e.path for shard in manifest.shards for es in shard.files.values() for e in es}
    if manifest.megatron is not None:
        listed.update(e.path for e in manifest.megatron.files)
    problems = _temp_file_problems(e for e in _scan(out) if e.is_file())
    for fmt in formats:
        d = out / fmt
        if not d.is_dir():
            continue
        for entry in _scan(d):
            if is_temp_name(entry.name):
                problems.extend(_temp_file_problems([entry]))
            elif entry.is_file() and f"{fmt}/{entry.name}" not in listed:
                problems.append(
                    line(
                        entry.path, "not listed in the manifest (consumers may read it): remove it"
                    )
                )
    return problems


def _unlisted_format_folders(out: Path, manifest: DatasetManifest) -> list[str]:
    """Format folders with files on disk that the manifest does not list (an edited or stale
    manifest: nothing would check them, yet consumers pointed at the folder read them)."""
    problems = []
    for fmt in registry.FORMATS:
        d = out / fmt
        if fmt in manifest.formats or not d.is_dir():
            continue
        if any(e.is_file() for e in os.scandir(d)):
            problems.append(
                line(
                    d,
                    f"a {fmt} folder the manifest does not list (formats: "
                    f"{', '.join(manifest.formats) or 'none'}): "
                    "remove it, or re-run the command that wrote the dataset",
                )
            )
    return problems


def _manifest_problems(out: Path, manifest: DatasetManifest) -> list[str]:
    """Shard indices and totals that do not add up, format folders the manifest omits."""
    mpath = out / MANIFEST
    problems = _unlisted_format_folders(out, manifest)
    indices = [s.index for s in manifest.shards]
    if sorted(indices) != list(range(len(indices))):
        problems.append(line(mpath, f"shard indices {indices} are not 0..{len(indices) - 1}"))
    for key in ("instances", "records"):
        total = sum(getattr(s, key) for s in manifest.shards)
        if getattr(manifest.totals, key) != total:
            problems.append(
                line(
                    mpath,
                    f"totals.{key} is {getattr(manifest.totals, key)} but the shards add up "
                    f"to {total}",
                )
            )
    return problems


def _verify_documents(out: Path, manifest: DocumentsManifest, report: VerifyReport) -> None:
    """A documents folder (``extract``, or ``run``'s ``docs/``): every shard file's sha256 and
    document count against the manifest, missing and unlisted shard files, temp files."""
    mpath = out / MANIFEST
    suffix = DOC_SUFFIX.get(manifest.format, ".txt")
    listed: set[str] = set()
    with _progress(len(manifest.shards)) as bar:
        for i, shard in enumerate(manifest.shards):
            listed.add(shard.path)
            path = out / shard.path
            res = CheckResult(files=1)
            if not shard.path or not path.is_file():
                res.problems.append(line(path if shard.path else mpath, f"shard {i}: missing"))
            else:
                if not report.quick and (problem := _sha_problem(path, shard.sha256)):
                    res.problems.append(problem)
                check_document_shard(path, manifest.format, shard.documents, res)
            report.add(res)
            bar.update(1)
    listed_total = sum(s.documents for s in manifest.shards)
    if manifest.documents != listed_total:
        report.problems.append(
            line(
                mpath, f"documents is {manifest.documents} but the shards add up to {listed_total}"
            )
        )
    for entry in _scan(out):
        if not entry.is_file():
            continue
        if is_temp_name(entry.name):
            report.problems.extend(_temp_file_problems([entry]))
        elif entry.name.endswith((".txt", ".jsonl", suffix)) and entry.name not in listed:
            report.problems.append(
                line(entry.path, "not listed in the manifest (consumers may read it): remove it")
            )


def _spec_of(out_dir: str, manifest: DatasetManifest, quick: bool) -> CheckSpec:
    return CheckSpec(
        out_dir=out_dir,
        name=manifest.name,
        packed=manifest.packed,
        s=manifest.max_seq_length,
        p=manifest.max_predictions,
        k=(manifest.max_per_pack or 1) if manifest.packed else 1,
        vocab_size=manifest.vocab.size,
        quick=quick,
    )


def _pick_formats(
    out: str, manifest: DatasetManifest, formats: Sequence[str] | None
) -> tuple[str, ...]:
    have = [f for f in manifest.formats if f in registry.FORMATS]
    if formats is None:
        return tuple(have)
    missing = [f for f in formats if f not in have]
    if missing:
        raise UserError(
            f"{out}: has no {', '.join(missing)} shards (it has {', '.join(have) or 'none'})"
        )
    return tuple(f for f in have if f in formats)


def _pool_size(out: str, tasks: list[_Task]) -> int:
    """One process per core when the shards add up to more than ``_POOL_MIN_BYTES``, else 1."""
    total = 0
    for _, fmt, payload in tasks:
        if isinstance(payload, ShardEntry):
            for e in payload.files.get(fmt) or []:
                p = Path(out) / e.path
                total += p.stat().st_size if p.is_file() else 0
    return (os.cpu_count() or 1) if total >= _POOL_MIN_BYTES else 1


def run_verification(
    out_dir: str | os.PathLike[str],
    formats: Sequence[str] | None = None,
    quick: bool = False,
    workers: int | None = 1,
) -> VerifyReport:
    """Verifies a dataset folder (see the module docstring for every check).

    Args:
        out_dir: The dataset folder (with ``manifest.json``).
        formats: Formats to check (default: every format the manifest lists).
        quick: Skip the SHA-256 of every file (truncation and structure are still caught).
        workers: Processes verifying shards in parallel (``spawn``ed: a calling script needs
            the ``if __name__ == "__main__":`` guard); 1 (the default) verifies in-process;
            None picks one per core when the shards add up to more than 64 MiB, else 1.

    Returns:
        The report; ``report.problems`` is empty when everything holds.

    Raises:
        UserError: No/invalid or incomplete manifest, or a format the dataset does not have.
    """
    out = str(out_dir)
    if not os.path.isdir(out):
        raise UserError(f"{out}: no such folder: pass a dataset folder (with manifest.json)")
    raw = read_manifest(out, check_signature=False)
    mpath = os.path.join(out, MANIFEST)
    manifest = parse_manifest(raw, mpath)
    edited = signature_problem(raw, mpath)
    report = VerifyReport(shards=len(manifest.shards), quick=quick, kind=manifest.kind)
    if not is_signed(raw):
        report.warnings.append(unsigned_warning(mpath))
    if edited:
        report.problems.append(edited)
    if isinstance(manifest, DocumentsManifest):
        if formats is not None:
            raise UserError(f"{out}: a documents folder has no shard formats (drop --format)")
        _verify_documents(Path(out), manifest, report)
        return report
    spec = _spec_of(out, manifest, quick)
    report.formats = fmts = _pick_formats(out, manifest, formats)
    report.problems.extend(_manifest_problems(Path(out), manifest))
    tasks: list[_Task] = [(spec, fmt, shard) for shard in manifest.shards for fmt in fmts]
    if manifest.megatron is not None and (formats is None or "mmap" in fmts):
        tasks.append((spec, "megatron", manifest.megatron))
    if workers is None:
        workers = _pool_size(out, tasks)
    with _progress(sum(_task_files(t) for t in tasks)) as bar:
        for res in _run_tasks(tasks, workers):
            report.add(res)
            bar.update(res.files)
    report.problems.extend(_stray_files(Path(out), manifest, fmts))
    return report


def verify_dataset(
    out_dir: str | os.PathLike[str],
    formats: Sequence[str] | None = None,
    quick: bool = False,
    workers: int | None = 1,
) -> list[str]:
    """Verifies a dataset folder; returns one line per problem (empty when all holds).

    See :func:`run_verification` for the arguments.
    """
    return run_verification(out_dir, formats, quick, workers).problems
