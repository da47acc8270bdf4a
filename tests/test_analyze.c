// Outlier analysis on constructed tensors with known answers: statistics (moments, percentiles,
// outlier channels/tokens), the §7 error decomposition and its edge cases, and the report files.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "quant/analyze_error.h"
#include "quant/analyze_report.h"
#include "quant/analyze_stats.h"
#include "test_util.h"

static double gaussian(void) {
    double u1 = ((double)(test_rng_next() >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(test_rng_next() >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static int compare_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

// torch.quantile's default: linear interpolation at position p/100 * (n-1) of the sorted values.
static double exact_percentile(const float *sorted, size_t n, double p) {
    double pos = p / 100.0 * (double)(n - 1);
    size_t i = (size_t)pos;
    if (i + 1 >= n) return sorted[n - 1];
    return sorted[i] + (pos - (double)i) * ((double)sorted[i + 1] - sorted[i]);
}

// Feeds x [rows, C] in uneven batches (exercises the moment merge), returns the summary.
static qft_analyze_summary summarize(qft_analyze_stats *s, const float *x, size_t rows, size_t C) {
    size_t done = 0, step = 1;
    while (done < rows) {
        size_t r = rows - done < step ? rows - done : step;
        qft_error err;
        CHECK(qft_analyze_stats_update(s, x + done * C, r, &err) == QFT_OK, "update: %s", err.message);
        done += r;
        step = step * 3 + 1;
    }
    qft_analyze_summary m;
    qft_error err;
    CHECK(qft_analyze_stats_summary(s, "test", &m, &err) == QFT_OK, "summary: %s", err.message);
    return m;
}

static void check_moments_and_percentiles(const char *what, const float *x, size_t n, const qft_analyze_summary *m) {
    double mean = 0.0, m2 = 0.0, m4 = 0.0;
    for (size_t i = 0; i < n; i++) mean += x[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) {
        double d = x[i] - mean;
        m2 += d * d;
        m4 += d * d * d * d;
    }
    double std = sqrt(m2 / (double)n), kurt = (double)n * m4 / (m2 * m2);
    // Batch-merged moments equal the two-pass ones on the whole tensor up to rounding.
    CHECK(fabs(m->mean - mean) <= 1e-12 + 1e-9 * std, "%s: mean %.12g vs %.12g", what, m->mean, mean);
    CHECK(fabs(m->std - std) <= 1e-9 * std, "%s: std %.12g vs %.12g", what, m->std, std);
    CHECK(fabs(m->kurtosis - kurt) <= 1e-9 * kurt, "%s: kurtosis %.12g vs %.12g", what, m->kurtosis, kurt);
    float *sorted = malloc(n * sizeof *sorted);
    memcpy(sorted, x, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, compare_float);
    CHECK(m->min == sorted[0] && m->max == sorted[n - 1], "%s: min/max %g %g vs %g %g", what, m->min, m->max,
          sorted[0], sorted[n - 1]);
    for (int i = 0; i < QFT_ANALYZE_PERCENTILE_COUNT; i++) {
        double p = qft_analyze_percentiles[i], exact = exact_percentile(sorted, n, p);
        // One magnitude bin (|v|/128) plus the gap between the neighbouring order statistics.
        size_t k = (size_t)(p / 100.0 * (double)(n - 1));
        double gap = k + 1 < n ? (double)sorted[k + 1] - sorted[k] : 0.0;
        double tol = fabs(exact) / 128.0 + gap + 1e-9;
        CHECK(fabs(m->percentile[i] - exact) <= tol, "%s: p%g = %.6g, exact %.6g (tolerance %.3g)", what, p,
              m->percentile[i], exact, tol);
    }
    free(sorted);
}

static void test_stats_distributions(void) {
    const size_t rows = 2000, C = 100, n = rows * C;
    float *x = malloc(n * sizeof *x);
    qft_error err;

    for (size_t i = 0; i < n; i++) x[i] = (float)(0.5 + 2.0 * gaussian());
    qft_analyze_stats s;
    CHECK(qft_analyze_stats_init(&s, C, 0, 4, &err) == QFT_OK, "init: %s", err.message);
    qft_analyze_summary m = summarize(&s, x, rows, C);
    // Sampling error of the kurtosis is sqrt(24/n) = 0.011 at n = 2e5; 3-sigma-ish bounds below.
    CHECK(fabs(m.kurtosis - 3.0) < 0.05, "gaussian kurtosis %.4f, expected 3", m.kurtosis);
    CHECK(fabs(m.mean - 0.5) < 0.02 && fabs(m.std - 2.0) < 0.02, "gaussian mean %.4f std %.4f", m.mean, m.std);
    // P(|z| > 3) = 0.0027 (sd of the estimate 1.2e-4); P(|z| > 6) = 2e-9.
    CHECK(fabs(m.frac_beyond_3sigma - 0.0027) < 0.0005, "gaussian beyond 3 sigma %.5f", m.frac_beyond_3sigma);
    CHECK(m.frac_beyond_6sigma == 0.0, "gaussian beyond 6 sigma %.3g", m.frac_beyond_6sigma);
    check_moments_and_percentiles("gaussian", x, n, &m);
    printf("gaussian: kurtosis %.4f, skewness %.4f, p99.99 %.4f, beyond 3 sigma %.5f\n", m.kurtosis, m.skewness,
           m.percentile[6], m.frac_beyond_3sigma);
    qft_analyze_stats_free(&s);

    for (size_t i = 0; i < n; i++) x[i] = test_uniform(-3.0f, 1.0f);
    CHECK(qft_analyze_stats_init(&s, C, 0, 0, &err) == QFT_OK, "init: %s", err.message);
    m = summarize(&s, x, rows, C);
    CHECK(fabs(m.kurtosis - 1.8) < 0.01, "uniform kurtosis %.4f, expected 1.8", m.kurtosis);
    CHECK(m.frac_beyond_3sigma == 0.0, "uniform has nothing beyond 3 sigma (sqrt 3 max): %.3g", m.frac_beyond_3sigma);
    check_moments_and_percentiles("uniform", x, n, &m);
    printf("uniform: kurtosis %.4f, p0.01 %.5f, p50 %.5f\n", m.kurtosis, m.percentile[0], m.percentile[3]);
    qft_analyze_stats_free(&s);
    free(x);
}

static void test_stats_outliers(void) {
    // Three batches of 4 sequences x 8 tokens x 64 channels, values in [-1, 1]; channel 17 of
    // token 13 (sequence 1, position 5) of batch 1 is 50, channel 40 of batch 2 row 3 is -20.
    const size_t seq = 8, rows = 4 * seq, C = 64;
    float *x = malloc(rows * C * sizeof *x);
    qft_error err;
    qft_analyze_stats s;
    CHECK(qft_analyze_stats_init(&s, C, seq, 3, &err) == QFT_OK, "init: %s", err.message);
    size_t planted = 0;
    for (int b = 0; b < 3; b++) {
        for (size_t i = 0; i < rows * C; i++) x[i] = test_uniform(-1.0f, 1.0f);
        if (b == 1) x[13 * C + 17] = 50.0f, planted++;
        if (b == 2) x[3 * C + 40] = -20.0f, planted++;
        if (b == 2) x[4 * C + 2] = NAN;
        CHECK(qft_analyze_stats_update(&s, x, rows, &err) == QFT_OK, "update: %s", err.message);
    }
    qft_analyze_summary m;
    CHECK(qft_analyze_stats_summary(&s, "planted", &m, &err) == QFT_OK, "summary: %s", err.message);
    CHECK(m.nonfinite == 1 && m.count == 3 * rows * C - 1, "count %llu nonfinite %llu", (unsigned long long)m.count,
          (unsigned long long)m.nonfinite);
    CHECK(m.absmax == 50.0 && m.max == 50.0 && m.min == -20.0, "absmax %g max %g min %g", m.absmax, m.max, m.min);
    // Each planted value is > 6 sigma from its batch's mean (sigma ~1.25 / ~0.73 with them), nothing else is.
    CHECK(m.frac_beyond_6sigma == (double)planted / (double)m.count, "beyond 6 sigma %.6g, expected %.6g",
          m.frac_beyond_6sigma, (double)planted / (double)m.count);

    qft_analyze_channel top[3];
    size_t got = 0;
    CHECK(qft_analyze_stats_top_channels(&s, 3, top, &got, &err) == QFT_OK && got == 3, "top channels");
    CHECK(top[0].channel == 17 && top[0].absmax == 50.0, "top channel %zu (%g), expected 17 (50)", top[0].channel,
          top[0].absmax);
    CHECK(top[1].channel == 40 && top[1].absmax == 20.0, "second channel %zu (%g), expected 40 (20)", top[1].channel,
          top[1].absmax);
    // The median channel max of 96 uniform draws in [-1, 1] is ~0.99: the ratio is ~50.
    CHECK(top[0].ratio_to_median > 49.0 && top[0].ratio_to_median < 52.0, "ratio to median %g",
          top[0].ratio_to_median);
    CHECK(s.top_count == 3 && s.top[0].batch == 1 && s.top[0].row == 13 && s.top[0].position == 5 &&
              s.top[0].absmax == 50.0,
          "top token batch %llu row %zu position %zu absmax %g", (unsigned long long)s.top[0].batch, s.top[0].row,
          s.top[0].position, s.top[0].absmax);
    CHECK(s.top[1].batch == 2 && s.top[1].row == 3 && s.top[1].position == 3 && s.top[1].absmax == 20.0,
          "second token batch %llu row %zu", (unsigned long long)s.top[1].batch, s.top[1].row);
    CHECK(s.top[2].absmax <= 1.0, "third token is an ordinary one (%g)", s.top[2].absmax);

    // The linear re-binning keeps every value when it spans [min, max].
    double counts[100], total = 0.0;
    CHECK(qft_analyze_stats_linear_histogram(&s, m.min, m.max, 100, counts, &err) == QFT_OK, "linear histogram: %s",
          err.message);
    for (int i = 0; i < 100; i++) total += counts[i];
    CHECK(fabs(total - (double)m.count) < 1e-6 * (double)m.count, "histogram holds %.3f of %llu values", total,
          (unsigned long long)m.count);
    CHECK(counts[99] >= 1.0 && counts[0] >= 1.0, "the extremes land in the end bins (%g, %g)", counts[0], counts[99]);

    qft_analyze_stats empty;
    CHECK(qft_analyze_stats_init(&empty, 4, 0, 0, &err) == QFT_OK, "init");
    CHECK(qft_analyze_stats_summary(&empty, "blocks.0.empty", &m, &err) == QFT_ERR_INVALID &&
              strstr(err.message, "blocks.0.empty"),
          "an empty site is an error naming it: %s", err.message);
    qft_analyze_stats_free(&empty);
    CHECK(qft_analyze_stats_init(&empty, 0, 0, 0, &err) == QFT_ERR_INVALID, "zero channels rejected");
    qft_analyze_stats_free(&s);
    free(x);
}

static qft_quant_format format_bits(int bits, int symmetric) {
    qft_quant_format f = qft_quant_format_default();
    f.enabled = 1;
    f.bits = bits;
    f.symmetric = symmetric;
    return f;
}

static double share_sum(const qft_analyze_error *e) {
    return e->share_clip + e->share_round_out + e->share_round_in0 + e->share_amp;
}

static void fixed_range(const float *x, size_t n, void *ctx, float *lo, float *hi) {
    const float *r = ctx;
    *lo = r[0];
    *hi = r[1];
}

// Inliers uniform in [-1, 1] plus 20 planted outliers at +-8: the inlier step grows from 2/255 to
// 16/255 at 8 bit, and the extra inlier rounding error must match the uniform-noise model.
static void test_error_planted(void) {
    const size_t N = 100000;
    float *x = malloc(N * sizeof *x);
    for (size_t i = 0; i < N; i++) x[i] = test_uniform(-1.0f, 1.0f);
    for (size_t i = 0; i < 20; i++) x[i * 4999] = i % 2 ? -8.0f : 8.0f;
    qft_error err;
    for (int bits = 8; bits >= 6; bits -= 2) {
        qft_quant_format f = format_bits(bits, 0);
        qft_analyze_error e;
        CHECK(qft_analyze_error_decompose(x, N, &f, qft_analyze_range_minmax, NULL, QFT_ANALYZE_DEFAULT_K, "planted",
                                          &e, &err) == QFT_OK,
              "decompose: %s", err.message);
        CHECK(e.outliers == 20, "%d bit: %zu outliers, planted 20", bits, e.outliers);
        CHECK(e.lo0 >= -1.0f && e.hi0 <= 1.0f && e.lo0 < -0.999f && e.hi0 > 0.999f, "inlier range [%g, %g]", e.lo0,
              e.hi0);
        CHECK(fabs(share_sum(&e) - 1.0) < 1e-12, "%d bit: shares sum to %.15f", bits, share_sum(&e));
        double parts = e.e_clip + e.e_round_out + e.e_round_in0 + e.e_amp;
        CHECK(fabs(parts - e.e_tot) <= 1e-12 * e.e_tot, "%d bit: parts %.15g, total %.15g", bits, parts, e.e_tot);
        // Uniform-noise model: each unclipped inlier's error is uniform on a step. The inliers cover
        // [-1, 1] = 2/scale steps (32 at 8 bit, 8 at 6 bit); the partial steps at the two ends and
        // the sampling noise (N = 1e5) bound the misfit: 2% at 8 bit, 5% at 6 bit.
        double rel = fabs(e.e_amp - e.e_amp_uniform) / e.e_amp_uniform;
        CHECK(rel < (bits == 8 ? 0.02 : 0.05), "%d bit: E_amp %.6g vs uniform-noise %.6g (rel %.3f)", bits, e.e_amp,
              e.e_amp_uniform, rel);
        CHECK(e.share_amp > 0.9, "%d bit: range amplification dominates (%.3f)", bits, e.share_amp);
        printf("planted %d bit: E_tot %.4g, shares clip %.4f round_out %.4f round_in0 %.4f amp %.4f; E_amp %.5g vs "
               "uniform-noise %.5g (rel %.4f); scale %.5g scale0 %.5g\n",
               bits, e.e_tot, e.share_clip, e.share_round_out, e.share_round_in0, e.share_amp, e.e_amp,
               e.e_amp_uniform, rel, e.scale, e.scale0);

        // At the output of W = I the error is the input error; W = 2I scales it by 4.
        const size_t C = 50, rows = N / C;
        float *w = zero_tensor(C * C);
        for (size_t c = 0; c < C; c++) w[c * C + c] = 1.0f;
        qft_analyze_output_error o;
        CHECK(qft_analyze_error_linear_output(x, rows, C, w, C, &e, "planted", &o, &err) == QFT_OK, "output: %s",
              err.message);
        CHECK(fabs(o.e_out - e.e_tot) <= 1e-6 * e.e_tot, "identity layer: e_out %.9g vs e_tot %.9g", o.e_out, e.e_tot);
        CHECK(fabs(o.e_out_amp - e.e_amp) <= 1e-5 * e.e_tot, "identity layer: output amp %.9g vs %.9g", o.e_out_amp,
              e.e_amp);
        for (size_t c = 0; c < C; c++) w[c * C + c] = 2.0f;
        CHECK(qft_analyze_error_linear_output(x, rows, C, w, C, &e, "planted", &o, &err) == QFT_OK, "output: %s",
              err.message);
        CHECK(fabs(o.e_out - 4.0 * e.e_tot) <= 4e-6 * e.e_tot, "2I layer: e_out %.9g vs 4 e_tot %.9g", o.e_out,
              4.0 * e.e_tot);
        CHECK(fabs(o.share_amp - e.share_amp) < 1e-5, "2I layer: amp share %.6f vs %.6f", o.share_amp, e.share_amp);
        CHECK(qft_analyze_error_linear_output(x, rows - 1, C, w, C, &e, "planted", &o, &err) == QFT_ERR_SHAPE,
              "a different input size is rejected");
        free(w);
    }

    // Outliers at +-40 at 4 bit: the step (80/15 = 5.3) exceeds the inlier range, every inlier
    // rounds to 0, and the uniform-noise model no longer holds: the inlier error is exactly
    // E_round_in0 + E_amp = (1/N) sum over inliers of x^2 (~1/3), far below (scale^2 - scale0^2)/12.
    for (size_t i = 0; i < 20; i++) x[i * 4999] = i % 2 ? -40.0f : 40.0f;
    qft_quant_format f4 = format_bits(4, 0);
    qft_analyze_error e;
    CHECK(qft_analyze_error_decompose(x, N, &f4, qft_analyze_range_minmax, NULL, 6.0, "planted", &e, &err) == QFT_OK,
          "decompose: %s", err.message);
    double inlier_power = 0.0;
    for (size_t i = 0; i < N; i++)
        if (fabsf(x[i]) < 2.0f) inlier_power += (double)x[i] * x[i];
    inlier_power /= (double)N;
    CHECK(fabs(e.e_round_in0 + e.e_amp - inlier_power) <= 1e-9 * inlier_power,
          "4 bit: inlier error %.9g, expected sum x^2 / N = %.9g", e.e_round_in0 + e.e_amp, inlier_power);
    CHECK(e.e_amp_uniform > 5.0 * e.e_amp, "4 bit: the uniform-noise model overshoots (%.4g vs %.4g)",
          e.e_amp_uniform, e.e_amp);
    printf("planted 4 bit, +-40: E_amp %.4f (share %.4f), inliers all round to 0; uniform-noise model %.4f\n", e.e_amp,
           e.share_amp, e.e_amp_uniform);
    free(x);
}

static void test_error_edge_cases(void) {
    const size_t N = 10000;
    float *x = malloc(N * sizeof *x);
    qft_error err;
    qft_analyze_error e;
    qft_quant_format f8 = format_bits(8, 0);

    // No outliers: the inlier-only quantizer is the full one, so E_amp is exactly 0.
    for (size_t i = 0; i < N; i++) x[i] = test_uniform(-1.0f, 1.0f);
    CHECK(qft_analyze_error_decompose(x, N, &f8, qft_analyze_range_minmax, NULL, 6.0, "uniform", &e, &err) == QFT_OK,
          "decompose: %s", err.message);
    CHECK(e.outliers == 0 && e.e_amp == 0.0 && e.share_amp == 0.0 && e.e_amp_uniform == 0.0,
          "no outliers: %zu outliers, E_amp %g", e.outliers, e.e_amp);
    CHECK(e.scale0 == e.scale && e.e_round_out == 0.0, "no outliers: same step, no outlier rounding");
    // Minmax clips at most the top value (torch's asymmetric grid ends half a step below an even range).
    CHECK(e.clipped <= 1 && fabs(share_sum(&e) - 1.0) < 1e-12, "no outliers: %zu clipped, shares %.15f", e.clipped,
          share_sum(&e));
    CHECK(fabs(e.e_tot / (e.scale * e.scale / 12.0) - 1.0) < 0.05, "no outliers: E_tot %.4g vs scale^2/12 %.4g",
          e.e_tot, e.scale * e.scale / 12.0);

    // Clipping only: a fixed range [-0.5, 0.5] on uniform [-1, 1] clips half the values;
    // E_clip = integral of (|x| - 0.5)^2 over |x| > 0.5 at density 1/2 = 0.5^3/3 = 0.041667.
    float narrow[2] = {-0.5f, 0.5f};
    CHECK(qft_analyze_error_decompose(x, N, &f8, fixed_range, narrow, 6.0, "clipped", &e, &err) == QFT_OK,
          "decompose: %s", err.message);
    CHECK(fabs(e.e_clip - 0.041667) < 0.002 && e.share_clip > 0.999, "clipping: E_clip %.5f (share %.5f)", e.e_clip,
          e.share_clip);
    CHECK(e.clipped > N * 45 / 100 && e.clipped < N * 55 / 100, "clipping: %zu of %zu clipped", e.clipped, N);
    CHECK(e.e_amp == 0.0 && fabs(share_sum(&e) - 1.0) < 1e-12, "clipping: E_amp %g, shares %.15f", e.e_amp,
          share_sum(&e));
    printf("clipping only: E_clip %.5f (expected 0.04167), share %.5f, %zu clipped\n", e.e_clip, e.share_clip,
           e.clipped);

    // Every value clipped: data in [2, 3], range [0, 1] (outliers planted too, so the inlier-only
    // range is asked for and still clips everything).
    for (size_t i = 0; i < N; i++) x[i] = test_uniform(2.0f, 3.0f);
    x[7] = 300.0f;
    float low[2] = {0.0f, 1.0f};
    CHECK(qft_analyze_error_decompose(x, N, &f8, fixed_range, low, 6.0, "all clipped", &e, &err) == QFT_OK,
          "decompose: %s", err.message);
    CHECK(e.clipped == N && e.inliers_unclipped == 0 && e.outliers == 1 && e.outliers_clipped == 1,
          "all clipped: %zu clipped, %zu unclipped inliers", e.clipped, e.inliers_unclipped);
    CHECK(e.share_clip == 1.0 && e.e_amp == 0.0 && e.e_round_in0 == 0.0 && e.e_round_out == 0.0,
          "all clipped: clip share %.15f, E_amp %g", e.share_clip, e.e_amp);

    // Zero variance: no outliers (strict > 0), E_amp 0; a constant 0 has no error and all shares 0.
    for (size_t i = 0; i < N; i++) x[i] = 0.3f;
    CHECK(qft_analyze_error_decompose(x, N, &f8, qft_analyze_range_minmax, NULL, 6.0, "constant", &e, &err) == QFT_OK,
          "decompose: %s", err.message);
    CHECK(e.std == 0.0 && e.outliers == 0 && e.e_amp == 0.0 && e.e_tot == e.e_clip + e.e_round_in0,
          "constant: std %g, %zu outliers, E_amp %g", e.std, e.outliers, e.e_amp);
    for (size_t i = 0; i < N; i++) x[i] = 0.0f;
    CHECK(qft_analyze_error_decompose(x, N, &f8, qft_analyze_range_minmax, NULL, 6.0, "zeros", &e, &err) == QFT_OK,
          "decompose: %s", err.message);
    CHECK(e.e_tot == 0.0 && share_sum(&e) == 0.0, "zeros: E_tot %g, shares %g", e.e_tot, share_sum(&e));

    // Bad inputs: one-line errors naming the site.
    x[5] = NAN;
    CHECK(qft_analyze_error_decompose(x, N, &f8, qft_analyze_range_minmax, NULL, 6.0, "blocks.1.fc1.input", &e, &err) ==
                  QFT_ERR_INVALID &&
              strstr(err.message, "blocks.1.fc1.input") && strstr(err.message, "element 5"),
          "NaN input: %s", err.message);
    x[5] = 0.0f;
    qft_quant_format log2 = f8;
    log2.kind = QFT_QUANT_LOG2;
    CHECK(qft_analyze_error_decompose(x, N, &log2, qft_analyze_range_minmax, NULL, 6.0, "probs", &e, &err) ==
              QFT_ERR_INVALID,
          "log2 format rejected");
    CHECK(qft_analyze_error_decompose(x, N, &f8, qft_analyze_range_minmax, NULL, 0.0, "k", &e, &err) == QFT_ERR_INVALID,
          "k = 0 rejected");
    free(x);
}

static char *read_text(const char *dir, const char *name) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    size_t got = fread(text, 1, (size_t)size, f);
    text[got] = '\0';
    fclose(f);
    return text;
}

static int count_lines(const char *text) {
    int lines = 0;
    for (const char *p = text; *p; p++) lines += *p == '\n';
    return lines;
}

static int has_png_signature(const char *dir, const char *name) {
    char *text = read_text(dir, name);
    int ok = text && memcmp(text, "\x89PNG\r\n\x1a\n", 8) == 0;
    free(text);
    return ok;
}

static int gnuplot_in_path(void) {
    const char *path = getenv("PATH");
    if (!path) return 0;
    char *copy = strdup(path), *save = NULL;
    int found = 0;
    for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char candidate[1200];
        snprintf(candidate, sizeof candidate, "%s/gnuplot", d);
        found = access(candidate, X_OK) == 0;
    }
    free(copy);
    return found;
}

static void test_report(void) {
    // Three sites; the second has an awkward name (CSV quote, comma, shell syntax, Markdown pipe).
    const char *names[3] = {"blocks.0.fc1.input", "evil\"name,$(touch pwned)|x", "blocks.0.fc2.input"};
    const size_t rows = 64, C = 32, n = rows * C;
    qft_analyze_stats stats[3];
    qft_analyze_error errors[3][2];
    qft_analyze_output_error outputs[2];
    qft_analyze_site sites[3];
    float *x = malloc(n * sizeof *x), *w = zero_tensor(C * C);
    for (size_t c = 0; c < C; c++) w[c * C + c] = 1.0f;
    qft_error err;
    for (int s = 0; s < 3; s++) {
        for (size_t i = 0; i < n; i++) x[i] = test_uniform(-1.0f, 1.0f) * (float)(s + 1);
        if (s != 1) x[5 * C + 3] = 30.0f;
        CHECK(qft_analyze_stats_init(&stats[s], C, 16, 2, &err) == QFT_OK, "init");
        CHECK(qft_analyze_stats_update(&stats[s], x, rows, &err) == QFT_OK, "update");
        for (int b = 0; b < 2; b++) {
            qft_quant_format f = format_bits(b ? 4 : 8, 1);
            CHECK(qft_analyze_error_decompose(x, n, &f, qft_analyze_range_minmax, NULL, 6.0, names[s], &errors[s][b],
                                              &err) == QFT_OK,
                  "decompose: %s", err.message);
            if (s == 0)
                CHECK(qft_analyze_error_linear_output(x, rows, C, w, C, &errors[s][b], names[s], &outputs[b], &err) ==
                          QFT_OK,
                      "output: %s", err.message);
        }
        sites[s] = (qft_analyze_site){names[s], &stats[s], errors[s], s == 0 ? outputs : NULL, 2};
    }

    char dir[1024];
    qft_test_make_temp_dir(dir, sizeof dir, "qft_analyze");
    qft_analyze_report_options options = qft_analyze_report_options_default();
    options.histogram_site = 0;
    options.histogram_error = 1;
    int plotted = -1;
    CHECK(qft_analyze_report_write(dir, sites, 3, &options, &plotted, &err) == QFT_OK, "report: %s", err.message);

    char *ranges = read_text(dir, "ranges.csv");
    CHECK(ranges && count_lines(ranges) == 4, "ranges.csv has a header and one line per site");
    if (ranges) {
        CHECK(strncmp(ranges, "index,site,min,max,p0.01,p99.99,absmax\n", 39) == 0, "ranges.csv header");
        char *line1 = strchr(ranges, '\n') + 1, *line2 = strchr(line1, '\n') + 1;
        double mn, mx;
        CHECK(sscanf(line1, "0,\"blocks.0.fc1.input\",%lf,%lf", &mn, &mx) == 2 && (float)mn == (float)stats[0].min &&
                  mx == 30.0,
              "ranges.csv site 0: %.40s", line1);
        const char *quoted = "1,\"evil\"\"name,$(touch pwned)|x\",";
        CHECK(strncmp(line2, quoted, strlen(quoted)) == 0, "ranges.csv quotes the name: %.40s", line2);
    }
    char *split = read_text(dir, "error_split_4bit.csv");
    CHECK(split && count_lines(split) == 4, "error_split_4bit.csv: header + 3 sites");
    if (split) {
        char *line1 = strchr(split, '\n') + 1;
        double clip, out, in0, amp, etot, out_amp;
        int fields = sscanf(line1, "0,\"blocks.0.fc1.input\",%lf,%lf,%lf,%lf,%lf,%*f,%*f,%*f,%*f,%*f,%lf", &clip, &out,
                            &in0, &amp, &etot, &out_amp);
        const qft_analyze_error *e = &errors[0][1];
        CHECK(fields == 6, "error_split line parses (%d fields): %.60s", fields, line1);
        CHECK(fabs(clip + out + in0 + amp - 100.0) < 1e-4, "percent shares sum to 100 (%.6f)", clip + out + in0 + amp);
        CHECK(fabs(amp - 100.0 * e->share_amp) < 1e-5 && fabs(etot - e->e_tot) <= 1e-8 * e->e_tot,
              "amp %.6f vs %.6f, e_tot %.9g vs %.9g", amp, 100.0 * e->share_amp, etot, e->e_tot);
        CHECK(fabs(out_amp - 100.0 * outputs[1].share_amp) < 1e-5, "output amp %.6f", out_amp);
    }
    char *grid = read_text(dir, "histogram_grid.csv");
    CHECK(grid && count_lines(grid) == 1 + 16, "4-bit grid: 16 levels");
    if (grid) {
        int q;
        double v;
        CHECK(sscanf(strchr(grid, '\n') + 1, "%d,%lf", &q, &v) == 2 && q == -8 &&
                  fabs(v - (-8.0 * errors[0][1].scale)) < 1e-6,
              "first grid level q %d value %g", q, v);
    }
    char *hist = read_text(dir, "histogram.csv");
    CHECK(hist && count_lines(hist) == 257, "histogram.csv: header + 256 bins");
    if (hist) {
        double total = 0.0, lo, hi, c;
        for (char *p = strchr(hist, '\n') + 1; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
            if (sscanf(p, "%lf,%lf,%lf", &lo, &hi, &c) == 3) total += c;
        CHECK(fabs(total - (double)n) < 1e-3, "histogram counts sum to %.4f of %zu", total, n);
    }
    char *md = read_text(dir, "report.md");
    CHECK(md && strstr(md, "## Quantization error, 4 bit") && strstr(md, "## Quantization error, 8 bit"),
          "report.md has a section per bit width");
    CHECK(md && strstr(md, "evil\"name,$\\(touch pwned\\)\\|x"), "report.md escapes the site name");
    char pwned[1200];
    snprintf(pwned, sizeof pwned, "%s/pwned", dir);
    CHECK(access(pwned, F_OK) != 0 && access("pwned", F_OK) != 0, "no shell ran the site name");

    if (gnuplot_in_path()) {
        CHECK(plotted == 1, "gnuplot in PATH: plots made (see %s/gnuplot.log)", dir);
        CHECK(has_png_signature(dir, "ranges.png") && has_png_signature(dir, "histogram.png") &&
                  has_png_signature(dir, "error_split_8bit.png") && has_png_signature(dir, "error_split_4bit.png"),
              "PNG files carry the PNG signature");
        CHECK(md && strstr(md, "![histogram](histogram.png)"), "report links the plots");
    } else {
        printf("gnuplot not in PATH: PNG checks skipped\n");
    }
    free(ranges);
    free(split);
    free(grid);
    free(hist);
    free(md);
    qft_test_remove_temp_dir(dir);

    // No gnuplot: CSVs and the report are still written, and the report says why there are no plots.
    qft_test_make_temp_dir(dir, sizeof dir, "qft_analyze_noplot");
    options.gnuplot = "qft-test-no-such-gnuplot";
    CHECK(qft_analyze_report_write(dir, sites, 3, &options, &plotted, &err) == QFT_OK, "report: %s", err.message);
    md = read_text(dir, "report.md");
    CHECK(plotted == 0 && md && strstr(md, "Plots skipped (qft-test-no-such-gnuplot not found)"),
          "missing gnuplot is reported, not an error");
    CHECK(!has_png_signature(dir, "ranges.png"), "no PNG without gnuplot");
    ranges = read_text(dir, "ranges.csv");
    CHECK(ranges && count_lines(ranges) == 4, "ranges.csv written without gnuplot");
    free(md);
    free(ranges);
    qft_test_remove_temp_dir(dir);

    options.histogram_site = 3;
    CHECK(qft_analyze_report_write(dir, sites, 3, &options, &plotted, &err) == QFT_ERR_INVALID,
          "histogram site out of range rejected");
    for (int s = 0; s < 3; s++) qft_analyze_stats_free(&stats[s]);
    free(x);
    free(w);
}

int main(void) {
    test_stats_distributions();
    test_stats_outliers();
    test_error_planted();
    test_error_edge_cases();
    test_report();
    QFT_TEST_SUMMARY();
}
