"""Finding leases that cover the same address, port and moment, in O(n log n) rather than pairwise.

CIDR prefixes either nest or are disjoint, so in address order they form a forest. Two leases can only
overlap inside one tree (a maximal prefix and everything nested in it). A tree with a single lease needs
no work — the common case of one /32 per subscriber. Any other tree is swept once in order of start time,
holding the leases active at that moment: per prefix (those of exactly that prefix) and per ancestor
prefix (those strictly inside it), each as a set of port ranges that counts overlaps with two bisections.
Each lease is therefore compared with nothing it cannot overlap, and never twice.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence

Key = tuple[int, int, int]  # (IP version, network as an integer, prefix length)


# a lease is WIDTH consecutive integers of one flat array (~72 bytes, not a kilobyte of objects):
LINE, VERSION, NET_HI, NET_LO, PREFIXLEN, PORT_FROM, PORT_TO, VALID_FROM, VALID_TO = range(9)
WIDTH = 9  # NET_HI/NET_LO: the network address's upper and lower 64 bits; VALID_*: microseconds since
# the epoch, VALID_TO exclusive


class Columns:
    """Field access by lease index over the flat array."""

    def __init__(self, rows: Sequence[int]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows) // WIDTH

    def get(self, i: int, field: int) -> int:
        return self.rows[i * WIDTH + field]

    def key(self, i: int) -> Key:
        r, o = self.rows, i * WIDTH
        return r[o + VERSION], r[o + NET_HI] << 64 | r[o + NET_LO], r[o + PREFIXLEN]


ALL_PORTS = (0, 65535)


class PortRanges:
    """A multiset of inclusive port ranges; counts the ranges meeting [lo, hi] in O(log n).

    A range [a, b] misses [lo, hi] exactly when a > hi or b < lo, and never both (a <= b, lo <= hi).
    Ranges of every port (most leases) are only counted: they meet everything, and a prefix enclosing
    a million active /32 leases then costs no sorted-list insertions.
    """

    __slots__ = ("ends", "every_port", "members", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.members: dict[int, tuple[int, int]] = {}  # lease index -> its range
        self.every_port = 0

    def add(self, i: int, lo: int, hi: int) -> None:
        self.members[i] = (lo, hi)
        if (lo, hi) == ALL_PORTS:
            self.every_port += 1
            return
        insort(self.starts, lo)
        insort(self.ends, hi)

    def remove(self, i: int) -> None:
        lo, hi = self.members.pop(i)
        if (lo, hi) == ALL_PORTS:
            self.every_port -= 1
            return
        del self.starts[bisect_left(self.starts, lo)]
        del self.ends[bisect_left(self.ends, hi)]

    def meets(self, lo: int, hi: int) -> bool:
        if self.every_port:
            return True
        missed = len(self.starts) - bisect_right(self.starts, hi) + bisect_left(self.ends, lo)
        return len(self.starts) > missed

    def one_meeting(self, lo: int, hi: int) -> int:
        """A member meeting [lo, hi] (linear, but only run to name the lease in an error)."""
        return next(i for i, (a, b) in self.members.items() if a <= hi and lo <= b)


def overlaps(rows: Sequence[int], limit: int) -> list[tuple[int, int]]:
    """Up to `limit` pairs (line, line of a lease it overlaps), in line order.

    The first of each pair is the lease left out of the sweep: leaving out all of them leaves leases that
    overlap nowhere, so each further pair is a real, separate conflict.
    """
    cols = Columns(rows)
    found: list[tuple[int, int]] = []
    for tree, ancestors in _trees(cols):
        found.extend(_sweep(cols, tree, ancestors, limit - len(found)))
        if len(found) >= limit:
            break
    return sorted(found)[:limit]


def _trees(cols: Columns) -> list[tuple[list[int], dict[Key, tuple[Key, ...]]]]:
    """Leases grouped by maximal prefix, with each distinct prefix's enclosing prefixes in the group.

    Groups of a single lease (nothing to compare) are left out. One integer per lease sorts by version,
    network, then shorter prefix first, so a prefix precedes everything nested in it (pre-order).
    """
    r, shift = cols.rows, max(len(cols), 1).bit_length()
    order = sorted((r[o + VERSION] << 136 | (r[o + NET_HI] << 64 | r[o + NET_LO]) << 8 | r[o + PREFIXLEN]) << shift
                   | i for i, o in enumerate(range(0, len(r), WIDTH)))
    mask, byte, net_mask = (1 << shift) - 1, (1 << 8) - 1, (1 << 128) - 1
    trees: list[tuple[list[int], dict[Key, tuple[Key, ...]]]] = []
    tree: list[int] = []
    ancestors: dict[Key, tuple[Key, ...]] = {}
    stack: list[tuple[Key, int]] = []  # the prefixes enclosing the current one, each with its last address
    for packed in order:
        k = packed >> shift
        version, net, plen = k >> 136, k >> 8 & net_mask, k & byte
        while stack and (stack[-1][0][0] != version or stack[-1][1] < net):
            stack.pop()
        if not stack:
            if len(tree) > 1:
                trees.append((tree, ancestors))
            tree, ancestors = [], {}
        tree.append(packed & mask)
        key = (version, net, plen)
        if not stack or stack[-1][0] != key:
            ancestors[key] = tuple(a for a, _ in stack)
            stack.append((key, net | (1 << ((32 if version == 4 else 128) - plen)) - 1))
    if len(tree) > 1:
        trees.append((tree, ancestors))
    return trees


def _sweep(cols: Columns, tree: list[int], ancestors: dict[Key, tuple[Key, ...]],
           limit: int) -> list[tuple[int, int]]:
    """Overlapping pairs within one tree: leases enter in order of start and leave at their end."""
    exact: dict[Key, PortRanges] = {}  # per prefix: the active leases of exactly that prefix
    inside: dict[Key, PortRanges] = {}  # per prefix: the active leases strictly inside it
    ending: list[tuple[int, int]] = []
    found: list[tuple[int, int]] = []
    for i in sorted(tree, key=lambda i: cols.get(i, VALID_FROM)):
        start, key, lo, hi = cols.get(i, VALID_FROM), cols.key(i), cols.get(i, PORT_FROM), cols.get(i, PORT_TO)
        while ending and ending[0][0] <= start:  # valid_to is exclusive: a lease ending now is gone
            j = heapq.heappop(ending)[1]
            other_key = cols.key(j)
            for table, k in ((exact, other_key), *((inside, a) for a in ancestors[other_key])):
                table[k].remove(j)
                if not table[k].members:
                    del table[k]  # the tables hold active leases only: small and cache-friendly
        other = _clash(exact, inside, ancestors[key], key, lo, hi)
        if other is not None:
            found.append((cols.get(i, LINE), cols.get(other, LINE)))
            if len(found) >= limit:
                break
            continue  # a clashing lease is left out, so each later clash is reported against a sound set
        for table, k in ((exact, key), *((inside, a) for a in ancestors[key])):
            ranges = table.get(k)
            if ranges is None:
                ranges = table[k] = PortRanges()
            ranges.add(i, lo, hi)
        heapq.heappush(ending, (cols.get(i, VALID_TO), i))
    return found


def _clash(exact: dict[Key, PortRanges], inside: dict[Key, PortRanges], enclosing: tuple[Key, ...],
           key: Key, lo: int, hi: int) -> int | None:
    """An active lease meeting the ports [lo, hi] of prefix `key`: same prefix, inside it, or enclosing it."""
    for ranges in (exact.get(key), inside.get(key), *(exact.get(a) for a in enclosing)):
        if ranges is not None and ranges.meets(lo, hi):
            return ranges.one_meeting(lo, hi)
    return None
