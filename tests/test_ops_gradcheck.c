// Finite-difference gradient checks of every backward in the CPU backend's op table, plus the
// accumulate (+=) and NULL-grad conventions, Philox dropout masks, and AdamW against a hand-computed step.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/rng.h"
#define QFT_TEST_RNG_SEED 0x9E3779B97F4A7C15ull
#include "test_util.h"

// ---------------------------------------------------------------------------------------------
// Tolerances.
// The ops run in fp32; the loss L = sum(out * w) is summed in double and differenced centrally with
// step h = 1e-2 (inputs are O(1), at most ~4), dividing by the actual float step (x+h) - (x-h).
//  - rounding: only outputs that depend on the perturbed input change; each carries ~1 ulp
//    (6e-8 relative) error, so with <= a few hundred affected outputs of size O(1) the error of
//    L(x+h) - L(x-h) is <~ 1e-6, i.e. <~ 5e-5 after dividing by 2h.
//  - truncation: h^2/6 * |f'''| ~ 2e-5 for the O(1)-curvature functions tested here.
// So 1e-3 relative to the largest gradient magnitude (floor 1e-2) has >= 10x margin.
// One case breaks the "few hundred outputs" premise: attention with a 1024-wide head (to reach the
// per-key-dot code path), where a perturbed key moves 2 x 1024 outputs and the rounding term is
// ~2e-4 at h = 1e-2 (measured to scale as 1/h). It uses h = 5e-2, where both terms are <~ 1e-4.
#define GRADCHECK_STEP 1e-2
#define GRADCHECK_STEP_WIDE_HEAD 5e-2
#define GRADCHECK_TOLERANCE 1e-3
// Three backward calls into zeroed grads must give three times one call. An op that overwrites
// instead of accumulating is off by O(1); a correct one differs only by fp32 rounding of the in-place
// sums (<= K * 6e-8 for K terms per element, K <= ~260 here, e.g. dk over all queries).
#define ACCUMULATE_TOLERANCE 1e-4
// AdamW vs the same formula in double: a handful of fp32 roundings per element.
#define ADAMW_TOLERANCE 1e-6

static const qft_backend *backend;

static float *copy_tensor(const float *src, size_t n) {
    float *t = malloc((n ? n : 1) * sizeof(float));
    memcpy(t, src, n * sizeof(float));
    return t;
}
static double weighted_sum(const float *out, const float *weights, size_t n) {
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += (double)out[i] * (double)weights[i];
    return sum;
}

// ---- generic driver ----
// One differentiable input of an op: its values, the gradient buffer backward accumulates into,
// and how many of its elements to probe (0 = all; large tensors are sampled at random).
typedef struct {
    const char *name;
    float *values;
    float *grad;
    size_t n;
    size_t samples;
} grad_slot;

typedef double (*loss_function)(void *ctx);    // runs the forward on current values, returns L
typedef void (*backward_function)(void *ctx);  // accumulates dL/d(inputs) into the slots' grads

static void gradcheck(const char *op, void *ctx, loss_function loss, backward_function backward, grad_slot *slots,
                      int slot_count, double step) {
    // Once into zeroed grads: the analytic gradient.
    float **analytic = malloc((size_t)slot_count * sizeof(float *));
    for (int s = 0; s < slot_count; s++) memset(slots[s].grad, 0, slots[s].n * sizeof(float));
    backward(ctx);
    for (int s = 0; s < slot_count; s++) analytic[s] = copy_tensor(slots[s].grad, slots[s].n);

    // Twice more: the grads must now hold three times the gradient (backward accumulates).
    backward(ctx);
    backward(ctx);
    for (int s = 0; s < slot_count; s++) {
        float *tripled = zero_tensor(slots[s].n);
        for (size_t i = 0; i < slots[s].n; i++) tripled[i] = 3.0f * analytic[s][i];
        double err = qft_max_rel_error(slots[s].grad, tripled, slots[s].n, 1e-6);
        CHECK(err <= ACCUMULATE_TOLERANCE, "%s: backward does not accumulate into d%s (rel err %.3g)", op,
              slots[s].name, err);
        free(tripled);
    }

    for (int s = 0; s < slot_count; s++) {
        grad_slot *slot = &slots[s];
        size_t probes = slot->samples && slot->samples < slot->n ? slot->samples : slot->n;
        float *fd = zero_tensor(probes), *an = zero_tensor(probes);
        for (size_t probe = 0; probe < probes; probe++) {
            size_t i = probes == slot->n ? probe : (size_t)(test_rng_next() % slot->n);
            float original = slot->values[i];
            double h = step;
            float plus = (float)(original + h), minus = (float)(original - h);
            slot->values[i] = plus;
            double loss_plus = loss(ctx);
            slot->values[i] = minus;
            double loss_minus = loss(ctx);
            slot->values[i] = original;
            fd[probe] = (float)((loss_plus - loss_minus) / ((double)plus - (double)minus));
            an[probe] = analytic[s][i];
        }
        // Normalize by the largest gradient of the whole tensor, not just of the probed elements
        // (sampled probes of a large softmax-like gradient may all be tiny).
        double max_diff = 0.0, scale = 1e-2;
        for (size_t i = 0; i < slot->n; i++) scale = fmax(scale, fabs(analytic[s][i]));
        for (size_t probe = 0; probe < probes; probe++) {
            double diff = fabs((double)an[probe] - (double)fd[probe]);
            max_diff = isnan(diff) ? INFINITY : fmax(max_diff, diff);
        }
        double err = max_diff / scale;
        printf("%-24s d%-8s %6zu probes  rel err %.2e\n", op, slot->name, probes, err);
        CHECK(err <= GRADCHECK_TOLERANCE, "%s: d%s differs from finite differences (rel err %.3g)", op, slot->name,
              err);
        free(fd);
        free(an);
    }
    for (int s = 0; s < slot_count; s++) free(analytic[s]);
    free(analytic);
    // Leave grads holding exactly one backward for callers that compare NULL-grad variants.
    for (int s = 0; s < slot_count; s++) memset(slots[s].grad, 0, slots[s].n * sizeof(float));
    backward(ctx);
}

