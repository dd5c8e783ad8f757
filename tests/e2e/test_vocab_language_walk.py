"""The README's walk from a non-English dump to shards with its own vocabulary:
extract -> vocab -> mask --vocab ... --no-strip-accents -> inspect's [UNK] share."""

from __future__ import annotations

import json

from corpus_pipeline.inspect_data import dataset_statistics
from tests.e2e.conftest import run_cli
from tests.support.jawiki import write_jawiki
from tests.unit.test_vocab_alphabet import japanese_like


def _jawiki(path, sentences, per_page=30):
    pages = []
    for i in range(0, len(sentences), per_page):
        chunk = sentences[i : i + per_page]
        # Paragraphs of five sentences.
        text = "\n\n".join("".join(chunk[j : j + 5]) for j in range(0, len(chunk), 5))
        pages.append((f"記事{i}", i + 1, text))
    write_jawiki(path, pages)


def test_japanese_dump_to_shards_with_its_own_vocabulary(tmp_path):
    dump = tmp_path / "jawiki.xml"
    _jawiki(dump, japanese_like(3, 1200))
    docs, vocab = tmp_path / "docs", tmp_path / "ja-vocab.txt"
    assert run_cli("extract", "--input", dump, "--output", docs, "--workers", "1") == 0
    assert run_cli("vocab", "--input", docs, "--size", "6000", "--no-strip-accents",
                   "--output", vocab) == 0  # fmt: skip
    mask = ["mask", "--input", docs, "--shards", "1", "--dupe-factor", "1", "--format", "hdf5"]
    own, bundled = tmp_path / "own", tmp_path / "bundled"
    assert run_cli(*mask, "--output", own, "--vocab", vocab, "--no-strip-accents") == 0
    assert run_cli(*mask, "--output", bundled) == 0
    manifest = json.loads((own / "manifest.json").read_text())
    assert manifest["vocab"]["strip_accents"] is False
    # The manifest names the vocabulary file and its sha256: inspect finds it beside the
    # dataset without --vocab, and decodes the same as with it.
    got = dataset_statistics(own, vocab=vocab)["formats"]["hdf5"]
    assert dataset_statistics(own)["formats"]["hdf5"] == got
    assert got["unk_fraction"] < 0.005, got["unk_fraction"]
    assert got["top_tokens"][0][0] != "[UNK]"
    english = dataset_statistics(bundled)["formats"]["hdf5"]
    assert english["unk_fraction"] > 0.05  # the bundled English vocabulary does not fit
