"""``--export-hf DIR``: the trained model as a Hugging Face ``BertForPreTraining`` folder.

The folder holds ``config.json`` (a ``transformers.BertConfig``), ``model.safetensors``,
``vocab.txt`` (the dataset's vocabulary, checked against the manifest's sha256),
``tokenizer_config.json`` and ``special_tokens_map.json`` (``do_lower_case`` from the manifest's
``vocab.cased``), so ``BertForPreTraining.from_pretrained(DIR)`` and
``AutoTokenizer.from_pretrained(DIR)`` load it without the hub.

The mapping is exact: our architecture is BERT's (post-LayerNorm layers, erf GELU, LayerNorm
eps from the config, learned absolute positions, tanh pooler, MLM decoder tied to the word
embeddings with its own bias). Our fused ``qkv`` projection is the concatenation of BERT's
query, key and value (rows ``[0, H)``, ``[H, 2H)``, ``[2H, 3H)``), so it is split. What differs
is only how attention is masked: our model attends within a sequence of a pack
(``sequence_ids``) and restarts positions per sequence, while BERT's ``attention_mask`` is a
padding mask. On unpacked rows (one sequence each, positions 0..n-1) both give the same logits;
a packed row fed to the exported model needs a block-diagonal mask and per-sequence
``position_ids``. HF's word embedding declares ``padding_idx=0`` (no gradient for [PAD] when
training further there); that does not change its output.

``transformers`` (and ``safetensors``) are optional: ``pip install 'corpus-pipeline[hf]'``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

from torch import Tensor

from corpus_pipeline.errors import UserError
from corpus_pipeline.train.model import BertConfig, BertForPreTraining

#: Files an export writes.
EXPORT_FILES = (
    "config.json",
    "model.safetensors",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
_SPECIAL = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


def require_transformers() -> None:
    """Raise a one-line UserError unless ``transformers`` and ``safetensors`` are importable
    (checked without importing them: importing transformers takes seconds)."""
    missing = [m for m in ("transformers", "safetensors") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(
            f"--export-hf needs {' and '.join(missing)}: pip install 'corpus-pipeline[hf]' "
            "(or pip install transformers safetensors)"
        )


def check_export_dir(directory: str) -> None:
    """Refuse an export folder that is a file (before training, not after)."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UserError(f"--export-hf {directory}: is a file, not a folder: name a folder")


def hf_config_dict(cfg: BertConfig) -> dict[str, Any]:
    """``transformers.BertConfig`` keyword arguments for our model config."""
    return {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size,
        "hidden_act": "gelu",  # erf GELU, torch's F.gelu default (ours)
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout,
        "max_position_embeddings": cfg.max_position_embeddings,
        "type_vocab_size": cfg.type_vocab_size,
        "initializer_range": cfg.initializer_range,
        "layer_norm_eps": cfg.layer_norm_eps,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "architectures": ["BertForPreTraining"],
    }


