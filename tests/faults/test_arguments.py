"""Mistyped options and wrong paths: one true line and exit 2, never a run with defaults.

Most cases call the CLI's ``main`` in this process and read file descriptors 1 and 2 (pytest's
``capfd``): a refusal happens before any worker starts, and a child interpreter would cost a
second or two of CPU each to import Beam. The cases whose subject is the process itself run
the real console script in a child and read its whole stderr (libraries' logging included):
a misspelled option's exit code and line, ``-q`` leaving stderr empty, ``-v`` showing Beam's
log, ``--help`` not importing Beam, and progress bars on a terminal.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from corpus_pipeline import resources
from corpus_pipeline.cli import main
from tests.support.terminal import on_a_terminal

CLI = [sys.executable, "-m", "corpus_pipeline"]
BOOKS = resources.SAMPLE_BOOKS_DIR
DUMP = resources.SAMPLE_WIKI_DUMP


def cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *[str(a) for a in args]],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def here(capfd: pytest.CaptureFixture[str], *args: object) -> subprocess.CompletedProcess[str]:
    """``corpus-pipeline ARGS`` run in this process: its exit code, stdout and stderr."""
    argv = [str(a) for a in args]
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own refusals
        rc = e.code if isinstance(e.code, int) else 1
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(argv, rc, out, err)


def one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("args")
    f = d / "docs.txt"
    f.write_text(resources.SAMPLE_GOOGLE_TEXT.read_text(encoding="utf-8"), encoding="utf-8")
    return f


def test_a_misspelled_option_is_refused_with_the_close_match(docs: Path, tmp_path: Path) -> None:
    """``--dupe-facter 1`` must not run with the default dupe factor and exit 0."""
    out = tmp_path / "out"
    p = cli("mask", "--input", docs, "--output", out, "--dupe-facter", "1")
    assert p.returncode == 2
    one_error_line(p, "--dupe-facter", "did you mean --dupe-factor?")
    assert not out.exists()


@pytest.mark.parametrize("verb", ["extract", "run"])
def test_a_flag_of_another_verb_is_refused(
    verb: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    p = here(capfd, verb, "--books", BOOKS, "--output", tmp_path / "o", "--no-such-flag", "5")
    assert p.returncode == 2
    one_error_line(p, "--no-such-flag")


def test_beam_flags_still_pass_through(
    docs: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Real Beam options are accepted, not refused (in_memory: no worker process to start)."""
    out = tmp_path / "out"
    p = here(
        capfd,
        "mask",
        "--input",
        docs,
        "--output",
        out,
        "--shards",
        "1",
        "--dupe-factor",
        "1",
        "--workers",
        "1",
        "--direct_num_workers",
        "1",
        "--direct_running_mode=in_memory",
        "--experiments=beam_fn_api",
    )
    assert p.returncode == 0, p.stderr
    assert (out / "manifest.json").is_file()


