// Quantization-error decomposition of METHODS.md §7 (docs/analyze.md): how much of a site's
// quantization MSE is clipping, rounding of outliers, rounding of inliers, and range amplification.
#ifndef QFT_QUANT_ANALYZE_ERROR_H
#define QFT_QUANT_ANALYZE_ERROR_H

#include <stddef.h>

#include "../core/status.h"
#include "format.h"

// A calibrator as the decomposition sees it: the range [*lo, *hi] it gives for x[0..n). It must be a
// pure function of (x, n, ctx): the decomposition calls it twice (all values, then inliers only) and
// compares the two. n may be 0 only if the function handles it; the decomposition never passes 0.
typedef void (*qft_analyze_range_fn)(const float *x, size_t n, void *ctx, float *lo, float *hi);

// Running min and max of x (ctx unused): the MinMax calibrator of METHODS.md §5 on one batch.
void qft_analyze_range_minmax(const float *x, size_t n, void *ctx, float *lo, float *hi);

#define QFT_ANALYZE_DEFAULT_K 6.0   // outliers are > 6 sigma from the mean (Bondarenko et al.)

typedef struct {
    int bits, qmin, qmax;
    double k;                       // outlier threshold in sigma
    size_t n;                       // N
    size_t outliers;                // |O|, O = {i : |x_i - mean| > k std}
    size_t clipped;                 // |C|, C = {i : the quantizer saturates x_i}
    size_t outliers_clipped;        // |O ∩ C|
    size_t inliers_unclipped;       // |I \ C|
    double mean, std;               // of x (population std), in double
    float lo, hi, scale, zero_point;       // the calibrator's range on all of x and the quantizer it gives
    float lo0, hi0, scale0, zero_point0;   // the same on the inliers alone (equal to the above when O is empty)
    double e_tot, e_clip, e_round_out, e_round_in0, e_amp;  // MSE parts; see docs/analyze.md
    double share_clip, share_round_out, share_round_in0, share_amp;  // part / e_tot (all 0 when e_tot = 0)
    double e_amp_uniform;           // uniform-noise prediction (|I\C|/N) (scale^2 - scale0^2) / 12
} qft_analyze_error;

// Decomposes the per-tensor quantization error of x[0..n) under format f (uniform, per tensor) with
// the calibrator `range` (f->enabled is not consulted). Checks that the four parts add up to e_tot
// (relative 1e-9; else QFT_ERR_INTERNAL). x must be finite; `site` names the tensor in errors.
qft_status qft_analyze_error_decompose(const float *x, size_t n, const qft_quant_format *f,
                                       qft_analyze_range_fn range, void *ctx, double k, const char *site,
                                       qft_analyze_error *out, qft_error *err);

// Output-side range amplification for a linear layer y = x W^T (W [out_features, in_features],
// Hugging Face layout, kept in fp32). With X = x viewed as [rows, in_features] and D = X_hat - X:
//   e_out             = mean over rows*out_features of (D W^T)^2            (X_hat as in `decomposition`)
//   e_out_inlier_step = the same with the unclipped inliers I\C quantized with the inlier-only step
//   e_out_amp         = e_out - e_out_inlier_step;  share_amp = e_out_amp / e_out (0 when e_out = 0)
typedef struct {
    double e_out, e_out_inlier_step, e_out_amp, share_amp;
} qft_analyze_output_error;

// `decomposition` must come from qft_analyze_error_decompose on the same x (n = rows * in_features).
qft_status qft_analyze_error_linear_output(const float *x, size_t rows, size_t in_features, const float *weight,
                                           size_t out_features, const qft_analyze_error *decomposition,
                                           const char *site, qft_analyze_output_error *out, qft_error *err);

#endif
