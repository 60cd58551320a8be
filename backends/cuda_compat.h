// The CUDA device API for the host build of the backend's .cu files (CI has no GPU): g++
// compiles the very same kernel source against this header, and the fiber runtime in
// cuda_fibers.h runs each launch (every CUDA thread a fiber, blocks on a pool of OS threads).
//
// What a kernel may use here (the rule: anything else fails to build, so the host build never
// silently means something other than CUDA):
//   qualifiers    __global__ __device__ __host__ __forceinline__ __noinline__ __restrict__
//                 __launch_bounds__(...) (ignored here; ptxas honours it)
//   indices       threadIdx blockIdx blockDim gridDim warpSize
//   memory        __shared__ variables (per block); DYNAMIC_SHARED(T, name) for the launch's
//                 dynamic shared memory (`extern __shared__` does not build: NVRTC gets
//                 DYNAMIC_SHARED from cuda.py's compile options, so both compilers read the same
//                 source); __ldg, __ldcg (plain loads here: the fibers' memory is coherent)
//   barriers      __syncthreads, __syncthreads_count/_and/_or, __syncwarp(mask),
//                 cooperative_groups::this_thread_block().sync(), this_grid().sync() (include
//                 <cooperative_groups.h>: the build maps it to cuda_cooperative_groups.h, the subset emulated)
//   warps         __shfl_sync, __shfl_up_sync, __shfl_down_sync, __shfl_xor_sync on 4- and
//                 8-byte arithmetic types; __ballot_sync, __any_sync, __all_sync
//   atomics       atomicAdd (int, unsigned, unsigned long long, float, double), atomicSub (int,
//                 unsigned), atomicExch (int, unsigned, unsigned long long, float), atomicMin and
//                 atomicMax (int, unsigned, long long, unsigned long long), atomicInc, atomicDec
//                 (unsigned), atomicCAS (int, unsigned, unsigned long long, unsigned short),
//                 atomicAnd/Or/Xor (int, unsigned, unsigned long long); __threadfence,
//                 __threadfence_block, __threadfence_system
//   math          the C/C++ math library (<cmath>: tanhf, expf, fmaf...), min/max on int,
//                 unsigned, long long, unsigned long long, float and double, __expf, __logf,
//                 __fdividef, rsqrtf, rsqrt, __saturatef
// Not here (does not build): __constant__, extern __shared__, __activemask, clusters, tensor-core
// and async-copy intrinsics, textures, half types, printf-free device runtime calls, dynamic
// parallelism. Float results can differ from a GPU in the last bits (no -ftz, different tanh).
// The semantics and the checks the runtime makes are described in cuda_fibers.h.
#pragma once
#define LSTM_ENGINE_CUDA_COMPAT 1

#ifdef __CUDACC__
#error "cuda_compat.h is for the host emulation build only; NVRTC compiles the .cu files as they are"
#endif

#include <cmath>
#include <cstring>
#include <math.h>
#include <type_traits>

#include "cuda_fibers.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
// A block's threads all run on one OS thread, one block at a time: thread_local storage is
// per block. `extern __shared__` becomes `extern static ...`, which does not build (on purpose).
#define __shared__ static thread_local
#define DYNAMIC_SHARED(T, name) T* const name = reinterpret_cast<T*>(::emu::worker().dynamic_shared.data)
// g++ spells __restrict__ the same way, so it needs no mapping.

constexpr int warpSize = 32;

// -- barriers ----------------------------------------------------------------------------------
// The call site (file, line) identifies a barrier: threads of one block must meet at the same one.
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::emu::block_barrier(file, line, 0);
}
inline int __syncthreads_count(int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return static_cast<int>(::emu::block_barrier(file, line, predicate != 0) & 0xFFFFFFFFu);
}
inline int __syncthreads_and(int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    const unsigned long long r = ::emu::block_barrier(file, line, predicate != 0);
    return (r & 0xFFFFFFFFu) == (r >> 32);
}
inline int __syncthreads_or(int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return (::emu::block_barrier(file, line, predicate != 0) & 0xFFFFFFFFu) != 0;
}
inline void __syncwarp(unsigned mask = 0xFFFFFFFFu) {
    ::emu::warp_op(::emu::WarpOp::sync, mask, 0, 0, 32, 0);
}

