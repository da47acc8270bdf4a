// Registers parameters into a model's table: the shared helper, and one encoder layer (ViT and BERT
// differ only in Hugging Face names). Query, key and value go back to back to form one [3D, D] GEMM.
#include <stdio.h>

#include "model_parts.h"

qft_status qft_model_add_param(qft_model *m, const char *name, int ndim, const int64_t *shape, qft_param_init init,
                               int is_head, qft_error *err) {
    if (qft_param_table_add(&m->table, name, ndim, shape, init, is_head) == (size_t)-1)
        return qft_fail(err, QFT_ERR_OOM, "out of memory registering parameter %s", name);
    return QFT_OK;
}

static qft_status add(qft_model *m, const char *layer_prefix, const char *module, const char *kind, int ndim,
                      const int64_t *shape, qft_param_init init, qft_error *err) {
    char name[QFT_PARAM_NAME_MAX];
    snprintf(name, sizeof name, "%s%s.%s", layer_prefix, module, kind);
    return qft_model_add_param(m, name, ndim, shape, init, 0, err);
}

// Registration order (bind below walks it): q.w k.w v.w q.b k.b v.b, attn_out w b, ln1 w b,
// fc1 w b, fc2 w b, ln2 w b. Checkpoints and imports go by name, so the order is ours to choose.
qft_status qft_register_layer(qft_model *m, const char *layer_prefix, const qft_layer_names *names, qft_error *err) {
    int64_t D = m->D, F = m->F;
    const char *qkv[3] = {names->query, names->key, names->value};
    for (int i = 0; i < 3; i++) QFT_TRY(add(m, layer_prefix, qkv[i], "weight", 2, (int64_t[]){D, D}, QFT_INIT_NORMAL, err));
    for (int i = 0; i < 3; i++) QFT_TRY(add(m, layer_prefix, qkv[i], "bias", 1, (int64_t[]){D}, QFT_INIT_ZEROS, err));
    QFT_TRY(add(m, layer_prefix, names->attn_out, "weight", 2, (int64_t[]){D, D}, QFT_INIT_NORMAL, err));
    QFT_TRY(add(m, layer_prefix, names->attn_out, "bias", 1, (int64_t[]){D}, QFT_INIT_ZEROS, err));
    QFT_TRY(add(m, layer_prefix, names->ln1, "weight", 1, (int64_t[]){D}, QFT_INIT_ONES, err));
    QFT_TRY(add(m, layer_prefix, names->ln1, "bias", 1, (int64_t[]){D}, QFT_INIT_ZEROS, err));
    QFT_TRY(add(m, layer_prefix, names->fc1, "weight", 2, (int64_t[]){F, D}, QFT_INIT_NORMAL, err));
    QFT_TRY(add(m, layer_prefix, names->fc1, "bias", 1, (int64_t[]){F}, QFT_INIT_ZEROS, err));
    QFT_TRY(add(m, layer_prefix, names->fc2, "weight", 2, (int64_t[]){D, F}, QFT_INIT_NORMAL, err));
    QFT_TRY(add(m, layer_prefix, names->fc2, "bias", 1, (int64_t[]){D}, QFT_INIT_ZEROS, err));
    QFT_TRY(add(m, layer_prefix, names->ln2, "weight", 1, (int64_t[]){D}, QFT_INIT_ONES, err));
    QFT_TRY(add(m, layer_prefix, names->ln2, "bias", 1, (int64_t[]){D}, QFT_INIT_ZEROS, err));
    return QFT_OK;
}

void qft_bind_layer(const qft_param **cursor, float *base, qft_layer_params *lp) {
    const qft_param *it = *cursor;
    // The table is contiguous in registration order, so q.weight starts the [3D, D] block and
    // q.bias the [3D] block.
    lp->qkv_w = base + it[0].offset;
    lp->qkv_b = base + it[3].offset;
    it += 6;
    lp->o_w = base + (it++)->offset;
    lp->o_b = base + (it++)->offset;
    lp->ln1_w = base + (it++)->offset;
    lp->ln1_b = base + (it++)->offset;
    lp->fc1_w = base + (it++)->offset;
    lp->fc1_b = base + (it++)->offset;
    lp->fc2_w = base + (it++)->offset;
    lp->fc2_b = base + (it++)->offset;
    lp->ln2_w = base + (it++)->offset;
    lp->ln2_b = base + (it++)->offset;
    *cursor = it;
}
