"""The LSTM workloads the speed benchmarks share: the standard shapes, --shape parsing, FLOP
counts, and the two timed calls of a torch.nn.LSTM."""

from __future__ import annotations

import argparse

#: name: (B, T, I, H, layers, bidirectional, forward_only)
STANDARD_SHAPES = {
    "latency": (1, 150, 256, 256, 1, False, True),
    "speech": (32, 200, 40, 256, 1, False, False),
    "speech-2L-bi": (32, 200, 40, 256, 2, True, False),
    "char": (64, 150, 64, 256, 2, False, False),
    "deepbench": (64, 25, 512, 512, 1, False, False),
}
#: DeepBench's LSTM training shapes: H 512/1024 x B 16/64 at T 25 (I = H), H 256 at T 150.
DEEPBENCH_TRAINING = {
    **{f"db-H{H}-B{B}-T25": (B, 25, H, H, 1, False, False) for H in (512, 1024) for B in (16, 64)},
    **{f"db-H256-B{B}-T150": (B, 150, 256, 256, 1, False, False) for B in (16, 64)},
}


def parse_shape(text: str):
    """B,T,I,H[,layers[,bi]] -> (B, T, I, H, layers, bidirectional, forward_only=False)."""
    parts = [p.strip() for p in text.split(",")]
    if not 4 <= len(parts) <= 6:
        raise argparse.ArgumentTypeError(f"--shape is B,T,I,H[,layers[,bi]], got {text!r}")
    try:
        B, T, I, H = (int(p) for p in parts[:4])
        layers = int(parts[4]) if len(parts) > 4 else 1
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shape needs integers B,T,I,H[,layers], got {text!r}") from None
    if min(B, T, I, H, layers) < 1:
        raise argparse.ArgumentTypeError(f"--shape sizes must be >= 1, got {text!r}")
    bi = len(parts) > 5 and parts[5].lower() in ("bi", "1", "true", "yes")
    return (B, T, I, H, layers, bi, False)


def gemm_flops(B, T, I, H, layers, bi, backward: bool) -> float:
    """The LSTM's GEMM work: 2*B*T*4H*(in+H) per layer-direction forward; backward twice that."""
    D = 2 if bi else 1
    total = 0.0
    for layer in range(layers):
        in_size = I if layer == 0 else D * H
        total += D * 2.0 * B * T * 4 * H * (in_size + H)
    return total * (3 if backward else 1)


def torch_calls(torch, model, x):
    """(inference forward, training forward + backward of out.sum()) of a torch.nn.LSTM."""
    def fwd():
        with torch.no_grad():
            model(x)

    def fwd_bwd():
        out, _ = model(x)
        out.sum().backward()
    return fwd, fwd_bwd
