// Model lifecycle and the shared forward/backward driver: buffers, batch upload, the encoder stack
// and the loss. Family-specific parts (names, embeddings, heads) are in vit.c and bert.c.
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model_parts.h"

// Two-pass bump allocator over one float block: pass 1 (base NULL) only counts.
typedef struct {
    float *base;
    size_t used;
} carve_cursor;

static float *carve(carve_cursor *c, size_t n) {
    float *p = c->base ? c->base + c->used : NULL;
    c->used += (n + 15) & ~(size_t)15;  // 64-byte alignment for every buffer
    return p;
}

static void carve_all(qft_model *m, carve_cursor *c) {
    int B = m->max_B, T = m->max_T, D = m->D, F = m->F, L = m->num_labels;
    size_t N = (size_t)B * T, nd = N * D, bd = (size_t)B * D, bl = (size_t)B * L;
    size_t probs = (size_t)B * m->NH * T * T;
    qft_model_acts *a = &m->acts;
    qft_model_grad_scratch *s = &m->gs;
    if (m->kind != QFT_MODEL_BERT) {
        size_t cpp = (size_t)m->channels * m->patch_size * m->patch_size;
        a->patches = carve(c, (size_t)B * m->num_patches * cpp);
        a->patch_emb = carve(c, (size_t)B * m->num_patches * D);
        s->d_patch_emb = carve(c, (size_t)B * m->num_patches * D);
    } else {
        a->emb_sum = carve(c, nd);
        a->emb_mean = carve(c, N);
        a->emb_rstd = carve(c, N);
    }
    a->x0 = carve(c, nd);
    a->final_ln = carve(c, nd);
    a->final_mean = carve(c, N);
    a->final_rstd = carve(c, N);
    a->cls_rows = carve(c, bd);
    a->dist_rows = carve(c, bd);
    a->pooled_pre = carve(c, bd);
    a->pooled = carve(c, bd);
    a->logits = carve(c, bl);
    a->logits2 = carve(c, bl);
    a->logits_sum = carve(c, bl);
    a->losses = carve(c, B);
    a->probs = carve(c, bl);
    size_t layer_floats = qft_layer_acts_floats((int)N, D, F, probs);
    for (int l = 0; l < m->num_layers; l++) {
        float *block = carve(c, layer_floats);
        if (block) qft_layer_acts_carve(&a->layers[l], block, (int)N, D, F, probs);
    }
    s->d_stream = carve(c, nd);
    s->d_rows = carve(c, bd);
    s->d_rows2 = carve(c, bd);
    s->d_pooled = carve(c, bd);
    s->d_pooled_pre = carve(c, bd);
    s->d_logits = carve(c, bl);
    s->d_logits2 = carve(c, bl);
    s->d_emb = carve(c, nd);
    s->layer.d_ln = carve(c, nd);
    s->layer.d_qkv = carve(c, 3 * nd);
    s->layer.d_attn = carve(c, nd);
    s->layer.d_tmp = carve(c, nd);
    s->layer.d_stream2 = carve(c, nd);
    s->layer.d_fc1 = carve(c, N * F);
    s->layer.d_gelu = carve(c, N * F);
}

static qft_status model_kind_from_name(const char *type, qft_model_kind *kind, qft_error *err) {
    if (strcmp(type, "vit") == 0) *kind = QFT_MODEL_VIT;
    else if (strcmp(type, "deit") == 0) *kind = QFT_MODEL_DEIT;
    else if (strcmp(type, "bert") == 0) *kind = QFT_MODEL_BERT;
    else return qft_fail(err, QFT_ERR_INVALID, "model.type: '%s' is not one of vit|deit|bert", type);
    return QFT_OK;
}

