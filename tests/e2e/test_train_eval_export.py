"""Trainer held-out evaluation (``--eval-data``) and Hugging Face export (``--export-hf``)."""

from __future__ import annotations

import importlib.util
import json
import math
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.register_assert_rewrite("tests.support.training")

from corpus_pipeline import resources  # noqa: E402
from corpus_pipeline.formats import registry  # noqa: E402
from corpus_pipeline.stages.wordpiece import WordPieceEncoder  # noqa: E402
from corpus_pipeline.train.data import MODEL_KEYS, collate, ordered_batches  # noqa: E402
from corpus_pipeline.train.dataset import open_dataset  # noqa: E402
from corpus_pipeline.train.evaluate import evaluate  # noqa: E402
from corpus_pipeline.train.model import BertConfig, BertForPreTraining, preset_config  # noqa: E402
from tests.support.torch_threads import one_torch_thread  # noqa: E402, F401 (autouse)
from tests.support.training import cli, train_run  # noqa: E402

pytest_plugins = ("tests.support.training",)


@pytest.fixture
def data(train_unpacked: str) -> str:
    """Training data: unpacked, every format."""
    return train_unpacked


@pytest.fixture
def heldout(train_heldout: str) -> str:
    """Held-out data: the sample text masked with another seed, packed, every format."""
    return train_heldout


# ------------------------------------------------------------------------------------------
# Held-out evaluation


def test_eval_every_k_steps_and_at_the_end_without_changing_training(
    data, heldout, tmp_path, capsys
):
    metrics = tmp_path / "m.jsonl"
    with_eval = train_run(
        data, steps=3, eval_data=heldout, eval_every=2, eval_batches=3, metrics=str(metrics)
    )
    out = capsys.readouterr().out
    assert [e["step"] for e in with_eval.evals] == [2, 3]  # every 2 and the end
    for e in with_eval.evals:
        assert e["batches"] == 3 and e["masked"] > 0 and e["sequences"] >= 3 * 8
        assert math.isfinite(e["mlm_loss"]) and math.isfinite(e["nsp_loss"])
        assert 0 <= e["mlm_accuracy"] <= 1 and 0 <= e["nsp_accuracy"] <= 1
    # The same batches each time: the counts agree, the losses follow the model.
    assert len({(e["masked"], e["sequences"]) for e in with_eval.evals}) == 1
    assert with_eval.evals[0]["mlm_loss"] != with_eval.evals[1]["mlm_loss"]
    assert "eval step 2/3 mlm_loss=" in out and "mlm_acc=" in out and "nsp_acc=" in out
    rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    evals = [r for r in rows if r.get("split") == "eval"]
    assert [r["step"] for r in rows if "split" not in r] == [1, 2, 3]
    assert [r["step"] for r in evals] == [2, 3]
    assert [r["mlm_accuracy"] for r in evals] == [e["mlm_accuracy"] for e in with_eval.evals]
    # Eval mode draws no random number: training is the same as without evaluation.
    plain = train_run(data, steps=3)
    assert with_eval.mlm_losses == plain.mlm_losses and with_eval.nsp_losses == plain.nsp_losses
    assert plain.evals == []


def test_eval_is_deterministic_no_dropout_first_batches_in_file_order(heldout):
    info = open_dataset(heldout, "tfrecord")
    first = next(ordered_batches(info, 4, 1))
    reader = registry.read_shard("tfrecord", heldout, info.name, info.shards[0][0], True)
    records = [r for _, r in zip(range(4), reader, strict=False)]
    expected = collate(records, info)
    assert all(np.array_equal(first[k], expected[k]) for k in expected)
    torch.manual_seed(0)
    model = BertForPreTraining(preset_config("tiny", info.vocab_size, dropout=0.5))
    model.train()
    a = evaluate(model, ordered_batches(info, 4, 2), torch.device("cpu"))
    b = evaluate(model, ordered_batches(info, 4, 2), torch.device("cpu"))
    assert model.training  # put back in its mode
    assert a == b and a.batches == 2
    # Equal to the eval-mode forward pass (dropout 0.5 in train mode would change it).
    model.eval()
    with torch.no_grad():
        mlm_logits, _ = model(*(torch.from_numpy(first[k]) for k in MODEL_KEYS))
    one = evaluate(model, ordered_batches(info, 4, 1), torch.device("cpu"))
    labels = torch.from_numpy(first["masked_lm_ids"][first["masked_lm_weights"] > 0])
    want = torch.nn.functional.cross_entropy(mlm_logits, labels, reduction="sum").item()
    assert one.mlm_loss_sum == pytest.approx(want, rel=1e-6)


