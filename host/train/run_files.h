// Where a run keeps its files and which weights a command reads: shared by train, eval, predict,
// calibrate and analyze so every command resolves paths the same way.
#ifndef QFT_TRAIN_RUN_FILES_H
#define QFT_TRAIN_RUN_FILES_H

#include <stddef.h>

#include "../core/status.h"
#include "../io/config.h"

// <run.dir>/<run.name>
void qft_run_dir(const qft_config *cfg, char *dir, size_t size);

// mkdir -p.
qft_status qft_make_dirs(const char *path, qft_error *err);

// run.threads > 0: the OpenMP thread count.
void qft_apply_threads(const qft_config *cfg);

// The checkpoint `qft eval` and `qft predict` use: eval.checkpoint, else the run's newest.
qft_status qft_eval_checkpoint_path(const qft_config *cfg, char *path, size_t size, qft_error *err);

// The weights a post-training command (calibrate, analyze) reads: eval.checkpoint, else the run's
// newest checkpoint, else model.init_from (e.g. a pretrained model never fine-tuned here).
qft_status qft_model_weights_path(const qft_config *cfg, char *path, size_t size, qft_error *err);

#endif
