"""``python -m corpus_pipeline.train`` on real dataset folders (the bundled text, S=64)."""

from __future__ import annotations

import collections
import itertools
import json
import math
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.register_assert_rewrite("tests.support.training")

from corpus_pipeline import resources  # noqa: E402
from corpus_pipeline.errors import UserError  # noqa: E402
from corpus_pipeline.formats import registry  # noqa: E402
from corpus_pipeline.formats.manifest import read_manifest, write_manifest  # noqa: E402
from corpus_pipeline.train.data import LoaderState, PretrainingStream, collate  # noqa: E402
from corpus_pipeline.train.dataset import open_dataset  # noqa: E402
from corpus_pipeline.train.loader import make_loader  # noqa: E402
from tests.support.torch_threads import one_torch_thread  # noqa: E402, F401 (autouse)
from tests.support.training import P, S, argv, cli, cli_fork, train_run  # noqa: E402

pytest_plugins = ("tests.support.training",)


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
    data = request.getfixturevalue(f"train_{kind}")
    keys = {}
    first_losses = {}
    for fmt in registry.FORMATS:
        # Whole epoch, as the trainer batches it: the same rows in the same order.
        stream = PretrainingStream(open_dataset(data, fmt), 16, 1, shuffle_buffer=64)
        keys[fmt] = [k for b in stream.batches(0, 1) for k in _row_keys(b)]
        result = train_run(data, format=fmt, steps=1)
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


def test_packed_batches_carry_more_real_tokens(train_packed):
    packed = train_packed
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
    data = request.getfixturevalue(f"train_{kind}")
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
            # What each of two DataLoader workers yields (the DataLoader itself: the resume
            # tests below).
            for worker in range(2):
                for batch in stream.batches(worker, 2):
                    got.update(_row_keys(batch))
                    n += 1
            # Ranks take near-equal contiguous block ranges: at most one batch apart.
            assert abs(n - info.num_records / 7 / 2) <= 1.5
        assert got == want  # every record exactly once, no duplicates


def test_loader_resumes_mid_epoch_in_the_same_order(train_unpacked):
    info = open_dataset(train_unpacked, "mmap")
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


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(train_unpacked, tmp_path):
    # Two workers: the resumed loader replays both worker streams from the checkpoint.
    kw = {"steps": 4, "workers": 2, "format": "hdf5"}
    straight = train_run(train_unpacked, **kw)
    ckpt = tmp_path / "ckpt"
    part1 = train_run(train_unpacked, checkpoint_dir=str(ckpt), stop_at=2, **kw)
    assert part1.last_step == 2 and (ckpt / "step_00000002.pt").is_file()
    part2 = train_run(train_unpacked, checkpoint_dir=str(ckpt), resume="latest", **kw)
    assert part2.first_step == 3 and part2.last_step == 4
    assert part1.mlm_losses + part2.mlm_losses == straight.mlm_losses
    assert part1.nsp_losses + part2.nsp_losses == straight.nsp_losses
    saved = torch.load(ckpt / "step_00000004.pt", weights_only=True)
    assert saved["step"] == 4 and saved["loader"][0]["batches"] == 4
    assert saved["data"]["vocab_size"] == 30522 and saved["preset"] == "tiny"


def test_same_seed_same_losses_other_seed_other_losses(train_packed, tmp_path):
    a = train_run(train_packed, steps=2, metrics=str(tmp_path / "a.jsonl"))
    b = train_run(train_packed, steps=2)
    c = train_run(train_packed, steps=1, seed=8)
    assert a.mlm_losses == b.mlm_losses and a.nsp_losses == b.nsp_losses
    assert a.mlm_losses[0] != c.mlm_losses[0]
    rows = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert [r["mlm_loss"] for r in rows] == a.mlm_losses


