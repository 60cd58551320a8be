"""Checkpoints: safetensors files with torch-style tensor names and JSON metadata.

Tensors: the model's parameters by name (``lstm.weight_ih_l0``, ``head.weight``...) and the
optimizer's slots as ``optimizer.<slot>.<parameter>``. Metadata (strings, as safetensors
wants): ``format``, ``model`` (the model config), ``task`` (task name, vocabulary or feature
spec, labels, data options), ``train`` (step, epoch, RNG state, optimizer settings, history)
and ``sha256`` of the tensors, because safetensors checks the header but not the payload;
``metadata_sha256`` of the metadata strings, so that a flipped byte in a label or a setting is
caught too (files written before it existed are checked on their tensors only).
safetensors holds only arrays and strings, so nothing is executed on load; it refuses a header
whose declared shapes or offsets do not fit the file before allocating anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CheckpointError, WriteError

FORMAT = "lstm-engine-checkpoint/1"
OPT_PREFIX = "optimizer."


@dataclass
class Checkpoint:
    tensors: dict[str, np.ndarray]                  # model parameters by name
    model: dict                                     # SequenceClassifier config
    task: dict                                      # {"name", "encoder", "labels", "data"}
    train: dict = field(default_factory=dict)       # trainer state, optimizer settings
    optimizer: dict = field(default_factory=dict)   # slot -> parameter name -> array


def _digest(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a)
    return h.hexdigest()


#: The metadata entries ``metadata_sha256`` covers, in this order.
_HASHED_METADATA = ("format", "model", "task", "train", "sha256")


def _metadata_digest(metadata: dict) -> str:
    h = hashlib.sha256()
    for key in _HASHED_METADATA:
        value = metadata.get(key, "")
        h.update(f"{key}|{len(value)}|".encode())
        h.update(value.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def save_checkpoint(path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``path`` atomically (``atomic_write``)."""
    from safetensors.numpy import save

    tensors = {k: np.ascontiguousarray(v) for k, v in ckpt.tensors.items()}
    for slot, table in ckpt.optimizer.items():
        for name, value in table.items():
            tensors[f"{OPT_PREFIX}{slot}.{name}"] = np.ascontiguousarray(value)
    metadata = {
        "format": FORMAT,
        "model": json.dumps(ckpt.model),
        "task": json.dumps(ckpt.task, ensure_ascii=False),
        "train": json.dumps(ckpt.train),
        "sha256": _digest(tensors),
    }
    metadata["metadata_sha256"] = _metadata_digest(metadata)
    return atomic_write(path, save(tensors, metadata=metadata))


def atomic_write(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync, then
    rename over ``path`` (and fsync the folder, so the rename survives a power cut), so a
    crash leaves the previous file whole. A write that fails (disk full, a file size limit,
    no permission) is a WriteError naming the file; the temporary file is removed."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o666 & ~_umask())              # mkstemp's 0600 is not what a user expects
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_folder(path.parent)
    except OSError as e:
        raise WriteError(f"could not write {path}: {e.strerror or e}"
                         + ("; the previous file is unchanged" if path.exists() else "")) from e
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:                                   # not possible on every system
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_checkpoint(path) -> Checkpoint:
    """Read and verify a checkpoint; any problem is a CheckpointError naming the file."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; pass the checkpoint file inside it "
                              f"(e.g. {path / 'checkpoint.safetensors'})")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from e
    try:
        tensors = load(raw)
        metadata = _metadata(raw)
    except (SafetensorError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint "
                              f"(truncated or corrupted?): {e}") from e
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an lstm-engine checkpoint (format "
                              f"{metadata.get('format')!r}, expected {FORMAT!r})")
    if "metadata_sha256" in metadata and _metadata_digest(metadata) != metadata["metadata_sha256"]:
        raise CheckpointError(f"{path} is corrupted: its metadata does not match the stored metadata_sha256")
    if _digest(tensors) != metadata.get("sha256"):
        raise CheckpointError(f"{path} is corrupted: its tensors do not match the stored sha256")
    try:
        model, task, train = (json.loads(metadata[k]) for k in ("model", "task", "train"))
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} has unreadable metadata: {e}") from e
    if not all(isinstance(v, dict) for v in (model, task, train)):
        raise CheckpointError(f"{path} has unreadable metadata: model, task and train must be JSON objects")
    params, optimizer = {}, {}
    for name, value in tensors.items():
        if name.startswith(OPT_PREFIX):
            slot, _, pname = name[len(OPT_PREFIX):].partition(".")
            optimizer.setdefault(slot, {})[pname] = value
        else:
            params[name] = value
    return Checkpoint(params, model, task, train, optimizer)


def _metadata(raw: bytes) -> dict:
    """The header's ``__metadata__`` (safetensors.numpy.load drops it)."""
    if len(raw) < 8:
        raise ValueError("file shorter than the 8-byte header length")
    n = int.from_bytes(raw[:8], "little")
    if n > len(raw) - 8:
        raise ValueError("header length runs past the end of the file")
    return json.loads(raw[8:8 + n]).get("__metadata__") or {}
