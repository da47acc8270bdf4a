// Calibrator lifecycle and the streaming calibrators (minmax, EMA, exact percentile, OMSE); batch
// layout, per-channel dispatch and input checks. Histogram calibrators live in calib_hist.c.
#include "calib.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "calib_hist.h"

struct qft_calibrator {
    qft_quant_format fmt;
    int channels;
    char name[128];
    long batches;
    // Per channel. minmax, OMSE, MSE, entropy: running min / max. EMA, percentile: the smoothed range.
    float *lo, *hi;
    float *omse_lo, *omse_hi;    // OMSE: the candidate chosen on the last batch
    float *batch_lo, *batch_hi;  // scratch: this batch's min / max per channel
    calib_hist *hists;           // MSE, entropy
    float *heaps;                // percentile scratch: two heaps per channel
    size_t heaps_capacity;       // floats
};

// A batch seen as channels x segments: channel c's values are the segments seg(c, s), s < count.
// Row axis: one contiguous block of rows per channel. Column axis: per row, a run of `block` columns.
typedef struct {
    const float *x;
    size_t cols, block, seg_len, seg_count;
    qft_calib_axis axis;
} batch_view;

static const float *segment(const batch_view *b, int c, size_t s) {
    if (b->axis == QFT_CALIB_AXIS_ROW) return b->x + (size_t)c * b->block * b->cols;
    return b->x + s * b->cols + (size_t)c * b->block;
}

static int uses_histogram(qft_calibrator_kind k) { return k == QFT_CALIB_MSE || k == QFT_CALIB_ENTROPY; }

qft_status qft_calibrator_create(const qft_quant_format *fmt, int channels, const char *name, qft_calibrator **out,
                                 qft_error *err) {
    *out = NULL;
    const char *label = name ? name : "calibrator";
    qft_calibrator_kind kind = fmt->calibrator;
    if ((int)kind < QFT_CALIB_MINMAX || kind > QFT_CALIB_ENTROPY)
        return qft_fail(err, QFT_ERR_INVALID, "%s: unknown calibrator %d", label, (int)kind);
    if (fmt->bits < 2 || fmt->bits > 8)
        return qft_fail(err, QFT_ERR_INVALID, "%s: bits must be 2..8, got %d", label, fmt->bits);
    if (channels < 1) return qft_fail(err, QFT_ERR_INVALID, "%s: channels must be >= 1, got %d", label, channels);
    if (kind == QFT_CALIB_PERCENTILE && !(fmt->percentile >= 50.0 && fmt->percentile <= 100.0))
        return qft_fail(err, QFT_ERR_INVALID, "%s: percentile must be in [50, 100], got %g", label, fmt->percentile);
    if ((kind == QFT_CALIB_EMA || kind == QFT_CALIB_PERCENTILE) &&
        !(fmt->ema_momentum > 0.0 && fmt->ema_momentum <= 1.0))
        return qft_fail(err, QFT_ERR_INVALID, "%s: ema_momentum must be in (0, 1], got %g", label, fmt->ema_momentum);
    qft_calibrator *c = calloc(1, sizeof *c);
    if (!c) return qft_fail(err, QFT_ERR_OOM, "%s: out of memory", label);
    c->fmt = *fmt;
    c->channels = channels;
    snprintf(c->name, sizeof c->name, "%s", label);
    size_t n = (size_t)channels;
    c->lo = malloc(n * sizeof(float));
    c->hi = malloc(n * sizeof(float));
    c->batch_lo = malloc(n * sizeof(float));
    c->batch_hi = malloc(n * sizeof(float));
    int ok = c->lo && c->hi && c->batch_lo && c->batch_hi;
    if (kind == QFT_CALIB_OMSE) {
        c->omse_lo = malloc(n * sizeof(float));
        c->omse_hi = malloc(n * sizeof(float));
        ok = ok && c->omse_lo && c->omse_hi;
    }
    if (uses_histogram(kind)) {
        c->hists = calloc(n, sizeof(calib_hist));
        ok = ok && c->hists;
        for (size_t i = 0; ok && i < n; i++) c->hists[i].absolute = kind == QFT_CALIB_ENTROPY;
    }
    if (!ok) {
        qft_calibrator_free(c);
        return qft_fail(err, QFT_ERR_OOM, "%s: out of memory for %d channels", label, channels);
    }
    *out = c;
    return QFT_OK;
}

