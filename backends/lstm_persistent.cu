// The persistent kernels of the `cuda` backend: one layer-direction's whole time loop in one
// cooperative launch, forward and backward, the recurrent weights kept on chip for all steps.
//
// Shapes (all C-contiguous, time-major); names are base.py's glossary and lstm_kernels.cu's:
//     n_steps (T), B batch, H hidden; G = 4H gate columns in the order i, f, g, o; element
//     (b, q, j) of gate q of row b at b*G + q*H + j.
//     x_proj   (T, B, G)  x @ w_ih.T, one GEMM before the launch (no bias)
//     w_hh     (G, H)     the recurrent weights
//     gates    (T, B, G)  the activated gates, zero where inactive (saved for backward)
//     h_prev, c_prev (T, B, H)  the state entering each step (saved for backward)
//     d_pre    (T, B, G)  the gradient of the pre-activations (input of the weight-gradient
//                         GEMMs after the loop: dW_ih = d_pre.T @ x, dW_hh = d_pre.T @ h_prev)
//     lengths  (B,)       int64; step t of row b is active when t < lengths[b]
//
// Why: the graph path spends two launches and a (B, H) x (H, G) GEMM per step, and the GEMM
// streams all of w_hh from L2 or HBM every step. Here w_hh crosses the chip once: each block
// keeps its slice in shared memory for all T steps, and only the state (B x H floats forward)
// moves between steps. That is the persistent RNN of Diamos et al. (2016); FlashRNN's fused
// kernels and cuDNN's persistent algorithm are built the same way, around the grid barrier of
// a cooperative launch.
//
// Work split: block k owns the hidden units j0 = k*U .. j0+U-1 (U = `units`, a power of two
// from 4 to 32; units >= H in the last block are padding). Its slice: forward, the four gate
// rows of each of its units (4U rows of w_hh, each of length H); backward, w_hh's columns of
// its units (the transposed slice: U columns of length G). A step:
//   1. every block reads the whole previous state (forward h_{t-1}, backward d_pre of the step
//      processed before) from global memory with __ldcg: cached in L2 only, because another
//      SM wrote it during this launch and L1 is not coherent across SMs (for the same reason
//      those pointers are never `const __restrict__`, which would allow the non-coherent
//      read-only path);
//   2. it multiplies the state by its slice: the recurrent product for its own units only;
//   3. it does the pointwise math (lstm_cell.cuh) for its units and all B rows and writes its
//      units' part of the new state;
//   4. grid.sync(): the next step needs every block's part.
// Rows are taken CHUNK at a time (a register tile); the per-row state a block carries (c
// forward, dh and dc backward) lives in global memory owned by that block alone (c_n, dh0,
// dc0), so shared memory does not depend on B.
//
// The product (block_product): thread tid of NT = blockDim.x (a power of two, at most
// LSTM_PERSISTENT_THREADS) owns row group rg = tid % RG (four consecutive rows of the slice: a
// unit's four gates forward, four units backward; RG = U or U/4) and the reduction indices
// k = ks + m*KS, ks = tid / RG, KS = NT / RG. Its weights sit in shared memory in a
// per-thread layout, one Quad (the four rows at one k) at Quad index m*NT + tid: consecutive
// threads read consecutive 16 bytes, no bank conflicts. The state is staged `chunk_cols`
// reduction indices at a time as Quads of four rows (one 16-byte load feeds 16 FMAs and is
// broadcast to the RG threads that share k). Each thread accumulates a 4 x CHUNK tile in
// registers; the KS partial tiles of a row group are summed through shared memory (stride
// NT + 1: conflict-free) and, when there are fewer sums than threads, a shuffle.
//
// Dynamic shared memory, in T elements (cuda_persistent.shared_elements computes the same):
//     weights  4 * NT * kpt            kpt = ceil(K / KS), K = H forward, G backward
//     stage    max(CHUNK * chunk_cols, 4 * CHUNK * (NT + 1))   (the partial tiles reuse it)
//     rec      4 * CHUNK * RG          the products of the current chunk of rows
// chunk_cols is a multiple of KS (a thread's indices then never straddle two chunks).
//
// Launch (cuda_persistent.py plans it): grid = ceil(H / U) blocks, all resident at once (a
// cooperative launch; the grid is sized from the occupancy of this kernel with this shared
// memory, so grid.sync() cannot deadlock), NT threads per block. Ragged batches are masked
// here as in lstm_kernels.cu: an inactive step passes the state (backward: its gradient)
// through and writes zeros to y, gates and d_pre.

