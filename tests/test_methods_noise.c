// Adaptive noise fine-tuning (host/method/noise.c, docs/methods.md §2): the noise op's statistics, clipping,
// determinism and independence of its Philox streams, the residual op behind the amplitude, the identity
// gradient inside the range (finite differences), and the model hook (noise in training, real quantizer off it).
#include <omp.h>
#include <string.h>

#include "backend/backend.h"
#include "core/rng.h"
#include "io/config.h"
#include "method/methods.h"
#include "model/model.h"
#include "test_util.h"

static const qft_backend *be;

// Mean and variance of (out - x) / s over n elements (x inside the range).
static void noise_moments(const float *out, const float *x, size_t n, float s, double *mean, double *var) {
    double sum = 0.0, sq = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = ((double)out[i] - x[i]) / s;
        sum += e;
        sq += e * e;
    }
    *mean = sum / n;
    *var = sq / n - *mean * *mean;
}

static void test_statistics(void) {
    int rows = 512, C = 256;
    size_t n = (size_t)rows * C;
    // Per-tensor 8-bit asymmetric grid over [-2, 2]; x well inside, so no noisy value reaches the ends.
    qft_fq_layout layout = {.qmin = 0, .qmax = 255, .axis = QFT_FQ_PER_TENSOR};
    float s = 4.0f / 255.0f, z = 128.0f;
    float *x = random_tensor(n, -1.5f, 1.5f), *out = malloc(n * sizeof(float)), *again = malloc(n * sizeof(float));
    float amplitude = 1.7f;
    for (int kind = QFT_NOISE_UNIFORM; kind <= QFT_NOISE_GAUSSIAN; kind++) {
        qft_quant_noise noise = {kind, amplitude, 0.0f, 99, 5, NULL, 0};
        be->quant_noise_forward(out, x, &s, &z, rows, C, &layout, &noise);
        double mean, var, want = (double)amplitude * amplitude / 12.0;
        noise_moments(out, x, n, s, &mean, &var);
        // Standard errors for n = 131072: mean sqrt(want / n) ~ 0.0014; variance within 2% (about 5 of its
        // standard errors for uniform noise, 3.5 for Gaussian).
        CHECK(fabs(mean) < 5.0 * sqrt(want / n) && fabs(var / want - 1.0) < 0.02,
              "%s noise: mean %.4g, variance %.5g, expected 0 and a^2/12 = %.5g", kind ? "gaussian" : "uniform", mean,
              var, want);
        printf("%s noise: mean %.2e step, variance %.5f step^2 (a^2/12 = %.5f)\n", kind ? "gaussian" : "uniform", mean,
               var, want);
        // Deterministic given (seed, stream), for any thread count.
        int threads = omp_get_max_threads();
        omp_set_num_threads(1);
        be->quant_noise_forward(again, x, &s, &z, rows, C, &layout, &noise);
        omp_set_num_threads(threads);
        CHECK(memcmp(out, again, n * sizeof(float)) == 0, "noise kind %d differs between 1 and %d threads", kind,
              threads);
        // Other streams (sites, steps) and other seeds give other noise, uncorrelated with this one.
        for (int variant = 0; variant < 2; variant++) {
            qft_quant_noise other = noise;
            if (variant) other.seed++;
            else other.stream++;
            be->quant_noise_forward(again, x, &s, &z, rows, C, &layout, &other);
            double cross = 0.0;
            size_t same = 0;
            for (size_t i = 0; i < n; i++) {
                cross += ((double)out[i] - x[i]) * ((double)again[i] - x[i]) / ((double)s * s);
                same += out[i] == again[i];
            }
            double corr = cross / n / want;
            CHECK(fabs(corr) < 0.02 && same < n / 100, "another %s gives correlated noise (%.3g, %zu equal)",
                  variant ? "seed" : "stream", corr, same);
        }
    }
    // Bernoulli: a fraction p of the elements is exactly Q(x), the rest exactly x.
    qft_quant_noise mix = {QFT_NOISE_BERNOULLI, 1.0f, 0.3f, 99, 5, NULL, 0};
    float *q = malloc(n * sizeof(float));
    be->quant_noise_forward(out, x, &s, &z, rows, C, &layout, &mix);
    be->fake_quant_forward(q, x, &s, &z, rows, C, &layout);
    size_t quantized = 0, kept = 0, differ = 0;
    for (size_t i = 0; i < n; i++) {
        differ += q[i] != x[i];
        if (q[i] == x[i]) continue;
        quantized += out[i] == q[i];
        kept += out[i] == x[i];
    }
    double share = (double)quantized / differ;
    CHECK(quantized + kept == differ && fabs(share - 0.3) < 0.01, "bernoulli: %.4f of the elements quantized "
          "(expected 0.3), %zu neither", share, differ - quantized - kept);
    // Clipping: values outside the range give the quantizer's own output, whatever the noise.
    for (size_t i = 0; i < n; i += 7) x[i] *= 3.0f;
    qft_quant_noise noise = {QFT_NOISE_UNIFORM, 2.0f, 0.0f, 1, 2, NULL, 0};
    be->quant_noise_forward(out, x, &s, &z, rows, C, &layout, &noise);
    be->fake_quant_forward(q, x, &s, &z, rows, C, &layout);
    float lo = (0 - z) * s, hi = (255 - z) * s;
    size_t clipped = 0, wrong = 0;
    for (size_t i = 0; i < n; i++) {
        float code = rintf(x[i] / s) + z;
        int outside = code < 0 || code > 255;
        clipped += outside;
        wrong += outside ? out[i] != q[i] : (out[i] < lo || out[i] > hi);
    }
    CHECK(clipped > n / 20 && wrong == 0, "clipping: %zu of %zu clipped elements differ from Q(x) or leave the range",
          wrong, clipped);
    free(q);
    free(x);
    free(out);
    free(again);
}