void qft_calibrator_free(qft_calibrator *c) {
    if (!c) return;
    if (c->hists)
        for (int i = 0; i < c->channels; i++) calib_hist_free(&c->hists[i]);
    free(c->hists);
    free(c->lo);
    free(c->hi);
    free(c->omse_lo);
    free(c->omse_hi);
    free(c->batch_lo);
    free(c->batch_hi);
    free(c->heaps);
    free(c);
}

int qft_calibrator_channels(const qft_calibrator *c) { return c->channels; }
long qft_calibrator_batches(const qft_calibrator *c) { return c->batches; }

// Per-channel min / max of the batch, and whether every value is finite (min/max comparisons skip
// NaN, so finiteness is tracked separately).
static int batch_min_max(qft_calibrator *c, const batch_view *b) {
    int finite = 1;
    for (int ch = 0; ch < c->channels; ch++) {
        c->batch_lo[ch] = INFINITY;
        c->batch_hi[ch] = -INFINITY;
    }
    for (size_t s = 0; s < b->seg_count; s++) {
        for (int ch = 0; ch < c->channels; ch++) {
            const float *p = segment(b, ch, s);
            float lo = c->batch_lo[ch], hi = c->batch_hi[ch];
            int bad = 0;
            for (size_t i = 0; i < b->seg_len; i++) {
                float v = p[i];
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
                bad |= !(fabsf(v) <= FLT_MAX);
            }
            c->batch_lo[ch] = lo;
            c->batch_hi[ch] = hi;
            finite &= !bad;
        }
    }
    return finite;
}

static qft_status fail_non_finite(const qft_calibrator *c, const float *x, size_t rows, size_t cols, qft_error *err) {
    for (size_t i = 0; i < rows * cols; i++)
        if (!isfinite(x[i]))
            return qft_fail(err, QFT_ERR_INVALID, "%s: batch %ld has a non-finite value (%g) at row %zu, column %zu",
                            c->name, c->batches + 1, (double)x[i], i / cols, i % cols);
    return qft_fail(err, QFT_ERR_INTERNAL, "%s: non-finite value reported but not found", c->name);
}

// m <- m + c (m_batch - m) in fp32, as torch's moving-average observers and FQ-ViT compute it.
static float ema_step(float m, float batch, double momentum) { return m + (float)momentum * (batch - m); }

// ---- exact percentile (torch.quantile, linear interpolation) ----

typedef struct {
    size_t below, above;  // sorted indices around the rank
    float weight;         // rank - below
} quantile_rank;

// torch.quantile computes rank = q * (n - 1) in the input's dtype (fp32 here); up to 2^24 values that
// is matched exactly. Past that torch refuses the input (FQ-ViT then falls back to numpy in double),
// so the rank is taken in double.
static quantile_rank rank_for(double q, size_t n) {
    quantile_rank r;
    if (n - 1 <= ((size_t)1 << 24)) {
        float rank = (float)q * (float)(n - 1);
        r.below = (size_t)rank;
        r.above = (size_t)ceilf(rank);
        r.weight = rank - (float)r.below;
    } else {
        double rank = q * (double)(n - 1);
        r.below = (size_t)rank;
        r.above = (size_t)ceil(rank);
        r.weight = (float)(rank - (double)r.below);
    }
    if (r.above > n - 1) r.above = n - 1;
    if (r.below > r.above) r.below = r.above;
    return r;
}

// torch.lerp's scalar formula: the two branches keep the result exact at both ends.
static float lerp(float a, float b, float w) { return fabsf(w) < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w); }

// Min-heap of at most cap values that keeps the cap largest values offered.
static void heap_offer(float *h, size_t *size, size_t cap, float v) {
    size_t i;
    if (*size < cap) {
        i = (*size)++;
        while (i > 0 && h[(i - 1) / 2] > v) {
            h[i] = h[(i - 1) / 2];
            i = (i - 1) / 2;
        }
        h[i] = v;
        return;
    }
    if (!(v > h[0])) return;
    i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        float mv = v;
        if (l < cap && h[l] < mv) m = l, mv = h[l];
        if (r < cap && h[r] < mv) m = r, mv = h[r];
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    h[i] = v;
}

// The second-smallest value of a full min-heap of size >= 2.
static float heap_second(const float *h, size_t size) { return size == 2 ? h[1] : fminf(h[1], h[2]); }

