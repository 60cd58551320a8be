"""Shared helpers: building matched models on several backends and comparing their results."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from lstm_engine import LSTM
from lstm_engine import backends as registry

#: Every backend that runs here, besides the reference.
FAST_BACKENDS = [name for name in registry.names() if name != "numpy" and registry.probe(name).available]


def _emulated_cuda() -> list:
    """The cuda backend's orchestration and .cu kernels run on the CPU (kernels built by g++),
    as a Backend instance; none when there is no host compiler."""
    from lstm_engine.backends.cuda_emulation import EmulatedCudaBackend
    return [] if EmulatedCudaBackend.unavailable_reason() else [EmulatedCudaBackend()]


FAST_BACKENDS += _emulated_cuda()

#: (rtol, atol) for comparing a backend with the reference in the same dtype.
TOLERANCE = {np.float64: (1e-9, 1e-11), np.float32: (2e-4, 2e-5)}


def make_case(T, B, I, H, num_layers=1, bidirectional=False, lengths=None, initial_state=False,
              dtype=np.float64, seed=0, batch_first=False, dropout=0.0):
    """Inputs and upstream gradients for one test case, as host arrays."""
    rng = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    x_shape = (B, T, I) if batch_first else (T, B, I)
    out_shape = (B, T, D * H) if batch_first else (T, B, D * H)
    state_shape = (num_layers * D, B, H)
    case = dict(
        config=dict(input_size=I, hidden_size=H, num_layers=num_layers, bidirectional=bidirectional,
                    batch_first=batch_first, dropout=dropout, dtype=dtype),
        x=rng.standard_normal(x_shape).astype(dtype),
        lengths=None if lengths is None else np.asarray(lengths),
        initial_state=(rng.standard_normal(state_shape).astype(dtype),
                       rng.standard_normal(state_shape).astype(dtype)) if initial_state else None,
        d_outputs=rng.standard_normal(out_shape).astype(dtype),
        d_h_n=rng.standard_normal(state_shape).astype(dtype),
        d_c_n=rng.standard_normal(state_shape).astype(dtype),
    )
    return case


def run_case(case, backend, seed=0, state=None):
    """forward + backward on `backend`; returns host arrays keyed by what they are."""
    model = LSTM(**case["config"], backend=backend, seed=seed)
    if state is not None:
        model.load_state_dict(state)
    out, (h_n, c_n) = model.forward(case["x"], lengths=case["lengths"], initial_state=case["initial_state"])
    grads = model.backward(case["d_outputs"], case["d_h_n"], case["d_c_n"])
    to_np = model.backend.to_numpy
    result = {"outputs": to_np(out), "h_n": to_np(h_n), "c_n": to_np(c_n),
              "d_input": to_np(grads.input), "d_h_0": to_np(grads.h_0), "d_c_0": to_np(grads.c_0)}
    result.update({f"d_{name}": to_np(g) for name, g in grads.params.items()})
    return model, result


def assert_results_close(got: dict, want: dict, dtype):
    rtol, atol = TOLERANCE[np.dtype(dtype).type]
    assert got.keys() == want.keys()
    for key in want:
        scale = max(1.0, float(np.abs(want[key]).max()))
        np.testing.assert_allclose(got[key], want[key], rtol=rtol, atol=atol * scale, err_msg=key)


@pytest.fixture(params=FAST_BACKENDS or [pytest.param("none", marks=pytest.mark.skip("no fast backend here"))])
def fast_backend(request):
    return request.param


@pytest.fixture(scope="session")
def lid_tsv(tmp_path_factory):
    """A label<TAB>text file of three made-up languages with their own letters, 5-80 characters."""
    rng = np.random.default_rng(0)
    alphabets = {"aa": "abcd ", "xx": "wxyz ", "mm": "klmn "}
    lines = []
    for label, letters in alphabets.items():
        for _ in range(120):
            text = "".join(rng.choice(list(letters), size=rng.integers(5, 80))).strip() or letters[0]
            lines.append(f"{label}\t{text}")
    path = tmp_path_factory.mktemp("lid") / "tiny.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def speech_npz(tmp_path_factory):
    """Feature sequences of three classes told apart by their mean (a generic .npz dataset)."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 15, 150)
    y = np.arange(150) % 3
    X = np.concatenate([rng.standard_normal((n, 5)) + c for n, c in zip(lengths, y)]).astype(np.float32)
    path = tmp_path_factory.mktemp("speech") / "feats.npz"
    np.savez(path, X=X, lengths=lengths, y=y, labels=np.array(["low", "mid", "high"]))
    return path


@pytest.fixture(scope="session")
def lid_run(tmp_path_factory, lid_tsv):
    """A small trained language-id run folder (numpy backend)."""
    from lstm_engine import runs
    out = tmp_path_factory.mktemp("lid_run")
    runs.run("language-id", {"data": str(lid_tsv), "epochs": 2, "hidden_size": 12, "embedding_dim": 8,
                             "batch_size": 16, "warmup_steps": 0}, out, backend="numpy", progress=False)
    return out


def load_benchmark(name: str):
    """A script of benchmarks/ as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module                  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