// Noise of element i, centred and in steps, as the contract in backend.h writes it: word i & 3 of Philox block
// i >> 2; Gaussian elements pair words (0, 1) and (2, 3) with the cos and the sin branch of Box-Muller.
// Histogram elements take the inverse of the piecewise-linear CDF at that word, its bin found by a plain search.
static float reference_value(const qft_quant_noise *noise, size_t i) {
    qft_philox_block b = qft_philox_block_at(noise->seed, noise->stream, i >> 2);
    float u = qft_uint_to_unit_float(b.v[i & 3]);
    if (noise->kind == QFT_NOISE_UNIFORM) return u - 0.5f;
    if (noise->kind == QFT_NOISE_BERNOULLI) return u;
    if (noise->kind == QFT_NOISE_HISTOGRAM) {
        int j = 0;
        for (int k = 0; k < noise->bins; k++)
            if (noise->cdf[k] <= u) j = k;
        float lo = noise->cdf[j];
        return ((float)j + (u - lo) / (noise->cdf[j + 1] - lo)) / (float)noise->bins - 0.5f;
    }
    size_t pair = i & 2;
    float radius = sqrtf(-2.0f * logf(1.0f - qft_uint_to_unit_float(b.v[pair])));
    float angle = 6.283185307179586f * qft_uint_to_unit_float(b.v[pair + 1]);
    return radius * (i & 1 ? sinf(angle) : cosf(angle)) / sqrtf(12.0f);
}

static size_t reference_group(const qft_fq_layout *l, int r, int c, int C) {
    switch (l->axis) {
    case QFT_FQ_PER_TENSOR: return 0;
    case QFT_FQ_PER_ROW: return (size_t)r;
    case QFT_FQ_PER_COLUMN: return (size_t)c;
    case QFT_FQ_PER_ROW_GROUP: return (size_t)r * (C / l->group_size) + c / l->group_size;
    default: return (size_t)l->column_group[c];
    }
}

// The op against that mapping, element by element, for every layout and kind, with a zero point, rows that
// begin inside a Philox block (C = 38, not a multiple of 4, shorter than the op's tiles), clipped values and NaN.
static void test_reference(void) {
    int rows = 53, C = 38;
    size_t n = (size_t)rows * C;
    float *x = random_tensor(n, -1.0f, 1.0f), *out = malloc(n * sizeof(float));
    x[5] = NAN, x[77] = 40.0f, x[78] = -40.0f;
    float scale[64 * 53], zero_point[64 * 53];  // enough for the largest group count (rows * C / 2)
    for (int k = 0; k < 64 * 53; k++) scale[k] = 0.05f + 0.01f * (k % 7), zero_point[k] = (float)(k % 5) - 2.0f;
    int32_t column_group[38];
    for (int c = 0; c < C; c++) column_group[c] = (c * 7 + c / 3) % 5;
    const qft_fq_axis axes[] = {QFT_FQ_PER_TENSOR, QFT_FQ_PER_ROW, QFT_FQ_PER_COLUMN, QFT_FQ_PER_ROW_GROUP,
                                QFT_FQ_COLUMN_MAP};
    // A histogram with empty bins (the first and last among them), a spike and a ramp.
    uint64_t counts[QFT_NOISE_BINS];
    size_t total = 0;
    for (int j = 0; j < QFT_NOISE_BINS; j++)
        total += counts[j] = j % 3 == 0 || j > 250 ? 0 : j == 100 ? 5000 : (uint64_t)j;
    float cdf[QFT_NOISE_BINS + 1];
    qft_noise_histogram_cdf(counts, total, QFT_NOISE_BINS, cdf);
    for (int a = 0; a < 5; a++) {
        qft_fq_layout layout = {.qmin = -8, .qmax = 7, .axis = axes[a], .group_size = 2, .column_group = column_group};
        for (int kind = QFT_NOISE_UNIFORM; kind <= QFT_NOISE_HISTOGRAM; kind++) {
            qft_quant_noise noise = {kind, 1.3f, 0.4f, 0x5eed, 77, kind == QFT_NOISE_HISTOGRAM ? cdf : NULL,
                                     QFT_NOISE_BINS};
            size_t bad = be->quant_noise_forward(out, x, scale, zero_point, rows, C, &layout, &noise);
            size_t wrong = 0, first = n;
            for (int r = 0; r < rows; r++) {
                for (int c = 0; c < C; c++) {
                    size_t i = (size_t)r * C + c, k = reference_group(&layout, r, c, C);
                    float s = scale[k], z = fminf(fmaxf(rintf(zero_point[k]), -8.0f), 7.0f);
                    float lo = (-8.0f - z) * s, hi = (7.0f - z) * s, q = rintf(x[i] * (1.0f / s)) + z, want;
                    if (q != q) want = x[i];
                    else if (q < -8.0f || q > 7.0f) want = q < -8.0f ? lo : hi;
                    else {
                        float v = reference_value(&noise, i);
                        float y = kind == QFT_NOISE_BERNOULLI ? (v < noise.p ? (q - z) * s : x[i])
                                                              : x[i] + noise.amplitude * s * v;
                        want = fminf(fmaxf(y, lo), hi);
                    }
                    int same = want != want ? out[i] != out[i] : fabsf(out[i] - want) <= 1e-6f * (fabsf(want) + s);
                    if (!same && first == n) first = i;
                    wrong += !same;
                }
            }
            CHECK(bad == 1 && wrong == 0, "layout %d, noise kind %d: %zu of %zu elements differ from the reference "
                  "(first %zu), %zu non-finite", (int)axes[a], kind, wrong, n, first, bad);
        }
    }
    free(x), free(out);
}

