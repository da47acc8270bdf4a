// Calibrator tests: torch 1.13 observers, torch.quantile and a pytorch-quantization entropy
// re-implementation on tests/golden/calib.safetensors; constructed inputs with known answers.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden_loader.h"
#include "quant/calib.h"
#include "test_util.h"

#define GOLDEN "tests/golden/calib.safetensors"
#define KINDS 6

static qft_quant_format make_format(qft_calibrator_kind kind, int bits, int is_signed, int symmetric) {
    qft_quant_format f = qft_quant_format_default();
    f.enabled = 1;
    f.calibrator = kind;
    f.bits = bits;
    f.is_signed = is_signed;
    f.symmetric = symmetric;
    return f;
}

static qft_calibrator *make_calibrator(const qft_quant_format *f, int channels) {
    qft_calibrator *c = NULL;
    qft_error err;
    if (qft_calibrator_create(f, channels, "test.site", &c, &err) != QFT_OK) {
        fprintf(stderr, "create: %s\n", err.message);
        exit(1);
    }
    return c;
}

static void observe_ok(qft_calibrator *c, const float *x, size_t rows, size_t cols, qft_calib_axis axis) {
    qft_error err;
    qft_status st = qft_calibrator_observe(c, x, rows, cols, axis, &err);
    CHECK(st == QFT_OK, "observe: %s", err.message);
}

static void finish_ok(const qft_calibrator *c, float *scale, float *zp, float *lo, float *hi) {
    qft_error err;
    qft_status st = qft_calibrator_finish(c, scale, zp, lo, hi, &err);
    CHECK(st == QFT_OK, "finish: %s", err.message);
}

