"""Packing strategies side by side on real length histograms.

Usage::

    python bench/packing.py                       # bundled Wikipedia-512 and SQuAD-384
    python bench/packing.py --hist out/demo/manifest.json --hist other.json
    python bench/packing.py --shards 100000 --shard-samples 8   # per-shard vs global loss

A histogram file is JSON with a ``histogram`` or ``length_histogram`` list (count of length
i + 1 at index i; found at the top level or in a nested object, e.g. a manifest) and an
optional ``max_sequence_length`` / ``max_seq_length`` (default: the list's length).

For every histogram: each strategy's efficiency (real tokens / (packs x S)), packs, padded
packs, theoretical speed-up (sequences / packs; the limit is 1 / unpacked efficiency) and
time, at K=3, plus K=12 rows (the greedy fast paths and what the default does there).
Per-shard rows split the histogram into random shards of the given size (without replacement,
as a content-hash sharding would) and pack each shard with its own histogram.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from corpus_pipeline.errors import UserError
from corpus_pipeline.resources import HISTOGRAMS_DIR
from corpus_pipeline.stages.pack_histogram import PackingStrategy
from corpus_pipeline.stages.pack_strategies import choose_strategy

DEFAULT_FILES = (HISTOGRAMS_DIR / "wikipedia_512.json", HISTOGRAMS_DIR / "squad_384.json")
LENGTH_KEYS = ("max_sequence_length", "max_seq_length")


def _find(obj: Any, keys: tuple[str, ...]) -> Any:
    """The first value under one of ``keys``, searching nested objects breadth first."""
    queue = [obj]
    while queue:
        item = queue.pop(0)
        if isinstance(item, dict):
            for key in keys:
                if key in item:
                    return item[key]
            queue.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            queue.extend(v for v in item if isinstance(v, dict))
    return None


def load_histogram(path: Path) -> tuple[np.ndarray, int]:
    """Read a histogram file; ``UserError`` naming the file when it has no histogram."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read JSON ({e}); pass a histogram or manifest file") from e
    hist = _find(data, ("histogram", "length_histogram"))
    if not isinstance(hist, list) or not all(isinstance(n, int) and n >= 0 for n in hist):
        raise UserError(
            f"{path}: no 'histogram' or 'length_histogram' list of counts; "
            "pass a file with one (index i = count of length i + 1)"
        )
    s = _find(data, LENGTH_KEYS)
    s = int(s) if isinstance(s, int) else len(hist)
    if len(hist) > s and any(hist[s:]):
        raise UserError(f"{path}: the histogram has lengths beyond max_sequence_length {s}")
    h = np.zeros(s, dtype=np.int64)
    h[: min(s, len(hist))] = hist[:s]
    return h, s


def _row(label: str, k: int, st: PackingStrategy) -> str:
    note = "  (" + st.note.split(":")[0] + ")" if st.note else ""
    return (
        f"  {label:<14} K={k:<3} {st.efficiency:9.3%} {st.num_packs:>12,} {st.padded_packs:>12,} "
        f"{st.speedup:8.4f} {st.seconds:9.3f}s{note}"
    )


def bench_histogram(name: str, hist: np.ndarray, s: int, strategies: list[str]) -> None:
    """Print the side-by-side table for one histogram."""
    n = int(hist.sum())
    tokens = int((hist * np.arange(1, s + 1)).sum())
    unpacked = tokens / (n * s) if n else 0.0
    limit = 1 / unpacked if unpacked else 1.0
    print(f"\n{name}: S={s}, {n:,} sequences, {unpacked:.2%} real tokens unpacked")
    print(f"  theoretical speed-up limit {limit:.4f}")
    print(
        f"  {'strategy':<14} {'K':<5} {'efficiency':>9} {'packs':>12} {'padded packs':>12} "
        f"{'speed-up':>8} {'time':>10}"
    )
    print(f"  {'none':<14} {'':<5} {unpacked:9.3%} {n:>12,} {'':>12} {1.0:8.4f} {'-':>10}")
    for strategy in strategies:
        print(_row(strategy, 3, choose_strategy(strategy, hist, s, 3)), flush=True)
    for strategy in ("spfhp", "lpfhp"):
        print(_row(strategy, 12, choose_strategy(strategy, hist, s, 12)), flush=True)
    st = choose_strategy("lp", hist, s, 12)
    print(_row("lp (default)", 12, st), flush=True)
    if st.note:
        print(f"      note: {st.note}")


