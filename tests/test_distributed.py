"""Data-parallel training and sharded inference (engine/distributed.py).

Without a launcher: the shares of a batch reproduce the whole batch (dropout included), the
launcher detection, the thread and communicator choices, and that ordinary use never imports
mpi4py. With ``mpiexec -n 2`` (the venv's, from the `mpi` extra; skipped without it): two
ranks train exactly as one process, write each file once, resume across world sizes, shard
evaluate/predict, and end together when one rank fails or the replicas drift.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lstm_engine import distributed
from lstm_engine.batching import Encoded, collate
from lstm_engine.classifier import SequenceClassifier
from lstm_engine.errors import ConfigError, DistributedError, MissingDependencyError
from lstm_engine.layers import RowWindow, window_uniforms
from lstm_engine.objectives import CLASSIFICATION, CTC

sys.path.insert(0, str(Path(__file__).parent))
import mpi_worker  # noqa: E402 (after the path it is imported from)

WORKER = str(Path(__file__).with_name("mpi_worker.py"))
MPIEXEC = Path(sys.executable).parent / "mpiexec"
needs_mpi = pytest.mark.skipif(not MPIEXEC.exists() or importlib.util.find_spec("mpi4py") is None,
                               reason="needs mpi4py and the venv's mpiexec: pip install 'lstm-engine[mpi]'")
#: float32 parameters of two ranks and of one process differ by the rounding of their sums,
#: which a few dozen Adam steps carry along, most where a gradient is near zero (Adam divides
#: by its running size): one n-gram value of a million differed by 2.4e-5 after 5 steps once
#: the shares were cut by length; float64 agrees to ~1e-15.
FLOAT32_ATOL = 5e-5
LAUNCHER_ENV = [name for name, _ in distributed.LAUNCHER_VARIABLES] + ["SLURM_PROCID", distributed.MODE_ENV]


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV and not k.startswith("PMI_")}
    env.pop("NUMBA_NUM_THREADS", None)
    return env


def mpirun(*args, ranks=2, timeout=120, stdin=None):
    """``mpiexec -n ranks`` of the venv's python (absolute paths) or of its lstm-engine."""
    started = time.perf_counter()
    proc = subprocess.run([str(MPIEXEC), "-n", str(ranks), *args], check=False, capture_output=True, text=True,
                          timeout=timeout, env=_clean_env(), input=stdin)
    proc.seconds = time.perf_counter() - started
    return proc


# -- the exactness of shares, in one process ------------------------------------------------------
@pytest.mark.parametrize("bits", [np.random.PCG64, np.random.MT19937])
@pytest.mark.parametrize("shape,window", [((3, 2, 4), RowWindow(1, 5, 6)), ((6, 5, 4), RowWindow(0, 5, 6)),
                                          ((4, 5), RowWindow(3, 7, 9)), ((1, 1, 3), RowWindow(4, 5, 1))])
def test_window_draws_are_the_whole_batch_draws(bits, shape, window):
    whole_rng, share_rng = np.random.Generator(bits(7)), np.random.Generator(bits(7))
    if len(shape) == 3:
        T, B, F = shape
        whole = whole_rng.random((window.steps, window.rows, F))[:T, window.start:window.start + B]
    else:
        B, F = shape
        whole = whole_rng.random((window.rows, F))[window.start:window.start + B]
    np.testing.assert_array_equal(window_uniforms(share_rng, shape, window), whole)
    np.testing.assert_array_equal(share_rng.random(5), whole_rng.random(5))    # left where the whole leaves it


def test_a_window_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        window_uniforms(np.random.default_rng(0), (3, 4, 2), RowWindow(2, 5, 3))
    with pytest.raises(ValueError, match="does not fit"):
        window_uniforms(np.random.default_rng(0), (4, 4, 2), RowWindow(0, 5, 3))


def _batch(B, T_max, per_step, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, T_max + 1, size=B)
    lengths[rng.integers(B)] = T_max
    tokens = np.zeros((T_max, B), dtype=np.int64)
    for b, n in enumerate(lengths):
        tokens[:n, b] = rng.integers(1, 9, size=n)
    targets = rng.integers(0, 3, size=(T_max, B) if per_step else B)
    return tokens, lengths, targets


