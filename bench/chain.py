"""End to end on one core: the peer chain as users run it against `corpus-pipeline run`.

Input: the bundled enwiki excerpt repeated ``--scale`` times (pages get new ids and titles)
as ONE single-stream ``.xml.bz2`` (what ``...-pages-articles.xml.bz2`` is), built in a temp
folder. Both chains turn it into masked BERT instances, S=128, P=20, dupe factor 5, HDF5:

* peer: ``python -m wikiextractor.WikiExtractor --processes 1`` -> nltk Punkt (the bundled
  English parameters, as the tests load them) over its output, one sentence a line, documents
  split into as many text shards as ours has -> BERT's ``create_pretraining_data`` on each
  shard (``bench/_peer_bert.py``: google-research/bert's algorithm and pure-Python
  tokenizer, NVIDIA's HDF5 output; ``--peer-script PATH`` runs your copy of NVIDIA's
  ``create_pretraining_data.py`` instead, same arguments).
* ours: ``corpus-pipeline run --workers 1 --format hdf5 --preset phase1 --dupe-factor 5``;
  for the per-stage rows, the same work as ``extract`` then ``mask`` (two processes).

Every stage is a child process; its CPU seconds are the user+system time of
``resource.getrusage(RUSAGE_CHILDREN)`` before and after (children and the processes they
waited for: wikiextractor's reader/worker/writer processes, our Beam worker). CPU, not wall:
the machine is shared. Last lines: XML MB per CPU-second of ``run --format all --pack``, and
``peer/ours CPU ratio`` (the goal is >= 3.0).

    .venv/bin/python bench/chain.py [--scale 10] [--peer-script create_pretraining_data.py]
"""

from __future__ import annotations

import argparse
import bz2
import contextlib
import resource
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import child_env, cli, print_table  # noqa: E402

from corpus_pipeline.resources import SAMPLE_WIKI_DUMP, UNCASED_VOCAB  # noqa: E402
from corpus_pipeline.testing.multistream import (  # noqa: E402
    _page_copy,
    read_dump_bytes,
    split_dump,
)

HERE = Path(__file__).resolve().parent
MB = 1e6


def single_stream_dump(scale: int, folder: Path) -> tuple[Path, int]:
    """The excerpt's pages ``scale`` times (unique ids and titles) as one bz2 stream.

    Returns the dump's path and its uncompressed XML size in bytes.
    """
    header, pages, footer = split_dump(read_dump_bytes(SAMPLE_WIKI_DUMP))
    max_id = max(_page_copy(p, 0, 0)[1] for p in pages)
    stride = 10 ** len(str(max_id))
    path = folder / f"chain-x{scale}-pages-articles.xml.bz2"
    comp = bz2.BZ2Compressor(9)
    size = 0
    with open(path, "wb") as out:
        for part in (
            header,
            *(_page_copy(p, c, stride)[0] for c in range(scale) for p in pages),
            footer,
        ):
            size += len(part)
            out.write(comp.compress(part))
        out.write(comp.flush())
    return path, size


