// A transformer classifier (ViT, DeiT or BERT) as one parameter table, one gradient buffer and one
// activation block, with explicit forward and backward over the backend op table (no autograd).
#ifndef QFT_MODEL_MODEL_H
#define QFT_MODEL_MODEL_H

#include <stdint.h>
#include <stdio.h>

#include "../backend/backend.h"
#include "../core/status.h"
#include "../io/config.h"
#include "encoder.h"
#include "params.h"

typedef enum { QFT_MODEL_VIT = 0, QFT_MODEL_DEIT, QFT_MODEL_BERT } qft_model_kind;

// One batch on the host. Vision models read images; BERT reads the token arrays.
typedef struct {
    int batch_size;
    int seq_len;                    // BERT: tokens per row (<= max_seq_len); vision: ignored
    const float *images;            // [B, C, H, W]
    const int32_t *input_ids;       // [B, T]
    const int32_t *token_type_ids;  // [B, T] (NULL = all zeros)
    const float *attention_mask;    // [B, T] 1 = token, 0 = padding (NULL = all ones)
    const int32_t *labels;          // [B] class index (classification), < 0 = ignore
    const float *targets;           // [B] regression targets (num_labels == 1)
} qft_batch;

typedef struct {
    float *patch_w, *patch_b, *cls, *dist, *pos;   // vision embeddings
    float *word, *position, *token_type;           // text embeddings
    float *emb_ln_w, *emb_ln_b;                    // BERT embedding LayerNorm
    float *final_ln_w, *final_ln_b;                // ViT final LayerNorm
    float *pool_w, *pool_b;                        // BERT pooler
    float *head_w, *head_b;                        // classifier (DeiT: cls_classifier)
    float *head2_w, *head2_b;                      // DeiT distillation_classifier
    qft_layer_params *layers;                      // [num_layers]
} qft_model_weights;

typedef struct {
    float *patches, *patch_emb;          // vision: patchified images, projected patches
    float *emb_sum, *emb_mean, *emb_rstd; // BERT: token+position+type sum and its LN stats
    float *x0;                           // encoder input [N, D]
    float *final_ln, *final_mean, *final_rstd;  // ViT final LayerNorm (BERT: unused)
    float *cls_rows, *dist_rows;         // [B, D] selected tokens
    float *pooled_pre, *pooled;          // BERT pooler before/after tanh [B, D]
    float *logits, *logits2, *logits_sum; // [B, L] (DeiT: two heads, averaged into logits_sum)
    float *losses, *probs;               // [B], [B, L]
    qft_layer_acts *layers;              // [num_layers]
} qft_model_acts;

typedef struct {
    float *d_stream;                     // [N, D] residual-stream gradient
    float *d_rows, *d_rows2;             // [B, D]
    float *d_pooled, *d_pooled_pre;      // [B, D]
    float *d_logits, *d_logits2;         // [B, L]
    float *d_emb;                        // [N, D]
    float *d_patch_emb;                  // [B*NP, D]
    qft_layer_scratch layer;
} qft_model_grad_scratch;

// Model-level quant sites (NULL where the family has none).
typedef struct {
    qft_quant_site *patch_w, *patch_in;  // vision patch projection: "patch_embed.weight" / ".input"
    qft_quant_site *embed_out;           // "embeddings.output": the encoder input x0
    qft_quant_site *final_ln;            // "final_ln.output" (ViT/DeiT)
    qft_quant_site *pool_w, *pool_in;    // "pooler.weight" / ".input" (BERT)
    qft_quant_site *head_w, *head_in;    // "head.weight" / ".input" (DeiT: cls_classifier)
    qft_quant_site *head2_w, *head2_in;  // "head2.weight" / ".input" (DeiT distillation_classifier)
} qft_model_sites;

struct qft_model;

// A fine-tuning method's loss on the model's outputs (host/method/), added to the task loss:
// L = task_weight * (task loss) + the method's terms. qft_model_backward scales the task-loss
// gradient by task_weight, then calls add_logits_grad with dL/dlogits [B, num_labels] and, after the
// head backward, add_hidden_grad with dL/d(encoder output) [B, head_T, D] (qft_model_encoder_output);
// each adds its term times loss_scale. Either callback may be NULL.
typedef struct {
    float task_weight;
    void *ctx;
    void (*add_logits_grad)(void *ctx, const struct qft_model *m, float *d_logits, float loss_scale);
    void (*add_hidden_grad)(void *ctx, const struct qft_model *m, float *d_hidden, float loss_scale);
} qft_output_loss;

typedef struct qft_model {
    qft_model_kind kind;
    const qft_backend *be;
    int D, num_layers, NH, F, num_labels;
    int image_size, patch_size, channels, num_patches, n_prefix;  // vision
    int vocab_size, max_positions, type_vocab_size, use_pooler;   // text
    int max_B, max_T;
    float ln_eps, dropout;
    qft_gelu_kind gelu;
    const char *prefix;                  // "vit.", "deit." or "bert."

    qft_param_table table;
    float *params, *grads;               // backend memory, table.total_floats each
    qft_model_weights w, g;              // named views into params and grads

    float *act_memory;
    qft_model_acts acts;
    qft_model_grad_scratch gs;

    // device copies of the current batch
    float *dev_images, *dev_mask, *dev_targets;
    int32_t *dev_ids, *dev_types, *dev_positions, *dev_labels;
    int cur_B, cur_T, has_mask;
    int prune_last_layer;   // ViT/DeiT: compute the last layer only for the CLS/distillation tokens
                            // (on by default; the loss and gradients are the same)
    int head_T;             // tokens per sequence in the encoder output of the last forward
    int cur_counted;        // rows that carry a label/target (labels >= 0)
    int cur_has_targets;
    float label_smoothing;  // set by the trainer (train.label_smoothing)

    // Fake quantization: every site is registered at creation (disabled); qft_model_quant_configure
    // applies a rule list. quant.mode switches between FP, quantized and calibration (observe).
    qft_quant_state quant;
    qft_layer_sites *layer_sites;   // [num_layers]
    qft_model_sites sites;

    const qft_output_loss *output_loss;  // NULL = the task loss only
} qft_model;