def _shared_batch(per_step: bool, ctc: bool) -> Encoded:
    """10 ragged token sequences: with a class each, a class per step, or (ctc) a label
    sequence each."""
    if ctc:
        return mpi_worker.make_ctc_data(10, seed=4)
    tokens, lengths, targets = _batch(10, 7, per_step)
    return Encoded([tokens[:n, b] for b, n in enumerate(lengths)],
                   [targets[:n, b] if per_step else int(targets[b]) for b, n in enumerate(lengths)])


@pytest.mark.parametrize("pooling,per_step,objective", [("max", False, CLASSIFICATION), ("mean", False, CLASSIFICATION),
                                                        ("last", False, CLASSIFICATION), ("last", True, CLASSIFICATION),
                                                        ("last", True, CTC())])
@pytest.mark.parametrize("balanced", [False, True])
def test_shares_with_windows_reproduce_the_whole_batch(pooling, per_step, objective, balanced):
    """Three shares of a batch (each padded only to its own longest sequence), with dropout
    between layers and before the head, weighted by the objective's loss weight (rows for a
    classifier and for CTC, whose mean divides each sequence's loss by its target length and
    averages over the sequences; valid steps for a tagger's cross-entropy), give the whole
    batch's loss and gradients, and leave the generator where the whole batch leaves it."""
    ctc = objective.name == "ctc"
    config = dict(vocab_size=9, embedding_dim=5, hidden_size=4, num_layers=2, bidirectional=True, dropout=0.4,
                  pooling=pooling, per_step=per_step, dtype=np.float64, backend="numpy")
    data = _shared_batch(per_step, ctc)
    tokens, lengths, targets = collate(data, np.arange(10))
    whole = SequenceClassifier(4 if ctc else 3, seed=1, **config)
    loss, d = objective.loss(whole, whole.forward(tokens, lengths, training=True), targets, lengths)
    want = whole.backward(d)

    part = SequenceClassifier(4 if ctc else 3, seed=1, **config)   # one model plays the three ranks,
    start = part.rng.bit_generator.state                         # each starting from the same generator
    total = objective.loss_weight(part, lengths)
    weights = lengths if balanced else None            # shares cut by rows, or by their steps
    got_loss, got = 0.0, {k: 0.0 for k in want}
    for lo, hi in [distributed.share_bounds(10, 3, r, weights) for r in range(3)]:
        part.rng.bit_generator.state = start
        rows_tokens, rows_lengths, rows_targets = collate(data, np.arange(lo, hi))
        window = RowWindow(lo, 10, int(lengths.max()))
        share_loss, share_d = objective.loss(part, part.forward(rows_tokens, rows_lengths, training=True, window=window),
                                             rows_targets, rows_lengths)
        fraction = objective.loss_weight(part, rows_lengths) / total
        got_loss += fraction * share_loss
        for k, g in part.backward(share_d).items():
            got[k] = got[k] + fraction * g
    assert got_loss == pytest.approx(loss, rel=1e-12)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-13, err_msg=k)
    assert part.rng.bit_generator.state == whole.rng.bit_generator.state


