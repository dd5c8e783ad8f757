"""``python -m corpus_pipeline.train`` on real dataset folders (the bundled text, S=64)."""

from __future__ import annotations

import collections
import itertools
import json
import math
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from corpus_pipeline import resources  # noqa: E402
from corpus_pipeline.errors import UserError  # noqa: E402
from corpus_pipeline.formats import registry  # noqa: E402
from corpus_pipeline.formats.manifest import read_manifest, write_manifest  # noqa: E402
from corpus_pipeline.testing.datasets import build_dataset  # noqa: E402
from corpus_pipeline.train import main  # noqa: E402
from corpus_pipeline.train.data import (  # noqa: E402
    LoaderState,
    PretrainingStream,
    collate,
    open_dataset,
)
from corpus_pipeline.train.loader import make_loader  # noqa: E402
from corpus_pipeline.train.config import TrainConfig  # noqa: E402
from corpus_pipeline.train.loop import train  # noqa: E402
from tests.support.torch_threads import one_torch_thread  # noqa: E402, F401 (autouse)

S, P = 64, 10
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("unpacked")
    build_dataset(out, max_seq_length=S, max_predictions=P, num_shards=3, megatron=True)
    return str(out)


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("packed")
    build_dataset(out, packed=True, max_seq_length=S, max_predictions=P, num_shards=2)
    return str(out)


def _cfg(data: str, **kw) -> TrainConfig:
    base = {"steps": 3, "batch_size": 8, "log_every": 1, "seed": 7, "progress": False}
    return TrainConfig(data=data, **{**base, **kw})


def _row_keys(batch) -> list[bytes]:
    """One key per row: its tokens, masked slots and NSP labels (identifies a record)."""
    keys = []
    for r in range(len(batch["input_ids"])):
        keys.append(
            b"|".join(
                np.ascontiguousarray(np.asarray(batch[k][r])).tobytes()
                for k in ("input_ids", "masked_lm_positions", "next_sentence_labels")
            )
        )
    return keys


@pytest.mark.parametrize("kind", ["unpacked", "packed"])
def test_every_format_trains_and_reads_the_same_batches(kind, request, capsys):
    data = request.getfixturevalue(kind)
    keys = {}
    first_losses = {}
    for fmt in registry.FORMATS:
        # Whole epoch, as the trainer batches it: the same rows in the same order.
        stream = PretrainingStream(open_dataset(data, fmt), 16, 1, shuffle_buffer=64)
        keys[fmt] = [k for b in stream.batches(0, 1) for k in _row_keys(b)]
        result = train(_cfg(data, format=fmt, steps=1))
        assert result.last_step == 1 and len(result.mlm_losses) == 1
        assert all(math.isfinite(x) for x in result.mlm_losses + result.nsp_losses)
        assert abs(result.mlm_losses[0] - math.log(30522)) < 0.5
        first_losses[fmt] = result.mlm_losses
        tps, real = result.throughput(skip_first=False)
        assert tps > 0 and 0.5 < real <= 1.0
    assert len(keys["hdf5"]) == open_dataset(data).num_records
    assert keys["hdf5"] == keys["tfrecord"] == keys["mmap"]
    assert first_losses["hdf5"] == first_losses["tfrecord"] == first_losses["mmap"]
    out = capsys.readouterr().out
    assert ("packed K=3" if kind == "packed" else "unpacked") in out
    assert "mlm_loss=" in out and "nsp_loss=" in out and "mlm_loss start=" in out
    assert "tokens/s=" in out and "real_tokens=" in out


def test_packed_batches_carry_more_real_tokens(packed):
    fracs = {}
    rows = {}
    for name, unpack in (("unpacked", True), ("packed", False)):
        info = open_dataset(packed, unpack=unpack)
        rows[name] = info.num_records
        stream = PretrainingStream(info, 16, 1)
        tokens = slots = 0
        for b in stream.batches(0, 1):
            tokens += b["tokens"]
            slots += b["input_ids"].size
        fracs[name] = tokens / slots
    # The same instances, one per row or packed: the model sees the manifest's packing
    # efficiency instead of the instances' padding.
    stats = read_manifest(packed)["statistics"]
    assert rows["unpacked"] == stats["instances"] > rows["packed"] == stats["packing"]["packs"]
    assert fracs["packed"] == pytest.approx(stats["packing"]["efficiency"])
    assert fracs["unpacked"] == pytest.approx(1 - stats["padding_fraction"])
    assert fracs["packed"] > fracs["unpacked"] + 0.05


@pytest.mark.parametrize("kind", ["unpacked", "packed"])
def test_two_ranks_two_workers_cover_every_record_once(kind, request):
    data = request.getfixturevalue(kind)
    info = open_dataset(data, "tfrecord")
    manifest = read_manifest(data)
    want = collections.Counter(
        _row_keys(collate(list(registry.iter_dataset(data, manifest, "tfrecord")), info))
    )
    assert sum(want.values()) == info.num_records
    for epoch in (0, 1):
        got: collections.Counter[bytes] = collections.Counter()
        for rank in range(2):
            stream = PretrainingStream(info, 7, 3, world_size=2, rank=rank, shuffle_buffer=20)
            stream.set_state(LoaderState.fresh(2, epoch=epoch))
            n = 0
            for batch in make_loader(stream, 2):
                got.update(_row_keys(batch))
                n += 1
            # Ranks take near-equal contiguous block ranges: at most one batch apart.
            assert abs(n - info.num_records / 7 / 2) <= 1.5
        assert got == want  # every record exactly once, no duplicates