// Builds the parameter table and allocates parameters, gradients and activations for batches of up
// to max_batch rows (and cfg->data.max_seq_len tokens for BERT). Parameters are initialized randomly.
qft_status qft_model_create(qft_model *m, const qft_model_config *cfg, int max_batch, int max_seq_len,
                            const qft_backend *be, uint64_t seed, qft_error *err);
void qft_model_free(qft_model *m);

// Tokens per row of the encoder for the model's inputs (vision: patches + prefix tokens).
int qft_model_seq_len(const qft_model *m);

// Copies a host batch to the device buffers; checks sizes, ids and labels against the model.
qft_status qft_model_set_batch(qft_model *m, const qft_batch *batch, qft_error *err);

// Forward over the current batch. training != 0 applies dropout keyed by (seed, step).
// Returns the mean loss over counted rows (labels >= 0), or NAN if the batch has no labels.
float qft_model_forward(qft_model *m, int training, uint64_t seed, uint64_t step);

// An evaluation forward (no dropout) of the same architecture with other parameter values, with
// quantization OFF: the views m->w are bound to `params` (table.total_floats floats of backend
// memory in the table's layout, e.g. a frozen distillation teacher) for this forward only, then
// bound back to m->params, and the quant mode is restored. The activations hold its results until the
// next forward, so a teacher needs no activation memory of its own. Returns what qft_model_forward does.
float qft_model_forward_with_params(qft_model *m, float *params);

// Backward of (mean loss * loss_scale), plus m->output_loss's terms; ACCUMULATES into m->grads (zero
// them per optimizer step). Without an output loss, a batch without targets has nothing to do.
void qft_model_backward(qft_model *m, float loss_scale, uint64_t seed, uint64_t step);

void qft_model_zero_grads(qft_model *m);

// Applies a rule list to the model's quant sites and allocates what the enabled ones need
// (see qft_quant_configure). The mode stays QFT_QUANT_OFF until the caller sets m->quant.mode.
qft_status qft_model_quant_configure(qft_model *m, const qft_quant_rule_list *rules, qft_error *err);

// Non-finite values met by the quantizers in the last forward: an error naming the site, or QFT_OK.
qft_status qft_model_quant_check(qft_model *m, qft_error *err);

// The encoder output of the last forward in backend memory: [B, head_T, D], the last layer's output
// (BERT: HF's last_hidden_state; ViT/DeiT: before the final LayerNorm).
const float *qft_model_encoder_output(const qft_model *m);

// Host copies of results of the last forward.
void qft_model_read_logits(const qft_model *m, float *host_logits);        // [B, num_labels]
// [B, head_T, D]: HF's last_hidden_state. With prune_last_layer (ViT/DeiT default) only the first
// n_prefix tokens are computed, so head_T = n_prefix; set prune_last_layer = 0 for every token.
void qft_model_read_hidden(const qft_model *m, float *host_hidden);

// Hugging Face safetensors import. Names are matched as is, or without the family prefix ("bert.")
// for bare encoder checkpoints such as all-MiniLM-L6-v2. Every shape is checked. Missing head
// tensors (classifier, pooler) keep their random init and are listed on log; any other missing
// tensor is an error naming it. Unexpected tensors are listed on log (log may be NULL).
// *missing_head (may be NULL) receives the number of head tensors left at their init.
qft_status qft_model_import(qft_model *m, const char *path, FILE *log, int *missing_head, qft_error *err);

// The same, for fine-tuning from a pretrained checkpoint (model.init_from). With
// ignore_mismatched_sizes (Hugging Face from_pretrained's flag), a head tensor (classifier, DeiT's
// heads, pooler) whose shape differs from the model's keeps its init, is listed on log and counted
// in *missing_head, as a checkpoint fine-tuned for another number of labels needs; any other shape
// mismatch is still an error.
qft_status qft_model_import_pretrained(qft_model *m, const char *path, int ignore_mismatched_sizes, FILE *log,
                                       int *missing_head, qft_error *err);

// qft_model_import_pretrained into another parameter buffer of this model's layout (backend memory,
// table.total_floats floats, e.g. a distillation teacher); tensors the file lacks keep dest's values.
qft_status qft_model_import_into(qft_model *m, float *dest, const char *path, int ignore_mismatched_sizes,
                                 FILE *log, int *missing_head, qft_error *err);

// Writes every parameter under its HF name, as F32, F16 or BF16 (dtype from host/io/safetensors.h).
qft_status qft_model_export(const qft_model *m, const char *path, int dtype, qft_error *err);

#endif