def test_share_bounds_cover_the_batch_in_balanced_contiguous_shares():
    rng = np.random.default_rng(4)
    for n in range(12):
        for size in range(1, 5):
            bounds = [distributed.share_bounds(n, size, r) for r in range(size)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            sizes = [hi - lo for lo, hi in bounds]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
            # weighted by the rows' lengths: each cut nearest its part of the total, no share empty
            for weights in (rng.integers(1, 65, n), np.sort(rng.integers(1, 65, n)), np.ones(n, int)):
                cut = [distributed.share_bounds(n, size, r, weights) for r in range(size)]
                assert cut[0][0] == 0 and cut[-1][1] == n
                assert all(a[1] == b[0] for a, b in zip(cut, cut[1:]))
                if n < size:
                    assert cut == bounds
                    continue
                assert all(hi > lo for lo, hi in cut)
                running = np.concatenate([[0], np.cumsum(weights)])
                for k, (lo, _) in enumerate(cut[1:], start=1):
                    allowed = range(k, n - size + k + 1)
                    best = min(abs(running[i] - running[-1] * k / size) for i in allowed)
                    assert abs(running[lo] - running[-1] * k / size) == best
    # a long row on one side moves the cut: 4 rows of lengths 10, 1, 1, 1 split 1 + 3
    assert [distributed.share_bounds(4, 2, r, [10, 1, 1, 1]) for r in range(2)] == [(0, 1), (1, 4)]


def test_data_parallel_shares_follow_balance_lengths(monkeypatch):
    """DataParallel.share cuts by the rows' lengths (balance_lengths) or by rows (switched off)."""
    from lstm_engine.classifier import SequenceClassifier
    from lstm_engine.optim import make_optimizer
    model = SequenceClassifier(3, vocab_size=9, embedding_dim=3, hidden_size=2, backend="numpy", seed=0)
    lengths = np.array([30, 2, 2, 2, 2, 2])
    idx = np.arange(6)
    for balance, want in ((True, [(0, 1), (1, 6)]), (False, [(0, 3), (3, 6)])):
        monkeypatch.setattr(distributed.DataParallel, "balance_lengths", balance)
        got = []
        for rank in range(2):
            comm = distributed.SingleProcess()
            comm.rank, comm.size = rank, 2
            rows, window = distributed.DataParallel(comm, model, make_optimizer("adam", lr=0.1)).share(idx, lengths)
            got.append((int(rows[0]), int(rows[-1]) + 1))
            assert (window.start, window.rows, window.steps) == (got[-1][0], 6, 30)
        assert got == want


# -- choosing the world, threads and communicator ---------------------------------------------------
@pytest.mark.parametrize("env,expected", [
    ({}, None),
    ({"PMI_SIZE": "4", "PMI_RANK": "1"}, (4, "PMI_SIZE")),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, (2, "OMPI_COMM_WORLD_SIZE")),
    ({"MV2_COMM_WORLD_SIZE": "8"}, (8, "MV2_COMM_WORLD_SIZE")),
    ({"SLURM_STEP_NUM_TASKS": "16", "SLURM_PROCID": "3"}, (16, "SLURM_STEP_NUM_TASKS")),
    ({"SLURM_NTASKS": "16", "SLURM_STEP_NUM_TASKS": "16"}, None),      # a batch script, not a task of srun
])
def test_launcher_detection(env, expected):
    assert distributed.launcher_world_size(env) == expected


def test_bad_settings_of_the_world_name_what_is_allowed(monkeypatch):
    with pytest.raises(ConfigError, match="LSTM_ENGINE_DISTRIBUTED must be one of auto, mpi, nccl, off"):
        distributed.mode_from_env({distributed.MODE_ENV: "gloo"})
    with pytest.raises(DistributedError, match="PMI_SIZE='two'"):
        distributed.launcher_world_size({"PMI_SIZE": "two"})


def test_a_launcher_without_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.delenv(distributed.MODE_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "mpi4py", None)              # not importable
    with pytest.raises(MissingDependencyError, match=r'PMI_SIZE=2\).*pip install "lstm-engine\[mpi\]"'):
        distributed._make_world()


