// The `qft analyze` report: a Markdown page plus, per plot, a CSV and (when gnuplot exists) a PNG,
// from per-site statistics and error decompositions (docs/analyze.md lists the files).
#ifndef QFT_QUANT_ANALYZE_REPORT_H
#define QFT_QUANT_ANALYZE_REPORT_H

#include <stddef.h>

#include "../core/status.h"
#include "analyze_error.h"
#include "analyze_stats.h"

// One quant site, in model order.
typedef struct {
    const char *name;
    const qft_analyze_stats *stats;
    const qft_analyze_error *errors;          // decompositions at one or more bit widths (error_count, may be 0)
    const qft_analyze_output_error *outputs;  // NULL, or one per errors[] entry when the site feeds a linear layer
    size_t error_count;
} qft_analyze_site;

typedef struct {
    const char *title;        // report heading; NULL: "qft analyze"
    size_t histogram_site;    // sites[] index of the histogram plot
    size_t histogram_error;   // which of its errors[] gives the quantization grid (ignored without errors)
    size_t top_channels;      // channels listed per site in the outlier table (0: no table; at most 16)
    const char *gnuplot;      // program run for the PNGs: a name looked up in PATH or an absolute path; NULL: "gnuplot"
} qft_analyze_report_options;

// Default options: histogram of site 0 with its first grid, 5 outlier channels, gnuplot from PATH.
qft_analyze_report_options qft_analyze_report_options_default(void);

// Writes into dir (created if missing): report.md, ranges.csv, histogram.csv, histogram_grid.csv,
// error_split_<b>bit.csv per bit width, plots.gp (the gnuplot script), and when gnuplot runs,
// gnuplot.log and ranges.png, histogram.png, error_split_<b>bit.png. A missing gnuplot is not an
// error, nor is a failing one: the report says the plots were skipped and why; *plotted (optional)
// is 1 when the PNGs were made. Fails only when a site has no values or a file cannot be written.
qft_status qft_analyze_report_write(const char *dir, const qft_analyze_site *sites, size_t count,
                                    const qft_analyze_report_options *options, int *plotted, qft_error *err);

#endif
