// Internal interface between model.c (shared encoder stack, buffers, loss) and the model families
// vit.c and bert.c (their parameter names, embeddings and heads). Not used outside host/model/.
#ifndef QFT_MODEL_PARTS_H
#define QFT_MODEL_PARTS_H

#include "model.h"

// Returns early from the enclosing function with any non-OK status.
#define QFT_TRY(expr)                              \
    do {                                           \
        qft_status try_status_ = (expr);           \
        if (try_status_ != QFT_OK) return try_status_; \
    } while (0)

// Appends one parameter to m->table (an out-of-memory error names it).
qft_status qft_model_add_param(qft_model *m, const char *name, int ndim, const int64_t *shape, qft_param_init init,
                               int is_head, qft_error *err);

// Registers the family's parameters in m->table (HF names and shapes).
qft_status qft_vit_register_params(qft_model *m, qft_error *err);
qft_status qft_bert_register_params(qft_model *m, qft_error *err);

// Points m->w / m->g fields at the registered parameters.
void qft_vit_bind_weights(qft_model *m, float *base, qft_model_weights *w);
void qft_bert_bind_weights(qft_model *m, float *base, qft_model_weights *w);

// Embeddings: write the encoder input m->acts.x0 from the current batch.
void qft_vit_embed_forward(qft_model *m, int training, uint64_t seed, uint64_t step);
void qft_bert_embed_forward(qft_model *m, int training, uint64_t seed, uint64_t step);
// Embedding backward from dL/dx0 (in m->gs.d_stream).
void qft_vit_embed_backward(qft_model *m, uint64_t seed, uint64_t step);
void qft_bert_embed_backward(qft_model *m, uint64_t seed, uint64_t step);

// dL/d(embedding output before dropout) from m->gs.d_stream: d_stream itself without dropout, else
// the masked copy in m->gs.d_emb. n = rows * D of the current batch.
const float *qft_embed_dropout_backward(qft_model *m, size_t n, uint64_t seed, uint64_t step);

// Heads: from the encoder output to m->acts.logits.
void qft_vit_head_forward(qft_model *m, const float *encoder_out);
void qft_bert_head_forward(qft_model *m, const float *encoder_out, int training, uint64_t seed, uint64_t step);
// Head backward from m->gs.d_logits; writes dL/d(encoder_out) into m->gs.d_stream (zeroed by the caller).
void qft_vit_head_backward(qft_model *m, const float *encoder_out);
void qft_bert_head_backward(qft_model *m, const float *encoder_out, uint64_t seed, uint64_t step);

// Hugging Face module names of one encoder layer (relative to "<prefix>encoder.layer.<i>.").
typedef struct {
    const char *query, *key, *value, *attn_out, *ln1, *fc1, *fc2, *ln2;
} qft_layer_names;

// Registers one layer's 16 parameters (q, k, v weights back to back, then their biases, ...).
qft_status qft_register_layer(qft_model *m, const char *layer_prefix, const qft_layer_names *names, qft_error *err);
// Binds the 16 parameters starting at *cursor and advances it past them.
void qft_bind_layer(const qft_param **cursor, float *base, qft_layer_params *lp);

// Registers every quant site of the model (host/model/quant_sites.c) and binds the site pointers.
qft_status qft_model_register_sites(qft_model *m, qft_error *err);

// Dropout stream ids: unique per (step, site) so masks never repeat across steps or sites.
static inline uint64_t qft_dropout_stream(uint64_t step, int site) {
    return (step << 16) | (uint64_t)site;
}
enum { QFT_SITE_EMBED = 0xFFF0, QFT_SITE_POOLER = 0xFFF1 };  // encoder layers use 4*layer + {0,1}

#endif
