"""Loss: the share of the input that damage cost (not the pages dropped on purpose).

From the reader's counters (``sources/wikipedia_pages.py``) to the ``loss`` section of the
documents manifest, the line printed at the end of a run and the ``--max-loss`` failure.
"""

from __future__ import annotations

from collections.abc import Iterable

from corpus_pipeline import fsio
from corpus_pipeline.errors import UserError
from corpus_pipeline.formats.manifest_model import Loss
from corpus_pipeline.sources import wikipedia_pages
from corpus_pipeline.sources.wikipedia_shares import CORRUPT_BLOCK


def loss_report(counts: dict[str, int], max_loss: float) -> Loss:
    """The ``loss`` section of the documents manifest, from the reader's counters.

    Only damage counts: pages dropped as malformed (by reason), pages lost with a truncated
    or corrupt stream, damaged streams (units) and bz2 blocks that do not decode. Redirects, other namespaces, empty,
    short and oversized pages are choices, not loss. ``share`` is the largest of the page,
    byte and stream shares (``share_of`` says which): a stream cut off or corrupt loses
    pages nobody can count, so a truncated single-stream dump is 1 of 1 streams lost; a corrupt
    block of one is 1 of its blocks (its pages are estimated from the other blocks).
    """
    dropped: dict[str, int] = {}
    for k, v in counts.items():
        for prefix in ("extract/malformed_page:", "extract/lost_pages:"):
            if k.startswith(prefix) and v:
                reason = k[len(prefix) :]
                dropped[reason] = dropped.get(reason, 0) + v
    streams = {
        p: counts[f"extract/dropped:{p}"]
        for p in wikipedia_pages.STREAM_PROBLEMS
        if counts.get(f"extract/dropped:{p}")
    }
    pages_read = counts.get("extract/read:pages", 0)
    bytes_read = counts.get("extract/read:bytes", 0)
    streams_read = counts.get("extract/read:units", 0)
    pages_dropped = sum(dropped.values())
    bytes_dropped = counts.get("extract/lost:bytes", 0)
    blocks_read = counts.get("extract/read:blocks", 0)
    blocks_damaged = counts.get(f"extract/dropped:{CORRUPT_BLOCK}", 0)
    shares = (
        pages_dropped / max(1, pages_read),
        bytes_dropped / max(1, bytes_read),
        sum(streams.values()) / max(1, streams_read),
        blocks_damaged / max(1, blocks_read),
    )
    blocks: dict[str, int | None] = {}
    if blocks_read:
        good = blocks_read - blocks_damaged
        estimate = round(pages_read * blocks_damaged / good) if good else None
        blocks = {
            "blocks_read": blocks_read,
            "blocks_damaged": blocks_damaged,
            "pages_lost_estimate": estimate if blocks_damaged else None,
        }
    return Loss(
        pages_read=pages_read,
        pages_dropped=pages_dropped,
        pages_dropped_by_reason=dict(sorted(dropped.items())),
        bytes_read=bytes_read,
        bytes_dropped=bytes_dropped,
        streams_read=streams_read,
        streams_damaged=sum(streams.values()),
        streams_damaged_by_problem=dict(sorted(streams.items())),
        share=max(shares),
        share_of=("pages", "bytes", "streams", "bz2 blocks")[shares.index(max(shares))],
        max_loss=max_loss,
        **blocks,
    )


def _pct(x: float) -> str:
    return f"{100 * x:.2g}%" if x < 0.01 else f"{100 * x:.1f}%"


def describe_loss(loss: Loss) -> str:
    """What was lost, in a few words (empty when nothing was)."""
    parts = []
    if loss.pages_dropped:
        reasons = ", ".join(f"{r} {n:,}" for r, n in loss.pages_dropped_by_reason.items())
        parts.append(
            f"{loss.pages_dropped:,} of {loss.pages_read:,} pages "
            f"({_pct(loss.pages_dropped / max(1, loss.pages_read))}) dropped as damaged "
            f"({reasons}), {loss.bytes_dropped:,} of {loss.bytes_read:,} bytes"
        )
    if loss.blocks_damaged:
        about = (
            f", about {loss.pages_lost_estimate:,} pages in them (not counted above)"
            if loss.pages_lost_estimate
            else ""
        )
        parts.append(
            f"{loss.blocks_damaged:,} of {loss.blocks_read:,} bz2 blocks do not decode{about}"
        )
    if loss.streams_damaged:
        problems = ", ".join(f"{p} {n:,}" for p, n in loss.streams_damaged_by_problem.items())
        parts.append(
            f"{loss.streams_damaged:,} of {loss.streams_read:,} streams damaged ({problems})"
        )
    return "; ".join(parts)


def report_loss(loss: Loss, inputs: Iterable[str], out: str) -> None:
    """End of a run: print what damage cost (if anything), and fail (exit 1, one line on
    stderr) when it is more than ``max_loss`` of the input.

    Raises:
        UserError: the share lost is over the threshold; the shards are written all the same.
    """
    what = describe_loss(loss)
    worst = f"{_pct(loss.share)} of the {loss.share_of} lost"
    if what:
        print(f"loss: {what}; {worst} (max {_pct(loss.max_loss)}, --max-loss)")
    if loss.share <= loss.max_loss:
        return
    names = ", ".join(fsio.basename(p) for p in inputs) or "input"
    raise UserError(
        f"{names}: {what}; {worst} (max {_pct(loss.max_loss)}, --max-loss to change); "
        f"shards written to {out}",
        exit_code=1,
    )
