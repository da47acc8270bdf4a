// CPU ops of the fine-tuning methods: tensor moments and the outlier-range penalty (METHODS.md §6),
// quantization noise and the quantizer's rounding residual (METHODS.md §8); docs/methods.md has the formulas.
#include <float.h>
#include <math.h>

#include "backend/cpu/cpu_ops.h"
#include "core/rng.h"

// Sums run over fixed chunks whose partials are added in chunk order: the same bits for any thread count.
enum { METHOD_CHUNK = 16384, METHOD_MAX_CHUNKS = 4096 };

static size_t chunk_size(size_t n) {
    size_t chunk = (n + METHOD_MAX_CHUNKS - 1) / METHOD_MAX_CHUNKS;
    return chunk < METHOD_CHUNK ? METHOD_CHUNK : chunk;
}

// Every chunk sums in LANES independent partials (element i into lane i % LANES) added in lane order at
// the end: a fixed order (the same bits for any thread count) that the compiler can vectorize, where one
// serial double accumulator runs at one add per FP-add latency.
enum { LANES = 8 };

static double lane_total(const double lanes[LANES]) {
    double total = 0.0;
    for (int j = 0; j < LANES; j++) total += lanes[j];
    return total;
}

// sum, min and max of x[begin, end).
static void chunk_sum_min_max(const float *x, size_t begin, size_t end, double *sum, float *mn, float *mx) {
    double acc[LANES] = {0};
    float lo[LANES], hi[LANES];
    for (int j = 0; j < LANES; j++) lo[j] = hi[j] = x[begin];
    size_t i = begin;
    for (; i + LANES <= end; i += LANES) {
        for (int j = 0; j < LANES; j++) {
            float v = x[i + j];
            acc[j] += (double)v;
            lo[j] = v < lo[j] ? v : lo[j];
            hi[j] = v > hi[j] ? v : hi[j];
        }
    }
    for (int j = 0; i < end; i++, j++) {
        acc[j] += (double)x[i];
        lo[j] = x[i] < lo[j] ? x[i] : lo[j];
        hi[j] = x[i] > hi[j] ? x[i] : hi[j];
    }
    *sum = lane_total(acc);
    *mn = lo[0];
    *mx = hi[0];
    for (int j = 1; j < LANES; j++) {
        *mn = fminf(*mn, lo[j]);
        *mx = fmaxf(*mx, hi[j]);
    }
}

