// Splits a site's quantization MSE into clipping, outlier rounding, inlier rounding at the
// inlier-only step, and range amplification (METHODS.md §7), at the site and at a linear layer's output.
#include "analyze_error.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// Rows per GEMM chunk in the output-side error: bounds the scratch to a few MB at any batch size.
#define OUTPUT_CHUNK_ROWS 256

void qft_analyze_range_minmax(const float *x, size_t n, void *ctx, float *lo, float *hi) {
    float a = n ? x[0] : 0.0f, b = a;
    for (size_t i = 1; i < n; i++) {
        a = fminf(a, x[i]);
        b = fmaxf(b, x[i]);
    }
    *lo = a;
    *hi = b;
}

// One value through a quantizer, and whether the clamp was active: the same float arithmetic as
// qft_quant_dequant, so "clipped" is exactly "the integer code saturated".
typedef struct {
    float scale, inv_scale, zero_point;
    int qmin, qmax;
} quantizer;

static quantizer make_quantizer(const qft_quant_format *f, float lo, float hi, float *scale, float *zero_point) {
    quantizer q;
    qft_quant_params_from_range(f, lo, hi, scale, zero_point);
    q.scale = *scale;
    q.inv_scale = 1.0f / *scale;
    q.zero_point = *zero_point;
    q.qmin = qft_quant_qmin(f);
    q.qmax = qft_quant_qmax(f);
    return q;
}

static float quantize(const quantizer *q, float x, int *clipped) {
    float code = rintf(x * q->inv_scale) + q->zero_point;
    *clipped = code < (float)q->qmin || code > (float)q->qmax;
    return qft_quant_dequant(x, q->scale, q->inv_scale, q->zero_point, q->qmin, q->qmax);
}

static int is_outlier(const qft_analyze_error *e, float x) { return fabs((double)x - e->mean) > e->k * e->std; }

qft_status qft_analyze_error_decompose(const float *x, size_t n, const qft_quant_format *f,
                                       qft_analyze_range_fn range, void *ctx, double k, const char *site,
                                       qft_analyze_error *out, qft_error *err) {
    if (!x || n == 0) return qft_fail(err, QFT_ERR_INVALID, "%s: error decomposition of an empty tensor", site);
    if (f->kind != QFT_QUANT_UNIFORM || f->granularity != QFT_GRAN_TENSOR || f->bits < 2 || f->bits > 8)
        return qft_fail(err, QFT_ERR_INVALID,
                        "%s: error decomposition needs a uniform per-tensor format of 2..8 bits (got %s, %s, %d bits)",
                        site, qft_quant_kind_name(f->kind), qft_quant_granularity_name(f->granularity), f->bits);
    if (!(k > 0.0) || !isfinite(k))
        return qft_fail(err, QFT_ERR_INVALID, "%s: outlier threshold k = %g sigma, expected > 0", site, k);
    memset(out, 0, sizeof *out);
    out->bits = f->bits;
    out->qmin = qft_quant_qmin(f);
    out->qmax = qft_quant_qmax(f);
    out->k = k;
    out->n = n;

    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) return qft_fail(err, QFT_ERR_INVALID, "%s: element %zu is not finite", site, i);
        sum += x[i];
    }
    out->mean = sum / (double)n;
    double m2 = 0.0;
    for (size_t i = 0; i < n; i++) m2 += ((double)x[i] - out->mean) * ((double)x[i] - out->mean);
    out->std = sqrt(m2 / (double)n);  // 0 for a constant tensor: then no value is an outlier (strict >)

    range(x, n, ctx, &out->lo, &out->hi);
    quantizer full = make_quantizer(f, out->lo, out->hi, &out->scale, &out->zero_point);

    for (size_t i = 0; i < n; i++) out->outliers += is_outlier(out, x[i]);
    size_t inliers = n - out->outliers;
    quantizer in0 = full;
    out->lo0 = out->lo;
    out->hi0 = out->hi;
    out->scale0 = out->scale;
    out->zero_point0 = out->zero_point;
    // Without outliers the inlier-only quantizer is the full one by definition, so E_amp is exactly 0
    // (and a calibrator is not asked the same question twice); without inliers it is never used.
    if (out->outliers > 0 && inliers > 0) {
        float *kept = malloc(inliers * sizeof *kept);
        if (!kept) return qft_fail(err, QFT_ERR_OOM, "%s: cannot allocate %zu inlier values", site, inliers);
        size_t j = 0;
        for (size_t i = 0; i < n; i++)
            if (!is_outlier(out, x[i])) kept[j++] = x[i];
        range(kept, inliers, ctx, &out->lo0, &out->hi0);
        free(kept);
        in0 = make_quantizer(f, out->lo0, out->hi0, &out->scale0, &out->zero_point0);
    }

    double tot = 0.0, clip = 0.0, round_out = 0.0, round_in = 0.0, round_in0 = 0.0;
    for (size_t i = 0; i < n; i++) {
        int clipped, clipped0;
        double d = (double)x[i] - (double)quantize(&full, x[i], &clipped), e = d * d;
        tot += e;
        if (clipped) {
            clip += e;
            out->clipped++;
            out->outliers_clipped += is_outlier(out, x[i]);
        } else if (is_outlier(out, x[i])) {
            round_out += e;
        } else {
            double d0 = (double)x[i] - (double)quantize(&in0, x[i], &clipped0);
            round_in += e;
            round_in0 += d0 * d0;
            out->inliers_unclipped++;
        }
    }
    double N = (double)n;
    out->e_tot = tot / N;
    out->e_clip = clip / N;
    out->e_round_out = round_out / N;
    out->e_round_in0 = round_in0 / N;
    out->e_amp = (round_in - round_in0) / N;
    double parts = out->e_clip + out->e_round_out + out->e_round_in0 + out->e_amp;
    if (fabs(parts - out->e_tot) > 1e-9 * out->e_tot)
        return qft_fail(err, QFT_ERR_INTERNAL, "%s: error parts sum to %.17g, total is %.17g", site, parts,
                        out->e_tot);
    if (out->e_tot > 0.0) {
        out->share_clip = out->e_clip / out->e_tot;
        out->share_round_out = out->e_round_out / out->e_tot;
        out->share_round_in0 = out->e_round_in0 / out->e_tot;
        out->share_amp = out->e_amp / out->e_tot;
    }
    double s = out->scale, s0 = out->scale0;
    out->e_amp_uniform = (double)out->inliers_unclipped / N * (s * s - s0 * s0) / 12.0;
    return QFT_OK;
}

