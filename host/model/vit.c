// ViT and DeiT specifics: Hugging Face parameter names, patch embedding + class/distillation
// tokens, the final LayerNorm and the classification head(s). The encoder stack lives in model.c.
#include <stdio.h>

#include "model_parts.h"

qft_status qft_vit_register_params(qft_model *m, qft_error *err) {
    const char *p = m->prefix;
    char name[QFT_PARAM_NAME_MAX];
    int64_t D = m->D, T = m->num_patches + m->n_prefix;
    int64_t P = m->patch_size, C = m->channels, L = m->num_labels;

    snprintf(name, sizeof name, "%sembeddings.cls_token", p);
    QFT_TRY(qft_model_add_param(m, name, 3, (int64_t[]){1, 1, D}, QFT_INIT_NORMAL, 0, err));
    if (m->kind == QFT_MODEL_DEIT) {
        snprintf(name, sizeof name, "%sembeddings.distillation_token", p);
        QFT_TRY(qft_model_add_param(m, name, 3, (int64_t[]){1, 1, D}, QFT_INIT_NORMAL, 0, err));
    }
    snprintf(name, sizeof name, "%sembeddings.position_embeddings", p);
    QFT_TRY(qft_model_add_param(m, name, 3, (int64_t[]){1, T, D}, QFT_INIT_NORMAL, 0, err));
    snprintf(name, sizeof name, "%sembeddings.patch_embeddings.projection.weight", p);
    QFT_TRY(qft_model_add_param(m, name, 4, (int64_t[]){D, C, P, P}, QFT_INIT_NORMAL, 0, err));
    snprintf(name, sizeof name, "%sembeddings.patch_embeddings.projection.bias", p);
    QFT_TRY(qft_model_add_param(m, name, 1, (int64_t[]){D}, QFT_INIT_ZEROS, 0, err));

    static const qft_layer_names names = {
        "attention.attention.query", "attention.attention.key", "attention.attention.value",
        "attention.output.dense", "layernorm_before", "intermediate.dense", "output.dense", "layernorm_after"};
    for (int l = 0; l < m->num_layers; l++) {
        snprintf(name, sizeof name, "%sencoder.layer.%d.", p, l);
        QFT_TRY(qft_register_layer(m, name, &names, err));
    }
    snprintf(name, sizeof name, "%slayernorm.weight", p);
    QFT_TRY(qft_model_add_param(m, name, 1, (int64_t[]){D}, QFT_INIT_ONES, 0, err));
    snprintf(name, sizeof name, "%slayernorm.bias", p);
    QFT_TRY(qft_model_add_param(m, name, 1, (int64_t[]){D}, QFT_INIT_ZEROS, 0, err));
    if (m->kind == QFT_MODEL_DEIT) {
        QFT_TRY(qft_model_add_param(m, "cls_classifier.weight", 2, (int64_t[]){L, D}, QFT_INIT_NORMAL, 1, err));
        QFT_TRY(qft_model_add_param(m, "cls_classifier.bias", 1, (int64_t[]){L}, QFT_INIT_ZEROS, 1, err));
        QFT_TRY(qft_model_add_param(m, "distillation_classifier.weight", 2, (int64_t[]){L, D}, QFT_INIT_NORMAL, 1, err));
        QFT_TRY(qft_model_add_param(m, "distillation_classifier.bias", 1, (int64_t[]){L}, QFT_INIT_ZEROS, 1, err));
    } else {
        QFT_TRY(qft_model_add_param(m, "classifier.weight", 2, (int64_t[]){L, D}, QFT_INIT_NORMAL, 1, err));
        QFT_TRY(qft_model_add_param(m, "classifier.bias", 1, (int64_t[]){L}, QFT_INIT_ZEROS, 1, err));
    }
    return QFT_OK;
}

// Registration order is fixed above, so binding walks the table in the same order.
void qft_vit_bind_weights(qft_model *m, float *base, qft_model_weights *w) {
    const qft_param *it = m->table.items;
    w->cls = base + (it++)->offset;
    w->dist = m->kind == QFT_MODEL_DEIT ? base + (it++)->offset : NULL;
    w->pos = base + (it++)->offset;
    w->patch_w = base + (it++)->offset;
    w->patch_b = base + (it++)->offset;
    for (int l = 0; l < m->num_layers; l++) qft_bind_layer(&it, base, &w->layers[l]);
    w->final_ln_w = base + (it++)->offset;
    w->final_ln_b = base + (it++)->offset;
    w->head_w = base + (it++)->offset;
    w->head_b = base + (it++)->offset;
    if (m->kind == QFT_MODEL_DEIT) {
        w->head2_w = base + (it++)->offset;
        w->head2_b = base + (it++)->offset;
    }
}

void qft_vit_embed_forward(qft_model *m, int training, uint64_t seed, uint64_t step) {
    const qft_backend *be = m->be;
    int B = m->cur_B, NP = m->num_patches, CPP = m->channels * m->patch_size * m->patch_size;
    be->patchify_forward(m->acts.patches, m->dev_images, B, m->channels, m->image_size, m->image_size,
                         m->patch_size);
    qft_qlinear_forward(be, &m->quant, m->sites.patch_w, m->sites.patch_in, m->acts.patch_emb, m->acts.patches,
                        m->w.patch_w, m->w.patch_b, B * NP, CPP, m->D);
    be->vit_tokens_forward(m->acts.x0, m->acts.patch_emb, m->w.cls, m->w.dist, m->w.pos, B, NP, m->D);
    if (training && m->dropout > 0.0f)
        be->dropout_forward(m->acts.x0, m->acts.x0, (size_t)B * m->cur_T * m->D, m->dropout, seed,
                            qft_dropout_stream(step, QFT_SITE_EMBED));
    qft_site_output_forward(&m->quant, m->sites.embed_out, m->acts.x0, B * m->cur_T);
}

