"""The `cuda` backend on a real GPU: skipped, with the reason, wherever the backend is
unavailable (no CuPy, no device), whatever the host compiler. The same kernel checks as the
emulation (tests/cuda_checks.py, against the reference's step functions) through NVRTC and
CuPy launches, then whole layers against the reference, graph replays included.
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
def test_real_cuda_matches_reference(name, kw, dtype):
    case = make_case(**kw, dtype=dtype, seed=len(name))
    ref_model, want = run_case(case, "numpy", seed=5)
    _, got = run_case(case, "cuda", seed=5, state=ref_model.state_dict())
    assert_results_close(got, want, dtype)
    _, again = run_case(case, "cuda", seed=5, state=ref_model.state_dict())     # graph replay
    assert_results_close(again, want, dtype)
