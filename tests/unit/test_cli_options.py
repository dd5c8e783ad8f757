"""One source of defaults: every config field is a flag of the verbs that use it, its value
reaches the config, and ``--help`` shows the dataclass default."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import typing
from typing import Any

import pytest

from corpus_pipeline import cli, resources
from corpus_pipeline.commands import mask as mask_cmd
from corpus_pipeline.commands import run as run_cmd
from corpus_pipeline.commands.options import flag_name
from corpus_pipeline.config import (
    ExtractConfig,
    MaskConfig,
    PackConfig,
    SentenceConfig,
    VocabConfig,
    WordPieceConfig,
)

BOOKS = str(resources.SAMPLE_BOOKS_DIR)

#: The configs each verb fills from its flags.
VERB_CONFIGS: dict[str, tuple[type, ...]] = {
    "extract": (ExtractConfig, SentenceConfig),
    "mask": (MaskConfig, PackConfig, WordPieceConfig),
    "pack": (PackConfig,),
    "run": (ExtractConfig, SentenceConfig, MaskConfig, PackConfig, WordPieceConfig),
    "vocab": (VocabConfig, WordPieceConfig),
}
#: Fields a verb has no use for.
NOT_ON = {("vocab", "vocab")}  # vocab writes the vocabulary it would read


def verb_parser(verb: str) -> argparse.ArgumentParser:
    parser = cli.build_parser(verb)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[verb]  # type: ignore[no-any-return]


def option_strings(p: argparse.ArgumentParser) -> set[str]:
    return {s for a in p._actions for s in a.option_strings}


@pytest.mark.parametrize("verb", sorted(VERB_CONFIGS))
def test_every_config_field_is_a_flag_of_the_verbs_that_use_it(verb: str) -> None:
    have = option_strings(verb_parser(verb))
    missing = [
        f"{cls.__name__}.{f.name} ({flag_name(f)})"
        for cls in VERB_CONFIGS[verb]
        for f in dataclasses.fields(cls)
        if (verb, f.name) not in NOT_ON and flag_name(f) not in have
    ]
    assert not missing, f"{verb} lacks flags for {missing}"


def test_flag_names_mirror_field_names() -> None:
    for cls in {c for cs in VERB_CONFIGS.values() for c in cs}:
        for f in dataclasses.fields(cls):
            assert flag_name(f) == "--" + f.name.replace("_", "-")


def test_old_spellings_still_work() -> None:
    p = verb_parser("run")
    args = p.parse_args(["--output", "o", "--lang", "de", "--no-templates", "--no-strip-accents"])
    assert (args.language, args.expand_templates, args.strip_accents) == ("de", False, False)
    args = p.parse_args(["--output", "o", "--strip-accents", "--overwrite", "--no-space-check"])
    assert (args.strip_accents, args.overwrite, args.no_space_check) == (True, True, True)


def _other_value(cls: type, f: dataclasses.Field[Any]) -> tuple[list[str], Any]:
    """A valid non-default value of field ``f``: (its flag words, the value in the config)."""
    hint = typing.get_type_hints(cls)[f.name]
    special: dict[str, tuple[list[str], Any]] = {
        "namespaces": (["0,14"], (0, 14)),
        "strategy": (["spfhp"], "spfhp"),
        "language": (["de"], "de"),
        "books_language": (["ja"], "ja"),
        "text_key": (["body"], "body"),
        "id_key": (["doc_id"], "doc_id"),
        "max_loss": (["0.25"], 0.25),
        "masked_lm_prob": (["0.2"], 0.2),
        "short_seq_prob": (["0.3"], 0.3),
        "validation_docs": (["0.05"], 0.05),
        "max_docs": (["7"], 7),
        "vocab": ([str(resources.default_vocab(False))], str(resources.default_vocab(False))),
    }
    if f.name in special:
        return special[f.name]
    if f.default is True or f.default is None and "bool" in str(hint):
        return [], False  # the --no- form (below)
    if f.default is False:
        return [], True
    assert isinstance(f.default, int), f"no test value for {cls.__name__}.{f.name}"
    return [str(f.default + 1)], f.default + 1


def test_every_run_option_reaches_the_pipeline_config() -> None:
    """``run --max-sentence-chars 5`` must not exit 0 with the flag handed to Beam, unread."""
    argv = ["run", "--books", BOOKS, "--output", "/tmp/never-written", "--pack"]
    expected: dict[tuple[str, str], Any] = {}
    for cls, part in (
        (ExtractConfig, "extract"),
        (SentenceConfig, "sentences"),
        (MaskConfig, "mask"),
        (PackConfig, "pack"),
    ):
        for f in dataclasses.fields(cls):
            if part == "pack" and f.name == "seed":
                continue  # one --seed for both: checked below
            words, value = _other_value(cls, f)
            flag = flag_name(f)
            if not words and value is False:
                flag = "--no-" + flag[2:]
            argv += [flag, *words]
            expected[(part, f.name)] = value
    args, beam_args = cli.build_parser("run").parse_known_args(argv)
    assert beam_args == []
    cfg = run_cmd.config_from_args(args)
    for (part, name), value in expected.items():
        assert getattr(getattr(cfg, part), name) == value, (part, name)
    assert cfg.pack.seed == cfg.mask.seed == MaskConfig.seed + 1


def test_max_sentence_chars_on_run() -> None:
    argv = ["run", "--books", BOOKS, "--output", "/tmp/x", "--max-sentence-chars", "5"]
    args, beam_args = cli.build_parser("run").parse_known_args(argv)
    assert beam_args == []
    assert run_cmd.config_from_args(args).sentences.max_sentence_chars == 5


def test_preset_then_flags_then_defaults() -> None:
    p = cli.build_parser("mask")
    base = ["mask", "--input", "d", "--output", "o"]
    cfg = mask_cmd.mask_config(p.parse_args([*base, "--preset", "phase2"]))
    assert (cfg.max_seq_length, cfg.max_predictions, cfg.dupe_factor) == (512, 80, 5)
    cfg = mask_cmd.mask_config(
        p.parse_args([*base, "--preset", "phase2", "--max-predictions", "60"])
    )
    assert (cfg.max_seq_length, cfg.max_predictions) == (512, 60)
    assert mask_cmd.mask_config(p.parse_args(base)) == MaskConfig()


def test_a_value_below_the_minimum_is_one_line() -> None:
    from corpus_pipeline.errors import UserError

    args = cli.build_parser("run").parse_args(
        ["run", "--books", BOOKS, "--output", "/tmp/x", "--pages-per-chunk", "0"]
    )
    with pytest.raises(UserError, match=r"--pages-per-chunk must be >= 1 \(got 0\)"):
        run_cmd.config_from_args(args)


def _help(*argv: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "corpus_pipeline", *argv, "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "2000", "PATH": "/usr/bin:/bin"},
    ).stdout
    return " ".join(out.split())


@pytest.mark.parametrize("verb", sorted(VERB_CONFIGS))
def test_help_shows_the_real_defaults(verb: str) -> None:
    text = _help(verb)
    assert "fusion" not in text and "pipelines.pretraining" not in text
    for cls in VERB_CONFIGS[verb]:
        for f in dataclasses.fields(cls):
            if (verb, f.name) in NOT_ON or (verb == "pack" and f.name == "seed"):
                continue
            shown = f.metadata.get("default_help")
            if shown is None:
                d = f.default
                shown = {True: "on", False: "off"}.get(d, d) if isinstance(d, bool) else d
                shown = ",".join(map(str, d)) if isinstance(d, tuple) else shown
                shown = f"{d:,}" if isinstance(d, int) and d >= 1_000_000 else shown
            assert f"(default {shown})" in text, f"{verb} {flag_name(f)}: (default {shown})"


def test_run_help_says_what_run_writes() -> None:
    text = _help("run")
    assert "hdf5, tfrecord, mmap, or all (default all)" in text
    assert "also write packed shards, in OUT/packed/ beside OUT/unpacked/" in text
    mask = _help("mask")
    assert "hdf5, tfrecord, mmap, or all (default hdf5)" in mask
    assert "write packed shards instead of unpacked" in mask
    assert "(default the input dataset's seed)" in _help("pack")