static float gaussian(void) {
    float u1 = test_uniform(1e-7f, 1.0f), u2 = test_uniform(0.0f, 1.0f);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

// ---------------------------------------------------------------- PyTorch goldens

typedef struct {
    qft_safetensors st;
    float *act[3], *weight, *hist[2];
} golden;

// Compares `channels` entries of lo/hi/scale/zp with golden tensors "<prefix>.lo" etc.; ranges and
// scales to rel_tol (0 = bit-exact), zero points exactly.
static void compare_golden(const golden *g, const char *prefix, const float *lo, const float *hi,
                           const float *scale, const float *zp, int channels, double rel_tol) {
    const char *names[4] = {"lo", "hi", "scale", "zp"};
    const float *got[4] = {lo, hi, scale, zp};
    for (int t = 0; t < 4; t++) {
        if (!got[t]) continue;
        char key[96];
        snprintf(key, sizeof key, "%s.%s", prefix, names[t]);
        size_t n;
        float *want = golden_read_f32(&g->st, key, &n);
        CHECK((int)n == channels, "%s: golden has %zu entries, expected %d", key, n, channels);
        double worst = 0.0;
        for (int i = 0; i < channels && i < (int)n; i++) {
            double d = fabs((double)got[t][i] - want[i]) / fmax(fabs(want[i]), 1e-30);
            if (d > worst) worst = d;
        }
        double tol = t == 3 ? 0.0 : rel_tol;
        CHECK(worst <= tol, "%s: max rel error %.3g > %.3g", key, worst, tol);
        free(want);
    }
}

static void run_acts(const golden *g, qft_calibrator *c, qft_calib_axis axis) {
    for (int b = 0; b < 3; b++) observe_ok(c, g->act[b], 256, 16, axis);
}

static void test_golden_observers(const golden *g) {
    // torch quint8 affine, qint8 symmetric, quint8 symmetric
    struct { const char *tag; int is_signed, symmetric; } schemes[3] = {{"u8a", 0, 0}, {"s8s", 1, 1}, {"u8s", 0, 1}};
    for (int s = 0; s < 3; s++) {
        qft_quant_format f = make_format(QFT_CALIB_MINMAX, 8, schemes[s].is_signed, schemes[s].symmetric);
        qft_calibrator *c = make_calibrator(&f, 1);
        run_acts(g, c, QFT_CALIB_AXIS_ROW);
        float lo, hi, scale, zp;
        finish_ok(c, &scale, &zp, &lo, &hi);
        char prefix[64];
        snprintf(prefix, sizeof prefix, "minmax.%s", schemes[s].tag);
        compare_golden(g, prefix, &lo, &hi, &scale, &zp, 1, 0.0);  // min/max and their qparams: bit-exact
        qft_calibrator_free(c);
    }
    // MovingAverageMinMaxObserver: fp32 EMA; torch's kernel may fuse multiply-add, so a few ulps.
    double momenta[2] = {0.01, 0.1};
    const char *ema_tags[2] = {"ema0.01.u8a", "ema0.1.u8a"};
    for (int m = 0; m < 2; m++) {
        qft_quant_format f = make_format(QFT_CALIB_EMA, 8, 0, 0);
        f.ema_momentum = momenta[m];
        qft_calibrator *c = make_calibrator(&f, 1);
        run_acts(g, c, QFT_CALIB_AXIS_ROW);
        float lo, hi, scale, zp;
        finish_ok(c, &scale, &zp, &lo, &hi);
        compare_golden(g, ema_tags[m], &lo, &hi, &scale, &zp, 1, 1e-6);
        qft_calibrator_free(c);
    }
    // PerChannelMinMaxObserver: activations by column (ch_axis=1), weights by row (ch_axis=0).
    {
        qft_quant_format f = make_format(QFT_CALIB_MINMAX, 8, 1, 1);
        qft_calibrator *c = make_calibrator(&f, 16);
        run_acts(g, c, QFT_CALIB_AXIS_COLUMN);
        float lo[32], hi[32], scale[32], zp[32];
        finish_ok(c, scale, zp, lo, hi);
        compare_golden(g, "perch_act.s8s", lo, hi, scale, zp, 16, 0.0);
        qft_calibrator_free(c);
        c = make_calibrator(&f, 32);
        observe_ok(c, g->weight, 32, 64, QFT_CALIB_AXIS_ROW);
        finish_ok(c, scale, zp, lo, hi);
        compare_golden(g, "perch_w.s8s", lo, hi, scale, zp, 32, 0.0);
        qft_calibrator_free(c);
    }
    {
        qft_quant_format f = make_format(QFT_CALIB_EMA, 8, 0, 0);
        qft_calibrator *c = make_calibrator(&f, 16);
        run_acts(g, c, QFT_CALIB_AXIS_COLUMN);
        float lo[16], hi[16], scale[16], zp[16];
        finish_ok(c, scale, zp, lo, hi);
        compare_golden(g, "ema_perch_act.u8a", lo, hi, scale, zp, 16, 1e-6);
        qft_calibrator_free(c);
    }
}

static void test_golden_percentile(const golden *g) {
    double ps[3] = {99.9, 99.99, 99.999};
    const char *tags[3] = {"99.9", "99.99", "99.999"};
    for (int i = 0; i < 3; i++) {
        qft_quant_format f = make_format(QFT_CALIB_PERCENTILE, 8, 0, 0);
        f.percentile = ps[i];
        char prefix[64];
        // FQ-ViT: torch.quantile per batch, then EMA 0.01 in fp32 (a few ulps for fused multiply-add).
        qft_calibrator *c = make_calibrator(&f, 1);
        run_acts(g, c, QFT_CALIB_AXIS_ROW);
        float lo[16], hi[16];
        finish_ok(c, NULL, NULL, lo, hi);
        snprintf(prefix, sizeof prefix, "pct%s", tags[i]);
        compare_golden(g, prefix, lo, hi, NULL, NULL, 1, 1e-6);
        qft_calibrator_free(c);
        c = make_calibrator(&f, 16);
        run_acts(g, c, QFT_CALIB_AXIS_COLUMN);
        finish_ok(c, NULL, NULL, lo, hi);
        snprintf(prefix, sizeof prefix, "pct%s_perch", tags[i]);
        compare_golden(g, prefix, lo, hi, NULL, NULL, 16, 1e-6);
        qft_calibrator_free(c);
    }
}

static void test_golden_entropy(const golden *g) {
    struct { const char *key; int bits, is_signed, symmetric, absolute; } cases[4] = {
        {"entropy.s8.amax", 8, 1, 1, 0}, {"entropy.s4.amax", 4, 1, 1, 0}, {"entropy.s2.amax", 2, 1, 1, 0},
        {"entropy.u8.amax", 8, 0, 0, 1}};
    const char *bins_meta = qft_safetensors_metadata(&g->st, "entropy_bins");
    for (int i = 0; i < 4; i++) {
        qft_quant_format f = make_format(QFT_CALIB_ENTROPY, cases[i].bits, cases[i].is_signed, cases[i].symmetric);
        qft_calibrator *c = make_calibrator(&f, 1);
        float abs_batch[8192];
        for (int b = 0; b < 2; b++) {
            const float *x = g->hist[b];
            if (cases[i].absolute) {  // pytorch-quantization "unsigned": one-signed data, 2^8 levels
                for (int j = 0; j < 8192; j++) abs_batch[j] = fabsf(x[j]);
                x = abs_batch;
            }
            observe_ok(c, x, 1, 8192, QFT_CALIB_AXIS_ROW);
        }
        float lo, hi;
        finish_ok(c, NULL, NULL, &lo, &hi);
        size_t n;
        float *want = golden_read_f32(&g->st, cases[i].key, &n);
        CHECK(hi == want[0], "%s: C amax %.9g, oracle %.9g", cases[i].key, hi, want[0]);
        // symmetric: (-amax, amax); asymmetric on |x|: the data's own minimum (just above 0)
        CHECK(cases[i].symmetric ? lo == -hi : lo >= 0.0f && lo < 1e-3f, "%s: lo %g", cases[i].key, lo);
        qft_calib_histogram h;
        qft_error err;
        CHECK(qft_calibrator_histogram(c, 0, &h, &err) == QFT_OK, "histogram: %s", err.message);
        // The second batch exceeded the first's range: bins of the same width were appended.
        CHECK(bins_meta && h.bins == atol(bins_meta), "entropy histogram has %ld bins, oracle %s", h.bins,
              bins_meta ? bins_meta : "?");
        CHECK(h.total == 16384.0 && h.first_bin == 0, "histogram total %g first %ld", h.total, h.first_bin);
        if (i == 0) printf("entropy golden: amax %.6g at %ld bins (oracle bins %s)\n", hi, h.bins, bins_meta);
        free(want);
        qft_calibrator_free(c);
    }
}

// ---------------------------------------------------------------- constructed inputs

static void range_of(qft_calibrator_kind kind, int bits, int is_signed, int symmetric, const float *x, size_t n,
                     float *lo, float *hi) {
    qft_quant_format f = make_format(kind, bits, is_signed, symmetric);
    qft_error err;
    qft_status st = qft_calib_range(kind, &f, x, n, lo, hi, &err);
    CHECK(st == QFT_OK, "%s: %s", qft_calibrator_name(kind), err.message);
}

static void test_known_minmax_ema(void) {
    float b1[4] = {1, -2, 3, 0.5f}, b2[4] = {-5, 0, 2, 1}, b3[4] = {0, 9, -1, 0};
    qft_quant_format f = make_format(QFT_CALIB_MINMAX, 8, 0, 0);
    qft_calibrator *c = make_calibrator(&f, 1);
    observe_ok(c, b1, 2, 2, QFT_CALIB_AXIS_ROW);
    observe_ok(c, b2, 2, 2, QFT_CALIB_AXIS_ROW);
    observe_ok(c, b3, 2, 2, QFT_CALIB_AXIS_ROW);
    float lo, hi;
    finish_ok(c, NULL, NULL, &lo, &hi);
    CHECK(lo == -5.0f && hi == 9.0f, "minmax over 3 batches: [%g, %g], expected [-5, 9]", lo, hi);
    CHECK(qft_calibrator_batches(c) == 3, "batches %ld", qft_calibrator_batches(c));
    qft_calibrator_free(c);

    f = make_format(QFT_CALIB_EMA, 8, 0, 0);
    f.ema_momentum = 0.5;
    c = make_calibrator(&f, 1);
    observe_ok(c, b1, 2, 2, QFT_CALIB_AXIS_ROW);  // init (-2, 3)
    observe_ok(c, b2, 2, 2, QFT_CALIB_AXIS_ROW);  // (-3.5, 2.5)
    observe_ok(c, b3, 2, 2, QFT_CALIB_AXIS_ROW);  // (-2.25, 5.75)
    finish_ok(c, NULL, NULL, &lo, &hi);
    CHECK(lo == -2.25f && hi == 5.75f, "EMA c=0.5: [%g, %g], expected [-2.25, 5.75]", lo, hi);
    qft_calibrator_free(c);
}

static void test_known_percentile(void) {
    // 0..999 in a scrambled order: sorted[k] = k, so the quantile is its own rank, q (n - 1).
    enum { N = 1000 };
    float x[N];
    for (int i = 0; i < N; i++) x[i] = (float)((i * 379) % N);
    float lo, hi;
    qft_quant_format f = make_format(QFT_CALIB_PERCENTILE, 8, 0, 0);
    f.percentile = 99.9;
    qft_error err;
    CHECK(qft_calib_range(QFT_CALIB_PERCENTILE, &f, x, N, &lo, &hi, &err) == QFT_OK, "%s", err.message);
    CHECK(fabsf(hi - 998.001f) < 1e-3f && fabsf(lo - 0.999f) < 1e-4f, "p99.9 of 0..999: [%g, %g]", lo, hi);
    f.percentile = 100.0;
    CHECK(qft_calib_range(QFT_CALIB_PERCENTILE, &f, x, N, &lo, &hi, &err) == QFT_OK, "%s", err.message);
    CHECK(lo == 0.0f && hi == 999.0f, "p100 = min/max: [%g, %g]", lo, hi);
    f.percentile = 50.0;
    CHECK(qft_calib_range(QFT_CALIB_PERCENTILE, &f, x, N, &lo, &hi, &err) == QFT_OK, "%s", err.message);
    CHECK(lo == 499.5f && hi == 499.5f, "p50 = median 499.5: [%g, %g]", lo, hi);
}

// Uniform data: nothing to clip, so every search keeps (nearly) the full range.
static void test_uniform_full_range(void) {
    enum { N = 200000 };
    float *x = random_tensor(N, -1.0f, 1.0f);
    qft_calibrator_kind kinds[3] = {QFT_CALIB_MSE, QFT_CALIB_OMSE, QFT_CALIB_ENTROPY};
    for (int k = 0; k < 3; k++) {
        float lo, hi;
        range_of(kinds[k], 8, 1, 1, x, N, &lo, &hi);
        float amax = fmaxf(-lo, hi);
        printf("uniform [-1, 1], 8-bit: %-7s amax %.4f\n", qft_calibrator_name(kinds[k]), amax);
        CHECK(amax >= 0.95f && amax <= 1.001f, "%s on uniform data: amax %g, expected ~1", qft_calibrator_name(kinds[k]),
              amax);
        range_of(kinds[k], 8, 0, 0, x, N, &lo, &hi);
        CHECK(lo <= -0.95f && hi >= 0.95f, "%s asymmetric on uniform data: [%g, %g]", qft_calibrator_name(kinds[k]), lo,
              hi);
    }
    free(x);
}

// Gaussian with a few outliers at 50 sigma: minmax keeps them, the clipping calibrators do not where
// clipping pays. MSE and OMSE weigh the outliers' squared error honestly: at 8 bits the 10 clipped
// values would cost more than the coarser step costs the rest (so the range stays), at 4 bits the
// step dominates. (With outliers at 1000 sigma even 4-bit MSE keeps them: the bulk then rounds to 0,
// which costs only its variance; entropy cannot clip below max/16, its first candidate bin 128.)
static void test_outliers_clipped(void) {
    enum { N = 200000 };
    float *x = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = gaussian();
    for (int i = 0; i < 10; i++) x[(size_t)i * 19997] = i % 2 ? 50.0f : -50.0f;
    float lo, hi;
    range_of(QFT_CALIB_MINMAX, 8, 1, 1, x, N, &lo, &hi);
    CHECK(lo == -50.0f && hi == 50.0f, "minmax keeps the outliers: [%g, %g]", lo, hi);
    range_of(QFT_CALIB_EMA, 8, 1, 1, x, N, &lo, &hi);
    CHECK(lo == -50.0f && hi == 50.0f, "EMA of one batch = its min/max: [%g, %g]", lo, hi);
    range_of(QFT_CALIB_PERCENTILE, 8, 1, 1, x, N, &lo, &hi);  // p99.99: ~3.9 sigma
    printf("gaussian + 10 outliers at 50: percentile 99.99 [%.3f, %.3f]\n", lo, hi);
    CHECK(hi > 3.0f && hi < 5.0f && lo < -3.0f && lo > -5.0f, "percentile 99.99: [%g, %g]", lo, hi);
    range_of(QFT_CALIB_ENTROPY, 8, 1, 1, x, N, &lo, &hi);
    printf("gaussian + 10 outliers at 50: entropy 8-bit amax %.3f\n", hi);
    CHECK(hi < 25.0f && hi > 3.0f, "entropy 8-bit clips the outliers: amax %g", hi);
    range_of(QFT_CALIB_MSE, 4, 1, 1, x, N, &lo, &hi);
    printf("gaussian + 10 outliers at 50: mse 4-bit amax %.3f\n", hi);
    CHECK(hi < 10.0f && hi > 1.0f, "MSE 4-bit clips the outliers: amax %g", hi);
    range_of(QFT_CALIB_MSE, 4, 0, 0, x, N, &lo, &hi);
    printf("gaussian + 10 outliers at 50: mse 4-bit asymmetric [%.3f, %.3f]\n", lo, hi);
    CHECK(hi < 10.0f && hi > 1.0f && lo > -10.0f && lo < -1.0f, "MSE 4-bit asymmetric clips: [%g, %g]", lo, hi);
    range_of(QFT_CALIB_OMSE, 4, 1, 1, x, N, &lo, &hi);
    printf("gaussian + 10 outliers at 50: omse 4-bit [%.3f, %.3f]\n", lo, hi);
    CHECK(hi < 10.0f, "OMSE 4-bit clips the outliers: hi %g", hi);
    range_of(QFT_CALIB_MSE, 8, 1, 1, x, N, &lo, &hi);
    printf("gaussian + 10 outliers at 50: mse 8-bit amax %.3f\n", hi);
    CHECK(hi > 40.0f, "MSE 8-bit keeps the outliers: amax %g", hi);
    free(x);
}

// 2-bit formats: every calibrator runs; the error-minimizing ones clip a Gaussian hard.
static void test_two_bit(void) {
    enum { N = 100000 };
    float *x = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = gaussian();
    for (int k = 0; k < KINDS; k++) {
        float lo, hi;
        range_of((qft_calibrator_kind)k, 2, 1, 1, x, N, &lo, &hi);
        CHECK(isfinite(lo) && isfinite(hi) && hi > 0.0f && lo < 0.0f, "2-bit %s: [%g, %g]",
              qft_calibrator_name((qft_calibrator_kind)k), lo, hi);
        if (k == QFT_CALIB_MSE || k == QFT_CALIB_ENTROPY) {
            printf("gaussian, 2-bit signed symmetric: %s amax %.3f sigma\n", qft_calibrator_name((qft_calibrator_kind)k),
                   hi);
            CHECK(hi > 0.5f && hi < 3.0f, "2-bit %s on N(0,1): amax %g", qft_calibrator_name((qft_calibrator_kind)k), hi);
        }
        range_of((qft_calibrator_kind)k, 2, 0, 0, x, N, &lo, &hi);
        CHECK(isfinite(lo) && isfinite(hi) && lo < hi, "2-bit asymmetric %s: [%g, %g]",
              qft_calibrator_name((qft_calibrator_kind)k), lo, hi);
    }
    free(x);
}

// Per channel = the per-tensor calibrator on that channel's values alone, bit for bit, on both axes.
static void test_per_channel_matches_per_tensor(void) {
    enum { R = 64, C = 12, G = 3 };  // activations [R, C]; column groups of G channels
    float *x = malloc(R * C * sizeof(float)), col[R * G];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) x[r * C + c] = gaussian() * (0.1f + (float)c) + (c == 4 ? 2.0f : 0.0f);
    x[5 * C + 7] = 80.0f;
    for (int k = 0; k < KINDS; k++) {
        for (int sym = 0; sym < 2; sym++) {
            qft_quant_format f = make_format((qft_calibrator_kind)k, 6, sym, sym);
            const char *name = qft_calibrator_name((qft_calibrator_kind)k);
            // columns, one channel per column, two batches (rows split)
            qft_calibrator *c = make_calibrator(&f, C);
            observe_ok(c, x, R / 2, C, QFT_CALIB_AXIS_COLUMN);
            observe_ok(c, x + (R / 2) * C, R / 2, C, QFT_CALIB_AXIS_COLUMN);
            float lo[C], hi[C], scale[C], zp[C];
            finish_ok(c, scale, zp, lo, hi);
            int same = 1;
            for (int ch = 0; ch < C; ch++) {
                qft_calibrator *t = make_calibrator(&f, 1);
                for (int half = 0; half < 2; half++) {
                    for (int r = 0; r < R / 2; r++) col[r] = x[(half * (R / 2) + r) * C + ch];
                    observe_ok(t, col, R / 2, 1, QFT_CALIB_AXIS_ROW);
                }
                float l, h, s, z;
                finish_ok(t, &s, &z, &l, &h);
                same &= l == lo[ch] && h == hi[ch] && s == scale[ch] && z == zp[ch];
                qft_calibrator_free(t);
            }
            CHECK(same, "%s (symmetric %d): per-column channels differ from per-tensor runs", name, sym);
            qft_calibrator_free(c);
            // column groups of G: channel g = columns [g G, (g+1) G)
            c = make_calibrator(&f, C / G);
            observe_ok(c, x, R, C, QFT_CALIB_AXIS_COLUMN);
            finish_ok(c, NULL, NULL, lo, hi);
            same = 1;
            for (int g = 0; g < C / G; g++) {
                for (int r = 0; r < R; r++)
                    for (int j = 0; j < G; j++) col[r * G + j] = x[r * C + g * G + j];
                float l, h;
                range_of((qft_calibrator_kind)k, 6, sym, sym, col, R * G, &l, &h);
                same &= l == lo[g] && h == hi[g];
            }
            CHECK(same, "%s (symmetric %d): column groups differ from per-tensor runs", name, sym);
            qft_calibrator_free(c);
            // rows: the transposed data, one channel per row
            float *xt = malloc(R * C * sizeof(float));
            for (int r = 0; r < R; r++)
                for (int ch = 0; ch < C; ch++) xt[ch * R + r] = x[r * C + ch];
            c = make_calibrator(&f, C);
            observe_ok(c, xt, C, R, QFT_CALIB_AXIS_ROW);
            finish_ok(c, NULL, NULL, lo, hi);
            same = 1;
            for (int ch = 0; ch < C; ch++) {
                float l, h;
                range_of((qft_calibrator_kind)k, 6, sym, sym, xt + ch * R, R, &l, &h);
                same &= l == lo[ch] && h == hi[ch];
            }
            CHECK(same, "%s (symmetric %d): per-row channels differ from per-tensor runs", name, sym);
            qft_calibrator_free(c);
            free(xt);
        }
    }
    free(x);
}