def test_eval_same_numbers_in_every_format_packed_or_unpacked(data, heldout):
    seen = {}
    for fmt in registry.FORMATS:
        for unpack in (False, True):
            # --unpack reads the held-out packs one instance per row (the training data here
            # is unpacked either way, so the model is the same).
            r = train_run(
                data, steps=1, format=fmt, unpack=unpack, eval_data=heldout, eval_batches=2
            )
            (seen[fmt, unpack],) = r.evals
    for unpack in (False, True):
        ref = seen["hdf5", unpack]
        assert ref["batches"] == 2
        for fmt in registry.FORMATS:
            assert seen[fmt, unpack] == ref, (fmt, unpack)
    assert seen["hdf5", True]["sequences"] == 16 <= seen["hdf5", False]["sequences"]


def test_eval_totals_of_packs_equal_those_of_their_instances_unpacked(heldout):
    torch.manual_seed(0)
    packed = open_dataset(heldout)
    model = BertForPreTraining(preset_config("tiny", packed.vocab_size))
    cpu = torch.device("cpu")
    # Two batches of 8 packs, where packs of 2-3 sequences are: most packs are singles.
    batches = list(ordered_batches(packed, 8))
    sums = [int(b["nsp_weights"].sum()) for b in batches[:-1]]
    multi = max(range(len(sums) - 1), key=lambda i: sums[i] + sums[i + 1])
    picked = batches[multi : multi + 2]
    n = int(sum(b["nsp_weights"].sum() for b in picked))
    # The same instances, one per row: skip the instances of the packs before, take n.
    before = int(sum(b["nsp_weights"].sum() for b in batches[:multi]))
    unpacked = open_dataset(heldout, unpack=True)
    rows = [b for b in ordered_batches(unpacked, 1, before + n)][before:]
    as_packs = evaluate(model, picked, cpu)
    as_rows = evaluate(model, rows, cpu)
    assert as_packs.nsp_count == as_rows.nsp_count == n > 16
    assert as_packs.mlm_count == as_rows.mlm_count
    for key in ("mlm_loss_sum", "mlm_correct", "nsp_loss_sum", "nsp_correct"):
        assert getattr(as_packs, key) == pytest.approx(getattr(as_rows, key), rel=1e-5), key


def test_eval_data_of_other_vocabulary_or_p_is_refused_in_one_line(
    data, train_cased, train_s128_p12, tmp_path
):
    common = {"steps": 1, "output_dir": str(tmp_path)}
    for bad, want in (
        (train_cased, "vocabulary .* does not match the training data"),
        (train_s128_p12, "max_predictions P=12 does not match the training data .*'s P=10"),
    ):
        run = cli(data, eval_data=bad, **common)
        assert run.code == 2 and len(run.err_lines) == 1
        assert run.err_lines[0].startswith("error: ")
        assert re.search(want, run.err_lines[0]), run.err_lines[0]
    run = cli(data, eval_every=5, **common)
    assert run.code == 2 and "--eval-every/--eval-batches need --eval-data" in run.err
    assert not (tmp_path / "model.pt").exists()  # refused before training


# ------------------------------------------------------------------------------------------
# Hugging Face export


