// The pointwise kernels of the `cuda` backend: one LSTM step's gate math, forward and backward.
//
// Shapes (all C-contiguous, time-major; pointers below already point at step t's slice):
//     T steps, B batch, I inputs, H hidden; G = 4H gate columns in the order i, f, g, o.
//     x_proj_t (B, G)   x[t] @ w_ih.T, one GEMM over all T*B rows before the loop (no bias)
//     rec      (B, G)   forward: h_prev @ w_hh.T, this step's recurrent GEMM
//              (B, H)   backward: d_pre[t_after] @ w_hh, the previous backward step's GEMM
//     bias     (G,)     bias_ih + bias_hh, added here rather than in a separate pass
//     h, c     (B, H)   the carried state; a step reads h_in/c_in and writes h_out/c_out
//     y_t      (B, H)   the step's output, zero where the step is inactive
//     gates_t  (B, G)   activated gates i, f, g, o saved for backward
//     d_pre_t  (B, G)   gradient of the gate pre-activations (input of the GEMMs after the loop)
//     lengths  (B,)     int64; step t of row b is active when t < lengths[b]
// Memory layout of a gate row b: [i_0..i_{H-1}, f_0.., g_0.., o_0..], so element (b, k, j) of
// gate k sits at b*G + k*H + j.
//
// Launch: one thread per (b, j), b < B, j < H, on a 1-D grid of ceil(B*H / block) blocks.
// No shared memory and no __syncthreads: every thread owns its (b, j) element of h, c, dh, dc,
// so threads never wait for each other. Reductions (the bias gradient) are left to the array
// library. CI compiles this file with NVRTC (cuda_compile.py) and runs it under the host
// emulator (cuda_compat.h).
//
// Instantiated for float and double through NVRTC name expressions, e.g.
// "lstm_forward_step<float>".

template <typename T> __device__ __forceinline__ T act_tanh(T z);
template <> __device__ __forceinline__ float act_tanh<float>(float z) { return tanhf(z); }
template <> __device__ __forceinline__ double act_tanh<double>(double z) { return tanh(z); }

// The tanh form of the sigmoid never overflows exp() and matches the NumPy reference.
template <typename T> __device__ __forceinline__ T act_sigmoid(T z) {
    return T(0.5) * act_tanh<T>(T(0.5) * z) + T(0.5);
}

template <typename T>
__global__ void lstm_forward_step(const T* __restrict__ x_proj_t, const T* __restrict__ rec,
                                  const T* __restrict__ bias,
                                  const T* __restrict__ h_in, const T* __restrict__ c_in,
                                  T* __restrict__ h_out, T* __restrict__ c_out,
                                  T* __restrict__ y_t, T* __restrict__ gates_t,
                                  const long long* __restrict__ lengths,
                                  int t, int B, int H, int save) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)B * H) return;
    const int b = (int)(idx / H);
    const int j = (int)(idx % H);
    const long long s = idx;                       // (b, j) in a (B, H) array
    if (t >= lengths[b]) {
        // Inactive: the state passes through untouched and the output is zero.
        h_out[s] = h_in[s];
        c_out[s] = c_in[s];
        y_t[s] = T(0);
        if (save) {
            // Backward multiplies by these only where the step is active; zeros keep the
            // saved buffer deterministic.
            const long long g = (long long)b * 4 * H + j;
            gates_t[g] = gates_t[g + H] = gates_t[g + 2 * H] = gates_t[g + 3 * H] = T(0);
        }
        return;
    }
    const long long g = (long long)b * 4 * H + j;
    const T zi = x_proj_t[g] + rec[g] + bias[j];
    const T zf = x_proj_t[g + H] + rec[g + H] + bias[j + H];
    const T zg = x_proj_t[g + 2 * H] + rec[g + 2 * H] + bias[j + 2 * H];
    const T zo = x_proj_t[g + 3 * H] + rec[g + 3 * H] + bias[j + 3 * H];
    const T i = act_sigmoid<T>(zi);
    const T f = act_sigmoid<T>(zf);
    const T gg = act_tanh<T>(zg);
    const T o = act_sigmoid<T>(zo);
    const T c = f * c_in[s] + i * gg;
    const T h = o * act_tanh<T>(c);
    h_out[s] = h;
    c_out[s] = c;
    y_t[s] = h;
    if (save) {
        gates_t[g] = i;
        gates_t[g + H] = f;
        gates_t[g + 2 * H] = gg;
        gates_t[g + 3 * H] = o;
    }
}

// One backward step t. The carried dh entering step t is rec (= d_pre[t_after] @ w_hh) where
// the step processed just before (t_after, later in the forward direction) was active, and
// the carried dh_buf where it was inactive or did not exist (has_after == 0): an inactive step
// passed h through, so it passes its gradient through too. dc_buf is updated in place.
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
    const long long g = (long long)b * 4 * H + j;
    const T dh_carried = (has_after && t_after < lengths[b]) ? rec[s] : dh_buf[s];
    dh_buf[s] = dh_carried;
    if (t >= lengths[b]) {
        d_pre_t[g] = d_pre_t[g + H] = d_pre_t[g + 2 * H] = d_pre_t[g + 3 * H] = T(0);
        return;
    }
    const T i = gates_t[g];
    const T f = gates_t[g + H];
    const T gg = gates_t[g + 2 * H];
    const T o = gates_t[g + 3 * H];
    const T cp = c_prev_t[s];
    // Recomputed rather than saved: one FMA instead of a (T, B, H) buffer.
    const T tanh_c = act_tanh<T>(f * cp + i * gg);
    const T dh = dh_carried + dy_t[s];
    const T dc = dc_buf[s] + dh * o * (T(1) - tanh_c * tanh_c);
    d_pre_t[g] = dc * gg * i * (T(1) - i);
    d_pre_t[g + H] = dc * cp * f * (T(1) - f);
    d_pre_t[g + 2 * H] = dc * i * (T(1) - gg * gg);
    d_pre_t[g + 3 * H] = dh * tanh_c * o * (T(1) - o);
    dc_buf[s] = dc * f;
}

// After the last backward step (t_first, the first step in the forward direction): the
// gradient of h0 is that step's recurrent GEMM where it was active, else the carried one.
template <typename T>
__global__ void lstm_backward_finish(const T* __restrict__ rec, const T* __restrict__ dh_buf,
                                     T* __restrict__ dh0, const long long* __restrict__ lengths,
                                     int t_first, int B, int H) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)B * H) return;
    const int b = (int)(idx / H);
    dh0[idx] = (t_first < lengths[b]) ? rec[idx] : dh_buf[idx];
}