def test_import_and_single_process_runs_never_import_mpi4py(tmp_path, lid_tsv):
    code = ("import sys; from lstm_engine import runs, distributed; "
            f"s = runs.run('language-id', {{'data': {str(lid_tsv)!r}, 'epochs': 1, 'hidden_size': 4, "
            "'embedding_dim': 4, 'batch_size': 64}, sys.argv[1], backend='numpy', test=False, progress=False); "
            "assert distributed.world().size == 1 and 'distributed' not in s; "
            "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], check=False, capture_output=True, text=True,
                          env=_clean_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr


class _FakeComm(distributed.Communicator):
    """A rank of a made-up world whose allgather answers ``everyone``."""

    def __init__(self, rank, everyone):
        self.rank, self.size, self._everyone = rank, len(everyone), everyone

    def allgather_object(self, obj):
        return self._everyone


def test_cores_per_rank_follow_the_cpu_sets_ranks_share(monkeypatch):
    host = distributed.socket.gethostname()
    all8 = list(range(8))
    monkeypatch.setattr(distributed, "_cpu_set", lambda: frozenset(all8))
    comm = _FakeComm(1, [(host, all8)] * 4 + [("other", all8)] * 4)      # unbound: 4 ranks share 8 cores
    comm._learn_layout()
    assert (comm.local_rank, comm.local_size, comm.cores) == (1, 4, 2)
    monkeypatch.setattr(distributed, "_cpu_set", lambda: frozenset([4, 5, 6, 7]))
    comm = _FakeComm(1, [(host, [0, 1, 2, 3]), (host, [4, 5, 6, 7])])      # a socket each
    comm._learn_layout()
    assert (comm.local_rank, comm.local_size, comm.cores) == (1, 2, 4)


def test_communicator_for_a_backend(monkeypatch):
    from lstm_engine import get_backend
    numpy_backend = get_backend("numpy")
    two = _FakeComm(0, [None, None])
    one = distributed.SingleProcess()
    assert distributed.for_backend(two, numpy_backend, "auto") is two        # host arrays: MPI
    assert distributed.for_backend(one, numpy_backend, "auto") is one
    with pytest.raises(ConfigError, match="nccl averages gradients on GPUs: it needs the cuda backend"):
        distributed.for_backend(two, numpy_backend, "nccl")


def test_nccl_without_cupy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(MissingDependencyError, match=r"lstm-engine\[nccl\]"):
        distributed.NcclCommunicator(distributed.SingleProcess())


def test_nccl_without_a_gpu_says_so(monkeypatch):
    """What a machine with CuPy and NCCL but no usable GPU gets (CuPy's device calls raise
    there, as cupy-cuda12x does on this CPU-only machine)."""
    import types

    def no_driver():
        raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")
    nccl = types.SimpleNamespace(available=True)
    cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_driver), nccl=nccl)
    cupy = types.ModuleType("cupy")
    cupy.cuda = cuda
    cupy_cuda = types.ModuleType("cupy.cuda")
    cupy_cuda.nccl = nccl
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cupy_cuda)
    monkeypatch.setattr(distributed, "require", lambda *a: cupy)
    with pytest.raises(DistributedError, match="NCCL needs a CUDA GPU, and none is usable here.*InsufficientDriver"):
        distributed.NcclCommunicator(distributed.SingleProcess())


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_gradient_rows_hold_every_nonzero_row_of_the_tables(backend):
    """What DataParallel gathers of a table: the rows the batch looked up (padding included),
    which hold every nonzero row of the table's gradient and nothing else nonzero."""
    from lstm_engine.classifier import SequenceClassifier
    from lstm_engine.errors import CallOrderError
    model = SequenceClassifier(3, vocab_size=9, embedding_dim=5, hidden_size=4, ngram_buckets=64,
                               backend=backend, seed=0)
    with pytest.raises(CallOrderError, match="gradient_rows.*backward"):
        model.gradient_rows("ngram.weight")
    rng = np.random.default_rng(0)
    tokens, lengths = rng.integers(1, 9, (6, 4)), np.array([6, 3, 1, 5])
    for t, n in enumerate(lengths):
        tokens[n:, t] = 0
    logits = model.forward(tokens, lengths, training=True)
    grads = model.backward(model.loss(logits, np.array([0, 1, 2, 1]))[1])
    for name in model.row_sparse:
        rows, grad = model.gradient_rows(name), grads[name]
        assert np.all(np.diff(rows) > 0) and len(rows) < grad.shape[0]
        nonzero = np.flatnonzero(np.any(grad != 0, axis=1))
        assert set(nonzero) <= set(rows) and len(nonzero) > 0
        outside = np.setdiff1d(np.arange(grad.shape[0]), rows)
        assert not np.any(grad[outside])
    np.testing.assert_array_equal(model.gradient_rows("embedding.weight"), np.unique(tokens))


