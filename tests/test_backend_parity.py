"""The parity suite: every fast backend (cuda-emulated included) against the NumPy reference,
outputs, final states and every gradient, over the awkward cases, in float32 and float64;
and what each saves for backward, under the one vocabulary of base.py."""

import numpy as np
import pytest
from helpers import assert_close, assert_results_close, layer_inputs, make_case, run_case

from lstm_engine import LSTM, CallOrderError, get_backend

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


def test_inference_mode_keeps_nothing(fast_backend):
    case = make_case(T=4, B=2, I=3, H=4, num_layers=2, dropout=0.5, dtype=np.float32)
    model = LSTM(**case["config"], backend=fast_backend, seed=0)
    ref = LSTM(**case["config"], backend="numpy", seed=0)
    out, _ = model.forward(case["x"], training=False)
    ref_out, _ = ref.forward(case["x"], training=False)
    assert_close(model.backend.to_numpy(out), ref_out, np.float32)
    with pytest.raises(RuntimeError, match="forward"):
        model.backward(case["d_outputs"])


def test_to_backend_moves_parameters(fast_backend):
    case = make_case(T=4, B=3, I=2, H=3, num_layers=2, bidirectional=True, dtype=np.float64)
    model = LSTM(**case["config"], backend=fast_backend, seed=2)
    out, _ = model.forward(case["x"], training=False)
    assert model.to_backend("numpy") is model and model.backend.name == "numpy"
    ref_out, _ = model.forward(case["x"], training=False)
    np.testing.assert_allclose(model.backend.to_numpy(ref_out), np.asarray(out), atol=1e-12)


def _saved(cache, name):
    """A saved activation by its glossary name, from any backend's opaque cache."""
    return cache[name] if isinstance(cache, dict) else getattr(cache.bufs, name)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_saved_activations_share_one_vocabulary(fast_backend, reverse):
    """gates and c_prev (base.py's glossary) hold the same values in every backend: the
    activated gates (zero at inactive steps) and the cell state entering each step."""
    inputs = layer_inputs(T=5, B=4, I=3, H=6)
    lengths = np.array([5, 1, 3, 4])
    ref = get_backend("numpy").layer_forward(**inputs, lengths=lengths, reverse=reverse, keep=True)[3]
    backend = get_backend(fast_backend)
    cache = backend.layer_forward(**{k: backend.asarray(v) for k, v in inputs.items()},
                                  lengths=lengths, reverse=reverse, keep=True)[3]
    for name in ("gates", "c_prev"):
        assert_close(backend.to_numpy(_saved(cache, name)), ref[name], np.float64, err_msg=name)
    T = 5
    inactive = np.arange(T)[:, None] >= lengths[None, :]
    assert not backend.to_numpy(_saved(cache, "gates"))[inactive].any()


@pytest.mark.parametrize("B", [1, 2, 7])
def test_prepared_weights_give_the_same_outputs(fast_backend, B, monkeypatch):
    """forward(..., prepared=lstm.prepare()) against the plain call, every variant the cpu
    backend picks by batch (hidden split at B=1..2 on two threads, hoisted, fused), and
    refused once the parameters are replaced or for training."""
    backend = get_backend(fast_backend)
    for fuse in ([1, 10**9] if backend.name == "cpu" else [None]):
        if fuse is not None:
            monkeypatch.setattr(backend, "fuse_from_rows", fuse)
        case = make_case(T=6, B=B, I=5, H=64, num_layers=2, bidirectional=True,
                         lengths=[6, 1, 4, 6, 2, 5, 3][:B], dtype=np.float32, seed=B)
        model = LSTM(**case["config"], backend=backend, seed=3)
        want, (want_h, want_c) = model.forward(case["x"], case["lengths"], training=False)
        prepared = model.prepare()
        for _ in range(2):                                   # the packs are made once, then reused
            got, (got_h, got_c) = model.forward(case["x"], case["lengths"], training=False,
                                                prepared=prepared)
            for a, b in ((got, want), (got_h, want_h), (got_c, want_c)):
                np.testing.assert_array_equal(model.backend.to_numpy(a), model.backend.to_numpy(b))
    with pytest.raises(ValueError, match="inference"):
        model.forward(case["x"], case["lengths"], training=True, prepared=prepared)
    model.load_state_dict(model.state_dict())
    with pytest.raises(CallOrderError, match="prepare\\(\\) again"):
        model.forward(case["x"], case["lengths"], training=False, prepared=prepared)
