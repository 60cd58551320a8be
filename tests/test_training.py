"""Optimizers, clipping, schedules, the trainer loop and its callbacks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lstm_engine.batching import Encoded, bucket_batches, collate
from lstm_engine.callbacks import Checkpointer, EarlyStopping
from lstm_engine.checkpoint import load_checkpoint
from lstm_engine.classifier import SequenceClassifier
from lstm_engine.metrics import scores
from lstm_engine.optim import clip_grad_norm, lr_multiplier, make_optimizer
from lstm_engine.errors import TrainingDiverged
from lstm_engine.settings import TrainerSettings
from lstm_engine.trainer import Callback, Trainer


# -- optimizers against torch.optim ----------------------------------------------------------
@pytest.mark.torch
@pytest.mark.parametrize("name, options, torch_name", [
    ("sgd", dict(lr=0.1, momentum=0.9), "SGD"),
    ("sgd", dict(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.01), "SGD"),
    ("sgd", dict(lr=0.1, momentum=0.0), "SGD"),
    ("adam", dict(lr=0.01, weight_decay=0.1), "Adam"),
    ("adamw", dict(lr=0.01, weight_decay=0.1), "AdamW"),
])
def test_optimizer_matches_torch(name, options, torch_name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
    grads_seq = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(4)]
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    topt = getattr(torch.optim, torch_name)(list(tparams.values()), **options)
    opt = make_optimizer(name, **options)
    for grads in grads_seq:
        opt.step(params, {k: g.copy() for k, g in grads.items()})
        for k, p in tparams.items():
            p.grad = torch.tensor(grads[k])
        topt.step()
    for k in params:
        np.testing.assert_allclose(params[k], tparams[k].detach().numpy(), rtol=1e-12, atol=1e-12)


def test_optimizer_errors_name_the_argument():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer("rmsprop")
    with pytest.raises(ValueError, match="lr must be a positive number"):
        make_optimizer("adam", lr=-1)
    with pytest.raises(ValueError, match="momentum"):
        make_optimizer("sgd", momentum=1.5)


def test_clip_grad_norm_scales_to_the_limit():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    norm = clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(5.0)
    total = math.sqrt(sum(float((g ** 2).sum()) for g in grads.values()))
    assert total == pytest.approx(1.0, rel=1e-5)
    untouched = {"a": np.array([0.3])}
    clip_grad_norm(untouched, 1.0)
    assert untouched["a"][0] == 0.3


def test_schedules():
    assert lr_multiplier(0, 100, "constant", warmup_steps=4) == pytest.approx(0.25)
    assert lr_multiplier(3, 100, "constant", warmup_steps=4) == 1.0
    assert lr_multiplier(25, 100, "step", step_size=10, gamma=0.5) == 0.25
    assert lr_multiplier(0, 100, "cosine") == 1.0
    assert lr_multiplier(50, 100, "cosine") == pytest.approx(0.5)
    assert lr_multiplier(100, 100, "cosine", min_factor=0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="schedule must be one of"):
        lr_multiplier(0, 10, "linear")


def test_metrics_match_hand_computation():
    r = scores([0, 0, 1, 2], [0, 1, 1, 1], 3)
    assert r["accuracy"] == 0.5
    # F1: class 0 = 2/3, class 1 = 2*1/(3+1) = 0.5, class 2 = 0
    assert r["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)
    assert r["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_bucket_batches_cover_every_example_once_and_group_lengths():
    lengths = np.random.default_rng(0).integers(1, 100, 1000)
    batches = bucket_batches(lengths, 32, np.random.default_rng(1), bucket_size=10)
    flat = np.concatenate(batches)
    assert sorted(flat) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 15                       # random batches would spread ~95
    assert [list(b) for b in batches] == [list(b) for b in
                                          bucket_batches(lengths, 32, np.random.default_rng(1), bucket_size=10)]
    with pytest.raises(ValueError, match="batch_size"):
        bucket_batches(lengths, 0, None)


def test_collate_pads_time_major():
    data = Encoded([np.array([2, 3, 4]), np.array([5])], [1, 0])
    inputs, lengths, targets = collate(data, [0, 1])
    assert inputs.tolist() == [[2, 5], [3, 0], [4, 0]]
    assert lengths.tolist() == [3, 1] and targets.tolist() == [1, 0]
    with pytest.raises(ValueError, match="at least one step"):
        Encoded([np.array([], dtype=np.int64)], [0])


# -- the trainer -----------------------------------------------------------------------------
def toy_data(n=96, seed=0):
    """Class = whether token 2 or token 3 is more frequent: needs the whole sequence."""
    rng = np.random.default_rng(seed)
    items, targets = [], []
    for _ in range(n):
        seq = rng.choice([2, 3], size=rng.integers(3, 12), p=[0.8, 0.2] if rng.random() < 0.5 else [0.2, 0.8])
        items.append(seq)
        targets.append(int((seq == 3).sum() > (seq == 2).sum()))
    return Encoded(items, targets)


def toy_model(backend="numpy", seed=0):
    return SequenceClassifier(2, vocab_size=4, embedding_dim=4, hidden_size=8, pooling="mean",
                              backend=backend, seed=seed, dtype=np.float64)


def test_trainer_learns_a_toy_task():
    train, val = toy_data(), toy_data(48, seed=1)
    model = toy_model()
    trainer = Trainer(model, make_optimizer("adam", lr=0.05), TrainerSettings(epochs=8, batch_size=16))
    before = trainer.evaluate(val)["accuracy"]
    state = trainer.fit(train, val)
    assert state.epoch == 8 and len(state.history) == 8
    assert state.history[-1]["train_loss"] < state.history[0]["train_loss"]
    assert trainer.evaluate(val)["accuracy"] >= max(0.9, before)


class StopAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_batch_end(self, trainer, loss, lr):
        if trainer.state.step == self.step:
            trainer.request_stop("interrupted")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    class Poison(Callback):
        def on_epoch_end(self, trainer, record):
            trainer.model.extra["head.bias"][:] = np.nan

    model = toy_model()
    ckpt = Checkpointer(tmp_path, {"name": "toy"}, {})
    trainer = Trainer(model, make_optimizer("sgd", lr=0.1), TrainerSettings(epochs=3, batch_size=32), [ckpt, Poison()])
    with pytest.raises(TrainingDiverged, match="loss became nan"):
        trainer.fit(toy_data())
    saved = load_checkpoint(tmp_path / "last.safetensors")
    assert saved.train["state"]["epoch"] == 1
    assert all(np.isfinite(v).all() for v in saved.tensors.values())


def test_early_stopping_after_patience_epochs():
    class Flat(Callback):          # pretend validation never improves after epoch 1
        def on_epoch_end(self, trainer, record):
            trainer.state.bad_epochs = trainer.state.epoch - 1

    trainer = Trainer(toy_model(), make_optimizer("adam"), TrainerSettings(epochs=10, batch_size=32),
                      [Flat(), EarlyStopping(2)])
    state = trainer.fit(toy_data())
    assert state.stopped == "early_stopping" and state.epoch == 3
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(0)


def test_empty_training_set_is_refused():
    with pytest.raises(ValueError, match="training set is empty"):
        Trainer(toy_model(), make_optimizer("adam")).fit(Encoded([], []))