qft_status qft_model_create(qft_model *m, const qft_model_config *cfg, int max_batch, int max_seq_len,
                            const qft_backend *be, uint64_t seed, qft_error *err) {
    memset(m, 0, sizeof *m);
    qft_status st = model_kind_from_name(cfg->type, &m->kind, err);
    if (st != QFT_OK) return st;
    m->be = be;
    m->D = cfg->hidden_size;
    m->num_layers = cfg->num_layers;
    m->NH = cfg->num_heads;
    m->F = cfg->intermediate_size;
    m->num_labels = cfg->num_labels;
    m->ln_eps = (float)cfg->layer_norm_eps;
    m->dropout = (float)cfg->dropout;
    m->gelu = strcmp(cfg->hidden_act, "gelu_tanh") == 0 ? QFT_GELU_TANH : QFT_GELU_ERF;
    m->max_B = max_batch;
    if (m->D % m->NH != 0)
        return qft_fail(err, QFT_ERR_INVALID, "model.hidden_size %d is not a multiple of model.num_heads %d", m->D,
                        m->NH);
    if (m->kind == QFT_MODEL_BERT) {
        m->prefix = "bert.";
        m->vocab_size = cfg->vocab_size;
        m->max_positions = cfg->max_position_embeddings;
        m->type_vocab_size = cfg->type_vocab_size;
        m->use_pooler = cfg->pooler;
        m->max_T = max_seq_len;
        if (max_seq_len > m->max_positions)
            return qft_fail(err, QFT_ERR_INVALID, "data.max_seq_len %d exceeds model.max_position_embeddings %d",
                            max_seq_len, m->max_positions);
    } else {
        m->prefix = m->kind == QFT_MODEL_DEIT ? "deit." : "vit.";
        m->image_size = cfg->image_size;
        m->patch_size = cfg->patch_size;
        m->channels = cfg->num_channels;
        if (m->image_size % m->patch_size != 0)
            return qft_fail(err, QFT_ERR_INVALID, "model.image_size %d is not a multiple of model.patch_size %d",
                            m->image_size, m->patch_size);
        int grid = m->image_size / m->patch_size;
        m->num_patches = grid * grid;
        m->n_prefix = m->kind == QFT_MODEL_DEIT ? 2 : 1;
        m->max_T = m->num_patches + m->n_prefix;
        m->prune_last_layer = 1;
    }

    st = m->kind == QFT_MODEL_BERT ? qft_bert_register_params(m, err) : qft_vit_register_params(m, err);
    if (st != QFT_OK) return st;

    size_t param_bytes = m->table.total_floats * sizeof(float);
    m->params = be->alloc(param_bytes);
    m->grads = be->alloc(param_bytes);
    m->w.layers = calloc((size_t)m->num_layers, sizeof(qft_layer_params));
    m->g.layers = calloc((size_t)m->num_layers, sizeof(qft_layer_params));
    m->acts.layers = calloc((size_t)m->num_layers, sizeof(qft_layer_acts));
    if (!m->params || !m->grads || !m->w.layers || !m->g.layers || !m->acts.layers) {
        qft_model_free(m);
        return qft_fail(err, QFT_ERR_OOM, "out of memory allocating %zu parameters", m->table.total_floats);
    }
    if (m->kind == QFT_MODEL_BERT) {
        qft_bert_bind_weights(m, m->params, &m->w);
        qft_bert_bind_weights(m, m->grads, &m->g);
    } else {
        qft_vit_bind_weights(m, m->params, &m->w);
        qft_vit_bind_weights(m, m->grads, &m->g);
    }

    carve_cursor counter = {NULL, 0};
    carve_all(m, &counter);
    m->act_memory = be->alloc(counter.used * sizeof(float));
    size_t bt = (size_t)m->max_B * m->max_T;
    m->dev_ids = be->alloc(bt * sizeof(int32_t));
    m->dev_types = be->alloc(bt * sizeof(int32_t));
    m->dev_positions = be->alloc(bt * sizeof(int32_t));
    m->dev_mask = be->alloc(bt * sizeof(float));
    m->dev_labels = be->alloc((size_t)m->max_B * sizeof(int32_t));
    m->dev_targets = be->alloc((size_t)m->max_B * sizeof(float));
    m->dev_images = m->kind == QFT_MODEL_BERT
                        ? be->alloc(sizeof(float))
                        : be->alloc((size_t)m->max_B * m->channels * m->image_size * m->image_size * sizeof(float));
    if (!m->act_memory || !m->dev_ids || !m->dev_types || !m->dev_positions || !m->dev_mask || !m->dev_labels ||
        !m->dev_targets || !m->dev_images) {
        qft_model_free(m);
        return qft_fail(err, QFT_ERR_OOM, "out of memory allocating activations (%zu MB)",
                        counter.used * sizeof(float) >> 20);
    }
    carve_cursor real = {m->act_memory, 0};
    carve_all(m, &real);

    float *host = malloc(param_bytes);
    if (!host) {
        qft_model_free(m);
        return qft_fail(err, QFT_ERR_OOM, "out of memory initializing parameters");
    }
    qft_param_table_init_host(&m->table, host, (float)cfg->init_std, seed);
    be->copy_to_device(m->params, host, param_bytes);
    free(host);
    st = qft_model_register_sites(m, err);
    if (st != QFT_OK) qft_model_free(m);
    return st;
}

