"""The peer's last stage for bench/chain.py: BERT's create_pretraining_data in plain Python.

A minimal, faithful transcription of google-research/bert (Apache-2.0):
``tokenization.py`` (``BasicTokenizer``, ``WordpieceTokenizer``, ``FullTokenizer``: the
pure-Python tokenizer, one character at a time) and ``create_pretraining_data.py``
(``create_training_instances``, ``create_instances_from_document``,
``create_masked_lm_predictions``, ``truncate_seq_pair``; whole-word masking off, as by default).
Instances are written the way NVIDIA's DeepLearningExamples copy of the script writes them
(one gzip-compressed HDF5 file: ``input_ids``, ``input_mask``, ``segment_ids``,
``masked_lm_positions``, ``masked_lm_ids``, ``next_sentence_labels``), with the same command
line, so ``bench/chain.py --peer-script`` can run the user's own copy in its place.

    python bench/_peer_bert.py --input_file SENTENCES.txt --output_file OUT.hdf5 \
        --vocab_file vocab.txt --do_lower_case --max_seq_length 128 \
        --max_predictions_per_seq 20 --masked_lm_prob 0.15 --dupe_factor 5 --random_seed 12345
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import unicodedata
from typing import Any

# ---------------------------------------------------------------- tokenization.py


def load_vocab(vocab_file: str) -> dict[str, int]:
    """Token -> id, in file order (one token a line)."""
    vocab: dict[str, int] = collections.OrderedDict()
    with open(vocab_file, encoding="utf-8") as f:
        for index, line in enumerate(f):
            vocab[line.strip()] = index
    return vocab


def whitespace_tokenize(text: str) -> list[str]:
    """Split on whitespace after stripping."""
    text = text.strip()
    return text.split() if text else []


def _is_whitespace(char: str) -> bool:
    if char in (" ", "\t", "\n", "\r"):
        return True
    return unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    if char in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char: str) -> bool:
    cp = ord(char)
    if (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126):
        return True
    return unicodedata.category(char).startswith("P")


def _is_chinese_char(cp: int) -> bool:
    return (
        (0x4E00 <= cp <= 0x9FFF)
        or (0x3400 <= cp <= 0x4DBF)
        or (0x20000 <= cp <= 0x2A6DF)
        or (0x2A700 <= cp <= 0x2B73F)
        or (0x2B740 <= cp <= 0x2B81F)
        or (0x2B820 <= cp <= 0x2CEAF)
        or (0xF900 <= cp <= 0xFAFF)
        or (0x2F800 <= cp <= 0x2FA1F)
    )


class BasicTokenizer:
    """Cleaning, CJK spacing, lower-casing, accent stripping, punctuation splitting."""

    def __init__(self, do_lower_case: bool = True) -> None:
        self.do_lower_case = do_lower_case

    def tokenize(self, text: str) -> list[str]:
        """Words and punctuation marks of ``text``."""
        text = self._clean_text(text)
        text = self._tokenize_chinese_chars(text)
        split_tokens: list[str] = []
        for token in whitespace_tokenize(text):
            if self.do_lower_case:
                token = token.lower()
                token = self._run_strip_accents(token)
            split_tokens.extend(self._run_split_on_punc(token))
        return whitespace_tokenize(" ".join(split_tokens))

    def _run_strip_accents(self, text: str) -> str:
        text = unicodedata.normalize("NFD", text)
        return "".join(c for c in text if unicodedata.category(c) != "Mn")

    def _run_split_on_punc(self, text: str) -> list[str]:
        chars = list(text)
        i = 0
        start_new_word = True
        output: list[list[str]] = []
        while i < len(chars):
            char = chars[i]
            if _is_punctuation(char):
                output.append([char])
                start_new_word = True
            else:
                if start_new_word:
                    output.append([])
                start_new_word = False
                output[-1].append(char)
            i += 1
        return ["".join(x) for x in output]

    def _tokenize_chinese_chars(self, text: str) -> str:
        output: list[str] = []
        for char in text:
            if _is_chinese_char(ord(char)):
                output.extend((" ", char, " "))
            else:
                output.append(char)
        return "".join(output)

    def _clean_text(self, text: str) -> str:
        output = []
        for char in text:
            cp = ord(char)
            if cp == 0 or cp == 0xFFFD or _is_control(char):
                continue
            output.append(" " if _is_whitespace(char) else char)
        return "".join(output)


class WordpieceTokenizer:
    """Greedy longest-match-first WordPiece."""

    def __init__(
        self, vocab: dict[str, int], unk_token: str = "[UNK]", max_input_chars_per_word: int = 200
    ) -> None:
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word

    def tokenize(self, text: str) -> list[str]:
        """Word pieces of whitespace-separated ``text``."""
        output_tokens: list[str] = []
        for token in whitespace_tokenize(text):
            chars = list(token)
            if len(chars) > self.max_input_chars_per_word:
                output_tokens.append(self.unk_token)
                continue
            is_bad = False
            start = 0
            sub_tokens = []
            while start < len(chars):
                end = len(chars)
                cur_substr = None
                while start < end:
                    substr = "".join(chars[start:end])
                    if start > 0:
                        substr = "##" + substr
                    if substr in self.vocab:
                        cur_substr = substr
                        break
                    end -= 1
                if cur_substr is None:
                    is_bad = True
                    break
                sub_tokens.append(cur_substr)
                start = end
            if is_bad:
                output_tokens.append(self.unk_token)
            else:
                output_tokens.extend(sub_tokens)
        return output_tokens


class FullTokenizer:
    """Basic tokenization, then WordPiece."""

    def __init__(self, vocab_file: str, do_lower_case: bool = True) -> None:
        self.vocab = load_vocab(vocab_file)
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)
        self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)

    def tokenize(self, text: str) -> list[str]:
        """Word pieces of ``text``."""
        return [
            sub
            for token in self.basic_tokenizer.tokenize(text)
            for sub in self.wordpiece_tokenizer.tokenize(token)
        ]

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
        """Vocabulary ids of ``tokens``."""
        return [self.vocab[t] for t in tokens]


# ---------------------------------------------------------------- create_pretraining_data.py


class TrainingInstance:
    """One masked sentence pair."""

    def __init__(
        self,
        tokens: list[str],
        segment_ids: list[int],
        masked_lm_positions: list[int],
        masked_lm_labels: list[str],
        is_random_next: bool,
    ) -> None:
        self.tokens = tokens
        self.segment_ids = segment_ids
        self.is_random_next = is_random_next
        self.masked_lm_positions = masked_lm_positions
        self.masked_lm_labels = masked_lm_labels


MaskedLmInstance = collections.namedtuple("MaskedLmInstance", ["index", "label"])


def create_training_instances(
    input_files: list[str],
    tokenizer: FullTokenizer,
    max_seq_length: int,
    dupe_factor: int,
    short_seq_prob: float,
    masked_lm_prob: float,
    max_predictions_per_seq: int,
    rng: random.Random,
) -> list[TrainingInstance]:
    """Documents (blank-line separated, one sentence a line) -> shuffled instances."""
    all_documents: list[list[list[str]]] = [[]]
    for input_file in input_files:
        with open(input_file, encoding="utf-8") as reader:
            for raw in reader:
                line = raw.strip()
                if not line:
                    all_documents.append([])
                tokens = tokenizer.tokenize(line)
                if tokens:
                    all_documents[-1].append(tokens)
    all_documents = [x for x in all_documents if x]
    rng.shuffle(all_documents)
    vocab_words = list(tokenizer.vocab.keys())
    instances: list[TrainingInstance] = []
    for _ in range(dupe_factor):
        for document_index in range(len(all_documents)):
            instances.extend(
                create_instances_from_document(
                    all_documents,
                    document_index,
                    max_seq_length,
                    short_seq_prob,
                    masked_lm_prob,
                    max_predictions_per_seq,
                    vocab_words,
                    rng,
                )
            )
    rng.shuffle(instances)
    return instances


def create_instances_from_document(
    all_documents: list[list[list[str]]],
    document_index: int,
    max_seq_length: int,
    short_seq_prob: float,
    masked_lm_prob: float,
    max_predictions_per_seq: int,
    vocab_words: list[str],
    rng: random.Random,
) -> list[TrainingInstance]:
    """Sentence pairs (half with a random next segment) of one document."""
    document = all_documents[document_index]
    max_num_tokens = max_seq_length - 3
    target_seq_length = max_num_tokens
    if rng.random() < short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)
    instances = []
    current_chunk: list[list[str]] = []
    current_length = 0
    i = 0
    while i < len(document):
        segment = document[i]
        current_chunk.append(segment)
        current_length += len(segment)
        if i == len(document) - 1 or current_length >= target_seq_length:
            if current_chunk:
                a_end = 1
                if len(current_chunk) >= 2:
                    a_end = rng.randint(1, len(current_chunk) - 1)
                tokens_a: list[str] = []
                for j in range(a_end):
                    tokens_a.extend(current_chunk[j])
                tokens_b: list[str] = []
                if len(current_chunk) == 1 or rng.random() < 0.5:
                    is_random_next = True
                    target_b_length = target_seq_length - len(tokens_a)
                    for _ in range(10):
                        random_document_index = rng.randint(0, len(all_documents) - 1)
                        if random_document_index != document_index:
                            break
                    random_document = all_documents[random_document_index]
                    random_start = rng.randint(0, len(random_document) - 1)
                    for j in range(random_start, len(random_document)):
                        tokens_b.extend(random_document[j])
                        if len(tokens_b) >= target_b_length:
                            break
                    i -= len(current_chunk) - a_end
                else:
                    is_random_next = False
                    for j in range(a_end, len(current_chunk)):
                        tokens_b.extend(current_chunk[j])
                truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
                tokens = ["[CLS]", *tokens_a, "[SEP]", *tokens_b, "[SEP]"]
                segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
                tokens, positions, labels = create_masked_lm_predictions(
                    tokens, masked_lm_prob, max_predictions_per_seq, vocab_words, rng
                )
                instances.append(
                    TrainingInstance(tokens, segment_ids, positions, labels, is_random_next)
                )
            current_chunk = []
            current_length = 0
        i += 1
    return instances


def create_masked_lm_predictions(
    tokens: list[str],
    masked_lm_prob: float,
    max_predictions_per_seq: int,
    vocab_words: list[str],
    rng: random.Random,
) -> tuple[list[str], list[int], list[str]]:
    """80% [MASK], 10% kept, 10% random word, over a shuffled candidate list."""
    cand_indexes = [[i] for i, t in enumerate(tokens) if t != "[CLS]" and t != "[SEP]"]
    rng.shuffle(cand_indexes)
    output_tokens = list(tokens)
    num_to_predict = min(max_predictions_per_seq, max(1, int(round(len(tokens) * masked_lm_prob))))
    masked_lms: list[MaskedLmInstance] = []
    covered: set[int] = set()
    for index_set in cand_indexes:
        if len(masked_lms) >= num_to_predict:
            break
        if len(masked_lms) + len(index_set) > num_to_predict:
            continue
        if any(index in covered for index in index_set):
            continue
        for index in index_set:
            covered.add(index)
            if rng.random() < 0.8:
                masked_token = "[MASK]"
            elif rng.random() < 0.5:
                masked_token = tokens[index]
            else:
                masked_token = vocab_words[rng.randint(0, len(vocab_words) - 1)]
            output_tokens[index] = masked_token
            masked_lms.append(MaskedLmInstance(index=index, label=tokens[index]))
    masked_lms.sort(key=lambda x: x.index)
    return output_tokens, [p.index for p in masked_lms], [p.label for p in masked_lms]


def truncate_seq_pair(
    tokens_a: list[str], tokens_b: list[str], max_num_tokens: int, rng: random.Random
) -> None:
    """Trim the longer segment, from a random end, until the pair fits."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        trunc_tokens = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del trunc_tokens[0]
        else:
            trunc_tokens.pop()


