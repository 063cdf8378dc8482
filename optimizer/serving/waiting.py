"""A replica's waiting queue: requests in queue-key order, cheap to fill and to take from the front.

The order is the one a stable sort by `queue_key` gives, with two exceptions the engine makes
on purpose: a preempted request goes back to the front (to be recomputed first) or, for
S3's failure collection, to the back, whatever its key. Such a request may break the key
order; the queue then keeps the exact order it was given (a plain deque) until the next
request arrives out of order, when everything is sorted once (stably) and the sorted form
resumes. This is the behaviour of a deque kept sorted by bisect and insert, without its
O(n) insertion per arrival (about 45 s of a 1M-request run).

The sorted form is a list in reverse (queue_key, rank) order, so the first request is the
list's last (taken in O(1)), plus the requests added since it was last read, merged in one
sort (Timsort merges the two runs in linear time) when someone next looks.
So an offline batch costs O(n log n) in all, not O(n) per arrival. Among equal keys, later
arrivals get larger ranks (they queue behind), requests put back at the front smaller ones.

`edits` counts every change other than a request added at the back (or more, never fewer),
so a reader can extend what it computed over the queue (a sum in queue order) instead of
starting over.
"""

from __future__ import annotations

import bisect
from collections import deque


def _descending(seq) -> tuple[float, int]:
    return -seq.queue_key, -seq.queue_rank


class WaitingQueue:
    """The waiting requests of one engine (see the module docstring)."""

    __slots__ = ("_back", "_front", "_items", "_pending", "_plain", "_top", "edits")

    def __init__(self):
        self._items: list = []  # sorted form, last in queue first: the first request is _items[-1]
        self._pending: list = []  # added since the sorted form was last read
        self._plain: deque | None = None  # the given order, while it breaks the key order
        self._back, self._front = 0, -1  # next rank at the back, at the front
        self._top = -float("inf")  # largest key added (at least the last request's key)
        self.edits = 0

    def _sorted(self) -> list:
        pending = self._pending
        if pending:
            if len(pending) <= 8:
                for seq in pending:
                    bisect.insort(self._items, seq, key=_descending)
            else:
                self._items += pending
                self._items.sort(key=_descending)
            self._pending = []
        return self._items

    def __len__(self) -> int:
        if self._plain is not None:
            return len(self._plain)
        return len(self._items) + len(self._pending)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self):
        return iter(self._plain) if self._plain is not None else reversed(self._sorted())

    def __reversed__(self):
        return reversed(self._plain) if self._plain is not None else iter(self._sorted())

    def first(self):
        return self._plain[0] if self._plain is not None else self._sorted()[-1]

    def last(self):
        return self._plain[-1] if self._plain is not None else self._sorted()[0]

    def newest(self, count: int) -> list:
        """The last `count` requests, in queue order."""
        if count <= 0:
            return []
        if self._plain is not None:
            return list(self._plain)[-count:]
        return self._sorted()[count - 1::-1]

    def add(self, seq) -> None:
        """A request arriving: after every request of a key at most its own."""
        if self._plain is None:
            if seq.queue_key < self._top:
                self.edits += 1  # may land before the back
            else:
                self._top = seq.queue_key
            seq.queue_rank = self._back
            self._back += 1
            self._pending.append(seq)
            return
        if self._plain and seq.queue_key < self._plain[-1].queue_key:
            self.edits += 1
            self._resort([*self._plain, seq])
        else:
            self._plain.append(seq)

    def put_front(self, seq) -> None:
        """A preempted request, to be recomputed before any other."""
        self.edits += 1
        if self._plain is None:
            if self and seq.queue_key > self.first().queue_key:
                self._plain = deque(self)
            else:
                seq.queue_rank = self._front
                self._front -= 1
                self._sorted().append(seq)
                self._top = max(self._top, seq.queue_key)
                return
        self._plain.appendleft(seq)

    def put_back(self, seq) -> None:
        """An evicted request, behind every other whatever its key."""
        if self._plain is None:
            if self and self.last().queue_key > seq.queue_key:
                self._plain = deque(self)
            else:
                seq.queue_rank = self._back
                self._back += 1
                self._sorted().insert(0, seq)
                self._top = max(self._top, seq.queue_key)
                return
        self._plain.append(seq)

    def remove(self, seq) -> None:
        self.edits += 1
        if self._plain is not None:
            self._plain.remove(seq)
            return
        items = self._sorted()
        if items and items[-1] is seq:  # the first request: admission, the usual case
            items.pop()
            return
        i = bisect.bisect_left(items, _descending(seq), key=_descending)
        if i == len(items) or items[i] is not seq:
            raise ValueError("not in the waiting queue")
        del items[i]

    def clear(self) -> list:
        """Empty the queue; returns what it held, in order."""
        held = list(self)
        edits = self.edits + 1
        self.__init__()
        self.edits = edits
        return held

    def _resort(self, items: list) -> None:
        # A stable sort by key of the given order; ranks keep that order among equal keys.
        self._plain = None
        ordered = sorted(items, key=lambda s: s.queue_key)
        for rank, seq in enumerate(ordered):
            seq.queue_rank = rank
        self._items, self._pending = ordered[::-1], []
        self._back, self._front = len(ordered), -1
        self._top = ordered[-1].queue_key
