// Knowledge distillation driver: the frozen teacher buffer, the teacher forward with the model's
// parameter views swapped to it, and the KL / MSE terms with their gradients (METHODS.md §9).
#include "kd.h"

#include <string.h>

// Backward hook: d(alpha * T^2 * mean_i KL_i)/dz_s = alpha * T * (p_s - p_t) / B (Hinton et al. 2015);
// a regression head: d(alpha * mean (z_s - z_t)^2)/dz_s.
static void kd_logits_grad(void *ctx, const qft_model *m, float *d_logits, float loss_scale) {
    qft_kd *kd = ctx;
    int B = m->cur_B, L = m->num_labels;
    if (kd->alpha == 0.0f) return;  // monitoring only: the gradient is the task loss's alone
    if (L == 1)
        m->be->mse_backward(d_logits, m->acts.logits, kd->teacher_logits, (size_t)B, loss_scale * kd->alpha);
    else
        m->be->kd_kl_backward(d_logits, kd->p_student, kd->p_teacher, B, L,
                              loss_scale * kd->alpha * kd->temperature / (float)B);
}

static void kd_hidden_grad(void *ctx, const qft_model *m, float *d_hidden, float loss_scale) {
    qft_kd *kd = ctx;
    size_t n = (size_t)m->cur_B * m->head_T * m->D;
    m->be->mse_backward(d_hidden, qft_model_encoder_output(m), kd->teacher_hidden, n, loss_scale * kd->hidden_weight);
}

qft_status qft_kd_init(qft_kd *kd, qft_model *m, const qft_kd_config *cfg, const char *init_from,
                       int ignore_mismatched_sizes, FILE *log, qft_error *err) {
    memset(kd, 0, sizeof *kd);
    const char *path = cfg->teacher[0] ? cfg->teacher : init_from;
    if (!path || !path[0])
        return qft_fail(err, QFT_ERR_INVALID, "kd.enabled: no teacher: set kd.teacher or model.init_from");
    const qft_backend *be = m->be;
    kd->model = m;
    kd->alpha = (float)cfg->alpha;
    kd->temperature = (float)cfg->temperature;
    kd->hidden_weight = (float)cfg->hidden_weight;
    size_t param_bytes = m->table.total_floats * sizeof(float);
    size_t bl = (size_t)m->max_B * m->num_labels * sizeof(float);
    kd->teacher_params = be->alloc(param_bytes);
    kd->teacher_logits = be->alloc(bl);
    kd->p_student = be->alloc(bl);
    kd->p_teacher = be->alloc(bl);
    kd->row_losses = be->alloc((size_t)m->max_B * sizeof(float));
    if (kd->hidden_weight > 0.0f)
        kd->teacher_hidden = be->alloc((size_t)m->max_B * m->max_T * m->D * sizeof(float));
    if (!kd->teacher_params || !kd->teacher_logits || !kd->p_student || !kd->p_teacher || !kd->row_losses ||
        (kd->hidden_weight > 0.0f && !kd->teacher_hidden)) {
        qft_kd_free(kd);
        return qft_fail(err, QFT_ERR_OOM, "kd: out of memory for the teacher (%zu MB)", param_bytes >> 20);
    }
    be->copy(kd->teacher_params, m->params, param_bytes);
    qft_status st = qft_model_import_into(m, kd->teacher_params, path, ignore_mismatched_sizes, log, NULL, err);
    if (st != QFT_OK) {
        qft_kd_free(kd);
        return st;
    }
    // The hidden-state term covers every token, as HF's last_hidden_state does.
    if (kd->hidden_weight > 0.0f) m->prune_last_layer = 0;
    kd->hook = (qft_output_loss){1.0f - kd->alpha, kd, kd_logits_grad,
                                 kd->hidden_weight > 0.0f ? kd_hidden_grad : NULL};
    m->output_loss = &kd->hook;
    return QFT_OK;
}

void qft_kd_free(qft_kd *kd) {
    if (kd->model) {
        const qft_backend *be = kd->model->be;
        float *buffers[] = {kd->teacher_params, kd->teacher_logits, kd->teacher_hidden, kd->p_student, kd->p_teacher,
                            kd->row_losses};
        for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++)
            if (buffers[i]) be->release(buffers[i]);
        if (kd->model->output_loss == &kd->hook) kd->model->output_loss = NULL;
    }
    memset(kd, 0, sizeof *kd);
}

void qft_kd_teacher_forward(qft_kd *kd) {
    qft_model *m = kd->model;
    qft_model_forward_with_params(m, kd->teacher_params);
    m->be->copy(kd->teacher_logits, m->acts.logits, (size_t)m->cur_B * m->num_labels * sizeof(float));
    if (kd->teacher_hidden)
        m->be->copy(kd->teacher_hidden, qft_model_encoder_output(m),
                    (size_t)m->cur_B * m->head_T * m->D * sizeof(float));
}

double qft_kd_loss(qft_kd *kd) {
    qft_model *m = kd->model;
    const qft_backend *be = m->be;
    int B = m->cur_B, L = m->num_labels;
    if (L == 1) {
        kd->logit_loss = be->mse_forward(m->acts.logits, kd->teacher_logits, (size_t)B);
    } else {
        be->kd_kl_forward(kd->row_losses, kd->p_student, kd->p_teacher, m->acts.logits, kd->teacher_logits, B, L,
                          kd->temperature);
        float host[B];
        be->copy_to_host(host, kd->row_losses, (size_t)B * sizeof(float));
        double sum = 0.0;
        for (int i = 0; i < B; i++) sum += host[i];
        double t = kd->temperature;
        kd->logit_loss = t * t * sum / B;
    }
    kd->hidden_loss = kd->teacher_hidden
                          ? be->mse_forward(qft_model_encoder_output(m), kd->teacher_hidden,
                                            (size_t)B * m->head_T * m->D)
                          : 0.0;
    return (double)kd->alpha * kd->logit_loss + (double)kd->hidden_weight * kd->hidden_loss;
}