// Four neighbouring elements share a Philox block: their noise is uncorrelated (uniform: different words;
// Gaussian: the cos and sin branches of one Box-Muller pair and the two pairs), and it is a function of the
// flattened index only, so other row lengths (C not a multiple of 4, rows beginning inside a block) and
// other thread counts give the same bits.
static void test_shared_blocks(void) {
    int rows = 2048, C = 128;
    size_t n = (size_t)rows * C;
    qft_fq_layout layout = {.qmin = 0, .qmax = 255, .axis = QFT_FQ_PER_TENSOR};
    float s = 4.0f / 255.0f, z = 128.0f;
    float *x = random_tensor(n, -1.5f, 1.5f), *out = malloc(n * sizeof(float)), *again = malloc(n * sizeof(float));
    for (int kind = QFT_NOISE_UNIFORM; kind <= QFT_NOISE_GAUSSIAN; kind++) {
        qft_quant_noise noise = {kind, 1.0f, 0.0f, 12, 34, NULL, 0};
        be->quant_noise_forward(out, x, &s, &z, rows, C, &layout, &noise);
        // corr[d]: elements 4j + d and 4j + d + 1 (d = 0: word 0 and 1, the Gaussian cos and sin of one pair).
        double corr[3];
        for (int d = 0; d < 3; d++) {
            double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
            size_t m = n / 4;
            for (size_t j = 0; j < m; j++) {
                double ea = ((double)out[4 * j + d] - x[4 * j + d]) / s;
                double eb = ((double)out[4 * j + d + 1] - x[4 * j + d + 1]) / s;
                sa += ea, sb += eb, saa += ea * ea, sbb += eb * eb, sab += ea * eb;
            }
            double cov = sab / m - sa / m * sb / m;
            corr[d] = cov / sqrt((saa / m - sa / m * sa / m) * (sbb / m - sb / m * sb / m));
        }
        CHECK(fabs(corr[0]) < 0.02 && fabs(corr[1]) < 0.02 && fabs(corr[2]) < 0.02,
              "%s noise: neighbours in one Philox block correlate: %.4f (4j, 4j+1), %.4f (4j+1, 4j+2), "
              "%.4f (4j+2, 4j+3)", kind ? "gaussian" : "uniform", corr[0], corr[1], corr[2]);
        printf("%s noise, neighbours in one block: corr %.4f / %.4f / %.4f over %zu pairs\n",
               kind ? "gaussian" : "uniform", corr[0], corr[1], corr[2], n / 4);
        // The same flat tensor as [rows', C'] for other C' (odd, 2 mod 4, shorter than a tile), 1 and 2 threads.
        const int widths[] = {127, 131, 1000, 38, 5};
        int threads = omp_get_max_threads(), differ = 0;
        for (int w = 0; w < 5; w++) {
            int C2 = widths[w], rows2 = (int)(n / C2);
            for (int t = 1; t <= 2; t++) {
                omp_set_num_threads(t);
                memset(again, 0, n * sizeof(float));
                be->quant_noise_forward(again, x, &s, &z, rows2, C2, &layout, &noise);
                differ += memcmp(out, again, (size_t)rows2 * C2 * sizeof(float)) != 0;
            }
        }
        omp_set_num_threads(threads);
        CHECK(differ == 0, "%s noise: %d of 10 reshaped / re-threaded runs differ from [%d, %d] at %d threads",
              kind ? "gaussian" : "uniform", differ, rows, C, threads);
    }
    free(x), free(out), free(again);
}

