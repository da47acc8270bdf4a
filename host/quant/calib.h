// Calibrators: turn the values a quant site sees over a calibration set into a clipping range
// (lo, hi) per tensor or per channel, then into (scale, zero point) through format.h.
#ifndef QFT_QUANT_CALIB_H
#define QFT_QUANT_CALIB_H

#include <stddef.h>

#include "core/status.h"
#include "quant/format.h"

// Host-side, pure C on fp32 arrays: the model copies a site's tensor to the host and calls observe
// once per calibration batch, then finish. fmt->calibrator picks the algorithm (METHODS.md §5):
//
//   QFT_CALIB_MINMAX      running min and max over all batches (torch MinMaxObserver /
//                         PerChannelMinMaxObserver).
//   QFT_CALIB_EMA         first batch's min/max, then m <- m + c (m_batch - m), c = fmt->ema_momentum
//                         (Jacob et al. 2018; torch MovingAverage(PerChannel)MinMaxObserver with
//                         averaging_constant = c; FQ-ViT c = 0.01), in fp32 as torch.
//   QFT_CALIB_PERCENTILE  FQ-ViT's form: per batch the exact quantiles u = quantile(x, p/100) and
//                         l = quantile(x, 1 - p/100), p = fmt->percentile, with torch.quantile's linear
//                         interpolation (rank p/100 * (n-1) in fp32, as torch), then EMA over batches
//                         with c = fmt->ema_momentum (first batch initializes). Exact rather than a
//                         histogram because the quantile is then a published, testable number; memory
//                         stays bounded because only the top and bottom (1 - p/100) n + 2 values of a
//                         batch are kept (two heaps), never the batch, and state is 2 floats/channel.
//   QFT_CALIB_MSE         histogram MSE search [ours, after pytorch-quantization's histogram MSE and
//                         Bondarenko et al.'s grid]: a histogram of x (2048 bins at the first batch,
//                         bins added as the range grows), error = sum over bins of count x the mean of
//                         (Q(u) - u)^2 over the bin assuming values uniform inside it (torch
//                         HistogramObserver's assumption; exact rounding noise even where a bin spans
//                         several steps), Q the site's own quantizer. Candidates: symmetric formats
//                         amax_k = k/100 * max|x|, k = 1..100; asymmetric formats lo_a = a/100 * min,
//                         hi_b = b/100 * max on the same 100-point grids, searched by alternating
//                         (coordinate) passes from the full range until neither end moves. Then the
//                         same on a 1/2000 grid (about one bin) one coarse step either side of the
//                         choice. Ties keep the wider range.
//   QFT_CALIB_OMSE        FQ-ViT's OmseObserver: running min/max [l, u]; candidates
//                         [l, u] (1 - 0.01 i), i = 0..89, each through qft_quant_params_from_range; keep
//                         the least sum (x - Q(x))^2 on the last observed batch (evaluated exactly as
//                         each batch arrives, so no batch is kept). Per channel each channel picks its
//                         own i (FQ-ViT's channel-wise mode picks one i for all channels).
//   QFT_CALIB_ENTROPY     TensorRT / pytorch-quantization KL (METHODS.md §5 steps 1-4): 2048-bin
//                         histogram of |x| on [0, max|x|], bins of the same width added when a later
//                         batch exceeds the range; H[0] = H[1]; candidates i = 128..bins, KL(P || Q)
//                         with levels = 2^(b-1), or 2^b when the format is asymmetric and the data
//                         one-signed (pytorch-quantization's "unsigned"); last minimiser;
//                         amax = i * bin_width. Symmetric formats get (-amax, amax); asymmetric ones
//                         [ours] get (max(min, -amax), min(max, amax)).
//
// Histograms (MSE, entropy) hold at most QFT_CALIB_MAX_BINS bins: past that, neighbouring bins are
// merged in pairs (width doubles; exact, counts are never split), so memory stays bounded when the
// range grows by more than that factor. Counts are doubles (exact to 2^53 values).
//
// Layout: a batch is a row-major [rows, cols] array. channels = 1 is per tensor. For per channel
// (or per group), axis QFT_CALIB_AXIS_ROW splits the rows into `channels` consecutive blocks (weights
// [out, in]: channel = output row; per-group weights: pass [out*in/G, G]); QFT_CALIB_AXIS_COLUMN splits
// the columns (activations [tokens, C]: channel = column; contiguous channel groups: cols = channels * G).
// The chosen dimension must be a multiple of channels.

#define QFT_CALIB_HIST_BINS 2048
#define QFT_CALIB_MAX_BINS (8 * QFT_CALIB_HIST_BINS)
#define QFT_CALIB_MSE_GRID 100
#define QFT_CALIB_OMSE_CANDIDATES 90

typedef enum { QFT_CALIB_AXIS_ROW = 0, QFT_CALIB_AXIS_COLUMN = 1 } qft_calib_axis;

typedef struct qft_calibrator qft_calibrator;

// A calibrator for fmt (copied; fmt->calibrator is the algorithm) with `channels` independent ranges.
// name labels error messages (the site name; NULL = "calibrator"). Checks bits in 2..8, percentile in
// [50, 100] and ema_momentum in (0, 1] where they are used.
qft_status qft_calibrator_create(const qft_quant_format *fmt, int channels, const char *name,
                                 qft_calibrator **out, qft_error *err);

// One calibration batch. A NaN or Inf anywhere fails the call (QFT_ERR_INVALID, naming its position)
// and leaves the calibrator as it was; a shape that does not split into `channels` is QFT_ERR_SHAPE.
qft_status qft_calibrator_observe(qft_calibrator *c, const float *x, size_t rows, size_t cols, qft_calib_axis axis,
                                  qft_error *err);

// Per channel: the chosen range (lo, hi) and its scale / zero point (qft_quant_params_from_range; the
// uniform grid of METHODS.md §1). Any output may be NULL; each non-NULL one has `channels` entries.
// Does not change the calibrator: more batches may follow and finish be called again.
// Fails if no batch was observed.
qft_status qft_calibrator_finish(const qft_calibrator *c, float *scale, float *zero_point, float *lo, float *hi,
                                 qft_error *err);

int qft_calibrator_channels(const qft_calibrator *c);
long qft_calibrator_batches(const qft_calibrator *c);
void qft_calibrator_free(qft_calibrator *c);

// The histogram an MSE or entropy calibrator holds for one channel (for reports and plots). Bin k,
// first_bin <= k < first_bin + bins, counts the values v with k*bin_width <= v < (k+1)*bin_width
// (v = |x| for entropy, x for MSE; the top bin also holds its upper edge). bins = 0 while every value
// seen was 0. total = all values observed. Valid until the next observe or free.
typedef struct {
    const double *counts;
    long first_bin;
    long bins;
    double bin_width;
    double total;
} qft_calib_histogram;

qft_status qft_calibrator_histogram(const qft_calibrator *c, int channel, qft_calib_histogram *out, qft_error *err);

// The range `kind` gives on one array as a single per-tensor batch (fmt supplies bits, grid,
// percentile, momentum; its calibrator field is ignored). Used by the outlier analysis.
qft_status qft_calib_range(qft_calibrator_kind kind, const qft_quant_format *fmt, const float *x, size_t n, float *lo,
                           float *hi, qft_error *err);

#endif
