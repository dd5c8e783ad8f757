"""``corpus-pipeline vocab``: train a WordPiece vocabulary on real text, then encode with it."""

from __future__ import annotations

import argparse
import json
import re
import sys

import pytest
from tokenizers import BertWordPieceTokenizer

from corpus_pipeline import cli, resources
from corpus_pipeline.commands import vocab
from corpus_pipeline.errors import UserError
from corpus_pipeline.stages.wordpiece import WordPieceEncoder
from corpus_pipeline.stages.wordpiece_training import special_tokens

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def run_cli(argv: list[str]) -> int:
    """``corpus-pipeline vocab ...`` through cli.main once the verb is registered there;
    until then through the same parser wiring and error handling cli.main uses."""
    if "vocab" in cli.COMMANDS:
        return cli.main(argv)
    parser = argparse.ArgumentParser(prog="corpus-pipeline")
    sub = parser.add_subparsers(dest="command", required=True)
    vocab.add_parser(sub)
    args, beam_args = parser.parse_known_args(argv)
    try:
        return vocab.run(args, beam_args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    """Google's sample_text.txt as text, the Sherlock book as JSON lines (one paragraph =
    one document, naive sentences)."""
    d = tmp_path_factory.mktemp("docs")
    (d / "sample_text.txt").write_bytes(resources.SAMPLE_GOOGLE_TEXT.read_bytes())
    book = resources.SAMPLE_BOOK.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    with open(d / "sherlock.jsonl", "w", encoding="utf-8") as f:
        for i, para in enumerate(book.split("\n\n")):
            sentences = [s for s in re.split(r"(?<=[.!?])\s+", " ".join(para.split())) if s]
            if sentences:
                f.write(json.dumps({"id": f"sherlock:{i}", "sentences": sentences}) + "\n")
    return d


def _lines(path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n")


def test_special_token_order_mirrors_bert_base_uncased():
    real = _lines(resources.UNCASED_VOCAB)
    positions = sorted((real.index(t), t) for t in SPECIALS)
    assert [t for _, t in positions] == SPECIALS
    # The [unused*] reserve sits between [PAD] and [UNK] there too.
    assert real[1] == "[unused0]" and real[real.index("[UNK]") - 1].startswith("[unused")
    assert special_tokens(2) == ["[PAD]", "[unused0]", "[unused1]", *SPECIALS[1:]]


def test_vocab_trains_usable_reproducible_vocabulary(docs, tmp_path, capsys):
    out = tmp_path / "sub" / "vocab.txt"
    argv = ["vocab", "--input", str(docs), "--size", "2000", "--output", str(out), "--unused", "3"]
    assert run_cli(argv) == 0
    summary = capsys.readouterr().out
    m = re.search(r"vocab: ([\d,]+) documents, ([\d,]+) sentences -> 2,000 tokens", summary)
    assert m, summary
    book = [json.loads(x) for x in (docs / "sherlock.jsonl").read_text("utf-8").splitlines()]
    sample = [
        d.split("\n")
        for d in resources.SAMPLE_GOOGLE_TEXT.read_text(encoding="utf-8").strip().split("\n\n")
    ]
    assert int(m.group(1).replace(",", "")) == len(book) + len(sample)
    n_sentences = sum(len(d["sentences"]) for d in book) + sum(len(d) for d in sample)
    assert int(m.group(2).replace(",", "")) == n_sentences

    tokens = _lines(out)
    assert len(tokens) == 2000 and len(set(tokens)) == 2000
    assert tokens[:8] == ["[PAD]", "[unused0]", "[unused1]", "[unused2]", *SPECIALS[1:]]
    assert not any(t != t.lower() for t in tokens[8:])  # uncased by default
    assert {"the", "holmes", "##s"} <= set(tokens)

    # Every other verb loads it through WordPieceEncoder; ids match HF's own tokenizer.
    enc = WordPieceEncoder(out)
    assert (enc.pad_id, enc.unk_id, enc.cls_id, enc.sep_id, enc.mask_id) == (0, 4, 5, 6, 7)
    ref = BertWordPieceTokenizer(str(out), lowercase=True, strip_accents=True)
    sentences = resources.SAMPLE_GOOGLE_TEXT.read_text(encoding="utf-8").split("\n")
    sentences += ["Sherlock Holmes took his bottle from the corner of the mantel-piece."]
    got = [a.tolist() for a in enc.encode_batch(sentences)]
    assert got == [e.ids for e in ref.encode_batch(sentences, add_special_tokens=False)]
    assert enc.unk_id not in got[-1]

    # The same input gives the same file, byte for byte (huggingface/tokenizers#1794).
    again = tmp_path / "again.txt"
    argv[argv.index(str(out))] = str(again)
    assert run_cli(argv) == 0
    assert again.read_bytes() == out.read_bytes()


def test_vocab_cased_keeps_case_and_default_has_no_reserve(docs, tmp_path, capsys):
    out = tmp_path / "cased.txt"
    argv = ["vocab", "--input", str(docs / "sherlock.jsonl"), "--size", "1500", "--cased"]
    assert run_cli([*argv, "--output", str(out)]) == 0
    tokens = _lines(out)
    assert tokens[:5] == SPECIALS
    assert "Holmes" in tokens and "S" in tokens
    enc = WordPieceEncoder(out, cased=True)
    assert enc.id_to_token(int(enc.encode("Holmes")[0])) == "Holmes"


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (None, [], "no such file or folder"),
        ("", [], "no text to train on"),
        ("\n\n  \n", [], "no text to train on"),
        ("Hello world.\n", ["--size", "5"], "leaves no room"),
        ("Hello world.\n", ["--size", "9"], "cannot hold the 5 special tokens"),
        ("Hello world.\n", ["--unused", "-1"], "--unused must be >= 0"),
        ("Hello world.\n", ["--runner", "DataflowRunner"], "takes no Beam flags"),
        ("Hello world.\n", ["--output", "."], "is a folder"),
    ],
)
def test_vocab_user_errors_are_one_line(tmp_path, capsys, make, extra, message):
    src = tmp_path / "in.txt"
    if make is not None:
        src.write_text(make, encoding="utf-8")
    out = tmp_path / "vocab.txt"
    rc = run_cli(["vocab", "--input", str(src), "--output", str(out), *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == ([src] if make is not None else [])


def test_malformed_jsonl_input_is_a_user_error(tmp_path, capsys):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"id": "a", "sentences": ["ok"]}\n{not json\n', encoding="utf-8")
    assert run_cli(["vocab", "--input", str(src), "--output", str(tmp_path / "v.txt")]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
