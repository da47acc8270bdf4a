// Quantization commands beside training: `qft quant-sites` (which rule each site matched),
// `qft calibrate` (observe batches, set every enabled site's range, save the calibration state).
#ifndef QFT_TRAIN_QUANT_TOOLS_H
#define QFT_TRAIN_QUANT_TOOLS_H

#include <stdio.h>

#include "../core/status.h"
#include "../data/dataset.h"
#include "../io/config.h"
#include "../model/model.h"

typedef struct {
    int sites, enabled;
} qft_quant_sites_summary;

// Lists every quant site of the configured model with its role, shape and matching rule on `out`.
qft_status qft_quant_sites(const qft_config *cfg, FILE *out, qft_quant_sites_summary *summary, qft_error *err);

typedef struct {
    int sites;                // sites calibrated
    int batches;              // calibration batches observed
    long examples;
    double seconds;
    char path[2200];          // the calibration file written
} qft_calibrate_summary;

// `qft calibrate`: loads the weights (eval.checkpoint, the newest checkpoint or model.init_from),
// runs quant.calib_batches training batches (in order, evaluation mode) through the model with every
// enabled site observing its tensor, sets each site's range with its calibrator and writes
// <run>/calibration.safetensors.
qft_status qft_calibrate(const qft_config *cfg, qft_calibrate_summary *out, qft_error *err);

// Calibrates every enabled site of `model` (rules already applied) on up to max_batches batches of
// `ds` (in order; imagefolder: the loader's epoch 0), restoring the model's quant mode afterwards.
// Adds batches, examples and sites to *out.
qft_status qft_calibrate_model(qft_model *model, qft_dataset *ds, qft_batch_buffer *buf, int batch_size,
                               int max_batches, qft_calibrate_summary *out, qft_error *err);

// Supplies calibration batch `index` (0, 1, ... in order): fills *batch (host memory that stays valid
// until the next call) and sets *rows to its rows; *rows = 0 ends the calibration set early.
typedef qft_status (*qft_calib_batch_fn)(void *ctx, int index, qft_batch *batch, int *rows, qft_error *err);

// The same as qft_calibrate_model on batches from a caller-supplied iterator (up to max_batches, fewer
// when it ends first; at least one). An error from `next` stops the calibration and is returned.
qft_status qft_calibrate_model_batches(qft_model *model, qft_calib_batch_fn next, void *ctx, int max_batches,
                                       qft_calibrate_summary *out, qft_error *err);

// The calibration file commands read: quant.calibration, else <run>/calibration.safetensors.
void qft_calibration_path(const qft_config *cfg, char *path, size_t size);

// Writes <run_dir>/calibration.safetensors (path into out->path); `weights` is recorded as metadata.
qft_status qft_calibration_save(const qft_model *model, const char *run_dir, const char *weights,
                                qft_calibrate_summary *out, qft_error *err);

// For evaluation with fake quantization: applies quant.rules to the model and, when a site is
// enabled, loads the quantizer state from the weights file (a quantization-aware checkpoint), else
// from the calibration (quant.calibration, else <run>/calibration.safetensors), and turns
// quantization on: *quantized = 1. No rules (or none enabled): the model stays FP.
qft_status qft_quant_prepare_eval(qft_model *m, const qft_config *cfg, const char *weights, int *quantized,
                                  qft_error *err);

#endif
