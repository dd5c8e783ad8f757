"""Workers that share nothing with the launcher: nothing launcher-local may reach them.

Beam's worker pool (``worker_pool_main``, what a Flink/Spark cluster or a Kubernetes pod runs
for an EXTERNAL environment) is started in its own mount namespace where this checkout and
the launcher's temp folder are empty tmpfs mounts: it imports corpus-pipeline from a wheel
installed into a folder of its own (Beam and the other dependencies from the venv's
site-packages, bind-mounted elsewhere, without the checkout's editable-install hook). The
launcher runs ``run`` with ``--runner PortableRunner --job_endpoint embed`` (an in-process job
service) and ``--environment_type EXTERNAL``, input and output on a local S3 server. Any path
of the launcher sent to a worker (the bundled vocabulary inside the launcher's checkout, the
progress file) fails the run; the shards must be byte-identical to a local run's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from corpus_pipeline import resources  # noqa: E402
from corpus_pipeline.formats.manifest import read_manifest  # noqa: E402
from tests.e2e.conftest import run_cli  # noqa: E402
from tests.e2e.test_remote import BUCKET, remote_files, s3  # noqa: E402,F401

ROOT = Path(__file__).resolve().parents[2]
SITE_PACKAGES = Path(
    next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
)
COMMON = [
    "run",
    "--preset",
    "phase1",
    "--dupe-factor",
    "1",
    "--format",
    "hdf5",
    "--doc-shards",
    "1",
    "--shards",
    "2",
]


def _namespaces_work() -> bool:
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
    )
    return probe.returncode == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install_wheel(build_dir: Path, target: Path) -> None:
    """Build corpus-pipeline's wheel from a copy of the working tree, install it in ``target``.

    The copy keeps the build's by-products (``build/``, ``*.egg-info``) out of the checkout.
    """
    src = build_dir / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("corpus_pipeline", "pipelines"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    wheels = build_dir / "wheels"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, src],
        check=True,
        cwd=build_dir,
    )
    (wheel,) = wheels.glob("corpus_pipeline-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", target, wheel], check=True)


#: What Beam's SDK container entrypoint (``boot``) does for each worker the pool starts: fetch
#: the pipeline options from the runner's provision service and start ``sdk_worker_main``
#: with them (Beam's pool without a container executable runs bare SdkHarness threads,
#: which never see the options: no ``--s3_endpoint_url`` for their FileSystems).
BOOT = """\
import argparse, os, sys
import grpc
from google.protobuf import json_format
from apache_beam.portability.api import beam_provision_api_pb2, beam_provision_api_pb2_grpc

p = argparse.ArgumentParser()
for name in ("id", "logging_endpoint", "artifact_endpoint", "provision_endpoint",
             "control_endpoint"):
    p.add_argument("--" + name)
