"""Writers of TFRecord shards (the framing and the schemas are in :mod:`.tfrecord`).

Both files of a shard (``X.tfrecord`` and its ``X.index``) are written under temp names and
renamed on close, index first: a ``.tfrecord`` that exists is complete and has its index.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.base import ShardWriter
from corpus_pipeline.formats.common import named_os_error
from corpus_pipeline.formats.example_batch import EncodeScratch, encode_example_batch
from corpus_pipeline.formats.tfrecord import (
    FOOTER_BYTES,
    HEADER_BYTES,
    frame_in_place,
    frame_records,
    index_name,
    index_path_for,
)
from corpus_pipeline.formats.tfrecord_columns import instance_columns, pack_columns
from corpus_pipeline.records import Instance, Pack

__all__ = ["PackedTFRecordShardWriter", "TFRecordShardWriter"]

# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


class _TFRecordWriter(ShardWriter):
    """One ``.tfrecord`` + ``.index`` pair: framing, index lines, running sha256.

    The index is created first, so it is renamed first: a visible ``.tfrecord`` always has
    its index. Subclasses turn a batch into feature columns (:meth:`_columns`).
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.index_path = index_path_for(self.path)
        if self.index_path == self.path:
            raise UserError(f"tfrecord shard {str(self.path)!r} must not end in .index")
        self.num_records = 0
        self._offset = 0
        self.scratch = EncodeScratch()
        try:
            tmp_index = self._create(index_name(path))
            tmp = self._create(path)
            self._index: io.TextIOWrapper | None = open(tmp_index, "w", encoding="ascii")  # noqa: SIM115 - closed in _finish()
            self._data = self._hashing(open(tmp, "wb"), path)  # noqa: SIM115
        except BaseException as exc:
            self.abort(exc)
            raise

    def _columns(self, batch: Sequence[Any]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def write(self, batch: Sequence[Any]) -> None:
        """Appends a batch of records (all validated before anything is written).

        Raises:
            ValueError: A record does not fit the shard's widths or is inconsistent.
        """
        self._check_open()
        if not batch:
            return
        self.write_columns(self._columns(batch))

    def write_records(self, records: Sequence[bytes]) -> None:
        """Appends already-encoded records (framed here)."""
        self._append(*frame_records(records))

    def write_columns(self, columns: Mapping[str, np.ndarray]) -> None:
        """Appends one ``tf.train.Example`` per row of ``columns``, encoded and framed together
        (same bytes as ``write_records(encode_examples(columns))``: the batch encoder leaves
        room for each frame's header and footer)."""
        buf, starts, lengths = encode_example_batch(
            columns, head=HEADER_BYTES, tail=FOOTER_BYTES, scratch=self.scratch
        )
        frame_in_place(buf, starts, lengths)
        self._append(buf, lengths + (HEADER_BYTES + FOOTER_BYTES))

    def _append(self, blob: np.ndarray, sizes: np.ndarray) -> None:
        """Writes framed records (``sizes`` bytes each) and their index lines."""
        self._check_open()
        assert self._index is not None
        offsets = np.cumsum(sizes) - sizes + self._offset
        pairs = np.empty(2 * sizes.shape[0], dtype=np.int64)
        pairs[0::2], pairs[1::2] = offsets, sizes
        lines = ("%d %d\n" * sizes.shape[0]) % tuple(pairs.tolist())
        self._data.write(blob)
        try:
            self._index.write(lines)
        except OSError as e:
            raise named_os_error(e, self.path) from e
        self._offset += int(sizes.sum())
        self.num_records += int(sizes.shape[0])

    def _finish(self) -> None:
        self.scratch = EncodeScratch()  # drop the work buffers of the last batch
        index, self._index = self._index, None
        if index is not None:
            index.close()

    def _release(self) -> None:
        self.scratch = EncodeScratch()
        index, self._index = self._index, None
        if index is not None:
            with contextlib.suppress(OSError):  # a full disk fails the flush of the last buffer
                index.close()


class TFRecordShardWriter(_TFRecordWriter):
    """Writes one unpacked Google BERT TFRecord shard (``X.tfrecord`` + ``X.index``).

    Features per record: ``input_ids``, ``input_mask``, ``segment_ids`` int64[S];
    ``masked_lm_positions``, ``masked_lm_ids`` int64[P]; ``masked_lm_weights`` float[P]
    (1.0 real, 0.0 pad); ``next_sentence_labels`` int64[1]. Output bytes depend only on the
    instances and their order.

    Avoid shards with exactly one record: the ``tfrecord`` package cannot read them with an
    index.

    Example::

        with TFRecordShardWriter(out / "wiki_training_00000.tfrecord", 128, 20) as w:
            w.write(instances)
        manifest_entry = (w.path, w.num_records, w.sha256)

    Args:
        path: Final ``.tfrecord`` path; its folder must exist.
        max_seq_length: S.
        max_predictions: P.
    """

    def __init__(self, path: str | Path, max_seq_length: int, max_predictions: int) -> None:
        self.max_seq_length = max_seq_length
        self.max_predictions = max_predictions
        super().__init__(path)

    def _columns(self, batch: Sequence[Instance]) -> dict[str, np.ndarray]:
        return instance_columns(batch, self.max_seq_length, self.max_predictions, self.scratch)


class PackedTFRecordShardWriter(_TFRecordWriter):
    """Writes one packed TFRecord shard in Graphcore's schema (see :func:`packs_to_columns`).

    Args:
        path: Final ``.tfrecord`` path; its folder must exist.
        max_seq_length: S.
        max_predictions: P per unpacked sequence (the packed width is ``P + K - 1``).
        max_per_pack: K.
    """

    def __init__(
        self, path: str | Path, max_seq_length: int, max_predictions: int, max_per_pack: int
    ) -> None:
        if max_per_pack < 1:
            raise ValueError(f"max_per_pack must be >= 1, got {max_per_pack}")
        self.max_seq_length = max_seq_length
        self.max_predictions = max_predictions
        self.max_per_pack = max_per_pack
        super().__init__(path)

    def _columns(self, batch: Sequence[Pack]) -> dict[str, np.ndarray]:
        return pack_columns(
            batch, self.max_seq_length, self.max_predictions, self.max_per_pack, self.scratch
        )
