// Elementwise ops on the CPU: the residual add, Philox dropout and the vectorized Philox generator it shares
// with the noise op (cpu_method.c). The dropout mask is a pure function of (seed, stream, element index),
// recomputed in backward and never stored.
#include <string.h>

#include "backend/cpu/cpu_ops.h"
#include "core/rng.h"

void cpu_add_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void cpu_add_backward(float *da, float *db, const float *dout, size_t n) {
    if (da) {
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
        for (size_t i = 0; i < n; i++) da[i] += dout[i];
    }
    if (db) {
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
        for (size_t i = 0; i < n; i++) db[i] += dout[i];
    }
}

// The same rounds as qft_philox4x32 in core/rng.h, written over lane arrays (one block per SIMD lane) so
// the compiler vectorizes them (~10x the scalar rate). Contract in cpu_ops.h.
enum { PHILOX_LANES = QFT_CPU_PHILOX_LANES };

void cpu_philox_uniform_blocks(float *restrict uniforms, uint64_t first_block, uint64_t seed, uint64_t stream) {
    const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    uint32_t words[4][PHILOX_LANES];
#pragma omp simd
    for (int lane = 0; lane < PHILOX_LANES; lane++) {
        uint64_t block = first_block + (uint64_t)lane;
        uint32_t c0 = (uint32_t)block, c1 = (uint32_t)(block >> 32);
        uint32_t c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
        uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
        for (int round = 0; round < 10; round++) {
            uint64_t product0 = (uint64_t)M0 * c0, product1 = (uint64_t)M1 * c2;
            uint32_t n0 = (uint32_t)(product1 >> 32) ^ c1 ^ k0;
            uint32_t n2 = (uint32_t)(product0 >> 32) ^ c3 ^ k1;
            c1 = (uint32_t)product1;
            c3 = (uint32_t)product0;
            c0 = n0;
            c2 = n2;
            k0 += W0;
            k1 += W1;
        }
        words[0][lane] = c0;
        words[1][lane] = c1;
        words[2][lane] = c2;
        words[3][lane] = c3;
    }
    for (int lane = 0; lane < PHILOX_LANES; lane++)
        for (int word = 0; word < 4; word++) uniforms[lane * 4 + word] = qft_uint_to_unit_float(words[word][lane]);
}

// out[i] = mask_i * scale * inp[i] (accumulate = 0) or out[i] += ... (accumulate = 1).
static void dropout_apply(float *out, const float *inp, size_t n, float p, uint64_t seed, uint64_t stream,
                          int accumulate) {
    enum { ELEMENTS_PER_GROUP = PHILOX_LANES * 4 };
    const float keep_scale = 1.0f / (1.0f - p);
    const size_t group_count = (n + ELEMENTS_PER_GROUP - 1) / ELEMENTS_PER_GROUP;
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_COMPUTE)
    for (size_t group = 0; group < group_count; group++) {
        float uniforms[ELEMENTS_PER_GROUP];
        cpu_philox_uniform_blocks(uniforms, group * PHILOX_LANES, seed, stream);
        size_t begin = group * ELEMENTS_PER_GROUP;
        size_t width = n - begin < (size_t)ELEMENTS_PER_GROUP ? n - begin : (size_t)ELEMENTS_PER_GROUP;
        if (accumulate) {
            for (size_t e = 0; e < width; e++) out[begin + e] += uniforms[e] >= p ? inp[begin + e] * keep_scale : 0.0f;
        } else {
            for (size_t e = 0; e < width; e++) out[begin + e] = uniforms[e] >= p ? inp[begin + e] * keep_scale : 0.0f;
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
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
        for (size_t i = 0; i < n; i++) dinp[i] += dout[i];
        return;
    }
    dropout_apply(dinp, dout, n, p, seed, stream, 1);
}