a = p.parse_args()
stub = beam_provision_api_pb2_grpc.ProvisionServiceStub(grpc.insecure_channel(a.provision_endpoint))
info = stub.GetProvisionInfo(
    beam_provision_api_pb2.GetProvisionInfoRequest(), metadata=[("worker_id", a.id)]
).info
os.environ.update(
    WORKER_ID=a.id,
    PIPELINE_OPTIONS=json_format.MessageToJson(info.pipeline_options),
    CONTROL_API_SERVICE_DESCRIPTOR=f"url: '{a.control_endpoint}'",
    LOGGING_API_SERVICE_DESCRIPTOR=f"url: '{a.logging_endpoint}'",
)
os.execv(sys.executable, [sys.executable, "-s", "-m", "apache_beam.runners.worker.sdk_worker_main"])
"""


def start_isolated_pool(worker: Path, hidden: list[Path], port: int) -> subprocess.Popen:
    """Beam's worker pool in a mount namespace where ``hidden`` folders are empty."""
    packages, site, cwd = worker / "packages", worker / "site-packages", worker / "cwd"
    site.mkdir()
    cwd.mkdir()
    python = os.path.realpath(sys.executable)  # the base interpreter, outside the checkout
    boot = worker / "boot"
    boot.write_text(f"#!{python} -s\n{BOOT}", encoding="utf-8")
    boot.chmod(0o755)
    script = " && ".join(
        [
            f"mount --bind {SITE_PACKAGES} {site}",
            *(f"mount -t tmpfs none {h}" for h in hidden),
            f"cd {cwd}",
            f"exec {python} -s -m apache_beam.runners.worker.worker_pool_main "
            f"--service_port={port} --container_executable={boot}",
        ]
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "TMP"))
    }
    env["PYTHONPATH"] = f"{packages}:{site}"
    env["PATH"] = os.path.dirname(python) + ":/usr/bin:/bin"
    pool = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        env=env,
        cwd="/",
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=open(worker / "pool.log", "wb"),  # noqa: SIM115
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if pool.poll() is not None:
            raise AssertionError(f"worker pool exited: {(worker / 'pool.log').read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return pool
        time.sleep(0.2)
    raise AssertionError("worker pool did not start")


def stop(pool: subprocess.Popen) -> None:
    """Stop the pool and the SDK workers it started (its own process group)."""
    import signal

    try:
        os.killpg(pool.pid, signal.SIGTERM)
        pool.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with __import__("contextlib").suppress(ProcessLookupError):
            os.killpg(pool.pid, signal.SIGKILL)
        pool.wait(timeout=10)


def shard_digests(files: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in files.items() if not k.endswith(".json")}


@pytest.mark.skipif(not _namespaces_work(), reason="needs root and mount namespaces (unshare)")
def test_isolated_external_workers_match_local(s3, tmp_path, monkeypatch):  # noqa: F811
    client, flags = s3
    launcher, worker = tmp_path / "launcher", tmp_path / "worker"
    (launcher / "tmp").mkdir(parents=True)
    worker.mkdir()
    # The launcher's temp folder (its private run folder, the progress file) is one the
    # workers cannot see.
    monkeypatch.setenv("TMPDIR", str(launcher / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", None)
    install_wheel(launcher / "build", worker / "packages")
    # The book's first 1,500 lines (60 KB, still instances in both shards): what is checked
    # is where the work runs, not how much of it there is.
    books = launcher / "books"
    books.mkdir()
    lines = resources.SAMPLE_BOOK.read_text(encoding="utf-8").splitlines(keepends=True)
    (books / "sherlock.txt").write_text("".join(lines[:1500]), encoding="utf-8")
    client.upload_file(str(books / "sherlock.txt"), BUCKET, "iso/books/sherlock.txt")

    local = launcher / "local"
    # The reference: the default local runner's bytes (in_memory gives the same, and starts
    # no worker processes).
    rc = run_cli(
        *COMMON,
        "--books",
        books,
        "--output",
        local,
        "--direct_running_mode",
        "in_memory",
    )
    assert rc == 0

    port = _free_port()
    pool = start_isolated_pool(worker, [ROOT, launcher], port)
    try:
        rc = run_cli(
            *COMMON,
            "--books",
            f"s3://{BUCKET}/iso/books",
            "--output",
            f"s3://{BUCKET}/iso/out",
            "--runner",
            "PortableRunner",
            "--job_endpoint",
            "embed",
            "--environment_type",
            "EXTERNAL",
            "--environment_config",
            f"localhost:{port}",
            *flags,
        )
    finally:
        stop(pool)
    assert rc == 0, (worker / "pool.log").read_text()[-3000:]

    remote = remote_files(client, "iso/out/")
    want = {
        p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()
    }
    assert shard_digests(remote) == shard_digests(want)
    assert any(k.startswith("unpacked/hdf5/") for k in shard_digests(remote))
    # The manifests record the same shard digests, vocabulary and counts.
    got = read_manifest(f"s3://{BUCKET}/iso/out/unpacked")
    ref = read_manifest(str(local / "unpacked"))
    assert [s["files"] for s in got["shards"]] == [s["files"] for s in ref["shards"]]
    assert got["vocab"] == ref["vocab"]
    assert got["totals"] == ref["totals"]
