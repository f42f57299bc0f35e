"""A compact set of video ids, for a crawl's seen and done ids.

A Python ``set`` of ints costs about 80 bytes an id (a 36-byte int object plus its hash
table slots) and was the only thing in a crawl that grew with the input. Ids that fit in
64 bits are kept here as 8-byte entries of small sorted ``array('Q')`` blocks instead.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable

__all__ = ["CompactIdSet"]

#: Ids at or above this do not fit an unsigned 64-bit entry.
_LIMIT = 1 << 64
#: Average ids per block before the set grows by one block.
DEFAULT_BLOCK_SIZE = 512


class CompactIdSet:
    """A set of id strings with exact membership in about 8.5 bytes an id.

    It behaves exactly like a ``set`` of the same strings for :meth:`add`, ``in`` and
    ``len`` ("0123" and "123" are different ids). An id made of ASCII digits, without a
    leading zero and below 2**64 (every id the upstream hands out) is stored as its
    integer, which stands for that string alone; anything else (a leading zero, 20 digits
    above 2**64) is rare and kept in a plain ``set`` of strings.

    The integers live in sorted ``array('Q')`` blocks (8 bytes an entry, a few percent of
    slack) chosen by a hash of the id: a lookup is a binary search of one block in C and
    an insert is ``array.insert`` (a memmove of at most a few KiB). The blocks grow by
    linear hashing: whenever they average more than ``block_size`` ids, one block is split
    in two, so no step ever touches more than one block and nothing is buffered.
    """

    __slots__ = ("_block_size", "_blocks", "_count", "_high", "_low", "_other", "_split")

    def __init__(self, ids: Iterable[str] = (), *, block_size: int = DEFAULT_BLOCK_SIZE) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self._block_size = block_size
        self._blocks = [array("Q")]
        self._count = 0  # ids in the blocks
        # Linear hashing: block = hash & _low, or hash & _high for blocks already split
        # this round (those below _split); _high == 2 * _low + 1.
        self._low = 0
        self._high = 1
        self._split = 0
        self._other: set[str] = set()
        self.update(ids)

    def add(self, vid: str) -> bool:
        """Add the id ``vid`` (a string); return whether it was new (one lookup for both)."""
        # The key test and block choice are inlined: this runs for every id a crawl reads.
        try:
            compact = vid.isdigit() and vid.isascii() and vid[0] != "0"
        except AttributeError:
            raise TypeError(f"ids are strings, got {type(vid).__name__}") from None
        if compact:
            key = int(vid)
            if key < _LIMIT:
                h = key ^ (key >> 32)
                i = h & self._low
                if i < self._split:
                    i = h & self._high
                block = self._blocks[i]
                j = bisect_left(block, key)
                if j < len(block) and block[j] == key:
                    return False
                block.insert(j, key)
                self._count += 1
                if self._count > len(self._blocks) * self._block_size:
                    self._grow()
                return True
        if vid in self._other:
            return False
        self._other.add(vid)
        return True

    def update(self, ids: Iterable[str]) -> int:
        """Add every id of ``ids``; return how many were new.

        The same steps as :meth:`add`, inlined with the lookups bound to locals, for bulk
        loads (an ids file's check, a resume reading back its output).
        """
        blocks, other, limit, size = self._blocks, self._other, _LIMIT, self._block_size
        low, high, split = self._low, self._high, self._split
        count = self._count
        new = 0
        try:
            for vid in ids:
                try:
                    compact = vid.isdigit() and vid.isascii() and vid[0] != "0"
                except AttributeError:
                    raise TypeError(f"ids are strings, got {type(vid).__name__}") from None
                if compact:
                    key = int(vid)
                    if key < limit:
                        h = key ^ (key >> 32)
                        i = h & low
                        if i < split:
                            i = h & high
                        block = blocks[i]
                        j = bisect_left(block, key)
                        if j < len(block) and block[j] == key:
                            continue
                        block.insert(j, key)
                        count += 1
                        new += 1
                        if count > len(blocks) * size:
                            self._count = count
                            self._grow()
                            low, high, split = self._low, self._high, self._split
                        continue
                if vid not in other:
                    other.add(vid)
                    new += 1
        finally:
            self._count = count
        return new

    def __contains__(self, vid: object) -> bool:
        if not isinstance(vid, str):
            return False
        if vid.isdigit() and vid.isascii() and vid[0] != "0":
            key = int(vid)
            if key < _LIMIT:
                h = key ^ (key >> 32)
                i = h & self._low
                if i < self._split:
                    i = h & self._high
                block = self._blocks[i]
                j = bisect_left(block, key)
                return j < len(block) and block[j] == key
        return vid in self._other

    def __len__(self) -> int:
        return self._count + len(self._other)

    def __repr__(self) -> str:
        return f"<CompactIdSet of {len(self)} ids>"

    def _grow(self) -> None:
        """Split the next block by one more bit of the hash (keeps both halves sorted)."""
        bit = self._low + 1
        old = self._blocks[self._split]
        # The hash folds the high half in, so ids alike in their low bits still spread.
        stay = array("Q", [key for key in old if not (key ^ (key >> 32)) & bit])
        move = array("Q", [key for key in old if (key ^ (key >> 32)) & bit])
        self._blocks[self._split] = stay
        self._blocks.append(move)
        self._split += 1
        if self._split == bit:  # every block of this round split: start the next round
            self._low = self._high
            self._high = 2 * self._high + 1
            self._split = 0