@pytest.mark.parametrize(
    ("flag", "needle"),
    [
        ("--direct_num_workers=abc", "invalid int value: 'abc'"),
        ("--direct_running_mode=bogus", "invalid choice: 'bogus'"),
        # An option whose library is not installed here (Beam's dill extra).
        ("--pickle_library=dill", "dill is not installed"),
    ],
)
def test_a_bad_value_of_a_beam_option_is_one_line_not_beams_usage(
    flag: str, needle: str, docs: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    p = here(capfd, "mask", "--input", docs, "--output", out, flag)
    assert p.returncode == 2
    one_error_line(p, needle)
    assert not out.exists()


def test_a_beam_flag_with_dashes_gets_the_underscore_spelling(
    docs: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    p = here(capfd, "mask", "--input", docs, "--output", tmp_path / "o", "--temp-location", "/tmp")
    assert p.returncode == 2
    one_error_line(p, "--temp-location", "--temp_location")


@pytest.mark.parametrize("verb", ["extract", "mask", "run", "pack"])
def test_output_naming_an_existing_file(
    verb: str, docs: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "a-file"
    target.write_text("keep me\n")
    given = {
        "extract": ["--books", BOOKS],
        "run": ["--books", BOOKS],
        "mask": ["--input", docs],
        "pack": ["--input", tmp_path],
    }[verb]
    p = here(capfd, verb, *given, "--output", target)
    assert p.returncode == 2
    if verb == "pack":  # its input is checked first: no dataset there
        one_error_line(p)
    else:
        one_error_line(p, "is a file, not a folder")
    assert target.read_text() == "keep me\n"


@pytest.mark.parametrize("verb", ["extract", "run"])
def test_output_inside_the_books_folder_is_refused(
    verb: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A second run must not read the first one's output as books (3 -> 6 books, silently)."""
    books = tmp_path / "books"
    books.mkdir()
    for f in sorted(BOOKS.iterdir()):
        (books / f.name).write_bytes(f.read_bytes())
    before = sorted(p.name for p in books.iterdir())
    p = here(capfd, verb, "--books", books, "--output", books / "out")
    assert p.returncode == 2
    one_error_line(p, "inside the input folder")
    assert sorted(p.name for p in books.iterdir()) == before


@pytest.mark.parametrize("verb", ["extract", "run"])
def test_a_folder_as_input_says_folder(
    verb: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    p = here(capfd, verb, "--input", DUMP.parent, "--output", tmp_path / "o")
    assert p.returncode == 2
    one_error_line(p, "is a folder, not a file")


@pytest.mark.parametrize("verb", ["extract", "run"])
def test_a_fifo_as_input_says_fifo(
    verb: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "dump.xml"
    os.mkfifo(fifo)
    p = here(capfd, verb, "--input", fifo, "--output", tmp_path / "o")
    assert p.returncode == 2
    one_error_line(p, "FIFO")


def test_a_missing_input_says_no_such_file(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    p = here(capfd, "extract", "--input", tmp_path / "nope.xml.bz2", "--output", tmp_path / "o")
    assert p.returncode == 2
    one_error_line(p, "no such file")


def test_a_misspelled_extract_option_on_run_is_refused_with_the_close_match(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """``run`` takes every extract option; a near miss is not handed to Beam unread."""
    p = here(
        capfd, "run", "--books", BOOKS, "--output", tmp_path / "o", "--max-sentense-chars", "5"
    )
    assert p.returncode == 2
    one_error_line(p, "--max-sentense-chars", "did you mean --max-sentence-chars?")
    assert not (tmp_path / "o").exists()


#: ``--help`` of each command line in turn, in one fresh interpreter: after each, whether
#: Beam has been imported yet (the first command line that imports it is the one named).
HELP_IMPORTS = """
import json, runpy, sys
for argv in json.loads(sys.argv[1]):
    sys.argv = ["corpus-pipeline", *argv, "--help"]
    try:
        runpy.run_module("corpus_pipeline", run_name="__main__")
    except SystemExit as e:
        assert e.code == 0, (argv, e.code)
    print(json.dumps([argv, "apache_beam" in sys.modules]), file=sys.stderr)
"""
HELP_ARGVS = [[], ["extract"], ["vocab"], ["mask"], ["pack"], ["run"], ["verify"], ["inspect"]]


def test_help_does_not_import_beam() -> None:
    p = subprocess.run(
        [sys.executable, "-c", HELP_IMPORTS, json.dumps(HELP_ARGVS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("usage: corpus-pipeline") == len(HELP_ARGVS), p.stdout
    imported = [json.loads(line) for line in p.stderr.strip().splitlines()[-len(HELP_ARGVS) :]]
    assert imported == [[argv, False] for argv in HELP_ARGVS], p.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_before_or_after_the_verb(
    where: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """-q: no summary on stdout, nothing on stderr; the output is still written.

    Before the verb, the console script in a child (its whole stderr, Beam's logging
    included); after it, ``main`` in this process (the same parse, a cheaper run).
    """
    given = ["extract", "--books", BOOKS, "--output", tmp_path / "o"]
    p = cli("-q", *given) if where == "before" else here(capfd, *given, "-q")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "" and p.stderr == ""
    assert (tmp_path / "o" / "manifest.json").is_file()
    loud = here(capfd, "extract", "--books", BOOKS, "--output", tmp_path / "o2")
    assert loud.stdout.startswith("extract: ")


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_before_or_after_the_verb(where: str, tmp_path: Path) -> None:
    given = ["extract", "--books", BOOKS, "--output", tmp_path / "o"]
    p = cli(*(["-v", *given] if where == "before" else [*given, "-v"]))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("extract: ")
    assert "INFO " in p.stderr  # Beam's log, shown only with -v


def test_quiet_and_verbose_together_is_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    p = here(capfd, "-q", "extract", "--books", BOOKS, "--output", tmp_path / "o", "-v")
    assert p.returncode == 2
    one_error_line(p, "-v and -q")


@pytest.mark.parametrize("quiet", [False, True])
def test_vocab_progress_bar_has_a_total(quiet: bool, docs: Path, tmp_path: Path) -> None:
    rc, _, err = on_a_terminal(
        "vocab",
        "--input",
        docs,
        "--size",
        "200",
        "--output",
        tmp_path / "v.txt",
        *(["-q"] if quiet else []),
    )
    assert rc == 0, err
    if quiet:
        assert err == ""
    else:
        assert re.search(r"vocab: 100%.*\b3/3\b", err), err  # 1 file: 2 passes + the merges