void qft_model_free(qft_model *m) {
    const qft_backend *be = m->be;
    if (be) {
        void *buffers[] = {m->params, m->grads, m->act_memory, m->dev_ids, m->dev_types, m->dev_positions,
                           m->dev_mask, m->dev_labels, m->dev_targets, m->dev_images};
        for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++)
            if (buffers[i]) be->release(buffers[i]);
    }
    qft_quant_state_free(&m->quant);
    free(m->layer_sites);
    free(m->w.layers);
    free(m->g.layers);
    free(m->acts.layers);
    qft_param_table_free(&m->table);
    memset(m, 0, sizeof *m);
}

int qft_model_seq_len(const qft_model *m) {
    return m->max_T;
}

qft_status qft_model_set_batch(qft_model *m, const qft_batch *batch, qft_error *err) {
    const qft_backend *be = m->be;
    int B = batch->batch_size;
    if (B < 1 || B > m->max_B)
        return qft_fail(err, QFT_ERR_SHAPE, "batch of %d rows: the model was built for 1..%d", B, m->max_B);
    for (int i = 0; batch->labels && i < B; i++)
        if (batch->labels[i] >= m->num_labels)
            return qft_fail(err, QFT_ERR_INVALID, "label %d of row %d is outside 0..%d (model.num_labels)",
                            batch->labels[i], i, m->num_labels - 1);
    m->cur_B = B;
    if (m->kind != QFT_MODEL_BERT) {
        if (!batch->images) return qft_fail(err, QFT_ERR_INVALID, "vision batch without images");
        m->cur_T = m->max_T;
        be->copy_to_device(m->dev_images, batch->images,
                           (size_t)B * m->channels * m->image_size * m->image_size * sizeof(float));
    } else {
        int T = batch->seq_len;
        if (T < 1 || T > m->max_T)
            return qft_fail(err, QFT_ERR_SHAPE, "sequence length %d: the model was built for 1..%d", T, m->max_T);
        if (!batch->input_ids) return qft_fail(err, QFT_ERR_INVALID, "text batch without input_ids");
        size_t n = (size_t)B * T;
        int32_t *host_positions = malloc(n * sizeof(int32_t));
        int32_t *host_types = calloc(n, sizeof(int32_t));
        if (!host_positions || !host_types) {
            free(host_positions);
            free(host_types);
            return qft_fail(err, QFT_ERR_OOM, "out of memory staging a batch");
        }
        for (size_t i = 0; i < n; i++) {
            host_positions[i] = (int32_t)(i % (size_t)T);
            if (batch->token_type_ids) host_types[i] = batch->token_type_ids[i];
        }
        qft_status st = QFT_OK;
        for (size_t i = 0; i < n && st == QFT_OK; i++) {
            if (batch->input_ids[i] < 0 || batch->input_ids[i] >= m->vocab_size)
                st = qft_fail(err, QFT_ERR_INVALID, "token id %d at position %zu is outside the vocabulary (0..%d)",
                              batch->input_ids[i], i, m->vocab_size - 1);
            else if (host_types[i] < 0 || host_types[i] >= m->type_vocab_size)
                st = qft_fail(err, QFT_ERR_INVALID, "token type %d at position %zu is outside 0..%d", host_types[i],
                              i, m->type_vocab_size - 1);
        }
        if (st == QFT_OK) {
            m->cur_T = T;
            be->copy_to_device(m->dev_ids, batch->input_ids, n * sizeof(int32_t));
            be->copy_to_device(m->dev_types, host_types, n * sizeof(int32_t));
            be->copy_to_device(m->dev_positions, host_positions, n * sizeof(int32_t));
            m->has_mask = batch->attention_mask != NULL;
            if (m->has_mask) be->copy_to_device(m->dev_mask, batch->attention_mask, n * sizeof(float));
        }
        free(host_positions);
        free(host_types);
        if (st != QFT_OK) return st;
    }
    m->cur_counted = 0;
    if (m->num_labels == 1 && batch->targets) {
        be->copy_to_device(m->dev_targets, batch->targets, (size_t)B * sizeof(float));
        m->cur_counted = B;
    } else if (batch->labels) {
        be->copy_to_device(m->dev_labels, batch->labels, (size_t)B * sizeof(int32_t));
        for (int i = 0; i < B; i++) m->cur_counted += batch->labels[i] >= 0;
    }
    m->cur_has_targets = (m->num_labels == 1 && batch->targets) || (m->num_labels > 1 && batch->labels);
    return QFT_OK;
}

