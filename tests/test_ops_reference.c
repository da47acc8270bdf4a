// Forward values of the CPU backend's ops against naive double-precision loops written straight from
// the definitions, and bitwise-identical results across OpenMP thread counts for the non-BLAS ops.
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#define QFT_TEST_RNG_SEED 0xD1B54A32D192ED03ull
#include "test_util.h"

// Tolerances, relative to the largest reference magnitude:
// - fp32 dot products / row sums of length K carry <= K * 6e-8 relative error in the worst case and
//   ~sqrt(K) * 6e-8 typically; with K <= 256 here, 1e-5 bounds linear, layernorm, softmax, attention.
// - gelu is a few fp32 roundings around erff/tanhf (each ~1 ulp): 1e-6.
// - patchify and vit_tokens are copies / one fp32 add of two floats, exact in any order: 0.
#define REDUCTION_TOLERANCE 1e-5
#define ELEMENTWISE_TOLERANCE 1e-6

static const qft_backend *backend;

// max |out - ref| / max |ref|, the reference kept in double.
static double rel_error_vs_double(const float *out, const double *ref, size_t n) {
    double max_diff = 0.0, max_ref = 1e-6;
    for (size_t i = 0; i < n; i++) {
        double diff = fabs((double)out[i] - ref[i]);
        max_diff = isnan(diff) ? INFINITY : fmax(max_diff, diff);
        max_ref = fmax(max_ref, fabs(ref[i]));
    }
    return max_diff / max_ref;
}

static void test_linear(int N, int C, int OC, int with_bias) {
    float *inp = random_tensor((size_t)N * C, -1, 1), *weight = random_tensor((size_t)OC * C, -1, 1);
    float *bias = with_bias ? random_tensor(OC, -1, 1) : NULL;
    float *out = random_tensor((size_t)N * OC, 100, 200);  // garbage: forward must overwrite, not add
    double *ref = malloc((size_t)N * OC * sizeof(double));
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double sum = bias ? bias[o] : 0.0;
            for (int c = 0; c < C; c++) sum += (double)inp[(size_t)n * C + c] * weight[(size_t)o * C + c];
            ref[(size_t)n * OC + o] = sum;
        }
    backend->linear_forward(out, inp, weight, bias, N, C, OC);
    double err = rel_error_vs_double(out, ref, (size_t)N * OC);
    CHECK(err <= REDUCTION_TOLERANCE, "linear %dx%d->%d bias=%d: rel err %.3g", N, C, OC, with_bias, err);
    free(inp), free(weight), free(bias), free(out), free(ref);
}

static void test_layernorm(int N, int C) {
    const float eps = 1e-5f;
    float *inp = random_tensor((size_t)N * C, -2, 2), *weight = random_tensor(C, 0.5f, 1.5f);
    float *bias = random_tensor(C, -1, 1);
    for (int n = 0; n < N; n++) inp[(size_t)n * C + n % C] += 20.0f;  // an outlier channel per row
    float *out = zero_tensor((size_t)N * C), *mean = zero_tensor(N), *rstd = zero_tensor(N);
    double *ref = malloc((size_t)N * C * sizeof(double)), *ref_mean = malloc(N * sizeof(double)),
           *ref_rstd = malloc(N * sizeof(double));
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double m = 0.0, var = 0.0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) var += (x[c] - m) * (x[c] - m);
        var /= C;  // biased, as torch.nn.LayerNorm
        double r = 1.0 / sqrt(var + eps);
        for (int c = 0; c < C; c++) ref[(size_t)n * C + c] = (x[c] - m) * r * weight[c] + bias[c];
        ref_mean[n] = m;
        ref_rstd[n] = r;
    }
    backend->layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps);
    double err = rel_error_vs_double(out, ref, (size_t)N * C);
    CHECK(err <= REDUCTION_TOLERANCE, "layernorm %dx%d: rel err %.3g", N, C, err);
    err = rel_error_vs_double(mean, ref_mean, N);
    CHECK(err <= REDUCTION_TOLERANCE, "layernorm %dx%d: mean rel err %.3g", N, C, err);
    err = rel_error_vs_double(rstd, ref_rstd, N);
    CHECK(err <= REDUCTION_TOLERANCE, "layernorm %dx%d: rstd rel err %.3g", N, C, err);
    free(inp), free(weight), free(bias), free(out), free(mean), free(rstd), free(ref), free(ref_mean), free(ref_rstd);
}