def bench_shards(
    name: str, hist: np.ndarray, s: int, shard_size: int, samples: int, strategy: str
) -> None:
    """Per-shard packing (each shard with its own histogram) against packing the same shards
    together: shard efficiency varies a lot (99.82..99.95 % for 1M-sequence Wikipedia shards),
    so the comparison is on the union of the sampled shards, not on the whole histogram."""
    if shard_size >= int(hist.sum()):
        print(f"  {name}: fewer than {shard_size:,} sequences, nothing to shard")
        return
    rng = np.random.default_rng(0)
    remaining = hist.copy()
    union = np.zeros_like(hist)
    real = packs = 0
    seconds = 0.0
    for _ in range(samples):
        size = min(shard_size, int(remaining.sum()))
        if size == 0:
            break
        shard = rng.multivariate_hypergeometric(remaining, size, method="marginals")
        remaining -= shard
        union += shard
        st = choose_strategy(strategy, shard, s, 3)
        real += st.real_tokens
        packs += st.num_packs
        seconds += st.seconds
    together = choose_strategy(strategy, union, s, 3)
    eff = real / (packs * s)
    print(
        f"  {name}: {strategy}, {samples} shards of {shard_size:,}: per shard {eff:.3%} "
        f"({packs:,} packs), together {together.efficiency:.3%} ({together.num_packs:,} packs): "
        f"loss {100 * (together.efficiency - eff):.3f} points, {seconds / samples:.2f} s per shard",
        flush=True,
    )


def our_outputs() -> list[Path]:
    """Manifests of `corpus-pipeline mask` at phase1 and phase2 on the bundled excerpt (cached)."""
    import subprocess

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import CACHE, child_env, cli, extracted_excerpt

    docs = extracted_excerpt()
    out = []
    for preset in ("phase1", "phase2"):
        d = CACHE / f"ours-{preset}-{docs.name}"
        if not (d / "manifest.json").exists():
            subprocess.run(
                cli(
                    "mask",
                    "--input",
                    str(docs),
                    "--output",
                    str(d),
                    "--preset",
                    preset,
                    "--dupe-factor",
                    "5",
                    "--format",
                    "mmap",
                ),
                check=True,
                env=child_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        m = json.loads((d / "manifest.json").read_text())
        # MaskStats' histogram is indexed by length (index 0 = length 0); ours here by length-1.
        link = CACHE / f"ours_{preset}_{m['max_seq_length']}.json"
        link.write_text(
            json.dumps(
                {
                    "histogram": m["statistics"]["length_histogram"][1:],
                    "max_sequence_length": m["max_seq_length"],
                }
            )
        )
        out.append(link)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hist", action="append", type=Path, default=[], help="histogram JSON")
    parser.add_argument(
        "--no-defaults", action="store_true", help="skip the bundled Wikipedia/SQuAD histograms"
    )
    parser.add_argument(
        "--strategies",
        default=",".join(("spfhp", "lpfhp", "nnlshp", "lp")),
        help="comma-separated strategies for the K=3 rows",
    )
    parser.add_argument(
        "--shards", type=int, action="append", default=[], help="per-shard size to compare"
    )
    parser.add_argument("--shard-samples", type=int, default=8, help="shards packed per size")
    parser.add_argument("--shard-strategy", default="lp")
    parser.add_argument(
        "--no-ours",
        action="store_true",
        help="skip our own phase1 (128) and phase2 (512) outputs of the bundled excerpt",
    )
    args = parser.parse_args(argv)
    strategies = [x for x in args.strategies.split(",") if x]
    files = ([] if args.no_defaults else list(DEFAULT_FILES)) + list(args.hist)
    if not args.no_ours:
        files += our_outputs()
    try:
        loaded = [(p.name, *load_histogram(p)) for p in files]
        for name, hist, s in loaded:
            bench_histogram(name, hist, s, strategies)
        if args.shards:
            print("\nper-shard vs global (K=3)")
        for size in args.shards:
            for name, hist, s in loaded:
                bench_shards(name, hist, s, size, args.shard_samples, args.shard_strategy)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    status = main()
    print(f"\ntotal {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    sys.exit(status)
