// Streaming per-site activation statistics for `qft analyze`: moments merged batch by batch, a
// relative-resolution magnitude histogram for percentiles and plots, outlier channels and tokens.
#include "analyze_stats.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const double qft_analyze_percentiles[QFT_ANALYZE_PERCENTILE_COUNT] = {0.01, 0.1, 1.0, 50.0, 99.0, 99.9, 99.99};

#define SUB_COUNT ((size_t)1 << QFT_ANALYZE_HIST_SUB_BITS)

// Magnitude index from the float's bits: exponent and top mantissa bits. Callers pass finite x.
static size_t hist_bin(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    int exponent = (int)((bits >> 23) & 0xffu) - 127;
    if (exponent < QFT_ANALYZE_HIST_EXP_MIN) return QFT_ANALYZE_HIST_HALF;
    size_t magnitude;
    if (exponent >= QFT_ANALYZE_HIST_EXP_MAX) {
        magnitude = QFT_ANALYZE_HIST_HALF - 1;
    } else {
        size_t sub = (bits >> (23 - QFT_ANALYZE_HIST_SUB_BITS)) & (SUB_COUNT - 1);
        magnitude = ((size_t)(exponent - QFT_ANALYZE_HIST_EXP_MIN) << QFT_ANALYZE_HIST_SUB_BITS) + sub;
    }
    return (bits >> 31) ? QFT_ANALYZE_HIST_HALF - 1 - magnitude : QFT_ANALYZE_HIST_HALF + 1 + magnitude;
}

void qft_analyze_hist_bin_edges(size_t b, double *lo, double *hi) {
    double zero_edge = ldexp(1.0, QFT_ANALYZE_HIST_EXP_MIN);
    if (b == QFT_ANALYZE_HIST_HALF) {
        *lo = -zero_edge;
        *hi = zero_edge;
        return;
    }
    int negative = b < QFT_ANALYZE_HIST_HALF;
    size_t magnitude = negative ? QFT_ANALYZE_HIST_HALF - 1 - b : b - QFT_ANALYZE_HIST_HALF - 1;
    int exponent = QFT_ANALYZE_HIST_EXP_MIN + (int)(magnitude >> QFT_ANALYZE_HIST_SUB_BITS);
    size_t sub = magnitude & (SUB_COUNT - 1);
    double a = ldexp(1.0 + (double)sub / (double)SUB_COUNT, exponent);
    double c = magnitude == QFT_ANALYZE_HIST_HALF - 1 ? INFINITY
                                                      : ldexp(1.0 + (double)(sub + 1) / (double)SUB_COUNT, exponent);
    *lo = negative ? -c : a;
    *hi = negative ? -a : c;
}

qft_status qft_analyze_stats_init(qft_analyze_stats *s, size_t channels, size_t seq_len, size_t top_tokens,
                                  qft_error *err) {
    memset(s, 0, sizeof *s);
    if (channels == 0) return qft_fail(err, QFT_ERR_INVALID, "analyze stats: channels must be >= 1");
    s->channels = channels;
    s->seq_len = seq_len;
    s->top_tokens = top_tokens;
    s->min = INFINITY;
    s->max = -INFINITY;
    s->channel_absmax = calloc(channels, sizeof *s->channel_absmax);
    s->top = calloc(top_tokens ? top_tokens : 1, sizeof *s->top);
    s->hist = calloc(QFT_ANALYZE_HIST_BINS, sizeof *s->hist);
    if (!s->channel_absmax || !s->top || !s->hist) {
        qft_analyze_stats_free(s);
        return qft_fail(err, QFT_ERR_OOM, "analyze stats: cannot allocate for %zu channels", channels);
    }
    return QFT_OK;
}

void qft_analyze_stats_free(qft_analyze_stats *s) {
    free(s->channel_absmax);
    free(s->top);
    free(s->hist);
    s->channel_absmax = NULL;
    s->top = NULL;
    s->hist = NULL;
}

// Keeps top[] sorted by absmax, largest first; a tie keeps the earlier row.
static void offer_token(qft_analyze_stats *s, uint64_t batch, size_t row, double absmax) {
    if (s->top_tokens == 0) return;
    if (s->top_count == s->top_tokens && !(absmax > s->top[s->top_count - 1].absmax)) return;
    size_t i = s->top_count < s->top_tokens ? s->top_count++ : s->top_count - 1;
    while (i > 0 && s->top[i - 1].absmax < absmax) {
        s->top[i] = s->top[i - 1];
        i--;
    }
    s->top[i].batch = batch;
    s->top[i].row = row;
    s->top[i].position = s->seq_len ? row % s->seq_len : row;
    s->top[i].absmax = absmax;
}