static void test_softmax(int N, int C) {
    float *inp = random_tensor((size_t)N * C, -8, 8), *out = zero_tensor((size_t)N * C);
    inp[0] = 80.0f;  // would overflow expf without max subtraction
    double *ref = malloc((size_t)N * C * sizeof(double));
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double mx = -INFINITY, sum = 0.0;
        for (int c = 0; c < C; c++) mx = fmax(mx, x[c]);
        for (int c = 0; c < C; c++) sum += exp(x[c] - mx);
        for (int c = 0; c < C; c++) ref[(size_t)n * C + c] = exp(x[c] - mx) / sum;
    }
    backend->softmax_forward(out, inp, N, C);
    double err = rel_error_vs_double(out, ref, (size_t)N * C);
    CHECK(err <= REDUCTION_TOLERANCE, "softmax %dx%d: rel err %.3g", N, C, err);
    free(inp), free(out), free(ref);
}

// Naive attention in double: logits = q.k * scale, masked keys excluded (probability 0), softmax, @ v.
static void test_attention(int B, int T, int NH, int HS) {
    const int C = NH * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    size_t n = (size_t)B * T * C, prob_count = (size_t)B * NH * T * T;
    float *q = random_tensor(n, -2, 2), *k = random_tensor(n, -2, 2), *v = random_tensor(n, -1, 1);
    float *mask = zero_tensor((size_t)B * T);
    for (int b = 0; b < B; b++)  // batch b keeps its first T - b % T keys; the last batch is fully padded
        for (int t = 0; t < T; t++) mask[(size_t)b * T + t] = (b == B - 1) ? 0.0f : (t < T - b % T ? 1.0f : 0.0f);
    float *out = zero_tensor(n), *probs = zero_tensor(prob_count);
    double *ref = calloc(n, sizeof(double)), *ref_probs = calloc(prob_count, sizeof(double));
    double *logits = malloc((size_t)T * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++) {
                int any_key = 0;
                for (int j = 0; j < T; j++) any_key |= mask[(size_t)b * T + j] != 0.0f;
                double mx = -INFINITY, sum = 0.0;
                for (int j = 0; j < T; j++) {
                    double dot = 0.0;
                    for (int d = 0; d < HS; d++)
                        dot += (double)q[((size_t)b * T + i) * C + h * HS + d] * k[((size_t)b * T + j) * C + h * HS + d];
                    // A fully padded row attends uniformly (documented: such rows stay finite).
                    int masked = any_key && mask[(size_t)b * T + j] == 0.0f;
                    logits[j] = masked ? -INFINITY : (any_key ? dot * scale : 0.0);
                    mx = fmax(mx, logits[j]);
                }
                for (int j = 0; j < T; j++) sum += exp(logits[j] - mx);
                for (int j = 0; j < T; j++) {
                    double p = exp(logits[j] - mx) / sum;
                    ref_probs[(((size_t)b * NH + h) * T + i) * T + j] = p;
                    for (int d = 0; d < HS; d++)
                        ref[((size_t)b * T + i) * C + h * HS + d] += p * v[((size_t)b * T + j) * C + h * HS + d];
                }
            }
    backend->attention_forward(out, probs, q, k, v, NH * HS, mask, B, T, T, NH, HS, scale, NULL);
    double err = rel_error_vs_double(out, ref, n);
    CHECK(err <= REDUCTION_TOLERANCE, "attention B%d T%d NH%d HS%d: out rel err %.3g", B, T, NH, HS, err);
    err = rel_error_vs_double(probs, ref_probs, prob_count);
    CHECK(err <= REDUCTION_TOLERANCE, "attention B%d T%d NH%d HS%d: probs rel err %.3g", B, T, NH, HS, err);
    int masked_exact_zero = 1;
    for (size_t i = 0; i < prob_count; i++)
        if (ref_probs[i] == 0.0) masked_exact_zero &= probs[i] == 0.0f;
    CHECK(masked_exact_zero, "attention: padded keys do not get probability exactly 0");

    // Without a mask every key counts.
    float *out_nomask = zero_tensor(n);
    backend->attention_forward(out_nomask, NULL, q, k, v, NH * HS, NULL, 1, T, T, NH, HS, scale, NULL);  // NULL probs allowed
    double *ref0 = calloc((size_t)T * C, sizeof(double));
    for (int h = 0; h < NH; h++)
        for (int i = 0; i < T; i++) {
            double mx = -INFINITY, sum = 0.0;
            for (int j = 0; j < T; j++) {
                double dot = 0.0;
                for (int d = 0; d < HS; d++) dot += (double)q[(size_t)i * C + h * HS + d] * k[(size_t)j * C + h * HS + d];
                logits[j] = dot * scale;
                mx = fmax(mx, logits[j]);
            }
            for (int j = 0; j < T; j++) sum += exp(logits[j] - mx);
            for (int j = 0; j < T; j++)
                for (int d = 0; d < HS; d++)
                    ref0[(size_t)i * C + h * HS + d] += exp(logits[j] - mx) / sum * v[(size_t)j * C + h * HS + d];
        }
    err = rel_error_vs_double(out_nomask, ref0, (size_t)T * C);
    CHECK(err <= REDUCTION_TOLERANCE, "attention (no mask) T%d: rel err %.3g", T, err);
    free(q), free(k), free(v), free(mask), free(out), free(probs), free(ref), free(ref_probs), free(logits);
    free(out_nomask), free(ref0);
}

