// Adaptive noise on attention probabilities (docs/methods.md §2 [ours]): the noise form of the attention op's
// probability quantizer (uniform grid, log2, log-sqrt2), drawn per element of the flattened [B, NH, Tq, T]
// probabilities with the random mapping of quant_noise_forward, and the quantizer's rounding residual that
// the noise amplitude is measured from (qft_prob_quant and prob_quant_residual in backend.h).
#include <math.h>

#include "backend/cpu/cpu_ops.h"
#include "quant/format.h"

// glibc >= 2.35 has SIMD variants of log2f / exp2f in libmvec but declares them only under -ffast-math (see
// cpu_ops.h for expf): declared here, the log kinds' tile loop vectorizes.
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 35)
#pragma omp declare simd notinbranch
float log2f(float);
#pragma omp declare simd notinbranch
float exp2f(float);
#endif
#endif

// Tiles of the flattened index, aligned to their width: the QFT_CPU_PHILOX_LANES Philox blocks of a tile are
// computed together, and every element goes through the same full-width vector loop at the same lane whatever
// the run it belongs to (so the forward and the backward, and any thread split, give the same bits).
enum { TILE = QFT_CPU_PHILOX_LANES * 4 };

// values[j] = the noise value v of element tile + j, the mapping of quant_noise_forward (cpu_noise_values);
// the histogram kind has no probability form and draws uniform noise here.
static void tile_values(float values[TILE], uint64_t tile, const qft_quant_noise *noise) {
    cpu_philox_uniform_blocks(values, tile / 4, noise->seed, noise->stream);
    cpu_noise_values(values, noise->kind == QFT_NOISE_HISTOGRAM ? QFT_NOISE_UNIFORM : noise->kind, NULL);
}

// The uniform grid (s, z, qmin, qmax) over a tile: where the grid clips (NaN included) and at P = 0 exactly,
// Q(P) (qft_quant_dequant); elsewhere P + a s v (bernoulli: v < p ? Q(P) : P), clamped to the grid's range.
// Branch-free, so it vectorizes.
static void uniform_tile(float y[TILE], const float x[TILE], const float v[TILE], const qft_prob_quant *pq) {
    const float s = pq->scale, inv = 1.0f / s, z = pq->zero_point, qmin = (float)pq->qmin, qmax = (float)pq->qmax;
    const float lo = (qmin - z) * s, hi = (qmax - z) * s;
    const float step = pq->noise->params.amplitude * s, p_exact = pq->noise->params.p;
    const int bernoulli = pq->noise->params.kind == QFT_NOISE_BERNOULLI;
#pragma omp simd
    for (int j = 0; j < TILE; j++) {
        float q = rintf(x[j] * inv) + z;
        float clamped = q >= qmin ? q : qmin;  // fminf(fmaxf(q, qmin), qmax), NaN -> qmin, as qft_quant_dequant
        clamped = clamped <= qmax ? clamped : qmax;
        float level = (clamped - z) * s;
        float noisy = bernoulli ? (v[j] < p_exact ? level : x[j]) : x[j] + step * v[j];
        noisy = noisy >= lo ? noisy : lo;
        noisy = noisy <= hi ? noisy : hi;
        y[j] = q >= qmin && q <= qmax && x[j] != 0.0f ? noisy : level;
    }
}

// The log2 (k = 1) / log-sqrt2 (k = 2) quantizer over the tile's elements [begin, end): the code
// c = -k log2(P / s) moves by a v before it is turned back into a value, P~ = s 2^(-c~ / k), c~ clamped to the
// code range [0, 2^bits - 1] (bernoulli: v < p ? Q(P) : P, clamped alike). Elements the quantizer clips (above s,
// the zero level, NaN) keep Q(P) (qft_log_dequant, as the real quantizer).
static void log_tile(float y[TILE], const float x[TILE], const float v[TILE], int begin, int end,
                     const qft_prob_quant *pq) {
    const int sqrt2 = pq->kind == QFT_QUANT_LOG_SQRT2, bernoulli = pq->noise->params.kind == QFT_NOISE_BERNOULLI;
    const float s = pq->scale, inv = 1.0f / s, k = sqrt2 ? 2.0f : 1.0f, inv_k = sqrt2 ? 0.5f : 1.0f;
    const float top = (float)((1 << pq->bits) - 1), shift = bernoulli ? 0.0f : pq->noise->params.amplitude;
    float code[TILE];
#pragma omp simd
    for (int j = 0; j < TILE; j++) {
        code[j] = -k * log2f(x[j] * inv);
        float moved = code[j] + shift * v[j];
        moved = moved >= 0.0f ? moved : 0.0f;
        moved = moved <= top ? moved : top;
        y[j] = s * exp2f(-moved * inv_k);
    }
    for (int j = begin; j < end; j++) {
        int pass;  // P > 0 finite, 0 <= rounded code < 2^bits, level != 0
        float level = qft_log_dequant(x[j], s, pq->bits, sqrt2, &pass);
        if (!pass || (bernoulli && v[j] < pq->noise->params.p)) y[j] = level;
        else if (bernoulli && code[j] >= 0.0f && code[j] <= top) y[j] = x[j];  // inside the code range: P itself
    }
}

void cpu_prob_noise_run(float *out, const float *p, uint64_t first, int n, const qft_prob_quant *pq) {
    const uint64_t end = first + (uint64_t)n;
    const int uniform = pq->kind == QFT_QUANT_UNIFORM;
    for (uint64_t tile = first / TILE * TILE; tile < end; tile += TILE) {
        float values[TILE], x[TILE], y[TILE];
        tile_values(values, tile, &pq->noise->params);
        int begin = tile < first ? (int)(first - tile) : 0, stop = end - tile < TILE ? (int)(end - tile) : TILE;
        for (int j = 0; j < TILE; j++) x[j] = j >= begin && j < stop ? p[tile + (uint64_t)j - first] : 0.5f;
        if (uniform) uniform_tile(y, x, values, pq);
        else log_tile(y, x, values, begin, stop, pq);
        for (int j = begin; j < stop; j++) out[tile + (uint64_t)j - first] = y[j];
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
