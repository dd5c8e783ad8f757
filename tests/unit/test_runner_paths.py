"""A local path with a runner whose workers run elsewhere is refused in one line, before any
pipeline starts: those workers cannot see the launcher's disk (README, "gs:// and s3://
paths")."""

from __future__ import annotations

import pytest

from corpus_pipeline import resources
from corpus_pipeline.beam.options import remote_workers
from corpus_pipeline.cli import main

BOOKS = str(resources.DATA_DIR / "samples" / "books")
DATAFLOW = [
    "--runner",
    "DataflowRunner",
    "--project",
    "demo-project",
    "--region",
    "us-central1",
    "--temp_location",
    "gs://bucket/tmp",
]


@pytest.mark.parametrize(
    ("args", "remote"),
    [
        ([], None),
        (["--runner", "DirectRunner"], None),
        (["--runner", "PortableRunner", "--environment_type", "LOOPBACK"], None),
        (["--runner=PortableRunner", "--environment_type=PROCESS"], None),
        (
            ["--runner", "PortableRunner", "--job_endpoint", "localhost:8099"]
            + ["--environment_type", "PROCESS"],
            None,
        ),
        (["--runner", "DaskRunner"], None),  # Beam starts a LocalCluster here
        (["--runner", "DaskRunner", "--dask_client_address", "tcp://127.0.0.1:8786"], None),
        (DATAFLOW, "--runner DataflowRunner"),
        (
            ["--runner", "PortableRunner", "--job_endpoint", "embed"]
            + ["--environment_type", "EXTERNAL", "--environment_config", "localhost:50000"],
            "--runner PortableRunner --environment_type EXTERNAL",
        ),
        (["--runner", "PortableRunner"], "--runner PortableRunner --environment_type DOCKER"),
        (
            ["--runner", "PortableRunner", "--job_endpoint", "jobs.example:8099"]
            + ["--environment_type", "PROCESS"],
            "--runner PortableRunner --environment_type PROCESS",
        ),
        (
            ["--runner", "DaskRunner", "--dask_client_address", "tcp://10.1.2.3:8786"],
            "--runner DaskRunner --dask_client_address tcp://10.1.2.3:8786",
        ),
        (["--runner", "FlinkRunner"], "--runner FlinkRunner --environment_type DOCKER"),
    ],
)
def test_remote_workers(args, remote):
    assert remote_workers(args) == remote


def _refusal(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_run_with_a_local_output_on_dataflow_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    err = _refusal(capsys, ["run", "--books", BOOKS, "--output", str(out), *DATAFLOW])
    assert f"--output {out}: a local path, but --runner DataflowRunner runs its workers" in err
    assert "object-store path (gs://..., s3://...)" in err
    assert not out.exists()


def test_a_local_input_with_an_object_store_output_is_refused(capsys):
    argv = ["extract", "--books", BOOKS, "--output", "gs://bucket/out", *DATAFLOW]
    assert f"--books {BOOKS}: a local path" in _refusal(capsys, argv)


def test_portable_external_and_remote_dask_are_refused(tmp_path, capsys):
    docs = tmp_path / "docs.txt"
    docs.write_text("One sentence.\nTwo sentences.\n\n", encoding="utf-8")
    out = tmp_path / "masked"
    external = ["--runner", "PortableRunner", "--job_endpoint", "embed"]
    external += ["--environment_type", "EXTERNAL", "--environment_config", "localhost:50000"]
    argv = ["mask", "--input", str(docs), "--output", str(out), *external]
    assert "--environment_type EXTERNAL runs its workers" in _refusal(capsys, argv)
    dask = ["--runner", "DaskRunner", "--dask_client_address", "tcp://10.1.2.3:8786"]
    argv = ["mask", "--input", str(docs), "--output", str(out), *dask]
    assert "tcp://10.1.2.3:8786 runs its workers" in _refusal(capsys, argv)
    assert not out.exists()
