"""Data-parallel training and sharded inference over several processes: MPI (mpi4py) for CPU
clusters, NCCL (through CuPy) for GPU clusters, behind one small communicator interface.

Words: a launcher (``mpiexec``, ``srun``) starts N processes, the ranks 0..N-1 of one world;
rank 0 is the root, the only one that writes files or prints. The local rank and local size
are a rank's position and the number of ranks on its own node.

The convention, as Horovod and PyTorch DDP users expect it stated: ``batch_size`` is the
global batch and ``lr`` means the same whatever N is. Every rank builds the same data and
computes the same length-bucketed batches from the seed; rank r takes its contiguous share
of every global batch (``share_bounds``: as many characters or frames as the others, to a
row; ``DataParallel.balance_lengths``), computes its loss
(the mean over its own rows) and its gradients, and scales them by its share of the batch's
loss terms (the objective's ``loss_weight``, engine/objectives.py: rows for a classifier and
for CTC, whose loss is a mean over sequences, valid steps for a tagger's cross-entropy). One
allreduce of one flat buffer then sums them into exactly the global batch's mean gradient;
the same buffer carries the weighted loss and a "stop" vote (Ctrl-C, a callback), so every
rank stops at the same step. A large embedding table's gradient (``model.row_sparse``: zero
but at the rows the rank's share looked up, ``model.gradient_rows``) is not in that buffer:
over MPI every rank sends those rows and their indices to all (``allgatherv``, as Horovod
does with TensorFlow's ``IndexedSlices``), and each adds them up in rank order, which moves
the rows a batch touched instead of the whole table (language-id's n-gram table: 25 MB, of
which a rank's share of a step touches about 5,900 rows); a step whose ranks touched more
than ``DataParallel.gather_fraction`` of the table sums it whole instead. Global-norm clipping and the optimizer step run on every rank on
the same numbers, so the replicas stay bitwise equal; a checksum of the replicas (parameters,
optimizer state, dropout generator, position) is compared every ``DataParallel.check_every``
steps and at every epoch's end, and a difference stops the run with ``ReplicasOutOfSync``.
Dropout masks are the global batch's, cut to the share (``layers.RowWindow``), so N ranks
train exactly as one process on the same global batches, to the rounding of the sums.

Shapes: the flat buffer is (P + 2,) in the model's dtype on the backend's device: the P
gradient values of the parameters that are not gathered, in ``model.parameters()`` order, then
the weighted loss, then the stop vote. A gathered table (V, E) has its own (V, E) array; each
rank sends rows (n_r,) int64 and their values (n_r * E,), n_r the rows its share looked up.

Which communicator (``world``, ``for_backend``):
    one process (no launcher)            ``SingleProcess``: size 1, mpi4py never imported
    a launcher started N > 1 processes   ``MpiCommunicator`` over mpi4py's COMM_WORLD (host
                                         buffers; device arrays are staged through the host)
    ... and the backend is ``cuda``      ``NcclCommunicator``: gradients and broadcasts on the
                                         GPU through NCCL (``cupy.cuda.nccl``), one GPU per
                                         rank (local rank -> device), the NCCL unique id sent
                                         over MPI; Python objects still go over MPI
``$LSTM_ENGINE_DISTRIBUTED`` (or the CLI's ``--distributed``) overrides: ``auto`` (the above),
``mpi`` (MPI even where no launcher variable is seen, and for cuda), ``nccl`` (insist on
NCCL), ``off`` (every process on its own).

A launcher is recognised by the variables it sets (``LAUNCHER_VARIABLES``): ``PMI_SIZE``
(MPICH's Hydra, Intel MPI, ``srun --mpi=pmi2``), ``OMPI_COMM_WORLD_SIZE`` (Open MPI),
``MV2_COMM_WORLD_SIZE`` (MVAPICH2), and ``SLURM_STEP_NUM_TASKS`` with ``SLURM_PROCID``
(tasks started by ``srun``; the batch script itself, which has ``SLURM_NTASKS`` too, is one
process). Reading them costs nothing, so ``import lstm_engine`` and single-process runs never
import mpi4py. A launcher whose processes each see an MPI world of 1 (mpi4py built for another
MPI than the launcher's) is refused with a ``DistributedError`` instead of N runs side by side.

A rank that fails must not leave the others waiting in a collective: with more than one rank,
an uncaught exception aborts the whole world (``sys.excepthook``, as ``python -m mpi4py``
does), and the command line aborts on any error (``abort``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import sys
import time
from dataclasses import asdict

import numpy as np

from .errors import ConfigError, DistributedError, ReplicasOutOfSync, require
from .layers import RowWindow

MODE_ENV = "LSTM_ENGINE_DISTRIBUTED"
MODES = ("auto", "mpi", "nccl", "off")

#: (variable holding the world size, the launcher that sets it); the first one set wins.
LAUNCHER_VARIABLES = (
    ("PMI_SIZE", "MPICH Hydra / Intel MPI / srun --mpi=pmi2"),
    ("OMPI_COMM_WORLD_SIZE", "Open MPI"),
    ("MV2_COMM_WORLD_SIZE", "MVAPICH2"),
    ("SLURM_STEP_NUM_TASKS", "srun"),
)


def launcher_world_size(environ=None) -> tuple[int, str] | None:
    """(world size, variable) a launcher has set for this process, or None when no launcher
    variable is set. ``SLURM_STEP_NUM_TASKS`` counts only with ``SLURM_PROCID`` (a task
    started by srun, not the batch script)."""
    env = os.environ if environ is None else environ
    for name, _ in LAUNCHER_VARIABLES:
        raw = env.get(name, "").strip()
        if not raw or (name.startswith("SLURM_") and "SLURM_PROCID" not in env):
            continue
        try:
            size = int(raw)
        except ValueError:
            raise DistributedError(f"the launcher variable {name}={raw!r} is not a number of processes") from None
        return size, name
    return None


def mode_from_env(environ=None) -> str:
    env = os.environ if environ is None else environ
    mode = env.get(MODE_ENV, "").strip().lower() or "auto"
    if mode not in MODES:
        raise ConfigError(f"{MODE_ENV} must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def share_bounds(n: int, size: int, rank: int, weights=None) -> tuple[int, int]:
    """Rows [lo, hi) of a batch of ``n`` rows that ``rank`` of ``size`` takes, contiguous
    shares. Without ``weights``, or with fewer rows than ranks: sizes that differ by at most
    one, the larger ones first (rank 0 always has a row when n >= 1). With ``weights`` (n,)
    (the rows' lengths: a share's work grows with the steps it holds), each cut where the
    running sum of the weights is nearest that share's part of the total (a tie: the earlier
    row), every share keeping at least one row."""
    if weights is None or n < size:
        base, extra = divmod(n, size)
        lo = rank * base + min(rank, extra)
        return lo, lo + base + (1 if rank < extra else 0)
    running = np.concatenate([[0.0], np.cumsum(np.asarray(weights, dtype=np.float64))])

    def cut(k: int) -> int:
        if k == 0 or k == size:
            return 0 if k == 0 else n
        target = running[-1] * k / size
        i = int(np.searchsorted(running, target))
        if i > 0 and target - running[i - 1] <= running[i] - target:
            i -= 1
        return min(max(i, k), n - size + k)

    return cut(rank), cut(rank + 1)


def _cpu_set() -> frozenset:
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


# -- communicators ------------------------------------------------------------------------------
class Communicator:
    """What data-parallel training and sharded inference need from a group of ranks.

    Buffer operations work in place on a contiguous 1-D float array (NumPy for MPI, CuPy for
    NCCL); object operations pickle Python values. Every rank must make the same calls in the
    same order (they are collectives)."""

    name = "?"
    rank = 0
    size = 1
    local_rank = 0                 # position among the ranks on this node
    local_size = 1                 # ranks on this node
    cores = 1                      # cores this rank may use: its CPU set / ranks that share it

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def allreduce(self, buffer) -> None:
        """Sum ``buffer`` over all ranks, in place."""
        raise NotImplementedError

    def broadcast(self, buffer, root: int = 0) -> None:
        """Overwrite ``buffer`` with ``root``'s, in place."""
        raise NotImplementedError

    def bcast_object(self, obj=None, root: int = 0):
        raise NotImplementedError

    def allgather_object(self, obj) -> list:
        raise NotImplementedError

    @property
    def can_gather(self) -> bool:
        """Whether this communicator has ``allgatherv`` (DataParallel then gathers row-sparse
        gradients by their rows)."""
        return type(self).allgatherv is not Communicator.allgatherv

    def allgatherv(self, buffer: np.ndarray, counts) -> np.ndarray:
        """Every rank's 1-D host ``buffer`` (rank r's holds counts[r] elements, the same
        dtype on every rank), concatenated in rank order."""
        raise NotImplementedError

    def barrier(self) -> None:
        raise NotImplementedError

    def abort(self, code: int = 1):
        """End every rank now (never returns)."""
        raise NotImplementedError

    def _learn_layout(self) -> None:
        """Local rank and size by host name, and the cores this rank may use: its CPU set
        divided by the ranks on this node that share that set (no binding: all of them; one
        core each: 1; a socket each: that socket's ranks)."""
        cpus = _cpu_set()
        host = socket.gethostname()
        everyone = self.allgather_object((host, sorted(cpus)))
        on_node = [r for r, (h, _) in enumerate(everyone) if h == host]
        self.local_rank, self.local_size = on_node.index(self.rank), len(on_node)
        sharing = sum(1 for h, c in everyone if h == host and frozenset(c) == cpus)
        self.cores = max(1, len(cpus) // sharing)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class SingleProcess(Communicator):
    """A world of one: every collective is the identity. What ordinary runs use."""

    name = "single"

    def __init__(self):
        self.cores = len(_cpu_set())

    def allreduce(self, buffer) -> None:
        pass

    def broadcast(self, buffer, root: int = 0) -> None:
        pass

    def bcast_object(self, obj=None, root: int = 0):
        return obj

    def allgather_object(self, obj) -> list:
        return [obj]

    def allgatherv(self, buffer: np.ndarray, counts) -> np.ndarray:
        return np.array(buffer)

    def barrier(self) -> None:
        pass

    def abort(self, code: int = 1):
        raise SystemExit(code)


class MpiCommunicator(Communicator):
    """An mpi4py communicator (COMM_WORLD by default). Buffers are host (NumPy) arrays; a
    device array is copied to the host and back (the PyPI MPI builds are not CUDA-aware)."""

    name = "mpi"

    def __init__(self, comm=None):
        MPI = require("mpi4py.MPI", "mpi", "data-parallel training over MPI")
        self._MPI = MPI
        self._comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self._comm.Get_rank(), self._comm.Get_size()
        self._learn_layout()

    def allreduce(self, buffer) -> None:
        if isinstance(buffer, np.ndarray):
            self._comm.Allreduce(self._MPI.IN_PLACE, buffer, op=self._MPI.SUM)
            return
        host = np.ascontiguousarray(buffer.get())                  # a CuPy array
        self._comm.Allreduce(self._MPI.IN_PLACE, host, op=self._MPI.SUM)
        buffer.set(host)

    def broadcast(self, buffer, root: int = 0) -> None:
        if isinstance(buffer, np.ndarray):
            self._comm.Bcast(buffer, root=root)
            return
        host = np.ascontiguousarray(buffer.get())
        self._comm.Bcast(host, root=root)
        buffer.set(host)

    def bcast_object(self, obj=None, root: int = 0):
        return self._comm.bcast(obj, root=root)

    def allgather_object(self, obj) -> list:
        return self._comm.allgather(obj)

    def allgatherv(self, buffer: np.ndarray, counts) -> np.ndarray:
        counts = [int(n) for n in counts]
        out = np.empty(sum(counts), dtype=buffer.dtype)
        self._comm.Allgatherv(np.ascontiguousarray(buffer), [out, counts])
        return out

    def barrier(self) -> None:
        self._comm.Barrier()

    def abort(self, code: int = 1):
        sys.stdout.flush()
        sys.stderr.flush()
        # Abort makes the launcher kill every rank and exit at once, and what its output
        # forwarding still holds is lost: a failing rank's traceback once came through cut
        # short. A moment lets the forwarding pass it on first.
        time.sleep(ABORT_DRAIN_SECONDS)
        self._comm.Abort(code)

    @staticmethod
    def library_version() -> str:
        from mpi4py import MPI
        return MPI.Get_library_version().splitlines()[0].strip()


def _load_nccl():
    """cupy.cuda.nccl, with NCCL from the nvidia-nccl-cu12/-cu13 wheel loaded first where
    that wheel is installed (CuPy otherwise looks only where its own installer puts NCCL)."""
    import ctypes
    import glob
    import importlib.util

    require("cupy", "nccl", "NCCL gradient averaging")
    spec = importlib.util.find_spec("nvidia")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        # nvidia/nccl/lib (CUDA 12 wheels) or nvidia/cu13/lib (CUDA 13 wheels)
        found = sorted(glob.glob(os.path.join(folder, "*", "lib", "libnccl.so.2")))
        if found:
            ctypes.CDLL(found[0], mode=ctypes.RTLD_GLOBAL)
            break
    from cupy.cuda import nccl
    if not getattr(nccl, "available", False):
        raise DistributedError("CuPy was installed without NCCL support, or cannot find the NCCL "
                               "library: pip install \"lstm-engine[nccl]\" (CUDA 12) or "
                               "\"lstm-engine[nccl13]\" (CUDA 13) brings NCCL as a wheel")
    return nccl


class NcclCommunicator(Communicator):
    """Gradients and broadcasts on the GPU through NCCL; Python objects (and host buffers)
    through ``mpi``, which also carries NCCL's unique id from rank 0 to the others. One GPU
    per rank: ``device_id``, by default the local rank modulo the GPUs this process sees
    (with ``CUDA_VISIBLE_DEVICES`` set per rank, as ``srun --gpus-per-task`` does, that is
    always 0). NCCL refuses two ranks of one communicator on the same GPU."""

    name = "nccl"
    # No allgatherv (so no gathered tables): NCCL sums a whole table on the GPUs' links faster
    # than its rows would go through the hosts and MPI, and its own allgather takes equal counts.

    def __init__(self, mpi: Communicator, device_id: int | None = None):
        nccl = _load_nccl()
        import cupy
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:                   # no driver, or one too old for this CuPy
            raise DistributedError(f"NCCL needs a CUDA GPU, and none is usable here "
                                   f"({type(exc).__name__}: {exc})") from None
        if count == 0:
            raise DistributedError("NCCL needs a CUDA GPU, and this machine has none")
        self._mpi, self._nccl, self._cupy = mpi, nccl, cupy
        self.rank, self.size = mpi.rank, mpi.size
        self.local_rank, self.local_size, self.cores = mpi.local_rank, mpi.local_size, mpi.cores
        self.device_id = mpi.local_rank % count if device_id is None else int(device_id)
        self._types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}
        uid = mpi.bcast_object(nccl.get_unique_id() if mpi.is_root else None)
        with cupy.cuda.Device(self.device_id):
            self._comm = nccl.NcclCommunicator(self.size, uid, self.rank)

    def _type(self, buffer):
        try:
            return self._types[np.dtype(buffer.dtype)]
        except KeyError:
            raise DistributedError(f"NCCL reductions here take float32 or float64, got {buffer.dtype}") from None

    def allreduce(self, buffer) -> None:
        if isinstance(buffer, np.ndarray):
            self._mpi.allreduce(buffer)
            return
        with self._cupy.cuda.Device(self.device_id):
            stream = self._cupy.cuda.get_current_stream()
            self._comm.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, self._type(buffer),
                                 self._nccl.NCCL_SUM, stream.ptr)

    def broadcast(self, buffer, root: int = 0) -> None:
        if isinstance(buffer, np.ndarray):
            self._mpi.broadcast(buffer, root)
            return
        with self._cupy.cuda.Device(self.device_id):
            stream = self._cupy.cuda.get_current_stream()
            self._comm.bcast(buffer.data.ptr, buffer.size, self._type(buffer), root, stream.ptr)

    def bcast_object(self, obj=None, root: int = 0):
        return self._mpi.bcast_object(obj, root)

    def allgather_object(self, obj) -> list:
        return self._mpi.allgather_object(obj)

    def barrier(self) -> None:
        self._cupy.cuda.get_current_stream().synchronize()
        self._mpi.barrier()

    def abort(self, code: int = 1):
        self._mpi.abort(code)


