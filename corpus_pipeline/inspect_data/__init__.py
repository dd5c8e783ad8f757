"""``corpus-pipeline inspect``'s engine: statistics of a dataset folder, instances decoded
back to text, and a PNG report.

Modules: :mod:`.dataset` (what a folder holds, foreign folders, the vocabulary),
:mod:`.statistics` (one streaming pass over the records), :mod:`.samples` (records decoded to
text), :mod:`.render` (console text) and :mod:`.report` (the PNG).
"""

from corpus_pipeline.inspect_data.dataset import (
    DatasetView,
    FormatView,
    ShardSource,
    Vocabulary,
    input_losses,
    load_vocabulary,
    open_dataset,
)
from corpus_pipeline.inspect_data.render import histogram_table, render_text
from corpus_pipeline.inspect_data.report import write_report
from corpus_pipeline.inspect_data.samples import decode_instance, sample_records
from corpus_pipeline.inspect_data.statistics import dataset_statistics, format_statistics

__all__ = [
    "ShardSource",
    "FormatView",
    "DatasetView",
    "Vocabulary",
    "open_dataset",
    "input_losses",
    "load_vocabulary",
    "dataset_statistics",
    "format_statistics",
    "decode_instance",
    "sample_records",
    "histogram_table",
    "render_text",
    "write_report",
]
