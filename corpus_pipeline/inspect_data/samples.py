"""Records decoded back to text, masked positions marked."""

from __future__ import annotations

import numpy as np

from corpus_pipeline.inspect_data.dataset import FormatView, Vocabulary
from corpus_pipeline.records import Instance, Pack

__all__ = ["decode_instance", "sample_records"]


def decode_instance(inst: Instance, vocab: Vocabulary) -> list[str]:
    """The instance's segments as text, masked positions marked.

    ``[MASK→x]``: the input shows [MASK], the original token was ``x``; ``[~y→x]``: the input
    shows a random ``y``; ``[=x]``: the input kept ``x``. WordPiece continuations (``##``) are
    glued to the previous token unless either is a marker. [CLS] and [SEP] are left out.

    Returns:
        One string per segment (A, B).
    """
    ids = np.asarray(inst.input_ids, np.int64)
    seg = np.asarray(inst.segment_ids, np.int64)
    marks = {
        int(p): int(o)
        for p, o in zip(inst.masked_lm_positions.tolist(), inst.masked_lm_ids.tolist(), strict=True)
    }
    mask_id = vocab.mask_id
    segments: dict[int, list[tuple[str, bool]]] = {}
    for pos, tok_id in enumerate(ids.tolist()):
        tok = vocab.token(tok_id)
        if pos in marks:
            orig = vocab.token(marks[pos])
            if tok_id == mask_id:
                text, marked = f"[MASK→{orig}]", True
            elif tok_id == marks[pos]:
                text, marked = f"[={orig}]", True
            else:
                text, marked = f"[~{tok}→{orig}]", True
        elif tok in ("[CLS]", "[SEP]", "[PAD]"):
            continue
        else:
            text, marked = tok, False
        segments.setdefault(int(seg[pos]), []).append((text, marked))
    out = []
    for key in sorted(segments):
        words: list[str] = []
        prev_marked = True
        for text, marked in segments[key]:
            if not marked and not prev_marked and text.startswith("##") and words:
                words[-1] += text[2:]
            else:
                words.append(text)
            prev_marked = marked
        out.append(" ".join(words))
    return out


def sample_records(view: FormatView, n: int) -> list[tuple[str, int, Instance | Pack]]:
    """The first ``n`` records of a format: ``(shard path, row, record)``."""
    out: list[tuple[str, int, Instance | Pack]] = []
    if n <= 0:
        return out
    for shard in view.shards:
        for row, rec in enumerate(shard.open()):
            out.append((shard.path, row, rec))
            if len(out) >= n:
                return out
    return out
