// Forward and backward of one transformer encoder layer over backend ops, pre-LN and post-LN.
// Both placements share the attention and MLP sub-blocks; only where LayerNorm sits differs.
#include "encoder.h"

#include <math.h>

size_t qft_layer_acts_floats(int N, int D, int F, size_t probs_floats) {
    size_t nd = (size_t)N * D, nf = (size_t)N * F;
    // ln1_out qkv(3) attn proj resid1 ln2_out fc2 resid2 = 10 x [N,D]; fc1 gelu = 2 x [N,F]; 4 x [N] stats
    return 10 * nd + 2 * nf + 4 * (size_t)N + probs_floats;
}

void qft_layer_acts_carve(qft_layer_acts *a, float *block, int N, int D, int F, size_t probs_floats) {
    size_t nd = (size_t)N * D, nf = (size_t)N * F;
    float *p = block;
    a->ln1_out = p; p += nd;
    a->qkv = p; p += 3 * nd;
    a->attn = p; p += nd;
    a->proj = p; p += nd;
    a->resid1 = p; p += nd;
    a->ln2_out = p; p += nd;
    a->fc2 = p; p += nd;
    a->resid2 = p; p += nd;
    a->fc1 = p; p += nf;
    a->gelu = p; p += nf;
    a->ln1_mean = p; p += N;
    a->ln1_rstd = p; p += N;
    a->ln2_mean = p; p += N;
    a->ln2_rstd = p; p += N;
    a->probs = p;
}

const float *qft_encoder_output(const qft_layer_acts *a, int prenorm) {
    return prenorm ? a->resid2 : a->ln2_out;
}

// A site of the layer, or NULL when the layer has none.
#define SITE(s, field) ((s)->sites ? (s)->sites->field : NULL)

// Dropout streams within a layer: one per dropout site.
enum { STREAM_ATTN_PROJ = 0, STREAM_MLP_OUT = 1 };

static void maybe_dropout_forward(const qft_backend *be, const qft_layer_shape *s, float *x, size_t n, int site) {
    if (s->dropout > 0.0f) be->dropout_forward(x, x, n, s->dropout, s->seed, s->stream_base + (uint64_t)site);
}

// Returns the gradient w.r.t. the pre-dropout tensor: dout itself when dropout is off,
// else the masked copy written into scratch (zeroed first since backward ops accumulate).
static const float *maybe_dropout_backward(const qft_backend *be, const qft_layer_shape *s, const float *dout,
                                           float *scratch, size_t n, int site) {
    if (s->dropout <= 0.0f) return dout;
    be->zero(scratch, n * sizeof(float));
    be->dropout_backward(scratch, dout, n, s->dropout, s->seed, s->stream_base + (uint64_t)site);
    return scratch;
}

// q/k/v projections over all rows and the attention core for the first `queries` tokens of each
// sequence: x_in -> attn_out [B, queries, D] (before the output projection).
static void attention_core_forward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                                   qft_layer_acts *a, const float *x_in, float *attn_out, int queries) {
    int N = s->B * s->T, D = s->D, HS = D / s->NH;
    qft_qlinear_forward(be, s->quant, SITE(s, qkv_w), SITE(s, qkv_in), a->qkv, x_in, p->qkv_w, p->qkv_b, N, D, 3 * D);
    if (qft_site_probs_wants_measure(s->quant, SITE(s, probs))) {
        // A method measures this forward's probabilities before it draws their noise (noise.adapt_every): a
        // first pass computes them (its output is overwritten below).
        be->attention_forward(attn_out, a->probs, a->qkv, a->qkv + D, a->qkv + 2 * D, 3 * D, s->key_mask, s->B,
                              s->T, queries, s->NH, HS, 1.0f / sqrtf((float)HS), NULL);
        qft_site_probs_measure(s->quant, SITE(s, probs), a->probs, s->B * s->NH * queries, s->T);
    }
    qft_prob_storage storage;
    const qft_prob_quant *pq = qft_site_probs(s->quant, SITE(s, probs), &storage);
    be->attention_forward(attn_out, a->probs, a->qkv, a->qkv + D, a->qkv + 2 * D, 3 * D, s->key_mask, s->B, s->T,
                          queries, s->NH, HS, 1.0f / sqrtf((float)HS), pq);
    qft_site_probs_observe(s->quant, SITE(s, probs), a->probs, s->B * s->NH * queries, s->T);
}

