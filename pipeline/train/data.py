"""The training data order: a seeded global shuffle of packed rows, split across workers, resumable.

Ray Data iterators do not resume mid-epoch, so training reads the memory-mapped
packed shards directly: the order is a pure function of (seed, epoch), each
micro-step takes the next `global_batch` rows of that order, and worker r takes
its slice of them. The position is counted in rows of that order, not in steps,
so it means the same on any number of workers: a restart from (epoch, row), on
as many workers as before or on another number, reads on from exactly the next
unread row, and no row of the epoch is skipped or read twice.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.packed import PackedSplit


@dataclass
class Position:
    """Where the loader is: the epoch, and the index in its order of the next row to read."""
    epoch: int = 0
    row: int = 0


def mixture_order(source_rows: dict[str, np.ndarray], weights: dict[str, float], seed: int,
                  epoch: int) -> np.ndarray:
    """One epoch's row order with per-source mixture weights applied, then shuffled globally.

    A weight w repeats each of the source's rows int(w) times and adds a seeded sample of
    round(frac(w) * n) more without replacement: 2.0 sees a source twice per epoch, 0.5 half of
    it (another half each epoch). Sources not named weigh 1.
    """
    rng = np.random.default_rng([seed, epoch])
    parts = []
    for name in sorted(source_rows):
        rows = source_rows[name]
        weight = weights.get(name, 1.0)
        whole, frac = int(weight), weight - int(weight)
        parts += [rows] * whole
        extra = round(frac * len(rows))
        if extra:
            parts.append(rng.choice(rows, size=extra, replace=False))
    order = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    return order[rng.permutation(len(order))]


def epoch_size(source_rows: dict[str, np.ndarray], weights: dict[str, float]) -> int:
    total = 0
    for name, rows in source_rows.items():
        weight = weights.get(name, 1.0)
        total += int(weight) * len(rows) + round((weight - int(weight)) * len(rows))
    return total


class ShuffledBatches:
    def __init__(self, split: PackedSplit, batch_size: int, rank: int, world_size: int, seed: int,
                 weights: dict[str, float] | None = None):
        self.split = split
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.weights = weights or {}
        self.source_rows = split.source_rows()
        self.global_batch = batch_size * world_size
        self.epoch_rows = epoch_size(self.source_rows, self.weights)
        self.steps_per_epoch = self.epoch_rows // self.global_batch
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the {split.split} split has {len(split)} sequences, fewer than one global batch "
                f"({batch_size} per worker x {world_size} workers): lower train.batch_size or "
                f"tokenize.seq_len, or add data")

    def order(self, epoch: int) -> np.ndarray:
        """The permutation of all rows for this epoch (same on every worker), computed once per epoch."""
        if getattr(self, "_order_epoch", None) != epoch:
            self._order = mixture_order(self.source_rows, self.weights, self.seed, epoch)
            self._order_epoch = epoch
        return self._order

    def batch(self, pos: Position) -> np.ndarray:
        """This worker's rows (batch_size, seq_len + 1) at the given position."""
        order = self.order(pos.epoch)
        start = pos.row + self.rank * self.batch_size
        return self.split.rows(np.sort(order[start:start + self.batch_size]))

    def advance(self, pos: Position) -> Position:
        """The position after one global batch; an epoch ends where a whole global batch no longer
        fits (the rest of its order is dropped, as a sampler with drop_last does)."""
        row = pos.row + self.global_batch
        if row + self.global_batch <= self.epoch_rows:
            return Position(pos.epoch, row)
        return Position(pos.epoch + 1, 0)

    def epochs_done(self, pos: Position) -> float:
        return pos.epoch + pos.row / self.epoch_rows