// -- warp shuffles and votes ---------------------------------------------------------------------
namespace emu {
template <typename T>
inline T shuffle(WarpOp op, unsigned mask, T var, int operand, int width) {
    static_assert(std::is_arithmetic<T>::value && (sizeof(T) == 4 || sizeof(T) == 8),
                  "the emulator shuffles 4- and 8-byte arithmetic types only");
    unsigned long long bits = 0;
    memcpy(&bits, &var, sizeof(T));
    bits = warp_op(op, mask, bits, operand, width, 0);
    T out;
    memcpy(&out, &bits, sizeof(T));
    return out;
}
}  // namespace emu

template <typename T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize) {
    return ::emu::shuffle(::emu::WarpOp::shfl_idx, mask, var, src_lane, width);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned int delta, int width = warpSize) {
    return ::emu::shuffle(::emu::WarpOp::shfl_up, mask, var, static_cast<int>(delta), width);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned int delta, int width = warpSize) {
    return ::emu::shuffle(::emu::WarpOp::shfl_down, mask, var, static_cast<int>(delta), width);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {
    return ::emu::shuffle(::emu::WarpOp::shfl_xor, mask, var, lane_mask, width);
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
    return static_cast<unsigned>(::emu::warp_op(::emu::WarpOp::ballot, mask, 0, 0, 32, predicate != 0));
}
inline int __any_sync(unsigned mask, int predicate) {
    return static_cast<int>(::emu::warp_op(::emu::WarpOp::any, mask, 0, 0, 32, predicate != 0));
}
inline int __all_sync(unsigned mask, int predicate) {
    return static_cast<int>(::emu::warp_op(::emu::WarpOp::all, mask, 0, 0, 32, predicate != 0));
}

// -- atomics: real ones, since blocks run on several OS threads ------------------------------------
// CUDA's atomics are relaxed; fences and barriers order them.
namespace emu {
template <typename T, typename F>
inline T atomic_update(T* address, F update) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "4- and 8-byte atomics only");
    T old = __atomic_load_n(address, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(address, &old, update(old), true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
template <typename T, typename F>
inline T atomic_update_float(T* address, F update) {
    using Bits = typename std::conditional<sizeof(T) == 4, unsigned int, unsigned long long>::type;
    Bits* bits = reinterpret_cast<Bits*>(address);
    Bits old = __atomic_load_n(bits, __ATOMIC_RELAXED);
    for (;;) {
        T old_value, new_value;
        memcpy(&old_value, &old, sizeof(T));
        new_value = update(old_value);
        Bits desired;
        memcpy(&desired, &new_value, sizeof(T));
        if (__atomic_compare_exchange_n(bits, &old, desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            return old_value;
    }
}
}  // namespace emu

#define EMU_ATOMIC_FETCH(name, builtin, T) \
    inline T name(T* address, T val) { return builtin(address, val, __ATOMIC_RELAXED); }
EMU_ATOMIC_FETCH(atomicAdd, __atomic_fetch_add, int)
EMU_ATOMIC_FETCH(atomicAdd, __atomic_fetch_add, unsigned int)
EMU_ATOMIC_FETCH(atomicAdd, __atomic_fetch_add, unsigned long long)
EMU_ATOMIC_FETCH(atomicSub, __atomic_fetch_sub, int)
EMU_ATOMIC_FETCH(atomicSub, __atomic_fetch_sub, unsigned int)
EMU_ATOMIC_FETCH(atomicExch, __atomic_exchange_n, int)
EMU_ATOMIC_FETCH(atomicExch, __atomic_exchange_n, unsigned int)
EMU_ATOMIC_FETCH(atomicExch, __atomic_exchange_n, unsigned long long)
EMU_ATOMIC_FETCH(atomicAnd, __atomic_fetch_and, int)
EMU_ATOMIC_FETCH(atomicAnd, __atomic_fetch_and, unsigned int)
EMU_ATOMIC_FETCH(atomicAnd, __atomic_fetch_and, unsigned long long)
EMU_ATOMIC_FETCH(atomicOr, __atomic_fetch_or, int)
EMU_ATOMIC_FETCH(atomicOr, __atomic_fetch_or, unsigned int)
EMU_ATOMIC_FETCH(atomicOr, __atomic_fetch_or, unsigned long long)
EMU_ATOMIC_FETCH(atomicXor, __atomic_fetch_xor, int)
EMU_ATOMIC_FETCH(atomicXor, __atomic_fetch_xor, unsigned int)
EMU_ATOMIC_FETCH(atomicXor, __atomic_fetch_xor, unsigned long long)
#undef EMU_ATOMIC_FETCH

inline float atomicAdd(float* address, float val) {
    return ::emu::atomic_update_float(address, [val](float old) { return old + val; });
}
inline double atomicAdd(double* address, double val) {
    return ::emu::atomic_update_float(address, [val](double old) { return old + val; });
}
inline float atomicExch(float* address, float val) {
    return ::emu::atomic_update_float(address, [val](float) { return val; });
}

#define EMU_ATOMIC_MINMAX(T)                                                                     \
    inline T atomicMin(T* address, T val) {                                                      \
        return ::emu::atomic_update(address, [val](T old) { return old < val ? old : val; });    \
    }                                                                                            \
    inline T atomicMax(T* address, T val) {                                                      \
        return ::emu::atomic_update(address, [val](T old) { return old > val ? old : val; });    \
    }
EMU_ATOMIC_MINMAX(int)
EMU_ATOMIC_MINMAX(unsigned int)
EMU_ATOMIC_MINMAX(long long)
EMU_ATOMIC_MINMAX(unsigned long long)
#undef EMU_ATOMIC_MINMAX

inline unsigned int atomicInc(unsigned int* address, unsigned int val) {
    return ::emu::atomic_update(address, [val](unsigned int old) { return old >= val ? 0u : old + 1; });
}
inline unsigned int atomicDec(unsigned int* address, unsigned int val) {
    return ::emu::atomic_update(address, [val](unsigned int old) { return (old == 0 || old > val) ? val : old - 1; });
}

#define EMU_ATOMIC_CAS(T)                                                                       \
    inline T atomicCAS(T* address, T compare, T val) {                                          \
        __atomic_compare_exchange_n(address, &compare, val, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED); \
        return compare;                                                                         \
    }
EMU_ATOMIC_CAS(int)
EMU_ATOMIC_CAS(unsigned int)
EMU_ATOMIC_CAS(unsigned long long)
EMU_ATOMIC_CAS(unsigned short)
#undef EMU_ATOMIC_CAS

inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// -- loads and math --------------------------------------------------------------------------------
template <typename T>
inline T __ldg(const T* p) { return *p; }
template <typename T>
inline T __ldcg(const T* p) { return *p; }

#define EMU_MINMAX(T)                                             \
    inline T min(T a, T b) { return a < b ? a : b; }             \
    inline T max(T a, T b) { return a > b ? a : b; }
EMU_MINMAX(int)
EMU_MINMAX(unsigned int)
EMU_MINMAX(long long)
EMU_MINMAX(unsigned long long)
EMU_MINMAX(float)
EMU_MINMAX(double)
#undef EMU_MINMAX

inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }

// -- launching -------------------------------------------------------------------------------------
// Runs `kernel(args...)` on every thread of the launch described by `config` (see
// emu_launch_config in cuda_fibers.h). The generated entry points of cuda_host.py call this.
template <typename... P, typename... A>
inline void emu_launch(const emu_launch_config& config, const char* name, void (*kernel)(P...), A... args) {
    using Args = std::tuple<P...>;
    ::emu::Call<void (*)(P...), Args> call{kernel, Args(static_cast<P>(args)...)};
    ::emu::launch(config, name, &::emu::Call<void (*)(P...), Args>::invoke, &call);
}