// The residual op: values spread evenly over many steps have a = sqrt(12 mean r^2) ~ 1; values on the grid 0;
// per-channel scales are honoured and clipped elements left out.
static void test_residual(void) {
    int rows = 256, C = 64;
    size_t n = (size_t)rows * C;
    qft_fq_layout layout = {.qmin = -127, .qmax = 127, .axis = QFT_FQ_PER_COLUMN};
    float scale[64];
    for (int c = 0; c < C; c++) scale[c] = 0.01f * (1 + c % 5);
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = test_uniform(-1.0f, 1.0f) * 100.0f * scale[i % C];
    double sum_sq;
    size_t inside = be->quant_residual(x, scale, NULL, rows, C, &layout, &sum_sq);
    double a = sqrt(12.0 * sum_sq / inside);
    CHECK(inside == n && fabs(a - 1.0) < 0.02, "uniform values: a = %.4f over %zu of %zu (expected ~1)", a, inside, n);
    for (size_t i = 0; i < n; i++) x[i] = rintf(x[i] / scale[i % C]) * scale[i % C];
    x[0] = 1000.0f;  // clipped: left out
    inside = be->quant_residual(x, scale, NULL, rows, C, &layout, &sum_sq);
    CHECK(inside == n - 1 && sum_sq < 1e-8, "values on the grid: residual %.3g over %zu", sum_sq, inside);
    free(x);
}

// Bin of residual r, as the contract in backend.h writes it (floor((r + 1/2) bins) clamped to the bins).
static int reference_bin(double r, int bins) {
    double position = floor((r + 0.5) * bins);
    return position < 0.0 ? 0 : position > bins - 1 ? bins - 1 : (int)position;
}

// The residual histogram op against a direct count over every element, for every layout (zero points, clipped
// values, NaN, residuals of exactly +-1/2), on a tensor large enough for the op's parallel path; the same counts
// with 1 thread and 2.
static void test_residual_histogram(void) {
    int rows = 600, C = 300, bins = QFT_NOISE_BINS;
    size_t n = (size_t)rows * C;
    float *x = random_tensor(n, -1.0f, 1.0f);
    size_t groups = n / 2;  // the largest group count (per row group of 2)
    float *scale = malloc(groups * sizeof(float)), *zero_point = malloc(groups * sizeof(float));
    for (size_t k = 0; k < groups; k++) scale[k] = 0.05f + 0.01f * (k % 7), zero_point[k] = (float)(k % 5);
    int32_t *column_group = malloc((size_t)C * sizeof(int32_t));
    for (int c = 0; c < C; c++) column_group[c] = (c * 7 + c / 3) % 5;
    x[3] = NAN, x[10] = 50.0f, x[11] = -50.0f;
    // Half-step points: rint goes to even, so (Q(x) - x) / s is exactly -1/2 or +1/2 (the last bin's clamp).
    for (size_t i = 20; i < 40; i++) x[i] = 0.05f * ((float)(i % 6) - 2.5f);
    const qft_fq_axis axes[] = {QFT_FQ_PER_TENSOR, QFT_FQ_PER_ROW, QFT_FQ_PER_COLUMN, QFT_FQ_PER_ROW_GROUP,
                                QFT_FQ_COLUMN_MAP};
    uint64_t counts[QFT_NOISE_BINS], want[QFT_NOISE_BINS], single[QFT_NOISE_BINS];
    int threads = omp_get_max_threads();
    for (int a = 0; a < 5; a++) {
        qft_fq_layout layout = {.qmin = 0, .qmax = 15, .axis = axes[a], .group_size = 2, .column_group = column_group};
        memset(want, 0, sizeof want);
        size_t inside = 0, edges = 0;
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < C; c++) {
                size_t i = (size_t)r * C + c, k = reference_group(&layout, r, c, C);
                float s = scale[k], z = fminf(fmaxf(rintf(zero_point[k]), 0.0f), 15.0f);
                float q = rintf(x[i] * (1.0f / s)) + z;
                if (!(q >= 0.0f && q <= 15.0f)) continue;
                double residual = ((double)((q - z) * s) - (double)x[i]) / (double)s;
                edges += fabs(residual) >= 0.5;
                want[reference_bin(residual, bins)]++;
                inside++;
            }
        }
        omp_set_num_threads(2);
        size_t got = be->quant_residual_histogram(x, scale, zero_point, rows, C, &layout, bins, counts);
        omp_set_num_threads(1);
        size_t got_single = be->quant_residual_histogram(x, scale, zero_point, rows, C, &layout, bins, single);
        omp_set_num_threads(threads);
        CHECK(got == inside && memcmp(counts, want, sizeof want) == 0 && got_single == got &&
                  memcmp(single, counts, sizeof counts) == 0,
              "layout %d: residual histogram over %zu elements (direct count %zu, 1 thread %zu) differs from the "
              "direct count or between 1 and 2 threads", (int)axes[a], got, inside, got_single);
        CHECK(a != 0 || (edges > 0 && inside < n - 2), "layout 0: no residual of +-1/2 (%zu) or nothing clipped",
              edges);
    }
    free(x), free(scale), free(zero_point), free(column_group);
}

