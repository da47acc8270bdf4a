// Training checkpoints: parameters (HF names, so a checkpoint is also a loadable model), AdamW
// moments and the step, in one safetensors file written atomically. The step alone fixes the data
// position and the dropout streams, so resuming from it is bit-exact.
#ifndef QFT_TRAIN_CHECKPOINT_H
#define QFT_TRAIN_CHECKPOINT_H

#include "../core/status.h"
#include "../model/model.h"
#include "optimizer.h"

// <run_dir>/checkpoints/step_<8 digits>.safetensors; keeps the newest `keep` files.
qft_status qft_checkpoint_save(const char *run_dir, const qft_model *model, const qft_optimizer *opt,
                               unsigned long seed, int keep, char *written_path, size_t path_size, qft_error *err);

// Loads parameters, moments and step from path. opt may be NULL (evaluation).
qft_status qft_checkpoint_load(const char *path, qft_model *model, qft_optimizer *opt, qft_error *err);

// Finds the newest checkpoint in <run_dir>/checkpoints; returns 1 and fills path, or 0 if none.
int qft_checkpoint_latest(const char *run_dir, char *path, size_t path_size);

#endif
