"""s3:// inputs and outputs through Beam's FileSystems, against a real (moto) S3 server.

Moto's standalone server runs as an HTTP server on 127.0.0.1; Beam's own S3 filesystem
(``apache-beam[aws]``, boto3) talks to it through the ``--s3_*`` pipeline options, in the
launcher and in the FnApiRunner worker processes alike. Every object a remote run writes
must have the bytes of the same run written to a local folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from corpus_pipeline import resources  # noqa: E402
from corpus_pipeline.formats.manifest import without_timestamps  # noqa: E402
from tests.e2e.conftest import WIKI_MASK, run_cli  # noqa: E402
from tests.e2e.test_pipeline import BASE  # noqa: E402

BUCKET = "corpus"


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on a free local port, one bucket, and the flags pointing Beam at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=BUCKET)
    client.upload_file(
        str(resources.SAMPLE_WIKI_DUMP), BUCKET, f"in/{resources.SAMPLE_WIKI_DUMP.name}"
    )
    client.upload_file(str(resources.SAMPLE_BOOK), BUCKET, f"in/books/{resources.SAMPLE_BOOK.name}")
    client.upload_file(str(resources.UNCASED_VOCAB), BUCKET, "in/vocab.txt")
    flags = [
        "--s3_endpoint_url",
        endpoint,
        "--s3_access_key_id",
        "x",
        "--s3_secret_access_key",
        "x",
        "--s3_region_name",
        "us-east-1",
    ]
    yield client, flags
    server.stop()


def remote_files(client, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix``, by path relative to it."""
    out: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
            out[obj["Key"][len(prefix) :]] = body
    return out


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def assert_same_output(remote: dict[str, bytes], local: dict[str, bytes]) -> None:
    """Same file names; same bytes, except manifests (compared without times and input paths)
    and run.json (its argv names the paths)."""
    assert sorted(remote) == sorted(local)
    assert not [k for k in remote if any(part.startswith(".") for part in k.split("/"))]
    for name, data in local.items():
        if name.endswith("manifest.json"):
            got, want = json.loads(remote[name]), json.loads(data)
            got.pop("inputs", None) if got.get("kind") == "documents" else None
            want.pop("inputs", None) if want.get("kind") == "documents" else None
            for m in (got, want):  # the fingerprint covers the inputs' paths: s3:// vs local
                m.pop("fingerprint", None)
            assert without_timestamps(got) == without_timestamps(want), name
        elif name != "run.json":
            assert hashlib.sha256(remote[name]).hexdigest() == hashlib.sha256(data).hexdigest(), (
                name
            )


@pytest.mark.soak  # make test: tests/e2e/test_isolated_workers.py runs `run` S3 -> S3 too
def test_run_s3_to_s3_matches_local(s3, tmp_path):
    client, flags = s3
    # HDF5 and TFRecord here (every upload costs a new boto3 client in Beam's S3 filesystem);
    # the mmap writers, Megatron's included, are covered by the mask test below.
    base = list(BASE)
    base[base.index("--format") + 1] = "hdf5,tfrecord"
    args = list(base)
    args[args.index("--input") + 1] = f"s3://{BUCKET}/in/{resources.SAMPLE_WIKI_DUMP.name}"
    args[args.index("--books") + 1] = f"s3://{BUCKET}/in/books"
    assert run_cli(*args, "--output", f"s3://{BUCKET}/out/run", "--workers", "2", *flags) == 0
    local = tmp_path / "local"
    assert run_cli(*base, "--output", local, "--workers", "2") == 0
    assert_same_output(remote_files(client, "out/run/"), local_files(local))


