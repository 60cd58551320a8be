// Kernels that test the fiber emulator (backends/cuda_fibers.h) against what CUDA documents;
// tests/test_cuda_emulator.py runs them under g++ + the emulator, and tests/test_cuda_compile.py
// compiles them with NVRTC for sm_80/sm_90 like the backend's own kernels, so both compilers
// read this same source. Each uses one feature the backend's pointwise kernels do not:
// shared memory, barriers, warp shuffles and votes, atomics, a cooperative grid.sync().
//
// Launch shapes are given per kernel; `n` is the number of elements, every array is
// C-contiguous, and one thread handles one element unless said otherwise.
#include <cooperative_groups.h>

namespace cg = cooperative_groups;

// A block's sum, the usual way: each warp reduces with __shfl_down_sync, lane 0 of each warp
// puts its warp's sum in shared memory, a barrier, then warp 0 reduces those with
// __shfl_xor_sync (so every lane of warp 0 ends with the total).
//   x (n,) input; block_sums (gridDim.x,) one sum per block. blockDim.x a multiple of 32, <= 1024.
template <typename T>
__global__ void block_reduce(const T* __restrict__ x, T* __restrict__ block_sums, int n) {
    __shared__ T warp_sums[32];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    T v = i < n ? x[i] : T(0);
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xFFFFFFFFu, v, offset);
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        const unsigned n_warps = blockDim.x / 32;
        v = lane < n_warps ? warp_sums[lane] : T(0);
        for (int mask = 16; mask > 0; mask /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, mask);
        if (lane == 0) block_sums[blockIdx.x] = v;
    }
}

// x divided by the sum of all of x, in one cooperative launch: phase 1 writes each block's sum
// (block_reduce's scheme, in dynamic shared memory), grid.sync(), phase 2 has every block read
// all the block sums. Needs cooperative launch, dynamic shared memory of 32 * sizeof(T).
//   x (n,); block_sums (gridDim.x,) scratch; y (n,) = x / sum(x); n <= gridDim.x * blockDim.x.
template <typename T>
__global__ void normalise_two_phase(const T* __restrict__ x, T* __restrict__ block_sums, T* __restrict__ y, int n) {
    DYNAMIC_SHARED(T, warp_sums);
    cg::grid_group grid = cg::this_grid();
    cg::thread_block block = cg::this_thread_block();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    T v = i < n ? x[i] : T(0);
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xFFFFFFFFu, v, offset);
    if (lane == 0) warp_sums[warp] = v;
    block.sync();
    if (threadIdx.x == 0) {
        T s = T(0);
        for (unsigned w = 0; w < blockDim.x / 32; ++w) s += warp_sums[w];
        block_sums[blockIdx.x] = s;
    }
    grid.sync();
    T total = T(0);
    for (unsigned b = 0; b < gridDim.x; ++b) total += block_sums[b];
    if (i < n) y[i] = x[i] / total;
}

// y[i] = x[i] + x[i + 1] within a block, through shared memory (the last thread of a block
// adds its own value twice). With with_barrier == 0 the barrier between the shared-memory
// write and the neighbour's read is missing: a bug that shows only under some schedules.
//   x, y (gridDim.x * blockDim.x,); with_barrier: uniform over the launch.
template <typename T>
__global__ void neighbour_sum(const T* __restrict__ x, T* __restrict__ y, int with_barrier) {
    __shared__ T tile[1024];
    const unsigned t = threadIdx.x;
    const int i = blockIdx.x * blockDim.x + t;
    tile[t] = x[i];
    if (with_barrier) __syncthreads();
    y[i] = tile[t] + tile[t + 1 < blockDim.x ? t + 1 : t];
}

// Integer atomics on shared counters, every thread of the grid taking part:
//   counters (8,) int: [0] += 1 (atomicAdd), [1] max of thread ids, [2] min of thread ids,
//   [3] += 1 through an atomicCAS loop, [4] |= 1 << (id % 31), [5] -= 1 (atomicSub);
//   wraps (1,) unsigned: atomicInc with limit `limit`; order (n,) int: the value of [0] each
//   thread saw (a permutation of 0..n-1 if atomicAdd is atomic).
__global__ void integer_atomics(int* __restrict__ counters, unsigned* __restrict__ wraps,
                                int* __restrict__ order, int n, int limit) {
    const int id = blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= n) return;
    order[id] = atomicAdd(&counters[0], 1);
    atomicMax(&counters[1], id);
    atomicMin(&counters[2], id);
    int seen = counters[3], assumed;
    do {
        assumed = seen;
        seen = atomicCAS(&counters[3], assumed, assumed + 1);
    } while (seen != assumed);
    atomicOr(&counters[4], 1 << (id % 31));
    atomicSub(&counters[5], 1);
    atomicInc(wraps, static_cast<unsigned>(limit));
}

