// The fine-tuning methods a training run turns on (outlier penalty, adaptive noise), attached to the model's
// quant sites as one set of hooks, and what the trainer tells them per step.
#ifndef QFT_METHOD_METHODS_H
#define QFT_METHOD_METHODS_H

#include <stdint.h>

#include "../core/status.h"
#include "../io/config.h"
#include "../model/model.h"
#include "noise.h"
#include "penalty.h"

typedef struct {
    qft_penalty penalty;
    qft_noise noise;
    qft_site_hooks hooks;
    qft_model *model;
} qft_methods;

// Reads the penalty and noise sections and attaches the hooks to model->quant (after
// qft_model_quant_configure). The pruned last ViT layer stays pruned: a penalty there sees the rows the
// model computes (the CLS rows after its attention). `methods` must outlive the model's use.
qft_status qft_methods_init(qft_methods *methods, const qft_config *cfg, qft_model *model, qft_error *err);
void qft_methods_free(qft_methods *methods);

// Before a training micro-batch: optimizer step `step` of `total`, micro-batch `micro` with global index k.
// `backward_scale` is the loss scale the model's backward gets (1 / grad_accum).
void qft_methods_begin_micro(qft_methods *methods, long step, long total, int micro, uint64_t seed, uint64_t k,
                             float backward_scale);
// After the micro-batch's backward: evaluations and calibrations in between see no method.
void qft_methods_end_micro(qft_methods *methods);

// lambda * L_out of the micro-batches since the last call, and L_out itself; both reset.
void qft_methods_take_penalty(qft_methods *methods, double *weighted, double *raw);

#endif
