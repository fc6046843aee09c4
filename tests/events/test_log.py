"""The event log: framed records, torn tails, segments taken over, rotation and pruning, action checks."""
from __future__ import annotations

import os
import time

import pytest

from souk.errors import QueryError
from souk.events.log import EventLog, Retention, decode, encode


def test_records_round_trip_and_a_corrupt_or_torn_line_is_skipped(tmp_path):
    log = EventLog(tmp_path)
    log.search({"search_id": "s1", "query": "drill", "shown": ["a", "b"]})
    log.actions([{"search_id": "s1", "type": "click", "id": "b", "position": 2}])
    log.close()
    [segment] = log.segments()
    data = segment.read_bytes()
    lines = data.splitlines(keepends=True)
    assert [decode(line)["kind"] for line in lines] == ["search", "click"]
    assert decode(lines[0].replace(b"drill", b"drilL")) is None  # checksum
    segment.write_bytes(data + encode({"kind": "click", "search_id": "s1", "id": "a"})[:-7])  # torn tail
    assert [r["kind"] for r in EventLog(tmp_path).read()] == ["search", "click"]


def test_a_writer_cuts_a_torn_tail_before_appending(tmp_path):
    log = EventLog(tmp_path)
    log.search({"search_id": "s1", "query": "q", "shown": ["a"]})
    log.close()
    [segment] = log.segments()
    with segment.open("ab") as fh:
        fh.write(b"0000beef {\"kind\":\"cli")  # a record cut by a crash
    again = EventLog(tmp_path)
    again.actions([{"search_id": "s1", "type": "purchase", "id": "a"}])
    again.close()
    assert again.segments() == [segment]  # nobody held it: taken over, not a new file
    assert [r["kind"] for r in again.read()] == ["search", "purchase"]


def test_actions_are_checked_whole_before_anything_is_written(tmp_path):
    log = EventLog(tmp_path)
    log.search({"search_id": "s1", "query": "q", "shown": ["a"]})
    good = {"search_id": "s1", "type": "click", "id": "a"}
    for bad, words in [({**good, "type": "like"}, "unknown event type 'like'"),
                       ({**good, "search_id": "zz"}, "unknown search id 'zz'"),
                       ({**good, "position": 0}, "position"), ({**good, "extra": 1}, "unknown field 'extra'"),
                       ("click", "expected an object")]:
        with pytest.raises(QueryError, match=words):
            log.actions([good, bad])
    assert [r["kind"] for r in log.read()] == ["search"]


def test_ids_logged_by_another_process_are_known_after_a_look(tmp_path):
    ours, theirs = EventLog(tmp_path), EventLog(tmp_path)
    ours.search({"search_id": "mine", "query": "q", "shown": []})
    theirs.search({"search_id": "yours", "query": "q", "shown": []})
    assert {p.name for p in ours.segments()} and len(ours.segments()) == 2  # each writer holds its own segment
    assert ours.known("yours") and theirs.known("mine") and not ours.known("nobody")


def test_segments_rotate_and_old_or_excess_ones_are_pruned(tmp_path):
    log = EventLog(tmp_path, Retention(retention_days=1, max_bytes=4000, segment_bytes=1000))
    for i in range(40):
        log.search({"search_id": f"s{i}", "query": "a fairly long query text " * 2, "shown": ["x", "y", "z"]})
    sizes = [p.stat().st_size for p in log.segments()]
    assert len(sizes) > 1 and sum(sizes) <= 4000 + 1000
    oldest = sorted(log.segments())[0]
    os.utime(oldest, (time.time() - 3 * 86_400,) * 2)
    assert oldest in log.prune()
    ids = [r["search_id"] for r in log.read()]
    assert ids == sorted(ids, key=lambda s: int(s[1:])) and ids[-1] == "s39"
