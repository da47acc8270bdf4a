// Quant sites: the named tensors of a model that can be fake-quantized (linear weights and inputs,
// attention probabilities, LayerNorm outputs, residual sums, embeddings, heads), their formats from
// the config's rule list, their quantizer parameters and buffers, and forward/backward helpers.
#ifndef QFT_QUANT_SITE_H
#define QFT_QUANT_SITE_H

#include <stddef.h>
#include <stdint.h>

#include "../backend/backend.h"
#include "../core/status.h"
#include "../io/config.h"
#include "format.h"

typedef enum {
    QFT_SITE_WEIGHT = 0,  // a linear weight [rows, C]: quantized once per forward into `buffer`
    QFT_SITE_INPUT,       // a linear's input [rows, C]: x_hat goes to `buffer`, the source stays as is
    QFT_SITE_OUTPUT,      // a tensor of the stream (LN output, residual sum, embedding output): quantized
                          // in place; `buffer` keeps the unquantized copy for the STE mask
    QFT_SITE_PROBS        // attention probabilities: quantized inside the attention op (per tensor)
} qft_site_role;

typedef struct {
    char name[96];
    qft_site_role role;
    int rows, C;                 // WEIGHT: its shape; others: row capacity and channels (last dim)
    int rule;                    // index of the rule that matched, -1 = none
    qft_quant_format fmt;        // fmt.enabled = 0: the site passes values through
    int n_params;                // (scale, zero_point) pairs
    size_t param_offset;         // into the state's params / grads
    float *scale, *zero_point;   // backend memory
    float *dscale, *dzero;       // gradients (learnable formats), backend memory
    int32_t *column_group;       // granularity group / peg on activations: [C] group of each channel
    qft_fq_layout layout;
    int calibrated;              // scale/zero_point hold a range (from calibration or a checkpoint)
    float *weight, *grad;        // WEIGHT: the parameter and its gradient
    float *buffer;               // see the roles
    int last_rows;               // rows seen by the last forward (INPUT/OUTPUT)
    float noise_amplitude;       // adaptive noise fine-tuning's a_site (host/method/noise.c); checkpointed
} qft_quant_site;

typedef enum {
    QFT_QUANT_OFF = 0,      // every site passes through (the FP model)
    QFT_QUANT_ON,           // enabled sites fake-quantize
    QFT_QUANT_OBSERVE       // enabled sites pass through and show their tensor to the observer (calibration)
} qft_quant_mode;

struct qft_quant_state;
// Called in QFT_QUANT_OBSERVE mode with a site's tensor: x is backend memory holding rows x C floats
// (the CPU backend's memory is host memory; an observer for other backends copies it first).
typedef void (*qft_site_observer)(void *ctx, struct qft_quant_state *state, int site, const float *x, int rows, int C);

// Fine-tuning methods (host/method/) attach here: every named activation passes these points.
//   observe:  an INPUT / OUTPUT site's unquantized tensor x [rows, C] in QFT_QUANT_OFF / ON modes, whether or
//             not the site is enabled; x stays valid until the backward (OUTPUT sites that quantize pass
//             their unquantized copy).
//   quantize: in place of the fake quantizer of an active site (WEIGHT, INPUT, OUTPUT): returns 1 when it
//             wrote out (and the count of non-finite inputs), 0 to let the real quantizer run. The backward
//             stays the quantizer's (STE / LSQ).
//   backward: ACCUMULATES the method's gradient w.r.t. the observed x into dx [rows, C], once dx holds
//             dL/dx (after the STE of an active site).
// PROBS sites (the attention op quantizes them), may be NULL:
//   probs_noise:   for an active PROBS site with quantizer pq, in the forward and the backward: returns 1 and
//                  fills *noise with the noise the op draws in place of pq (qft_prob_quant.noise), 0 for the
//                  real quantizer. Must give the same noise in a micro-batch's forward and backward.
//   probs_measure: in the forward, before probs_noise. probs == NULL: returns 1 when the method needs this
//                  forward's unquantized probabilities first; the caller then computes them (the attention op
//                  without quantizer) and calls again with them, [rows, T] (the return value then unused).
typedef struct {
    void *ctx;
    void (*observe)(void *ctx, struct qft_quant_state *st, int site, const float *x, int rows);
    int (*quantize)(void *ctx, struct qft_quant_state *st, int site, float *out, const float *x, int rows,
                    size_t *nonfinite);
    void (*backward)(void *ctx, struct qft_quant_state *st, int site, float *dx, int rows);
    int (*probs_noise)(void *ctx, struct qft_quant_state *st, int site, const qft_prob_quant *pq,
                       qft_quant_noise *noise);
    int (*probs_measure)(void *ctx, struct qft_quant_state *st, int site, const qft_prob_quant *pq,
                         const float *probs, int rows, int T);
} qft_site_hooks;

typedef struct qft_quant_state {
    const qft_backend *be;
    int count, capacity;
    qft_quant_site *sites;
    float *params, *grads;       // every site's scales and zero points (zero points after scales per site)
    size_t param_floats;
    float *buffers;              // every enabled site's buffer
    int32_t *groups;             // column_group maps
    float *scratch_input;        // backward scratch: dL/dx_hat of one INPUT/OUTPUT site
    float *scratch_weight;       // backward scratch: dL/dW_hat of one WEIGHT site
    size_t scratch_input_floats, scratch_weight_floats;
    qft_quant_mode mode;
    qft_site_observer observe;
    void *observe_ctx;
    size_t nonfinite;            // non-finite values met by quantizers since the last reset
    int nonfinite_site;          // the first site that met one (-1 = none)
    int enabled_count;
    const qft_site_hooks *hooks; // NULL = no method hooks
} qft_quant_state;

