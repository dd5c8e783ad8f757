"""The whole pipeline in one Beam graph: four runners, Dataflow packaging (kill -9 and resume:
``tests/faults/test_kill.py``)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from corpus_pipeline import resources
from corpus_pipeline.formats.manifest import read_manifest
from tests.e2e.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
BASE = [
    "run",
    "--input",
    str(resources.SAMPLE_WIKI_DUMP),
    "--books",
    str(resources.SAMPLE_BOOKS_DIR),
    "--preset",
    "phase1",
    "--dupe-factor",
    "1",
    "--format",
    "all",
    "--pack",
    "--doc-shards",
    "3",
    "--shards",
    "3",
]


def fingerprint(out: Path) -> dict[str, str]:
    """sha256 of every output file, from the manifests (which tests elsewhere check)."""
    fp: dict[str, str] = {}
    for ds in ("unpacked", "packed"):
        m = read_manifest(str(out / ds))
        for shard in m["shards"]:
            for entries in shard["files"].values():
                for e in entries:
                    fp[f"{ds}/{e['path']}"] = e["sha256"]
        if m.get("megatron"):
            for e in m["megatron"]["files"]:
                fp[f"{ds}/{e['path']}"] = e["sha256"]
    docs = json.loads((out / "docs" / "manifest.json").read_text())
    for s in docs["shards"]:
        fp[f"docs/{s['path']}"] = s["sha256"]
    return fp


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    assert run_cli(*BASE, "--output", out, "--workers", "2") == 0
    return out, fingerprint(out)


def test_layout_and_counts(reference):
    out, fp = reference
    unpacked = read_manifest(str(out / "unpacked"))
    packed = read_manifest(str(out / "packed"))
    assert unpacked["totals"]["instances"] == packed["totals"]["instances"] > 0
    assert packed["totals"]["records"] < packed["totals"]["instances"]
    assert unpacked["megatron"]["documents"] == 106
    assert len([k for k in fp if k.startswith("docs/")]) == 3
    assert json.loads((out / "run.json").read_text())["datasets"]["packed"] == "packed"
    # No temp files, spill files or markers are left behind.
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "runner",
    [
        pytest.param("in_memory", marks=pytest.mark.soak),
        pytest.param(
            "multi_processing_1", marks=pytest.mark.soak
        ),  # 1 vs 2 workers: mask/extract tests
        "portable_loopback",
    ],
)
def test_same_bytes_on_every_runner(tmp_path, reference, runner):
    _, expected = reference
    out = tmp_path / runner
    if runner == "in_memory":
        extra = ["--direct_running_mode", "in_memory"]
    elif runner == "multi_processing_1":
        extra = ["--workers", "1"]
    else:
        port = _free_port()
        job = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "apache_beam.runners.portability.local_job_service_main",
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.2)
            rc = run_cli(
                *BASE,
                "--output",
                out,
                "--runner",
                "PortableRunner",
                f"--job_endpoint=localhost:{port}",
                "--environment_type=LOOPBACK",
            )
        finally:
            job.terminate()
            job.wait(timeout=30)
        assert rc == 0
        assert fingerprint(out) == expected
        return
    assert run_cli(*BASE, "--output", out, *extra) == 0
    assert fingerprint(out) == expected


def test_dataflow_graph_and_staging_without_the_service(tmp_path):
    """Build the graph with DataflowRunner options; stage the package as Dataflow would."""
    from apache_beam.runners.portability.stager import Stager

    from corpus_pipeline.beam.options import make_options
    from corpus_pipeline.beam.progress import Progress
    from corpus_pipeline.cli import build_parser
    from corpus_pipeline.commands import mask as mask_cmd
    from corpus_pipeline.commands import run as run_cmd
    from pipelines import pretraining

    argv = [*BASE, "--output", str(tmp_path / "out")]
    args, beam_args = build_parser().parse_known_args(argv)
    beam_args = [
        "--runner",
        "DataflowRunner",
        "--project",
        "demo-project",
        "--region",
        "us-central1",
        "--temp_location",
        "gs://bucket/tmp",
        "--setup_file",
        str(ROOT / "pyproject.toml"),
    ]
    opts = make_options(2, beam_args)
    assert opts.get_all_options()["runner"] == "DataflowRunner"
    # Our local defaults are not forced onto a remote runner.
    assert opts.get_all_options()["direct_running_mode"] != "multi_processing"
    cfg = run_cmd.config_from_args(args)
    built = pretraining.prepare(cfg, mask_cmd.vocab_info(args))
    p = beam.Pipeline(options=opts)
    pretraining.build(p, cfg, built, Progress(None))
    labels = {t.full_label for t in p.transforms_stack[0].parts}
    assert {"Extract", "Mask", "CollectDocShards", "SaveDocShards"} <= labels
    proto = p.to_runner_api()
    names = {t.unique_name for t in proto.components.transforms.values()}
    for step in (
        "Extract/ExtractUnits",
        "Mask/CountDocuments",
        "Mask/EncodeAndBucket",
        "Mask/GroupByBucket",
        "Mask/MaskBuckets",
        "Mask/GroupByShard",
        "Mask/WriteShards",
        "CollectShards",
        "WriteMegatron",
    ):
        assert any(n.endswith(step) or n == step for n in names), step
    staging = tmp_path / "staging"
    staging.mkdir()
    Stager.create_job_resources(PipelineOptions(beam_args), str(staging))
    sdists = list(staging.glob("corpus_pipeline-*.tar.gz"))
    assert len(sdists) == 1
    with tarfile.open(sdists[0]) as tar:
        members = tar.getnames()
    for needed in (
        "corpus_pipeline/stages/masking.py",
        "pipelines/pretraining.py",
        "punkt_tab/english/ortho_context.tab",
        "bert-base-uncased-vocab.txt",
    ):
        assert any(m.endswith(needed) for m in members), needed
