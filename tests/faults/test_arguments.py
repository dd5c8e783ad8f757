"""Mistyped options and wrong paths: one true line and exit 2, never a run with defaults.

Every case runs the real console script in a child process and reads its whole stderr (file
descriptor 2, so worker processes and libraries are included, not only ``sys.stderr``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from corpus_pipeline import resources

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
def test_a_flag_of_another_verb_is_refused(verb: str, tmp_path: Path) -> None:
    p = cli(verb, "--books", BOOKS, "--output", tmp_path / "o", "--no-such-flag", "5")
    assert p.returncode == 2
    one_error_line(p, "--no-such-flag")


def test_beam_flags_still_pass_through(docs: Path, tmp_path: Path) -> None:
    """A real Beam option (and -v after the verb) is accepted, not refused."""
    out = tmp_path / "out"
    p = cli(
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
        "--experiments=beam_fn_api",
    )
    assert p.returncode == 0, p.stderr
    assert (out / "manifest.json").is_file()


def test_a_beam_flag_with_dashes_gets_the_underscore_spelling(docs: Path, tmp_path: Path) -> None:
    p = cli("mask", "--input", docs, "--output", tmp_path / "o", "--temp-location", "/tmp")
    assert p.returncode == 2
    one_error_line(p, "--temp-location", "--temp_location")


@pytest.mark.parametrize("verb", ["extract", "mask", "run", "pack"])
def test_output_naming_an_existing_file(verb: str, docs: Path, tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("keep me\n")
    given = {
        "extract": ["--books", BOOKS],
        "run": ["--books", BOOKS],
        "mask": ["--input", docs],
        "pack": ["--input", tmp_path],
    }[verb]
    p = cli(verb, *given, "--output", target)
    assert p.returncode == 2
    if verb == "pack":  # its input is checked first: no dataset there
        one_error_line(p)
    else:
        one_error_line(p, "is a file, not a folder")
    assert target.read_text() == "keep me\n"


@pytest.mark.parametrize("verb", ["extract", "run"])
def test_output_inside_the_books_folder_is_refused(verb: str, tmp_path: Path) -> None:
    """A second run must not read the first one's output as books (3 -> 6 books, silently)."""
    books = tmp_path / "books"
    books.mkdir()
    for f in sorted(BOOKS.iterdir()):
        (books / f.name).write_bytes(f.read_bytes())
    before = sorted(p.name for p in books.iterdir())
    p = cli(verb, "--books", books, "--output", books / "out")
    assert p.returncode == 2
    one_error_line(p, "inside the input folder")
    assert sorted(p.name for p in books.iterdir()) == before


@pytest.mark.parametrize("verb", ["extract", "run"])
def test_a_folder_as_input_says_folder(verb: str, tmp_path: Path) -> None:
    p = cli(verb, "--input", DUMP.parent, "--output", tmp_path / "o")
    assert p.returncode == 2
    one_error_line(p, "is a folder, not a file")


@pytest.mark.parametrize("verb", ["extract", "run"])
def test_a_fifo_as_input_says_fifo(verb: str, tmp_path: Path) -> None:
    fifo = tmp_path / "dump.xml"
    os.mkfifo(fifo)
    p = cli(verb, "--input", fifo, "--output", tmp_path / "o")
    assert p.returncode == 2
    one_error_line(p, "FIFO")


def test_a_missing_input_says_no_such_file(tmp_path: Path) -> None:
    p = cli("extract", "--input", tmp_path / "nope.xml.bz2", "--output", tmp_path / "o")
    assert p.returncode == 2
    one_error_line(p, "no such file")


def test_a_misspelled_extract_option_on_run_is_refused_with_the_close_match(
    tmp_path: Path,
) -> None:
    """``run`` takes every extract option; a near miss is not handed to Beam unread."""
    p = cli("run", "--books", BOOKS, "--output", tmp_path / "o", "--max-sentense-chars", "5")
    assert p.returncode == 2
    one_error_line(p, "--max-sentense-chars", "did you mean --max-sentence-chars?")
    assert not (tmp_path / "o").exists()


HELP_IMPORTS = """
import runpy, sys
sys.argv = ["corpus-pipeline", *sys.argv[1:]]
try:
    runpy.run_module("corpus_pipeline", run_name="__main__")
except SystemExit as e:
    assert e.code == 0, e.code
print("BEAM" if "apache_beam" in sys.modules else "NO-BEAM", file=sys.stderr)
"""


@pytest.mark.parametrize(
    "argv", [[], ["extract"], ["vocab"], ["mask"], ["pack"], ["run"], ["verify"], ["inspect"]]
)
def test_help_does_not_import_beam(argv: list[str]) -> None:
    p = subprocess.run(
        [sys.executable, "-c", HELP_IMPORTS, *argv, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "usage: corpus-pipeline" in p.stdout
    assert p.stderr.strip().splitlines()[-1] == "NO-BEAM"


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_before_or_after_the_verb(where: str, tmp_path: Path) -> None:
    """-q: no summary on stdout, nothing on stderr; the output is still written."""
    given = ["extract", "--books", BOOKS, "--output", tmp_path / "o"]
    p = cli(*(["-q", *given] if where == "before" else [*given, "-q"]))
    assert p.returncode == 0, p.stderr
    assert p.stdout == "" and p.stderr == ""
    assert (tmp_path / "o" / "manifest.json").is_file()
    loud = cli("extract", "--books", BOOKS, "--output", tmp_path / "o2")
    assert loud.stdout.startswith("extract: ")


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_before_or_after_the_verb(where: str, tmp_path: Path) -> None:
    given = ["extract", "--books", BOOKS, "--output", tmp_path / "o"]
    p = cli(*(["-v", *given] if where == "before" else [*given, "-v"]))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("extract: ")
    assert "INFO " in p.stderr  # Beam's log, shown only with -v


def test_quiet_and_verbose_together_is_one_line(tmp_path: Path) -> None:
    p = cli("-q", "extract", "--books", BOOKS, "--output", tmp_path / "o", "-v")
    assert p.returncode == 2
    one_error_line(p, "-v and -q")


def _on_a_terminal(*args: object) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal (where progress bars are drawn)."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    # 100 columns: tqdm draws nothing on a terminal of width 0, a new pty's size.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(
        [*CLI, *[str(a) for a in args]], stdout=subprocess.PIPE, stderr=follower
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=300)
    os.close(leader)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.parametrize("quiet", [False, True])
def test_vocab_progress_bar_has_a_total(quiet: bool, docs: Path, tmp_path: Path) -> None:
    rc, err = _on_a_terminal(
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