static int tensors_equal(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

// ---- linear ----
typedef struct {
    int N, C, OC;
    float *inp, *weight, *bias, *out, *dout;
    float *dinp, *dweight, *dbias;
} linear_case;

static double linear_loss(void *ctx) {
    linear_case *c = ctx;
    backend->linear_forward(c->out, c->inp, c->weight, c->bias, c->N, c->C, c->OC);
    return weighted_sum(c->out, c->dout, (size_t)c->N * c->OC);
}
static void linear_grads(void *ctx) {
    linear_case *c = ctx;
    backend->linear_backward(c->dinp, c->dweight, c->dbias, c->dout, c->inp, c->weight, c->N, c->C, c->OC);
}

static void test_linear(int N, int C, int OC, size_t samples) {
    linear_case c = {N, C, OC, random_tensor((size_t)N * C, -1, 1), random_tensor((size_t)OC * C, -1, 1),
                     random_tensor(OC, -1, 1), zero_tensor((size_t)N * OC), random_tensor((size_t)N * OC, -1, 1),
                     zero_tensor((size_t)N * C), zero_tensor((size_t)OC * C), zero_tensor(OC)};
    grad_slot slots[] = {{"inp", c.inp, c.dinp, (size_t)N * C, samples},
                         {"weight", c.weight, c.dweight, (size_t)OC * C, samples},
                         {"bias", c.bias, c.dbias, (size_t)OC, samples}};
    gradcheck("linear", &c, linear_loss, linear_grads, slots, 3, GRADCHECK_STEP);

    // NULL grads are skipped and do not change the others.
    float *dweight_only = zero_tensor((size_t)OC * C);
    backend->linear_backward(NULL, dweight_only, NULL, c.dout, c.inp, c.weight, N, C, OC);
    CHECK(tensors_equal(dweight_only, c.dweight, (size_t)OC * C), "linear: dweight alone differs from full backward");
    free(dweight_only);
    free(c.inp), free(c.weight), free(c.bias), free(c.out), free(c.dout), free(c.dinp), free(c.dweight), free(c.dbias);
}

// ---- layernorm ----
typedef struct {
    int N, C;
    float eps;
    float *inp, *weight, *bias, *out, *mean, *rstd, *dout;
    float *scratch_mean, *scratch_rstd;
    float *dinp, *dweight, *dbias;
} layernorm_case;

static double layernorm_loss(void *ctx) {
    layernorm_case *c = ctx;
    backend->layernorm_forward(c->out, c->scratch_mean, c->scratch_rstd, c->inp, c->weight, c->bias, c->N, c->C,
                               c->eps);
    return weighted_sum(c->out, c->dout, (size_t)c->N * c->C);
}
static void layernorm_grads(void *ctx) {
    layernorm_case *c = ctx;
    backend->layernorm_backward(c->dinp, c->dweight, c->dbias, c->dout, c->inp, c->weight, c->mean, c->rstd, c->N,
                                c->C);
}

static void test_layernorm(int N, int C, size_t samples) {
    size_t n = (size_t)N * C;
    layernorm_case c = {N, C, 1e-5f, random_tensor(n, -1, 1), random_tensor(C, 0.5f, 1.5f), random_tensor(C, -1, 1),
                        zero_tensor(n), zero_tensor(N), zero_tensor(N), random_tensor(n, -1, 1), zero_tensor(N),
                        zero_tensor(N), zero_tensor(n), zero_tensor(C), zero_tensor(C)};
    for (int row = 0; row < N; row++)  // rows with an offset mean, like real residual streams
        for (int col = 0; col < C; col++) c.inp[(size_t)row * C + col] += 0.5f * (float)(row % 8);
    backend->layernorm_forward(c.out, c.mean, c.rstd, c.inp, c.weight, c.bias, N, C, c.eps);
    grad_slot slots[] = {{"inp", c.inp, c.dinp, n, samples},
                         {"weight", c.weight, c.dweight, (size_t)C, samples},
                         {"bias", c.bias, c.dbias, (size_t)C, samples}};
    gradcheck("layernorm", &c, layernorm_loss, layernorm_grads, slots, 3, GRADCHECK_STEP);

    float *dinp_only = zero_tensor(n);
    backend->layernorm_backward(dinp_only, NULL, NULL, c.dout, c.inp, c.weight, c.mean, c.rstd, N, C);
    CHECK(tensors_equal(dinp_only, c.dinp, n), "layernorm: dinp alone differs from full backward");
    free(dinp_only);
    free(c.inp), free(c.weight), free(c.bias), free(c.out), free(c.mean), free(c.rstd), free(c.dout);
    free(c.scratch_mean), free(c.scratch_rstd), free(c.dinp), free(c.dweight), free(c.dbias);
}

// ---- elementwise: gelu (both kinds), tanh ----
typedef struct {
    size_t n;
    qft_gelu_kind kind;
    int is_tanh;
    float *inp, *out, *dout, *dinp;
} elementwise_case;

static double elementwise_loss(void *ctx) {
    elementwise_case *c = ctx;
    if (c->is_tanh) backend->tanh_forward(c->out, c->inp, c->n);
    else backend->gelu_forward(c->out, c->inp, c->n, c->kind);
    return weighted_sum(c->out, c->dout, c->n);
}
static void elementwise_grads(void *ctx) {
    elementwise_case *c = ctx;
    if (c->is_tanh) {
        backend->tanh_forward(c->out, c->inp, c->n);  // tanh backward reads the forward output
        backend->tanh_backward(c->dinp, c->out, c->dout, c->n);
    } else {
        backend->gelu_backward(c->dinp, c->inp, c->dout, c->n, c->kind);
    }
}

static void test_elementwise(const char *op, int is_tanh, qft_gelu_kind kind, size_t n, size_t samples) {
    elementwise_case c = {n, kind, is_tanh, random_tensor(n, -4, 4), zero_tensor(n), random_tensor(n, -1, 1),
                          zero_tensor(n)};
    grad_slot slots[] = {{"inp", c.inp, c.dinp, n, samples}};
    gradcheck(op, &c, elementwise_loss, elementwise_grads, slots, 1, GRADCHECK_STEP);
    free(c.inp), free(c.out), free(c.dout), free(c.dinp);
}

// ---- softmax ----
typedef struct {
    int N, C;
    float *inp, *out, *dout, *dinp;
} softmax_case;

static double softmax_loss(void *ctx) {
    softmax_case *c = ctx;
    backend->softmax_forward(c->out, c->inp, c->N, c->C);
    return weighted_sum(c->out, c->dout, (size_t)c->N * c->C);
}
static void softmax_grads(void *ctx) {
    softmax_case *c = ctx;
    backend->softmax_forward(c->out, c->inp, c->N, c->C);
    backend->softmax_backward(c->dinp, c->out, c->dout, c->N, c->C);
}

static void test_softmax(int N, int C, size_t samples) {
    size_t n = (size_t)N * C;
    softmax_case c = {N, C, random_tensor(n, -3, 3), zero_tensor(n), random_tensor(n, -1, 1), zero_tensor(n)};
    grad_slot slots[] = {{"inp", c.inp, c.dinp, n, samples}};
    gradcheck("softmax", &c, softmax_loss, softmax_grads, slots, 1, GRADCHECK_STEP);
    free(c.inp), free(c.out), free(c.dout), free(c.dinp);
}

// ---- attention ----
typedef struct {
    int B, T, NH, HS;
    float scale;
    float *q, *k, *v, *mask, *out, *probs, *scratch_probs, *dout;
    float *dq, *dk, *dv;
} attention_case;

static double attention_loss(void *ctx) {
    attention_case *c = ctx;
    backend->attention_forward(c->out, c->scratch_probs, c->q, c->k, c->v, c->NH * c->HS, c->mask, c->B, c->T, c->T, c->NH, c->HS,
                               c->scale, NULL);
    return weighted_sum(c->out, c->dout, (size_t)c->B * c->T * c->NH * c->HS);
}
static void attention_grads(void *ctx) {
    attention_case *c = ctx;
    backend->attention_backward(c->dq, c->dk, c->dv, c->dout, c->probs, c->q, c->k, c->v, c->NH * c->HS, c->B, c->T, c->T, c->NH, c->HS,
                                c->scale, NULL);
}

// sparse_upstream: only a few query rows get upstream gradient, so that a perturbed key changes only
// a few hundred weighted outputs (keeps the finite-difference noise bound above valid at large T*HS).
static void test_attention(int B, int T, int NH, int HS, int with_mask, int sparse_upstream, size_t samples,
                           double step) {
    size_t n = (size_t)B * T * NH * HS, prob_count = (size_t)B * NH * T * T;
    attention_case c = {B, T, NH, HS, 1.0f / sqrtf((float)HS), random_tensor(n, -1.5f, 1.5f),
                        random_tensor(n, -1.5f, 1.5f), random_tensor(n, -1, 1), NULL, zero_tensor(n),
                        zero_tensor(prob_count), zero_tensor(prob_count), random_tensor(n, -1, 1), zero_tensor(n),
                        zero_tensor(n), zero_tensor(n)};
    if (sparse_upstream)
        for (int b = 0; b < B; b++)
            for (int t = 2; t < T; t++) memset(c.dout + ((size_t)b * T + t) * NH * HS, 0, (size_t)NH * HS * sizeof(float));
    if (with_mask) {
        // Batch b pads its last b keys (batch 0 unpadded), like right-padded BERT sequences.
        c.mask = zero_tensor((size_t)B * T);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) c.mask[(size_t)b * T + t] = t < T - (b % (T - 1)) ? 1.0f : 0.0f;
    }
    backend->attention_forward(c.out, c.probs, c.q, c.k, c.v, NH * HS, c.mask, B, T, T, NH, HS, c.scale, NULL);
    grad_slot slots[] = {{"q", c.q, c.dq, n, samples}, {"k", c.k, c.dk, n, samples}, {"v", c.v, c.dv, n, samples}};
    gradcheck(with_mask ? "attention(masked)" : "attention", &c, attention_loss, attention_grads, slots, 3, step);

    if (with_mask) {  // padded keys get neither attention nor gradient
        int leak = 0;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                if (c.mask[(size_t)b * T + t] != 0.0f) continue;
                for (int ch = 0; ch < NH * HS; ch++) {
                    size_t i = ((size_t)b * T + t) * NH * HS + ch;
                    leak |= c.dk[i] != 0.0f || c.dv[i] != 0.0f;
                }
            }
        CHECK(!leak, "attention: padded keys received gradient");
    }
    float *dv_only = zero_tensor(n), *dq_only = zero_tensor(n);
    backend->attention_backward(NULL, NULL, dv_only, c.dout, c.probs, c.q, c.k, c.v, NH * HS, B, T, T, NH, HS, c.scale, NULL);
    backend->attention_backward(dq_only, NULL, NULL, c.dout, c.probs, c.q, c.k, c.v, NH * HS, B, T, T, NH, HS, c.scale, NULL);
    CHECK(tensors_equal(dv_only, c.dv, n), "attention: dv alone differs from full backward");
    CHECK(tensors_equal(dq_only, c.dq, n), "attention: dq alone differs from full backward");
    free(dv_only), free(dq_only);
    free(c.q), free(c.k), free(c.v), free(c.mask), free(c.out), free(c.probs), free(c.scratch_probs), free(c.dout);
    free(c.dq), free(c.dk), free(c.dv);
}

