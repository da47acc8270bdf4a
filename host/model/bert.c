// BERT specifics: Hugging Face parameter names, token + position + segment embeddings with their
// LayerNorm, the tanh pooler on [CLS] and the classification / regression head.
#include <stdio.h>

#include "model_parts.h"

qft_status qft_bert_register_params(qft_model *m, qft_error *err) {
    const char *p = m->prefix;
    char name[QFT_PARAM_NAME_MAX];
    int64_t D = m->D, L = m->num_labels;

    snprintf(name, sizeof name, "%sembeddings.word_embeddings.weight", p);
    QFT_TRY(qft_model_add_param(m, name, 2, (int64_t[]){m->vocab_size, D}, QFT_INIT_NORMAL, 0, err));
    snprintf(name, sizeof name, "%sembeddings.position_embeddings.weight", p);
    QFT_TRY(qft_model_add_param(m, name, 2, (int64_t[]){m->max_positions, D}, QFT_INIT_NORMAL, 0, err));
    snprintf(name, sizeof name, "%sembeddings.token_type_embeddings.weight", p);
    QFT_TRY(qft_model_add_param(m, name, 2, (int64_t[]){m->type_vocab_size, D}, QFT_INIT_NORMAL, 0, err));
    snprintf(name, sizeof name, "%sembeddings.LayerNorm.weight", p);
    QFT_TRY(qft_model_add_param(m, name, 1, (int64_t[]){D}, QFT_INIT_ONES, 0, err));
    snprintf(name, sizeof name, "%sembeddings.LayerNorm.bias", p);
    QFT_TRY(qft_model_add_param(m, name, 1, (int64_t[]){D}, QFT_INIT_ZEROS, 0, err));

    static const qft_layer_names names = {
        "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
        "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"};
    for (int l = 0; l < m->num_layers; l++) {
        snprintf(name, sizeof name, "%sencoder.layer.%d.", p, l);
        QFT_TRY(qft_register_layer(m, name, &names, err));
    }
    if (m->use_pooler) {
        snprintf(name, sizeof name, "%spooler.dense.weight", p);
        QFT_TRY(qft_model_add_param(m, name, 2, (int64_t[]){D, D}, QFT_INIT_NORMAL, 1, err));
        snprintf(name, sizeof name, "%spooler.dense.bias", p);
        QFT_TRY(qft_model_add_param(m, name, 1, (int64_t[]){D}, QFT_INIT_ZEROS, 1, err));
    }
    QFT_TRY(qft_model_add_param(m, "classifier.weight", 2, (int64_t[]){L, D}, QFT_INIT_NORMAL, 1, err));
    QFT_TRY(qft_model_add_param(m, "classifier.bias", 1, (int64_t[]){L}, QFT_INIT_ZEROS, 1, err));
    return QFT_OK;
}

void qft_bert_bind_weights(qft_model *m, float *base, qft_model_weights *w) {
    const qft_param *it = m->table.items;
    w->word = base + (it++)->offset;
    w->position = base + (it++)->offset;
    w->token_type = base + (it++)->offset;
    w->emb_ln_w = base + (it++)->offset;
    w->emb_ln_b = base + (it++)->offset;
    for (int l = 0; l < m->num_layers; l++) qft_bind_layer(&it, base, &w->layers[l]);
    if (m->use_pooler) {
        w->pool_w = base + (it++)->offset;
        w->pool_b = base + (it++)->offset;
    }
    w->head_w = base + (it++)->offset;
    w->head_b = base + (it++)->offset;
}

void qft_bert_embed_forward(qft_model *m, int training, uint64_t seed, uint64_t step) {
    const qft_backend *be = m->be;
    int N = m->cur_B * m->cur_T, D = m->D;
    qft_model_acts *a = &m->acts;
    be->zero(a->emb_sum, (size_t)N * D * sizeof(float));
    be->embedding_forward(a->emb_sum, m->dev_ids, m->w.word, N, D);
    be->embedding_forward(a->emb_sum, m->dev_positions, m->w.position, N, D);
    be->embedding_forward(a->emb_sum, m->dev_types, m->w.token_type, N, D);
    be->layernorm_forward(a->x0, a->emb_mean, a->emb_rstd, a->emb_sum, m->w.emb_ln_w, m->w.emb_ln_b, N, D,
                          m->ln_eps);
    if (training && m->dropout > 0.0f)
        be->dropout_forward(a->x0, a->x0, (size_t)N * D, m->dropout, seed, qft_dropout_stream(step, QFT_SITE_EMBED));
    qft_site_output_forward(&m->quant, m->sites.embed_out, a->x0, N);
}

