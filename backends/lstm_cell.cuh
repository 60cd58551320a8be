// The LSTM cell's pointwise math for one (row, unit) element, forward and backward: the one
// home of the gate math of every CUDA kernel of the backend (lstm_kernels.cu, one launch per
// step; lstm_persistent.cu, the whole time loop in one launch). It is reference.step_forward
// and reference.step_backward for a single element; the tests hold the kernels to those.
//
// Names are base.py's glossary: the gates i, f, g, o (g the cell candidate), c_prev the cell
// state entering the step, dh and dc the gradients carried into the step.
//
// NVRTC gets this file inlined into each .cu file's program (cuda.kernel_source_text); the
// emulator's g++ build includes it from the package folder.
#pragma once

template <typename T> __device__ __forceinline__ T act_tanh(T z);
template <> __device__ __forceinline__ float act_tanh<float>(float z) { return tanhf(z); }
template <> __device__ __forceinline__ double act_tanh<double>(double z) { return tanh(z); }

// sigmoid(z) = 0.5 * tanh(z / 2) + 0.5: the tanh form never overflows exp() and matches the
// NumPy reference (reference.sigmoid).
template <typename T> __device__ __forceinline__ T act_sigmoid(T z) {
    return T(0.5) * act_tanh<T>(T(0.5) * z) + T(0.5);
}

// The activated gates of one element.
template <typename T> struct CellGates {
    T i, f, g, o;
};

// The gates from their pre-activations (x_proj + h_prev @ w_hh.T + bias, per gate).
template <typename T>
__device__ __forceinline__ CellGates<T> cell_gates(T pre_i, T pre_f, T pre_g, T pre_o) {
    return CellGates<T>{act_sigmoid<T>(pre_i), act_sigmoid<T>(pre_f), act_tanh<T>(pre_g), act_sigmoid<T>(pre_o)};
}

// The state after an active step: c = f * c_prev + i * g, h = o * tanh(c).
template <typename T>
__device__ __forceinline__ void cell_state(const CellGates<T>& a, T c_prev, T& c, T& h) {
    c = a.f * c_prev + a.i * a.g;
    h = a.o * act_tanh<T>(c);
}

// The gradients of one active step: of the four pre-activations, and of c_prev.
template <typename T> struct CellGrads {
    T d_i, d_f, d_g, d_o, dc_prev;
};

// Backward through an active step, from its saved gates and c_prev:
//     dh  the gradient of the step's h (carried from later steps plus the step's own dy)
//     dc  the gradient of the step's c carried from later steps
// c is recomputed from c_prev rather than saved: one FMA instead of a (T, B, H) buffer.
template <typename T>
__device__ __forceinline__ CellGrads<T> cell_backward(const CellGates<T>& a, T c_prev, T dh, T dc) {
    const T tanh_c = act_tanh<T>(a.f * c_prev + a.i * a.g);
    const T dc_t = dc + dh * a.o * (T(1) - tanh_c * tanh_c);
    return CellGrads<T>{dc_t * a.g * a.i * (T(1) - a.i), dc_t * c_prev * a.f * (T(1) - a.f),
                        dc_t * a.i * (T(1) - a.g * a.g), dh * tanh_c * a.o * (T(1) - a.o), dc_t * a.f};
}