void qft_vit_embed_backward(qft_model *m, uint64_t seed, uint64_t step) {
    const qft_backend *be = m->be;
    int B = m->cur_B, NP = m->num_patches, CPP = m->channels * m->patch_size * m->patch_size;
    size_t n = (size_t)B * m->cur_T * m->D;
    qft_site_output_backward(&m->quant, m->sites.embed_out, m->gs.d_stream, B * m->cur_T);
    const float *d_x0 = qft_embed_dropout_backward(m, n, seed, step);
    be->zero(m->gs.d_patch_emb, (size_t)B * NP * m->D * sizeof(float));
    be->vit_tokens_backward(m->gs.d_patch_emb, m->g.cls, m->g.dist, m->g.pos, d_x0, B, NP, m->D);
    // No gradient to the pixels: the input gradient pointer is NULL.
    qft_qlinear_backward(be, &m->quant, m->sites.patch_w, m->sites.patch_in, NULL, m->g.patch_w, m->g.patch_b,
                         m->gs.d_patch_emb, m->acts.patches, m->w.patch_w, B * NP, CPP, m->D);
}

void qft_vit_head_forward(qft_model *m, const float *encoder_out) {
    const qft_backend *be = m->be;
    int B = m->cur_B, T = m->head_T, D = m->D, L = m->num_labels;
    qft_model_acts *a = &m->acts;
    qft_quant_state *q = &m->quant;
    be->layernorm_forward(a->final_ln, a->final_mean, a->final_rstd, encoder_out, m->w.final_ln_w,
                          m->w.final_ln_b, B * T, D, m->ln_eps);
    qft_site_output_forward(q, m->sites.final_ln, a->final_ln, B * T);
    be->select_tokens_forward(a->cls_rows, a->final_ln, B, T, D, 0, 1);
    if (m->kind != QFT_MODEL_DEIT) {
        qft_qlinear_forward(be, q, m->sites.head_w, m->sites.head_in, a->logits, a->cls_rows, m->w.head_w,
                            m->w.head_b, B, D, L);
        return;
    }
    // DeiT: logits = (cls_classifier(token 0) + distillation_classifier(token 1)) / 2, as HF's
    // DeiTForImageClassificationWithTeacher does at inference.
    be->select_tokens_forward(a->dist_rows, a->final_ln, B, T, D, 1, 1);
    qft_qlinear_forward(be, q, m->sites.head_w, m->sites.head_in, a->logits_sum, a->cls_rows, m->w.head_w,
                        m->w.head_b, B, D, L);
    qft_qlinear_forward(be, q, m->sites.head2_w, m->sites.head2_in, a->logits2, a->dist_rows, m->w.head2_w,
                        m->w.head2_b, B, D, L);
    be->add_forward(a->logits, a->logits_sum, a->logits2, (size_t)B * L);
    be->scale(a->logits, 0.5f, (size_t)B * L);
}

void qft_vit_head_backward(qft_model *m, const float *encoder_out) {
    const qft_backend *be = m->be;
    int B = m->cur_B, T = m->head_T, D = m->D, L = m->num_labels;
    qft_model_acts *a = &m->acts;
    qft_model_grad_scratch *s = &m->gs;
    qft_quant_state *q = &m->quant;
    be->zero(s->d_rows, (size_t)B * D * sizeof(float));
    if (m->kind != QFT_MODEL_DEIT) {
        qft_qlinear_backward(be, q, m->sites.head_w, m->sites.head_in, s->d_rows, m->g.head_w, m->g.head_b,
                             s->d_logits, a->cls_rows, m->w.head_w, B, D, L);
    } else {
        // Each head sees half of dL/dlogits.
        be->zero(s->d_logits2, (size_t)B * L * sizeof(float));
        be->add_backward(s->d_logits2, NULL, s->d_logits, (size_t)B * L);
        be->scale(s->d_logits2, 0.5f, (size_t)B * L);
        qft_qlinear_backward(be, q, m->sites.head_w, m->sites.head_in, s->d_rows, m->g.head_w, m->g.head_b,
                             s->d_logits2, a->cls_rows, m->w.head_w, B, D, L);
        be->zero(s->d_rows2, (size_t)B * D * sizeof(float));
        qft_qlinear_backward(be, q, m->sites.head2_w, m->sites.head2_in, s->d_rows2, m->g.head2_w, m->g.head2_b,
                             s->d_logits2, a->dist_rows, m->w.head2_w, B, D, L);
    }
    // d_final_ln lives in d_emb (free until the embedding backward), then LN backward into d_stream.
    float *d_final = s->d_emb;
    be->zero(d_final, (size_t)B * T * D * sizeof(float));
    be->select_tokens_backward(d_final, s->d_rows, B, T, D, 0, 1);
    if (m->kind == QFT_MODEL_DEIT) be->select_tokens_backward(d_final, s->d_rows2, B, T, D, 1, 1);
    qft_site_output_backward(q, m->sites.final_ln, d_final, B * T);
    be->layernorm_backward(s->d_stream, m->g.final_ln_w, m->g.final_ln_b, d_final, encoder_out, m->w.final_ln_w,
                           a->final_mean, a->final_rstd, B * T, D);
}
