"""``inspect``'s summary table, top tokens and PNG report.

The numbers are checked against ones computed here straight from the HDF5 shards with h5py
(no reader of ours involved), and the top tokens against a dataset crafted so that [UNK] and
stray markup lead.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from PIL import Image

from corpus_pipeline import resources
from corpus_pipeline.commands import inspect as inspect_cmd
from corpus_pipeline.inspect_data import dataset_statistics, render_text
from corpus_pipeline.stages.wordpiece_vocab import load_vocab_checked
from corpus_pipeline.testing.datasets import build_dataset

S, P = 128, 20
FRAME = {"[CLS]", "[SEP]", "[PAD]", "[MASK]"}


@pytest.fixture(scope="module")
def tokens() -> list[str]:
    return load_vocab_checked(resources.UNCASED_VOCAB)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "out"
    build_dataset(out, formats=("hdf5",))
    return out


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "out"
    build_dataset(out, formats=("hdf5",), packed=True)
    return out


def rows_from_h5py(folder: Path, packed: bool) -> list[dict[str, Any]]:
    """Every row of the folder's HDF5 shards as plain arrays: one dict per record."""
    out = []
    for path in sorted((folder / "hdf5").glob("*.hdf5")):
        with h5py.File(path, "r") as f:
            for r in range(f["input_ids"].shape[0]):
                if packed:
                    out.append(
                        {
                            "ids": np.asarray(f["input_ids"][r], np.int64),
                            "positions": np.asarray(f["masked_lm_positions"][r], np.int64),
                            "originals": np.asarray(f["masked_lm_ids"][r], np.int64),
                            "nsp": [int(x) for x in f["next_sentence_labels"][r]],
                            "sequences": len(f["packed_input_len"][r]),
                        }
                    )
                else:
                    n = int(f["input_mask"][r].sum())
                    pos = np.asarray(f["masked_lm_positions"][r], np.int64)
                    keep = pos > 0  # DLE pads positions with 0 ([CLS] is never masked)
                    out.append(
                        {
                            "ids": np.asarray(f["input_ids"][r][:n], np.int64),
                            "positions": pos[keep],
                            "originals": np.asarray(f["masked_lm_ids"][r], np.int64)[keep],
                            "nsp": [int(f["next_sentence_labels"][r])],
                            "sequences": 1,
                        }
                    )
    return out


def expected(rows: list[dict[str, Any]], tokens: list[str], packed: bool) -> dict[str, Any]:
    """The report's numbers, the slow and obvious way."""
    mask_id = tokens.index("[MASK]")
    counts: Counter[str] = Counter()
    shown = Counter[str]()
    n_tokens = 0
    for row in rows:
        ids = row["ids"].copy()
        n_tokens += len(ids)
        for pos, orig in zip(row["positions"], row["originals"], strict=True):
            if ids[pos] == mask_id:
                shown["mask"] += 1
            elif ids[pos] == orig:
                shown["kept"] += 1
            else:
                shown["random"] += 1
            ids[pos] = orig
        counts.update(tokens[i] for i in ids if tokens[i] not in FRAME)
    content = sum(counts.values())
    chars = sum(c * (1 if t == "[UNK]" else len(t.removeprefix("##"))) for t, c in counts.items())
    masked = sum(shown.values())
    nsp = [x for row in rows for x in row["nsp"]]
    instances = sum(row["sequences"] for row in rows)
    want: dict[str, Any] = {
        "tokens": n_tokens,
        "unk_fraction": counts["[UNK]"] / content,
        "tokens_per_character": content / chars,
        "random_next_fraction": sum(nsp) / len(nsp),
        "mask_token_fraction": shown["mask"] / masked,
        "kept_fraction": shown["kept"] / masked,
        "random_fraction": shown["random"] / masked,
        "padding_fraction": 1 - n_tokens / ((len(rows) if packed else instances) * S),
        "content_tokens": content,
    }
    if packed:
        want["packing_efficiency"] = n_tokens / (len(rows) * S)
        want["sequences_per_pack"] = instances / len(rows)
    # Top 20: by count, ties by id.
    order = sorted(counts, key=lambda t: (-counts[t], tokens.index(t)))[:20]
    want["top_tokens"] = [[t, counts[t], counts[t] / content] for t in order]
    return want


