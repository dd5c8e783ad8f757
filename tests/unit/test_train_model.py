"""The compact BERT and its batch layout: packing must not change what the model computes."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from corpus_pipeline.errors import UserError  # noqa: E402
from corpus_pipeline.records import Pack  # noqa: E402
from corpus_pipeline.testing.datasets import make_instances  # noqa: E402
from corpus_pipeline.train.data import MODEL_KEYS, collate  # noqa: E402
from corpus_pipeline.train.dataset import DatasetInfo, check_signature  # noqa: E402
from corpus_pipeline.train.loader import to_tensors  # noqa: E402
from corpus_pipeline.train.model import (  # noqa: E402
    PRESETS,
    BertForPreTraining,
    attention_mask,
    num_parameters,
    preset_config,
    pretraining_losses,
)
from tests.support.torch_threads import one_torch_thread  # noqa: E402, F401 (autouse)

S, P, K = 64, 10, 3


def _info(packed: bool, vocab_size: int = 30522) -> DatasetInfo:
    return DatasetInfo(
        path="mem",
        name="t",
        fmt="hdf5",
        packed=packed,
        max_seq_length=S,
        max_predictions=P,
        max_per_pack=K if packed else 1,
        vocab_sha256="ab" * 32,
        vocab_size=vocab_size,
        vocab_file="v.txt",
        shards=((0, 1),),
    )


@pytest.fixture(scope="module")
def packs() -> list[Pack]:
    """Packs of 2 and 3 real instances (the packer's, plus triples of short instances)."""
    data = make_instances(packed=True, max_seq_length=S, max_predictions=P, num_shards=1)
    assert data.packs is not None
    out = [p for p in data.packs[0] if len(p.instances) >= 2]
    short = sorted(data.instances, key=len)[:30]
    for i in range(0, 30, 3):
        trio = short[i : i + 3]
        if sum(map(len, trio)) <= S and sum(len(t.masked_lm_ids) for t in trio) <= P + K - 1:
            out.append(Pack(trio))
    return out


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = BertForPreTraining(preset_config("tiny", 30522, dropout=0.0, attention_dropout=0.0))
    return m.eval()


def _per_token(model, batch):
    t = to_tensors(batch)
    with torch.no_grad():
        mlm_logits, nsp_logits = model(*(t[k] for k in MODEL_KEYS))
    labels = t["masked_lm_ids"][t["masked_lm_weights"] > 0]
    losses = torch.nn.functional.cross_entropy(mlm_logits, labels, reduction="none")
    return losses, nsp_logits


def test_packed_rows_give_the_same_per_token_losses_as_unpacked_rows(model, packs):
    chosen = [p for p in packs if len(p.instances) == 3][:2] + [
        p for p in packs if len(p.instances) == 2
    ][:1]
    assert len(chosen) == 3
    packed = collate(chosen, _info(True))
    members = [i for p in chosen for i in p.instances]
    unpacked = collate(members, _info(False))
    lp, np_logits = _per_token(model, packed)
    lu, nu_logits = _per_token(model, unpacked)
    # Masked slots come out row-major; a pack's slots are its members' slots in order, so
    # the flattened per-token losses line up one to one.
    assert lp.shape == lu.shape and lp.numel() == sum(len(i.masked_lm_ids) for i in members)
    torch.testing.assert_close(lp, lu, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(np_logits, nu_logits, atol=1e-5, rtol=1e-5)
    # Per-instance losses too (what training sees per sequence).
    counts = [len(i.masked_lm_ids) for i in members]
    per_p = [x.mean() for x in torch.split(lp, counts)]
    per_u = [x.mean() for x in torch.split(lu, counts)]
    torch.testing.assert_close(torch.stack(per_p), torch.stack(per_u), atol=1e-5, rtol=1e-5)
    # The check has teeth: attention across the pack or positions that do not restart change
    # the losses.
    leaky = dict(packed, sequence_ids=(packed["sequence_ids"] > 0).astype(np.int64))
    assert (_per_token(model, leaky)[0] - lu).abs().max() > 1e-3
    flat_pos = dict(packed, position_ids=np.tile(np.arange(S), (len(chosen), 1)))
    assert (_per_token(model, flat_pos)[0] - lu).abs().max() > 1e-3


def test_packed_layout_offsets_positions_and_cls(packs):
    pack = next(p for p in packs if len(p.instances) == 3)
    b = collate([pack], _info(True))
    off = 0
    slot = 0
    for k, inst in enumerate(pack.instances):
        n, q = len(inst), len(inst.masked_lm_positions)
        assert b["cls_positions"][0, k] == off
        assert b["input_ids"][0, off] == inst.input_ids[0]  # its [CLS]
        assert list(b["position_ids"][0, off : off + n]) == list(range(n))
        assert (b["sequence_ids"][0, off : off + n] == k + 1).all()
        pos = b["masked_lm_positions"][0, slot : slot + q]
        assert list(pos) == [int(x) + off for x in inst.masked_lm_positions]
        assert list(b["masked_lm_ids"][0, slot : slot + q]) == list(inst.masked_lm_ids)
        assert b["next_sentence_labels"][0, k] == inst.next_sentence_label
        off += n
        slot += q
    assert (b["sequence_ids"][0, off:] == 0).all() and b["input_ids"][0, off:].sum() == 0
    assert b["masked_lm_weights"][0].sum() == slot and b["nsp_weights"][0].sum() == 3


def test_attention_mask_is_block_diagonal_and_never_empty():
    sid = torch.tensor([[1, 1, 2, 2, 2, 0]])
    m = attention_mask(sid)[0, 0]
    assert m[0, 1] and not m[0, 2] and m[2, 4] and not m[4, 5] and m[5, 5]
    assert m.any(dim=1).all()  # padding rows see padding: no NaN from an empty row


def test_fresh_model_starts_at_uniform_loss_and_learns(model, packs):
    batch = to_tensors(collate([i for p in packs[:8] for i in p.instances], _info(False)))
    with torch.no_grad():
        mlm, nsp = pretraining_losses(*model(*(batch[k] for k in MODEL_KEYS)), batch)
    assert abs(mlm.item() - math.log(30522)) < 0.3
    assert abs(nsp.item() - math.log(2)) < 0.1
    torch.manual_seed(1)
    m = BertForPreTraining(preset_config("tiny", 30522))
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3)
    first = last = 0.0
    for i in range(8):
        a, b = pretraining_losses(*m(*(batch[k] for k in MODEL_KEYS)), batch)
        opt.zero_grad()
        (a + b).backward()
        opt.step()
        first = a.item() if i == 0 else first
        last = a.item()
    assert last < first - 1.0


def test_presets_and_tied_decoder():
    cfg = preset_config("tiny", 30522)
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size) == PRESETS[
        "tiny"
    ]
    m = BertForPreTraining(cfg)
    # Embeddings 30522*128 + 512*128 + 2*128; decoder shares the word embedding.
    assert 4.0e6 < num_parameters(m) < 4.8e6
    assert preset_config("base", 30522).hidden_size == 768
    assert preset_config("large", 30522).num_layers == 24
    with pytest.raises(UserError, match="preset"):
        preset_config("huge", 30522)
    with pytest.raises(UserError, match="multiple"):
        preset_config("tiny", 30522, num_heads=3).validate()


def test_collate_refuses_records_that_do_not_fit(packs):
    big = packs[0]
    with pytest.raises(UserError, match="sequences"):
        collate([Pack(big.instances * 2)], _info(True))
    with pytest.raises(UserError, match="outside the vocabulary"):
        collate([big], _info(True, vocab_size=100))


def test_signature_mismatch_is_one_clear_line():
    info = _info(False)
    sig = info.signature()
    check_signature(info, sig, "checkpoint c.pt")
    for key, value, words in (
        ("vocab_sha256", "cd" * 32, "vocabulary"),
        ("vocab_size", 28996, "vocabulary"),
        ("max_seq_length", 128, "S=64"),
        ("max_predictions", 20, "P=10"),
    ):
        with pytest.raises(UserError, match=words) as e:
            check_signature(info, {**sig, key: value}, "checkpoint c.pt")
        assert "\n" not in str(e.value) and "checkpoint c.pt" in str(e.value)