// F(e) of the histogram's piecewise-linear CDF at eps = e (steps).
static double histogram_cdf_at(const float *cdf, int bins, double e) {
    double t = (e + 0.5) * bins;
    if (t <= 0.0) return 0.0;
    if (t >= bins) return 1.0;
    int j = (int)t;
    return cdf[j] + ((double)cdf[j + 1] - cdf[j]) * (t - j);
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Kolmogorov-Smirnov distance sup_e |F_n(e) - F(e)| of sorted samples against the histogram's CDF
// (cdf NULL: the uniform U(-1/2, 1/2)).
static double ks_distance(const double *sorted, size_t n, const float *cdf, int bins) {
    double d = 0.0;
    for (size_t i = 0; i < n; i++) {
        double f = cdf ? histogram_cdf_at(cdf, bins, sorted[i]) : fmin(fmax(sorted[i] + 0.5, 0.0), 1.0);
        d = fmax(d, fmax(fabs((double)(i + 1) / n - f), fabs((double)i / n - f)));
    }
    return d;
}

// A value concentrated near the grid: offset d from the nearest level, 70% N(0.12, 0.07^2) clamped to +-0.45,
// 30% U(-1/2, 1/2), so the residual -d is skewed and peaked.
static float near_grid_offset(void) {
    if (test_uniform(0.0f, 1.0f) < 0.3f) return test_uniform(-0.5f, 0.5f);
    float u1 = test_uniform(1e-7f, 1.0f), u2 = test_uniform(0.0f, 1.0f);
    float g = sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
    return fminf(fmaxf(0.12f + 0.07f * g, -0.45f), 0.45f);
}

// Histogram noise (NIPQ): the histogram of the residuals of values concentrated near the grid points is far from
// uniform; noise drawn from its CDF follows it (Kolmogorov-Smirnov), has its mean and variance (standard errors)
// and the real residual's mean square; the same bits with 1 and 2 threads and reshaped; amplitude (the annealing
// factor) scales eps; clipped elements equal Q(x); the uniform CDF (the fallback) gives uniform noise bit for bit.
static void test_histogram_noise(void) {
    int rows = 512, C = 256, bins = QFT_NOISE_BINS;
    size_t n = (size_t)rows * C;  // 131072 draws
    qft_fq_layout layout = {.qmin = -8, .qmax = 7, .axis = QFT_FQ_PER_TENSOR};
    float s = 0.1f;
    float *x = malloc(n * sizeof(float)), *out = malloc(n * sizeof(float)), *again = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = s * ((float)((int)test_uniform(0.0f, 11.0f) - 5) + near_grid_offset());
    uint64_t counts[QFT_NOISE_BINS];
    float cdf[QFT_NOISE_BINS + 1];
    size_t inside = be->quant_residual_histogram(x, &s, NULL, rows, C, &layout, bins, counts);
    qft_noise_histogram_cdf(counts, inside, bins, cdf);
    double sum_sq;
    be->quant_residual(x, &s, NULL, rows, C, &layout, &sum_sq);
    // The histogram's exact moments (piecewise-uniform density): mean, variance, 4th central moment; its peak
    // density (per step).
    double mean_h = 0.0, second_h = 0.0, var_h = 0.0, m4_h = 0.0, peak = 0.0, w = 1.0 / bins;
    for (int j = 0; j < bins; j++) {
        double p = (double)cdf[j + 1] - cdf[j], a = -0.5 + j * w, b = a + w;
        mean_h += p * (a + b) / 2;
        second_h += p * (a * a + a * b + b * b) / 3;
        peak = fmax(peak, p / w);
    }
    for (int j = 0; j < bins; j++) {
        double p = (double)cdf[j + 1] - cdf[j], a = -0.5 + j * w - mean_h, b = a + w;
        var_h += p * (b * b * b - a * a * a) / (3 * w);
        m4_h += p * (pow(b, 5) - pow(a, 5)) / (5 * w);
    }
    CHECK(inside == n && fabs(second_h - sum_sq / inside) < 1e-5,
          "histogram mean square %.6f vs the residual's %.6f over %zu of %zu", second_h, sum_sq / inside, inside, n);
    // Draws at x on the grid k s, |k| <= 3: x + s eps stays inside the range, and eps = (out - x) / s is exact
    // to ~3e-7 step (the rounding of out, ulp(0.35) / 2 / s).
    for (size_t i = 0; i < n; i++) x[i] = s * (float)((int)test_uniform(0.0f, 7.0f) - 3);
    qft_quant_noise noise = {QFT_NOISE_HISTOGRAM, 1.0f, 0.0f, 2023, 8, cdf, bins};
    be->quant_noise_forward(out, x, &s, NULL, rows, C, &layout, &noise);
    double *eps = malloc(n * sizeof(double)), mean = 0.0, var = 0.0;
    for (size_t i = 0; i < n; i++) eps[i] = ((double)out[i] - x[i]) / s, mean += eps[i];
    mean /= n;
    for (size_t i = 0; i < n; i++) var += (eps[i] - mean) * (eps[i] - mean);
    var /= n;
    qsort(eps, n, sizeof(double), compare_doubles);
    double ks = ks_distance(eps, n, cdf, bins), ks_uniform = ks_distance(eps, n, NULL, bins);
    // Bound: for n draws from a continuous F, sqrt(n) D_n tends to the Kolmogorov distribution, whose 0.999 quantile
    // is 1.9495 (P(sqrt(n) D_n > 1.9495) = 0.001; at n = 131072 the asymptotic form is accurate to well below
    // that); the fixed seed makes the test deterministic, so a correct sampler fails it for 1 seed in 1000. Plus
    // what the float arithmetic moves: u has 24 bits (CDF step 2^-24), and eps is off by at most 1e-6 step
    // (inverse in float, out rounded), which moves F by at most peak density * 1e-6.
    double bound = 1.9495 / sqrt((double)n) + 0x1p-24 + peak * 1e-6;
    CHECK(ks < bound && ks_uniform > 10 * bound,
          "histogram noise: KS distance %.5f to its histogram (bound %.5f), %.4f to the uniform (expected > %.4f)", ks,
          bound, ks_uniform, 10 * bound);
    // Mean within 5 standard errors sqrt(var / n); variance within 5 of its standard errors sqrt((m4 - var^2) / n).
    double se_mean = sqrt(var_h / n), se_var = sqrt((m4_h - var_h * var_h) / n);
    CHECK(fabs(mean - mean_h) < 5 * se_mean && fabs(var - var_h) < 5 * se_var,
          "histogram noise: mean %.5f (histogram %.5f, se %.2g), variance %.5f (histogram %.5f, se %.2g)", mean,
          mean_h, se_mean, var, var_h, se_var);
    printf("histogram noise (%zu draws, peak density %.2f / step): KS %.5f (bound %.5f), %.4f to U(-1/2, 1/2); "
           "mean %.5f vs %.5f (se %.1e), variance %.5f vs %.5f (se %.1e), histogram mean square %.6f vs residual "
           "%.6f\n", n, peak, ks, bound, ks_uniform, mean, mean_h, se_mean, var, var_h, se_var, second_h,
           sum_sq / inside);
    // The same bits with 1 and 2 threads and for the flat tensor as [rows', 127].
    int threads = omp_get_max_threads(), differ = 0;
    for (int t = 1; t <= 2; t++) {
        omp_set_num_threads(t);
        be->quant_noise_forward(again, x, &s, NULL, rows, C, &layout, &noise);
        differ += memcmp(out, again, n * sizeof(float)) != 0;
        be->quant_noise_forward(again, x, &s, NULL, (int)(n / 127), 127, &layout, &noise);
        differ += memcmp(out, again, n / 127 * 127 * sizeof(float)) != 0;
    }
    omp_set_num_threads(threads);
    CHECK(differ == 0, "histogram noise: %d of 4 runs with 1 / 2 threads or reshaped differ", differ);
    // The annealing factor (amplitude) scales eps.
    qft_quant_noise half = noise;
    half.amplitude = 0.5f;
    be->quant_noise_forward(again, x, &s, NULL, rows, C, &layout, &half);
    double worst = 0.0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(((double)again[i] - x[i]) - 0.5 * ((double)out[i] - x[i])) / s);
    CHECK(worst < 1e-5, "histogram noise at factor 0.5: eps off half by up to %.3g step", worst);
    // The uniform CDF (no measurement yet) is uniform noise, bit for bit.
    float flat[QFT_NOISE_BINS + 1];
    qft_noise_histogram_cdf(NULL, 0, bins, flat);
    qft_quant_noise fallback = {QFT_NOISE_HISTOGRAM, 1.0f, 0.0f, 2023, 8, flat, bins}, uniform = fallback;
    uniform.kind = QFT_NOISE_UNIFORM, uniform.cdf = NULL;
    be->quant_noise_forward(out, x, &s, NULL, rows, C, &layout, &fallback);
    be->quant_noise_forward(again, x, &s, NULL, rows, C, &layout, &uniform);
    CHECK(memcmp(out, again, n * sizeof(float)) == 0,
          "histogram noise with the uniform CDF differs from uniform noise");
    // Clipping: values outside the range take Q(x); the others stay inside it.
    for (size_t i = 0; i < n; i += 5) x[i] = s * test_uniform(-20.0f, 20.0f);
    float *q = malloc(n * sizeof(float));
    be->quant_noise_forward(out, x, &s, NULL, rows, C, &layout, &noise);
    be->fake_quant_forward(q, x, &s, NULL, rows, C, &layout);
    size_t clipped = 0, wrong = 0;
    for (size_t i = 0; i < n; i++) {
        float code = rintf(x[i] * (1.0f / s));
        int outside = code < -8.0f || code > 7.0f;
        clipped += outside;
        wrong += outside ? out[i] != q[i] : (out[i] < -8.0f * s || out[i] > 7.0f * s);
    }
    CHECK(clipped > n / 20 && wrong == 0, "histogram noise: %zu of %zu clipped elements differ from Q(x) or leave "
          "the range", wrong, clipped);
    free(x), free(out), free(again), free(eps), free(q);
}

