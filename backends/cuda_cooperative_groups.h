// The part of CUDA's <cooperative_groups.h> that the fiber emulator runs (cuda_fibers.h): the
// thread block and the grid of a cooperative launch, each with sync(). Anything else of the
// real header (tiled_partition, coalesced groups, reductions, memcpy_async...) is absent, so a
// kernel that uses it does not build for the emulator. NVRTC reads the real header instead.
#pragma once

#ifndef LSTM_ENGINE_CUDA_COMPAT
#error "include cuda_compat.h first: this header is the emulator's cooperative_groups subset"
#endif

namespace cooperative_groups {

class thread_block {
  public:
    // The same barrier as __syncthreads(), identified by its call site.
    void sync(const char* file = __builtin_FILE(), int line = __builtin_LINE()) const {
        ::emu::block_barrier(file, line, 0);
    }
    unsigned int thread_rank() const { return (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x; }
    unsigned int size() const { return num_threads(); }
    unsigned int num_threads() const { return blockDim.x * blockDim.y * blockDim.z; }
    dim3 group_index() const { return blockIdx; }
    dim3 thread_index() const { return threadIdx; }
    dim3 group_dim() const { return blockDim; }
    dim3 dim_threads() const { return blockDim; }
};

inline thread_block this_thread_block() { return thread_block(); }

class grid_group {
  public:
    // Every thread of the grid waits here until all have arrived; only in a cooperative launch.
    void sync(const char* file = __builtin_FILE(), int line = __builtin_LINE()) const {
        ::emu::grid_sync(file, line);
    }
    bool is_valid() const {
        const ::emu::Fiber* f = ::emu::worker().current;
        return f != nullptr && f->block->launch->cooperative;
    }
    unsigned long long num_threads() const {
        return static_cast<unsigned long long>(num_blocks()) * blockDim.x * blockDim.y * blockDim.z;
    }
    unsigned long long size() const { return num_threads(); }
    unsigned long long thread_rank() const {
        return static_cast<unsigned long long>(block_rank()) * blockDim.x * blockDim.y * blockDim.z +
               this_thread_block().thread_rank();
    }
    unsigned int num_blocks() const { return gridDim.x * gridDim.y * gridDim.z; }
    unsigned int block_rank() const { return (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x; }
    dim3 block_index() const { return blockIdx; }
    dim3 group_dim() const { return gridDim; }
    dim3 dim_blocks() const { return gridDim; }
};

inline grid_group this_grid() { return grid_group(); }

template <typename Group>
inline void sync(const Group& group, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    group.sync(file, line);
}

}  // namespace cooperative_groups
