"""Sentence splitting per language against the splitter every language got before: English
Punkt with the bundled parameters.

The text is the system's gettext translations (``/usr/share/locale/<lang>/LC_MESSAGES``,
read as in ``bench/vocab_languages.py``), the only non-English prose on this machine: the
messages of a catalog that end in sentence punctuation are joined into paragraphs of 8. For
each language it prints, for both splitters, sentences per CPU-second and the share of
output sentences that still hold two or more sentence ends (a full stop of the language
followed by more text, or a Latin/Greek/Cyrillic one followed by a space and a capital: what a missed boundary looks like; abbreviations before names count too, so it is an upper bound). Timings are CPU time of this
process (``time.process_time``), best of ``--repeat``.

    python bench/sentences_languages.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vocab_languages import catalog_messages  # noqa: E402

from corpus_pipeline.config import SentenceConfig  # noqa: E402
from corpus_pipeline.stages.sentences import split_paragraph  # noqa: E402

# (Wikipedia code, gettext locale folder)
LANGUAGES = [("ja", "ja"), ("zh", "zh_CN"), ("el", "el"), ("de", "de"), ("ru", "ru"),
             ("bg", "bg"), ("fr", "fr")]  # fmt: skip
# A boundary left inside an output sentence: a CJK full stop followed by more text, or a
# Latin/Greek/Cyrillic one followed by a space and a capital letter.
_CJK_END = re.compile(r"[。！？][\"'”»」』)]*\s*[^\s\"'”»」』)]")
_ALPHA_END = re.compile(r"[.!?][\"'”»)]*\s+(\w)")
_ENDS_A_SENTENCE = re.compile(r"[.!?。！？][\"'”»」』)]*$")


def paragraphs(locale: str) -> list[str]:
    """Paragraphs of 8 consecutive messages that end like sentences, per catalog."""
    out = []
    for _, messages in catalog_messages(locale):
        prose = [m for m in messages if len(m) > 20 and _ENDS_A_SENTENCE.search(m)]
        out += [" ".join(prose[i : i + 8]) for i in range(0, len(prose), 8)]
    return out


def _missed(sentence: str) -> bool:
    if _CJK_END.search(sentence):
        return True
    return any(m.group(1).isupper() for m in _ALPHA_END.finditer(sentence))


def measure(paras: list[str], cfg: SentenceConfig, repeat: int) -> tuple[float, list[str]]:
    best, sentences = float("inf"), []
    for _ in range(repeat):
        count: Counter[str] = Counter()
        t0 = time.process_time()
        got = [s for p in paras for s in split_paragraph(p, cfg, count=count.update)]
        best = min(best, time.process_time() - t0)
        sentences = got
    return best, sentences


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    print(f"{'lang':4} {'paras':>6} | {'ours sent/s':>11} {'multi':>6} {'n':>6} | "
          f"{'en-punkt sent/s':>15} {'multi':>6} {'n':>6} | speed")  # fmt: skip
    for code, locale in LANGUAGES:
        paras = paragraphs(locale)
        if not paras:
            print(f"{code}: no gettext catalogs under /usr/share/locale/{locale}: skipped")
            continue
        row = []
        for cfg in (SentenceConfig(language=code), SentenceConfig(language="en")):
            secs, sents = measure(paras, cfg, args.repeat)
            multi = sum(1 for s in sents if _missed(s)) / max(1, len(sents))
            row.append((len(sents) / secs, multi, len(sents)))
        (ours, om, on), (base, bm, bn) = row
        print(f"{code:4} {len(paras):>6} | {ours:>11,.0f} {om:>6.1%} {on:>6} | "
              f"{base:>15,.0f} {bm:>6.1%} {bn:>6} | {ours / base:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
