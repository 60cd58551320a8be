"""lstm-engine: LSTM training and inference on a NumPy reference, Numba CPU kernels or CUDA.

Importing this package is cheap: Numba and CuPy are imported only when their backend is used.
"""

from .backends import available as available_backends
from .backends import get_backend, set_num_threads
from .errors import (
    ArgumentError,
    ArgumentTypeError,
    BackendError,
    CallOrderError,
    CheckpointError,
    ConfigError,
    DataError,
    DataNotFoundError,
    DistributedError,
    LstmEngineError,
    MissingDependencyError,
    ReplicasOutOfSync,
    TrainingDiverged,
    WriteError,
)
from .lstm import LSTM, Gradients

__version__ = "0.1.0"
__all__ = ["LSTM", "Gradients", "get_backend", "available_backends", "set_num_threads",
           "LstmEngineError", "ConfigError", "ArgumentError", "ArgumentTypeError", "DataError",
           "DataNotFoundError", "MissingDependencyError", "BackendError", "CheckpointError",
           "CallOrderError", "TrainingDiverged", "WriteError", "DistributedError", "ReplicasOutOfSync",
           "__version__"]