static qft_status observe_percentile(qft_calibrator *c, const batch_view *b, size_t per_channel, qft_error *err) {
    double q_hi = c->fmt.percentile / 100.0, q_lo = 1.0 - q_hi;
    quantile_rank up = rank_for(q_hi, per_channel), down = rank_for(q_lo, per_channel);
    // Upper quantile: the per_channel - below largest values; lower: the above + 1 smallest, kept
    // negated in the same kind of heap. Both heaps are O((1 - q) n), not O(n).
    size_t cap_up = per_channel - up.below, cap_down = down.above + 1;
    size_t need = (size_t)c->channels * (cap_up + cap_down);
    if (need > c->heaps_capacity) {
        float *h = realloc(c->heaps, need * sizeof(float));
        if (!h) return qft_fail(err, QFT_ERR_OOM, "%s: out of memory for percentile heaps (%zu values)", c->name, need);
        c->heaps = h;
        c->heaps_capacity = need;
    }
    size_t *sizes = calloc(2 * (size_t)c->channels, sizeof(size_t));
    if (!sizes) return qft_fail(err, QFT_ERR_OOM, "%s: out of memory", c->name);
    for (size_t s = 0; s < b->seg_count; s++) {
        for (int ch = 0; ch < c->channels; ch++) {
            const float *p = segment(b, ch, s);
            float *h_up = c->heaps + (size_t)ch * (cap_up + cap_down), *h_down = h_up + cap_up;
            size_t *n_up = &sizes[2 * ch], *n_down = &sizes[2 * ch + 1];
            for (size_t i = 0; i < b->seg_len; i++) {
                heap_offer(h_up, n_up, cap_up, p[i]);
                heap_offer(h_down, n_down, cap_down, -p[i]);
            }
        }
    }
    for (int ch = 0; ch < c->channels; ch++) {
        const float *h_up = c->heaps + (size_t)ch * (cap_up + cap_down), *h_down = h_up + cap_up;
        float below = h_up[0], above = up.above > up.below ? heap_second(h_up, cap_up) : below;
        float hi = lerp(below, above, up.weight);
        float above_lo = -h_down[0], below_lo = down.above > down.below ? -heap_second(h_down, cap_down) : above_lo;
        float lo = lerp(below_lo, above_lo, down.weight);
        if (c->batches == 0) {
            c->lo[ch] = lo;
            c->hi[ch] = hi;
        } else {
            c->lo[ch] = ema_step(c->lo[ch], lo, c->fmt.ema_momentum);
            c->hi[ch] = ema_step(c->hi[ch], hi, c->fmt.ema_momentum);
        }
    }
    free(sizes);
    return QFT_OK;
}

// ---- OMSE (FQ-ViT OmseObserver) ----

static qft_status observe_omse(qft_calibrator *c, const batch_view *b, qft_error *err) {
    enum { K = QFT_CALIB_OMSE_CANDIDATES };
    size_t n = (size_t)c->channels * K;
    float *scale = malloc(n * sizeof(float)), *inv = malloc(n * sizeof(float)), *zp = malloc(n * sizeof(float));
    double *sq = calloc(n, sizeof(double));
    if (!scale || !inv || !zp || !sq) {
        free(scale), free(inv), free(zp), free(sq);
        return qft_fail(err, QFT_ERR_OOM, "%s: out of memory for OMSE candidates", c->name);
    }
    for (int ch = 0; ch < c->channels; ch++)
        for (int i = 0; i < K; i++) {
            float f = (float)(1.0 - 0.01 * i);
            size_t j = (size_t)ch * K + (size_t)i;
            qft_quant_params_from_range(&c->fmt, c->lo[ch] * f, c->hi[ch] * f, &scale[j], &zp[j]);
            inv[j] = 1.0f / scale[j];
        }
    const float fqmin = (float)qft_quant_qmin(&c->fmt), fqmax = (float)qft_quant_qmax(&c->fmt);
    // Candidates innermost: their accumulators are independent, so the loop vectorizes across them.
    for (size_t s = 0; s < b->seg_count; s++) {
        for (int ch = 0; ch < c->channels; ch++) {
            const float *p = segment(b, ch, s);
            const float *sc = scale + (size_t)ch * K, *iv = inv + (size_t)ch * K, *z = zp + (size_t)ch * K;
            double *acc = sq + (size_t)ch * K;
            for (size_t e = 0; e < b->seg_len; e++) {
                float v = p[e];
                for (int i = 0; i < K; i++) {
                    // qft_quant_dequant with the clamp written as comparisons: the same value for
                    // the finite inputs observe admits, and unlike fminf/fmaxf it vectorizes.
                    float q = rintf(v * iv[i]) + z[i];
                    q = q < fqmin ? fqmin : q > fqmax ? fqmax : q;
                    float d = (q - z[i]) * sc[i] - v;
                    acc[i] += (double)(d * d);
                }
            }
        }
    }
    for (int ch = 0; ch < c->channels; ch++) {
        const double *acc = sq + (size_t)ch * K;
        int best = 0;
        for (int i = 1; i < K; i++)
            if (acc[i] < acc[best]) best = i;  // strict: ties keep the wider range, as FQ-ViT
        float f = (float)(1.0 - 0.01 * best);
        c->omse_lo[ch] = c->lo[ch] * f;
        c->omse_hi[ch] = c->hi[ch] * f;
    }
    free(scale), free(inv), free(zp), free(sq);
    return QFT_OK;
}