#include <cooperative_groups.h>

#include "lstm_cell.cuh"

namespace cg = cooperative_groups;

// Threads per block on a GPU (the launch bound ptxas compiles for) and batch rows per pass of
// the product; cuda_persistent.py reads both from here.
#define LSTM_PERSISTENT_THREADS 256
#define LSTM_PERSISTENT_CHUNK 8

namespace lstm_persistent {

constexpr int CHUNK = LSTM_PERSISTENT_CHUNK;
static_assert(CHUNK % 4 == 0, "rows are staged as quads");

// Four values loaded and stored as one vector (16-byte aligned: LDS.128 for float; two
// 16-byte loads for double).
template <typename T> struct alignas(4 * sizeof(T) > 16 ? 16 : 4 * sizeof(T)) Quad {
    T v[4];
};

template <typename T> struct Shared {
    Quad<T>* weights;   // (kpt * NT) quads: thread tid's m-th at m * NT + tid
    T* stage;           // staged state: quad (b / 4) * chunk_cols + kk holds rows 4(b/4)..+3 at index kk
    T* partial;         // the same memory as stage: value v of thread tid at v * (NT + 1) + tid
    T* rec;             // product of output (q, b, rg) at (q * CHUNK + b) * RG + rg
};

template <typename T>
__device__ __forceinline__ Shared<T> carve(T* base, int nt, int kpt, int chunk_cols, int rg_count) {
    Shared<T> s;
    s.weights = reinterpret_cast<Quad<T>*>(base);
    T* p = base + 4 * nt * kpt;
    s.stage = s.partial = p;
    p += max(CHUNK * chunk_cols, 4 * CHUNK * (nt + 1));
    s.rec = p;
    return s;
}

// rec[(q * CHUNK + b) * RG + rg] = sum over k < K of W[4 rg + q][k] * state[b0 + b][k], for the
// nb <= CHUNK rows from b0, q < 4 and every row group rg; state row r starts at
// state + r * stride. Called by every thread of the block; returns after a __syncthreads.
template <typename T>
__device__ void block_product(const Shared<T>& s, const T* state, int stride, int K, int b0, int nb,
                              int chunk_cols, int rg_count, int ks_count) {
    const int nt = blockDim.x, tid = threadIdx.x;
    const int ks = tid / rg_count;
    const int quads = (nb + 3) / 4;
    T acc[4][CHUNK];
#pragma unroll
    for (int q = 0; q < 4; ++q)
#pragma unroll
        for (int b = 0; b < CHUNK; ++b) acc[q][b] = T(0);
    for (int c0 = 0; c0 < K; c0 += chunk_cols) {
        const int cols = min(chunk_cols, K - c0);
        __syncthreads();   // the previous chunk's stage, or the previous product's partials, are read
        for (int idx = tid; idx < quads * 4 * chunk_cols; idx += nt) {
            const int b = idx / chunk_cols, kk = idx - b * chunk_cols;
            T v = T(0);
            if (b < nb && kk < cols) v = __ldcg(state + (long long)(b0 + b) * stride + c0 + kk);
            s.stage[((b >> 2) * chunk_cols + kk) * 4 + (b & 3)] = v;
        }
        __syncthreads();
        const Quad<T>* staged = reinterpret_cast<const Quad<T>*>(s.stage);
        for (int kk = ks; kk < cols; kk += ks_count) {
            const Quad<T> w = s.weights[((c0 + kk) / ks_count) * nt + tid];
#pragma unroll
            for (int qb = 0; qb < CHUNK / 4; ++qb) {
                if (qb < quads) {
                    const Quad<T> x = staged[qb * chunk_cols + kk];
#pragma unroll
                    for (int q = 0; q < 4; ++q)
#pragma unroll
                        for (int r = 0; r < 4; ++r) acc[q][qb * 4 + r] += w.v[q] * x.v[r];
                }
            }
        }
    }
    __syncthreads();   // every thread is done with the stage: its memory takes the partial tiles
#pragma unroll
    for (int q = 0; q < 4; ++q)
#pragma unroll
        for (int b = 0; b < CHUNK; ++b) s.partial[(q * CHUNK + b) * (nt + 1) + tid] = acc[q][b];
    __syncthreads();
    // Sum each output over its row group's KS threads: `group` threads per output (a power of
    // two: nt and outs are), each over every group-th partial, then a shuffle within the group.
    const int outs = 4 * CHUNK * rg_count;
    const int group = nt > outs ? nt / outs : 1;
    for (int first = 0; first < outs * group; first += nt) {
        const int idx = first + tid, o = idx / group, part = idx - o * group;
        T sum = T(0);
        if (o < outs) {
            const int v = o / rg_count, rg = o - v * rg_count;
            for (int k = part; k < ks_count; k += group) sum += s.partial[v * (nt + 1) + k * rg_count + rg];
        }
        for (int d = group >> 1; d > 0; d >>= 1) sum += __shfl_xor_sync(0xFFFFFFFFu, sum, d);
        if (part == 0 && o < outs) s.rec[o] = sum;
    }
    __syncthreads();
}

}  // namespace lstm_persistent

