"""What a non-local runner's workers receive: no path of the launcher (bundled data by name
and sha256, a user's vocabulary by content, no progress file). The end-to-end proof is
``tests/e2e/test_isolated_workers.py``."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import cloudpickle
import pytest

from corpus_pipeline import resources
from corpus_pipeline.beam import progress
from corpus_pipeline.beam.mask import MaskBucket
from corpus_pipeline.beam.mask_buckets import EncodeAndBucket
from corpus_pipeline.beam.options import is_dask_runner, is_local_runner
from corpus_pipeline.beam.progress import Progress
from corpus_pipeline.beam.vocab_spec import VocabSpec
from corpus_pipeline.config import MaskConfig
from corpus_pipeline.errors import UserError


@pytest.mark.parametrize(
    ("args", "local"),
    [
        ([], True),
        (["--direct_running_mode", "in_memory"], True),
        (["--runner", "DirectRunner"], True),
        (["--runner=FnApiRunner"], True),
        (["--runner", "PortableRunner", "--environment_type", "LOOPBACK"], True),
        (["--runner", "PortableRunner", "--environment_type", "EXTERNAL"], False),
        (["--runner", "DataflowRunner"], False),
        (["--runner", "DaskRunner"], False),
    ],
)
def test_is_local_runner(args, local):
    assert is_local_runner(args) is local
    assert is_dask_runner(args) is ("DaskRunner" in args)


def test_progress_is_not_sent_to_non_local_runners(monkeypatch):
    assert pickle.loads(pickle.dumps(Progress("/tmp/x/ticks"))).path == "/tmp/x/ticks"
    monkeypatch.setattr(progress, "_LOCAL_RUN", False)
    assert pickle.loads(pickle.dumps(Progress("/tmp/x/ticks"))).path is None


def test_bundled_vocabulary_travels_by_name_and_sha256():
    spec = VocabSpec.from_file(resources.UNCASED_VOCAB, "v.txt", False, bundled="uncased")
    assert spec.content is None
    assert spec.sha256 == hashlib.sha256(resources.UNCASED_VOCAB.read_bytes()).hexdigest()
    dofns = [
        EncodeAndBucket(spec, MaskConfig(), "s3://b/spill", Progress(None), False),
        MaskBucket(spec, MaskConfig(), 2, "s3://b/spill"),
    ]
    for fn in dofns:
        blob = cloudpickle.dumps(fn)
        assert str(resources.DATA_DIR).encode() not in blob
        assert str(resources.VOCAB_DIR.resolve()).encode() not in blob
    assert Path(spec.local_path()).read_bytes() == resources.UNCASED_VOCAB.read_bytes()


def test_user_vocabulary_travels_by_content(tmp_path):
    user = tmp_path / "my-vocab.txt"
    user.write_bytes(resources.CASED_VOCAB.read_bytes())
    spec = VocabSpec.from_file(user, user.name, True)
    assert spec.content == user.read_bytes()
    assert str(tmp_path).encode() not in cloudpickle.dumps(spec)
    user.unlink()  # the worker needs nothing of the launcher's disk
    copy = pickle.loads(pickle.dumps(spec)).local_path()
    assert Path(copy).read_bytes() == resources.CASED_VOCAB.read_bytes()


def test_a_worker_with_another_vocabulary_refuses_it():
    spec = VocabSpec("bert-base-uncased-vocab.txt", False, "0" * 64, bundled="uncased")
    with pytest.raises(UserError, match="sha256 .* on this worker, 000000000000 on the launcher"):
        spec.local_path()