static qft_status observe_histograms(qft_calibrator *c, const batch_view *b, qft_error *err) {
    int absolute = c->fmt.calibrator == QFT_CALIB_ENTROPY;
    for (int ch = 0; ch < c->channels; ch++) {
        float lo = c->batch_lo[ch], hi = c->batch_hi[ch];
        qft_status st = absolute ? calib_hist_cover(&c->hists[ch], 0.0f, fmaxf(-lo, hi), err)
                                 : calib_hist_cover(&c->hists[ch], lo, hi, err);
        if (st != QFT_OK) return st;
    }
    for (size_t s = 0; s < b->seg_count; s++)
        for (int ch = 0; ch < c->channels; ch++) calib_hist_add(&c->hists[ch], segment(b, ch, s), b->seg_len);
    return QFT_OK;
}

qft_status qft_calibrator_observe(qft_calibrator *c, const float *x, size_t rows, size_t cols, qft_calib_axis axis,
                                  qft_error *err) {
    if (!x || rows == 0 || cols == 0)
        return qft_fail(err, QFT_ERR_SHAPE, "%s: empty batch [%zu, %zu]", c->name, rows, cols);
    if (axis != QFT_CALIB_AXIS_ROW && axis != QFT_CALIB_AXIS_COLUMN)
        return qft_fail(err, QFT_ERR_INVALID, "%s: unknown channel axis %d", c->name, (int)axis);
    size_t extent = axis == QFT_CALIB_AXIS_ROW ? rows : cols;
    if (extent % (size_t)c->channels != 0)
        return qft_fail(err, QFT_ERR_SHAPE, "%s: batch [%zu, %zu]: %s %zu do not split into %d channels", c->name,
                        rows, cols, axis == QFT_CALIB_AXIS_ROW ? "rows" : "columns", extent, c->channels);
    batch_view b = {.x = x, .cols = cols, .axis = axis, .block = extent / (size_t)c->channels};
    b.seg_len = axis == QFT_CALIB_AXIS_ROW ? b.block * cols : b.block;
    b.seg_count = axis == QFT_CALIB_AXIS_ROW ? 1 : rows;
    if (!batch_min_max(c, &b)) return fail_non_finite(c, x, rows, cols, err);

    qft_status st = QFT_OK;
    switch (c->fmt.calibrator) {
    case QFT_CALIB_EMA:
        for (int ch = 0; ch < c->channels; ch++) {
            c->lo[ch] = c->batches == 0 ? c->batch_lo[ch] : ema_step(c->lo[ch], c->batch_lo[ch], c->fmt.ema_momentum);
            c->hi[ch] = c->batches == 0 ? c->batch_hi[ch] : ema_step(c->hi[ch], c->batch_hi[ch], c->fmt.ema_momentum);
        }
        break;
    case QFT_CALIB_PERCENTILE:
        st = observe_percentile(c, &b, b.seg_len * b.seg_count, err);
        break;
    default:  // running min / max: minmax itself, and the range OMSE, MSE and entropy start from
        for (int ch = 0; ch < c->channels; ch++) {
            c->lo[ch] = c->batches == 0 ? c->batch_lo[ch] : fminf(c->lo[ch], c->batch_lo[ch]);
            c->hi[ch] = c->batches == 0 ? c->batch_hi[ch] : fmaxf(c->hi[ch], c->batch_hi[ch]);
        }
        if (c->fmt.calibrator == QFT_CALIB_OMSE) st = observe_omse(c, &b, err);
        if (uses_histogram(c->fmt.calibrator)) st = observe_histograms(c, &b, err);
        break;
    }
    if (st != QFT_OK) return st;
    c->batches++;
    return QFT_OK;
}

