// Quantization commands beside training: `qft quant-sites` (which rule each site matched),
// `qft calibrate` (observe batches, set every enabled site's range, save the calibration state).
#ifndef QFT_TRAIN_QUANT_TOOLS_H
#define QFT_TRAIN_QUANT_TOOLS_H

#include <stdio.h>

#include "../core/status.h"
#include "../io/config.h"

typedef struct {
    int sites, enabled;
} qft_quant_sites_summary;

// Lists every quant site of the configured model with its role, shape and matching rule on `out`.
qft_status qft_quant_sites(const qft_config *cfg, FILE *out, qft_quant_sites_summary *summary, qft_error *err);

#endif