// Forward through all steps of one layer-direction.
//     x_proj    (T, B, G)  in: x @ w_ih.T
//     w_hh      (G, H)     in: the recurrent weights
//     bias      (G,)       in: bias_ih + bias_hh
//     h0, c0    (B, H)     in: the initial state
//     h_state   out: (T, B, H) when save: h_prev, the hidden state entering each step; else
//               (2, B, H) scratch the steps hand the state over in (the state entering the
//               k-th step processed is in slot k % 2)
//     c_n       (B, H)     out: the cell state, carried through the steps (each block its own
//               units'); the final one at the end
//     c_prev    (T, B, H)  out when save: the cell state entering each step
//     gates     (T, B, G)  out when save: [i, f, g, o], zero where inactive
//     y         (T, B, H)  out: h where active, zero where not
//     h_n       (B, H)     out: the final hidden state
//     lengths   (B,)       in: int64 sequence lengths
//     n_steps   T;  B, H  the batch and hidden sizes;  units  U, hidden units per block
//     chunk_cols  reduction indices staged at a time (a multiple of NT / U)
//     reverse   1 to walk t = T-1 .. 0;  save  1 in training (h_prev, c_prev, gates written)
template <typename T>
__global__ void __launch_bounds__(LSTM_PERSISTENT_THREADS, 1)
lstm_persistent_forward(const T* __restrict__ x_proj, const T* __restrict__ w_hh, const T* __restrict__ bias,
                        const T* __restrict__ h0, const T* __restrict__ c0, T* h_state, T* __restrict__ c_n,
                        T* __restrict__ c_prev, T* __restrict__ gates, T* __restrict__ y, T* __restrict__ h_n,
                        const long long* __restrict__ lengths, int n_steps, int B, int H, int units,
                        int chunk_cols, int reverse, int save) {
    using namespace lstm_persistent;
    DYNAMIC_SHARED(T, shared);
    cg::grid_group grid = cg::this_grid();
    const int nt = blockDim.x, tid = threadIdx.x;
    const int rg_count = units, ks_count = nt / units;
    const int kpt = (H + ks_count - 1) / ks_count;
    const int G = 4 * H, j0 = blockIdx.x * units;
    const long long BH = (long long)B * H;
    const Shared<T> s = carve<T>(shared, nt, kpt, chunk_cols, rg_count);

    {   // this block's four gate rows of each unit, Quad (m, tid) = rows q*H + j at k
        const int rg = tid % rg_count, ks = tid / rg_count, j = j0 + rg;
        for (int m = 0; m < kpt; ++m) {
            const int k = ks + m * ks_count;
            Quad<T> w;
#pragma unroll
            for (int q = 0; q < 4; ++q) w.v[q] = (j < H && k < H) ? w_hh[(long long)(q * H + j) * H + k] : T(0);
            s.weights[m * nt + tid] = w;
        }
    }
    for (int p = tid; p < B * units; p += nt) {
        const int b = p / units, j = j0 + p % units;
        if (j < H) c_n[(long long)b * H + j] = c0[(long long)b * H + j];
    }
    __syncthreads();

    for (int k = 0; k < n_steps; ++k) {
        const int t = reverse ? n_steps - 1 - k : k;
        const int t_next = reverse ? t - 1 : t + 1;
        const T* src = k == 0 ? h0 : h_state + (save ? t : k & 1) * BH;
        T* dst = k + 1 < n_steps ? h_state + (save ? t_next : (k + 1) & 1) * BH : h_n;
        for (int b0 = 0; b0 < B; b0 += CHUNK) {
            const int nb = min(CHUNK, B - b0);
            block_product<T>(s, src, H, H, b0, nb, chunk_cols, rg_count, ks_count);
            for (int p = tid; p < nb * units; p += nt) {
                const int bl = p / units, u = p - bl * units, b = b0 + bl, j = j0 + u;
                if (j >= H) continue;
                const long long e = (long long)b * H + j;
                const long long te = t * BH + e;
                T* gates_e = gates + ((long long)t * B + b) * G + j;
                const T h_before = __ldcg(src + e);
                const T c_before = c_n[e];
                if (save) {
                    c_prev[te] = c_before;
                    if (k == 0) h_state[te] = h_before;     // later steps' h_prev is what the step before wrote
                }
                if (t < lengths[b]) {
                    const T* xp = x_proj + ((long long)t * B + b) * G + j;
                    const T* rec = s.rec + bl * rg_count + u;       // + q * CHUNK * RG for gate q
                    const int gate = CHUNK * rg_count;
                    const CellGates<T> a = cell_gates<T>(xp[0] + bias[j] + rec[0], xp[H] + bias[j + H] + rec[gate],
                                                         xp[2 * H] + bias[j + 2 * H] + rec[2 * gate],
                                                         xp[3 * H] + bias[j + 3 * H] + rec[3 * gate]);
                    T c, h;
                    cell_state<T>(a, c_before, c, h);
                    c_n[e] = c;
                    dst[e] = h;
                    y[te] = h;
                    if (save) {
                        gates_e[0] = a.i;
                        gates_e[H] = a.f;
                        gates_e[2 * H] = a.g;
                        gates_e[3 * H] = a.o;
                    }
                } else {
                    // Inactive: the state passes through untouched and the output is zero.
                    dst[e] = h_before;
                    y[te] = T(0);
                    if (save) gates_e[0] = gates_e[H] = gates_e[2 * H] = gates_e[3 * H] = T(0);
                }
            }
        }
        if (k + 1 < n_steps) grid.sync();
    }
}