# -- the process's world ------------------------------------------------------------------------
_WORLD: Communicator | None = None


def world() -> Communicator:
    """This process's world, made on the first call: ``SingleProcess`` unless a launcher
    started more than one process (or ``$LSTM_ENGINE_DISTRIBUTED`` asks for MPI), else an
    ``MpiCommunicator`` over COMM_WORLD. With more than one rank it also installs the
    excepthook that aborts every rank when one dies of an uncaught exception."""
    global _WORLD
    if _WORLD is None:
        _WORLD = _make_world()
    return _WORLD


def current() -> Communicator | None:
    """The world if ``world()`` has made it, else None (nothing is made or imported)."""
    return _WORLD


def _make_world() -> Communicator:
    mode = mode_from_env()
    launched = launcher_world_size()
    if mode == "off" or (mode == "auto" and (launched is None or launched[0] <= 1)):
        return SingleProcess()
    if launched is not None and launched[0] > 1:
        purpose = f"a run started by a launcher with {launched[0]} processes ({launched[1]}={launched[0]})"
    else:
        purpose = f"{MODE_ENV}={mode}"
    require("mpi4py", "mpi", purpose)
    comm = MpiCommunicator()
    if launched is not None and launched[0] != comm.size:
        raise DistributedError(
            f"the launcher started {launched[0]} processes ({launched[1]}={launched[0]}), but MPI "
            f"sees a world of {comm.size}: mpi4py is using another MPI ({comm.library_version()}) "
            f"than the launcher's. Launch with that MPI's mpiexec (the venv's, with the `mpi` "
            f"extra), or build mpi4py against the cluster's MPI (see the README)")
    if comm.size > 1:
        _install_excepthook(comm)
    return comm