def write_hdf5(
    instances: list[TrainingInstance],
    tokenizer: FullTokenizer,
    max_seq_length: int,
    max_predictions_per_seq: int,
    output_file: str,
) -> None:
    """NVIDIA's ``write_instance_to_example_file``: padded arrays, one gzip HDF5 file."""
    import h5py
    import numpy as np

    n = len(instances)
    features: dict[str, Any] = {
        "input_ids": np.zeros([n, max_seq_length], dtype="int32"),
        "input_mask": np.zeros([n, max_seq_length], dtype="int32"),
        "segment_ids": np.zeros([n, max_seq_length], dtype="int32"),
        "masked_lm_positions": np.zeros([n, max_predictions_per_seq], dtype="int32"),
        "masked_lm_ids": np.zeros([n, max_predictions_per_seq], dtype="int32"),
        "next_sentence_labels": np.zeros(n, dtype="int32"),
    }
    for k, inst in enumerate(instances):
        input_ids = tokenizer.convert_tokens_to_ids(inst.tokens)
        input_mask = [1] * len(input_ids)
        segment_ids = list(inst.segment_ids)
        while len(input_ids) < max_seq_length:
            input_ids.append(0)
            input_mask.append(0)
            segment_ids.append(0)
        positions = list(inst.masked_lm_positions)
        ids = tokenizer.convert_tokens_to_ids(inst.masked_lm_labels)
        while len(positions) < max_predictions_per_seq:
            positions.append(0)
            ids.append(0)
        features["input_ids"][k] = input_ids
        features["input_mask"][k] = input_mask
        features["segment_ids"][k] = segment_ids
        features["masked_lm_positions"][k] = positions
        features["masked_lm_ids"][k] = ids
        features["next_sentence_labels"][k] = 1 if inst.is_random_next else 0
    with h5py.File(output_file, "w") as f:
        for name, data in features.items():
            f.create_dataset(name, data=data, dtype="i4", compression="gzip")


