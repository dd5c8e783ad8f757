"""kill -9 at random points of ``mask``, ``pack`` and ``run``, N times in a row, then a run to the
end: the output is the uninterrupted run's, file for file, with no stray file, and verifies.

The harness is ``tests/faults/killing.py``; a failure prints its seed and what each kill left
behind. ``make soak`` runs the same loops with more kills and other seeds.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from corpus_pipeline import resources
from corpus_pipeline.beam.shards import (
    RESUMED,
    ShardSpec,
    finished_shard,
    manifest_counters,
    prepare_output,
    write_shard,
)
from corpus_pipeline.config import PackConfig
from corpus_pipeline.records import Instance
from tests.faults.killing import Reference, cli, kill_then_finish, reference_run

MASK_ARGS = [
    "--preset",
    "phase1",
    "--dupe-factor",
    "3",
    "--seed",
    "4242",
    "--format",
    "all",
    "--shards",
    "4",
    "--bucket-size",
    "40",
    "--workers",
    "2",
]
RUN_ARGS = [
    "--input",
    resources.SAMPLE_WIKI_DUMP,
    "--books",
    resources.SAMPLE_BOOKS_DIR,
    "--preset",
    "phase1",
    "--dupe-factor",
    "1",
    "--format",
    "all",
    "--pack",
    "--doc-shards",
    "3",
    "--shards",
    "3",
    "--workers",
    "2",
]
# One kill per verb in `make test` (the representative case); `make soak` kills 8 times in a
# row with three seeds.
KILLS = 1
SOAK_KILLS = 8


def write_documents(folder: Path, files: int = 3, per_doc: int = 12) -> Path:
    """The bundled book as Google-format documents: ``per_doc`` paragraphs a document,
    sentences cut at end punctuation (no Beam, no nltk: the input only has to be fixed)."""
    text = Path(resources.SAMPLE_BOOKS_DIR, "sherlock.txt").read_text(encoding="utf-8")
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]
    docs = [paragraphs[i : i + per_doc] for i in range(0, len(paragraphs), per_doc)]
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        lines = []
        for doc in docs[f::files]:
            for para in doc:
                lines.extend(s for s in re.split(r"(?<=[.!?])\s+", para) if s)
            lines.append("")
        (folder / f"book_{f:05d}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_documents(tmp_path_factory.mktemp("kill_docs"))


def mask_cmd(docs: Path):
    return lambda out: cli("mask", "--input", docs, "--output", out, *MASK_ARGS)


def pack_cmd(src: Path):
    return lambda out: cli(
        "pack", "--input", src, "--output", out, "--max-per-pack", "3", "--workers", "2"
    )


def run_cmd(out: Path) -> list[str]:
    return cli("run", *RUN_ARGS, "--output", out)


@pytest.fixture(scope="module")
def mask_reference(tmp_path_factory: pytest.TempPathFactory, docs: Path) -> Reference:
    tmp = tmp_path_factory.mktemp("mask_ref")
    return reference_run(mask_cmd(docs)(tmp / "out"), tmp / "out", tmp / "tmp")


@pytest.fixture(scope="module")
def pack_reference(
    tmp_path_factory: pytest.TempPathFactory, mask_reference: Reference
) -> Reference:
    tmp = tmp_path_factory.mktemp("pack_ref")
    return reference_run(pack_cmd(mask_reference.out)(tmp / "out"), tmp / "out", tmp / "tmp")


@pytest.fixture(scope="module")
def run_reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    tmp = tmp_path_factory.mktemp("run_ref")
    return reference_run(run_cmd(tmp / "out"), tmp / "out", tmp / "tmp")


def test_killed_mask_resumes_to_identical_output(
    tmp_path: Path, docs: Path, mask_reference: Reference
) -> None:
    """3 document files -> 4 shards in hdf5, tfrecord and mmap (+ the Megatron sentence set)."""
    kill_then_finish(
        mask_cmd(docs), mask_reference, tmp_path / "out", tmp_path / "tmp", seed=1, kills=KILLS
    )


@pytest.mark.soak  # make test kills mask; the soak loop kills pack 8 times
def test_killed_pack_resumes_to_identical_output(
    tmp_path: Path, mask_reference: Reference, pack_reference: Reference
) -> None:
    """The mask reference's 4 unpacked shards -> packed shards in every format."""
    kill_then_finish(
        pack_cmd(mask_reference.out),
        pack_reference,
        tmp_path / "out",
        tmp_path / "tmp",
        seed=2,
        kills=KILLS,
    )


@pytest.mark.soak  # make test kills mask and pack; the soak loop kills run 8 times
def test_killed_runs_resume_to_identical_output(tmp_path: Path, run_reference: Reference) -> None:
    """The whole pipeline (extract, mask, pack; wiki and book): docs, unpacked and packed."""
    kill_then_finish(
        run_cmd, run_reference, tmp_path / "out", tmp_path / "tmp", seed=3, kills=KILLS
    )


@pytest.mark.soak
@pytest.mark.parametrize("seed", [11, 12, 13])
@pytest.mark.parametrize("verb", ["mask", "pack", "run"])
def test_soak_many_kills_resume_to_identical_output(
    tmp_path: Path, request: pytest.FixtureRequest, verb: str, seed: int
) -> None:
    ref: Reference = request.getfixturevalue(f"{verb}_reference")
    if verb == "mask":
        make = mask_cmd(request.getfixturevalue("docs"))
    elif verb == "pack":
        make = pack_cmd(request.getfixturevalue("mask_reference").out)
    else:
        make = run_cmd
    kill_then_finish(make, ref, tmp_path / "out", tmp_path / "tmp", seed=seed, kills=SOAK_KILLS)


@pytest.mark.parametrize("pack", [False, True])
def test_a_kept_shard_counts_again_what_its_writer_counted(tmp_path: Path, pack: bool) -> None:
    """Regression (found by the kill loop): a rerun that kept a killed run's finished shards
    wrote a manifest without their ``write/*`` and ``pack/*`` counters, so a resumed run's
    manifest differed from an uninterrupted run's."""
    rng = np.random.default_rng(0)
    instances = []
    for _ in range(50):
        n = int(rng.integers(10, 128))
        ids = rng.integers(1000, 2000, n).astype(np.int32)
        positions = np.sort(rng.choice(np.arange(1, n), 5, replace=False)).astype(np.int32)
        segments = (np.arange(n) > n // 2).astype(np.int8)
        instances.append(Instance(ids, segments, positions, ids[positions], int(n % 2)))
    spec = ShardSpec(
        str(tmp_path), "wiki", ("tfrecord", "mmap"), 128, 20, 30522, 7,
        PackConfig(max_per_pack=3, seed=7) if pack else None,
    )  # fmt: skip
    prepare_output(spec.out_dir, spec.formats)

    def counter(into: dict[str, int]):
        return lambda name, n=1: into.__setitem__(name, into.get(name, 0) + n)

    written: dict[str, int] = {}
    entry = write_shard(spec, 0, instances, counter(written))
    assert written["write/records"] == entry["records"]
    kept: dict[str, int] = {}
    assert finished_shard(spec, 0, counter(kept)) == entry
    assert kept == {**written, RESUMED: 1}
    assert manifest_counters(kept) == written