qft_status qft_analyze_stats_update(qft_analyze_stats *s, const float *x, size_t rows, qft_error *err) {
    if (!x && rows) return qft_fail(err, QFT_ERR_INVALID, "analyze stats: NULL batch");
    size_t C = s->channels;
    uint64_t batch = s->batches++;
    // Pass 1: extremes, histogram, channel and row maxima, and the batch sum for its mean.
    uint64_t n = 0;
    double sum = 0.0;
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * C;
        double row_absmax = 0.0;
        int row_has_finite = 0;
        for (size_t c = 0; c < C; c++) {
            float v = row[c];
            if (!isfinite(v)) {
                s->nonfinite++;
                continue;
            }
            double d = v, a = fabs(d);
            n++;
            sum += d;
            if (d < s->min) s->min = d;
            if (d > s->max) s->max = d;
            if (a > s->channel_absmax[c]) s->channel_absmax[c] = a;
            if (a > row_absmax) row_absmax = a;
            row_has_finite = 1;
            s->hist[hist_bin(v)]++;
        }
        if (row_has_finite) offer_token(s, batch, r, row_absmax);
    }
    if (n == 0) return QFT_OK;
    // Pass 2: the batch's central moments in double, exact up to rounding (no sum-of-powers cancellation).
    double mean_b = sum / (double)n, m2 = 0.0, m3 = 0.0, m4 = 0.0;
    for (size_t i = 0; i < rows * C; i++) {
        if (!isfinite(x[i])) continue;
        double d = (double)x[i] - mean_b, d2 = d * d;
        m2 += d2;
        m3 += d2 * d;
        m4 += d2 * d2;
    }
    // Pass 3: outliers against this batch's own mean and sigma, as the per-step statistics of METHODS.md §6.
    double sigma_b = sqrt(m2 / (double)n);
    for (size_t i = 0; i < rows * C; i++) {
        if (!isfinite(x[i])) continue;
        double dev = fabs((double)x[i] - mean_b);
        s->beyond_sigma[0] += dev > 3.0 * sigma_b;
        s->beyond_sigma[1] += dev > 6.0 * sigma_b;
    }
    // Merge (Pebay 2008, the pairwise update of central moments up to the fourth).
    double na = (double)s->count, nb = (double)n, nt = na + nb;
    double delta = mean_b - s->mean, delta_n = delta / nt;
    double ma2 = s->m2, ma3 = s->m3;
    s->m4 += m4 + delta * delta_n * delta_n * delta_n * na * nb * (na * na - na * nb + nb * nb) +
             6.0 * delta_n * delta_n * (na * na * m2 + nb * nb * ma2) + 4.0 * delta_n * (na * m3 - nb * ma3);
    s->m3 += m3 + delta * delta_n * delta_n * na * nb * (na - nb) + 3.0 * delta_n * (na * m2 - nb * ma2);
    s->m2 += m2 + delta * delta_n * na * nb;
    s->mean += delta_n * nb;
    s->count += n;
    return QFT_OK;
}

double qft_analyze_stats_percentile(const qft_analyze_stats *s, double p) {
    if (s->count == 0) return NAN;
    if (p <= 0.0) return s->min;
    if (p >= 100.0) return s->max;
    double rank = p / 100.0 * (double)(s->count - 1), before = 0.0;
    for (size_t b = 0; b < QFT_ANALYZE_HIST_BINS; b++) {
        double c = (double)s->hist[b];
        if (c == 0.0 || rank >= before + c) {
            before += c;
            continue;
        }
        double lo, hi;
        qft_analyze_hist_bin_edges(b, &lo, &hi);
        lo = fmax(lo, s->min);
        hi = fmin(hi, s->max);
        // The bin's c values sit at the centres of c equal slices of [lo, hi].
        double v = lo + (rank - before + 0.5) / c * (hi - lo);
        return fmin(fmax(v, s->min), s->max);
    }
    return s->max;
}

