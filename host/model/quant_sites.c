// The quant sites of ViT/DeiT and BERT: their names, roles and shapes, registered in one table per
// model so `qft quant-sites` can list them and rules can select them by glob.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_parts.h"

// A site's pointer is bound after every site is registered (the array may move while it grows),
// so registration records the address of the pointer to fill and binding fills them all.
typedef struct {
    qft_quant_site **slot;
} site_slot;

typedef struct {
    qft_model *m;
    site_slot *slots;
    int count, capacity;
} site_registry;

static qft_status add(site_registry *r, qft_quant_site **slot, const char *name, qft_site_role role, int rows, int C,
                      float *weight, float *grad, qft_error *err) {
    if (r->count == r->capacity) {
        int capacity = r->capacity ? 2 * r->capacity : 64;
        site_slot *grown = realloc(r->slots, (size_t)capacity * sizeof *grown);
        if (!grown) return qft_fail(err, QFT_ERR_OOM, "out of memory registering quant sites");
        r->slots = grown;
        r->capacity = capacity;
    }
    r->slots[r->count++].slot = slot;
    return qft_quant_add_site(&r->m->quant, name, role, rows, C, weight, grad, err);
}

// A linear layer's weight [OC, C] and input [rows, C] sites: "<name>.weight", "<name>.input".
static qft_status add_linear(site_registry *r, qft_quant_site **w_slot, qft_quant_site **x_slot, const char *name,
                             int rows, int C, int OC, float *weight, float *grad, qft_error *err) {
    char full[96];
    snprintf(full, sizeof full, "%s.weight", name);
    QFT_TRY(add(r, w_slot, full, QFT_SITE_WEIGHT, OC, C, weight, grad, err));
    snprintf(full, sizeof full, "%s.input", name);
    return add(r, x_slot, full, QFT_SITE_INPUT, rows, C, NULL, NULL, err);
}

static qft_status add_layer(site_registry *r, int l, qft_error *err) {
    qft_model *m = r->m;
    qft_layer_sites *s = &m->layer_sites[l];
    const qft_layer_params *w = &m->w.layers[l], *g = &m->g.layers[l];
    int N = m->max_B * m->max_T, D = m->D, F = m->F;
    char name[96];
#define LAYER_NAME(suffix) (snprintf(name, sizeof name, "layers.%d.%s", l, suffix), name)
    QFT_TRY(add_linear(r, &s->qkv_w, &s->qkv_in, LAYER_NAME("qkv"), N, D, 3 * D, w->qkv_w, g->qkv_w, err));
    QFT_TRY(add(r, &s->probs, LAYER_NAME("attn.probs"), QFT_SITE_PROBS, m->max_B * m->NH * m->max_T, m->max_T, NULL,
                NULL, err));
    QFT_TRY(add_linear(r, &s->proj_w, &s->proj_in, LAYER_NAME("proj"), N, D, D, w->o_w, g->o_w, err));
    QFT_TRY(add_linear(r, &s->fc1_w, &s->fc1_in, LAYER_NAME("fc1"), N, D, F, w->fc1_w, g->fc1_w, err));
    QFT_TRY(add_linear(r, &s->fc2_w, &s->fc2_in, LAYER_NAME("fc2"), N, F, D, w->fc2_w, g->fc2_w, err));
    QFT_TRY(add(r, &s->ln1, LAYER_NAME("ln1.output"), QFT_SITE_OUTPUT, N, D, NULL, NULL, err));
    QFT_TRY(add(r, &s->ln2, LAYER_NAME("ln2.output"), QFT_SITE_OUTPUT, N, D, NULL, NULL, err));
    QFT_TRY(add(r, &s->resid1, LAYER_NAME("resid1.output"), QFT_SITE_OUTPUT, N, D, NULL, NULL, err));
    QFT_TRY(add(r, &s->resid2, LAYER_NAME("resid2.output"), QFT_SITE_OUTPUT, N, D, NULL, NULL, err));
#undef LAYER_NAME
    return QFT_OK;
}

static qft_status add_all(site_registry *r, qft_error *err) {
    qft_model *m = r->m;
    qft_model_sites *s = &m->sites;
    int B = m->max_B, N = m->max_B * m->max_T, D = m->D, L = m->num_labels;
    if (m->kind != QFT_MODEL_BERT) {
        int cpp = m->channels * m->patch_size * m->patch_size;
        QFT_TRY(add_linear(r, &s->patch_w, &s->patch_in, "patch_embed", B * m->num_patches, cpp, D, m->w.patch_w,
                           m->g.patch_w, err));
    }
    QFT_TRY(add(r, &s->embed_out, "embeddings.output", QFT_SITE_OUTPUT, N, D, NULL, NULL, err));
    for (int l = 0; l < m->num_layers; l++) QFT_TRY(add_layer(r, l, err));
    if (m->kind != QFT_MODEL_BERT)
        QFT_TRY(add(r, &s->final_ln, "final_ln.output", QFT_SITE_OUTPUT, N, D, NULL, NULL, err));
    if (m->kind == QFT_MODEL_BERT && m->use_pooler)
        QFT_TRY(add_linear(r, &s->pool_w, &s->pool_in, "pooler", B, D, D, m->w.pool_w, m->g.pool_w, err));
    QFT_TRY(add_linear(r, &s->head_w, &s->head_in, "head", B, D, L, m->w.head_w, m->g.head_w, err));
    if (m->kind == QFT_MODEL_DEIT)
        QFT_TRY(add_linear(r, &s->head2_w, &s->head2_in, "head2", B, D, L, m->w.head2_w, m->g.head2_w, err));
    return QFT_OK;
}

qft_status qft_model_register_sites(qft_model *m, qft_error *err) {
    qft_quant_state_init(&m->quant, m->be);
    m->layer_sites = calloc((size_t)m->num_layers, sizeof *m->layer_sites);
    if (!m->layer_sites) return qft_fail(err, QFT_ERR_OOM, "out of memory registering quant sites");
    site_registry r = {m, NULL, 0, 0};
    qft_status status = add_all(&r, err);
    if (status == QFT_OK)
        for (int i = 0; i < r.count; i++) *r.slots[i].slot = &m->quant.sites[i];
    free(r.slots);
    return status;
}

qft_status qft_model_quant_configure(qft_model *m, const qft_quant_rule_list *rules, qft_error *err) {
    return qft_quant_configure(&m->quant, rules, err);
}

qft_status qft_model_quant_check(qft_model *m, qft_error *err) {
    qft_quant_state *q = &m->quant;
    if (q->nonfinite == 0) return QFT_OK;
    const char *site = q->nonfinite_site >= 0 ? q->sites[q->nonfinite_site].name : "?";
    size_t count = q->nonfinite;
    q->nonfinite = 0;
    q->nonfinite_site = -1;
    return qft_fail(err, QFT_ERR_INVALID, "quant site %s: %zu non-finite value%s (NaN/Inf) reached the quantizer%s",
                    site, count, count == 1 ? "" : "s", count > 1 ? "s" : "");
}
