"""Silent statistical failures get a warning: counters -> statistics ->
``{code, message, value}``, in the manifest, on stderr and in ``inspect``."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from corpus_pipeline import resources
from corpus_pipeline.config import MaskConfig
from corpus_pipeline.records import Document
from corpus_pipeline.stages.mask_stats import MaskStats, counter_statistics, statistical_warnings
from corpus_pipeline.stages.masking import MaskVocab, create_instances
from corpus_pipeline.stages.wordpiece import WordPieceEncoder, encode_documents

CFG = MaskConfig(max_seq_length=128, max_predictions=20, dupe_factor=2, seed=3)


@pytest.fixture(scope="module")
def encoder() -> WordPieceEncoder:
    return WordPieceEncoder(resources.UNCASED_VOCAB)


@pytest.fixture(scope="module")
def vocab(encoder) -> MaskVocab:
    return MaskVocab.from_tokens(encoder.tokens)


def report(docs, cfg, vocab, encoder):
    """Encode and mask like the pipeline; returns (statistics, counters, warnings)."""
    counts: Counter[str] = Counter()
    counts["encode/chars"] += sum(len(s) for d in docs for s in d.sentences)
    encoded = encode_documents(docs, encoder, count=lambda k, n=1: counts.update({k: n}))
    stats = MaskStats.for_config(cfg, vocab)
    stats.add_many(
        create_instances(encoded, cfg, vocab, count=lambda k, n=1: counts.update({k: n}))
    )
    s = stats.to_dict()
    s.update(counter_statistics(counts))
    return s, counts, statistical_warnings(s, counts)


def prose(i: int, n: int = 40) -> Document:
    words = [
        "the",
        "cat",
        "sat",
        "on",
        "a",
        "mat",
        "while",
        "the",
        "dog",
        "ran",
        "around",
        "the",
        "old",
        "house",
    ]
    sents = [" ".join(words[(k + i) % 5 :] + ["number", str(k)]) + "." for k in range(n)]
    return Document(f"d{i}", "", "text", sents)


def codes(warnings):
    return [w["code"] for w in warnings]


def test_healthy_corpus_has_no_warning(encoder, vocab):
    s, counts, warnings = report([prose(i) for i in range(6)], CFG, vocab, encoder)
    assert warnings == []
    assert 0.35 < s["random_next_fraction"] < 0.75
    assert s["unk_fraction"] == 0.0
    assert 0.1 < s["tokens_per_char"] < 0.5
    assert s["long_sentence_token_fraction"] is None or s["long_sentence_token_fraction"] == 0


def test_one_document_warns_no_negatives(encoder, vocab):
    s, counts, warnings = report([prose(0)], CFG, vocab, encoder)
    assert s["random_next_fraction"] < 0.2
    assert codes(warnings) == ["few_documents", "low_random_next"]
    assert warnings[0]["value"] == 1
    assert warnings[1]["value"] == s["random_next_fraction"]


def test_long_sentences_at_a_tiny_s_warn_with_the_lost_token_count(encoder, vocab):
    cfg = replace(CFG, max_seq_length=16, max_predictions=3)
    long = [
        Document(f"l{i}", "", "text", [" ".join(["word"] * 60 + [str(k)]) for k in range(4)])
        for i in range(4)
    ]
    s, counts, warnings = report(long, cfg, vocab, encoder)
    assert codes(warnings) == ["truncation"]
    lost = counts["mask/truncated_tokens"]
    # Every instance holds at most 13 document tokens out of sentences of 61+.
    assert lost > 0.7 * counts["mask/source_tokens"]
    assert f"{lost:,} document tokens" in warnings[0]["message"]
    assert warnings[0]["value"] == s["long_sentence_token_fraction"] > 0.7


def test_normal_overshoot_truncation_does_not_warn(encoder, vocab):
    s, counts, _ = report([prose(i) for i in range(6)], CFG, vocab, encoder)
    # Google's chunks overshoot their target by part of a sentence: some tokens are always
    # cut, counted, but not a warning.
    assert counts["mask/truncated_tokens"] > 0
    assert s["truncated_token_fraction"] > 0


def test_text_outside_the_vocabulary_warns_unk(encoder, vocab):
    docs = [
        Document(f"u{i}", "", "text", [" ".join(["\U0001d11e\U0001f600\u2603"] * 8)] * 20)
        for i in range(3)
    ]
    s, counts, warnings = report(docs, CFG, vocab, encoder)
    assert s["unk_fraction"] > 0.5
    assert codes(warnings) == ["unk"]
    assert "corpus-pipeline vocab" in warnings[0]["message"]
    assert "--vocab" in warnings[0]["message"]


def test_warnings_are_in_the_manifest_on_stderr_and_in_inspect(tmp_path, capsys):
    from corpus_pipeline.cli import main

    doc = tmp_path / "one.txt"
    doc.write_text(
        "\n".join(f"This is sentence number {k} of the only document." for k in range(60))
    )
    out = tmp_path / "out"
    rc = main(["mask", "--input", str(doc), "--output", str(out), "--shards", "1",
               "--format", "tfrecord", "--direct_running_mode", "in_memory"])  # fmt: skip
    assert rc == 0
    err = capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert codes(manifest["warnings"]) == ["few_documents", "low_random_next"]
    lines = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
    assert lines == [f"warning: {w['message']}" for w in manifest["warnings"]]
    s = manifest["statistics"]
    assert s["unk_fraction"] == 0.0 and s["tokens_per_char"] > 0
    assert main(["inspect", str(out), "--no-report", "--show", "0"]) == 0
    err = capsys.readouterr().err
    assert [ln for ln in err.splitlines() if ln.startswith("warning: ")] == lines


def test_statistical_warnings_thresholds():
    ok = {"random_next_fraction": 0.52, "unk_fraction": 0.001, "long_sentence_token_fraction": 0.0}
    assert statistical_warnings(ok, {"mask/passed": 10}) == []
    bad = {"random_next_fraction": 0.131, "unk_fraction": 0.02, "long_sentence_token_fraction": 0.5}
    counters = {"mask/passed": 10, "mask/truncated_tokens": 1234,
                "mask/fallback:no_negative_available": 9788}  # fmt: skip
    w = statistical_warnings(bad, counters)
    assert codes(w) == ["low_random_next", "truncation", "unk"]
    assert "9,788" in w[0]["message"] and "13.1%" in w[0]["message"]
    assert all(set(x) == {"code", "message", "value"} for x in w)
    assert np.isclose(w[2]["value"], 0.02)
