// Fake-quant backend ops against PyTorch / numpy goldens (tests/golden/quant_ops.safetensors, written by
// tests/oracle/make_quant_goldens.py), plus NaN/Inf counts, overflow, large shapes, thread counts and LSQ by FD.
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "golden_loader.h"
#include "quant/format.h"
#include "test_util.h"

#define GOLDEN_PATH "tests/golden/quant_ops.safetensors"

// Scale / zero-point gradient tolerances. qft and torch compute bit-identical float terms (torch's terms are
// in the golden through a one-element-per-channel call) and differ only in how they add them up:
//  - qft adds 8 terms per lane in float, then in double (cpu_quant.c, FQ_FLOAT_RUN): its error is
//    <= 8 * 2^-24 * sum|terms| = 4.8e-7 * sum|terms|, plus the final rounding to float (1 ulp). Checked against
//    the float64 sum of torch's terms rounded to F32.
//  - torch adds all terms in float32 (<= log2(n) * 2^-24 * sum|terms| for its cascade sums; the oracle measured
//    1.5e-7): qft vs torch within 1e-6 * sum|terms|.
#define GRAD_SUM_TOLERANCE_VS_EXACT 4.8e-7
#define GRAD_SUM_TOLERANCE_VS_TORCH 1e-6

static const qft_backend *backend;

static int bits_equal(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

// Number of elements that differ, bit for bit (values = 0), or as values (values = 1: +0 equals -0, which
// gradients may differ in: torch writes dout * 0 = -0 for a negative dout, qft accumulates 0 into +0).
static size_t count_mismatches(const char *what, const float *got, const float *want, size_t n, int values) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (values ? got[i] == want[i] : bits_equal(got[i], want[i])) continue;
        if (bad < 3) fprintf(stderr, "  %s[%zu]: got %.9g want %.9g\n", what, i, got[i], want[i]);
        bad++;
    }
    return bad;
}

static int close_to_exact_sum(float got, float exact, float abs_sum) {
    float ulp = nextafterf(fabsf(exact), INFINITY) - fabsf(exact);
    return fabs((double)got - (double)exact) <= (double)ulp + GRAD_SUM_TOLERANCE_VS_EXACT * abs_sum;
}

static const int32_t *read_layout(const qft_safetensors *st, const char *name, int32_t *values) {
    char key[160];
    snprintf(key, sizeof key, "%s.layout", name);
    size_t n;
    int32_t *layout = golden_read_i32(st, key, &n);
    memcpy(values, layout, 5 * sizeof(int32_t));
    free(layout);
    return values;
}

static float *read_case(const qft_safetensors *st, const char *name, const char *field, size_t *n) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", name, field);
    return golden_read_f32(st, key, n);
}

// ---- uniform goldens ----

