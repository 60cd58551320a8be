"""lstm-engine: LSTM training and inference on a NumPy reference, Numba CPU kernels or CUDA.

Importing this package is cheap: Numba and CuPy are imported only when their backend is used.
"""

from .backends import BackendError, get_backend, set_num_threads
from .backends import available as available_backends
from .lstm import LSTM, Gradients

__version__ = "0.1.0"
__all__ = ["LSTM", "Gradients", "BackendError", "get_backend", "available_backends",
           "set_num_threads", "__version__"]
