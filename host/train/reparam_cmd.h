// `qft reparam`: folds the calibrated per-channel LayerNorm-output quantizers of a ViT/DeiT into
// per-tensor ones (host/method/reparam.h) and writes the folded model, its calibration and a config
// that evaluates it.
#ifndef QFT_TRAIN_REPARAM_CMD_H
#define QFT_TRAIN_REPARAM_CMD_H

#include "../core/status.h"
#include "../io/config.h"
#include "../method/reparam.h"

typedef struct {
    qft_reparam_summary fold;
    char dir[1200];          // <run>/reparam
    char eval_config[1300];  // <run>/reparam/eval.yaml: --config it after the run's config to evaluate
} qft_reparam_cmd_summary;

qft_status qft_reparam_command(const qft_config *cfg, qft_reparam_cmd_summary *out, qft_error *err);

#endif