// The gradient of the noisy forward w.r.t. x, with the noise held fixed (same seed, stream and index), is 1
// inside the range and 0 where the quantizer clips: exactly the STE the backward applies.
static void test_gradient(void) {
    int rows = 16, C = 32;
    size_t n = (size_t)rows * C;
    qft_fq_layout layout = {.qmin = -8, .qmax = 7, .axis = QFT_FQ_PER_TENSOR};
    float s = 0.1f;
    float *x = random_tensor(n, -1.2f, 1.2f), *up = malloc(n * sizeof(float)), *down = malloc(n * sizeof(float));
    float *xp = malloc(n * sizeof(float)), *xm = malloc(n * sizeof(float)), *ste = calloc(n, sizeof(float));
    float *ones = malloc(n * sizeof(float));
    float h = 1e-3f;
    for (size_t i = 0; i < n; i++) xp[i] = x[i] + h, xm[i] = x[i] - h, ones[i] = 1.0f;
    qft_quant_noise noise = {QFT_NOISE_UNIFORM, 1.0f, 0.0f, 3, 4, NULL, 0};
    be->quant_noise_forward(up, xp, &s, NULL, rows, C, &layout, &noise);
    be->quant_noise_forward(down, xm, &s, NULL, rows, C, &layout, &noise);
    be->fake_quant_backward(ste, NULL, NULL, ones, x, &s, NULL, rows, C, &layout, 1.0f);
    size_t checked = 0, bad = 0, interior = 0;
    for (size_t i = 0; i < n; i++) {
        // Skip points within h of a clipping threshold or of the range ends, where the difference straddles a kink.
        float code = x[i] / s;
        if (fabsf(code - (-8.5f)) < 0.05f || fabsf(code - 7.5f) < 0.05f) continue;
        float noisy = up[i] - h;  // the noisy value at x
        if (ste[i] != 0.0f && (noisy - s * -8 < 2 * h || s * 7 - noisy < 2 * h)) continue;
        double fd = ((double)up[i] - down[i]) / (2.0 * h);
        checked++;
        interior += ste[i] != 0.0f;
        bad += fabs(fd - ste[i]) > 1e-2;
    }
    CHECK(checked > n / 2 && interior > checked / 2 && interior < checked && bad == 0,
          "noise gradient vs finite differences: %zu of %zu differ from the STE (%zu inside the range)", bad, checked,
          interior);
    free(x), free(up), free(down), free(xp), free(xm), free(ste), free(ones);
}

