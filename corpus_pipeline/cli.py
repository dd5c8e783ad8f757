"""``corpus-pipeline <verb>``: one module per verb under ``corpus_pipeline/commands``.

Each command module defines ``add_parser(subparsers)`` and ``run(args, beam_args) -> int``.
Flags the verb does not know (``--runner``, ``--project``, ``--temp_location``, ...) are
passed through to Beam's PipelineOptions.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from corpus_pipeline import __version__, fsio, tmpdirs
from corpus_pipeline.errors import UserError

# Verbs in the order `--help` lists them.
COMMANDS = ("download", "extract", "vocab", "mask", "pack", "run", "verify", "inspect")
# Verbs that run a Beam pipeline: their unknown flags must be Beam's (the others refuse any).
BEAM_VERBS = ("extract", "mask", "pack", "run")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corpus-pipeline",
        description="Wikipedia dumps and books to BERT pretraining shards.",
        epilog="Unknown flags (e.g. --runner DataflowRunner) are passed to Apache Beam.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log Beam's progress too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")
    for name in COMMANDS:
        module = importlib.import_module(f"corpus_pipeline.commands.{name}")
        p = module.add_parser(sub)
        p.set_defaults(_module=module, _parser=p)
    return parser


class _DropImportNoise(logging.Filter):
    """Beam warns about optional GCP clients at import; irrelevant unless you use BigQuery."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    verbose = argv is not None and ("-v" in argv or "--verbose" in argv)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropImportNoise())
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    # -v/--verbose may also follow the verb (it is a top-level flag).
    if any(a in ("-v", "--verbose") for a in beam_args):
        args.verbose = True
        beam_args = [a for a in beam_args if a not in ("-v", "--verbose")]
    if args.verbose:
        logging.getLogger().setLevel(logging.INFO)
    if not args.verbose:
        # Beam and wikiextractor are chatty at INFO/WARNING; our summary says what matters.
        logging.getLogger("apache_beam").setLevel(logging.ERROR)
        logging.getLogger("wikiextractor").setLevel(logging.ERROR)

    def verb() -> int | None:
        if args.command in BEAM_VERBS:
            from corpus_pipeline.beam.flags import check_beam_args

            ours = [s for a in args._parser._actions for s in a.option_strings]
            check_beam_args(beam_args, ours, args.command)
        # Filesystem flags (--s3_endpoint_url, --project, ...) apply to s3:// / gs:// paths.
        fsio.configure(beam_args)
        with tmpdirs.private_tmp():
            return args._module.run(args, beam_args)  # type: ignore[no-any-return]

    return run_guarded(verb)


def run_guarded(fn: Callable[[], int | None]) -> int:
    """Run a verb: a UserError becomes one ``error:`` line and its exit code, no traceback."""
    try:
        return int(fn() or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`| head`): stop quietly, as Unix tools do.
        # stdout is pointed at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