// Histogram growth: later batches past the range add bins of the same width; past
// QFT_CALIB_MAX_BINS bins merge in pairs; no count is lost.
static void test_histogram_growth(void) {
    enum { N = 10000 };
    qft_quant_format f = make_format(QFT_CALIB_MSE, 8, 0, 0);
    qft_calibrator *c = make_calibrator(&f, 1);
    qft_calib_histogram h;
    qft_error err;
    float *x = random_tensor(N, -1.0f, 1.0f);
    x[0] = -1.0f, x[1] = 1.0f;
    observe_ok(c, x, 1, N, QFT_CALIB_AXIS_ROW);
    qft_calibrator_histogram(c, 0, &h, &err);
    double w0 = h.bin_width;
    CHECK(w0 == 2.0 / 2048 && h.first_bin == -1024 && h.bins == 2048, "first batch: width %g first %ld bins %ld", w0,
          h.first_bin, h.bins);
    for (int i = 0; i < N; i++) x[i] *= 3.0f;  // [-3, 3]: 3x the bins, same width
    observe_ok(c, x, 1, N, QFT_CALIB_AXIS_ROW);
    qft_calibrator_histogram(c, 0, &h, &err);
    CHECK(h.bin_width == w0 && h.first_bin == -3072 && h.bins == 6144, "grown: width %g first %ld bins %ld",
          h.bin_width, h.first_bin, h.bins);
    for (int i = 0; i < N; i++) x[i] *= 40.0f;  // [-120, 120]: 240 / w0 bins > the cap: merges
    observe_ok(c, x, 1, N, QFT_CALIB_AXIS_ROW);
    qft_calibrator_histogram(c, 0, &h, &err);
    double sum = 0.0;
    for (long k = 0; k < h.bins; k++) sum += h.counts[k];
    double ratio = h.bin_width / w0;
    printf("histogram after 120x range growth: %ld bins, width %g x the first\n", h.bins, ratio);
    CHECK(h.bins <= QFT_CALIB_MAX_BINS && h.bins > QFT_CALIB_MAX_BINS / 2, "merged histogram has %ld bins", h.bins);
    CHECK(ratio == 16.0, "merged width = 16 x the first (120/1 range over 8x2048 bins), got %g", ratio);
    CHECK(sum == 3.0 * N && h.total == 3.0 * N, "counts %g / total %g, expected %d", sum, h.total, 3 * N);
    CHECK((double)h.first_bin * h.bin_width <= -120.0 && (double)(h.first_bin + h.bins) * h.bin_width >= 120.0,
          "merged histogram covers [-120, 120]");
    float lo, hi;
    finish_ok(c, NULL, NULL, &lo, &hi);
    CHECK(lo >= -120.0f && hi <= 120.0f && lo < -50.0f && hi > 50.0f, "MSE after growth: [%g, %g]", lo, hi);
    qft_calibrator_free(c);
    free(x);
}

