"""In-memory FreeRanges and HeldSubnets for the allocator's unit tests."""

from __future__ import annotations

import bisect

Range = tuple[int, int]


class MemoryFreeRanges:
    def __init__(self, *ranges: Range) -> None:
        self.ranges: list[Range] = sorted(ranges)

    def first_ending_at_or_after(self, address: int) -> Range | None:
        for free in self.ranges:
            if free[1] >= address:
                return free
        return None

    def containing(self, address: int) -> Range | None:
        i = bisect.bisect_right(self.ranges, (address, 1 << 130)) - 1
        if i >= 0 and self.ranges[i][0] <= address <= self.ranges[i][1]:
            return self.ranges[i]
        return None

    def ending_at(self, address: int) -> Range | None:
        return next((r for r in self.ranges if r[1] == address), None)

    def starting_at(self, address: int) -> Range | None:
        return next((r for r in self.ranges if r[0] == address), None)

    def add(self, free: Range) -> None:
        bisect.insort(self.ranges, free)

    def remove(self, free: Range) -> None:
        self.ranges.remove(free)

    def replace(self, old: Range, new: Range) -> None:
        self.remove(old)
        self.add(new)

    def addresses(self) -> set[int]:
        return {a for first, last in self.ranges for a in range(first, last + 1)}


class MemoryHeld:
    def __init__(self, *held: Range) -> None:
        self.held = sorted(held)

    def first_overlapping(self, first: int, last: int) -> Range | None:
        return next((h for h in self.held if h[0] <= last and h[1] >= first), None)