static void check_uniform_case(const qft_safetensors *st, const char *name) {
    char key[160];
    snprintf(key, sizeof key, "%s.x", name);
    const qft_tensor_info *info = qft_safetensors_find(st, key);
    CHECK(info && info->ndim == 2, "%s: x must be [rows, C]", name);
    if (!info || info->ndim != 2) return;
    const int rows = (int)info->shape[0], C = (int)info->shape[1];
    const size_t n = (size_t)rows * C;
    int32_t meta[5];
    read_layout(st, name, meta);
    size_t K, unused;
    float *x = read_case(st, name, "x", &unused);
    float *scale = read_case(st, name, "scale", &K);
    float *zero_point = read_case(st, name, "zero_point", &unused);
    float *dout = read_case(st, name, "dout", &unused);
    float *want_out = read_case(st, name, "out", &unused);
    float *want_dx = read_case(st, name, "dx", &unused);
    int32_t *column_group = NULL;
    if (meta[0] == QFT_FQ_COLUMN_MAP) {
        snprintf(key, sizeof key, "%s.column_group", name);
        column_group = golden_read_i32(st, key, &unused);
    }
    qft_fq_layout layout = {.qmin = meta[1], .qmax = meta[2], .axis = (qft_fq_axis)meta[0],
                            .group_size = meta[3], .column_group = column_group};
    const int learnable = meta[4];

    float *out = zero_tensor(n);
    size_t bad = backend->fake_quant_forward(out, x, scale, zero_point, rows, C, &layout);
    CHECK(bad == 0, "%s: %zu non-finite reported for finite input", name, bad);
    CHECK(count_mismatches("out", out, want_out, n, 0) == 0, "%s: forward differs from torch", name);
    // In place gives the same bits.
    float *in_place = malloc(n * sizeof(float));
    memcpy(in_place, x, n * sizeof(float));
    backend->fake_quant_forward(in_place, in_place, scale, zero_point, rows, C, &layout);
    CHECK(memcmp(in_place, want_out, n * sizeof(float)) == 0, "%s: in-place forward differs", name);

    float *dx = zero_tensor(n);
    if (!learnable) {
        backend->fake_quant_backward(dx, NULL, NULL, dout, x, scale, zero_point, rows, C, &layout, 1.0f);
        CHECK(count_mismatches("dx", dx, want_dx, n, 1) == 0, "%s: STE input gradient differs from torch", name);
    } else {
        float *grad_factor = read_case(st, name, "grad_factor", &unused);
        float *want_dscale = read_case(st, name, "dscale", &unused), *want_dzero = read_case(st, name, "dzero", &unused);
        float *exact_dscale = read_case(st, name, "dscale_exact", &unused);
        float *exact_dzero = read_case(st, name, "dzero_exact", &unused);
        float *abs_dscale = read_case(st, name, "dscale_abs", &unused);
        float *abs_dzero = read_case(st, name, "dzero_abs", &unused);
        float *dscale = zero_tensor(K), *dzero = zero_tensor(K);
        backend->fake_quant_backward(dx, dscale, dzero, dout, x, scale, zero_point, rows, C, &layout, grad_factor[0]);
        CHECK(count_mismatches("dx", dx, want_dx, n, 1) == 0, "%s: learnable input gradient differs from torch",
              name);
        double worst_torch = 0.0;
        for (size_t k = 0; k < K; k++) {
            double ds = fabs((double)dscale[k] - want_dscale[k]) / fmax(abs_dscale[k], 1e-30);
            double dz = fabs((double)dzero[k] - want_dzero[k]) / fmax(abs_dzero[k], 1e-30);
            worst_torch = fmax(worst_torch, fmax(ds, dz));
            CHECK(close_to_exact_sum(dscale[k], exact_dscale[k], abs_dscale[k]),
                  "%s: dscale[%zu] %.9g vs float64 sum of torch's terms %.9g", name, k, dscale[k], exact_dscale[k]);
            CHECK(close_to_exact_sum(dzero[k], exact_dzero[k], abs_dzero[k]),
                  "%s: dzero[%zu] %.9g vs float64 sum of torch's terms %.9g", name, k, dzero[k], exact_dzero[k]);
        }
        CHECK(worst_torch <= GRAD_SUM_TOLERANCE_VS_TORCH, "%s: scale/zero grads vs torch: %.3g of sum|terms|", name,
              worst_torch);
        printf("  %-26s scale/zero grads vs torch's float sums: %.2e of sum|terms|\n", name, worst_torch);
        // Accumulation: a second call adds the same again (x + x is exact in float).
        backend->fake_quant_backward(dx, dscale, dzero, dout, x, scale, zero_point, rows, C, &layout, grad_factor[0]);
        size_t not_doubled = 0;
        for (size_t i = 0; i < n; i++) not_doubled += dx[i] != 2.0f * want_dx[i];
        for (size_t k = 0; k < K; k++)
            not_doubled += !close_to_exact_sum(dscale[k], 2.0f * exact_dscale[k], 2.0f * abs_dscale[k]);
        CHECK(not_doubled == 0, "%s: backward does not accumulate (%zu values)", name, not_doubled);
        free(grad_factor), free(want_dscale), free(want_dzero), free(exact_dscale), free(exact_dzero);
        free(abs_dscale), free(abs_dzero), free(dscale), free(dzero);
    }
    free(x), free(scale), free(zero_point), free(dout), free(want_out), free(want_dx), free(column_group);
    free(out), free(in_place), free(dx);
}

