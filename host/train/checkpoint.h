// Training checkpoints: parameters (HF names, so a checkpoint is also a loadable model), AdamW
// moments and the step, in one safetensors file written atomically. The step alone fixes the data
// position and the dropout streams, so resuming from it is bit-exact.
#ifndef QFT_TRAIN_CHECKPOINT_H
#define QFT_TRAIN_CHECKPOINT_H

#include "../core/status.h"
#include "../io/safetensors.h"
#include "../model/model.h"
#include "optimizer.h"

// Quantization-aware checkpoints also hold the quantizer state under this prefix (host/quant/quant_io.h).
#define QFT_CHECKPOINT_QUANT_PREFIX "qft.quant."

// <run_dir>/checkpoints/step_<8 digits>.safetensors; keeps the newest `keep` files.
// Records opt->total_steps too, so a resume with a different schedule length can be flagged.
// extra (may be NULL): method state to store beside them (e.g. the oscillation tracker), read back by
// the method from the checkpoint file after qft_checkpoint_load.
qft_status qft_checkpoint_save(const char *run_dir, const qft_model *model, const qft_optimizer *opt,
                               unsigned long seed, int keep, const qft_write_tensor *extra, int extra_count,
                               char *written_path, size_t path_size, qft_error *err);

// Loads parameters, moments and step from path. opt may be NULL (evaluation). *saved_total_steps
// (may be NULL) receives the schedule length recorded at save time, or -1 if absent.
qft_status qft_checkpoint_load(const char *path, qft_model *model, qft_optimizer *opt, long *saved_total_steps,
                               qft_error *err);

// Deletes every step checkpoint of the run (a fresh start must not leave older steps that a later
// `resume: auto` would pick up); returns how many were removed.
int qft_checkpoint_remove_all(const char *run_dir);

// Finds the newest checkpoint in <run_dir>/checkpoints; returns 1 and fills path, or 0 if none.
int qft_checkpoint_latest(const char *run_dir, char *path, size_t path_size);

#endif
