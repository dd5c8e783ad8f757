"""``corpus-pipeline <verb>``: one module per verb under ``corpus_pipeline/commands``.

Each command module defines ``add_parser(subparsers)`` and ``run(args, beam_args) -> int``;
importing it must stay cheap (heavy modules, Beam above all, are imported inside ``run``),
because ``--help`` imports every verb. Flags the verb does not know (``--runner``, ``--project``, ``--temp_location``, ...) are
passed through to Beam's PipelineOptions.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence

from corpus_pipeline import __version__, fsio, tmpdirs
from corpus_pipeline.errors import UserError

# Verbs in the order `--help` lists them.
COMMANDS = ("download", "extract", "vocab", "mask", "pack", "run", "verify", "inspect")
# Verbs that run a Beam pipeline: their unknown flags must be Beam's (the others refuse any).
BEAM_VERBS = ("extract", "mask", "pack", "run")
# Verbs whose stdout is a summary (dropped by -q); verify and inspect print their findings.
SUMMARY_VERBS = ("download", "extract", "vocab", "mask", "pack", "run")


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser with one subparser per verb (no verb imports Beam for this).

    Args:
        verb: When given, only that verb's module is imported and its flags registered (the
            others get a bare subparser): a verb's start-up does not pay for the others.
    """
    parser = argparse.ArgumentParser(
        prog="corpus-pipeline",
        description="Wikipedia dumps and books to BERT pretraining shards.",
        epilog="Unknown flags (e.g. --runner DataflowRunner) are passed to Apache Beam. "
        "-v and -q may also follow the verb.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    loud = parser.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help="log Beam's progress too")
    loud.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bars and no summary: only warnings and errors",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")
    for name in COMMANDS:
        if verb is not None and name != verb:
            sub.add_parser(name)
            continue
        module = importlib.import_module(f"corpus_pipeline.commands.{name}")
        p = module.add_parser(sub)
        p.set_defaults(_module=module, _parser=p)
    return parser


_VERBOSE = ("-v", "--verbose")
_QUIET = ("-q", "--quiet")


class _DropImportNoise(logging.Filter):
    """Beam warns about optional GCP clients at import; irrelevant unless you use BigQuery."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    given = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in _VERBOSE for a in given)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropImportNoise())
    parser = build_parser(_verb_of(given))
    args, beam_args = parser.parse_known_args(argv)
    # -v/-q may also follow the verb (they are top-level flags).
    args.verbose = args.verbose or any(a in _VERBOSE for a in beam_args)
    args.quiet = args.quiet or any(a in _QUIET for a in beam_args)
    beam_args = [a for a in beam_args if a not in _VERBOSE + _QUIET]
    if args.verbose and args.quiet:
        return run_guarded(_refuse("-v and -q contradict each other: give one of them"))
    if args.verbose:
        logging.getLogger().setLevel(logging.INFO)
    else:
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
        # -q: no bars for every verb; stdout (the summary) dropped only where it is a summary,
        # not where it is the verb's answer (verify's and inspect's findings).
        drop_stdout = args.command in SUMMARY_VERBS
        with tmpdirs.private_tmp(), _quiet(args.quiet, drop_stdout=drop_stdout):
            return args._module.run(args, beam_args)  # type: ignore[no-any-return]

    return run_guarded(verb)


def _verb_of(argv: Sequence[str]) -> str | None:
    """The verb of a command line (its first word that is not a flag), if it names one."""
    for a in argv:
        if not a.startswith("-"):
            return a if a in COMMANDS else None
    return None


def _refuse(message: str) -> Callable[[], int | None]:
    def fail() -> int | None:
        raise UserError(message)

    return fail


@contextlib.contextmanager
def _quiet(on: bool, *, drop_stdout: bool) -> Iterator[None]:
    """Under ``-q``: progress bars off (here and in worker processes), and with
    ``drop_stdout`` stdout (the summary and reports) dropped; warnings and errors still go to
    stderr."""
    if not on:
        yield
        return
    # Through importlib, as the verbs are: cli and commands are one layer (see pyproject.toml).
    quiet_env = importlib.import_module("corpus_pipeline.commands.common").QUIET_ENV
    old = os.environ.get(quiet_env)
    os.environ[quiet_env] = "1"
    try:
        if not drop_stdout:
            yield
            return
        with (
            open(os.devnull, "w", encoding="utf-8") as devnull,
            contextlib.redirect_stdout(devnull),
        ):
            yield
    finally:
        if old is None:
            os.environ.pop(quiet_env, None)
        else:
            os.environ[quiet_env] = old


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
