"""Every fast backend against the NumPy reference: outputs, final states and every gradient,
over the awkward cases, in float32 and float64."""

import numpy as np
import pytest
from conftest import assert_results_close, make_case, run_case
from lstm_engine import LSTM, set_num_threads

CASES = {
    "T1-B1": dict(T=1, B=1, I=4, H=5),
    "B1": dict(T=9, B=1, I=3, H=8),
    "odd-sizes": dict(T=6, B=5, I=7, H=13),
    "ragged-1-and-T": dict(T=8, B=5, I=3, H=6, lengths=[8, 1, 5, 8, 2]),
    "bidirectional-ragged": dict(T=7, B=4, I=5, H=6, bidirectional=True, lengths=[3, 7, 1, 6]),
    "3-layers": dict(T=5, B=3, I=4, H=7, num_layers=3),
    "deep-bi-ragged-state": dict(T=6, B=3, I=3, H=5, num_layers=3, bidirectional=True,
                                 lengths=[6, 2, 4], initial_state=True),
    "initial-state": dict(T=4, B=2, I=3, H=4, initial_state=True),
    "batch-first-ragged": dict(T=5, B=3, I=2, H=3, batch_first=True, lengths=[5, 1, 3]),
    "dropout-2-layers": dict(T=5, B=4, I=3, H=4, num_layers=2, bidirectional=True, dropout=0.5),
    "wide-batch": dict(T=12, B=33, I=17, H=32, lengths=list(range(12, 0, -1)) * 2 + [12] * 9),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", CASES)
def test_matches_reference(fast_backend, name, dtype):
    case = make_case(**CASES[name], dtype=dtype, seed=len(name))
    ref_model, want = run_case(case, "numpy", seed=5)
    _, got = run_case(case, fast_backend, seed=5, state=ref_model.state_dict())
    assert_results_close(got, want, dtype)


@pytest.mark.parametrize("threads,B", [(1, 5), (2, 1), (2, 3), (2, 7)])
def test_thread_split_edges(fast_backend, threads, B):
    """B smaller than the thread count, and B not divisible by it."""
    if fast_backend != "cpu":
        pytest.skip("thread splitting is the cpu backend's")
    import numba
    before = numba.get_num_threads()
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("not enough threads in Numba's pool")
    set_num_threads(threads)
    try:
        case = make_case(T=6, B=B, I=3, H=5, bidirectional=True, lengths=np.arange(B) % 6 + 1,
                         dtype=np.float64, seed=B)
        ref_model, want = run_case(case, "numpy")
        _, got = run_case(case, "cpu", state=ref_model.state_dict())
        assert_results_close(got, want, np.float64)
    finally:
        set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("wide", [True, False])
def test_cpu_gemm_matches_matmul(wide, dtype):
    """The cpu backend's SIMD products against NumPy's matmul: every row block (8, 4, 2 and
    1 rows wide, 4, 2 and 1 narrow), partial last panels, a part of the reduction, accumulation
    into out, a transposed left operand, and the threaded driver."""
    pytest.importorskip("numba")
    from lstm_engine.backends.cpu_gemm import gemm, gemm_rows, pack
    rng = np.random.default_rng(0)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for R, K, N in [(1, 1, 1), (3, 7, 5), (4, 9, 16), (8, 16, 33), (13, 33, 17), (17, 40, 70),
                    (9, 300, 64), (30, 600, 3)]:
        a = rng.standard_normal((R, K)).astype(dtype)
        w = rng.standard_normal((K, N)).astype(dtype)
        wp = pack(w, wide)
        want = a @ w
        out = np.full((R, N), np.nan, dtype)
        gemm(a, wp, out, wide, 0, K, False)
        np.testing.assert_allclose(out, want, rtol=tol, atol=tol * K, err_msg=f"{R}x{K}x{N}")
        k0 = K // 3
        out = np.ones((R, N), dtype)
        gemm(a, wp, out, wide, k0, K, True)
        np.testing.assert_allclose(out, 1 + a[:, k0:] @ w[k0:], rtol=tol, atol=tol * K)
        out = np.full((R, N), np.nan, dtype)
        gemm_rows(np.ascontiguousarray(a.T).T, wp, out, wide, 2)    # a transposed view
        np.testing.assert_allclose(out, want, rtol=tol, atol=tol * K)
        out = np.full((R, N), np.nan, dtype)
        gemm_rows(a, wp, out, wide, 3)
        np.testing.assert_allclose(out, want, rtol=tol, atol=tol * K)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fuse_from_rows", [1, 10**9], ids=["fused", "hoisted"])
@pytest.mark.parametrize("wide", [True, False])
def test_cpu_kernel_variants_match_reference(wide, fuse_from_rows, dtype, monkeypatch):
    """The cpu backend with and without the AVX-512 register blocking, and with the input
    projection fused into the step product or hoisted out of the loop, forward and backward
    (ragged, bidirectional, 2 layers; 6 rows per thread, so the 4- and 1-row blocks)."""
    from lstm_engine import backends
    if not backends.probe("cpu").available:
        pytest.skip("the cpu backend is not available here")
    cpu = backends.get_backend("cpu")
    monkeypatch.setattr(cpu, "wide", wide)
    monkeypatch.setattr(cpu, "fuse_from_rows", fuse_from_rows)
    case = make_case(T=7, B=12, I=5, H=9, bidirectional=True, num_layers=2,
                     lengths=[7, 1, 3, 7, 2, 6, 5, 7, 4, 1, 7, 6], dtype=dtype, seed=3)
    ref_model, want = run_case(case, "numpy")
    _, got = run_case(case, cpu, state=ref_model.state_dict())
    assert_results_close(got, want, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B,H,lengths", [(1, 64, None), (3, 7, [5, 1, 3]), (2, 33, [5, 4])])
def test_cpu_hidden_split_matches_reference(B, H, lengths, dtype, monkeypatch):
    """Inference with the hidden units split across two threads (a barrier per step), as for
    batches thinner than the thread count: odd unit counts, ragged rows, both directions."""
    import numba
    from lstm_engine import backends
    if not backends.probe("cpu").available:
        pytest.skip("the cpu backend is not available here")
    if numba.get_num_threads() < 2:
        pytest.skip("needs two threads in Numba's pool")
    cpu = backends.get_backend("cpu")
    calls = []
    monkeypatch.setattr(cpu, "_split_units", lambda B, H: calls.append(B) or 2)
    case = make_case(T=5, B=B, I=4, H=H, num_layers=2, bidirectional=True, lengths=lengths,
                     dtype=dtype, seed=B + H)
    ref = LSTM(**case["config"], backend="numpy", seed=1)
    model = LSTM(**case["config"], backend=cpu, seed=1)
    model.load_state_dict(ref.state_dict())
    state = (np.random.default_rng(0).standard_normal((4, B, H)).astype(dtype),) * 2
    want, (want_h, want_c) = ref.forward(case["x"], case["lengths"], state, training=False)
    got, (got_h, got_c) = model.forward(case["x"], case["lengths"], state, training=False)
    assert calls, "the split path was not taken"
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got, want, **tol)
    np.testing.assert_allclose(got_h, want_h, **tol)
    np.testing.assert_allclose(got_c, want_c, **tol)


def test_inference_mode_keeps_nothing(fast_backend):
    case = make_case(T=4, B=2, I=3, H=4, num_layers=2, dropout=0.5, dtype=np.float32)
    model = LSTM(**case["config"], backend=fast_backend, seed=0)
    ref = LSTM(**case["config"], backend="numpy", seed=0)
    out, _ = model.forward(case["x"], training=False)
    ref_out, _ = ref.forward(case["x"], training=False)
    np.testing.assert_allclose(out, ref_out, rtol=1e-4, atol=1e-5)
    with pytest.raises(RuntimeError, match="forward"):
        model.backward(case["d_outputs"])


def test_fast_tanh_is_within_1e6_of_float64():
    pytest.importorskip("numba")
    from lstm_engine.backends.cpu_kernels import tanh_kernel
    z = np.linspace(-20, 20, 400_001).astype(np.float32)
    out = np.empty_like(z)
    tanh_kernel(z, out)
    err = np.abs(out.astype(np.float64) - np.tanh(z.astype(np.float64)))
    assert err.max() < 1e-6
    assert out.max() <= 1.0 and out.min() >= -1.0
    out_nan = np.empty(1, np.float32)
    tanh_kernel(np.array([np.nan], np.float32), out_nan)
    assert np.isnan(out_nan[0])


def test_to_backend_moves_parameters(fast_backend):
    case = make_case(T=4, B=3, I=2, H=3, num_layers=2, bidirectional=True, dtype=np.float64)
    model = LSTM(**case["config"], backend=fast_backend, seed=2)
    out, _ = model.forward(case["x"], training=False)
    assert model.to_backend("numpy") is model and model.backend.name == "numpy"
    ref_out, _ = model.forward(case["x"], training=False)
    np.testing.assert_allclose(model.backend.to_numpy(ref_out), np.asarray(out), atol=1e-12)
