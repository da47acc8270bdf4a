// Parameter table: every trainable tensor of a model, by Hugging Face name, as a slice of one
// contiguous buffer (llm.c style), so the optimizer, checkpoint and import code see one flat array.
#ifndef QFT_MODEL_PARAMS_H
#define QFT_MODEL_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#define QFT_PARAM_NAME_MAX 128

typedef enum {
    QFT_INIT_NORMAL = 0,  // N(0, init_std)
    QFT_INIT_ZEROS,
    QFT_INIT_ONES
} qft_param_init;

typedef struct {
    char name[QFT_PARAM_NAME_MAX];  // Hugging Face checkpoint name
    size_t offset;                  // in floats, into the parameter (and gradient) buffer
    size_t numel;
    int ndim;
    int64_t shape[4];               // Hugging Face shape (conv weight [D, C, P, P], cls_token [1, 1, D])
    int weight_decay;               // 0 for biases and LayerNorm parameters (HF Trainer's rule)
    int is_head;                    // classifier / pooler: may be missing from a pretrained backbone
    qft_param_init init;
} qft_param;

typedef struct {
    qft_param *items;
    int count;
    int capacity;
    size_t total_floats;
} qft_param_table;

void qft_param_table_free(qft_param_table *table);

// Appends a parameter; returns its offset (in floats) or (size_t)-1 on allocation failure.
size_t qft_param_table_add(qft_param_table *table, const char *name, int ndim, const int64_t *shape,
                           qft_param_init init, int is_head);

const qft_param *qft_param_table_find(const qft_param_table *table, const char *name);

// Fills a host buffer with the initial values: deterministic from (seed, parameter index).
void qft_param_table_init_host(const qft_param_table *table, float *host_params, float init_std,
                               uint64_t seed);

#endif
