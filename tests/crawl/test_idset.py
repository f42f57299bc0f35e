"""CompactIdSet behaves exactly like a set of the same strings, in a fraction of the memory."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyapi_async.bulk.idset import CompactIdSet

U64 = 2**64

# Ids from a small pool (so repeats are common) plus the edges of the compact form:
# leading zeros ("0123" is not "123"), the 2**64 boundary, 20-digit ids above it.
_numbers = st.one_of(
    st.integers(1, 60),
    st.integers(U64 - 3, U64 + 3),
    st.integers(10**19, 10**20 - 1),
    st.integers(1, U64 - 1),
)
_ids = st.one_of(
    _numbers.map(str),
    st.tuples(st.integers(1, 3), _numbers).map(lambda t: "0" * t[0] + str(t[1])),
    # Not ids, but strings int() would read as one: they must not collide with "12".
    st.sampled_from(["0", "00", "+12", " 12", "12 ", "1_2", "\u0661\u0662", "\uff11\uff12", ""]),
)
_ops = st.lists(st.tuples(st.sampled_from(["add", "contains"]), _ids), max_size=300)


@settings(max_examples=300, deadline=None)
@given(ops=_ops, block_size=st.integers(1, 8))
def test_same_as_a_set_of_strings(ops: list[tuple[str, str]], block_size: int) -> None:
    ids = CompactIdSet(block_size=block_size)
    model: set[str] = set()
    for op, vid in ops:
        if op == "add":
            assert ids.add(vid) is (vid not in model)
            model.add(vid)
        else:
            assert (vid in ids) is (vid in model)
        assert len(ids) == len(model)
    for vid in model:
        assert vid in ids


@settings(max_examples=50, deadline=None)
@given(numbers=st.lists(st.integers(1, U64 - 1), max_size=200), block_size=st.integers(1, 40))
def test_splits_keep_every_id_and_no_other(numbers: list[int], block_size: int) -> None:
    ids = CompactIdSet(map(str, numbers), block_size=block_size)
    assert len(ids) == len(set(numbers))
    for n in numbers:
        assert str(n) in ids
        assert str(n + 1) in ids or n + 1 not in numbers
        assert (str(n - 1) in ids) is (n - 1 in numbers)


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(st.lists(_ids, max_size=60), max_size=6),
    block_size=st.integers(1, 8),
)
def test_bulk_update_same_as_adding_one_by_one(
    chunks: list[list[str]], block_size: int
) -> None:
    bulk = CompactIdSet(block_size=block_size)
    model: set[str] = set()
    for chunk in chunks:
        assert bulk.update(chunk) == len(set(chunk) - model)  # how many were new
        model.update(chunk)
        assert len(bulk) == len(model)
    assert all(vid in bulk for vid in model)
    with pytest.raises(TypeError, match="strings"):
        bulk.update(["1", 2])  # type: ignore[list-item]
    assert "1" in bulk and len(bulk) == len(model | {"1"})  # counted up to the bad one


def test_descending_ascending_and_interleaved_inserts_across_splits() -> None:
    ids = CompactIdSet(block_size=7)
    order = [*range(1000, 0, -3), *range(2, 1001, 3), *range(3, 1001, 3)]
    for n in order:
        assert ids.add(str(n))
    assert len(ids) == 1000
    assert all(str(n) in ids for n in range(1, 1001))
    assert not any(str(n) in ids for n in (1001, 10**6, U64 - 1))
    assert not any(ids.add(str(n)) for n in order)
    assert len(ids) == 1000


def test_leading_zeros_and_big_ids_are_distinct() -> None:
    ids = CompactIdSet(["123", str(U64 - 1), str(U64)], block_size=1)
    assert "0123" not in ids and "00123" not in ids
    assert ids.add("0123")
    assert "0123" in ids and "123" in ids and "00123" not in ids
    assert str(U64) in ids and str(U64 + 1) not in ids
    assert len(ids) == 4


def test_only_strings() -> None:
    ids = CompactIdSet(["123"])
    assert 123 not in ids
    with pytest.raises(TypeError, match="strings"):
        ids.add(123)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="block_size"):
        CompactIdSet(block_size=0)


def test_memory_per_id_is_compact() -> None:
    n = 50_000
    ids_text = [str(7_000_000_000_000_000_000 + i * 7_919) for i in range(n)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ids = CompactIdSet(ids_text)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(ids) == n
    # 8 bytes an id in the arrays plus their slack (a set of ints holds about 80).
    assert held / n < 10, f"{held / n:.1f} bytes per id"