void qft_bert_embed_backward(qft_model *m, uint64_t seed, uint64_t step) {
    const qft_backend *be = m->be;
    int N = m->cur_B * m->cur_T, D = m->D;
    size_t n = (size_t)N * D;
    qft_site_output_backward(&m->quant, m->sites.embed_out, m->gs.d_stream, N);
    const float *d_x0 = qft_embed_dropout_backward(m, n, seed, step);
    // The LN input gradient goes to a free [N, D] buffer, then scatters into the three tables.
    float *d_sum = m->gs.layer.d_tmp;
    be->zero(d_sum, n * sizeof(float));
    be->layernorm_backward(d_sum, m->g.emb_ln_w, m->g.emb_ln_b, d_x0, m->acts.emb_sum, m->w.emb_ln_w,
                           m->acts.emb_mean, m->acts.emb_rstd, N, D);
    be->embedding_backward(m->g.word, d_sum, m->dev_ids, N, D);
    be->embedding_backward(m->g.position, d_sum, m->dev_positions, N, D);
    be->embedding_backward(m->g.token_type, d_sum, m->dev_types, N, D);
}

void qft_bert_head_forward(qft_model *m, const float *encoder_out, int training, uint64_t seed, uint64_t step) {
    const qft_backend *be = m->be;
    int B = m->cur_B, T = m->cur_T, D = m->D, L = m->num_labels;
    qft_model_acts *a = &m->acts;
    be->select_tokens_forward(a->cls_rows, encoder_out, B, T, D, 0, 1);
    const float *features = a->cls_rows;
    if (m->use_pooler) {
        qft_qlinear_forward(be, &m->quant, m->sites.pool_w, m->sites.pool_in, a->pooled_pre, a->cls_rows, m->w.pool_w,
                            m->w.pool_b, B, D, D);
        be->tanh_forward(a->pooled, a->pooled_pre, (size_t)B * D);
        features = a->pooled;
    }
    // HF applies classifier dropout to the pooled output; it is done in a copy so backward still
    // sees the tanh output it needs.
    if (training && m->dropout > 0.0f) {
        be->dropout_forward(a->dist_rows, features, (size_t)B * D, m->dropout, seed,
                            qft_dropout_stream(step, QFT_SITE_POOLER));
        features = a->dist_rows;
    }
    qft_qlinear_forward(be, &m->quant, m->sites.head_w, m->sites.head_in, a->logits, features, m->w.head_w,
                        m->w.head_b, B, D, L);
}

void qft_bert_head_backward(qft_model *m, const float *encoder_out, uint64_t seed, uint64_t step) {
    const qft_backend *be = m->be;
    int B = m->cur_B, T = m->cur_T, D = m->D, L = m->num_labels;
    qft_model_acts *a = &m->acts;
    qft_model_grad_scratch *s = &m->gs;
    size_t bd = (size_t)B * D;
    const float *features = m->use_pooler ? a->pooled : a->cls_rows;
    int dropped = m->dropout > 0.0f;
    float *d_features = s->d_pooled;
    be->zero(d_features, bd * sizeof(float));
    qft_qlinear_backward(be, &m->quant, m->sites.head_w, m->sites.head_in, d_features, m->g.head_w, m->g.head_b,
                         s->d_logits, dropped ? a->dist_rows : features, m->w.head_w, B, D, L);
    if (dropped) {
        be->zero(s->d_rows2, bd * sizeof(float));
        be->dropout_backward(s->d_rows2, d_features, bd, m->dropout, seed, qft_dropout_stream(step, QFT_SITE_POOLER));
        d_features = s->d_rows2;
    }
    be->zero(s->d_rows, bd * sizeof(float));
    if (m->use_pooler) {
        be->zero(s->d_pooled_pre, bd * sizeof(float));
        be->tanh_backward(s->d_pooled_pre, a->pooled, d_features, bd);
        qft_qlinear_backward(be, &m->quant, m->sites.pool_w, m->sites.pool_in, s->d_rows, m->g.pool_w, m->g.pool_b,
                             s->d_pooled_pre, a->cls_rows, m->w.pool_w, B, D, D);
    } else {
        be->add_backward(s->d_rows, NULL, d_features, bd);
    }
    be->select_tokens_backward(s->d_stream, s->d_rows, B, T, D, 0, 1);
}