void qft_quant_state_init(qft_quant_state *st, const qft_backend *be);
void qft_quant_state_free(qft_quant_state *st);

// Registers a site (all sites start disabled). WEIGHT sites pass the parameter and its gradient.
qft_status qft_quant_add_site(qft_quant_state *st, const char *name, qft_site_role role, int rows, int C,
                              float *weight, float *grad, qft_error *err);

// Gives every site the format of the first matching rule (fnmatch), checks that the format suits the
// role (e.g. log kinds only on probabilities, learnable only on weights and inputs, group sizes that
// divide the channels) and allocates parameters and buffers of the enabled sites. Scales start at 1,
// zero points at 0, calibrated = 0. Call once, before use.
qft_status qft_quant_configure(qft_quant_state *st, const qft_quant_rule_list *rules, qft_error *err);

// Index of the site called `name`, or -1.
int qft_quant_find(const qft_quant_state *st, const char *name);

// 1 when the site fake-quantizes in the current mode.
static inline int qft_site_active(const qft_quant_state *st, const qft_quant_site *site) {
    return st && site && site->fmt.enabled && st->mode == QFT_QUANT_ON;
}
static inline int qft_site_observed(const qft_quant_state *st, const qft_quant_site *site) {
    return st && site && site->fmt.enabled && st->mode == QFT_QUANT_OBSERVE && st->observe;
}

// Forward helpers (no-ops returning the input when the site is NULL, disabled or the mode is OFF).
// Every WEIGHT site: W_hat = Q(W) into its buffer (QFT_QUANT_ON), or shown to the observer (OBSERVE).
void qft_quant_weights_forward(qft_quant_state *st);
const float *qft_site_weight(const qft_quant_state *st, const qft_quant_site *site, const float *weight);
const float *qft_site_input_forward(qft_quant_state *st, qft_quant_site *site, const float *x, int rows);
void qft_site_output_forward(qft_quant_state *st, qft_quant_site *site, float *x, int rows);
// The attention op's probability quantizer, or NULL (fills *storage); in a training micro-batch a method's noise
// may stand in for it (result->noise = &storage->noise, from the probs_noise hook). Forward and backward.
typedef struct {
    qft_prob_quant quant;
    qft_prob_noise noise;
} qft_prob_storage;
const qft_prob_quant *qft_site_probs(qft_quant_state *st, qft_quant_site *site, qft_prob_storage *storage);
// In the forward, before qft_site_probs: 1 when a method needs this forward's unquantized probabilities first
// (the noise amplitude is measured on them). The caller then runs the attention op without quantizer and passes
// the probabilities [rows, T] to qft_site_probs_measure.
int qft_site_probs_wants_measure(qft_quant_state *st, qft_quant_site *site);
void qft_site_probs_measure(qft_quant_state *st, qft_quant_site *site, const float *probs, int rows, int T);
// Probabilities [rows, T] shown to the observer (calibration of a probs site).
void qft_site_probs_observe(qft_quant_state *st, qft_quant_site *site, const float *probs, int rows, int T);

// Linear layer with optional weight and input sites: out = x_hat @ W_hat^T + b.
// `st` may be NULL (no quantization at all).
void qft_qlinear_forward(const qft_backend *be, qft_quant_state *st, qft_quant_site *w_site, qft_quant_site *x_site,
                         float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC);
// Its backward: ACCUMULATES dL/dinp (through the input STE), dL/dW (through the weight STE), dL/db
// and the learnable quantizer gradients. `inp` is the unquantized input of the forward.
void qft_qlinear_backward(const qft_backend *be, qft_quant_state *st, qft_quant_site *w_site, qft_quant_site *x_site,
                          float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                          const float *weight, int N, int C, int OC);
// The same with dinp_write = 1: dinp's old contents are ignored and dL/dinp is WRITTEN (for a buffer this call
// alone fills; the caller need not zero it). A quantized input's STE then masks the GEMM's dL/dx_hat in place in
// dinp: no scratch to clear, no second pass over dinp. Same values as accumulating into zeros.
void qft_qlinear_backward_ex(const qft_backend *be, qft_quant_state *st, qft_quant_site *w_site,
                             qft_quant_site *x_site, float *dinp, int dinp_zeroed, float *dweight, float *dbias,
                             const float *dout, const float *inp, const float *weight, int N, int C, int OC);
// In-place STE for an OUTPUT site: d (dL/dx_hat on entry) becomes dL/dx.
void qft_site_output_backward(qft_quant_state *st, qft_quant_site *site, float *d, int rows);

// Keeps every scale >= QFT_QUANT_MIN_SCALE after an optimizer step (a learned step cannot cross 0).
void qft_quant_clamp_scales(qft_quant_state *st);

// Zeroes the quantizer parameter gradients (once per optimizer step, like the model's).
void qft_quant_zero_grads(qft_quant_state *st);

// LSQ gradient scale 1/sqrt(N * Qp), N = elements per quantizer group (Esser et al. 2020, §2.2).
float qft_site_lsq_grad_factor(const qft_quant_site *site, int rows);

#endif
