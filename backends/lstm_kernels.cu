// The pointwise kernels of the `cuda` backend: one LSTM step's gate math, forward and backward.
//
// Shapes (all C-contiguous, time-major); the names are base.py's glossary, and a `_t` suffix
// means "step t's slice of" (the pointer already points at it):
//     T steps, B batch, I inputs, H hidden; G = 4H gate columns in the order i, f, g, o.
//     x_proj   (T, B, G)  x @ w_ih.T, one GEMM over all T*B rows before the loop (no bias)
//     bias     (G,)       bias_ih + bias_hh, added here rather than in a separate pass
//     gates    (T, B, G)  the activated gates [i, f, g, o], saved for backward
//     h_prev, c_prev (T, B, H)  the state entering each step, saved for backward
//     d_pre    (T, B, G)  gradient of the gate pre-activations (input of the GEMMs after the loop)
//     lengths  (B,)       int64; step t of row b is active when t < lengths[b]
// Memory layout of a gate row b: [i_0..i_{H-1}, f_0.., g_0.., o_0..], so element (b, q, j) of
// gate q sits at b*G + q*H + j. The math of a step is lstm_cell.cuh's (reference.step_forward
// and reference.step_backward, which the tests hold these kernels to).
//
// Launch: one thread per (b, j), b < B, j < H, on a 1-D grid of ceil(B*H / block) blocks.
// No shared memory and no __syncthreads: every thread owns its (b, j) element of h, c, dh, dc,
// so threads never wait for each other. Reductions (the bias gradient) are left to the array
// library. CI compiles this file with NVRTC (cuda_compile.py) and runs it under the host
// emulator (cuda_compat.h).
//
// The parameters of each kernel are listed once more, in cuda.py's KERNELS table, from which
// both launchers build their calls; a test checks the two agree (names, types, order).
// Instantiated for float and double through NVRTC name expressions, e.g.
// "lstm_forward_step<float>".

#include "lstm_cell.cuh"

// One forward step t: pre = x_proj_t + rec + bias, the gates, and the new state.
//     x_proj_t  (B, G)  in: x[t] @ w_ih.T
//     rec       (B, G)  in: h_prev_t @ w_hh.T, this step's recurrent GEMM
//     bias      (G,)    in: bias_ih + bias_hh
//     h_prev_t, c_prev_t (B, H)  in: the state entering step t
//     h_out, c_out (B, H)  out: the state after step t (h_prev_t, c_prev_t where inactive)
//     y_t       (B, H)  out: the step's output, h where active, zero where not
//     gates_t   (B, G)  out when save: [i, f, g, o], zero where inactive
//     lengths   (B,)    in: int64 sequence lengths
//     t         the step's index in time;  B, H  the batch and hidden sizes
//     save      1 in training (write gates_t), 0 in inference (gates_t is left alone)
template <typename T>
__global__ void lstm_forward_step(const T* __restrict__ x_proj_t, const T* __restrict__ rec,
                                  const T* __restrict__ bias,
                                  const T* __restrict__ h_prev_t, const T* __restrict__ c_prev_t,
                                  T* __restrict__ h_out, T* __restrict__ c_out,
                                  T* __restrict__ y_t, T* __restrict__ gates_t,
                                  const long long* __restrict__ lengths,
                                  int t, int B, int H, int save) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)B * H) return;
    const int b = (int)(idx / H);
    const int j = (int)(idx % H);
    const long long s = idx;                       // (b, j) in a (B, H) array
    const long long q = (long long)b * 4 * H + j;  // (b, j) of gate i in a (B, G) array
    if (t >= lengths[b]) {
        // Inactive: the state passes through untouched and the output is zero.
        h_out[s] = h_prev_t[s];
        c_out[s] = c_prev_t[s];
        y_t[s] = T(0);
        if (save) {
            // Backward multiplies by these only where the step is active; zeros keep the
            // saved buffer deterministic.
            gates_t[q] = gates_t[q + H] = gates_t[q + 2 * H] = gates_t[q + 3 * H] = T(0);
        }
        return;
    }
    const CellGates<T> a = cell_gates<T>(x_proj_t[q] + rec[q] + bias[j], x_proj_t[q + H] + rec[q + H] + bias[j + H],
                                         x_proj_t[q + 2 * H] + rec[q + 2 * H] + bias[j + 2 * H],
                                         x_proj_t[q + 3 * H] + rec[q + 3 * H] + bias[j + 3 * H]);
    T c, h;
    cell_state<T>(a, c_prev_t[s], c, h);
    h_out[s] = h;
    c_out[s] = c;
    y_t[s] = h;
    if (save) {
        gates_t[q] = a.i;
        gates_t[q + H] = a.f;
        gates_t[q + 2 * H] = a.g;
        gates_t[q + 3 * H] = a.o;
    }
}