#: How long an MPI rank waits, after flushing its output, before it aborts the world.
ABORT_DRAIN_SECONDS = 0.5


def _install_excepthook(comm: Communicator) -> None:
    previous = sys.excepthook

    def abort_all(kind, value, traceback):
        previous(kind, value, traceback)
        print(f"lstm-engine: rank {comm.rank} of {comm.size} failed; aborting every rank",
              file=sys.stderr, flush=True)
        comm.abort(1)
    sys.excepthook = abort_all


def abort(comm: Communicator, message: str, code: int = 1):
    """Print ``message`` as this rank's and end every rank (the command line's handler for
    any error when the world has more than one rank)."""
    print(f"lstm-engine (rank {comm.rank} of {comm.size}): {message}", file=sys.stderr, flush=True)
    comm.abort(code)


_PREPARED = False


def prepare(comm: Communicator, backend="auto", threads: int | None = None) -> None:
    """Give this rank its share of the node before a backend is first made (once; nothing in
    a world of one): ``threads`` (default: ``comm.cores``) for the ``cpu`` backend's Numba
    pool and NumPy's BLAS, so N ranks on a node do not oversubscribe it; and for ``cuda``
    (or ``auto``) one GPU per rank, local rank modulo the visible GPUs, unless
    ``$LSTM_ENGINE_CUDA_DEVICE`` is set."""
    global _PREPARED
    if comm.size == 1 or _PREPARED:
        return
    _PREPARED = True
    n = comm.cores if threads is None else int(threads)
    _limit_threads(n)
    name = backend if isinstance(backend, str) else getattr(backend, "name", "")
    if name.strip().lower() in ("auto", "cuda"):
        _pick_gpu(comm)


