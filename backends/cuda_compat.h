// Host stand-ins for the CUDA built-ins used by lstm_kernels.cu, so CI (no GPU) can compile the
// very same kernel source with g++ and check it against the NumPy reference.
//
// A launch runs its grid sequentially: every block, every thread, one after the other, on the
// calling host thread. That is only faithful for kernels whose threads are independent (no
// __syncthreads, no shared memory, no warp intrinsics, no atomics across threads), which is
// the rule lstm_kernels.cu keeps; using any of those here fails to compile on purpose.
#pragma once

#ifdef __CUDACC__
#error "cuda_compat.h is for the host emulation build only; NVRTC compiles lstm_kernels.cu as is"
#endif

#include <cmath>
#include <math.h>

struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

// thread_local keeps two emulated launches on different host threads from sharing indices.
inline thread_local dim3 threadIdx(0, 0, 0);
inline thread_local dim3 blockIdx(0, 0, 0);
inline thread_local dim3 blockDim(1, 1, 1);
inline thread_local dim3 gridDim(1, 1, 1);

#define __global__
#define __device__
#define __forceinline__ inline
// g++ spells __restrict__ the same way, so it needs no mapping.

// Runs `kernel(args...)` for every (block, thread) of the launch, x fastest.
template <typename Kernel, typename... Args>
void emu_launch(dim3 grid, dim3 block, Kernel kernel, Args... args) {
    gridDim = grid;
    blockDim = block;
    for (unsigned int bz = 0; bz < grid.z; ++bz)
        for (unsigned int by = 0; by < grid.y; ++by)
            for (unsigned int bx = 0; bx < grid.x; ++bx)
                for (unsigned int tz = 0; tz < block.z; ++tz)
                    for (unsigned int ty = 0; ty < block.y; ++ty)
                        for (unsigned int tx = 0; tx < block.x; ++tx) {
                            blockIdx = dim3(bx, by, bz);
                            threadIdx = dim3(tx, ty, tz);
                            kernel(args...);
                        }
}
