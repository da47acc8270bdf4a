// Turns the config's penalty and noise sections into site hooks on a model's quant state and drives
// them per training micro-batch (step, seed, annealing, training flag).
#include "methods.h"

#include <string.h>

#include "noise_probs.h"

static void hook_observe(void *ctx, qft_quant_state *st, int site, const float *x, int rows) {
    qft_penalty_observe(&((qft_methods *)ctx)->penalty, st, site, x, rows);
}

static int hook_quantize(void *ctx, qft_quant_state *st, int site, float *out, const float *x, int rows,
                         size_t *nonfinite) {
    return qft_noise_quantize(&((qft_methods *)ctx)->noise, st, site, out, x, rows, nonfinite);
}

static void hook_backward(void *ctx, qft_quant_state *st, int site, float *dx, int rows) {
    qft_penalty_backward(&((qft_methods *)ctx)->penalty, st, site, dx, rows);
}

static int hook_probs_noise(void *ctx, qft_quant_state *st, int site, const qft_prob_quant *pq,
                            qft_quant_noise *noise) {
    return qft_noise_probs(&((qft_methods *)ctx)->noise, st, site, pq, noise);
}

static int hook_probs_measure(void *ctx, qft_quant_state *st, int site, const qft_prob_quant *pq, const float *probs,
                              int rows, int T) {
    return qft_noise_probs_measure(&((qft_methods *)ctx)->noise, st, site, pq, probs, rows, T);
}

qft_status qft_methods_init(qft_methods *methods, const qft_config *cfg, qft_model *model, qft_error *err) {
    memset(methods, 0, sizeof *methods);
    methods->model = model;
    qft_status status = qft_penalty_init(&methods->penalty, &cfg->penalty, &model->quant, err);
    if (status == QFT_OK) status = qft_noise_init(&methods->noise, &cfg->noise, &model->quant, err);
    if (status != QFT_OK) return status;
    if (!methods->penalty.enabled && !methods->noise.enabled) return QFT_OK;
    // The pruned last ViT layer (model->prune_last_layer) stays pruned: its sites after the attention see
    // the CLS rows, the only rows the model computes and quantizes there, so those are the ones penalized.
    methods->hooks = (qft_site_hooks){methods, hook_observe, hook_quantize, hook_backward, hook_probs_noise,
                                      hook_probs_measure};
    model->quant.hooks = &methods->hooks;
    return QFT_OK;
}

void qft_methods_free(qft_methods *methods) {
    if (methods->model && methods->model->quant.hooks == &methods->hooks) methods->model->quant.hooks = NULL;
    qft_penalty_free(&methods->penalty);
    qft_noise_free(&methods->noise);
}

void qft_methods_begin_micro(qft_methods *methods, long step, long total, int micro, uint64_t seed, uint64_t k,
                             float backward_scale) {
    if (methods->penalty.enabled) {
        qft_penalty_set_step(&methods->penalty, step);
        methods->penalty.backward_scale = backward_scale;
        methods->penalty.training = 1;
    }
    if (methods->noise.enabled) {
        qft_noise_set_step(&methods->noise, step, total);
        methods->noise.adapt_now &= micro == 0;  // one measurement per adapting optimizer step
        methods->noise.seed = seed;
        methods->noise.step = k;
        methods->noise.training = 1;
    }
}

void qft_methods_end_micro(qft_methods *methods) {
    methods->penalty.training = 0;
    methods->noise.training = 0;
}

void qft_methods_take_penalty(qft_methods *methods, double *weighted, double *raw) {
    *raw = methods->penalty.loss;
    *weighted = methods->penalty.lambda_now * methods->penalty.loss;
    methods->penalty.loss = 0.0;
}
