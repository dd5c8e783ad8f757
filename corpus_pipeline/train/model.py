"""A compact BERT for pretraining (MLM + NSP), written for packed and unpacked batches.

The architecture is BERT's (Devlin et al. 2019, arXiv 1810.04805): word + position + token-type
embeddings with LayerNorm and dropout, post-LayerNorm encoder layers, a masked-LM head whose
decoder is tied to the word embeddings, and a pooler + classifier on [CLS] for next-sentence
prediction. Two things make it pack-aware (Krell et al. 2021, arXiv 2107.02027):

* Attention is driven by ``sequence_ids`` (B, S): 0 on padding, k on every token of the k-th
  sequence of a row. Token i attends to token j iff ``sequence_ids[i] == sequence_ids[j]``,
  which is the usual padding mask for an unpacked row (one sequence) and a block-diagonal mask
  for a pack. Padding queries see only padding, so no row of the mask is empty (an all-False
  row would make ``scaled_dot_product_attention`` return NaN).
* The masked-LM head runs only on the masked positions (gathered before the vocabulary
  projection) and the NSP head on the [CLS] of every sequence (``cls_positions``), so a pack of
  three sequences gives three NSP predictions.

Position ids are an input: they restart at 0 for each sequence of a pack.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corpus_pipeline.errors import UserError


@dataclass(frozen=True)
class BertConfig:
    """Model hyper-parameters.

    Attributes:
        vocab_size: Number of WordPiece tokens (the dataset's vocabulary).
        hidden_size: Width of every layer.
        num_layers: Encoder layers.
        num_heads: Attention heads (must divide ``hidden_size``).
        intermediate_size: Width of the feed-forward inner layer.
        max_position_embeddings: Longest sequence the position table covers.
        type_vocab_size: Number of segment ids (2: A and B).
        dropout: Dropout on embeddings, attention output and feed-forward output.
        attention_dropout: Dropout on attention probabilities.
        layer_norm_eps: LayerNorm epsilon (BERT uses 1e-12).
        initializer_range: Standard deviation of the normal weight initialisation.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02

    def validate(self) -> None:
        """Raise UserError for sizes that cannot build a model."""
        if self.hidden_size % self.num_heads:
            raise UserError(
                f"hidden size {self.hidden_size} is not a multiple of {self.num_heads} heads"
            )
        if min(self.vocab_size, self.hidden_size, self.num_layers, self.intermediate_size) < 1:
            raise UserError("model sizes must be positive")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BertConfig:
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


# (hidden, layers, heads, intermediate): Google's BERT miniatures (Turc et al. 2019) and the
# two original sizes.
PRESETS: dict[str, tuple[int, int, int, int]] = {
    "tiny": (128, 2, 2, 512),
    "mini": (256, 4, 4, 1024),
    "small": (512, 4, 8, 2048),
    "medium": (512, 8, 8, 2048),
    "base": (768, 12, 12, 3072),
    "large": (1024, 24, 16, 4096),
}


def preset_config(name: str, vocab_size: int, **overrides: Any) -> BertConfig:
    """The :class:`BertConfig` of a preset for a vocabulary.

    Raises:
        UserError: Unknown preset name.
    """
    if name not in PRESETS:
        raise UserError(f"--preset {name!r}: choose from {', '.join(PRESETS)}")
    h, layers, heads, inter = PRESETS[name]
    cfg = BertConfig(
        vocab_size=vocab_size,
        hidden_size=h,
        num_layers=layers,
        num_heads=heads,
        intermediate_size=inter,
    )
    return replace(cfg, **overrides)


class Embeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.word = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, input_ids: Tensor, segment_ids: Tensor, position_ids: Tensor) -> Tensor:
        x = self.word(input_ids) + self.position(position_ids) + self.token_type(segment_ids)
        return self.dropout(self.norm(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.hidden_size // cfg.num_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.attention_dropout = cfg.attention_dropout

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, s, h = x.shape
        # (B, S, 3H) -> 3 x (B, heads, S, head_dim)
        q, k, v = self.qkv(x).view(b, s, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attention_dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(b, s, h))


class EncoderLayer(nn.Module):
    """Post-LayerNorm transformer layer (BERT's): attention, add & norm, FFN, add & norm."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attention = SelfAttention(cfg)
        self.attention_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.ffn_out = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.ffn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = self.attention_norm(x + self.dropout(self.attention(x, mask)))
        y = self.ffn_out(F.gelu(self.ffn_in(x)))
        return self.ffn_norm(x + self.dropout(y))


def attention_mask(sequence_ids: Tensor) -> Tensor:
    """(B, 1, S, S) bool: token i attends to token j iff both belong to the same sequence.

    Args:
        sequence_ids: (B, S) ints, 0 on padding, k >= 1 on the tokens of the k-th sequence.
    """
    return (sequence_ids.unsqueeze(2) == sequence_ids.unsqueeze(1)).unsqueeze(1)


class BertForPreTraining(nn.Module):
    """BERT with masked-LM and next-sentence heads; batches may be packed.

    ``forward`` takes the tensors of a batch (see ``corpus_pipeline.train.data``) and returns
    ``(mlm_logits, nsp_logits)``: (N, vocab) for the N real masked positions of the batch in
    row-major order, and (Q, 2) for the Q real sequences in row-major order.
    """

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_layers))
        self.mlm_dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.mlm_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.nsp = nn.Linear(cfg.hidden_size, 2)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def encode(
        self, input_ids: Tensor, segment_ids: Tensor, position_ids: Tensor, sequence_ids: Tensor
    ) -> Tensor:
        """Final hidden states (B, S, H)."""
        mask = attention_mask(sequence_ids)
        x = self.embeddings(input_ids, segment_ids, position_ids)
        for layer in self.layers:
            x = layer(x, mask)
        return x

    def forward(
        self,
        input_ids: Tensor,
        segment_ids: Tensor,
        position_ids: Tensor,
        sequence_ids: Tensor,
        masked_lm_positions: Tensor,
        masked_lm_weights: Tensor,
        cls_positions: Tensor,
        nsp_weights: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Logits of the real masked positions and of the real sequences.

        Args:
            input_ids: (B, S) token ids (masked tokens replaced), 0 = [PAD].
            segment_ids: (B, S) 0/1.
            position_ids: (B, S), restarting at 0 for each sequence of a pack.
            sequence_ids: (B, S), 0 on padding, k on the tokens of sequence k.
            masked_lm_positions: (B, M) positions in the row (offset into the pack).
            masked_lm_weights: (B, M) 1 for real masked positions, 0 for padding.
            cls_positions: (B, K) position of each sequence's [CLS].
            nsp_weights: (B, K) 1 where sequence k exists.

        Returns:
            ``(mlm_logits (N, vocab), nsp_logits (Q, 2))``.
        """
        hidden = self.encode(input_ids, segment_ids, position_ids, sequence_ids)
        b, s, h = hidden.shape
        flat = hidden.reshape(b * s, h)
        rows = torch.arange(b, device=hidden.device).unsqueeze(1) * s
        mlm_index = (rows + masked_lm_positions)[masked_lm_weights > 0]
        t = self.mlm_norm(F.gelu(self.mlm_dense(flat[mlm_index])))
        mlm_logits = F.linear(t, self.embeddings.word.weight, self.mlm_bias)
        cls_index = (rows + cls_positions)[nsp_weights > 0]
        pooled = torch.tanh(self.pooler(flat[cls_index]))
        return mlm_logits, self.nsp(pooled)


def num_parameters(model: nn.Module) -> int:
    """Trainable parameter count (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def pretraining_losses(
    mlm_logits: Tensor, nsp_logits: Tensor, batch: dict[str, Tensor]
) -> tuple[Tensor, Tensor]:
    """Mean masked-LM cross-entropy over real masked positions, mean NSP cross-entropy.

    Logits are taken in float32 (they may come from a bf16 autocast region).
    """
    mlm_labels = batch["masked_lm_ids"][batch["masked_lm_weights"] > 0]
    nsp_labels = batch["next_sentence_labels"][batch["nsp_weights"] > 0]
    mlm = F.cross_entropy(mlm_logits.float(), mlm_labels)
    nsp = F.cross_entropy(nsp_logits.float(), nsp_labels)
    return mlm, nsp


def expected_initial_loss(vocab_size: int) -> float:
    """ln(vocab): the masked-LM loss of a uniform prediction (a fresh model starts near it)."""
    return math.log(vocab_size)