# -- two ranks under mpiexec ------------------------------------------------------------------------
@needs_mpi
@pytest.mark.parametrize("dtype,atol", [("float64", 1e-12), ("float32", FLOAT32_ATOL)])
def test_two_ranks_train_as_one_process(tmp_path, dtype, atol):
    """Two layers, both directions, dropout between layers and before the head, clipping,
    29 sequences in batches of 7 (the last batch, of one row, leaves rank 1 without rows)."""
    proc = mpirun(sys.executable, WORKER, "train", str(tmp_path / "two"), "--dtype", dtype)
    assert proc.returncode == 0, proc.stderr
    two = np.load(tmp_path / "two.npz")
    meta = json.loads((tmp_path / "two.json").read_text())
    one = mpi_worker.train(dtype=dtype, comm=distributed.SingleProcess())
    for name, value in one["params"].items():
        np.testing.assert_allclose(two[name], value, rtol=0, atol=atol, err_msg=name)
    assert meta["rng"] == one["rng"]                  # the same dropout draws, to the last one
    for got, want in zip(meta["history"], one["history"]):
        assert got["val_accuracy"] == want["val_accuracy"]
        assert got["train_loss"] == pytest.approx(want["train_loss"], abs=1e3 * atol)
    # each rank took its share of the node: 2 ranks on this machine's cores
    cores = len(os.sched_getaffinity(0))
    assert [f["cores"] for f in meta["facts"]] == [max(1, cores // 2)] * 2
    assert [f["numba_threads"] for f in meta["facts"]] == [str(max(1, cores // 2))] * 2
    assert [f["local_rank"] for f in meta["facts"]] == [0, 1]


@needs_mpi
@pytest.mark.parametrize("buckets,backend", [(4096, "numpy"), (4096, "cpu"), (16, "numpy")])
def test_two_ranks_gather_the_embedding_tables_rows_as_one_process(tmp_path, buckets, backend):
    """An n-gram table beside the token table, both reduced by gathering each rank's nonzero
    rows (gather_min_bytes 0): with 4,096 n-gram rows a batch touches few of them (gathered),
    with 16 most (summed whole), and the 9 token rows mostly whole. The same training as one
    process, and the same bits as two ranks that sum every table whole (of two numbers, the
    sum is the same in either order)."""
    runs = {}
    for name, extra in (("gathered", ["--gather-min-bytes", "0"]), ("whole", [])):
        proc = mpirun(sys.executable, WORKER, "train", str(tmp_path / name), "--backend", backend,
                      "--ngram-buckets", str(buckets), *extra)
        assert proc.returncode == 0, proc.stderr
        runs[name] = (np.load(tmp_path / f"{name}.npz"), json.loads((tmp_path / f"{name}.json").read_text()))
    (gathered, meta), (whole, whole_meta) = runs["gathered"], runs["whole"]
    assert meta["reductions"]["gathered"] == ["embedding.weight", "ngram.weight"]
    assert whole_meta["reductions"] == {"gathered": [], "gathers": {}, "whole_tables": {}}
    gathers, whole_tables = meta["reductions"]["gathers"], meta["reductions"]["whole_tables"]
    steps = len(meta["history"]) * 5                  # 2 epochs of 29 sequences in batches of 7
    assert {name: gathers[name] + whole_tables[name] for name in gathers} == dict.fromkeys(gathers, steps)
    assert whole_tables["embedding.weight"] > gathers["embedding.weight"]     # 9 rows, mostly touched
    if buckets == 4096:
        assert gathers["ngram.weight"] == steps
    else:
        assert whole_tables["ngram.weight"] > gathers["ngram.weight"]
    one = mpi_worker.train(comm=distributed.SingleProcess(), backend=backend, ngram_buckets=buckets)
    for name, value in one["params"].items():
        np.testing.assert_array_equal(gathered[name], whole[name], err_msg=name)
        np.testing.assert_allclose(gathered[name], value, rtol=0, atol=1e-12, err_msg=name)
    assert meta["history"] == whole_meta["history"]


@needs_mpi
def test_two_ranks_train_ctc_as_one_process(tmp_path):
    """The CTC objective on a per-step head: ranks weight their shares by their sequences."""
    proc = mpirun(sys.executable, WORKER, "train", str(tmp_path / "two"), "--ctc")
    assert proc.returncode == 0, proc.stderr
    two = np.load(tmp_path / "two.npz")
    meta = json.loads((tmp_path / "two.json").read_text())
    one = mpi_worker.train(comm=distributed.SingleProcess(), ctc=True)
    for name, value in one["params"].items():
        np.testing.assert_allclose(two[name], value, rtol=0, atol=1e-12, err_msg=name)
    assert [h["val_label_error_rate"] for h in meta["history"]] == [h["val_label_error_rate"] for h in one["history"]]
    assert meta["rng"] == one["rng"]


@needs_mpi
def test_two_rank_speech_recognition_run_matches_one_process(tmp_path, transcribed_npz):
    from lstm_engine import runs
    settings = {"epochs": 2, "hidden_size": 8, "batch_size": 16, "warmup_steps": 0, "dropout": 0.2}
    proc = mpirun(sys.executable, WORKER, "cli", str(tmp_path), "train", "speech-recognition", "--data",
                  str(transcribed_npz), "--out", str(tmp_path / "two"), "--backend", "numpy", "--no-progress",
                  *[f"--set={k}={v}" for k, v in settings.items()])
    assert proc.returncode == 0, proc.stderr
    runs.run("speech-recognition", settings | {"data": str(transcribed_npz)}, tmp_path / "one", backend="numpy",
             test=False, progress=False, comm=distributed.SingleProcess())
    _assert_same_model(tmp_path / "two" / "last.safetensors", tmp_path / "one" / "last.safetensors")
    lines = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(line["val_label_error_rate"] is not None for line in lines)


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory, lid_tsv):
    """The uninterrupted reference: the CLI run's settings, one process."""
    from lstm_engine import runs
    out = tmp_path_factory.mktemp("one") / "run"
    runs.run("language-id", _RUN_SETTINGS | {"data": str(lid_tsv)}, out, backend="numpy", test=False,
             progress=False, comm=distributed.SingleProcess())
    return out


_RUN_SETTINGS = {"epochs": 2, "hidden_size": 12, "embedding_dim": 8, "batch_size": 16, "warmup_steps": 0,
                 "dropout": 0.2}


def _cli_args(lid_tsv, out, *extra):
    return ["train", "--data", str(lid_tsv), "--out", str(out), "--backend", "numpy", "--epochs", "2",
            "--hidden-size", "12", "--batch-size", "16", "--set", "embedding_dim=8", "--set", "warmup_steps=0",
            "--set", "dropout=0.2", "--no-progress", *extra]


def _assert_same_model(a: Path, b: Path, atol=FLOAT32_ATOL):
    from lstm_engine.checkpoint import load_checkpoint
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca.train["state"]["step"] == cb.train["state"]["step"]
    assert ca.train["rng"] == cb.train["rng"]
    for name in ca.tensors:
        np.testing.assert_allclose(ca.tensors[name], cb.tensors[name], rtol=0, atol=atol, err_msg=name)


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory, lid_tsv):
    folder = tmp_path_factory.mktemp("two")
    proc = mpirun(sys.executable, WORKER, "cli", str(folder), *_cli_args(lid_tsv, folder / "run", "--json"))
    assert proc.returncode == 0, proc.stderr
    return folder, proc


@needs_mpi
def test_two_rank_run_writes_once_and_matches_one_process(two_rank_run, one_process_run):
    folder, proc = two_rank_run
    summary = json.loads(proc.stdout)                                 # one JSON document: rank 0's
    assert summary["distributed"]["ranks"] == 2 and summary["status"] == "completed"
    assert not (folder / "writes-1.txt").exists(), "rank 1 wrote to the run folder"
    written = (folder / "writes-0.txt").read_text().split()
    assert written.count("config.json") == 1 and written.count("last.safetensors") == 2
    assert len((folder / "run" / "metrics.jsonl").read_text().splitlines()) == 2
    _assert_same_model(folder / "run" / "last.safetensors", one_process_run / "last.safetensors")


@needs_mpi
def test_sharded_evaluate_and_predict_print_once_what_one_process_prints(two_rank_run):
    from click.testing import CliRunner
    from lstm_engine.cli.main import main
    run = two_rank_run[0] / "run"
    cli = str(Path(sys.executable).parent / "lstm-engine")
    two = mpirun(cli, "evaluate", str(run), "--split", "all", "--backend", "numpy", "--json")
    assert two.returncode == 0, two.stderr
    one = CliRunner().invoke(main, ["evaluate", str(run), "--split", "all", "--backend", "numpy", "--json"])
    assert json.loads(two.stdout) == json.loads(one.output)          # bit for bit, and printed once
    texts = "abca dcba abcd\n\nwxyz zyx wz\nklmn nml\n" * 100           # 300 texts: 2 batches, 1 a rank
    two = mpirun(cli, "predict", str(run), "--top", "2", "--backend", "numpy", stdin=texts)
    assert two.returncode == 0, two.stderr
    one = CliRunner().invoke(main, ["predict", str(run), "--top", "2", "--backend", "numpy"], input=texts)
    assert two.stdout == one.output and len(two.stdout.splitlines()) == 400


@needs_mpi
def test_two_rank_run_resumed_by_one_rank(tmp_path, lid_tsv, one_process_run):
    """Stopped on rank 0 only after step 4: the vote travels with step 5's gradients, so both
    ranks stop after step 5; one process then finishes the run as if it had never stopped."""
    from lstm_engine import runs
    from lstm_engine.checkpoint import load_checkpoint
    out = tmp_path / "run"
    proc = mpirun(sys.executable, WORKER, "cli", str(tmp_path), "--inject", "stop", "0", "4", *_cli_args(lid_tsv, out))
    assert proc.returncode == 130, proc.stderr
    assert load_checkpoint(out / "last.safetensors").train["state"]["step"] == 5
    runs.run("language-id", {"data": str(lid_tsv)}, out, backend="numpy", resume=True, test=False, progress=False,
             comm=distributed.SingleProcess())
    _assert_same_model(out / "last.safetensors", one_process_run / "last.safetensors")


@needs_mpi
def test_one_process_run_resumed_by_two_ranks(tmp_path, lid_tsv, one_process_run, monkeypatch):
    from lstm_engine import runs
    from lstm_engine.trainer import Trainer
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "fit", mpi_worker.fit_with("stop", 0, 7))
        summary = runs.run("language-id", _RUN_SETTINGS | {"data": str(lid_tsv)}, out, backend="numpy", test=False,
                           progress=False, comm=distributed.SingleProcess())
    assert summary["status"] == "interrupted" and summary["steps"] == 7
    proc = mpirun(sys.executable, WORKER, "cli", str(tmp_path), *_cli_args(lid_tsv, out, "--resume"))
    assert proc.returncode == 0, proc.stderr
    _assert_same_model(out / "last.safetensors", one_process_run / "last.safetensors")


@needs_mpi
def test_a_rank_that_raises_ends_every_rank_quickly(tmp_path):
    """Rank 1 raises after step 3 while rank 0 waits in step 4's allreduce: the excepthook
    aborts the world (a library script, not the CLI)."""
    proc = mpirun(sys.executable, WORKER, "train", str(tmp_path / "x"), "--inject", "fail", "1", "3", timeout=60)
    assert proc.returncode != 0
    assert "injected failure on rank 1 at step 3" in proc.stderr
    assert proc.seconds < 30
    assert not (tmp_path / "x.npz").exists()


@needs_mpi
def test_replicas_that_drift_stop_the_run_with_a_clear_error(tmp_path, lid_tsv):
    """A parameter changed on rank 1 only is caught by the next checksum comparison (at the
    epoch's end, before a checkpoint is written); the CLI prints it and aborts every rank."""
    proc = mpirun(sys.executable, WORKER, "cli", str(tmp_path), "--inject", "drift", "1", "2",
                  *_cli_args(lid_tsv, tmp_path / "run"), timeout=60)
    assert proc.returncode != 0
    assert "the model replicas of ranks [1] differ from rank 0's" in proc.stderr
    assert not (tmp_path / "run" / "last.safetensors").exists()


# -- GPUs: NCCL (the `cuda` marker: run on a GPU machine with `pytest -m cuda`) --------------------
def _gpus() -> int:
    from lstm_engine import backends as registry
    if not registry.probe("cuda").available:
        return 0
    import cupy
    return cupy.cuda.runtime.getDeviceCount()


@pytest.fixture
def gpus():
    count = _gpus()
    if not count:
        pytest.skip("needs a CUDA GPU with the cuda backend available")
    if not MPIEXEC.exists() or importlib.util.find_spec("mpi4py") is None:
        pytest.skip("needs mpi4py and the venv's mpiexec (the mpi extra) to start the ranks")
    return count


@pytest.mark.cuda
def test_nccl_collectives_on_gpus(tmp_path, gpus):
    """Two ranks on two GPUs (NCCL refuses two ranks of one communicator on one GPU); on a
    machine with one GPU, a communicator of one rank, which still runs NCCL's calls."""
    ranks = min(2, gpus)
    proc = mpirun(sys.executable, WORKER, "collectives", str(tmp_path / "nccl"), ranks=ranks, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "nccl.json").read_text())
    assert report["size"] == ranks and all(r["ok"] for r in report["ranks"]), report


@pytest.mark.cuda
@pytest.mark.parametrize("dtype,atol", [("float64", 1e-12), ("float32", FLOAT32_ATOL)])
def test_two_ranks_on_gpus_train_as_one_process(tmp_path, gpus, dtype, atol):
    """Gradients through NCCL where there are two GPUs; with one GPU, both ranks on it and the
    gradients through MPI via the host (NCCL cannot put two ranks on one GPU)."""
    env = _clean_env() | ({distributed.MODE_ENV: "mpi"} if gpus < 2 else {})
    proc = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, WORKER, "train", str(tmp_path / "two"),
                           "--dtype", dtype, "--backend", "cuda"], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "two.json").read_text())
    assert meta["communicator"] == ("nccl" if gpus >= 2 else "mpi")
    two = np.load(tmp_path / "two.npz")
    one = mpi_worker.train(dtype=dtype, comm=distributed.SingleProcess(), backend="cuda")
    for name, value in one["params"].items():
        np.testing.assert_allclose(two[name], value, rtol=0, atol=atol, err_msg=name)


