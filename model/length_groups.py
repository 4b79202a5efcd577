"""The running rows as a few batches of similar cached length, so a long newcomer pads no short row.

One batch for every running row means left-padding each row to the longest: a 1900-token newcomer
joining rows of 60 tokens would copy a padded cache of hundreds of MB at the join (mostly page faults
on fresh memory) and make every later step attend over ~2000 columns for every short row. Here the
worker keeps several `RunningBatch`es (model/decoding.py): a newcomer joins the group whose cached
length is close to its own (the padding it adds is small), or starts a group of its own; each tick
steps every group; when rows leave, groups whose lengths have come close merge. Each extra group costs
a forward pass of its own, so there are at most MAX_GROUPS: beyond that, the closest two merge.
All of a row's state stays in its group's batch.
"""

from __future__ import annotations

from collections.abc import Iterator

from model.decoding import DecodeRow, RunningBatch, concatenate

# A newcomer joins a group when the padding columns that adds (over all rows) are at most this share
# of the cached tokens the two hold, or at most PADDING_TOKENS a row (prompts differing by a few words).
PADDING_SHARE = 0.25
PADDING_TOKENS = 64
MAX_GROUPS = 3


class LengthGroups:
    """The running batches, oldest first; every running row is in exactly one of them."""

    def __init__(self) -> None:
        self.batches: list[RunningBatch] = []

    def __bool__(self) -> bool:
        return bool(self.batches)

    def __iter__(self) -> Iterator[RunningBatch]:
        return iter(list(self.batches))  # a snapshot: stepping a group may replace or remove it

    @property
    def rows(self) -> list[DecodeRow]:
        return [row for batch in self.batches for row in batch.rows]

    def __len__(self) -> int:
        return sum(len(batch) for batch in self.batches)

    def group_for(self, newcomers: RunningBatch) -> RunningBatch | None:
        """The group `newcomers` should join (the one it pads least), or None: it starts its own."""
        fitting = [batch for batch in self.batches if fits(batch, newcomers)]
        if not fitting and len(self.batches) >= MAX_GROUPS:
            fitting = self.batches
        return min(fitting, key=lambda batch: padding_added(batch, newcomers), default=None)

    def add(self, batch: RunningBatch) -> None:
        self.batches.append(batch)

    def remove(self, batch: RunningBatch) -> None:
        self.batches = [each for each in self.batches if each is not batch]

    def replace(self, old: RunningBatch, new: RunningBatch | None) -> None:
        """`old` became `new` (rows left; None when none is left)."""
        if new is None:
            self.remove(old)
        else:
            self.batches = [new if each is old else each for each in self.batches]

    def merge_close(self) -> None:
        """Merge groups whose lengths are now close (rows left), and the closest two while there are too many."""
        while len(self.batches) > 1:
            pairs = [(a, b) for i, a in enumerate(self.batches) for b in self.batches[i + 1 :]]
            first, second = min(pairs, key=lambda pair: padding_added(*pair))
            if not fits(first, second) and len(self.batches) <= MAX_GROUPS:
                return
            merged = concatenate(first, second)
            self.batches = [merged if each is first else each for each in self.batches if each is not second]

    def clear(self) -> list[RunningBatch]:
        batches, self.batches = self.batches, []
        return batches


def padding_added(a: RunningBatch, b: RunningBatch) -> int:
    """Padding columns (summed over rows) one batch of `a` and `b` would hold beyond theirs today."""
    longer, shorter = (a, b) if a.cached_length >= b.cached_length else (b, a)
    return (longer.cached_length - shorter.cached_length) * len(shorter)


def fits(a: RunningBatch, b: RunningBatch) -> bool:
    held = len(a) * a.cached_length + len(b) * b.cached_length
    allowance = max(PADDING_TOKENS * (len(a) + len(b)), PADDING_SHARE * held)
    return padding_added(a, b) <= allowance
