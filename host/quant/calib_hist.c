// Histogram calibrators: a growing fixed-width histogram per channel, and the MSE and entropy (KL)
// range searches on it (definitions and variants in calib.h and METHODS.md §5).
#include "calib_hist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"

static long floor_div2(long k) { return k >= 0 ? k / 2 : -((-k + 1) / 2); }

// Merges bins pairwise: bin k goes to floor(k/2) at twice the width. Edges stay multiples of the
// width, so every old bin lies inside one new bin and no count is split or estimated.
static qft_status hist_merge_pairs(calib_hist *h, qft_error *err) {
    long first = floor_div2(h->first), last = floor_div2(h->first + h->bins - 1);
    double *merged = calloc((size_t)(last - first + 1), sizeof(double));
    if (!merged) return qft_fail(err, QFT_ERR_OOM, "calibrator histogram: out of memory merging bins");
    for (long k = h->first; k < h->first + h->bins; k++) merged[floor_div2(k) - first] += h->counts[k - h->first];
    free(h->counts);
    h->counts = merged;
    h->first = first;
    h->bins = last - first + 1;
    h->width *= 2.0;
    return QFT_OK;
}

qft_status calib_hist_cover(calib_hist *h, float vmin, float vmax, qft_error *err) {
    double lo = fmin((double)vmin, 0.0), hi = fmax((double)vmax, 0.0);
    if (h->width == 0.0) {
        if (hi == lo) return QFT_OK;  // still all zeros: counted in pending_zeros by calib_hist_add
        h->width = (hi - lo) / QFT_CALIB_HIST_BINS;
        // |x| histograms are exactly pytorch-quantization's 2048 bins on [0, amax]; signed ones put 0 on
        // an edge (the quantizer forces 0 into the range anyway), so they may need one bin more.
        h->first = h->absolute ? 0 : -(long)ceil(-lo / h->width);
        long end = h->absolute ? QFT_CALIB_HIST_BINS : (long)ceil(hi / h->width);
        if (end <= h->first) end = h->first + 1;
        h->bins = end - h->first;
        h->counts = calloc((size_t)h->bins, sizeof(double));
        if (!h->counts) return qft_fail(err, QFT_ERR_OOM, "calibrator histogram: out of memory");
        h->counts[-h->first] += h->pending_zeros;
        h->pending_zeros = 0.0;
        return QFT_OK;
    }
    for (;;) {
        long first = h->first, end = h->first + h->bins;
        // Only a value beyond the current edges adds bins (a value on the top edge goes in the top bin).
        if (lo < (double)first * h->width) first = (long)floor(lo / h->width);
        if (hi > (double)end * h->width) end = (long)ceil(hi / h->width);
        if (first == h->first && end == h->first + h->bins) return QFT_OK;
        if (end - first > QFT_CALIB_MAX_BINS) {
            qft_status st = hist_merge_pairs(h, err);
            if (st != QFT_OK) return st;
            continue;
        }
        double *grown = calloc((size_t)(end - first), sizeof(double));
        if (!grown) return qft_fail(err, QFT_ERR_OOM, "calibrator histogram: out of memory growing to %ld bins",
                                    end - first);
        memcpy(grown + (h->first - first), h->counts, (size_t)h->bins * sizeof(double));
        free(h->counts);
        h->counts = grown;
        h->first = first;
        h->bins = end - first;
        return QFT_OK;
    }
}

void calib_hist_add(calib_hist *h, const float *x, size_t n) {
    h->total += (double)n;
    if (h->width == 0.0) {
        h->pending_zeros += (double)n;
        return;
    }
    // Division, not a multiply by 1/width: the bin of a value is then floor(v / width) exactly as
    // the Python oracle (tests/oracle/calib_oracle.py) computes it. A value on the top edge goes
    // into the top bin (torch.histc does the same).
    const double w = h->width;
    const long first = h->first, last = h->first + h->bins - 1;
    double *counts = h->counts - first;
    if (h->absolute) {
        for (size_t i = 0; i < n; i++) {
            long k = (long)((double)fabsf(x[i]) / w);
            counts[k > last ? last : k] += 1.0;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            long k = (long)floor((double)x[i] / w);
            k = k < first ? first : k > last ? last : k;
            counts[k] += 1.0;
        }
    }
}

void calib_hist_free(calib_hist *h) {
    free(h->counts);
    h->counts = NULL;
}

// Phi(s) = integral of (v - rint(v))^2 dv from -1/2 to s: whole periods give 1/12 each; inside a
// period the error runs linearly from -1/2.
static double sawtooth_integral(double s) {
    double n = floor(s + 0.5), f = s + 0.5 - n, e = f - 0.5;
    return n / 12.0 + (e * e * e + 0.125) / 3.0;
}

