"""Several Python threads calling one model at once: `LSTM.forward(training=False)` and
`Predictor.predict` give exactly the answers of sequential calls on every backend, the
thread count set with `set_num_threads` holds in every calling thread, and overlapping
sessions leave NumPy's BLAS as they found it. (No timing bound: the suite runs on shared
machines; the speed of concurrent callers is measured in benchmarks/threads.py.)"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from helpers import FAST_BACKENDS

from lstm_engine import LSTM, backends

BACKENDS = ["numpy"] + FAST_BACKENDS
THREADS = 4


def _concurrently(fn, args_per_thread, timeout=300):
    """fn(*args) in one thread per entry of args_per_thread, all released at once; results
    in order (an exception in a thread is raised here)."""
    results, errors = [None] * len(args_per_thread), []
    start = threading.Barrier(len(args_per_thread))

    def run(k, args):
        try:
            start.wait()
            results[k] = fn(*args)
        except BaseException as e:  # noqa: BLE001 -- re-raised below
            errors.append(e)
    threads = [threading.Thread(target=run, args=(k, a)) for k, a in enumerate(args_per_thread)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("B, H", [(1, 96), (6, 16)])           # the hidden split (B=1) and the batch split
def test_concurrent_inference_equals_sequential(backend, B, H):
    model = LSTM(8, H, num_layers=2, bidirectional=True, backend=backend, seed=0)
    rng = np.random.default_rng(0)
    # different lengths and shapes per thread, repeated, so that calls overlap in every way
    inputs = [rng.standard_normal((T, B, 8)).astype(np.float32) for T in (5, 9, 9, 13)] * 3
    to_np = model.backend.to_numpy
    want = [to_np(model.forward(x, training=False)[0]) for x in inputs]

    def calls(xs):
        return [to_np(model.forward(x, training=False)[0]) for x in xs]
    got = _concurrently(calls, [(inputs[k::THREADS],) for k in range(THREADS)])
    for k in range(THREADS):
        for g, w in zip(got[k], want[k::THREADS]):
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_predict_equals_sequential(lid_run, backend):
    from lstm_engine.predictor import load_predictor
    pred = load_predictor(lid_run, backend=backend)
    texts = ["abba dcab", "wxyz zyxw wz", "klmn nmlk", "ab", "wxyzwxyzwxyz wxyz", "mn kl"] * 4
    parts = [texts[k::THREADS] for k in range(THREADS)] * 2
    want = [pred.predict_proba(part) for part in parts]       # the same batches, one after another
    got = _concurrently(lambda part: pred.predict_proba(part), [(part,) for part in parts])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_set_num_threads_holds_in_other_threads():
    if not backends.probe("cpu").available:
        pytest.skip("the cpu backend is not available here")
    import numba
    before = numba.get_num_threads()
    model = LSTM(4, 8, backend="cpu")
    try:
        backends.set_num_threads(1)
        seen = _concurrently(lambda: (model.forward(np.zeros((3, 2, 4), np.float32), training=False),
                                      numba.get_num_threads())[1], [()] * 2)
        assert seen == [1, 1]                    # Numba's own setting is per thread
    finally:
        backends.set_num_threads(before)


def test_overlapping_sessions_restore_blas():
    if not backends.probe("cpu").available:
        pytest.skip("the cpu backend is not available here")
    from threadpoolctl import threadpool_info
    cpu = backends.get_backend("cpu")

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    original = blas_threads()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def first():                                 # enters first, leaves first
        with cpu.session():
            a_in.set()
            b_in.wait()
        a_out.set()

    def second():                                # enters second, leaves last
        a_in.wait()
        with cpu.session():
            b_in.set()
            a_out.wait()
            assert all(n == 1 for n in blas_threads())     # still limited while one is open
    _concurrently(lambda f: f(), [(first,), (second,)])
    assert blas_threads() == original
