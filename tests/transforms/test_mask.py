"""``MaskToShards`` (count, encode + bucket, mask, write shards) on a TestPipeline.

Twenty documents of the bundled book in two document files, buckets of six documents: the
instances written must be exactly those the pure stages make from the same documents and seed
(``encode_documents``, ``bucket_of`` / ``canonical_order``, ``create_instances``), in every
format, and the same bytes however the documents are spread over files.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

from corpus_pipeline import resources
from corpus_pipeline.beam.mask import MaskToShards, canonical_order
from corpus_pipeline.beam.mask_buckets import bucket_of, document_key, num_buckets
from corpus_pipeline.beam.progress import Progress
from corpus_pipeline.beam.shards import ShardSpec, order_instances, prepare_output
from corpus_pipeline.config import MaskConfig
from corpus_pipeline.formats import registry
from corpus_pipeline.formats.documents import write_documents
from corpus_pipeline.formats.spill import iter_spills
from corpus_pipeline.records import Document, EncodedDocument, Instance
from corpus_pipeline.stages.buckets import iter_buckets
from corpus_pipeline.stages.mask_stats import MaskStats
from corpus_pipeline.stages.masking import MaskVocab, create_instances
from corpus_pipeline.stages.wordpiece import CHARS_PER_TOKEN, WordPieceEncoder, encode_documents
from tests.transforms.conftest import Tally, load, run_graph, save

CFG = MaskConfig(dupe_factor=2, bucket_size=6, seed=7)
SHARDS = 3
FORMATS = ("hdf5", "tfrecord", "mmap")


def book_documents() -> list[Document]:
    """Twenty documents of 3 to 7 lines of the bundled book (a line is a sentence here)."""
    text = resources.SAMPLE_BOOK.read_text("utf-8")
    lines = [line.strip() for line in text.splitlines() if len(line.strip()) > 20]
    return [
        Document(f"book:{i}", f"part {i}", "books", lines[7 * i : 7 * i + 3 + i % 5])
        for i in range(20)
    ]


def encoded_reference(docs: list[Document], tally: Tally) -> list[EncodedDocument]:
    """``encode_documents`` over ``docs``, each named by its bucketing key."""
    keyed = [Document(document_key(d), d.title, d.source, d.sentences) for d in docs]
    encoder = WordPieceEncoder(resources.default_vocab(False), cased=False)
    return [
        EncodedDocument(e.id, [np.asarray(s, np.int32) for s in e.sentences])
        for e in encode_documents(keyed, encoder, count=tally)
    ]


def reference(
    docs: list[Document], encoded: list[EncodedDocument], mvocab: MaskVocab, tally: Tally
) -> list[Instance]:
    """What the pure stages make of ``docs``: the graph's rules, one bucket at a time."""
    chars = sum(len(s) for d in docs for s in d.sentences)
    buckets = num_buckets(len(docs), chars, CFG)
    assert buckets == 4  # 20 documents in buckets of 6 (the last takes the 2 left over)
    max_tokens = max(1, math.ceil(CFG.bucket_chars / CHARS_PER_TOKEN))
    out: list[Instance] = []
    for b in range(buckets):
        members = canonical_order([d for d in encoded if bucket_of(d.id, buckets) == b])
        for piece in iter_buckets(members, 1 << 62, max_tokens):
            out.extend(create_instances(piece, CFG, mvocab, count=tally))
    return out


def mask(
    out: Path,
    files: list[list[Document]],
    uncased,
    *,
    keep_documents: bool = False,
    check=None,
) -> dict[str, int]:
    """Write ``files`` as document files and run ``MaskToShards`` over them into ``out``."""
    vspec, mvocab, size = uncased
    paths = []
    for i, docs in enumerate(files):
        path = out.parent / f"{out.name}-docs-{i}.jsonl"
        write_documents(path, docs, "jsonl")
        paths.append((i, str(path)))
    prepare_output(str(out), FORMATS)
    spec = ShardSpec(
        str(out), "t", FORMATS, CFG.max_seq_length, CFG.max_predictions, size, CFG.seed
    )

    def build(p: beam.Pipeline) -> None:
        res = (
            p
            | beam.Create(paths)
            | MaskToShards(
                vspec,
                CFG,
                [spec],
                SHARDS,
                str(out.parent / f"{out.name}-spill"),
                Progress(None),
                mvocab.mask_id,
                keep_documents,
            )
        )
        if check is not None:
            check(res)

    return run_graph(build)


