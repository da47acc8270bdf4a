// Elementwise activations on the CPU: GELU (exact erf form and the tanh approximation, as HF's
// "gelu" and "gelu_new"/"gelu_pytorch_tanh") and tanh, with their backward passes.
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"

#define GELU_SQRT_2_OVER_PI 0.7978845608028654f  // sqrt(2/pi)
#define GELU_TANH_CUBIC 0.044715f
#define GELU_INV_SQRT_2 0.7071067811865476f      // 1/sqrt(2)
#define GELU_INV_SQRT_2PI 0.3989422804014327f    // 1/sqrt(2 pi)

enum { LANES = QFT_CPU_VECTOR_BLOCK };

// Each kernel maps one block of LANES inputs to LANES outputs; the loops have a constant trip count
// so the compiler emits only the SIMD calls (see cpu_ops.h).
typedef void (*block_kernel)(float *restrict result, const float *restrict x);

static void gelu_erf_block(float *restrict result, const float *restrict x) {
#pragma omp simd
    for (int lane = 0; lane < LANES; lane++) result[lane] = 0.5f * x[lane] * (1.0f + erff(x[lane] * GELU_INV_SQRT_2));
}

static void gelu_tanh_block(float *restrict result, const float *restrict x) {
#pragma omp simd
    for (int lane = 0; lane < LANES; lane++) {
        float inner = GELU_SQRT_2_OVER_PI * (x[lane] + GELU_TANH_CUBIC * x[lane] * x[lane] * x[lane]);
        result[lane] = 0.5f * x[lane] * (1.0f + tanhf(inner));
    }
}

// d/dx [x Phi(x)] = Phi(x) + x phi(x)
static void gelu_erf_grad_block(float *restrict result, const float *restrict x) {
#pragma omp simd
    for (int lane = 0; lane < LANES; lane++) {
        float cdf = 0.5f * (1.0f + erff(x[lane] * GELU_INV_SQRT_2));
        float pdf = GELU_INV_SQRT_2PI * expf(-0.5f * x[lane] * x[lane]);
        result[lane] = cdf + x[lane] * pdf;
    }
}

static void gelu_tanh_grad_block(float *restrict result, const float *restrict x) {
#pragma omp simd
    for (int lane = 0; lane < LANES; lane++) {
        float v = x[lane];
        float inner = GELU_SQRT_2_OVER_PI * (v + GELU_TANH_CUBIC * v * v * v);
        float tanh_inner = tanhf(inner);
        float sech_sq = 1.0f - tanh_inner * tanh_inner;
        float dinner_dx = GELU_SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_TANH_CUBIC * v * v);
        result[lane] = 0.5f * (1.0f + tanh_inner) + 0.5f * v * sech_sq * dinner_dx;
    }
}

static void tanh_block(float *restrict result, const float *restrict x) {
#pragma omp simd
    for (int lane = 0; lane < LANES; lane++) result[lane] = tanhf(x[lane]);
}

// The tail (n % LANES elements) goes through the same kernel on a zero-padded copy.
static void apply_tail(block_kernel kernel, float *out, const float *inp, const float *dout, size_t n) {
    size_t begin = n / LANES * LANES, width = n - begin;
    if (width == 0) return;
    float x[LANES] = {0}, result[LANES];
    memcpy(x, inp + begin, width * sizeof(float));
    kernel(result, x);
    for (size_t lane = 0; lane < width; lane++) {
        if (dout) out[begin + lane] += dout[begin + lane] * result[lane];
        else out[begin + lane] = result[lane];
    }
}

// Full blocks call the kernels directly (inlined); results go through a local block so that
// in-place use (out == inp) stays well-defined.
#define FORWARD_BLOCKS(kernel, out, inp, n)                                                   \
    do {                                                                                      \
        const size_t full_blocks = (n) / LANES;                                               \
        _Pragma("omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_COMPUTE)") \
        for (size_t block = 0; block < full_blocks; block++) {                                \
            float result[LANES];                                                              \
            kernel(result, (inp) + block * LANES);                                            \
            memcpy((out) + block * LANES, result, sizeof result);                             \
        }                                                                                     \
        apply_tail(kernel, out, inp, NULL, n);                                                \
    } while (0)

#define BACKWARD_BLOCKS(kernel, dinp, inp, dout, n)                                           \
    do {                                                                                      \
        const size_t full_blocks = (n) / LANES;                                               \
        _Pragma("omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_COMPUTE)") \
        for (size_t block = 0; block < full_blocks; block++) {                                \
            float local_grad[LANES];                                                          \
            kernel(local_grad, (inp) + block * LANES);                                        \
            float *dx = (dinp) + block * LANES;                                               \
            const float *dy = (dout) + block * LANES;                                         \
            _Pragma("omp simd")                                                               \
            for (int lane = 0; lane < LANES; lane++) dx[lane] += dy[lane] * local_grad[lane];  \
        }                                                                                     \
        apply_tail(kernel, dinp, inp, dout, n);                                               \
    } while (0)

void cpu_gelu_forward(float *out, const float *inp, size_t n, qft_gelu_kind kind) {
    if (kind == QFT_GELU_ERF) FORWARD_BLOCKS(gelu_erf_block, out, inp, n);
    else FORWARD_BLOCKS(gelu_tanh_block, out, inp, n);
}

void cpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n, qft_gelu_kind kind) {
    if (!dinp) return;
    if (kind == QFT_GELU_ERF) BACKWARD_BLOCKS(gelu_erf_grad_block, dinp, inp, dout, n);
    else BACKWARD_BLOCKS(gelu_tanh_grad_block, dinp, inp, dout, n);
}

void cpu_tanh_forward(float *out, const float *inp, size_t n) { FORWARD_BLOCKS(tanh_block, out, inp, n); }

void cpu_tanh_backward(float *dinp, const float *out, const float *dout, size_t n) {
    if (!dinp) return;
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * (1.0f - out[i] * out[i]);
}
