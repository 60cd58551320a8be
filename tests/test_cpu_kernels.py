"""The `cpu` backend's kernels, layer by layer: the LLVM-IR micro-kernel against its plain
Numba twin and NumPy, the products built on it, the time loops against the reference's step
functions, the kernel variants (fused or hoisted projection, AVX-512 blocking or not, the
hidden split, thread counts), the fast tanh, and Numba's on-disk cache of all of them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import DTYPES, assert_close, assert_results_close, make_case, run_case

from lstm_engine import LSTM, backends, set_num_threads
from lstm_engine.backends import reference

if not backends.probe("cpu").available:
    pytest.skip(f"the cpu backend is not available here: {backends.probe('cpu').reason}",
                allow_module_level=True)

import numba  # noqa: E402  (after the skip: the cpu backend is what brings it)

from lstm_engine.backends import cpu_gemm, cpu_kernels, cpu_sync  # noqa: E402
from lstm_engine.errors import ArgumentError  # noqa: E402
from lstm_engine.backends.kernel_cache import CPU_KERNELS  # noqa: E402

BACKENDS_DIR = Path(cpu_gemm.__file__).parent
# -- the micro-kernel and the products ------------------------------------------------------
def _caller(kernel):
    """A compiled function that calls `kernel` (an intrinsic runs only inside compiled code)."""
    @numba.njit
    def call(a, wp, out, r, p, k0, k1, ncols, acc):
        kernel(a, wp, out, r, p, k0, k1, ncols, acc)
    return call


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,wide", sorted(cpu_gemm.BLOCKS),
                         ids=[f"{r}rows-{'wide' if w else 'narrow'}" for r, w in sorted(cpu_gemm.BLOCKS)])
def test_block_kernel_matches_its_twin_and_numpy(rows, wide, dtype):
    """Each IR block kernel against block_twin (same signature, plain loops) and NumPy: a
    partial last panel (masked stores must leave the columns past `ncols` alone, here a
    sentinel), part of the reduction, accumulation, rows in the middle of a transposed a."""
    ir_kernel, twin = _caller(cpu_gemm.BLOCKS[rows, wide]), cpu_gemm.block_twin(rows)
    rng = np.random.default_rng(rows)
    R, K = rows + 3, 37
    NR = cpu_gemm.panel_width(np.dtype(dtype).itemsize, wide)
    N = NR + NR // 2 + 1                                  # the second panel is partial
    a = np.ascontiguousarray(rng.standard_normal((K, R)).astype(dtype)).T     # strided view
    w = rng.standard_normal((K, N)).astype(dtype)
    wp = cpu_gemm.pack(w, wide)
    r = 2
    for p in range(wp.shape[0]):
        ncols = min(NR, N - p * NR)
        cols = slice(p * NR, p * NR + ncols)
        for k0, k1, acc in [(0, K, False), (5, K - 3, True), (4, 4, True)]:
            wide_out = np.full((R, N + 5), 7.0, dtype)    # 5 sentinel columns past out's end
            out = wide_out[:, :N]
            want = out.copy()
            want[r:r + rows, cols] = ((want[r:r + rows, cols] if acc else 0)
                                      + a[r:r + rows, k0:k1] @ w[k0:k1, cols])
            got_twin = out.copy()
            twin(a, wp, got_twin, r, p, k0, k1, ncols, acc)
            ir_kernel(a, wp, out, r, p, k0, k1, ncols, acc)
            what = f"panel {p}, k {k0}:{k1}, acc {acc}"
            assert_close(got_twin, want, dtype, "gemm", err_msg="twin " + what, k=K)
            assert_close(out, got_twin, dtype, "gemm", err_msg="IR " + what, k=K)
            assert (wide_out[:, N:] == 7.0).all(), "a masked store wrote past the last column"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("wide", [True, False])
def test_gemm_matches_numpy(wide, dtype):
    """gemm and gemm_rows against NumPy's matmul: every row block (8, 4, 2 and 1 rows wide,
    4, 2 and 1 narrow), partial last panels, a part of the reduction, accumulation into out,
    a transposed left operand, and the threaded driver."""
    rng = np.random.default_rng(0)
    for R, K, N in [(1, 1, 1), (3, 7, 5), (4, 9, 16), (8, 16, 33), (13, 33, 17), (17, 40, 70),
                    (9, 300, 64), (30, 600, 3)]:
        a = rng.standard_normal((R, K)).astype(dtype)
        w = rng.standard_normal((K, N)).astype(dtype)
        wp = cpu_gemm.pack(w, wide)
        want = a @ w
        out = np.full((R, N), np.nan, dtype)
        cpu_gemm.gemm(a, wp, out, wide, 0, K, False)
        assert_close(out, want, dtype, "gemm", err_msg=f"{R}x{K}x{N}", k=K)
        k0 = K // 3
        out = np.ones((R, N), dtype)
        cpu_gemm.gemm(a, wp, out, wide, k0, K, True)
        assert_close(out, 1 + a[:, k0:] @ w[k0:], dtype, "gemm", k=K)
        out = np.full((R, N), np.nan, dtype)
        cpu_gemm.gemm_rows(np.ascontiguousarray(a.T).T, wp, out, wide, 2)    # a transposed view
        assert_close(out, want, dtype, "gemm", k=K)
        out = np.full((R, N), np.nan, dtype)
        cpu_gemm.gemm_rows(a, wp, out, wide, 3)
        assert_close(out, want, dtype, "gemm", k=K)


def test_store_packed_builds_the_packed_layout_row_by_row():
    rng = np.random.default_rng(1)
    m = rng.standard_normal((5, 21))
    wp = np.zeros_like(cpu_gemm.pack(m, wide=False))
    for row in range(5):
        cpu_gemm.store_packed(wp, row, m[row, :8], 0)
        cpu_gemm.store_packed(wp, row, m[row, 8:], 8)
    np.testing.assert_array_equal(wp, cpu_gemm.pack(m, wide=False))


# -- the time loops against the reference's steps ------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fused", [False, True], ids=["hoisted", "fused"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_time_loops_are_the_reference_steps(reverse, fused, dtype):
    """forward_loop and backward_loop called directly, step by step against
    reference.step_forward / step_backward: outputs, the saved gates and c_prev, d_pre, and
    the gradients of the initial state (ragged rows, two threads)."""
    rng = np.random.default_rng(5)
    T, B, I, H = 4, 3, 2, 5
    G = 4 * H
    x = rng.standard_normal((T, B, I)).astype(dtype)
    w_ih = (rng.standard_normal((G, I)) * 0.5).astype(dtype)
    w_hh = (rng.standard_normal((G, H)) * 0.5).astype(dtype)
    bias, h0, c0 = (rng.standard_normal(s).astype(dtype) for s in [(G,), (B, H), (B, H)])
    dy, dh_n, dc_n = (rng.standard_normal(s).astype(dtype) for s in [(T, B, H), (B, H), (B, H)])
    lengths = np.array([4, 1, 3], np.int64)
    active = reference.active_steps(lengths, T)

    # the oracle: the reference's steps, in the reference's order
    want_y, want_gates, want_c_prev = (np.zeros((T, B, n), dtype) for n in (H, G, H))
    h, c = h0, c0
    for t in reference.step_order(T, reverse):
        want_c_prev[t] = c
        want_gates[t], h, c, want_y[t] = reference.step_forward(
            x[t] @ w_ih.T + h @ w_hh.T + bias, h, c, active[t])
    want_d_pre = np.zeros((T, B, G), dtype)
    dh, dc = dh_n, dc_n
    for t in reversed(reference.step_order(T, reverse)):
        want_d_pre[t], dc = reference.step_backward(want_gates[t], want_c_prev[t], dh + dy[t], dc,
                                                    active[t])
        dh = np.where(active[t][:, None], want_d_pre[t] @ w_hh, dh)

    wide = False
    NR = cpu_gemm.panel_width(np.dtype(dtype).itemsize, wide)
    x_proj = np.empty(1, dtype).reshape(1, 1, 1) if fused else np.ascontiguousarray(x @ w_ih.T)
    w_step = cpu_gemm.pack(np.concatenate([w_ih, w_hh], axis=1).T if fused else w_hh.T, wide)
    y, h_n, c_n = np.empty((T, B, H), dtype), np.empty((B, H), dtype), np.empty((B, H), dtype)
    gates = np.full((T, B, G), np.nan, dtype)
    c_prev = np.full((T, B, H), np.nan, dtype)
    xh = np.zeros((-(-(I + H) // NR), T * B, NR), dtype)
    cpu_kernels.forward_loop(x, x_proj, bias, w_step, h0, c0, lengths, reverse, 2, wide, fused,
                             True, y, h_n, c_n, gates, c_prev, xh)
    for got, want, name in [(y, want_y, "y"), (gates, want_gates, "gates"),
                            (c_prev, want_c_prev, "c_prev"), (h_n, h, "h_n"), (c_n, c, "c_n")]:
        assert_close(got, want, dtype, "step", err_msg=name)

    w_back = cpu_gemm.pack(np.concatenate([w_ih, w_hh], axis=1) if fused else w_hh, wide)
    d_pre, d_bias = np.full((T, B, G), np.nan, dtype), np.empty(G, dtype)
    dx, dh0, dc0 = np.zeros((T, B, I), dtype), np.empty((B, H), dtype), np.empty((B, H), dtype)
    cpu_kernels.backward_loop(want_gates, want_c_prev, w_back, dy, dh_n, dc_n, lengths, reverse, 2,
                              wide, fused, d_pre, d_bias, dx, dh0, dc0)
    tol = "step"
    assert_close(d_pre, want_d_pre, dtype, tol, err_msg="d_pre")
    assert_close(d_bias, want_d_pre.sum(axis=(0, 1)), dtype, tol, err_msg="d_bias")
    assert_close(dh0, dh, dtype, tol, err_msg="dh0")
    assert_close(dc0, dc, dtype, tol, err_msg="dc0")
    if fused:
        assert_close(dx, want_d_pre @ w_ih, dtype, tol, err_msg="dx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fuse_from_rows", [1, 10**9], ids=["fused", "hoisted"])
@pytest.mark.parametrize("wide", [True, False])
def test_kernel_variants_match_reference(wide, fuse_from_rows, dtype, monkeypatch):
    """The cpu backend with and without the AVX-512 register blocking, and with the input
    projection fused into the step product or hoisted out of the loop, forward and backward
    (ragged, bidirectional, 2 layers; 6 rows per thread, so the 4- and 1-row blocks)."""
    cpu = backends.get_backend("cpu")
    monkeypatch.setattr(cpu, "wide", wide)
    monkeypatch.setattr(cpu, "fuse_from_rows", fuse_from_rows)
    case = make_case(T=7, B=12, I=5, H=9, bidirectional=True, num_layers=2,
                     lengths=[7, 1, 3, 7, 2, 6, 5, 7, 4, 1, 7, 6], dtype=dtype, seed=3)
    ref_model, want = run_case(case, "numpy")
    _, got = run_case(case, cpu, state=ref_model.state_dict())
    assert_results_close(got, want, dtype)


@pytest.mark.parametrize("threads,B", [(1, 5), (2, 1), (2, 3), (2, 7)])
def test_thread_split_edges(threads, B):
    """B smaller than the thread count, and B not divisible by it."""
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,H,lengths", [(1, 64, None), (3, 7, [5, 1, 3]), (2, 33, [5, 4])])
def test_hidden_split_matches_reference(B, H, lengths, dtype, monkeypatch):
    """Inference with the hidden units split across two threads (a barrier per step), as for
    batches thinner than the thread count: odd unit counts, ragged rows, both directions."""
    if numba.get_num_threads() < 2:
        pytest.skip("needs two threads in Numba's pool")
    cpu = backends.get_backend("cpu")
    calls = []
    monkeypatch.setattr(cpu, "_split_units", lambda B, H, threads: calls.append(B) or 2)
    case = make_case(T=5, B=B, I=4, H=H, num_layers=2, bidirectional=True, lengths=lengths,
                     dtype=dtype, seed=B + H)
    ref = LSTM(**case["config"], backend="numpy", seed=1)
    model = LSTM(**case["config"], backend=cpu, seed=1)
    model.load_state_dict(ref.state_dict())
    state = (np.random.default_rng(0).standard_normal((4, B, H)).astype(dtype),) * 2
    want, (want_h, want_c) = ref.forward(case["x"], case["lengths"], state, training=False)
    got, (got_h, got_c) = model.forward(case["x"], case["lengths"], state, training=False)
    assert calls, "the split path was not taken"
    for g, w, name in [(got, want, "y"), (got_h, want_h, "h_n"), (got_c, want_c, "c_n")]:
        assert_close(g, w, dtype, err_msg=name)


def test_fast_tanh_is_within_1e6_of_float64():
    z = np.linspace(-20, 20, 400_001).astype(np.float32)
    out = np.empty_like(z)
    cpu_kernels.tanh_kernel(z, out)
    err = np.abs(out.astype(np.float64) - np.tanh(z.astype(np.float64)))
    assert err.max() < 1e-6
    assert out.max() <= 1.0 and out.min() >= -1.0
    out_nan = np.empty(1, np.float32)
    cpu_kernels.tanh_kernel(np.array([np.nan], np.float32), out_nan)
    assert np.isnan(out_nan[0])


# -- the layers around the stack (cpu_layers) ------------------------------------------------
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_kernels_equal_the_array_code(dtype, threads):
    """Max over steps and the embedding gradient, compiled, against engine/layers.py's NumPy
    code (the reference backend's), bit for bit: T=1, B=1, odd sizes, ragged lengths, ties
    (many, from integer values: the first step must win) and NaN (never wins)."""
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("not enough threads in Numba's pool")
    cpu, ref = backends.get_backend("cpu"), backends.get_backend("numpy")
    rng = np.random.default_rng(threads)
    before = numba.get_num_threads()
    set_num_threads(threads)
    try:
        for T, B, F in [(1, 1, 1), (1, 3, 5), (7, 1, 3), (6, 5, 9), (33, 4, 17)]:
            for ties in (False, True):
                out = rng.standard_normal((T, B, F))
                out = (np.round(out) if ties else out).astype(dtype)
                out[rng.random(out.shape) < 0.05] = np.nan
                lengths = rng.integers(1, T + 1, B)
                got, want = cpu.max_over_steps(out, lengths), ref.max_over_steps(out, lengths)
                np.testing.assert_array_equal(got[0], want[0])
                np.testing.assert_array_equal(got[1], want[1])
            V = int(rng.integers(1, 9))
            tokens = rng.integers(0, V, T * B)                      # repeats: rows accumulate
            d_out = rng.standard_normal((T * B, F)).astype(dtype)
            weight = rng.standard_normal((V, F)).astype(dtype)      # only its shape and dtype count
            want = ref.embedding_grad(weight, tokens, d_out)
            np.testing.assert_array_equal(cpu.embedding_grad(weight, tokens, d_out), want)
            for backend in (cpu, ref):                   # into an array given (overwritten)
                out = np.full_like(weight, 7)
                assert backend.embedding_grad(weight, tokens, d_out, out=out) is out
                np.testing.assert_array_equal(out, want)
            for K in (1, 2, 3):                          # the n-gram embedding's sum, one id per order
                ids = rng.integers(0, V, (K, T, B))
                np.testing.assert_array_equal(cpu.embedding_sum(weight, ids), ref.embedding_sum(weight, ids))
    finally:
        set_num_threads(before)


@pytest.mark.parametrize("rule", ["adam", "adam-l2", "adamw"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_adam_equals_the_array_code(dtype, rule):
    """cpu_layers.adam_update against engine/optim.py's array code, bit for bit, over several
    steps (the bias corrections change), for Adam, Adam with L2 decay and AdamW; the switch
    off runs the array code itself, and what the kernel cannot take (a strided gradient)
    falls back to it."""
    from lstm_engine.optim import make_optimizer
    rng = np.random.default_rng(5)
    shapes = {"w": (7, 5), "b": (1,), "big": (1000, 3)}
    start = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    name, decay = {"adam": ("adam", 0.0), "adam-l2": ("adam", 0.1), "adamw": ("adamw", 0.05)}[rule]
    results = []
    for backend, compiled in (("numpy", None), ("cpu", True), ("cpu", False)):
        cpu = backends.get_backend(backend)
        params = {k: v.copy() for k, v in start.items()}
        opt = make_optimizer(name, lr=3e-2, weight_decay=decay)
        grads_rng = np.random.default_rng(6)
        before = getattr(cpu, "compiled_adam", None)
        if compiled is not None:
            cpu.compiled_adam = compiled
        try:
            for step in range(4):
                grads = {k: grads_rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
                if step == 3:
                    grads["w"] = np.asfortranarray(grads["w"])          # not C-contiguous: the array code
                opt.step(params, grads, backend=cpu)
        finally:
            if compiled is not None:
                cpu.compiled_adam = before
        results.append((params, opt.state))
    for params, state in results[1:]:
        for k in shapes:
            np.testing.assert_array_equal(params[k], results[0][0][k], err_msg=k)
            for slot in ("exp_avg", "exp_avg_sq"):
                np.testing.assert_array_equal(state[slot][k], results[0][1][slot][k], err_msg=f"{slot} {k}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_sum_of_squares_equals_the_array_code(dtype):
    """cpu_layers.sum_of_squares against engine/optim.py's float64 sum, to float64 rounding,
    at sizes around its chunk (empty, 1, a chunk less one, a chunk, a chunk and one, many
    chunks); the same bits with 1 thread and 2 (fixed chunks); NaN and infinity come through
    (its fastmath reassociates only); the switch off and a strided array run the array code;
    and clip_grad_norm gives the same norm and scaled gradients on cpu and numpy."""
    from lstm_engine.backends import cpu_layers
    from lstm_engine.optim import clip_grad_norm
    cpu, ref = backends.get_backend("cpu"), backends.get_backend("numpy")
    rng = np.random.default_rng(11)
    chunk = cpu_layers.SQUARES_CHUNK
    before = numba.get_num_threads()
    for size in (0, 1, 7, chunk - 1, chunk, chunk + 1, 5 * chunk + 3):
        a = rng.standard_normal(size).astype(dtype) * 3
        want = float(ref.sum_of_squares(a))
        got = {}
        for threads in (1, 2):
            if threads > numba.config.NUMBA_NUM_THREADS:
                continue
            set_num_threads(threads)
            try:
                got[threads] = float(cpu_layers.sum_of_squares(a))
                # the backend's method is the kernel (a 2-D gradient flattened)
                assert float(cpu.sum_of_squares(a.reshape(-1, 1))) == got[threads]
            finally:
                set_num_threads(before)
        assert len(set(got.values())) == 1, (size, got)
        assert got[1] == pytest.approx(want, rel=1e-13, abs=0.0), size
    a = rng.standard_normal((40, 30)).astype(dtype)
    for bad in (np.nan, np.inf):
        b = a.copy()
        b[3, 4] = bad
        assert np.isnan(cpu.sum_of_squares(b)) if np.isnan(bad) else np.isinf(cpu.sum_of_squares(b))
    strided = a[:, ::2]
    assert float(cpu.sum_of_squares(strided)) == float(ref.sum_of_squares(strided))
    cpu.compiled_norm = False
    try:
        assert float(cpu.sum_of_squares(a)) == float(ref.sum_of_squares(a))
    finally:
        del cpu.compiled_norm
    grads = {"w": a * 5, "b": rng.standard_normal(3).astype(dtype)}
    copies = {k: v.copy() for k, v in grads.items()}
    norm_cpu, norm_ref = clip_grad_norm(grads, 1.0, cpu), clip_grad_norm(copies, 1.0, ref)
    assert norm_cpu == pytest.approx(norm_ref, rel=1e-13)
    for k in grads:
        assert_close(grads[k], copies[k], dtype)


def test_layer_kernels_refuse_what_would_index_out_of_bounds():
    cpu = backends.get_backend("cpu")
    weight, d_out = np.zeros((4, 3), np.float32), np.zeros((2, 3), np.float32)
    for tokens in ([0, 4], [-1, 0]):
        with pytest.raises(ArgumentError, match="tokens"):
            cpu.embedding_grad(weight, np.array(tokens), d_out)
    for ids in (np.array([[[0, 4]]]), np.array([[[-1, 0]]]), np.zeros((0, 1, 2), int), np.zeros((2, 2), int)):
        with pytest.raises(ArgumentError, match="embedding_sum needs ids"):
            cpu.embedding_sum(weight, ids)
    with pytest.raises(ArgumentError, match="out must be a C-contiguous float32 array of shape"):
        cpu.embedding_grad(weight, np.array([0, 1]), d_out, out=np.zeros((4, 3), np.float64))
    with pytest.raises(ArgumentError, match="lengths"):
        cpu.max_over_steps(np.zeros((2, 2, 3), np.float32), np.array([1, 0]))
    with pytest.raises(ArgumentError, match="lengths"):
        cpu.max_over_steps(np.zeros((2, 2, 3), np.float32), np.array([1]))


# -- Numba's on-disk cache -------------------------------------------------------------------
def test_every_kernel_module_is_in_the_cache_stamp():
    """Every module of the backends package that imports Numba at the top holds kernels
    (kernel_cache.py aside) and is in CPU_KERNELS, whose stamp keys the cache; every cached
    kernel uses that cache, and none uses Numba's own (cache=True)."""
    numba_modules = {p.name for p in BACKENDS_DIR.glob("*.py")
                     if re.search(r"^(from numba|import numba)", p.read_text(), re.M)}
    assert numba_modules - {"kernel_cache.py"} == set(CPU_KERNELS.files)
    for path in BACKENDS_DIR.glob("*.py"):
        assert not re.search(r"^@\S*jit\([^)]*cache=True", path.read_text(), re.M), path.name
    for fn in (cpu_kernels.forward_loop, cpu_kernels.backward_loop, cpu_kernels.forward_split_loop,
               cpu_kernels.tanh_kernel, cpu_gemm.gemm, cpu_gemm.gemm_rows, cpu_sync._start_threads):
        assert type(fn._cache) is CPU_KERNELS.cache_class, fn


_MAIN = '''
from .dep import step
from .kernel_cache import KernelFiles

FILES = KernelFiles(__package__, ("dep.py", "main.py"))


@FILES.jit()
def run():
    return step()
'''
_DEP = '''
from numba import njit


@njit
def step():
    return {value}
'''
_PROBE = ("import json, kpkg.main as m; v = m.run(); "
          "print(json.dumps({'value': v, 'hits': sum(m.run.stats.cache_hits.values())}))")


def test_editing_a_dependency_invalidates_the_cache(tmp_path):
    """In fresh processes with their own NUMBA_CACHE_DIR: a cached function that calls a
    function of another file is loaded from the cache, and recompiled once that other file
    is edited (Numba's own cache=True would keep returning the old value)."""
    pkg = tmp_path / "kpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    shutil.copy(BACKENDS_DIR / "kernel_cache.py", pkg / "kernel_cache.py")
    (pkg / "main.py").write_text(_MAIN)
    (pkg / "dep.py").write_text(_DEP.format(value=1))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "NUMBA_CACHE_DIR": str(tmp_path / "cache")}

    def probe() -> dict:
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, cwd=tmp_path,
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    assert probe() == {"value": 1, "hits": 0}        # compiled and saved
    assert probe() == {"value": 1, "hits": 1}        # loaded from the cache
    (pkg / "dep.py").write_text(_DEP.format(value=2))
    assert probe() == {"value": 2, "hits": 0}        # the edit invalidated it
    assert probe() == {"value": 2, "hits": 1}
