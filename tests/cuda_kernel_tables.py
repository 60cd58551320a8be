"""The kernel tables of the test kernels in tests/cuda/ (name -> parameters, C types, launch
budgets): shared by the emulator's tests (test_cuda_emulator.py, built with g++) and the
NVRTC compile check (test_cuda_compile.py), so both compile the same instantiations. The
parameters are read from the kernels' own signatures (cuda.kernel_signatures)."""

from __future__ import annotations

from pathlib import Path

from lstm_engine.backends.cuda import kernel_signatures
from lstm_engine.backends.cuda_compile import Budget, Module

HERE = Path(__file__).parent / "cuda"
FLOATS = ("float", "double")

EMULATOR_KERNELS = HERE / "emulator_kernels.cu"
KERNELS = kernel_signatures(EMULATOR_KERNELS)
TYPES = {k: FLOATS for k in ("block_reduce", "normalise_two_phase", "neighbour_sum", "atomic_sum")}
#: The largest launch each test makes (the tests use smaller ones too); one resident block per SM
#: is all they need.
BUDGETS = {k: Budget(1024, 1) for k in KERNELS}

FAULT_KERNELS = HERE / "emulator_faults.cu"
FAULTS = kernel_signatures(FAULT_KERNELS)
FAULT_BUDGETS = {k: Budget(64, 1) for k in FAULTS}


def modules() -> list[Module]:
    return [Module(EMULATOR_KERNELS, KERNELS, TYPES, BUDGETS), Module(FAULT_KERNELS, FAULTS, (), FAULT_BUDGETS)]
