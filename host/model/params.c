// Parameter table bookkeeping: append named slices of the flat buffer, look them up, initialize.
// Initialization is keyed by (seed, parameter index) with Philox, so it does not depend on threads.
#include "params.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/rng.h"

void qft_param_table_free(qft_param_table *table) {
    free(table->items);
    memset(table, 0, sizeof *table);
}

static int name_ends_with(const char *name, const char *suffix) {
    size_t n = strlen(name), s = strlen(suffix);
    return n >= s && strcmp(name + n - s, suffix) == 0;
}

size_t qft_param_table_add(qft_param_table *table, const char *name, int ndim, const int64_t *shape,
                           qft_param_init init, int is_head) {
    if (table->count == table->capacity) {
        int capacity = table->capacity ? table->capacity * 2 : 64;
        qft_param *items = realloc(table->items, (size_t)capacity * sizeof *items);
        if (!items) return (size_t)-1;
        table->items = items;
        table->capacity = capacity;
    }
    qft_param *p = &table->items[table->count++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= (size_t)shape[i];
    }
    p->offset = table->total_floats;
    p->init = init;
    p->is_head = is_head;
    // HF Trainer: no decay for biases and LayerNorm weights; everything else (matrices, embeddings) decays.
    int is_norm = strstr(name, "LayerNorm") || strstr(name, "layernorm");
    p->weight_decay = !(name_ends_with(name, "bias") || is_norm);
    table->total_floats += p->numel;
    return p->offset;
}

const qft_param *qft_param_table_find(const qft_param_table *table, const char *name) {
    for (int i = 0; i < table->count; i++)
        if (strcmp(table->items[i].name, name) == 0) return &table->items[i];
    return NULL;
}

void qft_param_table_init_host(const qft_param_table *table, float *host_params, float init_std,
                               uint64_t seed) {
    for (int i = 0; i < table->count; i++) {
        const qft_param *p = &table->items[i];
        float *dst = host_params + p->offset;
        for (size_t j = 0; j < p->numel; j++) {
            if (p->init == QFT_INIT_ZEROS) {
                dst[j] = 0.0f;
            } else if (p->init == QFT_INIT_ONES) {
                dst[j] = 1.0f;
            } else {
                // Box-Muller on two Philox uniforms; 1-u keeps the log argument in (0, 1].
                float u1 = 1.0f - qft_philox_uniform(seed, 0x1000u + (uint64_t)i, 2 * j);
                float u2 = qft_philox_uniform(seed, 0x1000u + (uint64_t)i, 2 * j + 1);
                float z = sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
                dst[j] = init_std * z;
            }
        }
    }
}