# -- benchmarks/scaling.py ----------------------------------------------------------------------------
def test_scaling_cost_model_is_a_ring_allreduce():
    from helpers import load_benchmark
    scaling = load_benchmark("scaling")
    # 2 ranks each send and receive half of 1 GB twice: 1 GB at 8 Gb/s (1 GB/s) is 1 s, plus 2 hops
    assert scaling.ring_allreduce_seconds(1e9, 2, 8, 5e-6) == pytest.approx(1.0 + 1e-5)
    assert scaling.ring_allreduce_seconds(1e9, 1, 8, 5e-6) == 0.0
    rows = scaling.cost_model(4e6, 0.1, ranks=(8, 512), bandwidths=(10, 100))
    eff = {(r["ranks"], r["gbit_per_s"]): r["efficiency"] for r in rows}
    assert eff[(8, 100)] > eff[(8, 10)] > eff[(512, 10)] and eff[(512, 100)] > eff[(512, 10)]
    assert eff[(8, 10)] == pytest.approx(0.1 / (0.1 + scaling.ring_allreduce_seconds(4e6, 8, 10, 5e-6)))
    # a ring allgather: 2 ranks each receive the other's half of 1 GB, plus one hop
    assert scaling.ring_allgather_seconds(1e9, 2, 8, 5e-6) == pytest.approx(0.5 + 5e-6)
    # a gathered table: its rows while all ranks' are at most the fraction, else summed whole
    table = {"rows": 1000, "row_bytes": 192, "rows_per_rank_step": 50, "gather_fraction": 0.5}
    seconds, gathered = scaling.table_seconds(table, 8, 10, 5e-6)
    assert gathered and seconds == pytest.approx(scaling.ring_allgather_seconds(8 * 50 * 200, 8, 10, 5e-6))
    seconds, gathered = scaling.table_seconds(table, 16, 10, 5e-6)
    assert not gathered and seconds == pytest.approx(scaling.ring_allreduce_seconds(1000 * 192, 16, 10, 5e-6))
    rows = scaling.cost_model(4e6, 0.1, ranks=(8, 16), bandwidths=(10,), tables=[table])
    assert [r["tables_gathered"] for r in rows] == [[True], [False]]
    assert rows[0]["allreduce_ms"] == pytest.approx(1e3 * (scaling.ring_allreduce_seconds(4e6, 8, 10, 5e-6)
                                                          + scaling.table_seconds(table, 8, 10, 5e-6)[0]))


