"""Memory stays bounded over a session that sees many batch shapes: the cpu backend's array
pool (size classes, a byte cap, least recently given dropped first) and the cuda backend's
graph buffers (a byte bound besides the count; tested on the emulated backend), each with
results equal to the reference throughout."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_results_close, make_case, run_case

from lstm_engine import LSTM, backends

#: 50 distinct (T, B) shapes, as length-bucketed batches give a session.
SHAPES = [(T, B) for T in (1, 2, 3, 5, 7, 9, 11, 13, 17, 23) for B in (1, 2, 3, 5, 8)]


def _each_shape_against_the_reference(backend):
    """Each of SHAPES (bidirectional, ragged) on `backend`, forward and gradients checked against
    the reference; yields (T, B) after each, for the caller's checks on its workspace."""
    for k, (T, B) in enumerate(SHAPES):
        case = make_case(T=T, B=B, I=5, H=16, bidirectional=True, seed=k,
                         lengths=np.random.default_rng(k).integers(1, T + 1, B))
        state = LSTM(**case["config"], backend="numpy", seed=k).state_dict()
        _, want = run_case(case, "numpy", state=state)
        _, got = run_case(case, backend, state=state)
        assert_results_close(got, want, np.float64)
        yield T, B


def _cpu():
    if not backends.probe("cpu").available:
        pytest.skip("the cpu backend is not available here")
    return backends.get_backend("cpu")


@pytest.fixture
def small_cap():
    """The cpu pool with a cap a few steps' arrays exceed, restored afterwards."""
    pool = _cpu()._pool
    saved = pool.cap
    pool.cap = 64 * 1024
    yield pool
    pool.cap = saved


def test_pool_stays_under_its_cap_over_50_shapes_and_matches_the_reference(small_cap):
    pool, cpu = small_cap, _cpu()
    hits = evicted = 0
    with cpu.session():
        for T, B in _each_shape_against_the_reference(cpu):
            assert pool.held <= pool.cap, (T, B, pool.held)
        hits, evicted = pool.hits, pool.evicted
    assert hits > 0 and evicted > 0            # it both reused and dropped arrays
    assert pool.held == 0                      # nothing is kept once the session closes


def test_a_repeated_shape_reuses_every_array():
    cpu = _cpu()
    pool = cpu._pool
    case = make_case(T=12, B=8, I=6, H=16, num_layers=2)
    with cpu.session():
        run_case(case, cpu)
        misses = pool.misses
        for _ in range(3):
            run_case(case, cpu)
        assert pool.misses == misses           # steps after the first allocate nothing new
        assert 0 < pool.held <= pool.cap


def test_size_classes():
    pool_cls = type(_cpu()._pool)
    for n in [1, 4095, 4096, 4097, 10 ** 5, 3 * 2 ** 20 + 5, 16 * 2 ** 20, 10 ** 9]:
        c = pool_cls.size_class(n)
        assert pool_cls.class_bytes(c) >= n > (pool_cls.class_bytes(c - 1) if c else 0)
        if n >= 2 ** 16:                        # 8 classes per doubling: under 10% larger
            assert pool_cls.class_bytes(c) < 1.1 * n


def test_pool_hands_out_contiguous_views_and_ignores_strangers():
    cpu = _cpu()
    pool = type(cpu._pool)(cap=2 ** 20)
    with pool.opened():
        a = pool.empty((3, 5, 7), np.float32)
        assert a.shape == (3, 5, 7) and a.dtype == np.float32 and a.flags.c_contiguous
        pool.give(a, np.empty(1000, np.uint8), np.zeros((3, 5, 7), np.float32))
        assert pool.held == pool.class_bytes(pool.size_class(a.nbytes))      # a's block alone
        held = pool.held
        pool.give(a)                            # twice: kept once
        assert pool.held == held
        b = pool.empty((7, 5, 3), np.float32)   # the same block again
        assert pool.hits == 1 and pool.held == 0
        b[...] = 1.0
        c = pool.empty((100,), np.float64)      # nothing free: a new block
        c[...] = 2.0
        assert (b == 1.0).all() and pool.misses == 2
    pool.give(b)                                # outside a session nothing is kept
    assert pool.held == 0


# -- the cuda backend's graph buffers (emulated) ------------------------------------------------
@pytest.fixture
def emulated():
    from lstm_engine.backends.cuda_emulation import EmulatedCudaBackend
    reason = EmulatedCudaBackend.unavailable_reason()
    if reason:
        pytest.skip(reason)
    return EmulatedCudaBackend()


def test_graph_buffers_stay_under_a_byte_bound_over_50_shapes(emulated):
    emulated.graphs.max_bytes = 1536 * 1024
    emulated.graphs.max_keys = 10 ** 6            # only the byte bound acts
    biggest = 0
    for T, B in _each_shape_against_the_reference(emulated):
        one = max(b.nbytes for b in emulated.graphs.buffers())
        biggest = max(biggest, one)
        # the bound, plus the most recent shape's sets (kept while their call uses them)
        assert emulated.graphs.nbytes <= emulated.graphs.max_bytes + 2 * one, (T, B)
    assert len(emulated.graphs.buffers()) < 2 * len(SHAPES)     # older shapes were dropped
    assert biggest < emulated.graphs.max_bytes


def test_graph_buffers_held_by_a_forward_are_never_dropped(emulated):
    emulated.graphs.max_bytes = 1                  # everything free goes at once
    case = make_case(T=6, B=3, I=4, H=5)
    model = LSTM(**case["config"], backend=emulated, seed=0)
    out, _ = model.forward(case["x"])              # its buffers are held for the backward
    for T in (2, 3, 4):
        LSTM(**make_case(T=T, B=3, I=4, H=5)["config"], backend=emulated, seed=0).forward(
            make_case(T=T, B=3, I=4, H=5)["x"], training=False)
    _, want = run_case(case, "numpy")
    grads = model.backward(case["d_outputs"], case["d_h_n"], case["d_c_n"])
    np.testing.assert_allclose(grads.input, want["d_input"], rtol=1e-9, atol=1e-11)
