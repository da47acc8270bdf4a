// Internal to the calibrators (calib.c): the growing histogram and the two searches that run on it
// (MSE, entropy). Not a public interface: see calib.h for what the algorithms are.
#ifndef QFT_QUANT_CALIB_HIST_H
#define QFT_QUANT_CALIB_HIST_H

#include <stddef.h>

#include "core/status.h"
#include "quant/format.h"

typedef struct {
    double *counts;        // counts[k - first] for bins first <= k < first + bins
    long first, bins;
    double width;          // 0 until a non-zero value arrives
    double pending_zeros;  // values seen while width was 0 (all of them exactly 0)
    double total;
    int absolute;          // bins over |x| (entropy) instead of x (MSE)
} calib_hist;

// Makes the histogram cover [vmin, vmax] (for absolute histograms vmin = 0, vmax = max|x|): the first
// non-zero range sets the width to range/2048 with 0 on a bin edge; later ranges add bins of the same
// width, merging pairs past QFT_CALIB_MAX_BINS. Only QFT_ERR_OOM can fail.
qft_status calib_hist_cover(calib_hist *h, float vmin, float vmax, qft_error *err);

// Adds n values (already covered by calib_hist_cover).
void calib_hist_add(calib_hist *h, const float *x, size_t n);

void calib_hist_free(calib_hist *h);

// MSE search (calib.h): the range for fmt given the data's min / max.
void calib_hist_mse_range(const calib_hist *h, const qft_quant_format *fmt, float data_min, float data_max, float *lo,
                          float *hi);

// Entropy search on an absolute histogram: amax for `levels` quantization levels. scratch holds
// 4 * (h->bins + 1) doubles. 0 when no non-zero value was seen.
double calib_hist_entropy_amax(const calib_hist *h, int levels, double *scratch);

#endif