def test_loader_resumes_mid_epoch_in_the_same_order(unpacked):
    info = open_dataset(unpacked, "mmap")
    # 13 rows per batch: the two worker streams end unevenly, the last batch is short.
    stream = PretrainingStream(info, 13, 5, shuffle_buffer=50)
    stream.set_state(LoaderState.fresh(2))
    full = [
        (
            b["stream"],
            _row_keys(b),
        )
        for b in make_loader(stream, 2)
    ]
    assert len({s for s, _ in full}) == 2
    # 607 records, 47 blocks: 23 for worker 0, 24 for worker 1, which alone yields the last,
    # short, batch.
    assert info.num_records == 607 and [s for s, _ in full[-3:]] == [0, 1, 1]
    assert len(full[-1][1]) == 607 % 13
    for cut in (3, len(full) - 2):
        state = LoaderState.fresh(2)
        for s, _ in full[:cut]:
            state.advance(s)
        stream.set_state(state)
        rest = [_row_keys(b) for b in make_loader(stream, 2)]
        assert rest == [k for _, k in full[cut:]]


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(unpacked, tmp_path):
    kw = {"steps": 6, "workers": 2, "format": "hdf5"}
    straight = train(_cfg(unpacked, **kw))
    ckpt = tmp_path / "ckpt"
    part1 = train(_cfg(unpacked, checkpoint_dir=str(ckpt), stop_at=3, **kw))
    assert part1.last_step == 3 and (ckpt / "step_00000003.pt").is_file()
    part2 = train(_cfg(unpacked, checkpoint_dir=str(ckpt), resume="latest", **kw))
    assert part2.first_step == 4 and part2.last_step == 6
    assert part1.mlm_losses + part2.mlm_losses == straight.mlm_losses
    assert part1.nsp_losses + part2.nsp_losses == straight.nsp_losses
    saved = torch.load(ckpt / "step_00000006.pt", weights_only=True)
    assert saved["step"] == 6 and saved["loader"][0]["batches"] == 6
    assert saved["data"]["vocab_size"] == 30522 and saved["preset"] == "tiny"


def test_same_seed_same_losses_other_seed_other_losses(packed, tmp_path):
    a = train(_cfg(packed, steps=3, metrics=str(tmp_path / "a.jsonl")))
    b = train(_cfg(packed, steps=3))
    c = train(_cfg(packed, steps=1, seed=8))
    assert a.mlm_losses == b.mlm_losses and a.nsp_losses == b.nsp_losses
    assert a.mlm_losses[0] != c.mlm_losses[0]
    rows = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [r["mlm_loss"] for r in rows] == a.mlm_losses


def test_checkpoint_of_other_vocabulary_or_lengths_is_refused(unpacked, tmp_path):
    cased = tmp_path / "cased"
    build_dataset(cased, max_seq_length=S, max_predictions=P, num_shards=2, cased=True)
    ckpt = tmp_path / "ckpt"
    train(_cfg(unpacked, steps=1, checkpoint_dir=str(ckpt)))
    with pytest.raises(UserError, match="vocabulary .* does not match the checkpoint"):
        train(_cfg(str(cased), steps=2, checkpoint_dir=str(ckpt), resume="latest"))
    longer = tmp_path / "s128"
    build_dataset(longer, formats=("mmap",), max_seq_length=128, max_predictions=P, num_shards=2)
    with pytest.raises(UserError, match="S=128 does not match the checkpoint"):
        train(_cfg(str(longer), steps=2, checkpoint_dir=str(ckpt), resume="latest"))
    # A vocab.txt that is not the data's, named on the command line: one line, exit 2.
    code = main(["--data", unpacked, "--steps", "1", "--vocab", str(resources.CASED_VOCAB)])
    assert code == 2


