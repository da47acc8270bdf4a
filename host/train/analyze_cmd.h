// `qft analyze`: runs calibration batches through a model with every activation site observed,
// accumulates outlier statistics and the quantization-error decomposition per site, writes the report.
#ifndef QFT_TRAIN_ANALYZE_CMD_H
#define QFT_TRAIN_ANALYZE_CMD_H

#include <stdint.h>

#include "../core/status.h"
#include "../io/config.h"

// Bit widths every site is decomposed at; a site's own rule may add one more (e.g. 2 or 5).
#define QFT_ANALYZE_CMD_BITS {8, 6, 4}
#define QFT_ANALYZE_CMD_MAX_BITS 8

// The error split of one bit width over all analyzed sites.
typedef struct {
    int bits;
    int sites;                  // sites decomposed at this width
    // Overall shares: each part's squared error summed over every value of every site, divided by the
    // summed total squared error (element-weighted, so a site counts by its values and its error size).
    double share_clip, share_round_out, share_round_in0, share_amp;
    // share_amp over the sites of one role only: linear inputs, stream outputs (LayerNorm, residual,
    // embeddings), attention probabilities (NaN when the model has none at this width)
    double share_amp_input, share_amp_output, share_amp_probs;
    double median_share_amp;    // median over sites of the site's own amplification share
    char top_site[96];          // the site contributing the most range-amplification squared error
    double top_site_share_amp;  // that site's own amplification share
} qft_analyze_cmd_bits;

typedef struct {
    char weights[2200];         // the safetensors file analyzed
    char report[1200];          // <run dir>/report.md
    long batches, examples;
    int sites;                  // activation sites analyzed (roles input, output, probs)
    uint64_t values;            // finite values seen over all sites
    int plotted;                // the PNGs were drawn
    int bit_count;
    qft_analyze_cmd_bits bits[QFT_ANALYZE_CMD_MAX_BITS];  // widest first
} qft_analyze_cmd_summary;

// Loads the weights (eval.checkpoint, else the run's newest checkpoint, else model.init_from), runs
// quant.calib_batches batches of the training split in evaluation mode, and writes
// <run.dir>/<run.name>/report.md with its CSVs and plots (docs/analyze.md §6).
qft_status qft_analyze_run(const qft_config *cfg, qft_analyze_cmd_summary *out, qft_error *err);

#endif
