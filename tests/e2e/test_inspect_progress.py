"""`inspect` reads every shard before it prints: on a terminal it shows a bar over the
shards with their total, and `-q` turns the bar off."""

from __future__ import annotations

import re

from tests.support.terminal import bar_frames, on_a_terminal, percentages


def test_inspect_bar_counts_the_shards_to_their_total(wiki_masked):
    rc, _, err = on_a_terminal("inspect", wiki_masked, "--format", "hdf5")
    assert rc == 0, err
    frames = bar_frames(err, "inspect")
    shown = percentages(frames)
    assert shown and shown[-1] == 100, frames
    done, total = re.search(r"\| (\d+)/(\d+) ", frames[-1]).groups()
    assert done == total == "3"  # wiki_masked is written in 3 shards


def test_inspect_quiet_draws_no_bar(wiki_masked):
    rc, _, err = on_a_terminal("-q", "inspect", wiki_masked, "--format", "hdf5")
    assert rc == 0, err
    assert bar_frames(err, "inspect") == []