@pytest.mark.parametrize("kind", ["plain", "packed"])
def test_report_numbers_equal_those_read_from_the_shards(
    kind: str, request: pytest.FixtureRequest, tokens: list[str]
) -> None:
    folder = request.getfixturevalue(kind)
    is_packed = kind == "packed"
    want = expected(rows_from_h5py(folder, is_packed), tokens, is_packed)
    got = dataset_statistics(folder, "hdf5")["formats"]["hdf5"]
    for key, value in want.items():
        if key == "top_tokens":
            assert [t for t, _, _ in got[key]] == [t for t, _, _ in value]
            assert [c for _, c, _ in got[key]] == [c for _, c, _ in value]
            assert [s for _, _, s in got[key]] == pytest.approx([s for _, _, s in value])
        elif isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-12), key
        else:
            assert got[key] == value, key
    # The text output shows the same table and top tokens.
    text = "\n".join(render_text(got))
    assert f"[UNK] share           {want['unk_fraction']:.2%}" in text
    assert f"tokens per character  {want['tokens_per_character']:.3f}" in text
    assert f"padding share         {want['padding_fraction']:.2%}" in text
    assert f"NSP random next       {want['random_next_fraction']:.2%}" in text
    assert f"masked -> kept        {want['kept_fraction']:.2%}" in text
    if is_packed:
        assert f"packing efficiency    {want['packing_efficiency']:.2%}" in text
        assert f"sequences per pack    {want['sequences_per_pack']:.2f} (" in text
    t, c, share = want["top_tokens"][0]
    assert f" 1. {t}" in text and f"{c:,}" in text and f"{share:.2%}" in text


def write_dle_shard(path: Path, instances: list[tuple[list[int], list[int], int]]) -> None:
    """A DLE-schema HDF5 shard of ``(ids, masked positions, nsp label)``; each masked position's
    input shows [MASK] (id 103), its original being the id that was there."""
    n = len(instances)
    arrays = {
        "input_ids": np.zeros((n, S), np.int32),
        "input_mask": np.zeros((n, S), np.int8),
        "segment_ids": np.zeros((n, S), np.int8),
        "masked_lm_positions": np.zeros((n, P), np.int32),
        "masked_lm_ids": np.zeros((n, P), np.int32),
        "next_sentence_labels": np.zeros(n, np.int8),
    }
    for r, (ids, positions, nsp) in enumerate(instances):
        arrays["input_ids"][r, : len(ids)] = ids
        arrays["input_mask"][r, : len(ids)] = 1
        for j, pos in enumerate(positions):
            arrays["masked_lm_positions"][r, j] = pos
            arrays["masked_lm_ids"][r, j] = ids[pos]
            arrays["input_ids"][r, pos] = 103
        arrays["next_sentence_labels"][r] = nsp
    with h5py.File(path, "w") as f:
        for name, a in arrays.items():
            f.create_dataset(name, data=a)


def test_top_tokens_of_a_crafted_dataset_show_unk_and_markup_first(
    tmp_path: Path, tokens: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    tid = {t: i for i, t in enumerate(tokens)}
    cls, sep, unk, lt, gt, the, cat = (
        tid[t] for t in ("[CLS]", "[SEP]", "[UNK]", "<", ">", "the", "cat")
    )
    # Instance 1: 4 [UNK], 3 "<", 2 ">", 1 "the" (one [UNK] and one "<" masked: counted as
    # their originals, not as [MASK]). Instance 2: 2 [UNK], 1 "<", 1 "cat".
    first = [cls, unk, lt, unk, gt, the, sep, unk, lt, unk, lt, gt, sep]
    second = [cls, unk, cat, sep, unk, lt, sep]
    write_dle_shard(tmp_path / "crafted_training_0.hdf5", [(first, [1, 2], 1), (second, [], 0)])
    got = dataset_statistics(tmp_path)["formats"]["hdf5"]
    assert got["top_tokens"] == [
        ["[UNK]", 6, 6 / 14],
        ["<", 4, 4 / 14],
        [">", 2, 2 / 14],
        ["the", 1, 1 / 14],  # ties: lower id first
        ["cat", 1, 1 / 14],
    ]
    assert tid["the"] < tid["cat"]
    assert got["unk_fraction"] == 6 / 14
    # Characters spelled: one per [UNK], "<" and ">", three for "the" and for "cat".
    assert got["tokens_per_character"] == 14 / 18
    assert got["content_tokens"] == 14 and got["tokens"] == 20  # with [CLS] and [SEP]
    assert run_cli([str(tmp_path), "--no-report", "--show", "0"]) == 0
    out = capsys.readouterr().out
    assert "[UNK] share           42.86%" in out
    assert " 1. [UNK]  6  42.86%" in out and " 2. <      4  28.57%" in out


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    inspect_cmd.add_parser(parser.add_subparsers())
    args, rest = parser.parse_known_args(["inspect", *argv])
    return inspect_cmd.run(args, rest)


@pytest.mark.parametrize("kind", ["plain", "packed"])
def test_report_png_is_a_valid_image(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    report = tmp_path / "report.png"
    assert (
        run_cli([str(request.getfixturevalue(kind)), "--report", str(report), "--show", "0"]) == 0
    )
    with Image.open(report) as img:
        assert img.format == "PNG"
        img.verify()  # decodes the chunks and their CRCs
    with Image.open(report) as img:
        width, height = img.size
        pixels = np.asarray(img.convert("L"))
    assert (width, height) == (1300, 750 if kind == "plain" else 780)
    # Not a blank canvas: table lines, text and bars draw dark pixels.
    assert (pixels < 128).mean() > 0.01