def _hf_logits(hf, batch):
    """HF logits at our masked positions and [CLS] (unpacked rows: a padding mask)."""
    t = {k: torch.from_numpy(v) for k, v in batch.items()}
    with torch.no_grad():
        o = hf(
            input_ids=t["input_ids"],
            token_type_ids=t["segment_ids"],
            attention_mask=(t["sequence_ids"] > 0).long(),
        )
    rows = torch.arange(len(t["input_ids"])).unsqueeze(1)
    mlm = o.prediction_logits[rows, t["masked_lm_positions"]][t["masked_lm_weights"] > 0]
    nsp = o.seq_relationship_logits  # one sequence per row, [CLS] at 0
    return mlm, nsp


def test_export_hf_loads_in_transformers_with_the_same_logits(heldout, tmp_path):
    transformers = pytest.importorskip("transformers")
    hf_dir = tmp_path / "hf"
    # Trained on packed rows; compared on the same instances unpacked (what HF BERT reads).
    result = train_run(heldout, steps=2, output_dir=str(tmp_path / "out"), export_hf=str(hf_dir))
    assert result.hf_export == str(hf_dir)
    names = sorted(p.name for p in hf_dir.iterdir())
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"} <= set(names)
    assert (hf_dir / "vocab.txt").read_bytes() == resources.UNCASED_VOCAB.read_bytes()
    assert json.loads((hf_dir / "tokenizer_config.json").read_text())["do_lower_case"] is True
    saved = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    ours = BertForPreTraining(BertConfig.from_dict(saved["model_config"]))
    ours.load_state_dict(saved["model"])
    ours.eval()
    hf = transformers.BertForPreTraining.from_pretrained(str(hf_dir)).eval()
    info = open_dataset(heldout, unpack=True)
    batch = next(ordered_batches(info, 8, 1))
    with torch.no_grad():
        mlm, nsp = ours(*(torch.from_numpy(batch[k]) for k in MODEL_KEYS))
    hf_mlm, hf_nsp = _hf_logits(hf, batch)
    assert hf_mlm.shape == mlm.shape and hf_nsp.shape == nsp.shape
    torch.testing.assert_close(hf_mlm, mlm, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(hf_nsp, nsp, atol=1e-4, rtol=1e-4)
    # The trained weights, not a fresh init: the decoder is tied to the trained embeddings.
    assert torch.equal(hf.cls.predictions.decoder.weight, ours.embeddings.word.weight.detach())


def test_export_hf_cased_tokenizer_matches_our_encoder(train_cased, tmp_path):
    transformers = pytest.importorskip("transformers")
    hf_dir = tmp_path / "hf"
    run = cli(
        train_cased, steps=1, batch_size=4, output_dir=str(tmp_path / "out"), export_hf=str(hf_dir)
    )
    assert run.code == 0, run.err
    assert json.loads((hf_dir / "tokenizer_config.json").read_text())["do_lower_case"] is False
    assert (hf_dir / "vocab.txt").read_bytes() == resources.CASED_VOCAB.read_bytes()
    tok = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
    text = "Héllo World, Sherlock Holmes's unaffable Ünïcode!"
    ids = tok(text)["input_ids"]
    (want,) = WordPieceEncoder(resources.CASED_VOCAB, cased=True).encode_batch([text])
    assert ids == [tok.cls_token_id, *want.tolist(), tok.sep_token_id]
    assert tok.convert_ids_to_tokens([ids[0], ids[-1]]) == ["[CLS]", "[SEP]"]


def test_export_hf_without_transformers_is_refused_before_training(data, tmp_path, monkeypatch):
    real = importlib.util.find_spec

    def no_transformers(name, *a, **kw):
        return None if name == "transformers" else real(name, *a, **kw)

    monkeypatch.setattr(importlib.util, "find_spec", no_transformers)
    out = tmp_path / "out"
    run = cli(data, steps=1, output_dir=str(out), export_hf=str(tmp_path / "hf"))
    assert run.code == 2
    assert run.err_lines == [
        "error: --export-hf needs transformers: pip install 'corpus-pipeline[hf]' "
        "(or pip install transformers safetensors)"
    ]
    assert not out.exists() and not (tmp_path / "hf").exists()