// ---- embedding ----
typedef struct {
    int N, C, vocab;
    int32_t *ids;
    float *table, *base, *out, *dout, *dtable;
} embedding_case;

static double embedding_loss(void *ctx) {
    embedding_case *c = ctx;
    memcpy(c->out, c->base, (size_t)c->N * c->C * sizeof(float));  // forward accumulates onto out
    backend->embedding_forward(c->out, c->ids, c->table, c->N, c->C);
    return weighted_sum(c->out, c->dout, (size_t)c->N * c->C);
}
static void embedding_grads(void *ctx) {
    embedding_case *c = ctx;
    backend->embedding_backward(c->dtable, c->dout, c->ids, c->N, c->C);
}

static void test_embedding(int N, int C, int vocab, size_t samples) {
    size_t n = (size_t)N * C;
    embedding_case c = {N, C, vocab, malloc((size_t)N * sizeof(int32_t)), random_tensor((size_t)vocab * C, -1, 1),
                        random_tensor(n, -1, 1), zero_tensor(n), random_tensor(n, -1, 1),
                        zero_tensor((size_t)vocab * C)};
    for (int i = 0; i < N; i++) c.ids[i] = (int32_t)(test_rng_next() % (uint64_t)vocab);  // repeats included
    c.ids[0] = c.ids[N - 1];
    grad_slot slots[] = {{"table", c.table, c.dtable, (size_t)vocab * C, samples}};
    gradcheck("embedding", &c, embedding_loss, embedding_grads, slots, 1, GRADCHECK_STEP);
    // The forward accumulates: out = base + table[ids].
    embedding_loss(&c);
    int ok = 1;
    for (int i = 0; i < N; i++)
        for (int col = 0; col < C; col++)
            ok &= c.out[(size_t)i * C + col] == c.base[(size_t)i * C + col] + c.table[(size_t)c.ids[i] * C + col];
    CHECK(ok, "embedding: forward does not accumulate onto out");
    free(c.ids), free(c.table), free(c.base), free(c.out), free(c.dout), free(c.dtable);
}