// In a model: a training forward with noise differs from the real quantizer's, is repeatable, and the same
// forward outside training (evaluation) is the real quantizer's bit for bit. Amplitudes adapt into [min, max];
// kind histogram measures each site's CDF instead (valid, not uniform) and leaves the amplitudes alone.
static void test_model(const char *kind) {
    char yaml[512];
    snprintf(yaml, sizeof yaml, "model: {hidden_size: 16, num_layers: 2, num_heads: 2, intermediate_size: 32}\n"
             "quant:\n  rules:\n    - {pattern: \"*.weight\", bits: 4, granularity: channel}\n"
             "    - {pattern: \"layers.*.input\", bits: 4}\n"
             "noise: {kind: %s, adapt_every: 1, amplitude_min: 0.5, amplitude_max: 2}\n", kind);
    int histogram = strcmp(kind, "histogram") == 0;
    qft_config cfg;
    qft_error err;
    qft_config_defaults(&cfg);
    CHECK(qft_config_load_string(&cfg, yaml, strlen(yaml), "noise", &err) == QFT_OK, "config: %s", err.message);
    int B = 4;
    qft_model m;
    qft_methods methods;
    CHECK(qft_model_create(&m, &cfg.model, B, 0, be, 5, &err) == QFT_OK, "model: %s", err.message);
    CHECK(qft_model_quant_configure(&m, &cfg.quant.rules, &err) == QFT_OK, "rules: %s", err.message);
    CHECK(qft_methods_init(&methods, &cfg, &m, &err) == QFT_OK, "methods: %s", err.message);
    for (int i = 0; i < m.quant.count; i++) {
        qft_quant_site *site = &m.quant.sites[i];
        if (!site->fmt.enabled) continue;
        float sc[site->n_params];
        for (int k = 0; k < site->n_params; k++) sc[k] = site->role == QFT_SITE_WEIGHT ? 0.05f : 0.3f;
        be->copy_to_device(site->scale, sc, sizeof sc);
    }
    m.quant.mode = QFT_QUANT_ON;
    float *images = random_tensor((size_t)B * 28 * 28, -1.0f, 1.0f);
    int32_t labels[4] = {1, 2, 3, 4};
    qft_batch batch = {.batch_size = B, .images = images, .labels = labels};
    CHECK(qft_model_set_batch(&m, &batch, &err) == QFT_OK, "batch: %s", err.message);
    float real = qft_model_forward(&m, 0, 7, 0);
    float noisy[3];
    for (int k = 0; k < 3; k++) {
        qft_methods_begin_micro(&methods, k == 2 ? 1 : 0, 10, 0, 7, k == 2 ? 1 : 0, 1.0f);
        noisy[k] = qft_model_forward(&m, 1, 7, k == 2 ? 1 : 0);
        qft_methods_end_micro(&methods);
    }
    float after = qft_model_forward(&m, 0, 7, 0);
    CHECK(noisy[0] != real && noisy[0] == noisy[1] && noisy[2] != noisy[0] && after == real,
          "losses: real %.7g, noisy %.7g / %.7g (same step) / %.7g (next step), real again %.7g", real, noisy[0],
          noisy[1], noisy[2], after);
    int adapted = 0, in_range = 1, measured = 0, valid = 1;
    for (int i = 0; i < m.quant.count; i++) {
        if (!methods.noise.selected[i]) continue;
        float a = m.quant.sites[i].noise_amplitude;
        adapted += a != 1.0f;
        in_range &= a >= 0.5f && a <= 2.0f;
        if (!histogram) continue;
        const float *cdf = methods.noise.cdf + (size_t)i * (QFT_NOISE_BINS + 1);
        valid &= cdf[0] == 0.0f && cdf[QFT_NOISE_BINS] == 1.0f;
        int uniform = 1;
        for (int j = 0; j < QFT_NOISE_BINS; j++) {
            valid &= cdf[j + 1] >= cdf[j];
            uniform &= cdf[j] == (float)j / QFT_NOISE_BINS;
        }
        measured += !uniform;
    }
    if (histogram) {
        qft_write_tensor tensor;
        CHECK(adapted == 0 && measured > 0 && valid && qft_noise_tensor_count(&methods.noise) == 1 &&
                  qft_noise_collect(&methods.noise, &tensor, 1) == 1 && tensor.ndim == 2 &&
                  tensor.shape[0] == m.quant.count && tensor.shape[1] == QFT_NOISE_BINS + 1,
              "histogram: %d amplitudes changed, %d CDFs measured, all valid: %d, checkpoint tensor", adapted, measured,
              valid);
    } else {
        CHECK(adapted > 0 && in_range && qft_noise_tensor_count(&methods.noise) == 0,
              "amplitudes: %d adapted, all in [0.5, 2]: %d", adapted, in_range);
    }
    // Annealing: the noise factor is 1 before the last fraction and falls linearly to 0.
    methods.noise.cfg = &cfg.noise;
    cfg.noise.anneal = 0.25;
    qft_noise_set_step(&methods.noise, 74, 100);
    float f74 = methods.noise.factor;
    qft_noise_set_step(&methods.noise, 75, 100);
    float f75 = methods.noise.factor;
    qft_noise_set_step(&methods.noise, 90, 100);
    float f90 = methods.noise.factor;
    CHECK(f74 == 1.0f && f75 == 1.0f && fabsf(f90 - 0.4f) < 1e-6f, "anneal factors %g %g %g", f74, f75, f90);
    // anneal_to quantizer (default): with f = 0.4 a (micro-step, site) pair draws noise with probability 0.4,
    // else takes the real quantizer; the draw repeats for the same pair.
    int noisy_pairs = 0, pairs = 0, repeat = 1;
    for (uint64_t k = 0; k < 400; k++) {
        methods.noise.step = k;
        for (int i = 0; i < m.quant.count; i++) {
            if (!methods.noise.selected[i]) continue;
            float strength = qft_noise_strength(&methods.noise, i);
            repeat &= strength == qft_noise_strength(&methods.noise, i) && (strength == 0.0f || strength == 1.0f);
            noisy_pairs += strength == 1.0f;
            pairs++;
        }
    }
    double share = (double)noisy_pairs / pairs, se = sqrt(0.4 * 0.6 / pairs);
    CHECK(repeat && fabs(share - 0.4) < 5 * se, "anneal_to quantizer at f = 0.4: noise on %.4f of %d (step, site) "
          "pairs (5 standard errors: %.4f)", share, pairs, 5 * se);
    methods.noise.anneal_to_quantizer = 0;
    CHECK(qft_noise_strength(&methods.noise, 0) == methods.noise.factor, "anneal_to zero scales the noise by f");
    methods.noise.anneal_to_quantizer = 1;
    // At the end of training (f = 0) a training forward is the real quantizer's, bit for bit.
    qft_methods_begin_micro(&methods, 100, 100, 0, 7, 3, 1.0f);
    float annealed = qft_model_forward(&m, 1, 7, 3);
    qft_methods_end_micro(&methods);
    CHECK(methods.noise.factor == 0.0f && annealed == real, "annealed to the quantizer: loss %.9g vs real %.9g",
          annealed, real);
    free(images);
    qft_methods_free(&methods);
    qft_model_free(&m);
    // Noise without quantized sites is a one-line error.
    qft_config_defaults(&cfg);
    snprintf(cfg.noise.kind, sizeof cfg.noise.kind, "uniform");
    CHECK(qft_model_create(&m, &cfg.model, B, 0, be, 5, &err) == QFT_OK, "model: %s", err.message);
    CHECK(qft_model_quant_configure(&m, &cfg.quant.rules, &err) == QFT_OK, "rules: %s", err.message);
    CHECK(qft_methods_init(&methods, &cfg, &m, &err) == QFT_ERR_INVALID && strstr(err.message, "noise.sites"),
          "noise without quant sites: %s", err.message);
    qft_methods_free(&methods);
    qft_model_free(&m);
}

int main(void) {
    be = qft_backend_cpu();
    test_statistics();
    test_reference();
    test_shared_blocks();
    test_residual();
    test_residual_histogram();
    test_histogram_noise();
    test_gradient();
    test_model("uniform");
    test_model("histogram");
    QFT_TEST_SUMMARY();
}
