"""A replica's waiting queue: requests in queue-key order, O(log n) per insertion and removal.

The order is the one a stable sort by `queue_key` gives, with two exceptions the engine makes
on purpose: a preempted request goes back to the front (to be recomputed first) or, for
S3's failure collection, to the back, whatever its key. Such a request may break the key
order; the queue then keeps the exact order it was given (a plain deque) until the next
request arrives out of order, when everything is sorted once (stably) and the fast sorted
form resumes. This is the behaviour of a deque kept sorted by bisect and insert, without
its O(n) insertions (about 45 s of a 1M-request run).

In the sorted form each request carries a rank: among equal keys, later arrivals get larger
ranks (they queue behind), requests put back at the front smaller ones (they go first).

`edits` counts every change other than a request added at the back, so a reader can extend
what it computed over the queue (a sum in queue order) instead of starting over.
"""

from __future__ import annotations

from collections import deque

from sortedcontainers import SortedKeyList


def _order(seq) -> tuple[float, int]:
    return seq.queue_key, seq.queue_rank


class WaitingQueue:
    """The waiting requests of one engine (see the module docstring)."""

    __slots__ = ("_sorted", "_plain", "_back", "_front", "edits")

    def __init__(self):
        self._sorted = SortedKeyList(key=_order)
        self._plain: deque | None = None  # the given order, while it breaks the key order
        self._back, self._front = 0, -1  # next rank at the back, at the front
        self.edits = 0

    def __len__(self) -> int:
        return len(self._plain) if self._plain is not None else len(self._sorted)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self):
        return iter(self._plain if self._plain is not None else self._sorted)

    def __reversed__(self):
        return reversed(self._plain if self._plain is not None else self._sorted)

    def first(self):
        return (self._plain if self._plain is not None else self._sorted)[0]

    def last(self):
        return (self._plain if self._plain is not None else self._sorted)[-1]

    def newest(self, count: int) -> list:
        """The last `count` requests, in queue order."""
        if count <= 0:
            return []
        if self._plain is not None:
            return list(self._plain)[-count:]
        return list(self._sorted.islice(len(self._sorted) - count))

    def add(self, seq) -> None:
        """A request arriving: after every request of a key at most its own."""
        if self._plain is None:
            queue = self._sorted
            if queue and seq.queue_key < queue[-1].queue_key:
                self.edits += 1  # lands before the back
            seq.queue_rank = self._back
            self._back += 1
            queue.add(seq)
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
            if self._sorted and seq.queue_key > self._sorted[0].queue_key:
                self._plain = deque(self._sorted)
            else:
                seq.queue_rank = self._front
                self._front -= 1
                self._sorted.add(seq)
                return
        self._plain.appendleft(seq)

    def put_back(self, seq) -> None:
        """An evicted request, behind every other whatever its key."""
        if self._plain is None:
            if self._sorted and self._sorted[-1].queue_key > seq.queue_key:
                self._plain = deque(self._sorted)
            else:
                seq.queue_rank = self._back
                self._back += 1
                self._sorted.add(seq)
                return
        self._plain.append(seq)

    def remove(self, seq) -> None:
        self.edits += 1
        if self._plain is not None:
            self._plain.remove(seq)
        else:
            self._sorted.remove(seq)

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
        self._sorted = SortedKeyList(key=_order)
        for rank, seq in enumerate(sorted(items, key=lambda s: s.queue_key)):
            seq.queue_rank = rank
        self._sorted.update(items)
        self._back, self._front = len(items), -1