static void test_gelu(qft_gelu_kind kind, size_t n) {
    float *inp = random_tensor(n, -6, 6), *out = zero_tensor(n);
    double *ref = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        ref[i] = kind == QFT_GELU_ERF ? 0.5 * x * (1.0 + erf(x / sqrt(2.0)))
                                      : 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    }
    backend->gelu_forward(out, inp, n, kind);
    double err = rel_error_vs_double(out, ref, n);
    CHECK(err <= ELEMENTWISE_TOLERANCE, "gelu(%s) n=%zu: rel err %.3g", kind == QFT_GELU_ERF ? "erf" : "tanh", n, err);
    free(inp), free(out), free(ref);
}

static void test_patchify(int B, int CH, int H, int W, int P) {
    const int grid_h = H / P, grid_w = W / P, NP = grid_h * grid_w;
    const size_t row = (size_t)CH * P * P, n = (size_t)B * NP * row;
    float *images = random_tensor((size_t)B * CH * H * W, -1, 1), *out = zero_tensor(n);
    backend->patchify_forward(out, images, B, CH, H, W, P);
    int ok = 1;
    // out[b, gy*GW+gx, (c, py, px)] = images[b, c, gy*P+py, gx*P+px], as Conv2d(stride=P) + flatten(2).
    for (int b = 0; b < B; b++)
        for (int gy = 0; gy < grid_h; gy++)
            for (int gx = 0; gx < grid_w; gx++)
                for (int c = 0; c < CH; c++)
                    for (int py = 0; py < P; py++)
                        for (int px = 0; px < P; px++) {
                            float expected = images[(((size_t)b * CH + c) * H + gy * P + py) * W + gx * P + px];
                            size_t at = ((size_t)b * NP + gy * grid_w + gx) * row + ((size_t)c * P + py) * P + px;
                            ok &= out[at] == expected;
                        }
    CHECK(ok, "patchify B%d CH%d %dx%d P%d: wrong layout", B, CH, H, W, P);
    free(images), free(out);
}

static void test_vit_tokens(int B, int NP, int D, int with_dist) {
    const int prefix = with_dist ? 2 : 1, T = NP + prefix;
    float *patches = random_tensor((size_t)B * NP * D, -1, 1), *cls = random_tensor(D, -1, 1);
    float *dist = random_tensor(D, -1, 1), *pos = random_tensor((size_t)T * D, -1, 1);
    float *out = zero_tensor((size_t)B * T * D);
    backend->vit_tokens_forward(out, patches, cls, with_dist ? dist : NULL, pos, B, NP, D);
    int ok = 1;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++) {
                float token = t == 0 ? cls[d] : (with_dist && t == 1) ? dist[d] : patches[((size_t)b * NP + t - prefix) * D + d];
                ok &= out[((size_t)b * T + t) * D + d] == (float)((double)token + (double)pos[(size_t)t * D + d]);
            }
    CHECK(ok, "vit_tokens B%d NP%d D%d dist=%d: wrong values", B, NP, D, with_dist);
    free(patches), free(cls), free(dist), free(pos), free(out);
}

