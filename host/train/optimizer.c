// AdamW update over the parameter table (decay per parameter: none on biases and LayerNorm),
// gradient clipping by global norm, and the learning-rate schedules.
#include "optimizer.h"

#include <math.h>
#include <string.h>

// Any learnable quantizer (LSQ / LSQ+) among the enabled sites?
static int has_learnable_sites(const qft_quant_state *q) {
    for (int i = 0; i < q->count; i++)
        if (q->sites[i].fmt.enabled && q->sites[i].fmt.learn != QFT_LEARN_NONE) return 1;
    return 0;
}

qft_status qft_optimizer_create(qft_optimizer *opt, const qft_model *model, const qft_train_config *hp,
                                long total_steps, float quant_lr, long quant_freeze_after, qft_error *err) {
    memset(opt, 0, sizeof *opt);
    size_t bytes = model->table.total_floats * sizeof(float);
    opt->m = model->be->alloc(bytes);
    opt->v = model->be->alloc(bytes);
    opt->quant_lr = quant_lr;
    opt->quant_freeze_after = quant_freeze_after;
    if (has_learnable_sites(&model->quant)) {
        opt->quant_floats = model->quant.param_floats;
        opt->qm = model->be->alloc(opt->quant_floats * sizeof(float));
        opt->qv = model->be->alloc(opt->quant_floats * sizeof(float));
    }
    if (!opt->m || !opt->v || (opt->quant_floats && (!opt->qm || !opt->qv))) {
        qft_optimizer_free(opt, model);
        return qft_fail(err, QFT_ERR_OOM, "out of memory for optimizer state (%zu MB)", 2 * bytes >> 20);
    }
    opt->hp = *hp;
    opt->total_steps = total_steps;
    return QFT_OK;
}

void qft_optimizer_free(qft_optimizer *opt, const qft_model *model) {
    if (opt->m) model->be->release(opt->m);
    if (opt->v) model->be->release(opt->v);
    if (opt->qm) model->be->release(opt->qm);
    if (opt->qv) model->be->release(opt->qv);
    opt->m = opt->v = opt->qm = opt->qv = NULL;
}

float qft_schedule_lr(const qft_train_config *hp, long step, long total_steps) {
    double lr = hp->lr, min_lr = hp->lr * hp->min_lr_ratio;
    if (hp->warmup_steps > 0 && step < hp->warmup_steps) return (float)(lr * (double)(step + 1) / hp->warmup_steps);
    if (strcmp(hp->schedule, "constant") == 0) return (float)lr;
    long decay_steps = total_steps - hp->warmup_steps;
    double progress = decay_steps > 0 ? (double)(step - hp->warmup_steps) / (double)decay_steps : 1.0;
    if (progress > 1.0) progress = 1.0;
    if (progress < 0.0) progress = 0.0;
    double factor = strcmp(hp->schedule, "linear") == 0 ? 1.0 - progress : 0.5 * (1.0 + cos(M_PI * progress));
    return (float)(min_lr + (lr - min_lr) * factor);
}

float qft_optimizer_step(qft_optimizer *opt, qft_model *model) {
    const qft_backend *be = model->be;
    size_t n = model->table.total_floats;
    float norm = (float)sqrt(be->sum_squares(model->grads, n));
    if (opt->hp.grad_clip > 0.0 && norm > opt->hp.grad_clip)
        be->scale(model->grads, (float)(opt->hp.grad_clip / (norm + 1e-6)), n);
    float lr = qft_schedule_lr(&opt->hp, opt->step, opt->total_steps);
    int step = (int)(opt->step + 1);
    for (int i = 0; i < model->table.count && !opt->hp.freeze_weights; i++) {
        const qft_param *p = &model->table.items[i];
        float decay = p->weight_decay ? (float)opt->hp.weight_decay : 0.0f;
        be->adamw_update(model->params + p->offset, model->grads + p->offset, opt->m + p->offset,
                         opt->v + p->offset, p->numel, lr, (float)opt->hp.beta1, (float)opt->hp.beta2,
                         (float)opt->hp.adam_eps, decay, step);
    }
    // Frozen ranges (NVIDIA's QAT recipe keeps calibrated ranges fixed, METHODS.md §15): the weights
    // go on adapting to a grid that no longer moves; the moments stay as they were.
    int quant_frozen = opt->quant_freeze_after > 0 && opt->step >= opt->quant_freeze_after;
    if (opt->quant_floats && !quant_frozen) {
        // Non-learnable entries have zero gradients and zero moments, so the update leaves them as is.
        float quant_lr = opt->quant_lr > 0.0f && opt->hp.lr > 0.0 ? lr * (float)(opt->quant_lr / opt->hp.lr) : lr;
        be->adamw_update(model->quant.params, model->quant.grads, opt->qm, opt->qv, opt->quant_floats, quant_lr,
                         (float)opt->hp.beta1, (float)opt->hp.beta2, (float)opt->hp.adam_eps, 0.0f, step);
        qft_quant_clamp_scales(&model->quant);
    }
    opt->step++;
    return norm;
}
