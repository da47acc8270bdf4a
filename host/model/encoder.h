// One transformer encoder layer, forward and backward, in the two placements qft needs:
// pre-LN (ViT/DeiT: x + attn(LN(x)), then + mlp(LN(.))) and post-LN (BERT: LN(x + attn(x)), LN(. + mlp(.))).
#ifndef QFT_MODEL_ENCODER_H
#define QFT_MODEL_ENCODER_H

#include <stdint.h>

#include "../backend/backend.h"
#include "../quant/site.h"

// Pointers into the parameter (or gradient) buffer for one layer.
// qkv_w is HF's query, key and value weights registered back to back ([3D, D]) and qkv_b their
// biases ([3D]), so the three projections run as one GEMM.
// ln1 is ViT's layernorm_before / BERT's attention.output.LayerNorm;
// ln2 is ViT's layernorm_after / BERT's output.LayerNorm.
typedef struct {
    float *qkv_w, *qkv_b, *o_w, *o_b;
    float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    float *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} qft_layer_params;

// Activations one layer saves for its backward pass; sized for N = B*T rows.
typedef struct {
    float *ln1_out, *ln1_mean, *ln1_rstd;  // pre-LN: LN(x); post-LN: LN(x + attn) = the layer's "a"
    float *qkv;                            // [N, 3D]: q | k | v per row
    float *probs;                          // [B, NH, T, T] (prefix layer: [B, NH, keep, T])
    float *attn;                           // attention output before the projection [N, D]
                                           // (prefix layer: the kept tokens only, [B*keep, D])
    float *proj;                           // projection output after dropout [N, D]
    float *resid1;                         // pre-LN: h = x + proj; post-LN: x + proj
    float *ln2_out, *ln2_mean, *ln2_rstd;  // pre-LN: LN(h); post-LN: the layer output y
    float *fc1;                            // [N, F] before GELU
    float *gelu;                           // [N, F]
    float *fc2;                            // [N, D] after dropout
    float *resid2;                         // pre-LN: the layer output y; post-LN: a + fc2
} qft_layer_acts;

// Scratch gradient buffers shared by all layers during backward (zeroed per layer).
typedef struct {
    float *d_ln, *d_attn, *d_tmp;                   // [N, D]
    float *d_qkv;                                   // [N, 3D]
    float *d_fc1, *d_gelu;                          // [N, F]
    float *d_stream2;                               // [N, D] second residual buffer (post-LN)
} qft_layer_scratch;

// The quant sites of one layer (NULL = not registered). Names: layers.<i>.<field with dots>, e.g.
// qkv_w = "layers.3.qkv.weight", probs = "layers.3.attn.probs", resid1 = "layers.3.resid1.output".
typedef struct {
    qft_quant_site *qkv_w, *qkv_in, *proj_w, *proj_in, *fc1_w, *fc1_in, *fc2_w, *fc2_in;
    qft_quant_site *probs, *ln1, *ln2, *resid1, *resid2;
} qft_layer_sites;

typedef struct {
    int B, T, D, NH, F;
    float ln_eps;
    qft_gelu_kind gelu;
    float dropout;             // hidden dropout probability (0 = off)
    uint64_t seed;             // dropout key: (seed, step) -> stream per site
    uint64_t stream_base;      // distinct per layer and step
    const float *key_mask;     // [B, T] or NULL
    qft_quant_state *quant;    // fake quantization (NULL = none)
    const qft_layer_sites *sites;  // this layer's sites (NULL = none)
} qft_layer_shape;

// Number of floats of activations one layer needs at (N rows, B*NH*T*T probs).
size_t qft_layer_acts_floats(int N, int D, int F, size_t probs_floats);
// Carves the activation struct out of a contiguous block of qft_layer_acts_floats floats.
void qft_layer_acts_carve(qft_layer_acts *acts, float *block, int N, int D, int F, size_t probs_floats);

// x: the layer input [N, D]. Output: acts->resid2 (pre-LN) or acts->ln2_out (post-LN).
void qft_encoder_prenorm_forward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                                 qft_layer_acts *a, const float *x);
// d_stream holds dL/dy on entry and dL/dx on return (accumulated in place).
void qft_encoder_prenorm_backward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                                  const qft_layer_params *g, const qft_layer_acts *a, const float *x,
                                  qft_layer_scratch *scratch, float *d_stream);

void qft_encoder_postnorm_forward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                                  qft_layer_acts *a, const float *x);
// d_stream holds dL/dy on entry and dL/dx on return (overwritten).
void qft_encoder_postnorm_backward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                                   const qft_layer_params *g, const qft_layer_acts *a, const float *x,
                                   qft_layer_scratch *scratch, float *d_stream);

// Pre-LN layer computing outputs only for the first `keep` tokens of each sequence (the last ViT
// layer before a CLS head). Output: acts->resid2 as [B, keep, D].
void qft_encoder_prenorm_prefix_forward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                                        qft_layer_acts *a, const float *x, int keep);
// d_stream: dL/dy as [B*keep, D] on entry; the full dL/dx [B*T, D] on return (capacity B*T*D).
void qft_encoder_prenorm_prefix_backward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                                         const qft_layer_params *g, const qft_layer_acts *a, const float *x,
                                         qft_layer_scratch *scratch, float *d_stream, int keep);

// Output of the layer (pointer into acts) for either placement.
const float *qft_encoder_output(const qft_layer_acts *a, int prenorm);

#endif