// Integral over [a, b] of (Q(u) - u)^2 for the uniform quantizer with step `step`, zero point z and
// grid [qmin, qmax]: clipped below, rounding inside, clipped above.
static double quant_error_integral(double a, double b, double step, double z, int qmin, int qmax) {
    double clip_lo = ((double)qmin - z) * step, clip_hi = ((double)qmax - z) * step;
    double round_lo = clip_lo - 0.5 * step, round_hi = clip_hi + 0.5 * step;
    double total = 0.0;
    if (a < round_lo) {
        double t = fmin(b, round_lo), d1 = t - clip_lo, d0 = a - clip_lo;
        total += (d1 * d1 * d1 - d0 * d0 * d0) / 3.0;
    }
    double t0 = fmax(a, round_lo), t1 = fmin(b, round_hi);
    if (t1 > t0) total += step * step * step * (sawtooth_integral(t1 / step) - sawtooth_integral(t0 / step));
    if (b > round_hi) {
        double t = fmax(a, round_hi), d1 = b - clip_hi, d0 = t - clip_hi;
        total += (d1 * d1 * d1 - d0 * d0 * d0) / 3.0;
    }
    return total;
}

// Sum over the histogram of count x mean squared error in the bin, values uniform inside each bin.
static double hist_quant_error(const calib_hist *h, const qft_quant_format *fmt, float lo, float hi) {
    float scale, zero_point;
    qft_quant_params_from_range(fmt, lo, hi, &scale, &zero_point);
    int qmin = qft_quant_qmin(fmt), qmax = qft_quant_qmax(fmt);
    double err = 0.0, w = h->width;
    for (long k = 0; k < h->bins; k++) {
        double n = h->counts[k];
        if (n == 0.0) continue;
        double a = (double)(h->first + k) * w;
        err += n / w * quant_error_integral(a, a + w, (double)scale, (double)zero_point, qmin, qmax);
    }
    return err;
}

// One end of the range as a fraction m / denom of the data's end (data_min or data_max). which:
// 0 = symmetric (-a, a), 1 = upper end (other fixed below), 2 = lower end (other fixed above).
static float end_at(float data_end, long m, long denom) { return data_end * (float)m / (float)denom; }

static double pair_error(const calib_hist *h, const qft_quant_format *fmt, int which, float cand, float other) {
    if (which == 0) return hist_quant_error(h, fmt, -cand, cand);
    return which == 1 ? hist_quant_error(h, fmt, other, cand) : hist_quant_error(h, fmt, cand, other);
}

// Best m in [m_lo, m_hi] for one end; *best_err is the error of the current choice m_current and only
// strict improvements move it. Scanning from wide to narrow makes ties keep the wider range.
static long search_end(const calib_hist *h, const qft_quant_format *fmt, int which, float data_end, float other,
                       long m_lo, long m_hi, long denom, long m_current, double *best_err) {
    long best = m_current;
    for (long m = m_hi; m >= m_lo; m--) {
        if (m == m_current) continue;
        double e = pair_error(h, fmt, which, end_at(data_end, m, denom), other);
        if (e < *best_err) {
            *best_err = e;
            best = m;
        }
    }
    return best;
}

// The 100-point grid k/100, then a fine grid of 1/2000 steps (about one histogram bin) one coarse
// step either side of the coarse choice: on outlier-stretched ranges 1/100 of the end is coarse
// next to the bulk, and a finer step than a bin would only fit the bin-uniform assumption.
enum { COARSE = QFT_CALIB_MSE_GRID, FINE = 20 * QFT_CALIB_MSE_GRID, WINDOW = FINE / COARSE };