// ---- vit tokens ----
typedef struct {
    int B, NP, D, with_dist;
    float *patches, *cls, *dist, *pos, *out, *dout;
    float *dpatches, *dcls, *ddist, *dpos;
} vit_tokens_case;

static double vit_tokens_loss(void *ctx) {
    vit_tokens_case *c = ctx;
    int T = c->NP + (c->with_dist ? 2 : 1);
    backend->vit_tokens_forward(c->out, c->patches, c->cls, c->with_dist ? c->dist : NULL, c->pos, c->B, c->NP,
                                c->D);
    return weighted_sum(c->out, c->dout, (size_t)c->B * T * c->D);
}
static void vit_tokens_grads(void *ctx) {
    vit_tokens_case *c = ctx;
    backend->vit_tokens_backward(c->dpatches, c->dcls, c->with_dist ? c->ddist : NULL, c->dpos, c->dout, c->B,
                                 c->NP, c->D);
}

static void test_vit_tokens(int B, int NP, int D, int with_dist, size_t samples) {
    int T = NP + (with_dist ? 2 : 1);
    size_t np_n = (size_t)B * NP * D, out_n = (size_t)B * T * D;
    vit_tokens_case c = {B, NP, D, with_dist, random_tensor(np_n, -1, 1), random_tensor(D, -1, 1),
                         random_tensor(D, -1, 1), random_tensor((size_t)T * D, -1, 1), zero_tensor(out_n),
                         random_tensor(out_n, -1, 1), zero_tensor(np_n), zero_tensor(D), zero_tensor(D),
                         zero_tensor((size_t)T * D)};
    grad_slot slots[] = {{"patches", c.patches, c.dpatches, np_n, samples},
                         {"cls", c.cls, c.dcls, (size_t)D, samples},
                         {"pos", c.pos, c.dpos, (size_t)T * D, samples},
                         {"dist", c.dist, c.ddist, (size_t)D, samples}};
    gradcheck(with_dist ? "vit_tokens(dist)" : "vit_tokens", &c, vit_tokens_loss, vit_tokens_grads, slots,
              with_dist ? 4 : 3, GRADCHECK_STEP);
    float *dpatches_only = zero_tensor(np_n);
    backend->vit_tokens_backward(dpatches_only, NULL, with_dist ? c.ddist : NULL, NULL, c.dout, B, NP, D);
    CHECK(tensors_equal(dpatches_only, c.dpatches, np_n), "vit_tokens: dpatches alone differs from full backward");
    free(dpatches_only);
    free(c.patches), free(c.cls), free(c.dist), free(c.pos), free(c.out), free(c.dout);
    free(c.dpatches), free(c.dcls), free(c.ddist), free(c.dpos);
}

