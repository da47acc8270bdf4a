// AdamW over a model's parameter table, with global grad-norm clipping and warmup + cosine/linear
// learning-rate schedules. Moments live in backend memory beside the parameters.
#ifndef QFT_TRAIN_OPTIMIZER_H
#define QFT_TRAIN_OPTIMIZER_H

#include "../core/status.h"
#include "../io/config.h"
#include "../model/model.h"

typedef struct {
    float *m, *v;     // backend memory, one float per parameter
    float *qm, *qv;   // moments of the quantizer parameters (model->quant.params), when there are any
    size_t quant_floats;
    float quant_lr;   // quant.scale_lr (0 = follow train.lr)
    long quant_freeze_after;  // quant.freeze_after: no quantizer update once step >= this (0 = never)
    long step;        // optimizer steps taken (bias correction uses step + 1 for the next update)
    qft_train_config hp;
    long total_steps;
} qft_optimizer;

// Call after qft_model_quant_configure: learnable quantizer parameters get their own moments and
// learning rate (quant_lr > 0: that peak rate on the same schedule; 0: train.lr), no weight decay and
// no clipping (they are not part of the gradient norm). After quant_freeze_after steps (0 = never) they
// are frozen: no update, moments kept as they were (issue 6's "freeze quantizer ranges").
qft_status qft_optimizer_create(qft_optimizer *opt, const qft_model *model, const qft_train_config *hp,
                                long total_steps, float quant_lr, long quant_freeze_after, qft_error *err);
void qft_optimizer_free(qft_optimizer *opt, const qft_model *model);

// Learning rate for the update that follows `step` optimizer steps (linear warmup from 0, then
// cosine or linear decay to lr * min_lr_ratio at total_steps, or constant).
float qft_schedule_lr(const qft_train_config *hp, long step, long total_steps);

// Clips the gradients to train.grad_clip (global L2 norm), applies AdamW (parameters, then learnable
// quantizer parameters unless frozen, whose scales are kept >= QFT_QUANT_MIN_SCALE), advances the step.
// Returns the gradient norm before clipping.
float qft_optimizer_step(qft_optimizer *opt, qft_model *model);

#endif