// torch.nn.CrossEntropyLoss(label_smoothing=eps, reduction='none') per row, in double.
static void test_cross_entropy(int N, int V, float smoothing) {
    float *logits = random_tensor((size_t)N * V, -5, 5), *losses = zero_tensor(N), *probs = zero_tensor((size_t)N * V);
    int32_t *targets = malloc((size_t)N * sizeof(int32_t));
    for (int i = 0; i < N; i++) targets[i] = i % 7 == 3 ? -100 : (int32_t)(test_rng_next() % (uint64_t)V);
    double *ref = malloc(N * sizeof(double)), *ref_probs = malloc((size_t)N * V * sizeof(double));
    for (int i = 0; i < N; i++) {
        const float *x = logits + (size_t)i * V;
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < V; j++) mx = fmax(mx, x[j]);
        for (int j = 0; j < V; j++) sum += exp(x[j] - mx);
        double lse = mx + log(sum), smooth_term = 0.0;
        for (int j = 0; j < V; j++) {
            ref_probs[(size_t)i * V + j] = exp(x[j] - lse);
            smooth_term += -(x[j] - lse) / V;
        }
        ref[i] = targets[i] < 0 ? 0.0 : (1.0 - smoothing) * -(x[targets[i]] - lse) + smoothing * smooth_term;
    }
    backend->cross_entropy_forward(losses, probs, logits, targets, N, V, smoothing);
    double err = rel_error_vs_double(losses, ref, N);
    CHECK(err <= REDUCTION_TOLERANCE, "cross_entropy N%d V%d eps=%.2f: loss rel err %.3g", N, V, smoothing, err);
    err = rel_error_vs_double(probs, ref_probs, (size_t)N * V);
    CHECK(err <= REDUCTION_TOLERANCE, "cross_entropy N%d V%d: probs rel err %.3g", N, V, err);
    free(logits), free(losses), free(probs), free(targets), free(ref), free(ref_probs);
}

// ---- results must not depend on the OpenMP thread count (resume and CPU runs are bit-exact) ----
typedef void (*thread_case_function)(float *result, const void *inputs);
typedef struct {
    int B, T, NH, HS, N, C;
    const float *a, *b, *c, *d, *mask;
    const int32_t *ids;
} shared_inputs;

// Each case writes its forward and backward outputs into result (sized by the caller).
static void run_layernorm(float *result, const void *ctx) {
    const shared_inputs *in = ctx;
    size_t n = (size_t)in->N * in->C;
    float *mean = zero_tensor(in->N), *rstd = zero_tensor(in->N);
    backend->layernorm_forward(result, mean, rstd, in->a, in->b, in->c, in->N, in->C, 1e-5f);
    backend->layernorm_backward(result + n, result + 2 * n, result + 2 * n + in->C, in->d, in->a, in->b, mean, rstd,
                                in->N, in->C);
    free(mean), free(rstd);
}
static void run_attention(float *result, const void *ctx) {
    const shared_inputs *in = ctx;
    size_t n = (size_t)in->B * in->T * in->NH * in->HS, probs_n = (size_t)in->B * in->NH * in->T * in->T;
    float *probs = zero_tensor(probs_n);
    backend->attention_forward(result, probs, in->a, in->b, in->c, in->NH * in->HS, in->mask, in->B, in->T, in->T, in->NH, in->HS, 0.25f, NULL);
    backend->attention_backward(result + n, result + 2 * n, result + 3 * n, in->d, probs, in->a, in->b, in->c, in->NH * in->HS, in->B,
                                in->T, in->T, in->NH, in->HS, 0.25f, NULL);
    free(probs);
}
static void run_elementwise(float *result, const void *ctx) {
    const shared_inputs *in = ctx;
    size_t n = (size_t)in->N * in->C;
    backend->gelu_forward(result, in->a, n, QFT_GELU_ERF);
    backend->gelu_backward(result + n, in->a, in->d, n, QFT_GELU_TANH);
    backend->softmax_forward(result + 2 * n, in->a, in->N, in->C);
    backend->softmax_backward(result + 3 * n, result + 2 * n, in->d, in->N, in->C);
    backend->dropout_forward(result + 4 * n, in->a, n, 0.1f, 7, 9);
    backend->dropout_backward(result + 5 * n, in->d, n, 0.1f, 7, 9);
    backend->embedding_backward(result + 6 * n, in->d, in->ids, in->N, in->C);  // table of N rows
    backend->linear_backward(NULL, NULL, result + 7 * n, in->d, in->a, in->b, in->N, 1, in->C);  // bias grad only
    double squares = backend->sum_squares(in->a, n);
    memcpy(result + 7 * n + in->C, &squares, sizeof squares);
}
// vit_tokens (B = 128, NP = 15, D = 64 with a distillation token: T = 17), cross-entropy over
// N = 2176 rows of 64 classes, and AdamW over n parameters.
static void run_tokens_loss_optimizer(float *result, const void *ctx) {
    const shared_inputs *in = ctx;
    size_t n = (size_t)in->N * in->C;
    const int B = 128, NP = 15, D = 64;
    backend->vit_tokens_forward(result, in->a, in->b, in->c, in->d, B, NP, D);  // n floats
    float *dpatches = result + n, *dcls = dpatches + (size_t)B * NP * D, *ddist = dcls + D, *dpos = ddist + D;
    backend->vit_tokens_backward(dpatches, dcls, ddist, dpos, in->a, B, NP, D);
    float *losses = dpos + (size_t)(NP + 2) * D, *probs = losses + in->N, *dlogits = probs + n;
    int32_t *targets = malloc((size_t)in->N * sizeof(int32_t));
    for (int i = 0; i < in->N; i++) targets[i] = i % 11 == 0 ? -100 : in->ids[i] % in->C;
    backend->cross_entropy_forward(losses, probs, in->a, targets, in->N, in->C, 0.1f);
    backend->cross_entropy_backward(dlogits, probs, targets, in->N, in->C, 0.1f, 0.5f);
    float *param = dlogits + n, *m = param + n, *v = m + n;
    memcpy(param, in->b, n * sizeof(float));
    for (int step = 1; step <= 2; step++) backend->adamw_update(param, in->d, m, v, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.05f, step);
    free(targets);
}