// sum of (x - mean)^2 over x[begin, end).
static double chunk_sum_sq(const float *x, size_t begin, size_t end, double mean) {
    double acc[LANES] = {0};
    size_t i = begin;
    for (; i + LANES <= end; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += ((double)x[i + j] - mean) * ((double)x[i + j] - mean);
    for (int j = 0; i < end; i++, j++) acc[j] += ((double)x[i] - mean) * ((double)x[i] - mean);
    return lane_total(acc);
}

void cpu_tensor_moments(const float *x, size_t n, double out[4]) {
    out[0] = out[1] = out[2] = out[3] = 0.0;
    if (n == 0) return;
    size_t chunk = chunk_size(n), chunks = (n + chunk - 1) / chunk;
    double sums[METHOD_MAX_CHUNKS];
    float lo[METHOD_MAX_CHUNKS], hi[METHOD_MAX_CHUNKS];
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (size_t k = 0; k < chunks; k++) {
        size_t begin = k * chunk, end = begin + chunk < n ? begin + chunk : n;
        chunk_sum_min_max(x, begin, end, &sums[k], &lo[k], &hi[k]);
    }
    double sum = 0.0;
    float mn = lo[0], mx = hi[0];
    for (size_t k = 0; k < chunks; k++) {
        sum += sums[k];
        mn = fminf(mn, lo[k]);
        mx = fmaxf(mx, hi[k]);
    }
    double mean = sum / (double)n;
    // Second pass around the mean: no cancellation for tensors whose mean is large against their spread.
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (size_t k = 0; k < chunks; k++) {
        size_t begin = k * chunk, end = begin + chunk < n ? begin + chunk : n;
        sums[k] = chunk_sum_sq(x, begin, end, mean);
    }
    double sq = 0.0;
    for (size_t k = 0; k < chunks; k++) sq += sums[k];
    out[0] = mean;
    out[1] = sqrt(sq / (double)n);
    out[2] = mn;
    out[3] = mx;
}

// relu(|x - mu| - tau): the distance beyond the allowed range.
static inline double excess(float x, float mu, float tau) {
    double e = fabs((double)x - (double)mu) - (double)tau;
    return e > 0.0 ? e : 0.0;
}

double cpu_outlier_penalty_forward(const float *x, size_t n, float mu, float tau, float p, size_t *count) {
    if (count) *count = 0;
    if (n == 0) return 0.0;
    size_t chunk = chunk_size(n), chunks = (n + chunk - 1) / chunk;
    double sums[METHOD_MAX_CHUNKS];
    size_t counts[METHOD_MAX_CHUNKS];
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (size_t k = 0; k < chunks; k++) {
        size_t begin = k * chunk, end = begin + chunk < n ? begin + chunk : n, outside = 0;
        double acc = 0.0;
        for (size_t i = begin; i < end; i++) {
            double e = excess(x[i], mu, tau);
            if (e > 0.0) {  // outliers are rare: the branch predicts well and beats a branch-free loop
                acc += p == 2.0f ? e * e : pow(e, (double)p);
                outside++;
            }
        }
        sums[k] = acc;
        counts[k] = outside;
    }
    double total = 0.0;
    size_t outside = 0;
    for (size_t k = 0; k < chunks; k++) total += sums[k], outside += counts[k];
    if (count) *count = outside;
    return total;
}

void cpu_outlier_penalty_backward(float *dx, const float *x, size_t n, float mu, float tau, float p, float coef) {
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (size_t i = 0; i < n; i++) {
        double e = excess(x[i], mu, tau);
        if (e <= 0.0) continue;
        double slope = p == 2.0f ? 2.0 * e : (double)p * pow(e, (double)p - 1.0);
        dx[i] += (float)((double)coef * slope * (x[i] > mu ? 1.0 : -1.0));
    }
}

typedef struct {
    float scale, inv_scale, zero_point, lo, hi;  // lo, hi: the lowest and highest level
} quant_grid;

static inline quant_grid grid_at(const float *scale, const float *zero_point, size_t k, const qft_fq_layout *layout) {
    quant_grid g;
    float qmin = (float)layout->qmin, qmax = (float)layout->qmax;
    g.scale = scale[k];
    g.inv_scale = 1.0f / g.scale;  // as fake_quant_forward: 1/s in float
    g.zero_point = cpu_fq_zero_point(zero_point, k, qmin, qmax);
    g.lo = (qmin - g.zero_point) * g.scale;
    g.hi = (qmax - g.zero_point) * g.scale;
    return g;
}

// Noise tiles: NOISE_TILE consecutive elements of the flattened tensor, starting at a multiple of NOISE_TILE,
// take their noise from the QFT_CPU_PHILOX_LANES Philox blocks (four elements a block) computed together.
enum { NOISE_TILE = QFT_CPU_PHILOX_LANES * 4 };

// Histogram noise: the inverse of the piecewise-linear CDF (backend.h) with a guide table. guide[k] is the bin
// of u = k / GUIDE_CELLS; the bin of every u in [k, k + 1) / GUIDE_CELLS lies in [guide[k], guide[k + 1]] (the
// bin grows with u), so a branch-free binary search of `top` halving steps from guide[k] finds it, `top` the
// power of two that covers the widest such range of this CDF (a few steps: mass spreads over the cells, while
// many near-empty bins crowd into few of them). Branch-free with a fixed step count per call, so the element
// loop vectorizes (gathers) instead of mispredicting a data-dependent search.
enum { GUIDE_CELLS = 256 };
typedef struct cpu_noise_histogram {
    const float *cdf;
    int bins, top, levels;  // steps top, top / 2, ..., 1: levels of them (0 when top = 0)
    int guide[GUIDE_CELLS];
} noise_histogram;

static void histogram_guide(noise_histogram *h, const float *cdf, int bins) {
    h->cdf = cdf;
    h->bins = bins;
    int j = 0, widest = 0;
    for (int k = 0; k < GUIDE_CELLS; k++) {
        float u = (float)k / GUIDE_CELLS;  // exact
        while (j < bins - 1 && cdf[j + 1] <= u) j++;
        h->guide[k] = j;
        if (k) widest = j - h->guide[k - 1] > widest ? j - h->guide[k - 1] : widest;
    }
    int last = bins - 1 - h->guide[GUIDE_CELLS - 1];
    widest = last > widest ? last : widest;
    h->top = h->levels = 0;  // steps top, top / 2, ..., 1 reach 2 top - 1 bins beyond the start
    while (2 * h->top - 1 < widest) h->top = h->top ? 2 * h->top : 1, h->levels++;
}

// eps for each uniform u in [0, 1): bin j = the largest in [0, bins - 1] with cdf[j] <= u, so that
// cdf[j] <= u < cdf[j + 1] (cdf[bins] = 1 > u) and the bin's width in the CDF is positive; then the
// position inside it.
static void histogram_inverse(float values[NOISE_TILE], const noise_histogram *h) {
    const float *cdf = h->cdf;
    const int *guide = h->guide;
    int last = h->bins - 1, bin[NOISE_TILE];
    float bins = (float)h->bins;
#pragma omp simd
    for (int e = 0; e < NOISE_TILE; e++) bin[e] = guide[(int)(values[e] * GUIDE_CELLS)];  // u * 256 < 256 exactly
    for (int level = 0; level < h->levels; level++) {
        int step = h->top >> level;
#pragma omp simd
        for (int e = 0; e < NOISE_TILE; e++) {
            int t = bin[e] + step;
            bin[e] = t <= last && cdf[t < last ? t : last] <= values[e] ? t : bin[e];
        }
    }
#pragma omp simd
    for (int e = 0; e < NOISE_TILE; e++) {
        float lo = cdf[bin[e]];
        values[e] = ((float)bin[e] + (values[e] - lo) / (cdf[bin[e] + 1] - lo)) / bins - 0.5f;
    }
}

// values[j] = the noise of element tile + j before the factor amplitude * s, in place from its uniform u_j
// (tile a multiple of 4, so element j uses word j & 3 of block (tile + j) >> 2): uniform u_j - 1/2;
// Gaussian Box-Muller on the word pairs (0, 1) and (2, 3) of each block, the cos branch for the first
// element of a pair and the sin branch for the second, over sqrt(12); Bernoulli u_j itself (compared with p);
// histogram the inverse CDF at u_j.
void cpu_noise_values(float *values, qft_noise_kind kind, const noise_histogram *histogram) {
    const float inv_sqrt12 = 0.28867513459481287f, two_pi = 6.283185307179586f;
    switch (kind) {
    case QFT_NOISE_HISTOGRAM:
        histogram_inverse(values, histogram);
        break;
    case QFT_NOISE_GAUSSIAN:
        for (int j = 0; j < NOISE_TILE; j += 2) {
            // 1 - u lies in (0, 1], so the log is finite.
            float radius = sqrtf(-2.0f * logf(1.0f - values[j])) * inv_sqrt12, angle = two_pi * values[j + 1];
            values[j] = radius * cosf(angle);
            values[j + 1] = radius * sinf(angle);
        }
        break;
    case QFT_NOISE_BERNOULLI: break;
    default:
        for (int j = 0; j < NOISE_TILE; j++) values[j] -= 0.5f;
        break;
    }
}

// One element: the quantizer's clipped level where it clips (NaN stays NaN), the noisy value clamped to the range
// elsewhere. v is the element's noise value (cpu_noise_values), s and z its grid. Branch-free, so runs vectorize;
// the comparisons clamp as fmaxf(y, lo) and fminf(., hi) do (lo and hi are not NaN where the quantizer
// does not clip).
static inline float noise_element(float x, float v, float s, float z, float qmin, float qmax, int bernoulli,
                                  float amplitude, float p) {
    float inv_scale = 1.0f / s;  // as fake_quant_forward: 1/s in float
    float lo = (qmin - z) * s, hi = (qmax - z) * s;
    float q = rintf(x * inv_scale) + z;
    float y = bernoulli ? (v < p ? (q - z) * s : x) : x + amplitude * s * v;
    y = y >= lo ? y : lo;
    y = y <= hi ? y : hi;
    float clipped = q != q ? x : (q < qmin ? lo : hi);
    return q >= qmin && q <= qmax ? y : clipped;
}

// The grid (s[e], z[e]) of the n elements (r, c0) .. (r, c0 + n - 1) of one row, as grid_at gives it.
static void noise_grid(float *s, float *z, const float *scale, const float *zero_point, const qft_fq_layout *layout,
                       int r, int c0, size_t n, int C, float qmin, float qmax) {
    switch (layout->axis) {
    case QFT_FQ_PER_TENSOR:
    case QFT_FQ_PER_ROW: {  // one group for the whole run
        size_t k = cpu_fq_group(layout, r, c0, C);
        float sk = scale[k], zk = cpu_fq_zero_point(zero_point, k, qmin, qmax);
        for (size_t e = 0; e < n; e++) s[e] = sk, z[e] = zk;
        return;
    }
    case QFT_FQ_PER_COLUMN:
        for (size_t e = 0; e < n; e++) s[e] = scale[c0 + e];
        if (!zero_point) {
            for (size_t e = 0; e < n; e++) z[e] = 0.0f;
            return;
        }
        for (size_t e = 0; e < n; e++) z[e] = cpu_fq_zero_point(zero_point, c0 + e, qmin, qmax);
        return;
    default:
        for (size_t e = 0; e < n; e++) {
            size_t k = cpu_fq_group(layout, r, c0 + (int)e, C);
            s[e] = scale[k];
            z[e] = cpu_fq_zero_point(zero_point, k, qmin, qmax);
        }
    }
}

// noise_element over a run of n elements; returns how many inputs are not finite.
static inline __attribute__((always_inline)) unsigned noise_run(float *out, const float *x, const float *v,
                                                                const float *s, const float *z, size_t n, float qmin,
                                                                float qmax, int bernoulli, float amplitude, float p) {
    unsigned bad = 0;
    // omp simd: out may alias x, which a plain loop would have to check for at run time.
#pragma omp simd reduction(+ : bad)
    for (size_t e = 0; e < n; e++) {
        bad += !(fabsf(x[e]) <= FLT_MAX);
        out[e] = noise_element(x[e], v[e], s[e], z[e], qmin, qmax, bernoulli, amplitude, p);
    }
    return bad;
}

size_t cpu_quant_noise_forward(float *out, const float *inp, const float *scale, const float *zero_point, int rows,
                               int C, const qft_fq_layout *layout, const qft_quant_noise *noise) {
    size_t bad = 0, n = (size_t)rows * C;
    if (n == 0) return 0;
    size_t tiles = (n + NOISE_TILE - 1) / NOISE_TILE;
    float qmin = (float)layout->qmin, qmax = (float)layout->qmax;
    int bernoulli = noise->kind == QFT_NOISE_BERNOULLI;
    noise_histogram histogram = {0};
    if (noise->kind == QFT_NOISE_HISTOGRAM) histogram_guide(&histogram, noise->cdf, noise->bins);
    // Tiles of the flattened index, not rows: the noise of element i comes from block i >> 2 whatever the
    // thread split and wherever rows begin and end (a row may begin inside a block).
#pragma omp parallel for schedule(static) reduction(+ : bad) if (n > QFT_CPU_PARALLEL_MIN_COMPUTE)
    for (size_t t = 0; t < tiles; t++) {
        size_t begin = t * NOISE_TILE, width = n - begin < NOISE_TILE ? n - begin : NOISE_TILE;
        float values[NOISE_TILE], s[NOISE_TILE], z[NOISE_TILE];
        cpu_philox_uniform_blocks(values, begin / 4, noise->seed, noise->stream);
        cpu_noise_values(values, noise->kind, &histogram);
        // The tile's runs within one row: their grids, then the elements.
        for (size_t j = 0; j < width;) {
            int r = (int)((begin + j) / (size_t)C), c0 = (int)((begin + j) % (size_t)C);
            size_t run = width - j < (size_t)(C - c0) ? width - j : (size_t)(C - c0);
            noise_grid(s, z, scale, zero_point, layout, r, c0, run, C, qmin, qmax);
            // Two call sites with a constant kind flag, so each loop vectorizes without a select on it.
            bad += bernoulli ? noise_run(out + begin + j, inp + begin + j, values + j, s, z, run, qmin, qmax, 1,
                                         noise->amplitude, noise->p)
                             : noise_run(out + begin + j, inp + begin + j, values + j, s, z, run, qmin, qmax, 0,
                                         noise->amplitude, noise->p);
            j += run;
        }
    }
    return bad;
}

// The rounding residual (Q(x) - x) / s of x on grid g, in *residual; 0 where the grid clips x (or x is NaN).
static inline int rounding_residual(float x, quant_grid g, float qmin, float qmax, double *residual) {
    float q = rintf(x * g.inv_scale) + g.zero_point;
    if (!(q >= qmin && q <= qmax)) return 0;
    *residual = ((double)((q - g.zero_point) * g.scale) - (double)x) / (double)g.scale;
    return 1;
}

size_t cpu_quant_residual(const float *inp, const float *scale, const float *zero_point, int rows, int C,
                          const qft_fq_layout *layout, double *sum_sq) {
    float qmin = (float)layout->qmin, qmax = (float)layout->qmax;
    double row_sums[rows > 0 ? rows : 1];
    size_t row_counts[rows > 0 ? rows : 1];
#pragma omp parallel for schedule(static) if ((size_t)rows * C > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (int r = 0; r < rows; r++) {
        double acc = 0.0;
        size_t count = 0;
        for (int c = 0; c < C; c++) {
            double residual;
            if (!rounding_residual(inp[(size_t)r * C + c], grid_at(scale, zero_point, cpu_fq_group(layout, r, c, C),
                                                                   layout), qmin, qmax, &residual))
                continue;
            acc += residual * residual;
            count++;
        }
        row_sums[r] = acc;
        row_counts[r] = count;
    }
    double total = 0.0;
    size_t inside = 0;
    for (int r = 0; r < rows; r++) {
        total += row_sums[r];
        inside += row_counts[r];
    }
    *sum_sq = total;
    return inside;
}

size_t cpu_quant_residual_histogram(const float *inp, const float *scale, const float *zero_point, int rows, int C,
                                    const qft_fq_layout *layout, int bins, uint64_t *counts) {
    float qmin = (float)layout->qmin, qmax = (float)layout->qmax;
    for (int b = 0; b < bins; b++) counts[b] = 0;
    size_t inside = 0;
    // Per-thread counts added together: integer sums, so the same counts for any thread split.
#pragma omp parallel for schedule(static) reduction(+ : inside, counts[:bins]) \
    if ((size_t)rows * C > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < C; c++) {
            double residual;
            if (!rounding_residual(inp[(size_t)r * C + c], grid_at(scale, zero_point, cpu_fq_group(layout, r, c, C),
                                                                   layout), qmin, qmax, &residual))
                continue;
            double position = floor((residual + 0.5) * bins);
            int b = position < 0.0 ? 0 : position > bins - 1 ? bins - 1 : (int)position;
            counts[b]++;
            inside++;
        }
    }
    return inside;
}