// ---- log2 / log-sqrt2 goldens ----

static void check_log_case(const qft_safetensors *st, const char *name) {
    size_t n, unused;
    float *x = read_case(st, name, "x", &n);
    float *scale = read_case(st, name, "scale", &unused);
    float *dout = read_case(st, name, "dout", &unused);
    float *want_out = read_case(st, name, "out", &unused), *want_dx = read_case(st, name, "dx", &unused);
    float *exact_dscale = read_case(st, name, "dscale_exact", &unused);
    float *abs_dscale = read_case(st, name, "dscale_abs", &unused);
    char key[160];
    snprintf(key, sizeof key, "%s.config", name);
    int32_t *config = golden_read_i32(st, key, &unused);

    float *out = zero_tensor(n), *dx = zero_tensor(n), dscale = 0.0f;
    size_t bad = backend->log_quant_forward(out, x, n, config[0], config[1], scale);
    CHECK(bad == 0, "%s: %zu non-finite reported for finite input", name, bad);
    CHECK(count_mismatches("out", out, want_out, n, 0) == 0, "%s: forward differs from the numpy reference", name);
    backend->log_quant_backward(dx, &dscale, dout, x, n, config[0], config[1], scale);
    CHECK(count_mismatches("dx", dx, want_dx, n, 1) == 0, "%s: input gradient differs from the reference", name);
    CHECK(close_to_exact_sum(dscale, exact_dscale[0], abs_dscale[0]), "%s: dscale %.9g vs reference %.9g", name,
          dscale, exact_dscale[0]);
    free(x), free(scale), free(dout), free(want_out), free(want_dx), free(exact_dscale), free(abs_dscale);
    free(config), free(out), free(dx);
}

static void for_each_case(const qft_safetensors *st, const char *list_key,
                          void (*check)(const qft_safetensors *, const char *)) {
    const char *list = qft_safetensors_metadata(st, list_key);
    CHECK(list != NULL, "golden has no '%s' metadata", list_key);
    if (!list) return;
    char names[4096];
    snprintf(names, sizeof names, "%s", list);
    for (char *save = NULL, *name = strtok_r(names, ",", &save); name; name = strtok_r(NULL, ",", &save))
        check(st, name);
}

static void test_goldens(void) {
    qft_safetensors st;
    qft_error err;
    if (qft_safetensors_open(&st, GOLDEN_PATH, &err) != QFT_OK) {
        CHECK(0, "%s", err.message);
        return;
    }
    for_each_case(&st, "uniform_cases", check_uniform_case);
    for_each_case(&st, "log_cases", check_log_case);
    qft_safetensors_close(&st);
}

// ---- non-finite inputs and overflow (torch differs here on purpose; see backend.h) ----

