// Kernels that break a rule of CUDA's execution model, each in one way the fiber emulator
// (backends/cuda_fibers.h) must catch and report instead of computing something: valid C++ that
// NVRTC compiles too (tests/test_cuda_compile.py), wrong only when run.
//   out (gridDim.x * blockDim.x,) float in every kernel.
#include <cooperative_groups.h>

namespace cg = cooperative_groups;

// Half the block waits at one barrier, the other half at another.
__global__ void divergent_barrier(float* out) {
    if (threadIdx.x < blockDim.x / 2) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1.0f;
}

// The upper half-warp returns, then the lower half shuffles with a full mask.
__global__ void shuffle_names_returned_lanes(float* out) {
    if (threadIdx.x >= 16) return;
    out[threadIdx.x] = __shfl_down_sync(0xFFFFFFFFu, static_cast<float>(threadIdx.x), 1);
}

// Lane 0 waits in __syncwarp for lanes that wait at __syncthreads.
__global__ void warp_and_block_deadlock(float* out) {
    if (threadIdx.x == 0) {
        __syncwarp();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1.0f;
}

// grid.sync() in a launch made without the cooperative flag (call it that way).
__global__ void grid_sync_needs_cooperative_launch(float* out) {
    cg::this_grid().sync();
    out[blockIdx.x * blockDim.x + threadIdx.x] = 1.0f;
}

// Block 1 returns while block 0 waits in grid.sync() (launch cooperatively, 2 blocks).
__global__ void block_leaves_grid_sync(float* out) {
    if (blockIdx.x == 1) return;
    cg::this_grid().sync();
    out[threadIdx.x] = 1.0f;
}

// Mask 0x3 called by lane 5 (not in it).
__global__ void shuffle_mask_without_caller(float* out) {
    out[threadIdx.x] = __shfl_sync(0x3u, 1.0f, 0);
}
