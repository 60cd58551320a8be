"""Checkpoints: round trip, atomic writes, refusal of damaged or mismatched files, and a model
trained on one backend predicting on another."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lstm_engine.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from lstm_engine.predictor import Predictor

from helpers import FAST_BACKENDS, assert_close


def _ckpt():
    rng = np.random.default_rng(0)
    return Checkpoint(tensors={"lstm.weight_ih_l0": rng.standard_normal((8, 3)).astype(np.float32),
                               "head.bias": np.arange(3, dtype=np.float32)},
                      model={"hidden_size": 2}, task={"name": "language-id", "labels": ["de", "fr", "日本"]},
                      train={"state": {"epoch": 1}},
                      optimizer={"exp_avg": {"head.bias": np.ones(3, dtype=np.float32)}})


def test_round_trip(tmp_path):
    path = save_checkpoint(tmp_path / "sub" / "c.safetensors", _ckpt())
    back = load_checkpoint(path)
    want = _ckpt()
    assert back.tensors.keys() == want.tensors.keys()
    for k in want.tensors:
        np.testing.assert_array_equal(back.tensors[k], want.tensors[k])
    np.testing.assert_array_equal(back.optimizer["exp_avg"]["head.bias"], np.ones(3))
    assert back.task == want.task and back.model == want.model and back.train == want.train
    assert [p.name for p in path.parent.iterdir()] == ["c.safetensors"]        # no temporary left


def test_failed_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.safetensors", _ckpt())
    before = path.read_bytes()

    def broken(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", broken)
    changed = _ckpt()
    changed.tensors["head.bias"] += 1
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, changed)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


@pytest.mark.parametrize("damage, match", [
    (lambda b: b[: len(b) // 2], "truncated or corrupted"),
    (lambda b: b[:4], "truncated or corrupted"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]), "corrupted: its tensors do not match"),
    (lambda b: b"not a checkpoint at all", "truncated or corrupted"),
    (lambda b: b"", "truncated or corrupted"),
])
def test_damaged_files_are_refused(tmp_path, damage, match):
    path = save_checkpoint(tmp_path / "c.safetensors", _ckpt())
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_foreign_safetensors_and_missing_files_are_refused(tmp_path):
    from safetensors.numpy import save_file
    save_file({"w": np.zeros(2, dtype=np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not an lstm-engine checkpoint"):
        load_checkpoint(tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)


def test_tensors_that_do_not_fit_the_model_are_refused(tmp_path, lid_run):
    ckpt = load_checkpoint(lid_run / "best.safetensors")
    ckpt.tensors["head.weight"] = ckpt.tensors["head.weight"][:, :3]
    save_checkpoint(tmp_path / "bad.safetensors", ckpt)
    with pytest.raises(CheckpointError, match="do not match the stored model config"):
        Predictor.load(tmp_path / "bad.safetensors", backend="numpy")


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_a_checkpoint_predicts_the_same_on_every_backend(lid_run, backend):
    texts = ["der Hund bellt laut", "le chien aboie fort", "zzz"]
    ref = Predictor.load(lid_run, backend="numpy").predict_proba(texts)
    got = Predictor.load(lid_run, backend=backend).predict_proba(texts)
    assert_close(got, ref, np.float32)