def main(argv: list[str] | None = None) -> int:
    """NVIDIA's command line: one input file (or a folder of them) -> one HDF5 file."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input_file", required=True)
    ap.add_argument("--output_file", required=True)
    ap.add_argument("--vocab_file", required=True)
    ap.add_argument("--do_lower_case", action="store_true")
    ap.add_argument("--max_seq_length", type=int, default=128)
    ap.add_argument("--dupe_factor", type=int, default=10)
    ap.add_argument("--max_predictions_per_seq", type=int, default=20)
    ap.add_argument("--masked_lm_prob", type=float, default=0.15)
    ap.add_argument("--short_seq_prob", type=float, default=0.1)
    ap.add_argument("--random_seed", type=int, default=12345)
    args = ap.parse_args(argv)
    tokenizer = FullTokenizer(args.vocab_file, do_lower_case=args.do_lower_case)
    if os.path.isdir(args.input_file):
        inputs = sorted(os.path.join(args.input_file, f) for f in os.listdir(args.input_file))
    else:
        inputs = [args.input_file]
    rng = random.Random(args.random_seed)
    instances = create_training_instances(
        inputs,
        tokenizer,
        args.max_seq_length,
        args.dupe_factor,
        args.short_seq_prob,
        args.masked_lm_prob,
        args.max_predictions_per_seq,
        rng,
    )
    write_hdf5(
        instances, tokenizer, args.max_seq_length, args.max_predictions_per_seq, args.output_file
    )
    print(f"{len(instances)} instances -> {args.output_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