@pytest.mark.soak  # run s3 -> s3 and the isolated-worker test cover S3 in make test
def test_extract_then_mask_s3(s3, wiki_docs, wiki_masked):
    """Remote extract, then remote mask of its output with a remote vocabulary: the bytes of
    the local session fixtures with the same flags (mask: the mmap shards and the Megatron
    sentence dataset, which the run test leaves out)."""
    client, flags = s3
    docs = f"s3://{BUCKET}/out/docs"
    rc = run_cli(
        "extract",
        "--input",
        f"s3://{BUCKET}/in/{resources.SAMPLE_WIKI_DUMP.name}",
        "--output",
        docs,
        "--shards",
        "2",
        "--workers",
        "2",
        *flags,
    )
    assert rc == 0
    assert_same_output(remote_files(client, "out/docs/"), local_files(wiki_docs))
    rc = run_cli(
        *WIKI_MASK,
        "--input",
        docs,
        "--output",
        f"s3://{BUCKET}/out/masked",
        "--vocab",
        f"s3://{BUCKET}/in/vocab.txt",
        "--format",
        "mmap",
        "--workers",
        "2",
        *flags,
    )
    assert rc == 0
    remote = remote_files(client, "out/masked/")
    local = local_files(wiki_masked)
    assert sorted(remote) == sorted(["manifest.json", *(k for k in local if k.startswith("mmap/"))])
    for name in remote:
        if name != "manifest.json":
            assert remote[name] == local[name], name
    got, want = json.loads(remote["manifest.json"]), json.loads(local["manifest.json"])
    assert got["vocab"] == {**want["vocab"], "file": "vocab.txt"}
    assert got["statistics"] == want["statistics"]
    assert got["totals"] == want["totals"]
    assert [s["files"]["mmap"] for s in got["shards"]] == [
        s["files"]["mmap"] for s in want["shards"]
    ]
    assert got["megatron"] == want["megatron"]


@pytest.mark.soak
def test_pack_s3(s3, tmp_path, wiki_masked):
    """Remote pack of a remote dataset (shards downloaded per worker): the bytes of a local pack."""
    client, flags = s3
    client.upload_file(str(wiki_masked / "manifest.json"), BUCKET, "in/masked/manifest.json")
    for p in (wiki_masked / "mmap").glob(
        f"{json.loads((wiki_masked / 'manifest.json').read_text())['name']}_0*"
    ):
        client.upload_file(str(p), BUCKET, f"in/masked/mmap/{p.name}")
    common = ["--read-format", "mmap", "--format", "hdf5", "--workers", "2"]
    src, out = f"s3://{BUCKET}/in/masked", f"s3://{BUCKET}/out/packed"
    assert run_cli("pack", "--input", src, "--output", out, *common, *flags) == 0
    local = tmp_path / "packed"
    assert run_cli("pack", "--input", wiki_masked, "--output", local, *common) == 0
    remote = remote_files(client, "out/packed/")
    want = local_files(local)
    got_m, want_m = json.loads(remote.pop("manifest.json")), json.loads(want.pop("manifest.json"))
    assert remote == want
    assert got_m.pop("source") == "masked"  # the source folder's name
    want_m.pop("source")
    assert without_timestamps(got_m) == without_timestamps(want_m)


def test_bad_remote_paths_are_one_line_errors(s3, tmp_path, capsys):
    _, flags = s3
    cases = [
        (
            ["extract", "--input", f"s3://{BUCKET}/in/missing.xml.bz2", "--output", tmp_path],
            f"error: --input s3://{BUCKET}/in/missing.xml.bz2: no such file",
        ),
        (
            ["mask", "--input", f"s3://{BUCKET}/nothing-here", "--output", tmp_path],
            f"error: s3://{BUCKET}/nothing-here: no such file or folder",
        ),
        (
            [
                "extract",
                "--books",
                str(resources.SAMPLE_BOOKS_DIR),
                "--output",
                "s3://no-such-bucket/out",
            ],
            "error: s3://no-such-bucket/out: cannot write (",
        ),
        (
            ["run", "--books", "nosuch://bucket/books", "--output", tmp_path],
            "error: nosuch://bucket/books: no filesystem for nosuch:// in this install",
        ),
    ]
    for argv, expected in cases:
        assert run_cli(*argv, *flags) == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(expected), err


@pytest.mark.soak  # the refusal logic is tested locally in tests/faults/test_reused_output.py
def test_a_reused_s3_output_is_refused_then_overwritten(s3, capsys):
    """outdir.py on an object store: another configuration is refused in one line, --overwrite
    replaces it, and no object the manifest does not name is left (lock and state included)."""
    client, flags = s3
    out = f"s3://{BUCKET}/out/reused"
    base = ["extract", "--books", f"s3://{BUCKET}/in/books", "--output", out, "--workers", "1"]
    assert run_cli(*base, "--shards", "3", *flags) == 0
    capsys.readouterr()
    assert run_cli(*base, "--shards", "2", *flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(shards 3 vs 2): pass --overwrite" in err[0], err
    assert run_cli(*base, "--shards", "2", "--overwrite", *flags) == 0
    remote = remote_files(client, "out/reused/")
    manifest = json.loads(remote["manifest.json"])
    assert manifest["fingerprint"]["shards"] == 2
    assert sorted(remote) == sorted(["manifest.json", *(s["path"] for s in manifest["shards"])])
