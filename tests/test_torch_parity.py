"""Parity with torch.nn.LSTM, weights copied both ways; packed sequences for ragged batches.
Skipped where torch is not importable (CI installs the CPU build to run it)."""

import numpy as np
import pytest

from helpers import assert_close

from lstm_engine import LSTM, backends

torch = pytest.importorskip("torch")
pack = torch.nn.utils.rnn.pack_padded_sequence
unpack = torch.nn.utils.rnn.pad_packed_sequence

BACKENDS = backends.available(include_hidden=True)
CASES = {
    "plain": dict(T=6, B=3, I=4, H=5),
    "ragged-bi-2layer": dict(T=7, B=4, I=3, H=6, num_layers=2, bidirectional=True, lengths=[7, 2, 5, 1]),
    "ragged-3layer-state": dict(T=5, B=3, I=2, H=4, num_layers=3, lengths=[3, 5, 1], state=True),
    "batch-first-bi": dict(T=4, B=2, I=3, H=3, bidirectional=True, batch_first=True, state=True),
}


def _torch_run(tm, x, lengths, state, batch_first, d_out, d_h, d_c):
    xt = torch.tensor(x, requires_grad=True)
    h0 = c0 = None
    if state is not None:
        h0 = torch.tensor(state[0], requires_grad=True)
        c0 = torch.tensor(state[1], requires_grad=True)
    inp = xt if lengths is None else pack(xt, torch.tensor(lengths), batch_first=batch_first,
                                            enforce_sorted=False)
    out, (h_n, c_n) = tm(inp, None if h0 is None else (h0, c0))
    if lengths is not None:
        out, _ = unpack(out, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0])
    loss = (out * torch.tensor(d_out)).sum() + (h_n * torch.tensor(d_h)).sum() + (c_n * torch.tensor(d_c)).sum()
    loss.backward()
    grads = {"input": xt.grad.numpy()}
    if h0 is not None:
        grads["h_0"], grads["c_0"] = h0.grad.numpy(), c0.grad.numpy()
    grads.update({n: p.grad.numpy() for n, p in tm.named_parameters()})
    return out.detach().numpy(), h_n.detach().numpy(), c_n.detach().numpy(), grads


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", CASES)
def test_matches_torch(name, backend):
    spec = CASES[name]
    T, B, I, H = spec["T"], spec["B"], spec["I"], spec["H"]
    L, bi, bf = spec.get("num_layers", 1), spec.get("bidirectional", False), spec.get("batch_first", False)
    D = 2 if bi else 1
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, I) if bf else (T, B, I))
    lengths = spec.get("lengths")
    state = None
    if spec.get("state"):
        state = (rng.standard_normal((L * D, B, H)), rng.standard_normal((L * D, B, H)))
    d_out = rng.standard_normal((B, T, D * H) if bf else (T, B, D * H))
    d_h, d_c = rng.standard_normal((2, L * D, B, H))

    torch.manual_seed(0)
    tm = torch.nn.LSTM(I, H, num_layers=L, bidirectional=bi, batch_first=bf).double()
    ours = LSTM(I, H, num_layers=L, bidirectional=bi, batch_first=bf, dtype=np.float64, backend=backend)
    ours.load_state_dict(tm.state_dict())                      # torch -> ours

    t_out, t_h, t_c, t_grads = _torch_run(tm, x, lengths, state, bf, d_out, d_h, d_c)
    out, (h_n, c_n) = ours.forward(x, lengths=lengths, initial_state=state)
    g = ours.backward(d_out, d_h, d_c)
    to_np = ours.backend.to_numpy
    f64 = np.float64
    assert_close(to_np(out), t_out, f64, "torch")
    assert_close(to_np(h_n), t_h, f64, "torch")
    assert_close(to_np(c_n), t_c, f64, "torch")
    assert_close(to_np(g.input), t_grads["input"], f64, "torch")
    if state is not None:
        assert_close(to_np(g.h_0), t_grads["h_0"], f64, "torch")
        assert_close(to_np(g.c_0), t_grads["c_0"], f64, "torch")
    for n, grad in g.params.items():
        assert_close(to_np(grad), t_grads[n], f64, "torch", err_msg=n)


def test_weights_move_from_ours_to_torch():
    ours = LSTM(3, 4, num_layers=2, bidirectional=True, dtype=np.float32, backend="numpy", seed=3)
    tm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})  # strict
    x = np.random.default_rng(1).standard_normal((5, 2, 3)).astype(np.float32)
    out, _ = ours.forward(x, training=False)
    with torch.no_grad():
        t_out, _ = tm(torch.from_numpy(x))
    assert_close(out, t_out.numpy(), np.float32, "torch")
    assert list(ours.state_dict()) == list(tm.state_dict())    # same names, same order