def test_checkpoint_of_other_vocabulary_or_lengths_is_refused(
    train_unpacked, train_cased, train_s128_p12, tmp_path
):
    ckpt = str(tmp_path / "ckpt")
    train_run(train_unpacked, steps=1, checkpoint_dir=ckpt)
    with pytest.raises(UserError, match="vocabulary .* does not match the checkpoint"):
        train_run(train_cased, steps=2, checkpoint_dir=ckpt, resume="latest")
    with pytest.raises(UserError, match="S=128 does not match the checkpoint"):
        train_run(train_s128_p12, steps=2, checkpoint_dir=ckpt, resume="latest")
    # A vocab.txt that is not the data's, named on the command line: one line, exit 2.
    run = cli(train_unpacked, steps=1, vocab=str(resources.CASED_VOCAB))
    assert run.code == 2 and len(run.err_lines) == 1
    assert run.err_lines[0].startswith(f"error: {resources.CASED_VOCAB}: sha256 ")


def test_dynamic_masking_gives_fresh_valid_masks_each_epoch(train_unpacked):
    info = open_dataset(train_unpacked)
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
    result = train_run(train_unpacked, steps=2, dynamic_masking=True)
    assert all(math.isfinite(x) for x in result.mlm_losses)


def test_cli_logs_refuses_and_warns(train_packed, tmp_path):
    tb = tmp_path / "tb"
    run = cli(train_packed, steps=2, output_dir=str(tmp_path / "out"), tensorboard=str(tb))
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert sum(line.startswith("step ") and "mlm_loss=" in line for line in lines) == 2
    assert any(line.startswith("done:") and "mlm_loss start=" in line for line in lines)
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        warn = [x for x in run.err_lines if x.startswith("warning:")]
        assert len(warn) == 1 and "tensorboard" in warn[0]
    else:
        assert any(tb.iterdir())
    # User mistakes: one "error:" line and exit code 2.
    missing = cli(tmp_path / "missing", steps=1)
    assert missing.code == 2 and missing.out == ""
    assert len(missing.err_lines) == 1 and missing.err.startswith("error: ")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_ranks(args: list[str], world: int = 2) -> None:
    """What ``torchrun --nproc-per-node 2`` does (env:// rendezvous), with forked ranks that
    inherit the imported torch instead of starting three fresh interpreters."""
    port = _free_port()
    procs = []
    for rank in range(world):
        env = {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        procs.append(cli_fork(args, env))
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0] * world


def test_two_process_ddp_uneven_epochs_checkpoint_and_resume(train_packed, tmp_path):
    """DDP on gloo: ranks get 3 and 4 batches per epoch (the lockstep ends the epoch for both
    after 3), checkpoints hold both ranks' loader and RNG states, and a resumed run repeats the
    uninterrupted run's losses."""
    # A 60-pack dataset (the packed fixture's first packs) keeps epochs short.
    data = tmp_path / "small"
    manifest = read_manifest(train_packed)
    packs = list(itertools.islice(registry.read_shard("hdf5", train_packed, "sample", 0, True), 60))
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
    common = {
        "steps": 4,
        "batch_size": 9,
        "checkpoint_dir": str(ckpt),
        "keep_checkpoints": 0,
        "output_dir": str(tmp_path / "out"),
    }
    _run_ranks(argv(data, checkpoint_every=2, metrics=str(tmp_path / "a.jsonl"), **common))
    saved = torch.load(ckpt / "step_00000004.pt", weights_only=True)
    assert [s["epoch"] for s in saved["loader"]] == [1, 1]
    assert [s["batches"] for s in saved["loader"]] == [1, 1]
    assert len(saved["rng"]) == 2 and saved["run"]["world_size"] == 2
    resume = str(ckpt / "step_00000002.pt")
    _run_ranks(argv(data, resume=resume, metrics=str(tmp_path / "b.jsonl"), **common))
    a = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in a] == [0, 0, 0, 1]  # the epoch ended after 3 steps
    assert [r["step"] for r in b] == [3, 4]
    assert b == a[2:]
