"""The `cpu` backend's compiled layers around the LSTM stack, Adam update and gradients' squared
norm (backends/cpu_layers.py) against engine/layers.py's and engine/optim.py's NumPy code, in one run.

    python benchmarks/layer_kernels.py           # writes results/layer_kernels.json
    python benchmarks/layer_kernels.py --quick --out /tmp/l.json      # a smoke test

- step: a whole training step of the default language-id classifier (forward, loss, backward,
  gradient clipping, Adam) at the T of its longest training batches and of a middle one,
  with the compiled max over steps, n-gram embedding sum, embedding gradient, Adam update and
  gradients' squared norm, with the NumPy code, and with the compiled kernels but the float32 sum of squares
  that clipping used before the compiled one; the three are timed in alternation, so a change
  of the machine's load hits all;
- kernels: each alone, compiled and NumPy, at the same shapes (the n-gram sum: the table's
  rows of 3 orders per step; Adam and the squared norm: every parameter of the model, its
  n-gram table included).
Timings are medians after warm-up, with their spread (a step's range over the repeats, a
kernel's fastest call) (lstm_engine.bench.time_call); the compiled kernels were
loaded (compiled or read from Numba's cache) before any timing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import types
from pathlib import Path

import numpy as np

from lstm_engine.bench import machine_facts, time_call, write_results

RESULTS = Path(__file__).parent / "results"

#: The default language-id model (engine/tasks/language_id.py DEFAULTS), with the vocabulary
#: and classes of its default corpus, and a batch of 128 at train_length 64 and at 24.
MODEL = {"num_classes": 106, "vocab_size": 900, "embedding_dim": 48, "hidden_size": 128,
         "bidirectional": True, "pooling": "max", "dropout": 0.1, "ngram_buckets": 131072, "ngram_order": 4}
KERNELS = ("max_over_steps", "embedding_sum", "embedding_grad", "adam_update", "sum_of_squares")
BATCH = 128
STEPS = (64, 24)


def _patched(backend, compiled: bool):
    """The backend with its compiled kernels, or with the base class's NumPy code instead."""
    from lstm_engine.backends.base import Backend
    for name in KERNELS:
        if compiled:
            backend.__dict__.pop(name, None)
        else:
            setattr(backend, name, types.MethodType(getattr(Backend, name), backend))
    return backend


def step_times(T: int, B: int, model_config: dict, repeat: int) -> dict:
    from lstm_engine.classifier import SequenceClassifier
    from lstm_engine.optim import Adam, clip_grad_norm
    model = SequenceClassifier(**model_config, backend="cpu", seed=0)
    backend, optimizer = model.backend, Adam(1e-2)
    rng = np.random.default_rng(T)
    tokens = rng.integers(1, model_config["vocab_size"], (T, B))
    lengths = np.sort(rng.integers(max(1, T // 2), T + 1, B))[::-1].copy()
    lengths[0] = T
    targets = rng.integers(0, model_config["num_classes"], B)

    def step():
        logits = model.forward(tokens, lengths, training=True)
        _, d_logits = model.loss(logits, targets)
        grads = model.backward(d_logits)
        clip_grad_norm(grads, 1.0, backend)
        optimizer.step(model.parameters(), grads, backend=backend)

    # compiled, NumPy, and compiled but for the float32 sum of squares clipping used before
    # cpu_layers.sum_of_squares (what that kernel alone saves)
    modes = ("compiled", "numpy", "float32_norm")
    times = {mode: [] for mode in modes}
    # one session around every step, as the trainer has (the cpu backend reuses a step's
    # arrays for the next one there)
    try:
        with backend.session():
            for _ in range(repeat):
                for mode in modes:
                    _patched(backend, mode != "numpy")
                    if mode == "float32_norm":
                        backend.sum_of_squares = _float32_sum_of_squares
                    times[mode].append(time_call(step, 2, 5)["median_ms"])
    finally:
        _patched(backend, True)
    median = {mode: statistics.median(times[mode]) for mode in modes}
    # the spread: the lowest and highest of the `repeat` medians of each
    return {"T": T, "B": B, "compiled_ms": median["compiled"], "numpy_ms": median["numpy"],
            "compiled_range_ms": [min(times["compiled"]), max(times["compiled"])],
            "numpy_range_ms": [min(times["numpy"]), max(times["numpy"])],
            "numpy_over_compiled": median["numpy"] / median["compiled"],
            "float32_norm_ms": median["float32_norm"],
            "float32_norm_range_ms": [min(times["float32_norm"]), max(times["float32_norm"])]}


def _float32_sum_of_squares(a):
    return np.asarray((a * a).sum(), dtype=np.float64)


def kernel_times(T: int, B: int, model_config: dict, repeat: int) -> dict:
    from lstm_engine.backends import get_backend
    from lstm_engine.classifier import SequenceClassifier
    from lstm_engine.optim import Adam
    cpu, ref = get_backend("cpu"), get_backend("numpy")
    params = SequenceClassifier(**model_config, backend="numpy", seed=0).parameters()
    grads = {k: np.full_like(v, 1e-3) for k, v in params.items()}
    adam = Adam(1e-2)
    rng = np.random.default_rng(T)
    F = 2 * model_config["hidden_size"] if model_config["bidirectional"] else model_config["hidden_size"]
    outputs = rng.standard_normal((T, B, F)).astype(np.float32)
    lengths = rng.integers(1, T + 1, B)
    E, V = model_config["embedding_dim"], model_config["vocab_size"]
    weight = np.zeros((V, E), np.float32)
    tokens, d_out = rng.integers(1, V, T * B), rng.standard_normal((T * B, E)).astype(np.float32)
    row = {"T": T, "B": B}
    ngram_ids = rng.integers(0, model_config["ngram_buckets"], (model_config["ngram_order"] - 1, T, B))
    for name, call in (("max_over_steps", lambda b: b.max_over_steps(outputs, lengths)),
                       ("embedding_sum", lambda b: b.embedding_sum(params["ngram.weight"], ngram_ids)),
                       ("embedding_grad", lambda b: b.embedding_grad(weight, tokens, d_out)),
                       ("adam_update", lambda b: adam.step(params, grads, backend=b)),
                       ("sum_of_squares", lambda b: [b.sum_of_squares(g) for g in grads.values()])):
        compiled = time_call(lambda call=call: call(cpu), 3, repeat)
        numpy_ = time_call(lambda call=call: call(ref), 3, repeat)
        row[name] = {"compiled_ms": compiled["median_ms"], "numpy_ms": numpy_["median_ms"],
                     "compiled_min_ms": compiled["min_ms"], "numpy_min_ms": numpy_["min_ms"]}
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="a tiny model and one repeat")
    parser.add_argument("--out", type=Path, default=RESULTS / "layer_kernels.json")
    args = parser.parse_args(argv)
    model_config, batch, steps = MODEL, BATCH, STEPS
    if args.quick:
        model_config = {**MODEL, "num_classes": 3, "vocab_size": 11, "embedding_dim": 4, "hidden_size": 8,
                        "ngram_buckets": 13}
        batch, steps, args.repeat = 5, (3,), 1
    result = {"machine": machine_facts(), "model": model_config,
              "step": [step_times(T, batch, model_config, args.repeat) for T in steps],
              "kernels": [kernel_times(T, batch, model_config, args.repeat) for T in steps]}
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    write_results(result, args.out)
    return result


if __name__ == "__main__":
    main()