void calib_hist_mse_range(const calib_hist *h, const qft_quant_format *fmt, float data_min, float data_max, float *lo,
                          float *hi) {
    *lo = data_min;
    *hi = data_max;
    if (h->width == 0.0) return;  // all zeros: nothing to clip
    if (fmt->symmetric) {
        float amax = fmaxf(-data_min, data_max);
        double err = hist_quant_error(h, fmt, -amax, amax);
        long k = search_end(h, fmt, 0, amax, 0.0f, 1, COARSE, COARSE, COARSE, &err);
        long c = k * (FINE / COARSE);
        long m = search_end(h, fmt, 0, amax, 0.0f, c > WINDOW ? c - WINDOW : 1, c + WINDOW < FINE ? c + WINDOW : FINE,
                            FINE, c, &err);
        *lo = -end_at(amax, m, FINE);
        *hi = end_at(amax, m, FINE);
        return;
    }
    // Asymmetric: alternate the one-dimensional searches of the two ends until neither moves, on the
    // coarse grid and then on the fine one. An end on the far side of 0 is not searched: the
    // quantizer puts 0 in the range anyway (format.h).
    int search_hi = data_max > 0.0f, search_lo = data_min < 0.0f;
    long m_hi = COARSE, m_lo = COARSE;
    double err = hist_quant_error(h, fmt, data_min, data_max);
    for (int pass = 0; pass < 2; pass++) {
        long denom = pass == 0 ? COARSE : FINE;
        long hi_min = 1, hi_max = COARSE, lo_min = 1, lo_max = COARSE;
        if (pass == 1) {
            m_hi *= FINE / COARSE;
            m_lo *= FINE / COARSE;
            hi_min = m_hi > WINDOW ? m_hi - WINDOW : 1, hi_max = m_hi + WINDOW < FINE ? m_hi + WINDOW : FINE;
            lo_min = m_lo > WINDOW ? m_lo - WINDOW : 1, lo_max = m_lo + WINDOW < FINE ? m_lo + WINDOW : FINE;
        }
        for (int round = 0; round < 2 * COARSE; round++) {
            long new_hi = search_hi ? search_end(h, fmt, 1, data_max, end_at(data_min, m_lo, denom), hi_min, hi_max,
                                                 denom, m_hi, &err)
                                    : m_hi;
            long new_lo = search_lo ? search_end(h, fmt, 2, data_min, end_at(data_max, new_hi, denom), lo_min, lo_max,
                                                 denom, m_lo, &err)
                                    : m_lo;
            int moved = new_hi != m_hi || new_lo != m_lo;
            m_hi = new_hi;
            m_lo = new_lo;
            if (!moved) break;
        }
        *lo = end_at(data_min, m_lo, denom);
        *hi = end_at(data_max, m_hi, denom);
    }
}

double calib_hist_entropy_amax(const calib_hist *h, int levels, double *scratch) {
    if (h->width == 0.0) return 0.0;
    const long n = h->bins;
    // Prefix sums over the bins (H[0] replaced by H[1], step 2 of METHODS.md §5): mass S, non-zero
    // bin count Z, and sum of H ln H, so each candidate's KL costs O(levels) instead of O(bins).
    double *hist = scratch, *mass = hist + n + 1, *nonzero = mass + n + 1, *hlogh = nonzero + n + 1;
    memcpy(hist, h->counts, (size_t)n * sizeof(double));
    if (n >= 2) hist[0] = hist[1];
    mass[0] = nonzero[0] = hlogh[0] = 0.0;
    for (long j = 0; j < n; j++) {
        double v = hist[j];
        mass[j + 1] = mass[j] + v;
        nonzero[j + 1] = nonzero[j] + (v > 0.0);
        hlogh[j + 1] = hlogh[j] + (v > 0.0 ? v * log(v) : 0.0);
    }
    const double total = mass[n];
    const long start = n < 128 ? n : 128;  // pytorch-quantization's start_bin
    long best_i = n;
    double best_kl = INFINITY;
    for (long i = start; i <= n; i++) {
        double kept = mass[i];  // Q is built from H[0..i-1] without the tail
        if (!(kept > 0.0)) continue;
        double tail = total - kept, last = hist[i - 1];
        long last_level = (long)levels * (i - 1) / i;
        double kl = 0.0;
        for (long l = 0; l < levels; l++) {
            // Level l holds bins j with floor(levels * j / i) == l, i.e. ceil(l i / levels) <= j <
            // ceil((l + 1) i / levels).
            long b0 = (l * i + levels - 1) / levels, b1 = ((l + 1) * i + levels - 1) / levels;
            if (b1 <= b0) continue;
            double m = mass[b1] - mass[b0], z = nonzero[b1] - nonzero[b0];
            if (z == 0.0) {
                if (l == last_level && tail > 0.0) kl = INFINITY;  // P > 0 where Q = 0
                continue;
            }
            double q = m / (z * kept);  // Q of each non-zero bin of the level (normalized)
            double m_in = m, hlogh_in = hlogh[b1] - hlogh[b0];
            if (l == last_level && last > 0.0) {  // bin i-1 carries the tail in P: added below
                m_in -= last;
                hlogh_in -= last * log(last);
            }
            // sum over the level's other non-zero bins of (H/T) ln(H / (T q))
            kl += (hlogh_in - m_in * log(total * q)) / total;
            if (l == last_level && last + tail > 0.0) {
                if (last == 0.0) {
                    kl = INFINITY;  // the tail lands in an empty bin: P > 0 where Q = 0
                } else {
                    double p = (last + tail) / total;
                    kl += p * log(p / q);
                }
            }
        }
        if (isfinite(kl) && kl <= best_kl) {  // the last minimiser, as pytorch-quantization
            best_kl = kl;
            best_i = i;
        }
    }
    return (double)best_i * h->width;
}
