"""Loss accounting through the CLI: damage is counted, shown and bounded.

Pages dropped as damaged (malformed, lost with a truncated or corrupt stream) are loss; pages
dropped on purpose (redirects, other namespaces, empty, too large) are not. The loss appears
in the end-of-run summary and in the documents manifest (``loss``), and when it is more than
``--max-loss`` (default 0.1 %) of the input the verb exits 1 with one line on stderr, the
shards written all the same. Inputs are built from the bundled enwiki excerpt.
"""

from __future__ import annotations

import bz2
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from corpus_pipeline import resources
from corpus_pipeline.config import ExtractConfig
from corpus_pipeline.testing.multistream import read_dump_bytes, split_dump
from tests.e2e.conftest import IN_PROCESS, run_cli

XML = read_dump_bytes(resources.SAMPLE_WIKI_DUMP)
HEADER, PAGES, FOOTER = split_dump(XML)
ARTICLES = [p for p in PAGES if b"<ns>0</ns>" in p and b"<redirect" not in p]


def damaged(page: bytes, damage: bytes) -> bytes:
    at = page.index(b">", page.index(b"<text")) + 20
    return page[:at] + damage + page[at:]


def test_damage_over_the_threshold_exits_1_with_one_line(tmp_path: Path) -> None:
    """3 damaged pages of 20: exit 1, one ``error:`` line naming the dump, what was lost and
    the flag; the shards and the manifest (with its loss section) are written."""
    pages = sorted(ARTICLES, key=len)[1:21]
    bad = {3: b"\x00", 9: b"&foo;", 15: b"\xff\xfe"}
    pages = [damaged(p, bad[i]) if i in bad else p for i, p in enumerate(pages)]
    dump = tmp_path / "enwiki-damaged.xml.bz2"
    dump.write_bytes(bz2.compress(HEADER + b"".join(pages) + FOOTER))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "corpus_pipeline", "extract", "--input", str(dump)]
    cmd += ["--output", str(out), *IN_PROCESS]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("error: enwiki-damaged.xml.bz2: 3 of 20 pages (15.0%)"), line
    for word in ("invalid_char 1", "undefined_entity 1", "invalid_encoding 1", "--max-loss"):
        assert word in line, line
    assert str(out) in line
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counters"]["extract/pages"] == 17  # every intact page was cleaned
    loss = manifest["loss"]
    assert loss["pages_read"] == 20 and loss["pages_dropped"] == 3
    assert loss["pages_dropped_by_reason"] == {
        "invalid_char": 1,
        "invalid_encoding": 1,
        "undefined_entity": 1,
    }
    assert loss["max_loss"] == ExtractConfig.max_loss
    assert "loss: 3 of 20 pages" in proc.stdout


def test_damage_under_the_threshold_is_in_the_summary_and_the_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One NUL in an article at 3 % of the single-stream excerpt: every other page is
    extracted (104 of 105 documents, not only the pages before it), exit 0 under
    ``--max-loss 0.05`` (the page is 2.5 % of the bytes)."""
    offsets = [len(HEADER)]
    for p in PAGES:
        offsets.append(offsets[-1] + len(p))
    i = next(k for k, p in enumerate(PAGES) if offsets[k] >= 0.03 * len(XML) and p in ARTICLES)
    dump = tmp_path / "enwiki-nul.xml.bz2"
    pages = [*PAGES[:i], damaged(PAGES[i], b"\x00"), *PAGES[i + 1 :]]
    dump.write_bytes(bz2.compress(HEADER + b"".join(pages) + FOOTER))
    out = tmp_path / "out"
    rc = run_cli("extract", "--input", dump, "--output", out, *IN_PROCESS, "--max-loss", "0.05")
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["documents"] == 104
    assert manifest["counters"]["extract/dropped:malformed_page"] == 1
    loss = manifest["loss"]
    assert loss["pages_read"] == 206 and loss["pages_dropped"] == 1
    assert loss["pages_dropped_by_reason"] == {"invalid_char": 1}
    assert 0 < loss["bytes_dropped"] < loss["bytes_read"]
    assert loss["share"] == max(1 / 206, loss["bytes_dropped"] / loss["bytes_read"])
    assert re.search(r"^loss: 1 of 206 pages \(0\.49%\) dropped as damaged", captured.out, re.M)
    assert "extract/malformed_page:invalid_char" in captured.out


def test_max_loss_flag_is_checked_and_reaches_the_run_config(tmp_path: Path) -> None:
    from corpus_pipeline.cli import build_parser
    from corpus_pipeline.commands import run as run_cmd

    args = build_parser().parse_args(
        ["run", "--input", str(resources.SAMPLE_WIKI_DUMP), "--output", str(tmp_path / "o")]
        + ["--max-loss", "0.05"]
    )
    assert run_cmd.config_from_args(args).extract.max_loss == 0.05
    out = tmp_path / "out"
    rc = run_cli(
        "extract", "--input", resources.SAMPLE_WIKI_DUMP, "--output", out, "--max-loss", "2"
    )
    assert rc == 2