// Output projection (+ dropout) of `rows` rows of attention output into a->proj.
static void projection_forward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                               qft_layer_acts *a, const float *attn, int rows) {
    qft_qlinear_forward(be, s->quant, SITE(s, proj_w), SITE(s, proj_in), a->proj, attn, p->o_w, p->o_b, rows, s->D,
                        s->D);
    maybe_dropout_forward(be, s, a->proj, (size_t)rows * s->D, STREAM_ATTN_PROJ);
}

// attn(x_in) -> a->proj (after dropout).
static void attention_block_forward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                                    qft_layer_acts *a, const float *x_in) {
    attention_core_forward(be, s, p, a, x_in, a->attn, s->T);
    projection_forward(be, s, p, a, a->attn, s->B * s->T);
}

// Output projection backward over `rows` rows: d_proj -> d_attn (written; the caller need not zero it).
static void projection_backward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                                const qft_layer_params *g, const float *attn, qft_layer_scratch *sc,
                                const float *d_proj, float *d_attn, int rows) {
    int D = s->D;
    const float *d_proj_pre = maybe_dropout_backward(be, s, d_proj, sc->d_tmp, (size_t)rows * D, STREAM_ATTN_PROJ);
    qft_qlinear_backward_ex(be, s->quant, SITE(s, proj_w), SITE(s, proj_in), d_attn, 1, g->o_w, g->o_b, d_proj_pre,
                            attn, p->o_w, rows, D, D);
}

// Attention core backward from d_attn ([B, queries, D]); accumulates dL/dx_in into d_x_in, or writes it when
// d_x_in_write (its old contents ignored: no zeroing, and a quantized input masks its gradient in place).
static void attention_core_backward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                                    const qft_layer_params *g, const qft_layer_acts *a, const float *x_in,
                                    qft_layer_scratch *sc, const float *d_attn, int queries, float *d_x_in,
                                    int d_x_in_write) {
    int N = s->B * s->T, D = s->D, HS = D / s->NH;
    be->zero(sc->d_qkv, 3 * (size_t)N * D * sizeof(float));
    qft_prob_storage storage;  // the same noise as the forward's (a pure function of seed, step, site, element)
    const qft_prob_quant *pq = qft_site_probs(s->quant, SITE(s, probs), &storage);
    be->attention_backward(sc->d_qkv, sc->d_qkv + D, sc->d_qkv + 2 * D, d_attn, a->probs, a->qkv, a->qkv + D,
                           a->qkv + 2 * D, 3 * D, s->B, s->T, queries, s->NH, HS, 1.0f / sqrtf((float)HS), pq);
    qft_qlinear_backward_ex(be, s->quant, SITE(s, qkv_w), SITE(s, qkv_in), d_x_in, d_x_in_write, g->qkv_w, g->qkv_b,
                            sc->d_qkv, x_in, p->qkv_w, N, D, 3 * D);
}

// d_proj: gradient at the attention block's output; accumulates dL/dx_in into d_x_in.
static void attention_block_backward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                                     const qft_layer_params *g, const qft_layer_acts *a, const float *x_in,
                                     qft_layer_scratch *sc, const float *d_proj, float *d_x_in, int d_x_in_write) {
    int N = s->B * s->T;
    projection_backward(be, s, p, g, a->attn, sc, d_proj, sc->d_attn, N);
    attention_core_backward(be, s, p, g, a, x_in, sc, sc->d_attn, s->T, d_x_in, d_x_in_write);
}

