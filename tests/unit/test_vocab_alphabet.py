"""A trained vocabulary covers the characters of its language.

Japanese or Chinese text uses thousands of distinct ideographs, each a word of its own: one
left out of the alphabet is an [UNK] wherever it occurs. The alphabet therefore keeps the most
frequent characters until they cover ``CHARACTER_COVERAGE`` of the text, past
``--limit-alphabet`` when needed.
"""

from __future__ import annotations

import numpy as np

from corpus_pipeline.config import VocabConfig
from corpus_pipeline.stages.wordpiece import WordPieceEncoder
from corpus_pipeline.stages.wordpiece_training import (
    CHARACTER_COVERAGE,
    choose_alphabet,
    train_wordpiece,
)

KANA = [chr(c) for c in range(0x3041, 0x3094)]  # hiragana
IDEOGRAPHS = [chr(0x4E00 + 7 * i) for i in range(1500)]  # 1,500 distinct CJK ideographs


def japanese_like(seed: int, sentences: int) -> list[str]:
    """Sentences of ideographs drawn with Zipf weights (rank r: 1/r) between kana words."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(IDEOGRAPHS) + 1)
    weights /= weights.sum()
    out = []
    for _ in range(sentences):
        parts = []
        for _ in range(8):
            kanji = rng.choice(len(IDEOGRAPHS), size=2, p=weights)
            kana = rng.choice(len(KANA), size=2)
            parts.append("".join(IDEOGRAPHS[k] for k in kanji) + "".join(KANA[k] for k in kana))
        out.append("".join(parts) + "。")
    return out


def test_alphabet_keeps_the_limit_when_it_covers_the_text() -> None:
    total = np.zeros(200, np.int64)
    total[[65, 66, 67]] = 1_000_000
    total[[150, 160]] = 1  # 2 in 3,000,002: under 1 - CHARACTER_COVERAGE
    alphabet, _ = choose_alphabet(total, total, 3)
    assert alphabet == ["A", "B", "C"]


def test_alphabet_grows_past_the_limit_to_cover_the_text() -> None:
    total = np.zeros(200, np.int64)
    total[[65, 66, 67]] = 100
    total[[150, 160]] = [2, 1]
    assert choose_alphabet(total, total, 3)[0] == ["A", "B", "C", chr(150), chr(160)]
    # A looser coverage stops as soon as it is reached (ties by code point, as before).
    assert choose_alphabet(total, total, 3, coverage=300 / 303)[0] == ["A", "B", "C"]
    assert CHARACTER_COVERAGE > 300 / 303


def test_japanese_vocabulary_leaves_under_half_a_percent_unk_on_held_out_text(tmp_path) -> None:
    train, held_out = japanese_like(1, 3000), japanese_like(2, 300)
    cfg = VocabConfig(size=8000)
    assert cfg.limit_alphabet < len(IDEOGRAPHS) + len(KANA)  # the default limit is too small

    def batches(n: int):
        for i in range(0, len(train), n):
            yield train[i : i + n]

    tokens = train_wordpiece(batches, cfg, cased=False, strip_accents=False)
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    enc = WordPieceEncoder(path, cased=False, strip_accents=False)
    ids = np.concatenate(enc.encode_batch(held_out))
    unk = float(np.mean(ids == enc.unk_id))
    assert unk < 0.005, unk
    # Without the coverage rule the 1,000 most frequent characters leave the rarer ideographs
    # out: a few percent of the held-out tokens would be [UNK].
    assert len(set("".join(train))) > cfg.limit_alphabet
    assert sum(1 for t in tokens if len(t) == 1) > cfg.limit_alphabet
