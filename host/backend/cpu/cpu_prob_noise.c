// Adaptive noise on attention probabilities (docs/methods.md §2 [ours]): the noise form of the attention op's
// probability quantizer (uniform grid, log2, log-sqrt2), drawn per element of the flattened [B, NH, Tq, T]
// probabilities with the random mapping of quant_noise_forward, and the quantizer's rounding residual that
// the noise amplitude is measured from (qft_prob_quant and prob_quant_residual in backend.h).
#include <float.h>
#include <math.h>

#include "backend/cpu/cpu_ops.h"
#include "core/rng.h"
#include "quant/format.h"

// The noise value v of element i from its Philox block (the mapping of quant_noise_forward, one element at a
// time): uniform u - 1/2; Gaussian Box-Muller on the word pair (0, 1) or (2, 3), cos for the even element of the
// pair and sin for the odd one, over sqrt(12); Bernoulli u itself (compared with p).
static inline float noise_value(const qft_philox_block *block, uint64_t i, qft_noise_kind kind) {
    const float inv_sqrt12 = 0.28867513459481287f, two_pi = 6.283185307179586f;
    switch (kind) {
    case QFT_NOISE_GAUSSIAN: {
        unsigned pair = (unsigned)(i & 2);
        float ua = qft_uint_to_unit_float(block->v[pair]), ub = qft_uint_to_unit_float(block->v[pair + 1]);
        // 1 - u lies in (0, 1], so the log is finite.
        float radius = sqrtf(-2.0f * logf(1.0f - ua)) * inv_sqrt12, angle = two_pi * ub;
        return (i & 1) ? radius * sinf(angle) : radius * cosf(angle);
    }
    case QFT_NOISE_BERNOULLI: return qft_uint_to_unit_float(block->v[i & 3]);
    default: return qft_uint_to_unit_float(block->v[i & 3]) - 0.5f;
    }
}

static inline float clampf(float x, float lo, float hi) {
    x = x >= lo ? x : lo;
    return x <= hi ? x : hi;
}

// One probability through the noise form of the uniform grid (s, z, qmin, qmax): noise_element of
// quant_noise_forward, with P = 0 kept at Q(0).
static inline float uniform_noise(const qft_prob_quant *pq, float p, float v) {
    const float s = pq->scale, inv = 1.0f / s, z = pq->zero_point;
    const float qmin = (float)pq->qmin, qmax = (float)pq->qmax;
    float q = rintf(p * inv) + z;
    float level = qft_quant_dequant(p, s, inv, z, pq->qmin, pq->qmax);
    if (!(q >= qmin && q <= qmax) || p == 0.0f) return level;  // clipped (NaN included), or a masked key
    const qft_quant_noise *noise = pq->noise;
    float y = noise->kind == QFT_NOISE_BERNOULLI ? (v < noise->p ? level : p) : p + noise->amplitude * s * v;
    return clampf(y, (qmin - z) * s, (qmax - z) * s);
}

// One probability through the noise form of the log2 (k = 1) / log-sqrt2 (k = 2) quantizer: the code
// c = -k log2(P / s) moves by a v before it is turned back into a value, P~ = s 2^(-c~ / k), c~ clamped to the
// code range [0, 2^bits - 1]. Elements the quantizer clips (above s: Q = s; the zero level; NaN) keep Q(P).
static inline float log_noise(const qft_prob_quant *pq, float p, float v) {
    const int sqrt2 = pq->kind == QFT_QUANT_LOG_SQRT2;
    const float s = pq->scale, k = sqrt2 ? 2.0f : 1.0f, code_max = (float)((1 << pq->bits) - 1);
    int pass;
    float level = qft_log_dequant(p, s, pq->bits, sqrt2, &pass);
    if (!pass) return level;  // pass: P > 0 finite, 0 <= rounded code < 2^bits, level != 0
    const qft_quant_noise *noise = pq->noise;
    float code = -k * log2f(p * (1.0f / s));
    if (noise->kind == QFT_NOISE_BERNOULLI) {
        if (v < noise->p) return level;
        if (code >= 0.0f && code <= code_max) return p;  // inside the code range: P itself
    } else {
        code += noise->amplitude * v;
    }
    return s * exp2f(-clampf(code, 0.0f, code_max) / k);
}

void cpu_prob_noise_run(float *out, const float *p, uint64_t first, int n, const qft_prob_quant *pq) {
    const qft_quant_noise *noise = pq->noise;
    const int uniform = pq->kind == QFT_QUANT_UNIFORM;
    qft_philox_block block = {{0, 0, 0, 0}};
    uint64_t block_index = UINT64_MAX;
    for (int e = 0; e < n; e++) {
        uint64_t i = first + (uint64_t)e;
        if (i >> 2 != block_index) {
            block_index = i >> 2;
            block = qft_philox_block_at(noise->seed, noise->stream, block_index);
        }
        float v = noise_value(&block, i, noise->kind);
        out[e] = uniform ? uniform_noise(pq, p[e], v) : log_noise(pq, p[e], v);
    }
}

// Chunks of the residual sum: fixed, so the sum has the same bits for any thread count.
enum { RESIDUAL_CHUNK = 4096 };

size_t cpu_prob_quant_residual(const float *probs, size_t n, const qft_prob_quant *pq, double *sum_sq) {
    const size_t chunks = (n + RESIDUAL_CHUNK - 1) / RESIDUAL_CHUNK;
    const int uniform = pq->kind == QFT_QUANT_UNIFORM, sqrt2 = pq->kind == QFT_QUANT_LOG_SQRT2;
    const float s = pq->scale, inv = 1.0f / s, z = pq->zero_point;
    double chunk_sums[chunks > 0 ? chunks : 1];
    size_t chunk_counts[chunks > 0 ? chunks : 1];
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_COMPUTE)
    for (size_t chunk = 0; chunk < chunks; chunk++) {
        size_t begin = chunk * RESIDUAL_CHUNK, end = begin + RESIDUAL_CHUNK < n ? begin + RESIDUAL_CHUNK : n;
        double acc = 0.0;
        size_t count = 0;
        for (size_t i = begin; i < end; i++) {
            float p = probs[i];
            double residual;
            if (uniform) {
                float q = rintf(p * inv) + z;
                if (!(q >= (float)pq->qmin && q <= (float)pq->qmax) || p == 0.0f) continue;
                residual = ((double)((q - z) * s) - (double)p) / (double)s;
            } else {
                int pass;
                qft_log_dequant(p, s, pq->bits, sqrt2, &pass);
                if (!pass) continue;
                float r = p * inv;
                residual = (double)qft_log_code(r, sqrt2) + (sqrt2 ? 2.0 : 1.0) * log2((double)r);
            }
            acc += residual * residual;
            count++;
        }
        chunk_sums[chunk] = acc;
        chunk_counts[chunk] = count;
    }
    double total = 0.0;
    size_t inside = 0;
    for (size_t chunk = 0; chunk < chunks; chunk++) {
        total += chunk_sums[chunk];
        inside += chunk_counts[chunk];
    }
    *sum_sq = total;
    return inside;
}