// Backward through all steps of one layer-direction (the steps in the opposite order of the
// forward's). The carried dh entering a step is the recurrent product of the step processed
// before it (d_pre[t_after] @ w_hh, this block's units) where that step was active, else the
// carried one, as in lstm_backward_step.
//     w_hh      (G, H)     in: the recurrent weights
//     gates     (T, B, G)  in: the saved [i, f, g, o]
//     c_prev    (T, B, H)  in: the saved cell state entering each step
//     dy        (T, B, H)  in: the gradient of y
//     dh_n, dc_n (B, H)    in: the gradients of the final state
//     d_pre     (T, B, G)  out: the gradient of each step's pre-activations, zero where inactive
//     dh0, dc0  (B, H)     out: the gradients of h0 and c0; during the loop the carried dh
//               (without dy) and dc, each block its own units'
//     lengths   (B,)       in: int64 sequence lengths
//     n_steps, B, H, units, chunk_cols, reverse  as for the forward (units a multiple of 4:
//               the backward slice's row groups are four units)
template <typename T>
__global__ void __launch_bounds__(LSTM_PERSISTENT_THREADS, 1)
lstm_persistent_backward(const T* __restrict__ w_hh, const T* __restrict__ gates, const T* __restrict__ c_prev,
                         const T* __restrict__ dy, const T* __restrict__ dh_n, const T* __restrict__ dc_n,
                         T* d_pre, T* __restrict__ dh0, T* __restrict__ dc0, const long long* __restrict__ lengths,
                         int n_steps, int B, int H, int units, int chunk_cols, int reverse) {
    using namespace lstm_persistent;
    DYNAMIC_SHARED(T, shared);
    cg::grid_group grid = cg::this_grid();
    const int nt = blockDim.x, tid = threadIdx.x;
    const int G = 4 * H, j0 = blockIdx.x * units;
    const int rg_count = units / 4, ks_count = nt / rg_count;
    const int kpt = (G + ks_count - 1) / ks_count;
    const long long BH = (long long)B * H, BG = (long long)B * G;
    const Shared<T> s = carve<T>(shared, nt, kpt, chunk_cols, rg_count);

    {   // w_hh's columns of this block's units, Quad (m, tid) = units 4 rg .. 4 rg + 3 at gate row r
        const int rg = tid % rg_count, ks = tid / rg_count;
        for (int m = 0; m < kpt; ++m) {
            const int r = ks + m * ks_count;
            Quad<T> w;
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const int j = j0 + 4 * rg + q;
                w.v[q] = (j < H && r < G) ? w_hh[(long long)r * H + j] : T(0);
            }
            s.weights[m * nt + tid] = w;
        }
    }
    for (int p = tid; p < B * units; p += nt) {
        const int b = p / units, j = j0 + p % units;
        if (j < H) {
            const long long e = (long long)b * H + j;
            dh0[e] = dh_n[e];
            dc0[e] = dc_n[e];
        }
    }
    __syncthreads();

    for (int k = n_steps - 1; k >= 0; --k) {     // k: the step's place in the forward order
        const int t = reverse ? n_steps - 1 - k : k;
        const bool has_after = k + 1 < n_steps;
        const int t_after = reverse ? t - 1 : t + 1;
        for (int b0 = 0; b0 < B; b0 += CHUNK) {
            const int nb = min(CHUNK, B - b0);
            if (has_after) block_product<T>(s, d_pre + t_after * BG, G, G, b0, nb, chunk_cols, rg_count, ks_count);
            for (int p = tid; p < nb * units; p += nt) {
                const int bl = p / units, u = p - bl * units, b = b0 + bl, j = j0 + u;
                if (j >= H) continue;
                const long long e = (long long)b * H + j;
                const T dh_carried = (has_after && t_after < lengths[b])
                                         ? s.rec[((u & 3) * CHUNK + bl) * rg_count + (u >> 2)] : dh0[e];
                dh0[e] = dh_carried;
                T* dp = d_pre + ((long long)t * B + b) * G + j;
                if (t >= lengths[b]) {
                    dp[0] = dp[H] = dp[2 * H] = dp[3 * H] = T(0);
                    continue;
                }
                const T* ga = gates + ((long long)t * B + b) * G + j;
                const CellGates<T> a{ga[0], ga[H], ga[2 * H], ga[3 * H]};
                const CellGrads<T> d = cell_backward<T>(a, c_prev[t * BH + e], dh_carried + dy[t * BH + e], dc0[e]);
                dp[0] = d.d_i;
                dp[H] = d.d_f;
                dp[2 * H] = d.d_g;
                dp[3 * H] = d.d_o;
                dc0[e] = d.dc_prev;
            }
        }
        grid.sync();     // the next step (and the last product) reads every block's d_pre[t]
    }
    // dh0: the recurrent product of the step processed last (the first in forward order) where
    // it was active, else the carried gradient.
    const int t_first = reverse ? n_steps - 1 : 0;
    for (int b0 = 0; b0 < B; b0 += CHUNK) {
        const int nb = min(CHUNK, B - b0);
        block_product<T>(s, d_pre + t_first * BG, G, G, b0, nb, chunk_cols, rg_count, ks_count);
        for (int p = tid; p < nb * units; p += nt) {
            const int bl = p / units, u = p - bl * units, b = b0 + bl, j = j0 + u;
            if (j < H && t_first < lengths[b]) dh0[(long long)b * H + j] = s.rec[((u & 3) * CHUNK + bl) * rg_count + (u >> 2)];
        }
    }
}