// mlp(x_in) -> a->fc2 (after dropout).
static void mlp_block_forward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                              qft_layer_acts *a, const float *x_in) {
    int N = s->B * s->T, D = s->D, F = s->F;
    qft_qlinear_forward(be, s->quant, SITE(s, fc1_w), SITE(s, fc1_in), a->fc1, x_in, p->fc1_w, p->fc1_b, N, D, F);
    be->gelu_forward(a->gelu, a->fc1, (size_t)N * F, s->gelu);
    qft_qlinear_forward(be, s->quant, SITE(s, fc2_w), SITE(s, fc2_in), a->fc2, a->gelu, p->fc2_w, p->fc2_b, N, F, D);
    maybe_dropout_forward(be, s, a->fc2, (size_t)N * D, STREAM_MLP_OUT);
}

static void mlp_block_backward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                               const qft_layer_params *g, const qft_layer_acts *a, const float *x_in,
                               qft_layer_scratch *sc, const float *d_out, float *d_x_in, int d_x_in_write) {
    int N = s->B * s->T, D = s->D, F = s->F;
    size_t nf = (size_t)N * F;
    const float *d_fc2 = maybe_dropout_backward(be, s, d_out, sc->d_tmp, (size_t)N * D, STREAM_MLP_OUT);
    qft_qlinear_backward_ex(be, s->quant, SITE(s, fc2_w), SITE(s, fc2_in), sc->d_gelu, 1, g->fc2_w, g->fc2_b, d_fc2,
                            a->gelu, p->fc2_w, N, F, D);
    be->zero(sc->d_fc1, nf * sizeof(float));
    be->gelu_backward(sc->d_fc1, a->fc1, sc->d_gelu, nf, s->gelu);
    qft_qlinear_backward_ex(be, s->quant, SITE(s, fc1_w), SITE(s, fc1_in), d_x_in, d_x_in_write, g->fc1_w, g->fc1_b,
                            sc->d_fc1, x_in, p->fc1_w, N, D, F);
}

void qft_encoder_prenorm_forward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                                 qft_layer_acts *a, const float *x) {
    int N = s->B * s->T, D = s->D;
    size_t nd = (size_t)N * D;
    be->layernorm_forward(a->ln1_out, a->ln1_mean, a->ln1_rstd, x, p->ln1_w, p->ln1_b, N, D, s->ln_eps);
    qft_site_output_forward(s->quant, SITE(s, ln1), a->ln1_out, N);
    attention_block_forward(be, s, p, a, a->ln1_out);
    be->add_forward(a->resid1, x, a->proj, nd);
    qft_site_output_forward(s->quant, SITE(s, resid1), a->resid1, N);
    be->layernorm_forward(a->ln2_out, a->ln2_mean, a->ln2_rstd, a->resid1, p->ln2_w, p->ln2_b, N, D, s->ln_eps);
    qft_site_output_forward(s->quant, SITE(s, ln2), a->ln2_out, N);
    mlp_block_forward(be, s, p, a, a->ln2_out);
    be->add_forward(a->resid2, a->resid1, a->fc2, nd);
    qft_site_output_forward(s->quant, SITE(s, resid2), a->resid2, N);
}