def child_cpu() -> float:
    """User + system seconds of this process's waited-for children so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def stage(cmd: list[str], name: str = "") -> float:
    """Run ``cmd`` (output discarded, stderr shown on failure); its CPU seconds, printed
    under ``name`` as soon as it is done (a long run that fails later keeps them)."""
    before = child_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    cpu = child_cpu() - before
    if name:
        print(f"  {name}: {cpu:.1f} CPU s", flush=True)
    return cpu


def peer_sentences(extracted: Path, out: Path, shards: int) -> None:
    """wikiextractor's ``<doc>`` files -> nltk Punkt sentences, one a line, a blank line after
    each document (the input ``create_pretraining_data`` reads), documents dealt round-robin
    into ``shards`` files. The first line of a document is its title (wikiextractor's output),
    left out as NVIDIA's formatting step does."""
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    from corpus_pipeline.stages.sentences import get_tokenizer

    params = get_tokenizer().params
    p = PunktParameters()
    p.abbrev_types = set(params.abbrev_types)
    p.collocations = set(params.collocations)
    p.sent_starters = set(params.sent_starters)
    p.ortho_context = defaultdict(int, params.ortho_context)
    tok = PunktSentenceTokenizer(p)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    with contextlib.ExitStack() as stack:
        files = [
            stack.enter_context(open(out / f"shard_{i:05d}.txt", "w", encoding="utf-8"))
            for i in range(shards)
        ]
        for path in sorted(x for x in extracted.rglob("wiki_*") if x.is_file()):
            doc: list[str] | None = None
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.startswith("<doc "):
                    doc = []
                elif line.startswith("</doc>"):
                    paragraphs = [x.strip() for x in (doc or [])[1:] if x.strip()]
                    sents = [s for para in paragraphs for s in tok.tokenize(para)]
                    if sents:
                        files[n % shards].write("\n".join(sents) + "\n\n")
                        n += 1
                    doc = None
                elif doc is not None:
                    doc.append(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, default=10, help="copies of the excerpt (default 10)")
    ap.add_argument("--peer-script", help="your copy of NVIDIA's create_pretraining_data.py")
    ap.add_argument("--shards", type=int, default=0, help="shards, both chains (default scale)")
    ap.add_argument("--peer-sentences", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.peer_sentences:
        src, dst, n = args.peer_sentences
        peer_sentences(Path(src), Path(dst), int(n))
        return 0
    shards = args.shards or max(1, args.scale)
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="chain-") as tmp_:
        tmp = Path(tmp_)
        dump, xml_bytes = single_stream_dump(args.scale, tmp)
        xml_mb = xml_bytes / MB
        print(f"input: {dump.name}, {xml_mb:.1f} MB of XML in one bz2 stream; {shards} shards")

        peer: list[tuple[str, float]] = []
        peer.append(
            (
                "wikiextractor --processes 1",
                stage(
                    [py, "-m", "wikiextractor.WikiExtractor", "--processes", "1", "-q"]
                    + ["-o", str(tmp / "wx"), str(dump)],
                    "peer wikiextractor",
                ),
            )
        )
        sent_cmd = [py, str(Path(__file__).resolve()), "--peer-sentences"]
        peer.append(
            (
                "nltk punkt",
                stage([*sent_cmd, str(tmp / "wx"), str(tmp / "sent"), str(shards)], "peer punkt"),
            )
        )
        script = args.peer_script or str(HERE / "_peer_bert.py")
        (tmp / "peer_hdf5").mkdir()
        cpd = 0.0
        for txt in sorted((tmp / "sent").glob("shard_*.txt")):
            cpd += stage(
                [py, script, "--input_file", str(txt)]
                + ["--output_file", str(tmp / "peer_hdf5" / (txt.stem + ".hdf5"))]
                + ["--vocab_file", str(UNCASED_VOCAB), "--do_lower_case"]
                + ["--max_seq_length", "128", "--max_predictions_per_seq", "20"]
                + ["--masked_lm_prob", "0.15", "--dupe_factor", "5", "--random_seed", "12345"],
                f"peer create_pretraining_data {txt.name}",
            )
        name = "NVIDIA create_pretraining_data" if args.peer_script else "create_pretraining_data"
        peer.append((f"{name} (x{shards} shards)", cpd))

        common = ["--input", str(dump), "--preset", "phase1", "--dupe-factor", "5"]
        common += ["--shards", str(shards), "--workers", "1"]
        ours = stage(
            cli("run", *common, "--output", str(tmp / "ours"), "--format", "hdf5"), "ours hdf5"
        )
        everything = stage(
            cli("run", *common, "--output", str(tmp / "all"), "--format", "all", "--pack"),
            "ours all --pack",
        )
        # The same work as two verbs, for the per-stage breakdown (run does both in one graph).
        one = ["--workers", "1"]
        ours_extract = stage(
            cli("extract", "--input", str(dump), "--shards", str(shards), *one)
            + ["--output", str(tmp / "docs")],
            "ours extract",
        )
        ours_mask = stage(
            cli("mask", "--input", str(tmp / "docs"), "--preset", "phase1", "--dupe-factor", "5")
            + ["--shards", str(shards), *one, "--format", "hdf5", "--output", str(tmp / "m")],
            "ours mask",
        )

    rows: list[list[object]] = [["peer", n, f"{c:.1f}"] for n, c in peer]
    peer_total = sum(c for _, c in peer)
    rows.append(["peer", "total", f"{peer_total:.1f}"])
    rows.append(["ours", "extract --workers 1 (read, clean, split)", f"{ours_extract:.1f}"])
    rows.append(["ours", "mask --workers 1 --format hdf5 (encode, mask)", f"{ours_mask:.1f}"])
    rows.append(["ours", "run --workers 1 --format hdf5 (both in one)", f"{ours:.1f}"])
    rows.append(["ours", "run --workers 1 --format all --pack", f"{everything:.1f}"])
    print_table(["chain", "stage", "CPU s"], rows)
    print(
        f"peer: {xml_mb / peer_total:.2f} XML MB per CPU-second; ours (hdf5): "
        f"{xml_mb / ours:.2f}; ours (--format all --pack): {xml_mb / everything:.2f}"
    )
    print(f"peer/ours CPU ratio: {peer_total / ours:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
