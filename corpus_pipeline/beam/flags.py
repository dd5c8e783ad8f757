"""Which pass-through flags Beam understands: a misspelled option is refused, not ignored.

A verb's unknown flags go to Beam's ``PipelineOptions``, which only logs a warning for the
ones no options class declares and drops them. ``--dupe-facter 1`` would then run with the
default dupe factor and exit 0. Here the unknown flags are parsed the way Beam parses them
(every ``PipelineOptions`` subclass, including the options of the runner named by
``--runner``, which register themselves when their module is imported), and whatever is left
is a mistake: one line, with the closest of our flags or Beam's.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Sequence
from typing import NoReturn

from corpus_pipeline.errors import UserError

# Runners whose options live in their own module (imported to register them).
_RUNNER_MODULES = {
    "DaskRunner": "apache_beam.runners.dask.dask_runner",
    "DataflowRunner": "apache_beam.runners.dataflow.dataflow_runner",
    "PortableRunner": "apache_beam.runners.portability.portable_runner",
    "FlinkRunner": "apache_beam.runners.portability.flink_runner",
    "SparkRunner": "apache_beam.runners.portability.spark_runner",
    "PrismRunner": "apache_beam.runners.portability.prism_runner",
}


def _runner_name(args: Sequence[str]) -> str | None:
    for i, a in enumerate(args):
        if a == "--runner" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--runner="):
            return a.split("=", 1)[1]
    return None


def _beam_parser(runner: str | None) -> tuple[object, list[str]]:
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    if runner:
        module = _RUNNER_MODULES.get(runner.rsplit(".", 1)[-1])
        if module:
            try:
                importlib.import_module(module)
            except ImportError as e:
                raise UserError(
                    f"--runner {runner}: cannot load it ({e}); install what it needs "
                    "(e.g. pip install 'corpus-pipeline[dask]' for DaskRunner)"
                ) from None
    parser = _BeamArgumentParser(allow_abbrev=False)
    seen: dict[str, type] = {}
    for cls in PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        cls._add_argparse_args(parser)
    names = [s for action in parser._actions for s in action.option_strings]
    return parser, names


def check_beam_args(beam_args: Sequence[str], ours: Iterable[str], verb: str) -> None:
    """Raise a one-line :class:`UserError` for a flag that is neither the verb's nor Beam's.

    Args:
        beam_args: What the verb's parser did not know (passed on to Beam).
        ours: The verb's own option strings (for the "did you mean" hint).
        verb: The verb, for the message.
    """
    if not beam_args:
        return
    parser, beam_names = _beam_parser(_runner_name(beam_args))

    def refuse(message: str) -> NoReturn:
        # argparse would print Beam's whole usage (every pipeline option) before its error.
        raise UserError(f"{verb}: {message} (an Apache Beam pipeline option)")

    parser.error = refuse  # type: ignore[attr-defined]
    _, unknown = parser.parse_known_args(list(beam_args))  # type: ignore[attr-defined]
    flags = [a for a in unknown if a.startswith("-")]
    if not flags and unknown:
        raise UserError(f"{verb}: unexpected argument {unknown[0]!r} (see --help)")
    if not flags:
        return
    flag = flags[0].split("=", 1)[0]
    ours = [o for o in ours if o.startswith("--")]
    close = difflib.get_close_matches(flag, [*ours, *beam_names], n=1, cutoff=0.75)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise UserError(
        f"{verb}: unknown option {flag}{hint}; it is neither a {verb} option nor an Apache "
        f"Beam pipeline option (see corpus-pipeline {verb} --help)"
    )