def hf_state_dict(model: BertForPreTraining) -> dict[str, Tensor]:
    """Our parameters under ``transformers.BertForPreTraining``'s names (float32, CPU).

    The tied MLM decoder is written as ``cls.predictions.decoder.weight`` (the word embeddings)
    and ``cls.predictions.decoder.bias`` / ``cls.predictions.bias`` (our ``mlm_bias``), as
    BERT's own state dict has them.
    """
    src = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    h = model.config.hidden_size
    out: dict[str, Tensor] = {}

    def put(name: str, tensor: Tensor) -> None:
        out[name] = tensor.contiguous().clone()

    e = "bert.embeddings."
    put(e + "word_embeddings.weight", src["embeddings.word.weight"])
    put(e + "position_embeddings.weight", src["embeddings.position.weight"])
    put(e + "token_type_embeddings.weight", src["embeddings.token_type.weight"])
    put(e + "LayerNorm.weight", src["embeddings.norm.weight"])
    put(e + "LayerNorm.bias", src["embeddings.norm.bias"])
    for i in range(model.config.num_layers):
        ours = f"layers.{i}."
        hf = f"bert.encoder.layer.{i}."
        qkv_w, qkv_b = src[ours + "attention.qkv.weight"], src[ours + "attention.qkv.bias"]
        for j, name in enumerate(("query", "key", "value")):
            put(hf + f"attention.self.{name}.weight", qkv_w[j * h : (j + 1) * h])
            put(hf + f"attention.self.{name}.bias", qkv_b[j * h : (j + 1) * h])
        for ours_name, hf_name in (
            ("attention.out", "attention.output.dense"),
            ("attention_norm", "attention.output.LayerNorm"),
            ("ffn_in", "intermediate.dense"),
            ("ffn_out", "output.dense"),
            ("ffn_norm", "output.LayerNorm"),
        ):
            put(hf + hf_name + ".weight", src[ours + ours_name + ".weight"])
            put(hf + hf_name + ".bias", src[ours + ours_name + ".bias"])
    put("bert.pooler.dense.weight", src["pooler.weight"])
    put("bert.pooler.dense.bias", src["pooler.bias"])
    p = "cls.predictions."
    put(p + "transform.dense.weight", src["mlm_dense.weight"])
    put(p + "transform.dense.bias", src["mlm_dense.bias"])
    put(p + "transform.LayerNorm.weight", src["mlm_norm.weight"])
    put(p + "transform.LayerNorm.bias", src["mlm_norm.bias"])
    put(p + "bias", src["mlm_bias"])
    put(p + "decoder.weight", src["embeddings.word.weight"])
    put(p + "decoder.bias", src["mlm_bias"])
    put("cls.seq_relationship.weight", src["nsp.weight"])
    put("cls.seq_relationship.bias", src["nsp.bias"])
    return out


def _tokenizer_config(cased: bool, max_length: int) -> dict[str, Any]:
    return {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": not cased,
        "strip_accents": None,  # None: follows do_lower_case, as our WordPiece encoder does
        "tokenize_chinese_chars": True,
        "model_max_length": max_length,
        **_SPECIAL,
    }


def export_hf(
    model: BertForPreTraining, directory: str | os.PathLike[str], vocab: Path, cased: bool
) -> Path:
    """Write ``model`` as a Hugging Face ``BertForPreTraining`` folder (see module docstring).

    Files are written to a temporary folder beside ``directory`` and moved into it one by one
    (an existing export there is replaced file by file; other files are left alone).

    Args:
        model: Our model (any device, any mode).
        directory: The export folder (created).
        vocab: The dataset's vocabulary file (already checked against the manifest).
        cased: The vocabulary keeps case (``do_lower_case`` is its negation).

    Raises:
        UserError: ``transformers`` missing, or a parameter that does not map (a bug).
    """
    require_transformers()
    import transformers

    out = Path(directory)
    check_export_dir(str(out))
    cfg = model.config
    hf_cfg = transformers.BertConfig(**hf_config_dict(cfg))
    state = hf_state_dict(model)
    hf = transformers.BertForPreTraining(hf_cfg)
    missing, unexpected = hf.load_state_dict(state, strict=False)
    # Buffers (position_ids, token_type_ids) are not weights; anything else must map.
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise UserError(
            "--export-hf: parameter names do not match this transformers version's "
            f"BertForPreTraining (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    hf.eval()
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # no "Writing model shards" bar
    try:
        hf.save_pretrained(str(tmp), max_shard_size="100GB")
        shutil.copyfile(vocab, tmp / "vocab.txt")
        _write_json(
            tmp / "tokenizer_config.json", _tokenizer_config(cased, cfg.max_position_embeddings)
        )
        _write_json(tmp / "special_tokens_map.json", dict(_SPECIAL))
        out.mkdir(parents=True, exist_ok=True)
        for name in sorted(os.listdir(tmp)):
            src = tmp / name
            with open(src, "rb") as f:
                os.fsync(f.fileno())
            os.replace(src, out / name)
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return out


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
