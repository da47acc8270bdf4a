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

void cpu_tensor_moments(const float *x, size_t n, double out[4]) {
    out[0] = out[1] = out[2] = out[3] = 0.0;
    if (n == 0) return;
    size_t chunk = chunk_size(n), chunks = (n + chunk - 1) / chunk;
    double sums[METHOD_MAX_CHUNKS];
    float lo[METHOD_MAX_CHUNKS], hi[METHOD_MAX_CHUNKS];
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (size_t k = 0; k < chunks; k++) {
        size_t begin = k * chunk, end = begin + chunk < n ? begin + chunk : n;
        double sum = 0.0;
        float mn = x[begin], mx = x[begin];
        for (size_t i = begin; i < end; i++) {
            sum += x[i];
            mn = fminf(mn, x[i]);
            mx = fmaxf(mx, x[i]);
        }
        sums[k] = sum;
        lo[k] = mn;
        hi[k] = mx;
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
        double acc = 0.0;
        for (size_t i = begin; i < end; i++) acc += ((double)x[i] - mean) * ((double)x[i] - mean);
        sums[k] = acc;
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
            if (e > 0.0) {
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

size_t cpu_quant_noise_forward(float *out, const float *inp, const float *scale, const float *zero_point, int rows,
                               int C, const qft_fq_layout *layout, const qft_quant_noise *noise) {
    size_t bad = 0;
    float qmin = (float)layout->qmin, qmax = (float)layout->qmax;
    const float inv_sqrt12 = 0.28867513459481287f, two_pi = 6.283185307179586f;
#pragma omp parallel for schedule(static) reduction(+ : bad) if ((size_t)rows * C > QFT_CPU_PARALLEL_MIN_COMPUTE)
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)r * C + c;
            float x = inp[i];
            quant_grid g = grid_at(scale, zero_point, cpu_fq_group(layout, r, c, C), layout);
            bad += !(fabsf(x) <= FLT_MAX);
            float q = rintf(x * g.inv_scale) + g.zero_point;
            if (!(q >= qmin && q <= qmax)) {  // clipped (or NaN): the quantizer's own output
                out[i] = q != q ? x : (q < qmin ? g.lo : g.hi);
                continue;
            }
            qft_philox_block b = qft_philox4x32((uint32_t)i, (uint32_t)((uint64_t)i >> 32), (uint32_t)noise->stream,
                                                (uint32_t)(noise->stream >> 32), (uint32_t)noise->seed,
                                                (uint32_t)(noise->seed >> 32));
            float u0 = qft_uint_to_unit_float(b.v[0]), y;
            switch (noise->kind) {
            case QFT_NOISE_GAUSSIAN: {
                // Box-Muller; 1 - u0 lies in (0, 1], so the log is finite.
                float u1 = qft_uint_to_unit_float(b.v[1]);
                float gauss = sqrtf(-2.0f * logf(1.0f - u0)) * cosf(two_pi * u1);
                y = x + noise->amplitude * g.scale * gauss * inv_sqrt12;
                break;
            }
            case QFT_NOISE_BERNOULLI:
                y = qft_uint_to_unit_float(b.v[2]) < noise->p ? (q - g.zero_point) * g.scale : x;
                break;
            default:
                y = x + noise->amplitude * g.scale * (u0 - 0.5f);
                break;
            }
            out[i] = fminf(fmaxf(y, g.lo), g.hi);
        }
    }
    return bad;
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
            float x = inp[(size_t)r * C + c];
            quant_grid g = grid_at(scale, zero_point, cpu_fq_group(layout, r, c, C), layout);
            float q = rintf(x * g.inv_scale) + g.zero_point;
            if (!(q >= qmin && q <= qmax)) continue;
            double residual = ((double)((q - g.zero_point) * g.scale) - (double)x) / (double)g.scale;
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
