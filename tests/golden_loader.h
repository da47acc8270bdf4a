// Helpers for tests that read tests/golden/*.safetensors: model config from the golden's metadata,
// whole-tensor reads with a clear failure, and batch construction from the stored inputs.
#ifndef QFT_TESTS_GOLDEN_LOADER_H
#define QFT_TESTS_GOLDEN_LOADER_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"
#include "io/safetensors.h"

static inline int golden_meta_int(const qft_safetensors *st, const char *key, int fallback) {
    const char *v = qft_safetensors_metadata(st, key);
    return v ? atoi(v) : fallback;
}

// Model config from the golden's metadata (keys written by tests/oracle/make_goldens.py).
static inline void golden_model_config(const qft_safetensors *st, qft_model_config *mc) {
    qft_config defaults;
    qft_config_defaults(&defaults);
    *mc = defaults.model;
    const char *type = qft_safetensors_metadata(st, "model_type");
    snprintf(mc->type, sizeof mc->type, "%s", type ? type : "?");
    mc->hidden_size = golden_meta_int(st, "hidden_size", mc->hidden_size);
    mc->num_layers = golden_meta_int(st, "num_layers", mc->num_layers);
    mc->num_heads = golden_meta_int(st, "num_heads", mc->num_heads);
    mc->intermediate_size = golden_meta_int(st, "intermediate_size", mc->intermediate_size);
    mc->num_labels = golden_meta_int(st, "num_labels", mc->num_labels);
    mc->image_size = golden_meta_int(st, "image_size", mc->image_size);
    mc->patch_size = golden_meta_int(st, "patch_size", mc->patch_size);
    mc->num_channels = golden_meta_int(st, "num_channels", mc->num_channels);
    mc->vocab_size = golden_meta_int(st, "vocab_size", mc->vocab_size);
    mc->max_position_embeddings = golden_meta_int(st, "max_position_embeddings", mc->max_position_embeddings);
    mc->type_vocab_size = golden_meta_int(st, "type_vocab_size", mc->type_vocab_size);
    const char *eps = qft_safetensors_metadata(st, "layer_norm_eps");
    mc->layer_norm_eps = eps ? atof(eps) : 1e-12;
    const char *act = qft_safetensors_metadata(st, "hidden_act");
    snprintf(mc->hidden_act, sizeof mc->hidden_act, "%s", act && strcmp(act, "gelu") != 0 ? act : "gelu");
    mc->dropout = 0.0;
    mc->pooler = 1;
}

// Reads a whole tensor as fp32 (malloc'd); exits the test on failure: a golden must be intact.
static inline float *golden_read_f32(const qft_safetensors *st, const char *name, size_t *numel) {
    const qft_tensor_info *t = qft_safetensors_find(st, name);
    qft_error err;
    if (!t) {
        fprintf(stderr, "golden %s: missing tensor '%s'\n", st->path, name);
        exit(1);
    }
    float *data = malloc(t->numel * sizeof(float) + 1);
    if (!data || qft_safetensors_read_f32(st, t, data, &err) != QFT_OK) {
        fprintf(stderr, "golden: %s\n", err.message);
        exit(1);
    }
    if (numel) *numel = t->numel;
    return data;
}

static inline int32_t *golden_read_i32(const qft_safetensors *st, const char *name, size_t *numel) {
    const qft_tensor_info *t = qft_safetensors_find(st, name);
    qft_error err;
    if (!t) {
        fprintf(stderr, "golden %s: missing tensor '%s'\n", st->path, name);
        exit(1);
    }
    int32_t *data = malloc(t->numel * sizeof(int32_t) + 1);
    if (!data || qft_safetensors_read_i32(st, t, data, &err) != QFT_OK) {
        fprintf(stderr, "golden: %s\n", err.message);
        exit(1);
    }
    if (numel) *numel = t->numel;
    return data;
}

#endif
