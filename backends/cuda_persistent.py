"""The persistent path of the `cuda` backend: how a launch of lstm_persistent.cu's kernels is
planned (hidden units per block, blocks, threads per block, staging width, dynamic shared
memory), whether one fits a device, and what a forward keeps for its backward.

Shapes: T steps, B batch, H hidden, G = 4H gate columns; U hidden units per block; NT threads
per block; K the product's reduction length (H forward, G backward). lstm_persistent.cu's
header describes the kernels and their shared-memory layout; `shared_elements` is that layout
in Python, the one place the host computes it.

A plan must keep every block resident at once (a cooperative launch: grid.sync() would wait
forever for a block that never got an SM), so it is made against the device's own figures:
the dynamic shared memory one block may have, and how many blocks of this kernel with this
much shared memory fit on the whole device (`capacity`: CUDA's occupancy calculator times the
SMs on a GPU; cuda_compile.py gives the same from the ptxas figures for the GPUs it checks,
which is where the hidden-size ranges in benchmarks/results/cuda_kernels.json come from).
Among the U that fit, `plan` takes the least work per SM, then the fewest blocks. Each block
holds 4*U*H weights, so shared memory and the SM count bound H: in float32 up to 864 on an A100
(108 SMs) and 1056 on an H100/H200 (132 SMs).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .cuda import PERSISTENT_KERNELS, PERSISTENT_SOURCE


def _define(name: str) -> int:
    """A #define of lstm_persistent.cu: the kernels' compile-time sizes have their one home there."""
    m = re.search(rf"^#define {name} (\d+)$", PERSISTENT_SOURCE.read_text(), re.M)
    if m is None:
        raise RuntimeError(f"{PERSISTENT_SOURCE.name} does not #define {name}")
    return int(m.group(1))


#: Threads per block on a GPU: the kernels' __launch_bounds__ (at most this many per block).
THREADS = _define("LSTM_PERSISTENT_THREADS")
#: Batch rows per pass of a block's product (its register tile is 4 x CHUNK).
CHUNK = _define("LSTM_PERSISTENT_CHUNK")
#: Hidden units per block a plan may use, smallest (most blocks) first. Powers of two, so that
#: row groups divide the block's threads; at least 4, since backward groups units in fours.
UNITS = (4, 8, 16, 32)
FORWARD, BACKWARD = "lstm_persistent_forward", "lstm_persistent_backward"
assert set(PERSISTENT_KERNELS) == {FORWARD, BACKWARD}


@dataclass(frozen=True)
class Plan:
    """One launch of a persistent kernel: `blocks` blocks of `threads` threads, each owning
    `units` hidden units, staging `chunk_cols` reduction indices at a time, with
    `shared_bytes` of dynamic shared memory."""

    kernel: str
    hidden: int
    units: int
    blocks: int
    threads: int
    chunk_cols: int
    shared_bytes: int


def row_groups(kernel: str, units: int) -> int:
    """RG: the row groups (of four rows) of a block's slice: a unit's four gates forward, four
    units backward."""
    return units if kernel == FORWARD else units // 4


def shared_elements(kernel: str, hidden: int, units: int, threads: int) -> tuple[int, int]:
    """(chunk_cols, dynamic shared memory in elements) of a block, as lstm_persistent.cu
    lays it out: the weights (4 * NT * kpt), the stage that the partial tiles reuse, and the
    products of a chunk of rows."""
    rg = row_groups(kernel, units)
    ks = threads // rg
    k = hidden if kernel == FORWARD else 4 * hidden
    kpt = -(-k // ks)
    partial = 4 * CHUNK * (threads + 1)
    # As wide as the partial tiles' memory allows (a multiple of KS), or all of K when less.
    chunk_cols = min(kpt * ks, max(ks, partial // CHUNK // ks * ks))
    return chunk_cols, 4 * threads * kpt + max(CHUNK * chunk_cols, partial) + 4 * CHUNK * rg


def plan(kernel: str, hidden: int, itemsize: int, threads: int, max_shared: int, sms: int,
         capacity: Callable[[int], int]) -> tuple[Plan | None, str]:
    """(the plan of `kernel` for `hidden` units of `itemsize`-byte values, "") or (None, why
    none fits). `threads` per block (a power of two, at most THREADS), `max_shared` the bytes of
    dynamic shared memory a block may have, `sms` the device's multiprocessors,
    `capacity(shared_bytes)` how many blocks with that much can be resident on it at once.

    Of the U that fit, the one with the least work on the busiest SM (U times the blocks an SM
    holds) wins, and of those the one with the fewest blocks: blocks that share an SM share its
    time, and each more block is one more reader of the whole state per step and one more
    party to every grid.sync()."""
    if threads < 32 or threads > THREADS or threads & (threads - 1):
        raise ValueError(f"threads must be a power of two from 32 to {THREADS}, got {threads}")
    fits, tried = [], []
    for units in UNITS:
        if row_groups(kernel, units) > threads:
            break
        blocks = -(-hidden // units)
        chunk_cols, elements = shared_elements(kernel, hidden, units, threads)
        shared = elements * itemsize
        if shared > max_shared:
            tried.append(f"U={units}: {shared} bytes of shared memory per block, the device allows {max_shared}")
            continue
        resident = capacity(shared)
        if blocks > resident:
            tried.append(f"U={units}: {blocks} blocks, {resident} fit on the device at once")
            continue
        fits.append(Plan(kernel, hidden, units, blocks, threads, chunk_cols, shared))
    if not fits:
        return None, f"no persistent plan for {kernel} at H={hidden} ({itemsize}-byte values): " + "; ".join(tried)
    return min(fits, key=lambda p: (p.units * -(-p.blocks // sms), p.blocks)), ""


class Saved:
    """What a persistent forward keeps for its backward (base.py's names): gates, c_prev and
    h_prev (T, B, ...) as the kernel wrote them, lengths on the device, w_hh, the shape key."""

    def __init__(self, key, gates, c_prev, h_prev, lengths, w_hh):
        self.key = key                  # (T, B, H, dtype, reverse)
        self.gates, self.c_prev, self.h_prev = gates, c_prev, h_prev
        self.lengths, self.w_hh = lengths, w_hh