// Sum of squares of (D W^T) for D [rows, in] in chunks; the GEMM in fp32 (BLAS), the sum in double.
static double output_sum_squares(const float *d, size_t rows, size_t in, const float *w, size_t outf, float *y) {
    double total = 0.0;
    for (size_t r0 = 0; r0 < rows; r0 += OUTPUT_CHUNK_ROWS) {
        size_t r = rows - r0 < OUTPUT_CHUNK_ROWS ? rows - r0 : OUTPUT_CHUNK_ROWS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)r, (int)outf, (int)in, 1.0f, d + r0 * in, (int)in, w,
                    (int)in, 0.0f, y, (int)outf);
        for (size_t i = 0; i < r * outf; i++) total += (double)y[i] * (double)y[i];
    }
    return total;
}

qft_status qft_analyze_error_linear_output(const float *x, size_t rows, size_t in_features, const float *weight,
                                           size_t out_features, const qft_analyze_error *decomposition,
                                           const char *site, qft_analyze_output_error *out, qft_error *err) {
    const qft_analyze_error *e = decomposition;
    if (!x || !weight || rows == 0 || in_features == 0 || out_features == 0)
        return qft_fail(err, QFT_ERR_INVALID, "%s: output error needs a non-empty input and weight", site);
    if (rows * in_features != e->n)
        return qft_fail(err, QFT_ERR_SHAPE, "%s: input [%zu, %zu] has %zu values, the decomposition saw %zu", site,
                        rows, in_features, rows * in_features, e->n);
    if (in_features > 0x7fffffff || out_features > 0x7fffffff)
        return qft_fail(err, QFT_ERR_SHAPE, "%s: layer [%zu, %zu] too large for BLAS", site, out_features, in_features);
    size_t n = e->n;
    float *d_full = malloc(n * sizeof *d_full), *d_inlier = malloc(n * sizeof *d_inlier);
    size_t chunk = rows < OUTPUT_CHUNK_ROWS ? rows : OUTPUT_CHUNK_ROWS;
    float *y = malloc(chunk * out_features * sizeof *y);
    if (!d_full || !d_inlier || !y) {
        free(d_full);
        free(d_inlier);
        free(y);
        return qft_fail(err, QFT_ERR_OOM, "%s: cannot allocate output-error buffers for %zu rows", site, rows);
    }
    quantizer full = {e->scale, 1.0f / e->scale, e->zero_point, e->qmin, e->qmax};
    quantizer in0 = {e->scale0, 1.0f / e->scale0, e->zero_point0, e->qmin, e->qmax};
    for (size_t i = 0; i < n; i++) {
        int clipped, clipped0;
        // The differences are formed in fp32 before the GEMM: X_hat W^T - X W^T would cancel catastrophically.
        d_full[i] = quantize(&full, x[i], &clipped) - x[i];
        d_inlier[i] = clipped || is_outlier(e, x[i]) ? d_full[i] : quantize(&in0, x[i], &clipped0) - x[i];
    }
    double count = (double)rows * (double)out_features;
    out->e_out = output_sum_squares(d_full, rows, in_features, weight, out_features, y) / count;
    out->e_out_inlier_step = output_sum_squares(d_inlier, rows, in_features, weight, out_features, y) / count;
    out->e_out_amp = out->e_out - out->e_out_inlier_step;
    out->share_amp = out->e_out > 0.0 ? out->e_out_amp / out->e_out : 0.0;
    free(d_full);
    free(d_inlier);
    free(y);
    return QFT_OK;
}
