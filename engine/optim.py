"""Optimizers (by name), global-norm gradient clipping and learning-rate schedules.

Optimizers follow ``torch.optim``'s update rules and hyperparameter names, update the model's
arrays in place, and keep their state as name -> array so a checkpoint can hold it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import ArgumentError


class Optimizer:
    name = "?"
    #: torch.optim's default for this optimizer; settings.resolve records it in a run's config.
    default_weight_decay = 0.0

    def __init__(self, lr: float, weight_decay: float = 0.0):
        if not isinstance(lr, (int, float)) or not lr > 0:
            raise ArgumentError(f"lr must be a positive number, got {lr!r}")
        if not isinstance(weight_decay, (int, float)) or weight_decay < 0:
            raise ArgumentError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.steps = 0
        self.state: dict[str, dict[str, Any]] = {}     # slot name -> param name -> array

    def step(self, params: dict, grads: dict, lr: float | None = None, backend=None) -> None:
        """Update every parameter in ``params`` in place from ``grads`` (same names). With
        the arrays' ``backend``, an update it compiles runs instead of the array code
        (``Backend.adam_update``)."""
        self.steps += 1
        lr = self.lr if lr is None else lr
        for name, p in params.items():
            self._update(name, p, grads[name], lr, backend)

    def _slot(self, slot: str, name: str, like):
        table = self.state.setdefault(slot, {})
        if name not in table:
            table[name] = like * 0
        return table[name]

    def hyperparameters(self) -> dict:
        return {"lr": self.lr, "weight_decay": self.weight_decay}


class SGD(Optimizer):
    """torch.optim.SGD: v = momentum*v + g (+ weight decay), p -= lr*v (Nesterov optional)."""
    name = "sgd"

    def __init__(self, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(lr, weight_decay)
        if not 0.0 <= momentum < 1.0:
            raise ArgumentError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def _update(self, name, p, g, lr, backend):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            v = self._slot("momentum_buffer", name, p)
            v *= self.momentum
            v += g
            g = g + self.momentum * v if self.nesterov else v
        p -= lr * g

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay added to the gradient)."""
    name = "adam"
    decoupled = False

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ArgumentError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.betas, self.eps = (float(betas[0]), float(betas[1])), float(eps)

    def _update(self, name, p, g, lr, backend):
        m = self._slot("exp_avg", name, p)
        v = self._slot("exp_avg_sq", name, p)
        rule = adam_update if backend is None else backend.adam_update
        rule(p, g, m, v, lr=lr, betas=self.betas, eps=self.eps, step=self.steps,
             weight_decay=self.weight_decay, decoupled=self.decoupled)

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "betas": list(self.betas), "eps": self.eps}


def adam_update(p, g, m, v, *, lr: float, betas: tuple, eps: float, step: int, weight_decay: float,
                decoupled: bool) -> None:
    """One Adam step of parameter ``p`` in place, with its moments ``m`` and ``v`` (arrays of
    p's shape) from gradient ``g``, at 1-based ``step``: torch.optim.Adam's rule, or AdamW's
    when ``decoupled``. The reference; a backend may compile it (``Backend.adam_update``)."""
    b1, b2 = betas
    if weight_decay:
        if decoupled:
            p *= 1.0 - lr * weight_decay
        else:
            g = g + weight_decay * p
    # one scratch array instead of a temporary per operation (same operations, same order)
    tmp = g * (1.0 - b1)
    m *= b1
    m += tmp
    np.multiply(g, g, out=tmp)
    tmp *= 1.0 - b2
    v *= b2
    v += tmp
    np.divide(v, 1.0 - b2 ** step, out=tmp)
    tmp **= 0.5
    tmp += eps
    np.divide(m, tmp, out=tmp)
    tmp *= lr / (1.0 - b1 ** step)
    p -= tmp


class AdamW(Adam):
    """torch.optim.AdamW: decoupled weight decay (default 0.01, as in PyTorch)."""
    name = "adamw"
    decoupled = True
    default_weight_decay = 0.01

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = default_weight_decay):
        super().__init__(lr, betas, eps, weight_decay)


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam, AdamW)}


def make_optimizer(name: str, lr: float | None = None, **options) -> Optimizer:
    """An optimizer by name (``sgd``, ``adam``, ``adamw``); ``lr=None`` keeps its default."""
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise ArgumentError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    if lr is not None:
        options["lr"] = lr
    return OPTIMIZERS[key](**options)


def optimizer_from(settings) -> Optimizer:
    """The optimizer a run's ``OptimizerSettings`` describe, every hyperparameter passed
    explicitly (the weight decay is already resolved), so what config.json records runs."""
    options = {"lr": settings.lr, "weight_decay": settings.weight_decay}
    if settings.optimizer == "sgd":
        options["momentum"] = settings.momentum
    return make_optimizer(settings.optimizer, **options)


def sum_of_squares(xp, a):
    """The sum of ``a``'s elements squared in float64, as a 0-d array of ``xp`` (on the
    device). The reference; a backend may compile it (``Backend.sum_of_squares``)."""
    return xp.square(a, dtype=xp.float64).sum()


def clip_grad_norm(grads: dict, max_norm: float | None, backend=None) -> float:
    """Scale all gradients in place so their global L2 norm is at most ``max_norm``
    (``torch.nn.utils.clip_grad_norm_``); returns the norm before clipping. ``backend`` (the
    gradients' backend; None: NumPy arrays) sums each array's squares."""
    squares = backend.sum_of_squares if backend is not None else (lambda a: sum_of_squares(np, a))
    # summed on the device, then one transfer (one sync on a GPU, not one per array)
    total = math.sqrt(float(sum(squares(g) for g in grads.values())))
    if max_norm is not None and math.isfinite(total) and total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads.values():
            g *= scale
    return total


# -- learning-rate schedules: step -> multiplier of the base lr -----------------------------
SCHEDULES = ("constant", "step", "cosine")


def lr_multiplier(step: int, total_steps: int, schedule: str = "constant", warmup_steps: int = 0,
                  step_size: int = 1000, gamma: float = 0.5, min_factor: float = 0.0) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    ``warmup_steps`` ramps linearly from 1/warmup to 1 first; then ``constant`` keeps 1,
    ``step`` multiplies by ``gamma`` every ``step_size`` steps (StepLR), ``cosine`` anneals to
    ``min_factor`` at ``total_steps`` (CosineAnnealingLR).
    """
    if schedule not in SCHEDULES:
        raise ArgumentError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    s = step - warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return gamma ** (s // max(1, step_size))
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, s / span)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
