// Hugging Face safetensors import and export of a model's parameter table.
// Import is strict about shapes and explicit about every missing or unexpected tensor.
#include <stdlib.h>
#include <string.h>

#include "../io/safetensors.h"
#include "model.h"

// Looks a parameter up as named, or without the family prefix (bare BertModel / ViTModel checkpoints).
static const qft_tensor_info *find_tensor(const qft_safetensors *st, const qft_model *m, const char *name) {
    const qft_tensor_info *t = qft_safetensors_find(st, name);
    size_t plen = strlen(m->prefix);
    if (!t && strncmp(name, m->prefix, plen) == 0) t = qft_safetensors_find(st, name + plen);
    return t;
}

// Buffers HF stores next to the weights that are not parameters.
static int is_known_buffer(const char *name) {
    size_t n = strlen(name);
    const char *suffix = "position_ids";
    size_t s = strlen(suffix);
    return n >= s && strcmp(name + n - s, suffix) == 0;
}

static int matches_param(const qft_model *m, const char *tensor_name) {
    for (int i = 0; i < m->table.count; i++) {
        const char *pname = m->table.items[i].name;
        size_t plen = strlen(m->prefix);
        if (strcmp(pname, tensor_name) == 0) return 1;
        if (strncmp(pname, m->prefix, plen) == 0 && strcmp(pname + plen, tensor_name) == 0) return 1;
    }
    return 0;
}

// Whether tensor t has exactly the shape of parameter p.
static int same_shape(const qft_tensor_info *t, const qft_param *p) {
    if (t->ndim != p->ndim) return 0;
    for (int d = 0; d < p->ndim; d++)
        if (t->shape[d] != p->shape[d]) return 0;
    return 1;
}

qft_status qft_model_import(qft_model *m, const char *path, FILE *log, int *missing_head, qft_error *err) {
    return qft_model_import_pretrained(m, path, 0, log, missing_head, err);
}

qft_status qft_model_import_pretrained(qft_model *m, const char *path, int ignore_mismatched_sizes, FILE *log,
                                       int *missing_head, qft_error *err) {
    return qft_model_import_into(m, m->params, path, ignore_mismatched_sizes, log, missing_head, err);
}

qft_status qft_model_import_into(qft_model *m, float *dest, const char *path, int ignore_mismatched_sizes,
                                 FILE *log, int *missing_head, qft_error *err) {
    qft_safetensors st;
    qft_status status = qft_safetensors_open(&st, path, err);
    if (status != QFT_OK) return status;
    size_t bytes = m->table.total_floats * sizeof(float);
    float *host = malloc(bytes);
    if (!host) {
        qft_safetensors_close(&st);
        return qft_fail(err, QFT_ERR_OOM, "%s: out of memory staging %zu parameters", path, m->table.total_floats);
    }
    // Start from the current values so a missing head keeps its initialization.
    m->be->copy_to_host(host, dest, bytes);
    int heads_missing = 0;
    for (int i = 0; i < m->table.count && status == QFT_OK; i++) {
        const qft_param *p = &m->table.items[i];
        const qft_tensor_info *t = find_tensor(&st, m, p->name);
        if (!t) {
            if (p->is_head) {
                heads_missing++;
                if (log) fprintf(log, "%s: missing head tensor '%s': newly initialized\n", path, p->name);
                continue;
            }
            status = qft_fail(err, QFT_ERR_SHAPE, "%s: missing tensor '%s'", path, p->name);
            break;
        }
        // A head trained for another label set (HF's ignore_mismatched_sizes): keep our init.
        if (ignore_mismatched_sizes && p->is_head && !same_shape(t, p)) {
            heads_missing++;
            if (log) {
                fprintf(log, "%s: head tensor '%s' has shape [", path, t->name);
                for (int d = 0; d < t->ndim; d++) fprintf(log, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
                fprintf(log, "], the model's is [");
                for (int d = 0; d < p->ndim; d++) fprintf(log, "%s%lld", d ? ", " : "", (long long)p->shape[d]);
                fprintf(log, "]: newly initialized (model.ignore_mismatched_sizes)\n");
            }
            continue;
        }
        status = qft_safetensors_expect(&st, t->name, p->ndim, p->shape, NULL, err);
        if (status == QFT_OK) status = qft_safetensors_read_f32(&st, t, host + p->offset, err);
    }
    if (status == QFT_OK) {
        m->be->copy_to_device(dest, host, bytes);
        for (int i = 0; i < st.count && log; i++) {
            const char *name = st.tensors[i].name;
            if (!matches_param(m, name) && !is_known_buffer(name))
                fprintf(log, "%s: unexpected tensor '%s' (ignored)\n", path, name);
        }
        if (missing_head) *missing_head = heads_missing;
    }
    free(host);
    qft_safetensors_close(&st);
    return status;
}

qft_status qft_model_export(const qft_model *m, const char *path, int dtype, qft_error *err) {
    if (dtype != QFT_DTYPE_F32 && dtype != QFT_DTYPE_F16 && dtype != QFT_DTYPE_BF16)
        return qft_fail(err, QFT_ERR_INVALID, "%s: export dtype must be F32, F16 or BF16", path);
    size_t bytes = m->table.total_floats * sizeof(float);
    float *host = malloc(bytes);
    qft_write_tensor *entries = calloc((size_t)m->table.count, sizeof *entries);
    if (!host || !entries) {
        free(host);
        free(entries);
        return qft_fail(err, QFT_ERR_OOM, "%s: out of memory staging the export", path);
    }
    m->be->copy_to_host(host, m->params, bytes);
    for (int i = 0; i < m->table.count; i++) {
        const qft_param *p = &m->table.items[i];
        entries[i] = (qft_write_tensor){p->name, (qft_dtype)dtype, p->ndim, p->shape, host + p->offset, 1};
    }
    const char *metadata[] = {"format", "pt", NULL};
    qft_status status = qft_safetensors_write(path, entries, m->table.count, metadata, err);
    free(host);
    free(entries);
    return status;
}