def _limit_threads(n: int) -> None:
    if "numba" in sys.modules:
        import numba

        from .backends import set_num_threads
        set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    else:
        # Numba sizes its pool from this when it is first imported (by the cpu backend); a
        # machine-wide value would give every rank the whole node
        os.environ["NUMBA_NUM_THREADS"] = str(n)
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=n, user_api="blas")


def _pick_gpu(comm: Communicator) -> None:
    import importlib.util

    from .backends.cuda import DEVICE_ENV
    if os.environ.get(DEVICE_ENV, "").strip() or importlib.util.find_spec("cupy") is None:
        return
    try:
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:                              # no GPU here: the cuda backend says why
        return
    if count:
        os.environ[DEVICE_ENV] = str(comm.local_rank % count)


def for_backend(comm: Communicator, backend, mode: str | None = None) -> Communicator:
    """The communicator for a model on ``backend``: NCCL for CuPy arrays in a world of more
    than one rank (``mode`` auto or nccl), else ``comm`` itself. ``mode="nccl"`` insists: no
    GPU backend, or no NCCL, is an error instead of MPI through host copies."""
    mode = mode_from_env() if mode is None else mode
    on_gpu = getattr(backend.xp, "__name__", "") == "cupy"
    if mode == "nccl" and not on_gpu:
        raise ConfigError(f"{MODE_ENV}=nccl averages gradients on GPUs: it needs the cuda backend, "
                          f"not {backend.name!r}")
    if comm.size == 1 or not on_gpu or mode == "mpi":
        return comm
    if isinstance(comm, NcclCommunicator):
        return comm
    device = getattr(getattr(backend, "device", None), "device_id", None)
    try:
        return NcclCommunicator(comm, device)
    except (DistributedError, ImportError) as exc:
        if mode == "nccl":
            raise
        print(f"lstm-engine: NCCL is not usable ({exc}); gradients go through MPI via the host",
              file=sys.stderr)
        return comm


