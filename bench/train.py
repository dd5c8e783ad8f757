"""Training throughput, packed vs unpacked: real (non-padding) tokens per second.

Both runs train the tiny preset (``--preset`` for another) on the *same instances*: a packed dataset (K=3) built from the
bundled text at S=128 with ``corpus_pipeline.testing.datasets.build_dataset``, read once as
packs and once one instance per row (``open_dataset(unpack=True)``, ``--unpack`` in the CLI).
Every step costs about the same (B rows of S tokens), so the ratio shows what packing buys
the model: fewer padding tokens per step. The first log interval (start-up) is left out.

The masked-LM head (a 30,522-way projection per masked token) costs in proportion to the *real*
tokens, so packing speeds up only the encoder part of a step: on ``tiny`` the head is about half
of the step and the ratio stays well below the padding ratio; larger presets approach it
(the README's benchmark table has the tiny and mini figures).

    .venv/bin/python bench/train.py [--steps 40] [--batch-size 32] [--threads N] [--preset mini]
    .venv/bin/python bench/train.py --packed DIR --unpacked DIR   # your own dataset folders
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time

try:
    import torch
except ImportError:  # the trainer is an optional extra
    print("bench/train.py: torch is not installed (pip install 'corpus-pipeline[train]'); skipped")
    raise SystemExit(0) from None

from corpus_pipeline.testing.datasets import build_dataset
from corpus_pipeline.train.config import TrainConfig
from corpus_pipeline.train.loop import train


def run(data: str, unpack: bool, args: argparse.Namespace) -> tuple[float, float, float]:
    cfg = TrainConfig(
        data=data,
        steps=args.steps,
        batch_size=args.batch_size,
        log_every=args.log_every,
        seed=1,
        preset=args.preset,
        unpack=unpack,
        threads=args.threads,
        progress=False,
        device=args.device,
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the trainer's per-interval log lines
        result = train(cfg)
    tps, real = result.throughput()
    return tps, real, result.mlm_losses[-1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--packed", help="packed dataset folder (default: built from the samples)")
    p.add_argument("--unpacked", help="unpacked dataset folder (default: --packed, unpacked)")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--preset", default="tiny", help="model size (tiny, mini, small, ...)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        packed = args.packed
        if packed is None:
            t = time.perf_counter()
            m = build_dataset(tmp, formats=("mmap",), packed=True, max_seq_length=128)
            eff = m["statistics"]["packing"]["efficiency"]
            print(
                f"dataset: {m['totals']['instances']} instances in {m['totals']['records']} packs "
                f"(S=128, K=3, packing efficiency {eff:.3f}, "
                f"unpacked padding {m['statistics']['padding_fraction']:.3f}) "
                f"built in {time.perf_counter() - t:.1f}s"
            )
            packed = tmp
        unpacked, unpack = (args.unpacked, False) if args.unpacked else (packed, True)
        print(
            f"torch {torch.__version__}, {torch.get_num_threads() if args.threads is None else args.threads} "
            f"threads, {args.preset} preset, batch {args.batch_size}, {args.steps} steps each",
            flush=True,
        )
        u_tps, u_real, u_loss = run(unpacked, unpack, args)
        p_tps, p_real, p_loss = run(packed, False, args)
    print(f"unpacked: {u_tps:,.0f} real tokens/s, real-token fraction {u_real:.3f}")
    print(f"packed:   {p_tps:,.0f} real tokens/s, real-token fraction {p_real:.3f}")
    print(f"ratio packed/unpacked: {p_tps / u_tps:.2f}x real tokens/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
