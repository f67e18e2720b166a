"""The transition table, cell by cell."""

from __future__ import annotations

import itertools

import pytest

from mailtrack.domain.status import FINAL, TRANSITIONS, Status, can_transition, summarize

S = Status
ALLOWED = {
    (None, S.CREATING), (None, S.SPOOLED), (None, S.REJECTED),
    (S.CREATING, S.SPOOLED), (S.CREATING, S.REJECTED),
    *((S.SPOOLED, t) for t in (S.SENT, S.DEFERRED, S.SOFT_BOUNCE, S.HARD_BOUNCE, S.REJECTED)),
    *((S.DEFERRED, t) for t in (S.SENT, S.DEFERRED, S.SOFT_BOUNCE, S.HARD_BOUNCE, S.REJECTED)),
    (S.SENT, S.SOFT_BOUNCE), (S.SENT, S.HARD_BOUNCE),
    (S.SOFT_BOUNCE, S.HARD_BOUNCE),
}


@pytest.mark.parametrize("src,dst", list(itertools.product([None, *Status], Status)))
def test_every_cell(src: Status | None, dst: Status) -> None:
    assert can_transition(src, dst) is ((src, dst) in ALLOWED)


def test_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == {None, *Status}


def test_final_statuses_have_no_exit() -> None:
    for s in FINAL:
        assert not TRANSITIONS[s]


def test_sent_can_still_bounce_and_deferred_repeats() -> None:
    assert can_transition(S.SENT, S.HARD_BOUNCE)
    assert can_transition(S.DEFERRED, S.DEFERRED)
    assert not can_transition(S.SENT, S.SENT)


@pytest.mark.parametrize("statuses,expected", [
    (["sent", "sent"], "sent"),
    (["sent", "spooled"], "spooled"),
    (["sent", "hard_bounce"], "partial"),
    (["deferred", "sent"], "deferred"),
    ([], "empty"),
])
def test_summary(statuses: list[str], expected: str) -> None:
    assert summarize(statuses) == expected
