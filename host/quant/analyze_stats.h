// Per-site activation statistics for `qft analyze` (docs/analyze.md): a streaming accumulator over
// batches of activations [rows, C] with bounded memory, and the summary it reports.
#ifndef QFT_QUANT_ANALYZE_STATS_H
#define QFT_QUANT_ANALYZE_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

// The percentiles every summary reports, in percent.
#define QFT_ANALYZE_PERCENTILE_COUNT 7
extern const double qft_analyze_percentiles[QFT_ANALYZE_PERCENTILE_COUNT];  // 0.01 0.1 1 50 99 99.9 99.99

// Magnitude histogram: |x| in [2^EXP_MIN, 2^EXP_MAX) is binned by its binary exponent and the top
// SUB_BITS bits of its mantissa, so every bin is at most 2^-SUB_BITS of its lower edge wide (a
// relative resolution of 0.78% at any scale, with no range fixed in advance). |x| below 2^EXP_MIN
// falls in one zero bin; |x| at or above 2^EXP_MAX in the top bin of its sign.
#define QFT_ANALYZE_HIST_EXP_MIN (-32)
#define QFT_ANALYZE_HIST_EXP_MAX 32
#define QFT_ANALYZE_HIST_SUB_BITS 7
#define QFT_ANALYZE_HIST_HALF \
    ((size_t)(QFT_ANALYZE_HIST_EXP_MAX - QFT_ANALYZE_HIST_EXP_MIN) << QFT_ANALYZE_HIST_SUB_BITS)
// Bin layout: [0, HALF) negative values (most negative first), HALF the zero bin, then positives.
#define QFT_ANALYZE_HIST_BINS (2 * QFT_ANALYZE_HIST_HALF + 1)

// One of the largest-|x| rows seen so far.
typedef struct {
    uint64_t batch;      // 0-based index of the update call that brought it
    size_t row;          // row within that batch
    size_t position;     // row % seq_len (the token position); row when seq_len is 0
    double absmax;       // max |x| over the row's C channels
} qft_analyze_token;

// One outlier channel.
typedef struct {
    size_t channel;
    double absmax;             // max |x| over every row seen
    double ratio_to_median;    // absmax / median over channels of the per-channel absmax (inf if that is 0)
} qft_analyze_channel;

typedef struct {
    size_t channels;           // C
    size_t seq_len;            // rows per sequence, for token positions (0: none)
    size_t top_tokens;         // how many rows top[] keeps
    uint64_t batches;
    uint64_t count;            // finite values seen
    uint64_t nonfinite;        // NaN/inf values, excluded from every statistic
    double min, max;
    double mean, m2, m3, m4;   // running central moments (sums of powers of deviations), merged per batch
    uint64_t beyond_sigma[2];  // values with |x - mu_b| > k sigma_b, k = 3 and 6, mu_b/sigma_b of their batch
    double *channel_absmax;    // [channels]
    qft_analyze_token *top;    // [top_tokens], largest absmax first; top_count of them are filled
    size_t top_count;
    uint64_t *hist;            // [QFT_ANALYZE_HIST_BINS]
} qft_analyze_stats;

typedef struct {
    uint64_t count, nonfinite, batches;
    double min, max, mean;
    double std;                // population standard deviation
    double skewness;           // mean(((x-mu)/sigma)^3); NaN when sigma = 0
    double kurtosis;           // mean(((x-mu)/sigma)^4) (3 for a Gaussian, 1.8 for a uniform); NaN when sigma = 0
    double absmax;
    double percentile[QFT_ANALYZE_PERCENTILE_COUNT];  // at qft_analyze_percentiles, from the histogram
    double frac_beyond_3sigma; // share of values more than 3 (6) sigma from the mean of their batch
    double frac_beyond_6sigma;
} qft_analyze_summary;

// channels >= 1; seq_len 0 when rows are not token sequences; top_tokens may be 0.
qft_status qft_analyze_stats_init(qft_analyze_stats *s, size_t channels, size_t seq_len, size_t top_tokens,
                                  qft_error *err);
void qft_analyze_stats_free(qft_analyze_stats *s);

// Adds one batch x [rows, channels] (row-major). Non-finite values are counted and skipped.
qft_status qft_analyze_stats_update(qft_analyze_stats *s, const float *x, size_t rows, qft_error *err);

// Fails (QFT_ERR_INVALID, naming `site`) when no finite value has been seen.
qft_status qft_analyze_stats_summary(const qft_analyze_stats *s, const char *site, qft_analyze_summary *out,
                                     qft_error *err);

// The p-th percentile (p in [0, 100]) estimated from the histogram: the value at rank p/100 * (count-1)
// (torch.quantile's position), interpolated linearly inside its bin and clamped to [min, max]. Its
// error is at most one bin width (0.78% of |value|) plus the gap between the two order statistics
// around that rank. NaN when empty.
double qft_analyze_stats_percentile(const qft_analyze_stats *s, double p);

// The n channels with the largest absmax, largest first (a tie keeps the lower index); *written = min(n, C).
qft_status qft_analyze_stats_top_channels(const qft_analyze_stats *s, size_t n, qft_analyze_channel *out,
                                          size_t *written, qft_error *err);

// Edges of histogram bin b: values v in the bin satisfy lo <= v < hi (the zero bin is
// [-2^EXP_MIN, 2^EXP_MIN)); the outermost bins end at +-inf.
void qft_analyze_hist_bin_edges(size_t b, double *lo, double *hi);

// Redistributes the histogram into `bins` equal-width bins over [lo, hi] (lo < hi; the last bin
// includes hi), assuming a uniform density inside each magnitude bin (clipped to [min, max]);
// counts outside [lo, hi] are dropped. For plots: the counts are fractional.
qft_status qft_analyze_stats_linear_histogram(const qft_analyze_stats *s, double lo, double hi, size_t bins,
                                              double *counts, qft_error *err);

#endif