static qft_layer_shape layer_shape(qft_model *m, int layer, int training, uint64_t seed, uint64_t step) {
    qft_layer_shape s = {0};
    s.B = m->cur_B;
    s.T = m->cur_T;
    s.D = m->D;
    s.NH = m->NH;
    s.F = m->F;
    s.ln_eps = m->ln_eps;
    s.gelu = m->gelu;
    s.dropout = training ? m->dropout : 0.0f;
    s.seed = seed;
    s.stream_base = qft_dropout_stream(step, 4 * layer);
    s.key_mask = m->kind == QFT_MODEL_BERT && m->has_mask ? m->dev_mask : NULL;
    // Method hooks (host/method/) see every site, quantized or not.
    if ((m->quant.mode != QFT_QUANT_OFF && m->quant.enabled_count > 0) || m->quant.hooks) {
        s.quant = &m->quant;
        s.sites = &m->layer_sites[layer];
    }
    return s;
}

static const float *encoder_output(const qft_model *m) {
    return qft_encoder_output(&m->acts.layers[m->num_layers - 1], m->kind != QFT_MODEL_BERT);
}

static const float *layer_input(const qft_model *m, int layer) {
    return layer == 0 ? m->acts.x0 : qft_encoder_output(&m->acts.layers[layer - 1], m->kind != QFT_MODEL_BERT);
}

// The last ViT/DeiT layer computes only the prefix tokens the head reads (see encoder.c).
static int pruned_layer(const qft_model *m, int layer) {
    return m->kind != QFT_MODEL_BERT && m->prune_last_layer && layer == m->num_layers - 1;
}

float qft_model_forward(qft_model *m, int training, uint64_t seed, uint64_t step) {
    const qft_backend *be = m->be;
    int B = m->cur_B, L = m->num_labels;
    qft_quant_weights_forward(&m->quant);
    if (m->kind == QFT_MODEL_BERT) qft_bert_embed_forward(m, training, seed, step);
    else qft_vit_embed_forward(m, training, seed, step);
    m->head_T = m->cur_T;
    for (int l = 0; l < m->num_layers; l++) {
        qft_layer_shape s = layer_shape(m, l, training, seed, step);
        if (m->kind == QFT_MODEL_BERT) {
            qft_encoder_postnorm_forward(be, &s, &m->w.layers[l], &m->acts.layers[l], layer_input(m, l));
        } else if (pruned_layer(m, l)) {
            qft_encoder_prenorm_prefix_forward(be, &s, &m->w.layers[l], &m->acts.layers[l], layer_input(m, l),
                                               m->n_prefix);
            m->head_T = m->n_prefix;
        } else {
            qft_encoder_prenorm_forward(be, &s, &m->w.layers[l], &m->acts.layers[l], layer_input(m, l));
        }
    }
    if (m->kind == QFT_MODEL_BERT) qft_bert_head_forward(m, encoder_output(m), training, seed, step);
    else qft_vit_head_forward(m, encoder_output(m));

    if (!m->cur_has_targets || m->cur_counted == 0) return NAN;
    if (L == 1) return be->mse_forward(m->acts.logits, m->dev_targets, (size_t)B);
    be->cross_entropy_forward(m->acts.losses, m->acts.probs, m->acts.logits, m->dev_labels, B, L,
                              m->label_smoothing);
    float host_losses[B];
    be->copy_to_host(host_losses, m->acts.losses, (size_t)B * sizeof(float));
    double sum = 0.0;
    for (int i = 0; i < B; i++) sum += host_losses[i];
    return (float)(sum / m->cur_counted);
}

static void bind_weights(qft_model *m, float *params) {
    if (m->kind == QFT_MODEL_BERT) qft_bert_bind_weights(m, params, &m->w);
    else qft_vit_bind_weights(m, params, &m->w);
}