// A floating-point sum by atomicAdd from every thread.   x (n,); total (1,).
template <typename T>
__global__ void atomic_sum(const T* __restrict__ x, T* __restrict__ total, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) atomicAdd(total, x[i]);
}

// One warp shuffle or vote per thread, for checking the emulator against CUDA's documented
// semantics. Lane l (linear thread index % 32) holds 100 + linear index; lanes in `mask` call
//   op 0 __shfl_sync(mask, v, operand, width)      op 1 __shfl_up_sync(mask, v, operand, width)
//   op 2 __shfl_down_sync(mask, v, operand, width) op 3 __shfl_xor_sync(mask, v, operand, width)
//   op 4 __ballot_sync(mask, lane % operand == 0)  op 5 __any_sync / op 6 __all_sync, same predicate
// and write the result to out[linear index]; the others write -1. Any block shape (2-D blocks
// check the lane numbering).   out (gridDim.x * threads per block,) int.
__global__ void warp_probe(int* __restrict__ out, int op, int operand, int width, unsigned mask) {
    const unsigned t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    const unsigned lane = t % 32;
    const int slot = blockIdx.x * (blockDim.x * blockDim.y * blockDim.z) + t;
    const int v = 100 + static_cast<int>(t);
    if (!(mask >> lane & 1u)) {
        out[slot] = -1;
        return;
    }
    const int predicate = operand > 0 && lane % operand == 0;
    switch (op) {
        case 0: out[slot] = __shfl_sync(mask, v, operand, width); break;
        case 1: out[slot] = __shfl_up_sync(mask, v, operand, width); break;
        case 2: out[slot] = __shfl_down_sync(mask, v, operand, width); break;
        case 3: out[slot] = __shfl_xor_sync(mask, v, operand, width); break;
        case 4: out[slot] = static_cast<int>(__ballot_sync(mask, predicate)); break;
        case 5: out[slot] = __any_sync(mask, predicate); break;
        default: out[slot] = __all_sync(mask, predicate); break;
    }
}

// __syncthreads_count/_and/_or and an early return before a barrier (returned threads count
// as arrived). Threads with id >= active return first; the rest vote `threadIdx.x % 3 == 0`.
//   out (gridDim.x * blockDim.x, 3) int: count, and, or as each remaining thread saw them.
__global__ void barrier_votes(int* __restrict__ out, int active) {
    if (static_cast<int>(threadIdx.x) >= active) return;
    const int predicate = threadIdx.x % 3 == 0;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    out[3 * i] = __syncthreads_count(predicate);
    out[3 * i + 1] = __syncthreads_and(predicate);
    out[3 * i + 2] = __syncthreads_or(predicate);
}

// A barrier-bound loop to measure the emulator's context switches: `rounds` times, every
// thread adds its neighbour's value through shared memory (two barriers per round).
//   x (gridDim.x * blockDim.x,) float, updated in place.
__global__ void barrier_loop(float* __restrict__ x, int rounds) {
    __shared__ float tile[1024];
    const unsigned t = threadIdx.x;
    const int i = blockIdx.x * blockDim.x + t;
    float v = x[i];
    for (int r = 0; r < rounds; ++r) {
        tile[t] = v;
        __syncthreads();
        v += 0.5f * tile[(t + 1) % blockDim.x];
        __syncthreads();
    }
    x[i] = v;
}

// Block 0's thread 0 waits for a flag that block 1's thread 0 sets: only correct if both blocks
// are resident at once, which a cooperative launch guarantees (the emulator: one OS thread per
// block). Launch cooperatively with 2 blocks.   flag (1,) int, 0 on entry; out (1,) int.
__global__ void spin_handshake(int* flag, int* out) {
    if (threadIdx.x != 0) return;
    if (blockIdx.x == 1) {
        atomicExch(flag, 1);
    } else {
        while (atomicAdd(flag, 0) == 0) {
        }
        out[0] = 1;
    }
}