// All-zero and constant tensors: finite ranges, usable scales, the constant survives quantization.
static void test_zero_and_constant(void) {
    enum { N = 4096 };
    float *zeros = zero_tensor(N), *consts = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) consts[i] = 3.0f;
    for (int k = 0; k < KINDS; k++) {
        const char *name = qft_calibrator_name((qft_calibrator_kind)k);
        for (int sym = 0; sym < 2; sym++) {
            qft_quant_format f = make_format((qft_calibrator_kind)k, 8, sym, sym);
            qft_calibrator *c = make_calibrator(&f, 1);
            observe_ok(c, zeros, 1, N, QFT_CALIB_AXIS_ROW);
            float lo, hi, scale, zp;
            finish_ok(c, &scale, &zp, &lo, &hi);
            CHECK(lo == 0.0f && hi == 0.0f && scale == QFT_QUANT_MIN_SCALE, "%s zeros: [%g, %g] scale %g", name, lo, hi,
                  scale);
            CHECK(qft_quant_dequant(0.0f, scale, 1.0f / scale, zp, qft_quant_qmin(&f), qft_quant_qmax(&f)) == 0.0f,
                  "%s zeros: 0 does not survive", name);
            // then constants: the zeros seen before the first range are kept (histogram bin 0); the
            // smoothed calibrators move 1% of the way (c = 0.01)
            observe_ok(c, consts, 1, N, QFT_CALIB_AXIS_ROW);
            finish_ok(c, &scale, &zp, &lo, &hi);
            float q = qft_quant_dequant(3.0f, scale, 1.0f / scale, zp, qft_quant_qmin(&f), qft_quant_qmax(&f));
            if (k == QFT_CALIB_EMA || k == QFT_CALIB_PERCENTILE)
                CHECK(lo == 0.03f && hi == 0.03f, "%s zeros then 3s: [%g, %g], expected 0.03", name, lo, hi);
            else
                CHECK(isfinite(lo) && isfinite(hi) && fabsf(q - 3.0f) <= 0.02f * 3.0f,
                      "%s zeros then 3s: [%g, %g], Q(3) = %g", name, lo, hi, q);
            if (k == QFT_CALIB_MSE || k == QFT_CALIB_ENTROPY) {
                qft_calib_histogram h;
                qft_error err;
                qft_calibrator_histogram(c, 0, &h, &err);
                double sum = 0.0;
                for (long b = 0; b < h.bins; b++) sum += h.counts[b];
                CHECK(sum == 2.0 * N && h.counts[-h.first_bin] >= N, "%s: pending zeros not binned (%g)", name, sum);
            }
            qft_calibrator_free(c);
            // a constant tensor alone
            c = make_calibrator(&f, 1);
            observe_ok(c, consts, 1, N, QFT_CALIB_AXIS_ROW);
            finish_ok(c, &scale, &zp, &lo, &hi);
            q = qft_quant_dequant(3.0f, scale, 1.0f / scale, zp, qft_quant_qmin(&f), qft_quant_qmax(&f));
            CHECK(fabsf(q - 3.0f) <= 0.02f * 3.0f, "%s constant 3: [%g, %g], Q(3) = %g", name, lo, hi, q);
            qft_calibrator_free(c);
        }
    }
    free(zeros);
    free(consts);
}