static void test_non_finite_and_overflow(void) {
    const float x[8] = {0.3f, NAN, -2.0f, INFINITY, 1.0f, -INFINITY, 1e30f, -1e30f};
    float out[8];
    const float scale = 0.5f, zero_point = 3.0f;
    qft_fq_layout layout = {.qmin = 0, .qmax = 15, .axis = QFT_FQ_PER_TENSOR};
    size_t bad = backend->fake_quant_forward(out, x, &scale, &zero_point, 2, 4, &layout);
    CHECK(bad == 3, "forward counted %zu non-finite inputs, want 3", bad);
    CHECK(isnan(out[1]), "NaN input should give NaN, got %g", out[1]);
    CHECK(out[3] == 6.0f && out[5] == -1.5f, "+-Inf should clamp to qmax/qmin values: %g %g", out[3], out[5]);
    // x/s = 2e30 >= 2^63: torch's int64 cast overflows to qmin; qft clamps to qmax as the formula says.
    CHECK(out[6] == (15.0f - 3.0f) * 0.5f && out[7] == (0.0f - 3.0f) * 0.5f, "huge values: %g %g", out[6], out[7]);
    const int finite[4] = {0, 2, 4, 6};
    for (int j = 0; j < 4; j++) {
        int i = finite[j];
        CHECK(bits_equal(out[i], qft_quant_dequant(x[i], scale, 1.0f / scale, zero_point, 0, 15)),
              "finite element %d differs from qft_quant_dequant", i);
    }
    // Per-column layout counts too (a different code path).
    qft_fq_layout columns = {.qmin = -8, .qmax = 7, .axis = QFT_FQ_PER_COLUMN};
    const float scales[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    CHECK(backend->fake_quant_forward(out, x, scales, NULL, 2, 4, &columns) == 3, "per-column non-finite count");

    const float probs[6] = {0.5f, NAN, 0.25f, INFINITY, 0.0f, 1.0f};
    float log_out[6];
    const float one = 1.0f;
    bad = backend->log_quant_forward(log_out, probs, 6, 4, 0, &one);
    CHECK(bad == 2, "log forward counted %zu non-finite inputs, want 2", bad);
    CHECK(isnan(log_out[1]) && log_out[3] == 1.0f && log_out[4] == 0.0f && log_out[2] == 0.25f,
          "log forward specials: %g %g %g %g", log_out[1], log_out[3], log_out[4], log_out[2]);
}

// ---- larger shapes: every layout's tiling / chunking against a plain scalar reference ----

static int32_t ref_group(const qft_fq_layout *l, int r, int c, int C) {
    switch (l->axis) {
    case QFT_FQ_PER_TENSOR: return 0;
    case QFT_FQ_PER_ROW: return r;
    case QFT_FQ_PER_COLUMN: return c;
    case QFT_FQ_PER_ROW_GROUP: return r * (C / l->group_size) + c / l->group_size;
    default: return l->column_group[c];
    }
}

// The learnable terms written out plainly (fmaf where torch's compiled kernel fuses; see cpu_quant.c).
static void ref_learnable(float x, float g, float s, float z, float qmin, float qmax, float gf, float *dx,
                          float *ds, float *dz) {
    float inv = 1.0f / s;
    float q = rintf(fmaf(x, inv, z));
    if (q >= qmin && q <= qmax) {
        *dx = g;
        *ds = g * fmaf(q - z, s, -x) * inv * gf;
        *dz = 0.0f;
    } else {
        *dx = 0.0f;
        *ds = g * (q < qmin ? qmin - z : qmax - z) * gf;
        *dz = -g * s * gf;
    }
}

typedef struct {
    const char *name;
    qft_fq_axis axis;
    int rows, C, group_size, groups;
} shape_case;

static void check_large_layout(const shape_case *sc) {
    const int rows = sc->rows, C = sc->C;
    const size_t n = (size_t)rows * C;
    int32_t *column_group = malloc(C * sizeof(int32_t));
    for (int c = 0; c < C; c++) column_group[c] = (c * 7 + c / 3) % sc->groups;
    qft_fq_layout layout = {.qmin = -8, .qmax = 7, .axis = sc->axis, .group_size = sc->group_size,
                            .column_group = column_group};
    size_t K = (size_t)sc->groups;
    float *scale = random_tensor(K, 0.05f, 0.4f);
    float *zero_point = random_tensor(K, -3.0f, 3.0f);
    float *x = random_tensor(n, -4.0f, 4.0f), *dout = random_tensor(n, -1.0f, 1.0f);
    float *out = zero_tensor(n), *dx = zero_tensor(n), *dscale = zero_tensor(K), *dzero = zero_tensor(K);
    float *ste = zero_tensor(n);
    const float gf = 0.01f;
    backend->fake_quant_forward(out, x, scale, zero_point, rows, C, &layout);
    backend->fake_quant_backward(ste, NULL, NULL, dout, x, scale, zero_point, rows, C, &layout, gf);
    backend->fake_quant_backward(dx, dscale, dzero, dout, x, scale, zero_point, rows, C, &layout, gf);

    double *ref_ds = calloc(K, sizeof(double)), *ref_dz = calloc(K, sizeof(double));
    double *abs_ds = calloc(K, sizeof(double)), *abs_dz = calloc(K, sizeof(double));
    size_t wrong_out = 0, wrong_ste = 0, wrong_dx = 0;
    const float qmin = (float)layout.qmin, qmax = (float)layout.qmax;
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)r * C + c;
            int32_t k = ref_group(&layout, r, c, C);
            float s = scale[k], z = fminf(fmaxf(rintf(zero_point[k]), qmin), qmax);
            wrong_out += !bits_equal(out[i], qft_quant_dequant(x[i], s, 1.0f / s, z, layout.qmin, layout.qmax));
            float q = rintf(x[i] * (1.0f / s)) + z;
            wrong_ste += !bits_equal(ste[i], q >= qmin && q <= qmax ? dout[i] : 0.0f);
            float rdx, rds, rdz;
            ref_learnable(x[i], dout[i], s, z, qmin, qmax, gf, &rdx, &rds, &rdz);
            wrong_dx += !bits_equal(dx[i], rdx);
            ref_ds[k] += rds, ref_dz[k] += rdz, abs_ds[k] += fabs(rds), abs_dz[k] += fabs(rdz);
        }
    }
    size_t wrong_sums = 0;
    for (size_t k = 0; k < K; k++)
        wrong_sums += !close_to_exact_sum(dscale[k], (float)ref_ds[k], (float)abs_ds[k]) +
                      !close_to_exact_sum(dzero[k], (float)ref_dz[k], (float)abs_dz[k]);
    CHECK(wrong_out == 0 && wrong_ste == 0 && wrong_dx == 0 && wrong_sums == 0,
          "%s [%d, %d]: forward %zu, STE %zu, learnable dx %zu, scale/zero sums %zu differ from the reference",
          sc->name, rows, C, wrong_out, wrong_ste, wrong_dx, wrong_sums);

    // Thread counts: every output and gradient has the same bits with 1, 2 and 3 threads.
    float *out1 = zero_tensor(n), *dx1 = zero_tensor(n), *ds1 = zero_tensor(K), *dz1 = zero_tensor(K);
    int saved = omp_get_max_threads();
    for (int threads = 1; threads <= 3; threads++) {
        omp_set_num_threads(threads);
        memset(out1, 0, n * sizeof(float)), memset(dx1, 0, n * sizeof(float));
        memset(ds1, 0, K * sizeof(float)), memset(dz1, 0, K * sizeof(float));
        backend->fake_quant_forward(out1, x, scale, zero_point, rows, C, &layout);
        backend->fake_quant_backward(dx1, ds1, dz1, dout, x, scale, zero_point, rows, C, &layout, gf);
        CHECK(!memcmp(out1, out, n * sizeof(float)) && !memcmp(dx1, dx, n * sizeof(float)) &&
                  !memcmp(ds1, dscale, K * sizeof(float)) && !memcmp(dz1, dzero, K * sizeof(float)),
              "%s: results change with %d threads", sc->name, threads);
    }
    omp_set_num_threads(saved);

    // In place (dinp == dout, as qft_qlinear_backward_ex and output sites use it): the masked gradient replaces
    // dout, equal to accumulating into zeros (up to the sign of zero); the scale / zero-point sums keep their bits.
    size_t wrong_inplace_ste = 0, wrong_inplace_dx = 0;
    memcpy(dx1, dout, n * sizeof(float));
    backend->fake_quant_backward(dx1, NULL, NULL, dx1, x, scale, zero_point, rows, C, &layout, gf);
    for (size_t i = 0; i < n; i++) wrong_inplace_ste += dx1[i] != ste[i];
    memcpy(dx1, dout, n * sizeof(float));
    memset(ds1, 0, K * sizeof(float)), memset(dz1, 0, K * sizeof(float));
    backend->fake_quant_backward(dx1, ds1, dz1, dx1, x, scale, zero_point, rows, C, &layout, gf);
    for (size_t i = 0; i < n; i++) wrong_inplace_dx += dx1[i] != dx[i];
    CHECK(wrong_inplace_ste == 0 && wrong_inplace_dx == 0 && !memcmp(ds1, dscale, K * sizeof(float)) &&
              !memcmp(dz1, dzero, K * sizeof(float)),
          "%s: in-place backward differs (STE %zu, learnable dx %zu elements, or the sums)", sc->name,
          wrong_inplace_ste, wrong_inplace_dx);
    free(column_group), free(scale), free(zero_point), free(x), free(dout), free(out), free(dx), free(dscale);
    free(dzero), free(ste), free(ref_ds), free(ref_dz), free(abs_ds), free(abs_dz), free(out1), free(dx1);
    free(ds1), free(dz1);
}