def node_first(comm: Communicator, build):
    """``build()`` on each node's first rank, then on the others: a cache that ``build``
    writes (the gettext corpus) is made once per node, not raced by all its ranks."""
    if comm.size == 1:
        return build()
    if comm.local_rank == 0:
        result = build()
        comm.barrier()
        return result
    comm.barrier()
    return build()


def same_everywhere(comm: Communicator, what: str, digest: str) -> None:
    """Raise DistributedError on every rank unless all ranks have the same ``digest`` of
    ``what`` (data the ranks built for themselves and must agree on)."""
    if comm.size == 1:
        return
    digests = comm.allgather_object(digest)
    differ = [r for r, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise DistributedError(f"ranks {differ} see different {what} than rank 0: every rank must "
                               f"read the same files (a shared filesystem, or identical copies)")


def digest_of_arrays(arrays) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.view(np.uint8).reshape(-1) if a.size else b"")
    return h.hexdigest()


# -- data-parallel training ---------------------------------------------------------------------
class DataParallel:
    """One replica of the model per rank, kept equal: the trainer's partner when the world
    has more than one rank (see the module docstring for the convention).

    ``share`` picks this rank's rows of a global batch; ``start`` makes every replica rank
    0's; ``reduce`` turns this rank's gradients into the global batch's mean (one allreduce,
    and a gathering of rows per large embedding table);
    ``agree`` takes a vote outside a step; ``check`` compares the replicas' checksums."""

    #: Steps between checksum comparisons (also done at every epoch's end).
    check_every = 100
    #: Cut a batch where each rank's share holds as many steps (the sum of its rows' lengths)
    #: as the others, instead of as many rows: with language-id's cropped strings, the second
    #: half of a 2-rank batch held 5% more characters than the first, took 16% longer to
    #: compute, and the first rank waited 10 ms of each 80 ms step for it.
    balance_lengths = True
    #: A row-sparse gradient (``model.row_sparse``) is gathered by its rows when it has at
    #: least this many bytes (smaller ones ride in the flat buffer: a collective of their own
    #: would cost more than they weigh) ...
    gather_min_bytes = 1 << 20
    #: ... and all ranks' rows together are at most this fraction of the table's: a
    #: ring allreduce moves 2(p-1)/p of the table through each rank, a ring allgather (p-1)/p
    #: of the rows gathered, which carry an 8-byte index each (at most 1/6 more for float32
    #: rows of 48), so half the rows still move less than the whole table does.
    gather_fraction = 0.5

    def __init__(self, comm: Communicator, model, optimizer):
        self.comm, self.model, self.optimizer = comm, model, optimizer
        xp = model.backend.xp
        params = model.parameters()
        gather = comm.can_gather and comm.size > 1
        #: The tables reduced by gathering the rows looked up (the rest: the flat buffer).
        self.gathered = [name for name in getattr(model, "row_sparse", ()) if gather and name in params
                         and params[name].ndim == 2 and params[name].nbytes >= self.gather_min_bytes]
        self.layout = []
        offset = 0
        for name, p in params.items():
            if name not in self.gathered:
                self.layout.append((name, offset, int(p.size), tuple(p.shape)))
                offset += int(p.size)
        self.size = offset
        self.buffer = xp.zeros(offset + 2, dtype=model.dtype)
        views = {name: self.buffer[o:o + n].reshape(shape) for name, o, n, shape in self.layout}
        self.grads = {name: views[name] if name in views else xp.zeros(p.shape, dtype=model.dtype)
                      for name, p in params.items()}                  # in parameters() order
        self.allreduce_seconds = 0.0
        self.allreduce_calls = 0
        #: Per gathered table: its reductions done by gathering rows and by summing it whole,
        #: and the rows gathered (all ranks', all steps), for benchmarks/scaling.py's model.
        self.gathers = dict.fromkeys(self.gathered, 0)
        self.whole_tables = dict.fromkeys(self.gathered, 0)
        self.gathered_rows = dict.fromkeys(self.gathered, 0)

    def share(self, idx: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, RowWindow]:
        """This rank's rows of the global batch ``idx`` (indices into the data, whose lengths
        are ``lengths``) and the window its dropout masks are cut from."""
        weights = lengths[idx] if self.balance_lengths else None
        lo, hi = share_bounds(len(idx), self.comm.size, self.comm.rank, weights)
        return idx[lo:hi], RowWindow(start=lo, rows=len(idx), steps=int(lengths[idx].max()))

    def empty_shares(self, batch_rows: int) -> bool:
        """Whether some rank has no rows of a batch this size (it skips the forward pass, so
        its dropout generator must be brought along: ``sync_generator``)."""
        return batch_rows < self.comm.size

    def start(self, trainer) -> None:
        """Make every replica rank 0's: parameters (one broadcast of the flat buffer), the
        optimizer's state, the dropout generator and the training position."""
        model, opt, comm = self.model, self.optimizer, self.comm
        params = model.parameters()
        flat = self.buffer[:self.size]
        if comm.is_root:
            for name, o, n, _ in self.layout:
                flat[o:o + n] = params[name].reshape(-1)
        comm.broadcast(flat)
        for name, o, n, shape in self.layout:
            params[name][...] = flat[o:o + n].reshape(shape)
        for name in self.gathered:
            comm.broadcast(params[name].reshape(-1))
        to_np = model.backend.to_numpy
        meta = comm.bcast_object({
            "rng": model.rng.bit_generator.state, "steps": opt.steps, "state": asdict(trainer.state),
            "slots": {s: {k: np.asarray(to_np(v)) for k, v in t.items()} for s, t in opt.state.items()},
        } if comm.is_root else None)
        model.rng.bit_generator.state = meta["rng"]
        opt.steps = meta["steps"]
        opt.state = {s: {k: model.backend.asarray(v, dtype=model.dtype) for k, v in t.items()}
                     for s, t in meta["slots"].items()}
        for key, value in meta["state"].items():
            setattr(trainer.state, key, value)

    def reduce(self, grads: dict | None, loss: float, fraction: float, stop: bool):
        """Sum every rank's ``fraction``-weighted gradients and loss (``grads`` None: this
        rank had no rows) and the stop votes. Returns (the global gradients, views of the flat
        buffer and the gathered tables' arrays, the global loss, whether any rank voted to
        stop)."""
        buf, backend = self.buffer, self.model.backend
        if grads is None:
            buf[:self.size] = 0
        else:
            for name, o, n, _ in self.layout:
                backend.xp.multiply(grads[name].reshape(-1), fraction, out=buf[o:o + n])
        buf[self.size] = loss * fraction
        buf[self.size + 1] = 1.0 if stop else 0.0
        t0 = time.perf_counter()
        rows = [np.empty(0, np.int64) if grads is None else self.model.gradient_rows(name)
                for name in self.gathered]
        counts = np.array(self.comm.allgather_object([len(r) for r in rows]), np.int64) if rows else None
        self.comm.allreduce(buf)
        for j, name in enumerate(self.gathered):
            self._reduce_table(name, None if grads is None else grads[name], rows[j], counts[:, j], fraction)
        tail = np.asarray(backend.to_numpy(buf[self.size:]))             # waits for the reduction
        self.allreduce_seconds += time.perf_counter() - t0
        self.allreduce_calls += 1
        return self.grads, float(tail[0]), bool(tail[1] > 0)

    def _reduce_table(self, name: str, grad, rows: np.ndarray, counts: np.ndarray, fraction: float) -> None:
        """The global gradient of the gathered table ``name`` into ``self.grads[name]``, from
        this rank's ``grad`` (None: no rows), the ``rows`` its share looked up and every
        rank's count of them."""
        backend, out = self.model.backend, self.grads[name]
        xp, (V, E) = backend.xp, out.shape
        if counts.sum() > self.gather_fraction * V:
            if grad is None:
                out[...] = 0
            else:
                xp.multiply(grad, fraction, out=out)
            self.comm.allreduce(out.reshape(-1))
            self.whole_tables[name] += 1
            return
        # the rows a rank names may include some with a zero gradient (a padding token's):
        # they add nothing
        mine = np.empty((0, E), out.dtype) if grad is None or not len(rows) else \
            np.asarray(backend.to_numpy(grad[backend.asarray(rows)] * fraction), dtype=out.dtype)
        every_row = self.comm.allgatherv(rows.astype(np.int64), counts)
        every_value = self.comm.allgatherv(mine.reshape(-1), counts * E).reshape(-1, E)
        # every rank's rows added up in rank order into the zeroed table: what the backend's
        # embedding gradient does (compiled on cpu)
        backend.embedding_grad(out, backend.asarray(every_row), backend.asarray(every_value), out=out)
        self.gathers[name] += 1
        self.gathered_rows[name] += int(counts.sum())

    def agree(self, vote: bool) -> bool:
        """Whether any rank votes yes (outside a step: at an epoch's end)."""
        return any(self.comm.allgather_object(bool(vote)))

    def sync_generator(self) -> None:
        """Rank 0's dropout generator state to every rank (after a batch some rank sat out)."""
        rng = self.model.rng.bit_generator
        rng.state = self.comm.bcast_object(rng.state if self.comm.is_root else None)

    def digest(self, trainer) -> str:
        """A checksum of what must be equal on every rank."""
        model, opt = self.model, self.optimizer
        to_np = model.backend.to_numpy
        arrays = [to_np(p) for p in model.parameters().values()]
        for slot in sorted(opt.state):
            arrays += [to_np(opt.state[slot][k]) for k in sorted(opt.state[slot])]
        extra = pickle.dumps((model.rng.bit_generator.state, opt.steps, trainer.state.step,
                              trainer.state.epoch, trainer.state.batch))
        return digest_of_arrays(arrays + [np.frombuffer(extra, dtype=np.uint8)])

    def check(self, trainer) -> None:
        """Compare the replicas' checksums; ReplicasOutOfSync on every rank if they differ."""
        digests = self.comm.allgather_object(self.digest(trainer))
        differ = [r for r, d in enumerate(digests) if d != digests[0]]
        if differ:
            raise ReplicasOutOfSync(
                f"after step {trainer.state.step} the model replicas of ranks {differ} differ from "
                f"rank 0's (parameters, optimizer state or dropout generator); the ranks must run "
                f"the same version of lstm-engine on the same data and backend. Training stopped "
                f"before a checkpoint of this state was written")


__all__ = ["Communicator", "SingleProcess", "MpiCommunicator", "NcclCommunicator", "DataParallel",
           "world", "current", "prepare", "for_backend", "abort", "node_first", "same_everywhere",
           "launcher_world_size", "share_bounds", "MODE_ENV", "MODES", "LAUNCHER_VARIABLES"]