// NaN / Inf fail the batch, name its position, and leave the calibrator as it was.
static void test_bad_inputs(void) {
    enum { N = 512 };
    float *good = random_tensor(N, -2.0f, 2.0f), *bad = random_tensor(N, -2.0f, 2.0f);
    float specials[3] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < KINDS; k++) {
        const char *name = qft_calibrator_name((qft_calibrator_kind)k);
        qft_quant_format f = make_format((qft_calibrator_kind)k, 8, 0, 0);
        qft_calibrator *ref = make_calibrator(&f, 4), *c = make_calibrator(&f, 4);
        observe_ok(ref, good, 8, N / 8, QFT_CALIB_AXIS_COLUMN);
        observe_ok(ref, good, 8, N / 8, QFT_CALIB_AXIS_COLUMN);
        observe_ok(c, good, 8, N / 8, QFT_CALIB_AXIS_COLUMN);
        for (int s = 0; s < 3; s++) {
            bad[77] = specials[s];
            qft_error err;
            qft_status st = qft_calibrator_observe(c, bad, 8, N / 8, QFT_CALIB_AXIS_COLUMN, &err);
            CHECK(st == QFT_ERR_INVALID && strstr(err.message, "test.site") && strstr(err.message, "row 1, column 13"),
                  "%s with %g: status %d, '%s'", name, (double)specials[s], st, err.message);
        }
        observe_ok(c, good, 8, N / 8, QFT_CALIB_AXIS_COLUMN);
        float lo1[4], hi1[4], lo2[4], hi2[4];
        finish_ok(ref, NULL, NULL, lo1, hi1);
        finish_ok(c, NULL, NULL, lo2, hi2);
        CHECK(!memcmp(lo1, lo2, sizeof lo1) && !memcmp(hi1, hi2, sizeof hi1) && qft_calibrator_batches(c) == 2,
              "%s: a rejected batch changed the state", name);
        qft_calibrator_free(ref);
        qft_calibrator_free(c);
    }
    free(good);
    free(bad);
}