static void test_large_layouts(void) {
    // 251 x 600 = 150600 elements: above the parallel thresholds, several column tiles (256) and row blocks,
    // a per-tensor segment split into reduction chunks; 2 x 40000 gives rows longer than a reduction chunk.
    const shape_case cases[] = {
        {"per_tensor", QFT_FQ_PER_TENSOR, 251, 600, 0, 1},
        {"per_row", QFT_FQ_PER_ROW, 251, 600, 0, 251},
        {"per_row_wide", QFT_FQ_PER_ROW, 2, 40000, 0, 2},
        {"per_column", QFT_FQ_PER_COLUMN, 251, 600, 0, 600},
        {"per_row_group", QFT_FQ_PER_ROW_GROUP, 251, 600, 40, 251 * 15},
        {"column_map", QFT_FQ_COLUMN_MAP, 251, 600, 0, 7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_large_layout(&cases[i]);

    // The log quantizer's chunked dscale sum, same bits for any thread count.
    const size_t n = 300000;
    float *p = random_tensor(n, 0.0f, 1.0f), *g = random_tensor(n, -1.0f, 1.0f), *dx = zero_tensor(n);
    const float scale = 0.8f;
    float first = 0.0f;
    int saved = omp_get_max_threads();
    for (int threads = 1; threads <= 3; threads++) {
        omp_set_num_threads(threads);
        float dscale = 0.0f;
        backend->log_quant_backward(dx, &dscale, g, p, n, 4, 1, &scale);
        if (threads == 1) first = dscale;
        CHECK(bits_equal(dscale, first), "log dscale changes with %d threads", threads);
    }
    omp_set_num_threads(saved);
    free(p), free(g), free(dx);
}

// ---- LSQ / LSQ+ gradients by finite differences ----
// The LSQ gradient is the derivative of the STE surrogate (Esser et al. 2020, eq. 3): x_hat with the rounding
// residual held fixed, h(s, z) = s * (clamp(x/s + z, qmin, qmax) - z + r), r = rint(v0) - v0 at the base point
// (v0 = x/s0 + z0) for elements inside the grid, 0 outside. On points whose v0 is >= 0.1 away from every
// rounding tie and clamp boundary, h is smooth around (s0, z0) and its central differences must give the
// backend's dscale and dzero (grad_factor 1). h is linear in s and z there, so the differences are exact up to
// double rounding; the backend's terms carry float rounding: tolerance 1e-5 of sum|terms|.
static double surrogate_loss(const float *x, const float *g, const float *r, size_t n, double s, double z,
                             double qmin, double qmax) {
    double loss = 0.0;
    for (size_t i = 0; i < n; i++) {
        double v = (double)x[i] / s + z;
        v = v < qmin ? qmin : (v > qmax ? qmax : v);
        loss += (double)g[i] * s * (v - z + r[i]);
    }
    return loss;
}

static void test_lsq_finite_differences(void) {
    const int rows = 3, C = 200;
    const size_t n = (size_t)rows * C;
    const float qmin = 0.0f, qmax = 15.0f;
    const float scale[3] = {0.37f, 0.11f, 1.3f}, zero_point[3] = {4.0f, 0.0f, 9.0f};
    float *x = malloc(n * sizeof(float)), *g = random_tensor(n, -1.0f, 1.0f), *r = malloc(n * sizeof(float));
    for (int row = 0; row < rows; row++) {
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)row * C + c;
            double v;
            do {  // v = x/s + z over [qmin - 3, qmax + 3], away from ties and from the kinks at qmin, qmax (+-0.5)
                v = test_uniform(qmin - 3.0f, qmax + 3.0f);
            } while (fabs(v - floor(v) - 0.5) < 0.1 || (v > qmin - 0.6 && v < qmin + 0.1) ||
                     (v > qmax - 0.1 && v < qmax + 0.6));
            x[i] = (float)((v - zero_point[row]) * scale[row]);
            double v0 = (double)x[i] / scale[row] + zero_point[row];
            r[i] = (v0 >= qmin && v0 <= qmax) ? (float)(rint(v0) - v0) : 0.0f;
        }
    }
    qft_fq_layout layout = {.qmin = 0, .qmax = 15, .axis = QFT_FQ_PER_ROW};
    float dscale[3] = {0}, dzero[3] = {0};
    float *dx = zero_tensor(n), *out = zero_tensor(n);
    backend->fake_quant_forward(out, x, scale, zero_point, rows, C, &layout);
    backend->fake_quant_backward(dx, dscale, dzero, g, x, scale, zero_point, rows, C, &layout, 1.0f);
    const double h = 1e-4;
    for (int row = 0; row < rows; row++) {
        const float *xr = x + (size_t)row * C, *gr = g + (size_t)row * C, *rr = r + (size_t)row * C;
        double s0 = scale[row], z0 = zero_point[row];
        // The surrogate equals the real forward at the base point.
        double anchor = 0.0;
        for (int c = 0; c < C; c++) anchor = fmax(anchor, fabs(s0 * (fmin(fmax(xr[c] / s0 + z0, qmin), qmax) - z0 +
                                                                    rr[c]) - out[(size_t)row * C + c]));
        CHECK(anchor <= 1e-5 * s0 * qmax, "row %d: surrogate at the base point differs from the forward by %g", row,
              anchor);
        double fd_s = (surrogate_loss(xr, gr, rr, C, s0 + h, z0, qmin, qmax) -
                       surrogate_loss(xr, gr, rr, C, s0 - h, z0, qmin, qmax)) / (2 * h);
        double fd_z = (surrogate_loss(xr, gr, rr, C, s0, z0 + h, qmin, qmax) -
                       surrogate_loss(xr, gr, rr, C, s0, z0 - h, qmin, qmax)) / (2 * h);
        double abs_s = 0.0, abs_z = 0.0;
        for (int c = 0; c < C; c++) {
            double v = (double)xr[c] / s0 + z0;
            int inside = v >= qmin - 0.5 && v <= qmax + 0.5;
            abs_s += fabs(gr[c]) * (inside ? fabs(rint(v) - v) : fmax(fabs(qmin - z0), fabs(qmax - z0)));
            abs_z += inside ? 0.0 : fabs(gr[c]) * s0;
        }
        CHECK(fabs(dscale[row] - fd_s) <= 1e-5 * abs_s, "row %d: LSQ dscale %.7g vs finite differences %.7g", row,
              dscale[row], fd_s);
        CHECK(fabs(dzero[row] - fd_z) <= 1e-5 * abs_z, "row %d: LSQ+ dzero %.7g vs finite differences %.7g", row,
              dzero[row], fd_z);
    }
    // grad_factor multiplies every term: 0.5 (a power of two) halves the sums exactly.
    float half_scale[3] = {0}, half_zero[3] = {0};
    backend->fake_quant_backward(NULL, half_scale, half_zero, g, x, scale, zero_point, rows, C, &layout, 0.5f);
    for (int row = 0; row < rows; row++)
        CHECK(half_scale[row] == 0.5f * dscale[row] && half_zero[row] == 0.5f * dzero[row],
              "row %d: grad_factor 0.5 does not halve the gradients", row);
    free(x), free(g), free(r), free(dx), free(out);
}

int main(void) {
    backend = qft_backend_cpu();
    test_goldens();
    test_non_finite_and_overflow();
    test_large_layouts();
    test_lsq_finite_differences();
    QFT_TEST_SUMMARY();
}