// Queries restricted to the first Tq tokens: out, probs and dq must equal the first Tq rows of the
// full computation, and dk/dv the full backward with zero upstream gradient beyond Tq.
static void test_attention_query_prefix(int B, int T, int Tq, int NH, int HS) {
    size_t C = (size_t)NH * HS, n = (size_t)B * T * C, nq = (size_t)B * Tq * C;
    float *q = random_tensor(n, -1, 1), *k = random_tensor(n, -1, 1), *v = random_tensor(n, -1, 1);
    float *dout_q = random_tensor(nq, -1, 1), *dout_full = zero_tensor(n);
    float *out_full = zero_tensor(n), *out_q = zero_tensor(nq);
    float *probs_full = zero_tensor((size_t)B * NH * T * T), *probs_q = zero_tensor((size_t)B * NH * Tq * T);
    float *dq_full = zero_tensor(n), *dk_full = zero_tensor(n), *dv_full = zero_tensor(n);
    float *dq_q = zero_tensor(n), *dk_q = zero_tensor(n), *dv_q = zero_tensor(n);
    float scale = 1.0f / sqrtf((float)HS);
    backend->attention_forward(out_full, probs_full, q, k, v, (int)C, NULL, B, T, T, NH, HS, scale, NULL);
    backend->attention_forward(out_q, probs_q, q, k, v, (int)C, NULL, B, T, Tq, NH, HS, scale, NULL);
    int same_out = 1, same_probs = 1;
    for (int b = 0; b < B; b++) {
        same_out &= memcmp(out_q + (size_t)b * Tq * C, out_full + (size_t)b * T * C, (size_t)Tq * C * sizeof(float)) == 0;
        memcpy(dout_full + (size_t)b * T * C, dout_q + (size_t)b * Tq * C, (size_t)Tq * C * sizeof(float));
        for (int h = 0; h < NH; h++)
            same_probs &= memcmp(probs_q + ((size_t)b * NH + h) * Tq * T, probs_full + ((size_t)b * NH + h) * T * T,
                                 (size_t)Tq * T * sizeof(float)) == 0;
    }
    CHECK(same_out && same_probs, "attention Tq=%d of T=%d: out/probs differ from the full rows", Tq, T);
    backend->attention_backward(dq_full, dk_full, dv_full, dout_full, probs_full, q, k, v, (int)C, B, T, T, NH, HS, scale, NULL);
    backend->attention_backward(dq_q, dk_q, dv_q, dout_q, probs_q, q, k, v, (int)C, B, T, Tq, NH, HS, scale, NULL);
    // Same arithmetic except for rows that contribute exact zeros, so allow only rounding-level error.
    CHECK(qft_max_rel_error(dk_q, dk_full, n, 1e-30) < 1e-6 && qft_max_rel_error(dv_q, dv_full, n, 1e-30) < 1e-6 &&
              qft_max_rel_error(dq_q, dq_full, n, 1e-30) < 1e-6,
          "attention Tq=%d of T=%d: gradients differ from the full backward", Tq, T);
    float *bufs[] = {q, k, v, dout_q, dout_full, out_full, out_q, probs_full, probs_q, dq_full, dk_full, dv_full,
                     dq_q, dk_q, dv_q};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

// ---- select_tokens ----
typedef struct {
    int B, T, C, first, count;
    float *inp, *out, *dout, *dinp;
} select_case;

static double select_loss(void *ctx) {
    select_case *c = ctx;
    backend->select_tokens_forward(c->out, c->inp, c->B, c->T, c->C, c->first, c->count);
    return weighted_sum(c->out, c->dout, (size_t)c->B * c->count * c->C);
}
static void select_grads(void *ctx) {
    select_case *c = ctx;
    backend->select_tokens_backward(c->dinp, c->dout, c->B, c->T, c->C, c->first, c->count);
}

static void test_select_tokens(int first, int count) {
    int B = 3, T = 4, C = 5;
    size_t n = (size_t)B * T * C, m = (size_t)B * count * C;
    select_case c = {B, T, C, first, count, random_tensor(n, -1, 1), zero_tensor(m), random_tensor(m, -1, 1),
                     zero_tensor(n)};
    grad_slot slots[] = {{"inp", c.inp, c.dinp, n, 0}};
    gradcheck("select_tokens", &c, select_loss, select_grads, slots, 1, GRADCHECK_STEP);
    free(c.inp), free(c.out), free(c.dout), free(c.dinp);
}

// ---- add ----
typedef struct {
    size_t n;
    float *a, *b, *out, *dout, *da, *db;
} add_case;

static double add_loss(void *ctx) {
    add_case *c = ctx;
    backend->add_forward(c->out, c->a, c->b, c->n);
    return weighted_sum(c->out, c->dout, c->n);
}
static void add_grads(void *ctx) {
    add_case *c = ctx;
    backend->add_backward(c->da, c->db, c->dout, c->n);
}

static void test_add(size_t n, size_t samples) {
    add_case c = {n, random_tensor(n, -1, 1), random_tensor(n, -1, 1), zero_tensor(n), random_tensor(n, -1, 1),
                  zero_tensor(n), zero_tensor(n)};
    grad_slot slots[] = {{"a", c.a, c.da, n, samples}, {"b", c.b, c.db, n, samples}};
    gradcheck("add", &c, add_loss, add_grads, slots, 2, GRADCHECK_STEP);
    float *da_only = zero_tensor(n);
    backend->add_backward(da_only, NULL, c.dout, n);
    CHECK(tensors_equal(da_only, c.da, n), "add: da alone differs from full backward");
    free(da_only);
    free(c.a), free(c.b), free(c.out), free(c.dout), free(c.da), free(c.db);
}

// ---- dropout ----
typedef struct {
    size_t n;
    float p;
    uint64_t seed, stream;
    float *inp, *out, *dout, *dinp;
} dropout_case;

static double dropout_loss(void *ctx) {
    dropout_case *c = ctx;
    backend->dropout_forward(c->out, c->inp, c->n, c->p, c->seed, c->stream);
    return weighted_sum(c->out, c->dout, c->n);
}
static void dropout_grads(void *ctx) {
    dropout_case *c = ctx;
    backend->dropout_backward(c->dinp, c->dout, c->n, c->p, c->seed, c->stream);
}

static void test_dropout(void) {
    const float p = 0.3f;
    const uint64_t seed = 0x0123456789ABCDEFull, stream = (1ull << 33) + 5;  // high bits exercised
    {
        size_t n = 61;
        dropout_case c = {n, p, seed, stream, random_tensor(n, 0.5f, 1.5f), zero_tensor(n), random_tensor(n, -1, 1),
                          zero_tensor(n)};
        grad_slot slots[] = {{"inp", c.inp, c.dinp, n, 0}};
        gradcheck("dropout", &c, dropout_loss, dropout_grads, slots, 1, GRADCHECK_STEP);
        free(c.inp), free(c.out), free(c.dout), free(c.dinp);
    }

    // A large odd-sized tensor (crosses the parallel threshold and ends mid Philox block).
    const size_t n = 100003;
    const float keep_scale = 1.0f / (1.0f - p);
    float *inp = random_tensor(n, 0.5f, 1.5f), *out = zero_tensor(n), *again = zero_tensor(n);
    float *dout = random_tensor(n, -1, 1), *dinp = zero_tensor(n);
    backend->dropout_forward(out, inp, n, p, seed, stream);
    backend->dropout_backward(dinp, dout, n, p, seed, stream);
    size_t kept = 0;
    int mask_matches_philox = 1, values_ok = 1, backward_matches_forward = 1;
    for (size_t i = 0; i < n; i++) {
        int keep = qft_philox_uniform(seed, stream, i) >= p;
        kept += (size_t)keep;
        mask_matches_philox &= keep == (out[i] != 0.0f);
        values_ok &= out[i] == (keep ? inp[i] * keep_scale : 0.0f);
        backward_matches_forward &= dinp[i] == (keep ? dout[i] * keep_scale : 0.0f);
    }
    double keep_rate = (double)kept / (double)n;
    CHECK(mask_matches_philox, "dropout: mask is not qft_philox_uniform(seed, stream, i) >= p");
    CHECK(values_ok, "dropout: kept values are not inp / (1 - p)");
    CHECK(backward_matches_forward, "dropout: backward mask/scale differs from forward");
    // Binomial std of the keep rate: sqrt(0.21 / 1e5) = 0.0014; 0.01 is 7 sigma.
    CHECK(fabs(keep_rate - (1.0 - p)) < 0.01, "dropout: keep rate %.4f, expected %.2f", keep_rate, 1.0 - p);

    backend->dropout_forward(again, inp, n, p, seed, stream);
    CHECK(tensors_equal(out, again, n), "dropout: same seed/stream gave a different mask");
    backend->dropout_forward(again, inp, n, p, seed, stream + 1);
    size_t differing = 0;
    for (size_t i = 0; i < n; i++) differing += (out[i] != 0.0f) != (again[i] != 0.0f);
    // Independent masks differ with probability 2 p (1 - p) = 0.42 per element.
    CHECK(differing > n / 4, "dropout: another stream gave a near-identical mask (%zu differ)", differing);
    backend->dropout_forward(again, inp, n, p, seed + 1, stream);
    differing = 0;
    for (size_t i = 0; i < n; i++) differing += (out[i] != 0.0f) != (again[i] != 0.0f);
    CHECK(differing > n / 4, "dropout: another seed gave a near-identical mask (%zu differ)", differing);

    memcpy(again, inp, n * sizeof(float));
    backend->dropout_forward(again, again, n, p, seed, stream);  // in place is allowed
    CHECK(tensors_equal(out, again, n), "dropout: in-place forward differs");
    backend->dropout_forward(again, inp, n, 0.0f, seed, stream);
    CHECK(tensors_equal(inp, again, n), "dropout: p = 0 is not a copy");
    free(inp), free(out), free(again), free(dout), free(dinp);
}

// ---- cross-entropy ----
typedef struct {
    int N, V;
    float smoothing, dloss_scale;
    int32_t *targets;
    float *logits, *losses, *probs, *scratch_probs, *dlogits;
} cross_entropy_case;

static double cross_entropy_loss(void *ctx) {
    cross_entropy_case *c = ctx;
    backend->cross_entropy_forward(c->losses, c->scratch_probs, c->logits, c->targets, c->N, c->V, c->smoothing);
    double sum = 0.0;
    for (int i = 0; i < c->N; i++) sum += c->losses[i];
    return (double)c->dloss_scale * sum;
}
static void cross_entropy_grads(void *ctx) {
    cross_entropy_case *c = ctx;
    backend->cross_entropy_backward(c->dlogits, c->probs, c->targets, c->N, c->V, c->smoothing, c->dloss_scale);
}

static void test_cross_entropy(int N, int V, float smoothing, size_t samples) {
    size_t n = (size_t)N * V;
    cross_entropy_case c = {N, V, smoothing, 1.0f / 4.0f, malloc((size_t)N * sizeof(int32_t)),
                            random_tensor(n, -3, 3), zero_tensor(N), zero_tensor(n), zero_tensor(n), zero_tensor(n)};
    for (int i = 0; i < N; i++) c.targets[i] = (int32_t)(test_rng_next() % (uint64_t)V);
    c.targets[1] = -1;    // ignored rows (HF uses -100)
    c.targets[N - 1] = -100;
    backend->cross_entropy_forward(c.losses, c.probs, c.logits, c.targets, N, V, smoothing);
    grad_slot slots[] = {{"logits", c.logits, c.dlogits, n, samples}};
    gradcheck(smoothing > 0 ? "cross_entropy(smoothed)" : "cross_entropy", &c, cross_entropy_loss,
              cross_entropy_grads, slots, 1, GRADCHECK_STEP);

    int ignored_ok = c.losses[1] == 0.0f && c.losses[N - 1] == 0.0f;
    for (int j = 0; j < V; j++) ignored_ok &= c.dlogits[(size_t)V + j] == 0.0f && c.dlogits[n - V + j] == 0.0f;
    CHECK(ignored_ok, "cross_entropy: ignored targets produced loss or gradient");
    free(c.targets), free(c.logits), free(c.losses), free(c.probs), free(c.scratch_probs), free(c.dlogits);
}

// ---- mse ----
typedef struct {
    size_t n;
    float dloss_scale;
    float *pred, *target, *dpred;
} mse_case;

static double mse_loss(void *ctx) {
    mse_case *c = ctx;
    return (double)c->dloss_scale * backend->mse_forward(c->pred, c->target, c->n);
}
static void mse_grads(void *ctx) {
    mse_case *c = ctx;
    backend->mse_backward(c->dpred, c->pred, c->target, c->n, c->dloss_scale);
}

static void test_mse(void) {
    size_t n = 9;
    mse_case c = {n, 0.7f, random_tensor(n, -2, 2), random_tensor(n, -2, 2), zero_tensor(n)};
    grad_slot slots[] = {{"pred", c.pred, c.dpred, n, 0}};
    gradcheck("mse", &c, mse_loss, mse_grads, slots, 1, GRADCHECK_STEP);
    double expected = 0.0;
    for (size_t i = 0; i < n; i++) expected += ((double)c.pred[i] - c.target[i]) * ((double)c.pred[i] - c.target[i]);
    expected /= (double)n;
    float got = backend->mse_forward(c.pred, c.target, n);
    CHECK(fabs(got - expected) <= 1e-6 * expected, "mse: %.9g, expected %.9g", got, expected);
    free(c.pred), free(c.target), free(c.dpred);
}

// ---- reductions ----
static void test_reductions(void) {
    size_t n = 300001;  // several chunks
    float *x = random_tensor(n, -2, 2);
    double expected = 0.0;
    for (size_t i = 0; i < n; i++) expected += (double)x[i] * (double)x[i];
    double got = backend->sum_squares(x, n);
    // Both sum exact float squares in double; only the summation order differs (n * 1e-16 relative).
    CHECK(fabs(got - expected) <= 1e-12 * expected, "sum_squares: %.17g, expected %.17g", got, expected);
    CHECK(backend->sum_squares(x, 0) == 0.0, "sum_squares of nothing is not 0");
    float *scaled = copy_tensor(x, n);
    backend->scale(scaled, 0.37f, n);
    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= scaled[i] == x[i] * 0.37f;
    CHECK(ok, "scale: x * factor differs");
    free(x), free(scaled);
}

// ---- AdamW ----
static void test_adamw(void) {
    const size_t n = 40000;  // above the parallel threshold
    const float lr = 1e-2f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.05f;
    float *param = random_tensor(n, -1, 1), *m = zero_tensor(n), *v = zero_tensor(n);
    double *param_ref = malloc(n * sizeof(double)), *m_ref = calloc(n, sizeof(double)),
           *v_ref = calloc(n, sizeof(double));
    for (size_t i = 0; i < n; i++) param_ref[i] = param[i];
    float *grad = zero_tensor(n);
    for (int step = 1; step <= 3; step++) {
        for (size_t i = 0; i < n; i++) grad[i] = test_uniform(-1, 1);
        grad[0] = 0.0f;  // pure decay on a zero gradient (with zero moments on step 1)
        backend->adamw_update(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
        // Hand-computed torch.optim.AdamW step: decoupled decay first, then the bias-corrected Adam step.
        double bc1 = 1.0 - pow(beta1, step), bc2 = 1.0 - pow(beta2, step);
        for (size_t i = 0; i < n; i++) {
            double g = grad[i];
            param_ref[i] *= 1.0 - (double)lr * weight_decay;
            m_ref[i] = beta1 * m_ref[i] + (1.0 - beta1) * g;
            v_ref[i] = beta2 * v_ref[i] + (1.0 - beta2) * g * g;
            param_ref[i] -= lr * (m_ref[i] / bc1) / (sqrt(v_ref[i] / bc2) + eps);
        }
        double param_err = 0.0, m_err = 0.0, v_err = 0.0, v_max = 0.0;
        for (size_t i = 0; i < n; i++) {
            param_err = fmax(param_err, fabs(param[i] - param_ref[i]));
            m_err = fmax(m_err, fabs(m[i] - m_ref[i]));
            v_err = fmax(v_err, fabs(v[i] - v_ref[i]));
            v_max = fmax(v_max, fabs(v_ref[i]));
        }
        // params and m are O(1); v is O(1e-3), so its error is relative to its max.
        CHECK(param_err <= ADAMW_TOLERANCE, "adamw step %d: param err %.3g", step, param_err);
        CHECK(m_err <= ADAMW_TOLERANCE, "adamw step %d: m err %.3g", step, m_err);
        CHECK(v_err <= ADAMW_TOLERANCE * v_max, "adamw step %d: v err %.3g (max %.3g)", step, v_err, v_max);
    }
    free(param), free(m), free(v), free(grad), free(param_ref), free(m_ref), free(v_ref);
}

static void test_memory(void) {
    float *buffer = backend->alloc(1000 * sizeof(float));
    CHECK(buffer != NULL, "alloc failed");
    if (!buffer) return;
    int zeroed = 1;
    for (int i = 0; i < 1000; i++) zeroed &= buffer[i] == 0.0f;
    CHECK(zeroed, "alloc is not zero-filled");
    CHECK(((uintptr_t)buffer % 64) == 0, "alloc is not 64-byte aligned");
    float host[4] = {1, 2, 3, 4}, back[4] = {0};
    backend->copy_to_device(buffer, host, sizeof host);
    backend->copy(buffer + 4, buffer, sizeof host);
    backend->copy_to_host(back, buffer + 4, sizeof back);
    CHECK(memcmp(host, back, sizeof host) == 0, "copy round trip differs");
    backend->zero(buffer, 8 * sizeof(float));
    CHECK(buffer[0] == 0.0f && buffer[7] == 0.0f, "zero did not clear");
    backend->release(buffer);
}

int main(void) {
    backend = qft_backend_cpu();
    test_memory();

    // Small shapes check every element; the larger ones cross the backend's OpenMP thresholds
    // (>= 131072 elements for memory-bound ops, >= 32768 otherwise) and are sampled.
    test_linear(5, 7, 6, 0);
    test_linear(2200, 64, 64, 40);
    test_layernorm(4, 9, 0);
    test_layernorm(600, 64, 40);
    test_elementwise("gelu(erf)", 0, QFT_GELU_ERF, 64, 0);
    test_elementwise("gelu(tanh)", 0, QFT_GELU_TANH, 64, 0);
    test_elementwise("gelu(erf) large", 0, QFT_GELU_ERF, 50000, 60);
    test_elementwise("gelu(tanh) large", 0, QFT_GELU_TANH, 50000, 60);
    test_elementwise("tanh", 1, QFT_GELU_TANH, 64, 0);
    test_elementwise("tanh large", 1, QFT_GELU_TANH, 50000, 60);
    test_softmax(3, 8, 0);
    test_softmax(400, 100, 40);
    test_attention(2, 5, 2, 3, 0, 0, 0, GRADCHECK_STEP);
    test_attention(3, 5, 2, 3, 1, 0, 0, GRADCHECK_STEP);
    test_attention(8, 17, 4, 16, 1, 0, 40, GRADCHECK_STEP);
    test_attention_query_prefix(8, 17, 1, 4, 16);
    test_attention_query_prefix(3, 9, 2, 2, 8);
    // Past the transposed-copy limit (per-key dot products); see GRADCHECK_STEP_WIDE_HEAD.
    test_attention(2, 33, 1, 1024, 1, 1, 16, GRADCHECK_STEP_WIDE_HEAD);
    test_embedding(7, 5, 4, 0);
    test_embedding(2200, 64, 30, 40);
    test_vit_tokens(2, 3, 4, 0, 0);
    test_vit_tokens(2, 3, 4, 1, 0);
    test_vit_tokens(128, 16, 64, 1, 40);
    test_select_tokens(1, 1);
    test_select_tokens(0, 2);
    test_add(50, 0);
    test_add(140000, 40);
    test_dropout();
    test_cross_entropy(6, 5, 0.0f, 0);
    test_cross_entropy(6, 5, 0.1f, 0);
    test_cross_entropy(1200, 120, 0.1f, 40);
    test_mse();
    test_reductions();
    test_adamw();
    QFT_TEST_SUMMARY();
}
