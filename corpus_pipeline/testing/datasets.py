"""A small, real dataset folder for tests: the same files and manifest ``corpus-pipeline mask``
(or ``pack``) writes, built in-process without Beam.

Text: Google's ``sample_text.txt`` (one sentence per line, blank line between documents) and the
first stories of the bundled Sherlock Holmes book (Gutenberg boilerplate stripped by
``sources.books.read_book``, paragraphs grouped into documents, sentences split by punkt with the
bundled parameters). Encoded with :class:`~corpus_pipeline.stages.wordpiece.WordPieceEncoder`,
masked with :func:`~corpus_pipeline.stages.masking.create_instances`, distributed over shards by
content hash (``records.shard_of``, the pipeline's rule), optionally packed per shard with
:func:`~corpus_pipeline.stages.packing.pack_instances`, and written in every format through
``formats.registry.open_writer``; the manifest follows the schema of ``formats/manifest_model.py``.

Typical use::

    manifest = build_dataset(tmp_path / "out", packed=True)
    shards = make_instances()  # the same instances, per shard, to compare against
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corpus_pipeline import resources
from corpus_pipeline.config import MaskConfig, PackConfig, SentenceConfig
from corpus_pipeline.formats import manifest as mf
from corpus_pipeline.formats import registry
from corpus_pipeline.formats.common import sha256_file
from corpus_pipeline.formats.mmap import MegatronSentenceWriter
from corpus_pipeline.records import EncodedDocument, Instance, Pack, shard_of
from corpus_pipeline.sources.books import read_book
from corpus_pipeline.stages.mask_stats import MaskStats
from corpus_pipeline.stages.masking import MaskVocab, create_instances
from corpus_pipeline.stages.packing import pack_instances
from corpus_pipeline.stages.sentences import split_paragraph
from corpus_pipeline.stages.wordpiece import WordPieceEncoder

__all__ = ["SampleData", "sample_documents", "make_instances", "build_dataset"]

#: Sherlock paragraphs used (the first stories): enough for a few hundred instances at S=128.
SHERLOCK_PARAGRAPHS = 360
#: Paragraphs per Sherlock document.
PARAGRAPHS_PER_DOCUMENT = 30
#: Documents reused with different masks (MaskConfig.dupe_factor), small to keep tests fast.
DUPE_FACTOR = 2
MAX_PER_PACK = 3
#: Short-target probability of packed datasets: most full-length instances would leave little
#: to pack.
SHORT_SEQ_PROB_PACKED = 0.5


@dataclass
class SampleData:
    """What :func:`make_instances` produced, before anything is written.

    Attributes:
        documents: The encoded documents (masking input).
        shards: Per shard, its instances in writing order.
        packs: Per shard, its packs (None when not packed).
        counters: Every stage counter (mask and pack).
        mask_config: The masking configuration used.
        pack_config: The packing configuration (None when not packed).
        encoder: The WordPiece encoder (its vocabulary decodes the ids).
    """

    documents: list[EncodedDocument]
    shards: list[list[Instance]]
    packs: list[list[Pack]] | None
    counters: collections.Counter[str]
    mask_config: MaskConfig
    pack_config: PackConfig | None
    encoder: WordPieceEncoder
    strategies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def instances(self) -> list[Instance]:
        """All instances, shard by shard (packed: in pack order)."""
        if self.packs is not None:
            return [i for shard in self.packs for p in shard for i in p.instances]
        return [i for shard in self.shards for i in shard]


def _google_sample_documents() -> list[tuple[str, list[str]]]:
    text = resources.SAMPLE_GOOGLE_TEXT.read_text(encoding="utf-8")
    docs: list[tuple[str, list[str]]] = []
    for i, block in enumerate(text.split("\n\n")):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if lines:
            docs.append((f"google:{i:02d}", lines))
    return docs


def _sherlock_documents() -> list[tuple[str, list[str]]]:
    def ignore(name: str, n: int = 1) -> None:
        del name, n

    article = read_book(resources.SAMPLE_BOOK, "sherlock.txt", count=ignore)
    if article is None:  # pragma: no cover - the bundled book is not empty
        raise RuntimeError(f"{resources.SAMPLE_BOOK}: no text")
    paragraphs = [p for p in article.text.split("\n") if p.strip()][:SHERLOCK_PARAGRAPHS]
    cfg = SentenceConfig()
    docs: list[tuple[str, list[str]]] = []
    for start in range(0, len(paragraphs), PARAGRAPHS_PER_DOCUMENT):
        sentences: list[str] = []
        for p in paragraphs[start : start + PARAGRAPHS_PER_DOCUMENT]:
            sentences.extend(split_paragraph(p, cfg, count=ignore))
        if sentences:
            docs.append((f"sherlock:{start // PARAGRAPHS_PER_DOCUMENT:03d}", sentences))
    return docs


def sample_documents(encoder: WordPieceEncoder) -> list[EncodedDocument]:
    """The bundled sample text and Sherlock excerpt as WordPiece-encoded documents."""
    out = []
    for doc_id, sentences in _google_sample_documents() + _sherlock_documents():
        arrays = [a for a in encoder.encode_batch(sentences) if a.size]
        if arrays:
            out.append(EncodedDocument(id=doc_id, sentences=arrays))
    return out


def make_instances(
    *,
    packed: bool = False,
    max_seq_length: int = 128,
    max_predictions: int = 20,
    seed: int = 1,
    num_shards: int = 2,
    cased: bool = False,
    dupe_factor: int = DUPE_FACTOR,
    short_seq_prob: float | None = None,
) -> SampleData:
    """Encodes, masks, shards (and packs) the sample text; writes nothing.

    Deterministic: the same arguments give the same instances in the same order. Arguments
    are those of :func:`build_dataset`; ``short_seq_prob`` defaults to
    :data:`SHORT_SEQ_PROB_PACKED` when packing (so that packs of 2 and 3 sequences occur), else
    to MaskConfig's 0.1.
    """
    if short_seq_prob is None:
        short_seq_prob = SHORT_SEQ_PROB_PACKED if packed else MaskConfig.short_seq_prob
    encoder = WordPieceEncoder(resources.default_vocab(cased), cased=cased)
    vocab = MaskVocab.from_tokens(encoder.tokens, source=str(encoder.vocab_path))
    mask_cfg = MaskConfig(
        max_seq_length=max_seq_length,
        max_predictions=max_predictions,
        seed=seed,
        dupe_factor=dupe_factor,
        short_seq_prob=short_seq_prob,
    )
    counters: collections.Counter[str] = collections.Counter()

    def count(name: str, n: int = 1) -> None:
        counters[name] += n

    documents = sample_documents(encoder)
    shards: list[list[Instance]] = [[] for _ in range(num_shards)]
    for inst in create_instances(documents, mask_cfg, vocab, count=count):
        # The masker's arrays share batch buffers: copy before keeping them.
        inst = dataclasses.replace(
            inst,
            input_ids=inst.input_ids.copy(),
            segment_ids=inst.segment_ids.copy(),
            masked_lm_positions=inst.masked_lm_positions.copy(),
            masked_lm_ids=inst.masked_lm_ids.copy(),
        )
        shards[shard_of(inst, num_shards)].append(inst)
    packs: list[list[Pack]] | None = None
    pack_cfg: PackConfig | None = None
    strategies: list[dict[str, Any]] = []
    if packed:
        pack_cfg = PackConfig(max_per_pack=MAX_PER_PACK, seed=seed)
        packs = []
        for shard in shards:
            packs.append(
                list(
                    pack_instances(
                        shard,
                        pack_cfg,
                        max_seq_length,
                        max_predictions,
                        count=count,
                        on_strategy=lambda s: strategies.append(_summary(s)),
                    )
                )
            )
    return SampleData(
        documents=documents,
        shards=shards,
        packs=packs,
        counters=counters,
        mask_config=mask_cfg,
        pack_config=pack_cfg,
        encoder=encoder,
        strategies=strategies,
    )


def _summary(strategy: Any) -> dict[str, Any]:
    # Wall time differs between identical runs: keep it out of the manifest.
    return {k: v for k, v in strategy.summary().items() if k != "seconds"}


def build_dataset(
    out_dir: str | os.PathLike[str],
    formats: Sequence[str] = ("hdf5", "tfrecord", "mmap"),
    packed: bool = False,
    max_seq_length: int = 128,
    max_predictions: int = 20,
    seed: int = 1,
    num_shards: int = 2,
    *,
    name: str = "sample",
    cased: bool = False,
    megatron: bool = False,
) -> dict[str, Any]:
    """Writes a complete dataset folder (shards in every format + ``manifest.json``).

    Args:
        out_dir: The dataset folder (created if missing).
        formats: Formats to write (``hdf5``, ``tfrecord``, ``mmap``).
        packed: Pack each shard (K = 3) and write the packed schemas.
        max_seq_length: S.
        max_predictions: P.
        seed: Masking (and packing) seed.
        num_shards: Number of shards per format.
        name: Shard name prefix.
        cased: Use the bundled cased vocabulary instead of the uncased one.
        megatron: Also write the Megatron sentence-level dataset
            (``mmap/<name>_text_sentence``) and describe it in ``manifest["megatron"]``.

    Returns:
        The manifest, as written.
    """
    data = make_instances(
        packed=packed,
        max_seq_length=max_seq_length,
        max_predictions=max_predictions,
        seed=seed,
        num_shards=num_shards,
        cased=cased,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoder = data.encoder
    fmts = tuple(f for f in registry.FORMATS if f in formats)
    k = MAX_PER_PACK if packed else None
    shards_meta: list[dict[str, Any]] = []
    for index, instances in enumerate(data.shards):
        records: Sequence[Instance | Pack] = (
            data.packs[index] if data.packs is not None else instances
        )
        files: dict[str, list[dict[str, str]]] = {}
        for fmt in fmts:
            writer = registry.open_writer(
                fmt,
                str(out),
                name,
                index,
                max_seq_length=max_seq_length,
                max_predictions=max_predictions,
                vocab_size=encoder.vocab_size,
                max_per_pack=k,
            )
            with writer:
                writer.write(list(records))
            files[fmt] = registry.writer_file_hashes(fmt, writer, str(out), name, index, packed)
        shards_meta.append(
            {"index": index, "instances": len(instances), "records": len(records), "files": files}
        )
    megatron_meta = None
    if megatron:
        (out / "mmap").mkdir(exist_ok=True)
        with MegatronSentenceWriter(out / "mmap", name, encoder.vocab_size) as w:
            w.write(data.documents)
        prefix = f"mmap/{name}_text_sentence"
        megatron_meta = {
            "prefix": prefix,
            "documents": w.num_documents,
            "sentences": w.num_records,
            "files": [
                {"path": f"{prefix}.{ext}", "sha256": sha256_file(out / f"{prefix}.{ext}")}
                for ext in ("bin", "idx")
            ],
        }
    stats = MaskStats(max_seq_length, encoder.mask_id, special=None)
    stats.add_many(data.instances)
    stats.add_counters(data.counters)
    statistics: dict[str, Any] = stats.to_dict()
    total_records = sum(s["records"] for s in shards_meta)
    if packed:
        tokens = statistics["tokens"]
        statistics["packing"] = {
            "packs": total_records,
            "instances": statistics["instances"],
            "efficiency": tokens / (total_records * max_seq_length) if total_records else None,
            "strategies": data.strategies,
        }
    manifest = mf.DatasetManifest(
        kind="packed" if packed else "instances",
        name=name,
        formats=list(fmts),
        max_seq_length=max_seq_length,
        max_predictions=max_predictions,
        max_per_pack=k,
        seed=seed,
        vocab=mf.Vocab(
            file=encoder.vocab_path.name,
            sha256=encoder.vocab_sha256,
            size=encoder.vocab_size,
            cased=cased,
        ),
        config={
            "mask": dataclasses.asdict(data.mask_config),
            "pack": dataclasses.asdict(data.pack_config) if data.pack_config else None,
        },
        shards=[mf.ShardEntry.from_json(s) for s in shards_meta],
        megatron=mf.Megatron.from_json(megatron_meta) if megatron_meta else None,
        totals=mf.Totals(
            instances=sum(s["instances"] for s in shards_meta),
            records=total_records,
            documents=len(data.documents),
        ),
        statistics=mf.Statistics.from_json(statistics),
        counters=dict(sorted(data.counters.items())),
        version=mf.VERSION,
    )
    mf.write_manifest(str(out), manifest)
    return manifest.to_json()