qft_status qft_analyze_stats_summary(const qft_analyze_stats *s, const char *site, qft_analyze_summary *out,
                                     qft_error *err) {
    if (s->count == 0)
        return qft_fail(err, QFT_ERR_INVALID, "%s: no finite activation values seen (%llu non-finite)", site,
                        (unsigned long long)s->nonfinite);
    memset(out, 0, sizeof *out);
    double n = (double)s->count;
    out->count = s->count;
    out->nonfinite = s->nonfinite;
    out->batches = s->batches;
    out->min = s->min;
    out->max = s->max;
    out->mean = s->mean;
    out->std = sqrt(s->m2 / n);
    out->skewness = s->m2 > 0.0 ? sqrt(n) * s->m3 / pow(s->m2, 1.5) : NAN;
    out->kurtosis = s->m2 > 0.0 ? n * s->m4 / (s->m2 * s->m2) : NAN;
    out->absmax = fmax(fabs(s->min), fabs(s->max));
    for (int i = 0; i < QFT_ANALYZE_PERCENTILE_COUNT; i++)
        out->percentile[i] = qft_analyze_stats_percentile(s, qft_analyze_percentiles[i]);
    out->frac_beyond_3sigma = (double)s->beyond_sigma[0] / n;
    out->frac_beyond_6sigma = (double)s->beyond_sigma[1] / n;
    return QFT_OK;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

qft_status qft_analyze_stats_top_channels(const qft_analyze_stats *s, size_t n, qft_analyze_channel *out,
                                          size_t *written_out, qft_error *err) {
    size_t C = s->channels;
    if (n > C) n = C;
    *written_out = 0;
    if (n == 0) return QFT_OK;
    double *sorted = malloc(C * sizeof *sorted);
    if (!sorted) return qft_fail(err, QFT_ERR_OOM, "analyze stats: cannot allocate %zu channel maxima", C);
    memcpy(sorted, s->channel_absmax, C * sizeof *sorted);
    qsort(sorted, C, sizeof *sorted, compare_double);
    double median = C % 2 ? sorted[C / 2] : 0.5 * (sorted[C / 2 - 1] + sorted[C / 2]);
    free(sorted);
    // Selection by repeated scans: n is a handful, C a few thousand.
    size_t written = 0;
    for (; written < n; written++) {
        size_t best = C;
        for (size_t c = 0; c < C; c++) {
            int taken = 0;
            for (size_t k = 0; k < written && !taken; k++) taken = out[k].channel == c;
            if (taken) continue;
            if (best == C || s->channel_absmax[c] > s->channel_absmax[best]) best = c;
        }
        out[written].channel = best;
        out[written].absmax = s->channel_absmax[best];
        out[written].ratio_to_median = median > 0.0 ? s->channel_absmax[best] / median : INFINITY;
    }
    *written_out = written;
    return QFT_OK;
}

qft_status qft_analyze_stats_linear_histogram(const qft_analyze_stats *s, double lo, double hi, size_t bins,
                                              double *counts, qft_error *err) {
    if (!(lo < hi) || bins == 0)
        return qft_fail(err, QFT_ERR_INVALID, "analyze histogram: need lo < hi and bins >= 1 (got [%g, %g), %zu)", lo,
                        hi, bins);
    memset(counts, 0, bins * sizeof *counts);
    double width = (hi - lo) / (double)bins;
    for (size_t b = 0; b < QFT_ANALYZE_HIST_BINS; b++) {
        if (!s->hist[b]) continue;
        double c = (double)s->hist[b], a, z;
        qft_analyze_hist_bin_edges(b, &a, &z);
        a = fmax(a, s->min);
        z = fmin(z, s->max);
        if (!(z > a)) {
            // All of the bin's values are one point (a clamped edge bin, or a constant input).
            double pos = (a - lo) / width;
            if (pos >= 0.0 && pos <= (double)bins) counts[pos < (double)bins ? (size_t)pos : bins - 1] += c;
            continue;
        }
        double from = fmax(a, lo), to = fmin(z, hi);
        if (!(to > from)) continue;
        size_t first = (size_t)((from - lo) / width), last = (size_t)((to - lo) / width);
        if (last >= bins) last = bins - 1;
        for (size_t k = first; k <= last; k++) {
            double left = fmax(from, lo + (double)k * width), right = fmin(to, lo + (double)(k + 1) * width);
            if (right > left) counts[k] += c * (right - left) / (z - a);
        }
    }
    return QFT_OK;
}
