"""`extract --lang` and the language read from the dump, end to end."""

from __future__ import annotations

import json

from corpus_pipeline.formats.documents import read_documents
from tests.e2e.conftest import IN_PROCESS, run_cli
from tests.support.jawiki import JA_SENTENCES, write_jawiki


def _sentences(out):
    manifest = json.loads((out / "manifest.json").read_text())
    docs = [d for s in manifest["shards"] for d in read_documents(out / s["path"])]
    return manifest, sorted(s for d in docs for s in d.sentences)


def test_extract_reads_the_language_from_dbname(tmp_path):
    dump = write_jawiki(tmp_path / "jawiki.xml")
    out = tmp_path / "docs"
    assert run_cli("extract", "--input", dump, "--output", out, *IN_PROCESS) == 0
    manifest, sentences = _sentences(out)
    assert manifest["lang"] == "ja" and manifest["config"]["sentences"]["language"] == "ja"
    assert sentences == sorted(JA_SENTENCES)
    # --lang overrides the dump: as English text, 。 ends nothing.
    out_en = tmp_path / "docs_en"
    args = ("extract", "--input", dump, "--output", out_en, *IN_PROCESS, "--lang", "en")
    assert run_cli(*args) == 0
    manifest, sentences = _sentences(out_en)
    assert manifest["lang"] == "en" and len(sentences) == 2


def test_mask_no_strip_accents_keeps_accents_and_is_recorded(tmp_path):
    """--no-strip-accents reaches the workers' encoder (other ids than the default) and the
    manifest and fingerprint record it (a rerun with the other choice is refused)."""
    from corpus_pipeline import resources
    from corpus_pipeline.formats import registry
    from corpus_pipeline.stages.wordpiece import WordPieceEncoder

    docs = tmp_path / "el.txt"
    text = "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.\nΈχει πολλά μουσεία και θέατρα.\n\n"
    docs.write_text(text * 40, encoding="utf-8")
    base = ["mask", "--input", docs, "--shards", "1", "--dupe-factor", "1", "--format", "hdf5"]
    base += ["--workers", "1"]  # a worker process: the flag must travel in the pipeline
    assert run_cli(*base, "--output", tmp_path / "strip") == 0
    assert run_cli(*base, "--output", tmp_path / "keep", "--no-strip-accents") == 0

    def ids(out):
        manifest = json.loads((out / "manifest.json").read_text())
        got = {int(t) for inst in registry.iter_dataset(str(out), manifest) for t in inst.input_ids}
        return manifest, got

    m_strip, strip_ids = ids(tmp_path / "strip")
    m_keep, keep_ids = ids(tmp_path / "keep")
    assert m_strip["vocab"]["strip_accents"] is True
    assert m_keep["vocab"]["strip_accents"] is False
    enc = WordPieceEncoder(resources.UNCASED_VOCAB, strip_accents=False)
    want = {int(t) for t in enc.encode("πρωτεύουσα")}
    assert want <= keep_ids and not want <= strip_ids
    # The same folder with the other choice is another configuration.
    assert run_cli(*base, "--output", tmp_path / "keep") == 2
