// Elementwise ops on the CPU: the residual add and Philox dropout. The dropout mask is a pure
// function of (seed, stream, element index), recomputed in backward and never stored.
#include <string.h>

#include "backend/cpu/cpu_ops.h"
#include "core/rng.h"

void cpu_add_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_CHEAP)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void cpu_add_backward(float *da, float *db, const float *dout, size_t n) {
    if (da) {
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_CHEAP)
        for (size_t i = 0; i < n; i++) da[i] += dout[i];
    }
    if (db) {
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_CHEAP)
        for (size_t i = 0; i < n; i++) db[i] += dout[i];
    }
}

// out[i] = mask_i * scale * inp[i] (accumulate = 0) or out[i] += ... (accumulate = 1). One Philox call
// yields four uniforms: exactly qft_philox_uniform(seed, stream, i) for i = 4 * block + lane.
static void dropout_apply(float *out, const float *inp, size_t n, float p, uint64_t seed, uint64_t stream,
                          int accumulate) {
    const float keep_scale = 1.0f / (1.0f - p);
    const size_t block_count = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_TRANSCENDENTAL)
    for (size_t block = 0; block < block_count; block++) {
        qft_philox_block random = qft_philox4x32((uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream,
                                                 (uint32_t)(stream >> 32), (uint32_t)seed, (uint32_t)(seed >> 32));
        for (int lane = 0; lane < 4; lane++) {
            size_t i = block * 4 + (size_t)lane;
            if (i >= n) break;
            float kept = qft_uint_to_unit_float(random.v[lane]) >= p ? inp[i] * keep_scale : 0.0f;
            if (accumulate) out[i] += kept;
            else out[i] = kept;
        }
    }
}

void cpu_dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t seed, uint64_t stream) {
    if (p <= 0.0f) {
        if (out != inp && n) memmove(out, inp, n * sizeof(float));
        return;
    }
    if (p >= 1.0f) {  // everything dropped; 1/(1-p) would be inf
        if (n) memset(out, 0, n * sizeof(float));
        return;
    }
    dropout_apply(out, inp, n, p, seed, stream, 0);
}

void cpu_dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t seed, uint64_t stream) {
    if (!dinp || p >= 1.0f) return;
    if (p <= 0.0f) {
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_CHEAP)
        for (size_t i = 0; i < n; i++) dinp[i] += dout[i];
        return;
    }
    dropout_apply(dinp, dout, n, p, seed, stream, 1);
}
