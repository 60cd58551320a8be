"""The `cuda` backend on a real GPU: skipped, with the reason, wherever the backend is
unavailable (no CuPy, no device), whatever the host compiler. The same kernel checks as the
emulation (tests/cuda_checks.py, against the reference's step functions) through NVRTC and
CuPy launches, then whole layers against the reference on the graph and the persistent path,
replays included, and the persistent path's plans against the committed compile report.
`python -m pytest -m cuda` runs only these."""

import numpy as np
import pytest
from cuda_checks import (  # noqa: F401  (collected here, with this module's `device`)
    test_backward_finish_kernel,
    test_backward_step_kernel,
    test_forward_step_kernel,
    test_forward_step_without_save_leaves_gates_alone,
)
from helpers import DTYPES, assert_results_close, make_case, run_case

from lstm_engine import backends, get_backend

_CUDA = backends.probe("cuda")
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not _CUDA.available, reason=f"cuda backend unavailable: {_CUDA.reason}")]

@pytest.fixture(scope="module")
def device():
    """The real device of the registry's cuda backend (cuda._CupyDevice)."""
    return get_backend("cuda").device


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kw", [
    ("bidirectional-ragged", dict(T=7, B=4, I=5, H=6, bidirectional=True, lengths=[3, 7, 1, 6])),
    ("deep-bi-ragged-state", dict(T=6, B=3, I=3, H=5, num_layers=3, bidirectional=True, lengths=[6, 2, 4],
                                  initial_state=True)),
    ("wide", dict(T=40, B=64, I=33, H=128, lengths=list(range(40, 0, -1)) + [40] * 24)),
])
@pytest.mark.parametrize("recurrence", ["graph", "persistent"])
def test_real_cuda_matches_reference(name, kw, dtype, recurrence, monkeypatch):
    backend = get_backend("cuda")
    monkeypatch.setattr(backend, "recurrence", recurrence)
    case = make_case(**kw, dtype=dtype, seed=len(name))
    ref_model, want = run_case(case, "numpy", seed=5)
    _, got = run_case(case, backend, seed=5, state=ref_model.state_dict())
    assert_results_close(got, want, dtype)
    _, again = run_case(case, backend, seed=5, state=ref_model.state_dict())     # graph replay, plan reuse
    assert_results_close(again, want, dtype)


def test_the_persistent_path_covers_what_the_compile_report_says(monkeypatch):
    """The plans this GPU's occupancy calculator gives for the persistent kernels as CuPy built
    them, against the ranges benchmarks/results/cuda_kernels.json derived from NVRTC 12.9's
    ptxas figures for the GPU of its generation (by SM count: a figure of another GPU would not
    apply). On an H100/H200: float32 up to H=1056, training included."""
    import json
    from pathlib import Path

    backend = get_backend("cuda")
    facts = backend.facts()
    committed = json.loads((Path(__file__).parents[1] / "benchmarks" / "results" / "cuda_kernels.json").read_text())
    target = {"9.0": "sm_90", "8.0": "sm_80"}.get(facts["compute_capability"])
    if target is None or committed["gpus"][target]["sms"] != facts["multiprocessors"]:
        pytest.skip(f"no committed figures for {facts['gpu']} ({facts['multiprocessors']} SMs)")
    want = committed["persistent"][target]["float"]["max_hidden"]["training"]
    assert backend.persistent_plans(want, np.float32, True)[0] is not None
    assert backend.persistent_plans(want + 64, np.float32, True)[0] is None