@needs_mpi
def test_scaling_benchmark_smoke(tmp_path, lid_tsv):
    from helpers import load_benchmark
    scaling = load_benchmark("scaling")
    out = tmp_path / "scaling.json"
    scaling.main(["--tasks", "language-id", "--data", str(lid_tsv), "--warmup", "1", "--steps", "2",
                  "--repeats", "2", "--out", str(out), "--timeout", "300"])
    row = json.loads(out.read_text())["tasks"][0]
    one, two = row["one_rank_two_threads"], row["two_ranks_one_thread"]
    assert (one["ranks"], one["threads_per_rank"], two["ranks"], two["threads_per_rank"]) == (1, 2, 2, 1)
    assert one["sequences"] == two["sequences"] > 0 and two["allreduce_ms_isolated"] > 0
    assert row["two_ranks_vs_one"] == pytest.approx(two["sequences_per_second"] / one["sequences_per_second"])
    speeds = row["sequences_per_second"]
    assert [len(speeds[k]) for k in ("one_rank_two_threads", "two_ranks_one_thread")] == [2, 2]
    assert one["sequences_per_second"] == min(speeds["one_rank_two_threads"])     # the lower middle of 2
    assert row["two_ranks_vs_one_per_repeat"] == pytest.approx(
        [b / a for a, b in zip(speeds["one_rank_two_threads"], speeds["two_ranks_one_thread"])])
    assert len(row["cluster_model"]) == len(scaling.RANKS_MODELLED) * len(scaling.BANDWIDTHS_GBIT)
    # the n-gram table (25 MB) is gathered by rows, the rest summed
    tables = two["gathered_tables"]
    assert [t["name"] for t in tables] == ["ngram.weight"] and tables[0]["gathers"] > 0
    assert 0 < tables[0]["rows_per_rank_step"] < tables[0]["rows"]
    assert two["summed_gradient_bytes"] == two["gradient_bytes"] - tables[0]["rows"] * tables[0]["row_bytes"]
