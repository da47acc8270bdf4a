// Elementwise activations on the CPU: GELU (exact erf form and the tanh approximation, as HF's
// "gelu" and "gelu_new"/"gelu_pytorch_tanh") and tanh, with their backward passes.
#include <math.h>

#include "backend/cpu/cpu_ops.h"

#define GELU_SQRT_2_OVER_PI 0.7978845608028654f  // sqrt(2/pi)
#define GELU_TANH_CUBIC 0.044715f
#define GELU_INV_SQRT_2 0.7071067811865476f      // 1/sqrt(2)
#define GELU_INV_SQRT_2PI 0.3989422804014327f    // 1/sqrt(2 pi)

void cpu_gelu_forward(float *out, const float *inp, size_t n, qft_gelu_kind kind) {
    if (kind == QFT_GELU_ERF) {
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_TRANSCENDENTAL)
        for (size_t i = 0; i < n; i++) {
            float x = inp[i];
            out[i] = 0.5f * x * (1.0f + erff(x * GELU_INV_SQRT_2));
        }
    } else {
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_TRANSCENDENTAL)
        for (size_t i = 0; i < n; i++) {
            float x = inp[i];
            float inner = GELU_SQRT_2_OVER_PI * (x + GELU_TANH_CUBIC * x * x * x);
            out[i] = 0.5f * x * (1.0f + tanhf(inner));
        }
    }
}

void cpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n, qft_gelu_kind kind) {
    if (!dinp) return;
    if (kind == QFT_GELU_ERF) {
        // d/dx [x Phi(x)] = Phi(x) + x phi(x)
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_TRANSCENDENTAL)
        for (size_t i = 0; i < n; i++) {
            float x = inp[i];
            float cdf = 0.5f * (1.0f + erff(x * GELU_INV_SQRT_2));
            float pdf = GELU_INV_SQRT_2PI * expf(-0.5f * x * x);
            dinp[i] += dout[i] * (cdf + x * pdf);
        }
    } else {
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_TRANSCENDENTAL)
        for (size_t i = 0; i < n; i++) {
            float x = inp[i];
            float x_cubed = x * x * x;
            float inner = GELU_SQRT_2_OVER_PI * (x + GELU_TANH_CUBIC * x_cubed);
            float tanh_inner = tanhf(inner);
            float sech_sq = 1.0f - tanh_inner * tanh_inner;
            float dinner_dx = GELU_SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_TANH_CUBIC * x * x);
            float local_grad = 0.5f * (1.0f + tanh_inner) + 0.5f * x * sech_sq * dinner_dx;
            dinp[i] += dout[i] * local_grad;
        }
    }
}

void cpu_tanh_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_TRANSCENDENTAL)
    for (size_t i = 0; i < n; i++) out[i] = tanhf(inp[i]);
}

void cpu_tanh_backward(float *dinp, const float *out, const float *dout, size_t n) {
    if (!dinp) return;
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_CHEAP)
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * (1.0f - out[i] * out[i]);
}