// One backward step t. The carried dh entering step t is rec (= d_pre[t_after] @ w_hh) where
// the step processed just before (t_after, later in the forward direction) was active, and
// the carried dh_buf where it was inactive or did not exist (has_after == 0): an inactive step
// passed h through, so it passes its gradient through too.
//     gates_t   (B, G)  in: the saved [i, f, g, o] of step t
//     c_prev_t  (B, H)  in: the saved cell state entering step t (c is recomputed from it)
//     dy_t      (B, H)  in: the gradient of y at step t
//     rec       (B, H)  in: d_pre[t_after] @ w_hh, the previous backward step's GEMM
//     dh_buf    (B, H)  in/out: the carried gradient of h; out: the one entering step t
//     dc_buf    (B, H)  in/out: the carried gradient of c; out: the one of c_prev_t
//     d_pre_t   (B, G)  out: the gradient of step t's pre-activations, zero where inactive
//     lengths   (B,)    in: int64 sequence lengths
//     t         the step's index in time;  t_after  the step backward processed before it
//     has_after 0 for the first backward step (no t_after), else 1;  B, H  the sizes
template <typename T>
__global__ void lstm_backward_step(const T* __restrict__ gates_t, const T* __restrict__ c_prev_t,
                                   const T* __restrict__ dy_t, const T* __restrict__ rec,
                                   T* __restrict__ dh_buf, T* __restrict__ dc_buf,
                                   T* __restrict__ d_pre_t, const long long* __restrict__ lengths,
                                   int t, int t_after, int has_after, int B, int H) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)B * H) return;
    const int b = (int)(idx / H);
    const int j = (int)(idx % H);
    const long long s = idx;
    const long long q = (long long)b * 4 * H + j;
    const T dh_carried = (has_after && t_after < lengths[b]) ? rec[s] : dh_buf[s];
    dh_buf[s] = dh_carried;
    if (t >= lengths[b]) {
        d_pre_t[q] = d_pre_t[q + H] = d_pre_t[q + 2 * H] = d_pre_t[q + 3 * H] = T(0);
        return;
    }
    const CellGates<T> a{gates_t[q], gates_t[q + H], gates_t[q + 2 * H], gates_t[q + 3 * H]};
    const CellGrads<T> d = cell_backward<T>(a, c_prev_t[s], dh_carried + dy_t[s], dc_buf[s]);
    d_pre_t[q] = d.d_i;
    d_pre_t[q + H] = d.d_f;
    d_pre_t[q + 2 * H] = d.d_g;
    d_pre_t[q + 3 * H] = d.d_o;
    dc_buf[s] = d.dc_prev;
}

// After the last backward step (t_first, the first step in the forward direction): the
// gradient of h0 is that step's recurrent GEMM where it was active, else the carried one.
//     rec       (B, H)  in: d_pre[t_first] @ w_hh
//     dh_buf    (B, H)  in: the carried gradient of h
//     dh0       (B, H)  out: the gradient of h0
//     lengths   (B,)    in: int64 sequence lengths
//     t_first   the step forward processed first (0, or T-1 in reverse);  B, H  the sizes
template <typename T>
__global__ void lstm_backward_finish(const T* __restrict__ rec, const T* __restrict__ dh_buf,
                                     T* __restrict__ dh0, const long long* __restrict__ lengths,
                                     int t_first, int B, int H) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)B * H) return;
    const int b = (int)(idx / H);
    dh0[idx] = (t_first < lengths[b]) ? rec[idx] : dh_buf[idx];
}