void qft_encoder_prenorm_backward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                                  const qft_layer_params *g, const qft_layer_acts *a, const float *x,
                                  qft_layer_scratch *sc, float *d_stream) {
    int N = s->B * s->T, D = s->D;
    // y = h + mlp(LN2(h)): the MLP path reads dL/dy from d_stream before LN2's backward adds its part,
    // after which d_stream holds dL/dh. Quantized stream tensors pass their gradient through the STE
    // once it is complete (qft_site_output_backward; a no-op for disabled sites).
    qft_site_output_backward(s->quant, SITE(s, resid2), d_stream, N);
    mlp_block_backward(be, s, p, g, a, a->ln2_out, sc, d_stream, sc->d_ln, 1);
    qft_site_output_backward(s->quant, SITE(s, ln2), sc->d_ln, N);
    be->layernorm_backward(d_stream, g->ln2_w, g->ln2_b, sc->d_ln, a->resid1, p->ln2_w, a->ln2_mean, a->ln2_rstd,
                           N, D);
    qft_site_output_backward(s->quant, SITE(s, resid1), d_stream, N);
    // h = x + attn(LN1(x)): same pattern, d_stream ends as dL/dx.
    attention_block_backward(be, s, p, g, a, a->ln1_out, sc, d_stream, sc->d_ln, 1);
    qft_site_output_backward(s->quant, SITE(s, ln1), sc->d_ln, N);
    be->layernorm_backward(d_stream, g->ln1_w, g->ln1_b, sc->d_ln, x, p->ln1_w, a->ln1_mean, a->ln1_rstd, N, D);
}

void qft_encoder_postnorm_forward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                                  qft_layer_acts *a, const float *x) {
    int N = s->B * s->T, D = s->D;
    size_t nd = (size_t)N * D;
    attention_block_forward(be, s, p, a, x);
    be->add_forward(a->resid1, x, a->proj, nd);
    qft_site_output_forward(s->quant, SITE(s, resid1), a->resid1, N);
    be->layernorm_forward(a->ln1_out, a->ln1_mean, a->ln1_rstd, a->resid1, p->ln1_w, p->ln1_b, N, D, s->ln_eps);
    qft_site_output_forward(s->quant, SITE(s, ln1), a->ln1_out, N);
    mlp_block_forward(be, s, p, a, a->ln1_out);
    be->add_forward(a->resid2, a->ln1_out, a->fc2, nd);
    qft_site_output_forward(s->quant, SITE(s, resid2), a->resid2, N);
    be->layernorm_forward(a->ln2_out, a->ln2_mean, a->ln2_rstd, a->resid2, p->ln2_w, p->ln2_b, N, D, s->ln_eps);
    qft_site_output_forward(s->quant, SITE(s, ln2), a->ln2_out, N);
}

void qft_encoder_postnorm_backward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                                   const qft_layer_params *g, const qft_layer_acts *a, const float *x,
                                   qft_layer_scratch *sc, float *d_stream) {
    int N = s->B * s->T, D = s->D;
    size_t nd = (size_t)N * D;
    float *d_mid = sc->d_stream2;
    // y = LN2(a + mlp(a)): d_mid = dL/d(resid2), then the MLP path adds into it, giving dL/da.
    // Quantized stream tensors pass their complete gradient through the STE (no-op when disabled).
    qft_site_output_backward(s->quant, SITE(s, ln2), d_stream, N);
    be->zero(d_mid, nd * sizeof(float));
    be->layernorm_backward(d_mid, g->ln2_w, g->ln2_b, d_stream, a->resid2, p->ln2_w, a->ln2_mean, a->ln2_rstd,
                           N, D);
    qft_site_output_backward(s->quant, SITE(s, resid2), d_mid, N);
    mlp_block_backward(be, s, p, g, a, a->ln1_out, sc, d_mid, d_mid, 0);
    qft_site_output_backward(s->quant, SITE(s, ln1), d_mid, N);
    // a = LN1(x + attn(x)): d_stream = dL/d(resid1), then the attention path adds into it: dL/dx.
    be->zero(d_stream, nd * sizeof(float));
    be->layernorm_backward(d_stream, g->ln1_w, g->ln1_b, d_mid, a->resid1, p->ln1_w, a->ln1_mean, a->ln1_rstd,
                           N, D);
    qft_site_output_backward(s->quant, SITE(s, resid1), d_stream, N);
    attention_block_backward(be, s, p, g, a, x, sc, d_stream, d_stream, 0);
}