static void check_thread_independent(const char *name, thread_case_function run, const void *inputs, size_t n) {
    float *reference = zero_tensor(n), *other = zero_tensor(n);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    run(reference, inputs);
    int ok = 1;
    for (int threads = 2; threads <= 4; threads++) {
        memset(other, 0, n * sizeof(float));
        omp_set_num_threads(threads);
        run(other, inputs);
        ok &= memcmp(reference, other, n * sizeof(float)) == 0;
    }
    omp_set_num_threads(saved);
    CHECK(ok, "%s: results differ between 1 and 2-4 OpenMP threads", name);
    free(reference), free(other);
}

static void test_thread_independence(void) {
    const int N = 2176, C = 64;  // the demo ViT's activations: batch 128 x 17 tokens x dim 64
    const size_t n = (size_t)N * C;
    shared_inputs in = {128, 17, 4, 16, N, C, random_tensor(n, -2, 2), random_tensor(n, -2, 2),
                        random_tensor(n, -2, 2), random_tensor(n, -1, 1), NULL, NULL};
    float *mask = zero_tensor((size_t)128 * 17);
    for (size_t i = 0; i < (size_t)128 * 17; i++) mask[i] = (i % 17) < 14 ? 1.0f : 0.0f;
    int32_t *ids = malloc((size_t)N * sizeof(int32_t));
    for (int i = 0; i < N; i++) ids[i] = (int32_t)(test_rng_next() % 50);
    in.mask = mask;
    in.ids = ids;
    check_thread_independent("layernorm", run_layernorm, &in, 2 * n + 2 * (size_t)C);
    check_thread_independent("attention", run_attention, &in, 4 * n);
    check_thread_independent("elementwise/reductions", run_elementwise, &in, 7 * n + C + 2);
    check_thread_independent("vit_tokens/cross_entropy/adamw", run_tokens_loss_optimizer, &in,
                             2 * n + 2 * (size_t)C + 17 * (size_t)C + N + 5 * n);
    free((void *)in.a), free((void *)in.b), free((void *)in.c), free((void *)in.d), free(mask), free(ids);
}

int main(void) {
    backend = qft_backend_cpu();
    // Small shapes run single-threaded; the ViT-demo shapes cross the OpenMP thresholds.
    test_linear(5, 7, 3, 1);
    test_linear(37, 64, 48, 1);
    test_linear(37, 64, 48, 0);
    test_linear(2176, 64, 192, 1);
    test_linear(2176, 256, 64, 1);
    test_layernorm(3, 10);
    test_layernorm(2176, 64);
    test_softmax(4, 9);
    test_softmax(512, 100);
    test_attention(3, 5, 2, 4);
    test_attention(16, 17, 4, 16);
    test_attention(2, 70, 3, 32);
    test_attention(2, 260, 2, 128);  // too large for the transposed stack copy: per-key dot products
    test_gelu(QFT_GELU_ERF, 1000);
    test_gelu(QFT_GELU_TANH, 1000);
    test_gelu(QFT_GELU_ERF, 2176 * 256);
    test_gelu(QFT_GELU_TANH, 2176 * 256);
    test_patchify(2, 3, 8, 8, 4);
    test_patchify(2, 1, 10, 9, 3);  // trailing pixels dropped, like Conv2d(stride=P)
    test_patchify(128, 1, 28, 28, 7);
    test_vit_tokens(2, 4, 5, 0);
    test_vit_tokens(3, 4, 5, 1);
    test_vit_tokens(128, 16, 64, 0);
    test_cross_entropy(8, 10, 0.0f);
    test_cross_entropy(64, 1000, 0.1f);
    test_thread_independence();
    QFT_TEST_SUMMARY();
}