// Levels the KL search quantizes to: pytorch-quantization's 2^(b-1), or 2^b ("unsigned") when an
// asymmetric grid covers one-signed data, where all 2^b codes land on the data's side of 0.
static int entropy_levels(const qft_quant_format *f, float lo, float hi) {
    int one_signed = lo >= 0.0f || hi <= 0.0f;
    return !f->symmetric && one_signed ? 1 << f->bits : 1 << (f->bits - 1);
}

qft_status qft_calibrator_finish(const qft_calibrator *c, float *scale, float *zero_point, float *lo, float *hi,
                                 qft_error *err) {
    if (c->batches == 0) return qft_fail(err, QFT_ERR_INVALID, "%s: finish before any batch was observed", c->name);
    double *scratch = NULL;
    if (c->fmt.calibrator == QFT_CALIB_ENTROPY) {
        long most = 0;
        for (int ch = 0; ch < c->channels; ch++)
            if (c->hists[ch].bins > most) most = c->hists[ch].bins;
        scratch = malloc(4 * (size_t)(most + 1) * sizeof(double));
        if (!scratch) return qft_fail(err, QFT_ERR_OOM, "%s: out of memory for the entropy search", c->name);
    }
    for (int ch = 0; ch < c->channels; ch++) {
        float l = c->lo[ch], h = c->hi[ch];
        switch (c->fmt.calibrator) {
        case QFT_CALIB_OMSE:
            l = c->omse_lo[ch];
            h = c->omse_hi[ch];
            break;
        case QFT_CALIB_MSE:
            calib_hist_mse_range(&c->hists[ch], &c->fmt, c->lo[ch], c->hi[ch], &l, &h);
            break;
        case QFT_CALIB_ENTROPY: {
            float amax = (float)calib_hist_entropy_amax(&c->hists[ch], entropy_levels(&c->fmt, l, h), scratch);
            if (c->fmt.symmetric) {
                l = -amax;
                h = amax;
            } else {
                l = fmaxf(l, -amax);
                h = fminf(h, amax);
            }
            break;
        }
        default:
            break;
        }
        if (lo) lo[ch] = l;
        if (hi) hi[ch] = h;
        if (scale || zero_point) {
            float s, z;
            qft_quant_params_from_range(&c->fmt, l, h, &s, &z);
            if (scale) scale[ch] = s;
            if (zero_point) zero_point[ch] = z;
        }
    }
    free(scratch);
    return QFT_OK;
}

qft_status qft_calibrator_histogram(const qft_calibrator *c, int channel, qft_calib_histogram *out, qft_error *err) {
    if (!c->hists)
        return qft_fail(err, QFT_ERR_INVALID, "%s: the %s calibrator keeps no histogram", c->name,
                        qft_calibrator_name(c->fmt.calibrator));
    if (channel < 0 || channel >= c->channels)
        return qft_fail(err, QFT_ERR_INVALID, "%s: channel %d out of range [0, %d)", c->name, channel, c->channels);
    const calib_hist *h = &c->hists[channel];
    out->counts = h->counts;
    out->first_bin = h->width > 0.0 ? h->first : 0;
    out->bins = h->width > 0.0 ? h->bins : 0;
    out->bin_width = h->width;
    out->total = h->total;
    return QFT_OK;
}

qft_status qft_calib_range(qft_calibrator_kind kind, const qft_quant_format *fmt, const float *x, size_t n, float *lo,
                           float *hi, qft_error *err) {
    qft_quant_format f = *fmt;
    f.calibrator = kind;
    qft_calibrator *c;
    qft_status st = qft_calibrator_create(&f, 1, "calib_range", &c, err);
    if (st != QFT_OK) return st;
    st = qft_calibrator_observe(c, x, 1, n, QFT_CALIB_AXIS_ROW, err);
    if (st == QFT_OK) st = qft_calibrator_finish(c, NULL, NULL, lo, hi, err);
    qft_calibrator_free(c);
    return st;
}