float qft_model_forward_with_params(qft_model *m, float *params) {
    // The other parameters run as the plain FP model: no quantization, and no method hooks (an
    // outlier penalty must not see the teacher's activations).
    qft_quant_mode mode = m->quant.mode;
    const qft_site_hooks *hooks = m->quant.hooks;
    m->quant.mode = QFT_QUANT_OFF;
    m->quant.hooks = NULL;
    bind_weights(m, params);
    float loss = qft_model_forward(m, 0, 0, 0);
    bind_weights(m, m->params);
    m->quant.mode = mode;
    m->quant.hooks = hooks;
    return loss;
}

void qft_model_backward(qft_model *m, float loss_scale, uint64_t seed, uint64_t step) {
    const qft_backend *be = m->be;
    const qft_output_loss *extra = m->output_loss;
    int B = m->cur_B, T = m->cur_T, L = m->num_labels;
    int task = m->cur_has_targets && m->cur_counted > 0;
    if (!task && !extra) return;
    float task_scale = extra ? loss_scale * extra->task_weight : loss_scale;
    be->zero(m->gs.d_logits, (size_t)B * L * sizeof(float));
    if (task && L == 1)
        be->mse_backward(m->gs.d_logits, m->acts.logits, m->dev_targets, (size_t)B, task_scale);
    else if (task)
        be->cross_entropy_backward(m->gs.d_logits, m->acts.probs, m->dev_labels, B, L, m->label_smoothing,
                                   task_scale / (float)m->cur_counted);
    if (extra && extra->add_logits_grad) extra->add_logits_grad(extra->ctx, m, m->gs.d_logits, loss_scale);
    be->zero(m->gs.d_stream, (size_t)B * T * m->D * sizeof(float));
    if (m->kind == QFT_MODEL_BERT) qft_bert_head_backward(m, encoder_output(m), seed, step);
    else qft_vit_head_backward(m, encoder_output(m));
    if (extra && extra->add_hidden_grad) extra->add_hidden_grad(extra->ctx, m, m->gs.d_stream, loss_scale);
    for (int l = m->num_layers - 1; l >= 0; l--) {
        qft_layer_shape s = layer_shape(m, l, 1, seed, step);
        if (m->kind == QFT_MODEL_BERT)
            qft_encoder_postnorm_backward(be, &s, &m->w.layers[l], &m->g.layers[l], &m->acts.layers[l],
                                          layer_input(m, l), &m->gs.layer, m->gs.d_stream);
        else if (pruned_layer(m, l))
            qft_encoder_prenorm_prefix_backward(be, &s, &m->w.layers[l], &m->g.layers[l], &m->acts.layers[l],
                                                layer_input(m, l), &m->gs.layer, m->gs.d_stream, m->n_prefix);
        else
            qft_encoder_prenorm_backward(be, &s, &m->w.layers[l], &m->g.layers[l], &m->acts.layers[l],
                                         layer_input(m, l), &m->gs.layer, m->gs.d_stream);
    }
    if (m->kind == QFT_MODEL_BERT) qft_bert_embed_backward(m, seed, step);
    else qft_vit_embed_backward(m, seed, step);
}

const float *qft_embed_dropout_backward(qft_model *m, size_t n, uint64_t seed, uint64_t step) {
    if (m->dropout <= 0.0f) return m->gs.d_stream;
    m->be->zero(m->gs.d_emb, n * sizeof(float));
    m->be->dropout_backward(m->gs.d_emb, m->gs.d_stream, n, m->dropout, seed, qft_dropout_stream(step, QFT_SITE_EMBED));
    return m->gs.d_emb;
}

void qft_model_zero_grads(qft_model *m) {
    m->be->zero(m->grads, m->table.total_floats * sizeof(float));
}

const float *qft_model_encoder_output(const qft_model *m) {
    return encoder_output(m);
}

void qft_model_read_logits(const qft_model *m, float *host_logits) {
    m->be->copy_to_host(host_logits, m->acts.logits, (size_t)m->cur_B * m->num_labels * sizeof(float));
}

void qft_model_read_hidden(const qft_model *m, float *host_hidden) {
    // HF's last_hidden_state: after the final LayerNorm for ViT/DeiT, the last layer output for BERT.
    const float *hidden = m->kind == QFT_MODEL_BERT ? encoder_output(m) : m->acts.final_ln;
    m->be->copy_to_host(host_hidden, hidden, (size_t)m->cur_B * m->head_T * m->D * sizeof(float));
}