def shard_instances(out: Path, fmt: str) -> list[list[Instance]]:
    return [list(registry.read_shard(fmt, str(out), "t", i, False)) for i in range(SHARDS)]


def shard_digests(out: Path) -> dict[str, str]:
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and ".markers" not in p.parts
    }


@pytest.fixture(scope="module")
def masked(tmp_path_factory: pytest.TempPathFactory, uncased):
    """The twenty documents in two files (12 + 8), masked into 3 shards of every format."""
    docs = book_documents()
    out = tmp_path_factory.mktemp("masked") / "out"
    tally = Tally()
    encoded = encoded_reference(docs, tally)
    want = reference(docs, encoded, uncased[1], tally)
    chars = sum(len(s) for d in docs for s in d.sentences)
    stats = MaskStats.for_config(CFG, uncased[1]).add_many(want).to_dict()
    saved = out.parent / "doc-ranges.pickle"

    def check(res) -> None:
        assert_that(res["totals"], equal_to([(20, chars)]), label="Totals")
        assert_that(res["stats"], equal_to([stats]), label="Stats")
        indices = res["shards"] | beam.MapTuple(lambda folder, entry: entry["index"])
        assert_that(indices, equal_to(list(range(SHARDS))), label="Indices")
        _ = res["docs"] | beam.combiners.ToList() | beam.Map(save, str(saved))

    counts = mask(out, [docs[:12], docs[12:]], uncased, keep_documents=True, check=check)
    return out, counts, want, tally.counts, encoded, load(saved)


def test_instances_are_those_of_the_pure_stages(masked) -> None:
    out, counts, want, pure_counts, _, _ = masked
    got = [i for shard in shard_instances(out, "hdf5") for i in shard]
    assert len(got) == len(want) > 50
    assert sorted(i.key() for i in got) == sorted(i.key() for i in want)
    for name in ("mask/instances", "mask/random_next", "mask/masked", "encode/tokens"):
        assert counts[name] == pure_counts[name], name


def test_every_format_holds_the_shards_in_their_seeded_order(masked) -> None:
    out, counts, _, _, _, _ = masked
    shards = shard_instances(out, "hdf5")
    assert all(shards), "every shard should get instances"
    for i, shard in enumerate(shards):
        # The writer's order is a seeded permutation of the shard's sorted instances.
        assert [x.key() for x in shard] == [
            x.key() for x in order_instances(list(reversed(shard)), CFG.seed, i)
        ]
    for fmt in FORMATS[1:]:
        assert shard_instances(out, fmt) == shards, fmt
    assert counts["write/shards"] == SHARDS
    assert counts["write/records"] == sum(len(s) for s in shards)


def test_encoded_documents_are_kept_in_file_order(masked) -> None:
    """keep_documents: spill ranges of the encoded documents, file by file (Megatron input)."""
    _, _, _, _, encoded, ranges = masked
    got = list(iter_spills(ranges))
    assert [d.id for d in got] == [d.id for d in encoded]
    for g, e in zip(got, encoded, strict=True):
        assert len(g.sentences) == len(e.sentences)
        assert all(np.array_equal(a, b) for a, b in zip(g.sentences, e.sentences, strict=True))


def test_the_same_bytes_whatever_the_document_files(tmp_path: Path, masked, uncased) -> None:
    """Buckets span every file: one file, or three in another order, give the same shards."""
    ref_out = masked[0]
    docs = book_documents()
    for name, files in (("one", [docs]), ("three", [docs[14:], docs[:5], docs[5:14]])):
        out = tmp_path / name
        mask(out, files, uncased)
        assert shard_digests(out) == shard_digests(ref_out), name