static void test_api_errors(void) {
    qft_error err;
    qft_calibrator *c = NULL;
    qft_quant_format f = make_format(QFT_CALIB_PERCENTILE, 8, 1, 1);
    f.percentile = 100.5;
    CHECK(qft_calibrator_create(&f, 1, "s", &c, &err) == QFT_ERR_INVALID && !c, "percentile 100.5 accepted");
    f = make_format(QFT_CALIB_EMA, 8, 1, 1);
    f.ema_momentum = 0.0;
    CHECK(qft_calibrator_create(&f, 1, "s", &c, &err) == QFT_ERR_INVALID, "ema_momentum 0 accepted");
    f = make_format(QFT_CALIB_MINMAX, 1, 1, 1);
    CHECK(qft_calibrator_create(&f, 1, "s", &c, &err) == QFT_ERR_INVALID, "1-bit accepted");
    f = make_format(QFT_CALIB_MINMAX, 8, 1, 1);
    CHECK(qft_calibrator_create(&f, 0, "s", &c, &err) == QFT_ERR_INVALID, "0 channels accepted");
    c = make_calibrator(&f, 3);
    float x[8] = {0};
    float s[3];
    CHECK(qft_calibrator_finish(c, s, NULL, NULL, NULL, &err) == QFT_ERR_INVALID, "finish before observe accepted");
    CHECK(qft_calibrator_observe(c, x, 2, 4, QFT_CALIB_AXIS_COLUMN, &err) == QFT_ERR_SHAPE, "4 columns in 3 channels");
    CHECK(qft_calibrator_observe(c, x, 2, 4, QFT_CALIB_AXIS_ROW, &err) == QFT_ERR_SHAPE, "2 rows in 3 channels");
    CHECK(qft_calibrator_observe(c, x, 0, 4, QFT_CALIB_AXIS_ROW, &err) == QFT_ERR_SHAPE, "empty batch accepted");
    qft_calib_histogram h;
    CHECK(qft_calibrator_histogram(c, 0, &h, &err) == QFT_ERR_INVALID, "minmax has no histogram");
    qft_calibrator_free(c);
}

int main(void) {
    golden g;
    qft_error err;
    if (qft_safetensors_open(&g.st, GOLDEN, &err) != QFT_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    for (int b = 0; b < 3; b++) {
        char key[16];
        snprintf(key, sizeof key, "act.%d", b);
        g.act[b] = golden_read_f32(&g.st, key, NULL);
    }
    g.weight = golden_read_f32(&g.st, "weight", NULL);
    g.hist[0] = golden_read_f32(&g.st, "hist.0", NULL);
    g.hist[1] = golden_read_f32(&g.st, "hist.1", NULL);

    test_golden_observers(&g);
    test_golden_percentile(&g);
    test_golden_entropy(&g);
    test_known_minmax_ema();
    test_known_percentile();
    test_uniform_full_range();
    test_outliers_clipped();
    test_two_bit();
    test_per_channel_matches_per_tensor();
    test_histogram_growth();
    test_zero_and_constant();
    test_bad_inputs();
    test_api_errors();

    for (int b = 0; b < 3; b++) free(g.act[b]);
    free(g.weight);
    free(g.hist[0]);
    free(g.hist[1]);
    qft_safetensors_close(&g.st);
    QFT_TEST_SUMMARY();
}