// The last ViT layer feeds only its first `keep` tokens to the head (CLS, and DeiT's distillation
// token), so only those rows are computed past the q/k/v projection: keys and values still come
// from every token, but the attention queries, projection, residual, LN2 and MLP run on B*keep rows
// instead of B*T. The loss and every gradient are unchanged; the skipped rows are the 16/17 of the
// layer that nothing reads.
void qft_encoder_prenorm_prefix_forward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                                        qft_layer_acts *a, const float *x, int keep) {
    int N = s->B * s->T, D = s->D, rows = s->B * keep;
    qft_layer_shape kept = *s;
    kept.T = keep;
    be->layernorm_forward(a->ln1_out, a->ln1_mean, a->ln1_rstd, x, p->ln1_w, p->ln1_b, N, D, s->ln_eps);
    qft_site_output_forward(s->quant, SITE(s, ln1), a->ln1_out, N);
    attention_core_forward(be, s, p, a, a->ln1_out, a->attn, keep);
    projection_forward(be, &kept, p, a, a->attn, rows);
    be->select_tokens_forward(a->resid1, x, s->B, s->T, D, 0, keep);
    be->add_forward(a->resid1, a->resid1, a->proj, (size_t)rows * D);
    qft_site_output_forward(s->quant, SITE(s, resid1), a->resid1, rows);
    be->layernorm_forward(a->ln2_out, a->ln2_mean, a->ln2_rstd, a->resid1, p->ln2_w, p->ln2_b, rows, D, s->ln_eps);
    qft_site_output_forward(s->quant, SITE(s, ln2), a->ln2_out, rows);
    mlp_block_forward(be, &kept, p, a, a->ln2_out);
    be->add_forward(a->resid2, a->resid1, a->fc2, (size_t)rows * D);
    qft_site_output_forward(s->quant, SITE(s, resid2), a->resid2, rows);
}

void qft_encoder_prenorm_prefix_backward(const qft_backend *be, const qft_layer_shape *s, const qft_layer_params *p,
                                         const qft_layer_params *g, const qft_layer_acts *a, const float *x,
                                         qft_layer_scratch *sc, float *d_stream, int keep) {
    int N = s->B * s->T, D = s->D, rows = s->B * keep;
    size_t kept_floats = (size_t)rows * D;
    qft_layer_shape kept = *s;
    kept.T = keep;
    // MLP and LN2 on the kept rows: d_stream (compact) goes from dL/dy to dL/d(resid1).
    qft_site_output_backward(s->quant, SITE(s, resid2), d_stream, rows);
    mlp_block_backward(be, &kept, p, g, a, a->ln2_out, sc, d_stream, sc->d_ln, 1);
    qft_site_output_backward(s->quant, SITE(s, ln2), sc->d_ln, rows);
    be->layernorm_backward(d_stream, g->ln2_w, g->ln2_b, sc->d_ln, a->resid1, p->ln2_w, a->ln2_mean, a->ln2_rstd,
                           rows, D);
    qft_site_output_backward(s->quant, SITE(s, resid1), d_stream, rows);
    // Projection on the kept rows: the attention output gradient of the kept queries.
    projection_backward(be, &kept, p, g, a->attn, sc, d_stream, sc->d_attn, rows);
    // The residual: dL/dx gets dL/d(resid1) at the kept rows; d_stream becomes the full [N, D] gradient.
    be->copy(sc->d_stream2, d_stream, kept_floats * sizeof(float));
    be->zero(d_stream, (size_t)N * D * sizeof(float));
    be->select_tokens_backward(d_stream, sc->d_stream2, s->B, s->T, D, 0, keep);
    attention_core_backward(be, s, p, g, a, a->ln1_out, sc, sc->d_attn, keep, sc->d_ln, 1);
    qft_site_output_backward(s->quant, SITE(s, ln1), sc->d_ln, N);
    be->layernorm_backward(d_stream, g->ln1_w, g->ln1_b, sc->d_ln, x, p->ln1_w, a->ln1_mean, a->ln1_rstd, N, D);
}