def test_dynamic_masking_gives_fresh_valid_masks_each_epoch(unpacked):
    info = open_dataset(unpacked)
    stream = PretrainingStream(info, 16, 3, dynamic=True, shuffle_buffer=1)
    epochs = [list(stream.dynamic_records(e, 0, 1)) for e in (0, 1)]
    again = list(stream.dynamic_records(0, 0, 1))
    assert [i.key() for i in again] == [i.key() for i in epochs[0]]  # deterministic
    for insts in epochs:
        assert len(insts) > 50
        for inst in insts:
            ids = inst.input_ids
            assert ids[0] == 101 and np.count_nonzero(ids == 102) == 2 and ids[-1] == 102
            assert len(ids) <= S and 1 <= len(inst.masked_lm_positions) <= P
            pos = inst.masked_lm_positions
            assert (np.diff(pos) > 0).all() and pos.min() > 0 and pos.max() < len(ids)
            assert not np.isin(inst.masked_lm_ids, [0, 101, 102]).any()
            seg = inst.segment_ids
            first_sep = int(np.flatnonzero(ids == 102)[0])
            # Never a masked [CLS] or structural [SEP] (a random replacement may write 102
            # elsewhere, so the structural ones come from the segments).
            structural = {0, int(np.flatnonzero(seg == 0)[-1]), len(ids) - 1}
            assert not structural & set(pos.tolist()), (pos, structural)
            assert (seg[: first_sep + 1] == 0).all() and (seg[first_sep + 1 :] == 1).all()

    # Same documents, new masks: the masked positions of most instances changed.
    def masks(insts):
        return {inst.input_ids.tobytes(): inst.masked_lm_positions.tobytes() for inst in insts}

    m0 = {i.masked_lm_ids.tobytes() + i.masked_lm_positions.tobytes() for i in epochs[0]}
    m1 = {i.masked_lm_ids.tobytes() + i.masked_lm_positions.tobytes() for i in epochs[1]}
    assert len(m0 & m1) < 0.05 * len(m0)
    assert masks(epochs[0]) != masks(epochs[1])
    result = train(_cfg(unpacked, steps=2, dynamic_masking=True))
    assert all(math.isfinite(x) for x in result.mlm_losses)


def test_cli_logs_refuses_and_warns(packed, tmp_path, capsys):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "corpus_pipeline.train",
            "--data",
            packed,
            "--steps",
            "2",
            "--batch-size",
            "8",
            "--log-every",
            "1",
            "--threads",
            "1",
            "--tensorboard",
            str(tmp_path / "tb"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert sum(line.startswith("step ") and "mlm_loss=" in line for line in lines) == 2
    assert any(line.startswith("done:") and "mlm_loss start=" in line for line in lines)
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        warn = [x for x in run.stderr.splitlines() if x.startswith("warning:")]
        assert len(warn) == 1 and "tensorboard" in warn[0]
    else:
        assert any((tmp_path / "tb").iterdir())
    # User mistakes: one "error:" line and exit code 2 (in-process: no second torch start-up).
    assert main(["--data", str(tmp_path / "missing"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank_main(env: dict[str, str], argv: list[str]) -> None:
    os.environ.update(env)
    torch.set_num_threads(1)
    os._exit(main(argv))


def _run_ranks(argv: list[str], world: int = 2) -> None:
    """What ``torchrun --nproc-per-node 2`` does (env:// rendezvous), with forked ranks that
    inherit the imported torch instead of starting three fresh interpreters."""
    port = _free_port()
    ctx = multiprocessing.get_context("fork")
    procs = []
    for rank in range(world):
        env = {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        procs.append(ctx.Process(target=_rank_main, args=(env, argv)))
        procs[-1].start()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0] * world


def test_two_process_ddp_uneven_epochs_checkpoint_and_resume(packed, tmp_path):
    """DDP on gloo: ranks get 3 and 4 batches per epoch (the lockstep ends the epoch for both
    after 3), checkpoints hold both ranks' loader and RNG states, and a resumed run repeats the
    uninterrupted run's losses."""
    # A 60-pack dataset (the packed fixture's first packs) keeps epochs short.
    data = tmp_path / "small"
    manifest = read_manifest(packed)
    packs = list(itertools.islice(registry.read_shard("hdf5", packed, "sample", 0, True), 60))
    with registry.open_writer(
        "hdf5",
        str(data),
        "sample",
        0,
        max_seq_length=S,
        max_predictions=P,
        vocab_size=30522,
        max_per_pack=3,
    ) as w:
        w.write(packs)
    manifest["formats"] = ["hdf5"]
    manifest["shards"] = [
        {"index": 0, "records": 60, "instances": sum(len(p.instances) for p in packs), "files": {}}
    ]
    write_manifest(str(data), manifest)
    assert -(-60 // 9) == 7  # 7 batches of 9: 3 for rank 0, 4 for rank 1
    ckpt = tmp_path / "ckpt"
    common = [
        "--data",
        str(data),
        "--steps",
        "5",
        "--batch-size",
        "9",
        "--log-every",
        "1",
        "--checkpoint-dir",
        str(ckpt),
        "--keep-checkpoints",
        "0",
        "--output-dir",
        str(tmp_path / "out"),
        "--no-progress",
    ]
    _run_ranks([*common, "--checkpoint-every", "2", "--metrics", str(tmp_path / "a.jsonl")])
    saved = torch.load(ckpt / "step_00000004.pt", weights_only=True)
    assert [s["epoch"] for s in saved["loader"]] == [1, 1]
    assert [s["batches"] for s in saved["loader"]] == [1, 1]
    assert len(saved["rng"]) == 2 and saved["run"]["world_size"] == 2
    _run_ranks(
        [
            *common,
            "--resume",
            str(ckpt / "step_00000002.pt"),
            "--metrics",
            str(tmp_path / "b.jsonl"),
        ]
    )
    a = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in a] == [0, 0, 0, 1, 1]  # the epoch ended after 3 steps
    assert [r["step"] for r in b] == [3, 4, 5]
    assert b == a[2:]
