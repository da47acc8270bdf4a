// Adaptive noise on attention probabilities (docs/methods.md §2, qft_prob_quant in backend.h): the attention op's
// noise form of its 4-bit uniform, log2 and log-sqrt2 probability quantizers element by element against the
// contract, its statistics (uniform a^2 s^2 / 12 on P, log kinds a^2 / 12 on the log code), determinism across
// threads and streams, clipped and masked elements, the backward (the real quantizer's STE: dq and dk bit for bit,
// dv from the noisy probabilities, finite differences), the residual op behind a_site, and, in a tiny ViT with
// 4-bit uniform and with log2 probabilities, the noisy training forward against evaluation and finite differences
// of the loss through the model's backward.
#include <omp.h>
#include <string.h>

#include "backend/backend.h"
#include "core/rng.h"
#include "io/config.h"
#include "method/methods.h"
#include "model/model.h"
#include "quant/format.h"
#include "test_util.h"

static const qft_backend *be;

// ---------------------------------------------------------------------------------------------------------------
// The contract of backend.h, one element at a time.

static float reference_value(const qft_quant_noise *noise, uint64_t i) {
    qft_philox_block b = qft_philox_block_at(noise->seed, noise->stream, i >> 2);
    float u = qft_uint_to_unit_float(b.v[i & 3]);
    if (noise->kind == QFT_NOISE_UNIFORM) return u - 0.5f;
    if (noise->kind == QFT_NOISE_BERNOULLI) return u;
    uint64_t pair = i & 2;
    float radius = sqrtf(-2.0f * logf(1.0f - qft_uint_to_unit_float(b.v[pair])));
    float angle = 6.283185307179586f * qft_uint_to_unit_float(b.v[pair + 1]);
    return radius * (i & 1 ? sinf(angle) : cosf(angle)) / sqrtf(12.0f);
}

static float clampf(float x, float lo, float hi) { return fminf(fmaxf(x, lo), hi); }

// The real quantizer's value and whether the noise applies (not clipped, not 0).
static float real_prob(const qft_prob_quant *pq, float p, int *noisy) {
    if (pq->kind == QFT_QUANT_UNIFORM) {
        float q = rintf(p * (1.0f / pq->scale)) + pq->zero_point;
        *noisy = q >= pq->qmin && q <= pq->qmax && p != 0.0f;
        return qft_quant_dequant(p, pq->scale, 1.0f / pq->scale, pq->zero_point, pq->qmin, pq->qmax);
    }
    return qft_log_dequant(p, pq->scale, pq->bits, pq->kind == QFT_QUANT_LOG_SQRT2, noisy);
}

static float reference_prob(const qft_prob_quant *pq, float p, uint64_t i) {
    int noisy;
    float level = real_prob(pq, p, &noisy);
    if (!noisy) return level;
    const qft_quant_noise *noise = &pq->noise->params;
    float v = reference_value(noise, i);
    int bernoulli = noise->kind == QFT_NOISE_BERNOULLI;
    if (bernoulli && v < noise->p) return level;
    if (pq->kind == QFT_QUANT_UNIFORM) {
        float y = bernoulli ? p : p + noise->amplitude * pq->scale * v;
        return clampf(y, (pq->qmin - pq->zero_point) * pq->scale, (pq->qmax - pq->zero_point) * pq->scale);
    }
    float k = pq->kind == QFT_QUANT_LOG_SQRT2 ? 2.0f : 1.0f, top = (float)((1 << pq->bits) - 1);
    float code = -k * log2f(p * (1.0f / pq->scale));
    if (bernoulli) {
        if (code >= 0.0f && code <= top) return p;
    } else {
        code += noise->amplitude * v;
    }
    return pq->scale * exp2f(-clampf(code, 0.0f, top) / k);
}

// ---------------------------------------------------------------------------------------------------------------
// The attention op with values v_j = e_j (one-hot, HS >= T): output channel d of query i is P~[i, d], so the
// probabilities the op weights the values with can be read back exactly (the other terms add zeros).

typedef struct {
    int B, T, Tq, NH, HS;
    size_t C, n_probs;
    float *q, *k, *v, *mask, *out, *probs;
} attn_case;

static void case_init(attn_case *c, int B, int T, int Tq, int NH, int HS, float spread) {
    c->B = B, c->T = T, c->Tq = Tq, c->NH = NH, c->HS = HS;
    c->C = (size_t)NH * HS;
    c->n_probs = (size_t)B * NH * Tq * T;
    size_t n = (size_t)B * T * c->C;
    c->q = random_tensor(n, -spread, spread);
    c->k = random_tensor(n, -1.0f, 1.0f);
    c->v = zero_tensor(n);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < T; j++)
            for (int h = 0; h < NH; h++)
                if (j < HS) c->v[((size_t)b * T + j) * c->C + (size_t)h * HS + j] = 1.0f;
    c->mask = NULL;
    c->out = zero_tensor((size_t)B * Tq * c->C);
    c->probs = zero_tensor(c->n_probs);
}

static void case_free(attn_case *c) {
    free(c->q), free(c->k), free(c->v), free(c->mask), free(c->out), free(c->probs);
}

// Runs the forward with pq and reads the weights back into weights [B, NH, Tq, T].
static void case_forward(attn_case *c, const qft_prob_quant *pq, float *weights) {
    be->attention_forward(c->out, c->probs, c->q, c->k, c->v, (int)c->C, c->mask, c->B, c->T, c->Tq, c->NH, c->HS,
                          1.0f / sqrtf((float)c->HS), pq);
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->NH; h++)
            for (int i = 0; i < c->Tq; i++)
                for (int j = 0; j < c->T; j++)
                    weights[(((size_t)b * c->NH + h) * c->Tq + i) * c->T + j] =
                        c->out[((size_t)b * c->Tq + i) * c->C + (size_t)h * c->HS + j];
}

static qft_prob_quant uniform_quant(int bits, float s) {
    return (qft_prob_quant){.kind = QFT_QUANT_UNIFORM, .bits = bits, .qmin = 0, .qmax = (1 << bits) - 1, .scale = s};
}
static qft_prob_quant log_quant(int kind, int bits, float s) {
    return (qft_prob_quant){.kind = kind, .bits = bits, .scale = s};
}

static const char *quant_name(const qft_prob_quant *pq) {
    return pq->kind == QFT_QUANT_UNIFORM ? "uniform" : pq->kind == QFT_QUANT_LOG2 ? "log2" : "log_sqrt2";
}
static const char *noise_name(qft_noise_kind kind) {
    return kind == QFT_NOISE_UNIFORM ? "uniform" : kind == QFT_NOISE_GAUSSIAN ? "gaussian" : "bernoulli";
}

// Every element of every kind against the contract, with rows that begin inside a Philox block (T = 17), the
// pruned layer's Tq < T, masked keys, elements the quantizer clips (above its range, the log zero level), and the
// same bits on 1 thread and several; the noise-free op is unchanged.
static void test_reference(void) {
    const qft_prob_quant quants[] = {uniform_quant(4, 1.0f / 15.0f), uniform_quant(4, 0.01f),
                                     log_quant(QFT_QUANT_LOG2, 4, 1.0f), log_quant(QFT_QUANT_LOG2, 2, 0.07f),
                                     log_quant(QFT_QUANT_LOG_SQRT2, 4, 1.0f), log_quant(QFT_QUANT_LOG_SQRT2, 3, 0.1f)};
    for (int tq = 0; tq < 2; tq++) {
        attn_case c;
        case_init(&c, 3, 17, tq ? 2 : 17, 2, 20, 4.0f);
        c.mask = malloc((size_t)c.B * c.T * sizeof(float));
        for (int i = 0; i < c.B * c.T; i++) c.mask[i] = (i % 17 == 5 || i % 17 == 11) && i / 17 == 1 ? 0.0f : 1.0f;
        float *got = malloc(c.n_probs * sizeof(float)), *again = malloc(c.n_probs * sizeof(float));
        for (size_t qi = 0; qi < sizeof quants / sizeof *quants; qi++) {
            for (int kind = QFT_NOISE_UNIFORM; kind <= QFT_NOISE_BERNOULLI; kind++) {
                qft_prob_noise noise = {{.kind = kind, .amplitude = 1.3f, .p = 0.4f, .seed = 1234,
                                         .stream = qft_noise_stream(5, 9)}};
                qft_prob_quant pq = quants[qi];
                pq.noise = &noise;
                case_forward(&c, &pq, got);
                size_t wrong = 0, clipped = 0, masked = 0, moved = 0;
                for (size_t i = 0; i < c.n_probs; i++) {
                    float want = reference_prob(&pq, c.probs[i], i);
                    int noisy;
                    float level = real_prob(&pq, c.probs[i], &noisy);
                    clipped += !noisy && c.probs[i] != 0.0f;
                    masked += c.probs[i] == 0.0f;
                    if (c.probs[i] == 0.0f) wrong += got[i] != level;  // masked keys stay at Q(0)
                    moved += noisy && got[i] != level;
                    wrong += !(fabsf(got[i] - want) <= 2e-6f * fabsf(want) + 1e-9f);
                }
                CHECK(wrong == 0 && masked > 0 && moved > c.n_probs / 4,
                      "Tq %d, %s %d-bit s %g, %s noise: %zu of %zu probabilities differ from the contract "
                      "(%zu clipped, %zu masked, %zu moved)", c.Tq, quant_name(&pq), pq.bits, pq.scale,
                      noise_name(kind), wrong, c.n_probs, clipped, masked, moved);
                if (qi == 1 || qi == 3 || qi == 5)
                    CHECK(clipped > 0, "%s s %g clips some probabilities (%zu)", quant_name(&pq), pq.scale, clipped);
                int threads = omp_get_max_threads();
                omp_set_num_threads(1);
                case_forward(&c, &pq, again);
                omp_set_num_threads(threads);
                CHECK(memcmp(got, again, c.n_probs * sizeof(float)) == 0, "%s / %s: 1 thread and %d differ",
                      quant_name(&pq), noise_name(kind), threads);
            }
            // Without noise: the real quantizer.
            qft_prob_quant pq = quants[qi];
            case_forward(&c, &pq, got);
            size_t wrong = 0;
            for (size_t i = 0; i < c.n_probs; i++) {
                int noisy;
                wrong += got[i] != real_prob(&pq, c.probs[i], &noisy);
            }
            CHECK(wrong == 0, "%s without noise: %zu probabilities differ from Q(P)", quant_name(&pq), wrong);
        }
        free(got), free(again);
        case_free(&c);
    }
}

// Mean and variance of the noise where it is not clamped: uniform grid (P~ - P) / s over P in
// [a s / 2, hi - a s / 2]; log kinds c~ - c (c = -k log2(P / s)) over c in [a / 2, 2^bits - 1 - a / 2]
// (Gaussian: 6 standard deviations from the ends).
static size_t noise_moments(const qft_prob_quant *pq, const float *p, const float *got, size_t n, double *mean,
                            double *var) {
    const qft_quant_noise *noise = &pq->noise->params;
    double margin = noise->amplitude * (noise->kind == QFT_NOISE_GAUSSIAN ? 6.0 / sqrt(12.0) : 0.5);
    double sum = 0.0, sq = 0.0;
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        double e;
        if (pq->kind == QFT_QUANT_UNIFORM) {
            double hi = (pq->qmax - pq->zero_point) * (double)pq->scale;
            if (p[i] < margin * pq->scale || p[i] > hi - margin * pq->scale) continue;
            e = ((double)got[i] - p[i]) / pq->scale;
        } else {
            double k = pq->kind == QFT_QUANT_LOG_SQRT2 ? 2.0 : 1.0, top = (1 << pq->bits) - 1;
            double code = -k * log2((double)(p[i] * (1.0f / pq->scale)));
            if (!(code >= margin && code <= top - margin)) continue;
            e = -k * log2((double)got[i] / pq->scale) - code;
        }
        sum += e;
        sq += e * e;
        count++;
    }
    *mean = sum / count;
    *var = sq / count - *mean * *mean;
    return count;
}

// The noise has the variance of a uniform rounding error of a steps: a^2 s^2 / 12 on P for the uniform grid,
// a^2 / 12 on the code for the log kinds; another stream gives uncorrelated noise.
static void test_statistics(void) {
    attn_case c;
    case_init(&c, 32, 17, 17, 4, 20, 2.0f);
    float *got = malloc(c.n_probs * sizeof(float)), *other = malloc(c.n_probs * sizeof(float));
    struct {
        qft_prob_quant pq;
        qft_noise_kind kind;
    } cases[] = {{uniform_quant(4, 1.0f / 15.0f), QFT_NOISE_UNIFORM},
                 {uniform_quant(8, 1.0f / 255.0f), QFT_NOISE_UNIFORM},
                 {uniform_quant(8, 1.0f / 255.0f), QFT_NOISE_GAUSSIAN},
                 {log_quant(QFT_QUANT_LOG2, 4, 1.0f), QFT_NOISE_UNIFORM},
                 {log_quant(QFT_QUANT_LOG2, 4, 1.0f), QFT_NOISE_GAUSSIAN},
                 {log_quant(QFT_QUANT_LOG_SQRT2, 4, 1.0f), QFT_NOISE_UNIFORM}};
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        float a = 1.3f;
        qft_prob_noise noise = {{.kind = cases[ci].kind, .amplitude = a, .seed = 77,
                                 .stream = qft_noise_stream(3, 4)}};
        qft_prob_quant pq = cases[ci].pq;
        pq.noise = &noise;
        case_forward(&c, &pq, got);
        double mean, var, want = (double)a * a / 12.0;
        size_t count = noise_moments(&pq, c.probs, got, c.n_probs, &mean, &var);
        // Standard errors at n ~ 37000: mean sqrt(want / n) ~ 0.002; variance 0.5% (uniform), 0.7% (Gaussian).
        CHECK(count > c.n_probs / 2 && fabs(mean) < 5.0 * sqrt(want / count) && fabs(var / want - 1.0) < 0.035,
              "%s %d-bit, %s noise: mean %.4g, variance %.5g over %zu, expected 0 and a^2/12 = %.5g", quant_name(&pq),
              pq.bits, noise_name(noise.params.kind), mean, var, count, want);
        printf("%s %d-bit probabilities, %s noise a = %.1f: mean %+.2e, variance %.5f %s (a^2/12 = %.5f) over %zu of "
               "%zu\n", quant_name(&pq), pq.bits, noise_name(noise.params.kind), a, mean, var,
               pq.kind == QFT_QUANT_UNIFORM ? "s^2" : "code^2", want, count, c.n_probs);
        qft_prob_noise next = noise;
        next.params.stream = qft_noise_stream(4, 4);
        pq.noise = &next;
        case_forward(&c, &pq, other);
        double cross = 0.0, norm_a = 0.0, norm_b = 0.0;
        for (size_t i = 0; i < c.n_probs; i++) {
            double x = (double)got[i] - c.probs[i], y = (double)other[i] - c.probs[i];
            cross += x * y, norm_a += x * x, norm_b += y * y;
        }
        double corr = cross / sqrt(norm_a * norm_b);
        CHECK(fabs(corr) < 0.03, "%s: the next step's noise is correlated with this one's (%.3g)", quant_name(&pq),
              corr);
    }
    free(got), free(other);
    case_free(&c);
}

// The residual op: uniform grid (Q(P) - P) / s, log kinds q' - c, over the elements that get noise.
static void test_residual(void) {
    attn_case c;
    case_init(&c, 8, 17, 17, 2, 20, 3.0f);
    float *got = malloc(c.n_probs * sizeof(float));
    case_forward(&c, NULL, got);
    const qft_prob_quant quants[] = {uniform_quant(4, 1.0f / 15.0f), uniform_quant(4, 0.01f),
                                     log_quant(QFT_QUANT_LOG2, 4, 1.0f), log_quant(QFT_QUANT_LOG_SQRT2, 3, 0.1f)};
    for (size_t qi = 0; qi < sizeof quants / sizeof *quants; qi++) {
        const qft_prob_quant *pq = &quants[qi];
        double sum_sq = 0.0, want = 0.0;
        size_t inside = be->prob_quant_residual(c.probs, c.n_probs, pq, &sum_sq), want_inside = 0;
        for (size_t i = 0; i < c.n_probs; i++) {
            int noisy;
            float level = real_prob(pq, c.probs[i], &noisy);
            if (!noisy) continue;
            double r;
            if (pq->kind == QFT_QUANT_UNIFORM) {
                r = ((double)level - c.probs[i]) / pq->scale;
            } else {
                double k = pq->kind == QFT_QUANT_LOG_SQRT2 ? 2.0 : 1.0;
                double code = -k * log2((double)(c.probs[i] * (1.0f / pq->scale)));
                r = fmax(rint(code), 0.0) - code;  // rint(code) < 0 only within 1/2 of the top level
            }
            want += r * r;
            want_inside++;
        }
        double a = sqrt(12.0 * sum_sq / inside);
        CHECK(inside == want_inside && fabs(sum_sq - want) <= 1e-6 * want && a > 0.3 && a < 1.5,
              "%s residual: %zu elements (expected %zu), sum %.8g (expected %.8g)", quant_name(pq), inside, want_inside,
              sum_sq, want);
        printf("%s %d-bit s %.4g: measured a = sqrt(12 mean r^2) = %.3f over %zu of %zu probabilities\n",
               quant_name(pq), pq->bits, pq->scale, a, inside, c.n_probs);
    }
    free(got);
    case_free(&c);
}

// The backward with noise is the real quantizer's STE at P: dq and dk bit for bit as without noise; dv weights
// dout by the noisy P~ of the forward. For the uniform grid (derivative 1 where nothing clamps) finite differences
// of the noisy forward w.r.t. q, k and v, with the noise fixed, equal the backward.
static void test_gradient(void) {
    const qft_prob_quant quants[] = {uniform_quant(4, 1.0f / 15.0f), log_quant(QFT_QUANT_LOG2, 4, 1.0f),
                                     log_quant(QFT_QUANT_LOG_SQRT2, 4, 1.0f)};
    for (size_t qi = 0; qi < sizeof quants / sizeof *quants; qi++) {
        attn_case c;
        case_init(&c, 2, 5, 5, 2, 6, 0.5f);
        free(c.v);
        size_t n = (size_t)c.B * c.T * c.C, n_out = (size_t)c.B * c.Tq * c.C;
        c.v = random_tensor(n, -1.0f, 1.0f);
        float *dout = random_tensor(n_out, -1.0f, 1.0f);
        float *grads[2][3];
        qft_prob_noise noise = {{.kind = QFT_NOISE_UNIFORM, .amplitude = 1.0f, .seed = 5,
                                 .stream = qft_noise_stream(1, 2)}};
        float scale = 1.0f / sqrtf((float)c.HS);
        for (int noisy = 0; noisy < 2; noisy++) {
            qft_prob_quant pq = quants[qi];
            pq.noise = noisy ? &noise : NULL;
            for (int g = 0; g < 3; g++) grads[noisy][g] = zero_tensor(n);
            be->attention_forward(c.out, c.probs, c.q, c.k, c.v, (int)c.C, NULL, c.B, c.T, c.Tq, c.NH, c.HS, scale,
                                  &pq);
            be->attention_backward(grads[noisy][0], grads[noisy][1], grads[noisy][2], dout, c.probs, c.q, c.k, c.v,
                                   (int)c.C, c.B, c.T, c.Tq, c.NH, c.HS, scale, &pq);
        }
        qft_prob_quant pq = quants[qi];
        pq.noise = &noise;
        CHECK(memcmp(grads[0][0], grads[1][0], n * sizeof(float)) == 0 &&
              memcmp(grads[0][1], grads[1][1], n * sizeof(float)) == 0,
              "%s: dq, dk with noise differ from the real quantizer's", quant_name(&pq));
        // dv_j = sum_i P~_ij dout_i, P~ from the contract.
        float *dv = zero_tensor(n);
        for (int b = 0; b < c.B; b++)
            for (int h = 0; h < c.NH; h++)
                for (int i = 0; i < c.Tq; i++)
                    for (int j = 0; j < c.T; j++) {
                        size_t e = (((size_t)b * c.NH + h) * c.Tq + i) * c.T + j;
                        float w = reference_prob(&pq, c.probs[e], e);
                        for (int d = 0; d < c.HS; d++)
                            dv[((size_t)b * c.T + j) * c.C + (size_t)h * c.HS + d] +=
                                w * dout[((size_t)b * c.Tq + i) * c.C + (size_t)h * c.HS + d];
                    }
        double dv_error = qft_max_rel_error(grads[1][2], dv, n, 1e-6);
        int dv_moved = memcmp(grads[0][2], grads[1][2], n * sizeof(float)) != 0;
        CHECK(dv_error < 1e-5 && dv_moved, "%s: dv with noise vs sum P~ dout: %.3g (differs from the real one: %d)",
              quant_name(&pq), dv_error, dv_moved);
        if (pq.kind == QFT_QUANT_UNIFORM) {
            float lo_p = 1.0f, hi_p = 0.0f;
            for (size_t i = 0; i < c.n_probs; i++) lo_p = fminf(lo_p, c.probs[i]), hi_p = fmaxf(hi_p, c.probs[i]);
            CHECK(lo_p > 0.6f * pq.scale && hi_p < 1.0f - 0.6f * pq.scale,
                  "precondition: no probability within a s / 2 of the range ends ([%g, %g])", lo_p, hi_p);
            float *inputs[3] = {c.q, c.k, c.v};
            double worst = 0.0, largest = 0.0;
            float *out = malloc(n_out * sizeof(float));
            for (int g = 0; g < 3; g++) {
                for (size_t i = 0; i < n; i++) {
                    float keep = inputs[g][i], h = 1e-2f;
                    double loss[2];
                    for (int side = 0; side < 2; side++) {
                        inputs[g][i] = side ? keep - h : keep + h;
                        be->attention_forward(out, c.probs, c.q, c.k, c.v, (int)c.C, NULL, c.B, c.T, c.Tq, c.NH, c.HS,
                                              scale, &pq);
                        loss[side] = 0.0;
                        for (size_t o = 0; o < n_out; o++) loss[side] += (double)out[o] * dout[o];
                    }
                    inputs[g][i] = keep;
                    double fd = (loss[0] - loss[1]) / (2.0 * h);
                    worst = fmax(worst, fabs(fd - grads[1][g][i]));
                    largest = fmax(largest, fabs(fd));
                }
            }
            CHECK(worst < 2e-3 * largest, "uniform noise: finite differences of the noisy forward vs the backward: max "
                  "error %.3g of %.3g", worst, largest);
            printf("attention op, 4-bit uniform probabilities with noise (a = 1): d(q, k, v) vs finite differences "
                   "(noise fixed): max error %.2g of %.3g\n", worst, largest);
            free(out);
        }
        for (int noisy = 0; noisy < 2; noisy++)
            for (int g = 0; g < 3; g++) free(grads[noisy][g]);
        free(dv), free(dout);
        case_free(&c);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// A tiny ViT with only its attention probabilities quantized.

typedef struct {
    qft_config cfg;
    qft_model m;
    qft_methods methods;
    int B;
} tiny_vit;

static int tiny_vit_init(tiny_vit *t, const char *probs_rule, const char *noise_yaml, float s) {
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "model: {hidden_size: 16, num_layers: 2, num_heads: 2, intermediate_size: 32}\n"
             "quant:\n  rules:\n    - {pattern: \"*.attn.probs\", %s}\nnoise: {%s}\n", probs_rule, noise_yaml);
    qft_error err;
    qft_config_defaults(&t->cfg);
    if (qft_config_load_string(&t->cfg, yaml, strlen(yaml), "noise_probs", &err) != QFT_OK) {
        CHECK(0, "config: %s", err.message);
        return 0;
    }
    t->B = 4;
    CHECK(qft_model_create(&t->m, &t->cfg.model, t->B, 0, be, 5, &err) == QFT_OK, "model: %s", err.message);
    CHECK(qft_model_quant_configure(&t->m, &t->cfg.quant.rules, &err) == QFT_OK, "rules: %s", err.message);
    CHECK(qft_methods_init(&t->methods, &t->cfg, &t->m, &err) == QFT_OK, "methods: %s", err.message);
    int probs_sites = 0;
    for (int i = 0; i < t->m.quant.count; i++) {
        qft_quant_site *site = &t->m.quant.sites[i];
        if (!site->fmt.enabled) continue;
        probs_sites += site->role == QFT_SITE_PROBS && t->methods.noise.selected[i];
        float sz[2] = {s, 0.0f};
        be->copy_to_device(site->scale, sz, sizeof sz);
    }
    CHECK(probs_sites == 2 && t->m.quant.enabled_count == 2, "noise.sites selects the 2 probability sites (%d)",
          probs_sites);
    t->m.quant.mode = QFT_QUANT_ON;
    float *images = random_tensor((size_t)t->B * 28 * 28, -1.0f, 1.0f);
    int32_t labels[4] = {1, 2, 3, 4};
    qft_batch batch = {.batch_size = t->B, .images = images, .labels = labels};
    CHECK(qft_model_set_batch(&t->m, &batch, &err) == QFT_OK, "batch: %s", err.message);
    free(images);
    return 1;
}

static void tiny_vit_free(tiny_vit *t) {
    qft_methods_free(&t->methods);
    qft_model_free(&t->m);
}

// Training forward of micro-batch k (optimizer step `step`), logits into logits.
static float noisy_forward(tiny_vit *t, long step, uint64_t k, float *logits) {
    qft_methods_begin_micro(&t->methods, step, 10, 0, 7, k, 1.0f);
    float loss = qft_model_forward(&t->m, 1, 7, k);
    qft_methods_end_micro(&t->methods);
    be->copy_to_host(logits, t->m.acts.logits, (size_t)t->B * t->m.num_labels * sizeof(float));
    return loss;
}

// Noisy training forwards differ from the real quantizer, repeat for the same step and change with the step;
// evaluation afterwards is the real quantizer bit for bit. a_site of each probability site is measured on the
// forward's probabilities before the noise (compared with the residual recomputed here).
static void test_model(const char *what, const char *probs_rule, float s) {
    tiny_vit t;
    if (!tiny_vit_init(&t, probs_rule, "kind: uniform, adapt_every: 1, amplitude_min: 0.1, amplitude_max: 4", s))
        return;
    size_t nl = (size_t)t.B * t.m.num_labels;
    float real_logits[nl], noisy_logits[3][nl], after_logits[nl];
    float real = qft_model_forward(&t.m, 0, 7, 0);
    be->copy_to_host(real_logits, t.m.acts.logits, sizeof real_logits);
    float noisy[3];
    for (int k = 0; k < 3; k++) noisy[k] = noisy_forward(&t, k == 2, k == 2, noisy_logits[k]);
    // a_site from the last forward's probabilities (the same on both passes of the adapting forward).
    for (int l = 0; l < t.m.num_layers; l++) {
        char name[64];
        snprintf(name, sizeof name, "layers.%d.attn.probs", l);
        int index = qft_quant_find(&t.m.quant, name);
        const qft_quant_site *site = &t.m.quant.sites[index];
        int queries = l == t.m.num_layers - 1 && t.m.prune_last_layer ? t.m.n_prefix : t.m.max_T;
        size_t n = (size_t)t.B * t.m.NH * queries * t.m.max_T;
        float *probs = malloc(n * sizeof(float));
        be->copy_to_host(probs, t.m.acts.layers[l].probs, n * sizeof(float));
        qft_prob_quant pq = site->fmt.kind == QFT_QUANT_UNIFORM ? uniform_quant(site->fmt.bits, s)
                                                                : log_quant((int)site->fmt.kind, site->fmt.bits, s);
        double sum = 0.0;
        size_t count = 0;
        for (size_t i = 0; i < n; i++) {
            int noisy_element;
            float level = real_prob(&pq, probs[i], &noisy_element);
            if (!noisy_element) continue;
            double r = pq.kind == QFT_QUANT_UNIFORM ? ((double)level - probs[i]) / s
                                                    : rint(-log2((double)(probs[i] * (1.0f / s)))) +
                                                          log2((double)(probs[i] * (1.0f / s)));
            sum += r * r;
            count++;
        }
        double want = fmin(fmax(sqrt(12.0 * sum / count), 0.1), 4.0);
        CHECK(fabs(site->noise_amplitude - want) < 1e-5 * want && site->noise_amplitude != 1.0f,
              "%s: %s amplitude %.6g, the residual of its probabilities gives %.6g", what, name,
              site->noise_amplitude, want);
        printf("%s: %s a_site = %.4f (measured on %zu of %zu probabilities)\n", what, name, site->noise_amplitude,
               count, n);
        free(probs);
    }
    float after = qft_model_forward(&t.m, 0, 7, 0);
    be->copy_to_host(after_logits, t.m.acts.logits, sizeof after_logits);
    double moved = 0.0;
    for (size_t i = 0; i < nl; i++) moved = fmax(moved, fabs((double)noisy_logits[0][i] - real_logits[i]));
    CHECK(noisy[0] != real && moved > 0 && memcmp(noisy_logits[0], noisy_logits[1], sizeof real_logits) == 0 &&
              memcmp(noisy_logits[2], noisy_logits[0], sizeof real_logits) != 0 && after == real &&
              memcmp(after_logits, real_logits, sizeof real_logits) == 0,
          "%s: losses real %.7g, noisy %.7g / %.7g (same step) / %.7g (next step), real again %.7g", what, real,
          noisy[0], noisy[1], noisy[2], after);
    printf("%s: loss real %.6f, noisy %.6f (same step %.6f, next step %.6f), max |logit change| %.3g, evaluation "
           "after: %.6f\n", what, real, noisy[0], noisy[1], noisy[2], moved, after);
    tiny_vit_free(&t);
}

// With the noise fixed (same micro-batch k, no adaptation), central differences of the training loss w.r.t.
// sampled parameters equal the model's backward: for uniform noise on 4-bit probabilities (a = 1; the test checks
// that no probability lies within a s / 2 of the range ends, where the clamp would cut the derivative), and for
// the log2 quantizer at a = 0, where the noise form passes P itself and the backward is the STE at P.
static void test_model_gradient(const char *what, const char *probs_rule, float s, const char *noise_yaml) {
    tiny_vit t;
    if (!tiny_vit_init(&t, probs_rule, noise_yaml, s)) return;
    size_t np = t.m.table.total_floats;
    float *grads = malloc(np * sizeof(float)), *real_grads = malloc(np * sizeof(float));
    float *params = malloc(np * sizeof(float));
    const uint64_t k = 3;
    for (int noisy = 0; noisy < 2; noisy++) {
        qft_model_zero_grads(&t.m);
        if (noisy) qft_methods_begin_micro(&t.methods, 0, 10, 0, 7, k, 1.0f);
        qft_model_forward(&t.m, 1, 7, k);
        qft_model_backward(&t.m, 1.0f, 7, k);
        if (noisy) qft_methods_end_micro(&t.methods);
        be->copy_to_host(noisy ? grads : real_grads, t.m.grads, np * sizeof(float));
    }
    float lo_p = 1.0f, hi_p = 0.0f;
    for (int l = 0; l < t.m.num_layers; l++) {
        int queries = l == t.m.num_layers - 1 && t.m.prune_last_layer ? t.m.n_prefix : t.m.max_T;
        size_t n = (size_t)t.B * t.m.NH * queries * t.m.max_T;
        float *probs = malloc(n * sizeof(float));
        be->copy_to_host(probs, t.m.acts.layers[l].probs, n * sizeof(float));
        for (size_t i = 0; i < n; i++) lo_p = fminf(lo_p, probs[i]), hi_p = fmaxf(hi_p, probs[i]);
        free(probs);
    }
    int uniform = strstr(probs_rule, "log") == NULL;
    if (uniform)
        CHECK(lo_p > 0.5f * s && hi_p < 1.0f - 0.5f * s,
              "%s: precondition: probabilities [%g, %g] stay a s / 2 away from the range ends", what, lo_p, hi_p);
    be->copy_to_host(params, t.m.params, np * sizeof(float));
    double worst = 0.0, largest = 0.0, differ = 0.0;
    int sampled = 0;
    for (size_t j = 3; j < np; j += 37) {
        float keep = params[j], h = 2e-3f;
        double loss[2];
        for (int side = 0; side < 2; side++) {
            float v = side ? keep - h : keep + h;
            be->copy_to_device(t.m.params + j, &v, sizeof v);
            qft_methods_begin_micro(&t.methods, 0, 10, 0, 7, k, 1.0f);
            loss[side] = qft_model_forward(&t.m, 1, 7, k);
            qft_methods_end_micro(&t.methods);
        }
        be->copy_to_device(t.m.params + j, &keep, sizeof keep);
        double fd = (loss[0] - loss[1]) / (2.0 * h);
        worst = fmax(worst, fabs(fd - grads[j]));
        largest = fmax(largest, fabs(fd));
        differ = fmax(differ, fabs((double)grads[j] - real_grads[j]));
        sampled++;
    }
    // The noise moves the gradient by far more than the finite differences' error: the check sees it.
    CHECK(worst <= 2e-2 * largest && (!uniform || differ > 10.0 * worst),
          "%s: gradient vs finite differences with the noise fixed: max error %.3g of %.3g over %d parameters (the "
          "real quantizer's gradient differs by %.3g)", what, worst, largest, sampled, differ);
    printf("%s: model gradient vs finite differences (noise fixed): max error %.3g of %.3g over %d parameters; "
           "probabilities in [%.4f, %.4f]; differs from the real quantizer's gradient by up to %.3g\n", what, worst,
           largest, sampled, lo_p, hi_p, differ);
    free(grads), free(real_grads), free(params);
    tiny_vit_free(&t);
}

// noise.sites that excludes the probabilities leaves them on the real quantizer.
static void test_selection(void) {
    tiny_vit t;
    qft_config cfg;
    qft_error err;
    const char yaml[] = "model: {hidden_size: 16, num_layers: 2, num_heads: 2, intermediate_size: 32}\n"
                        "quant:\n  rules:\n"
                        "    - {pattern: \"*.attn.probs\", bits: 4, symmetric: false, signed: false}\n"
                        "    - {pattern: \"layers.*.fc1.input\", bits: 4, symmetric: false, signed: false}\n"
                        "noise: {kind: uniform, sites: \"*.fc1.input\"}\n";
    qft_config_defaults(&cfg);
    CHECK(qft_config_load_string(&cfg, yaml, strlen(yaml), "selection", &err) == QFT_OK, "config: %s", err.message);
    CHECK(qft_model_create(&t.m, &cfg.model, 2, 0, be, 5, &err) == QFT_OK, "model: %s", err.message);
    CHECK(qft_model_quant_configure(&t.m, &cfg.quant.rules, &err) == QFT_OK, "rules: %s", err.message);
    CHECK(qft_methods_init(&t.methods, &cfg, &t.m, &err) == QFT_OK, "methods: %s", err.message);
    int probs = 0, inputs = 0;
    for (int i = 0; i < t.m.quant.count; i++) {
        probs += t.methods.noise.selected[i] && t.m.quant.sites[i].role == QFT_SITE_PROBS;
        inputs += t.methods.noise.selected[i] && t.m.quant.sites[i].role == QFT_SITE_INPUT;
    }
    CHECK(probs == 0 && inputs == 2, "noise.sites *.fc1.input: %d probability sites, %d input sites selected", probs,
          inputs);
    t.methods.noise.training = 1;
    qft_quant_noise noise;
    qft_prob_quant pq = uniform_quant(4, 0.1f);
    int index = qft_quant_find(&t.m.quant, "layers.0.attn.probs");
    CHECK(t.m.quant.hooks->probs_noise(t.m.quant.hooks->ctx, &t.m.quant, index, &pq, &noise) == 0,
          "an unselected probability site gets no noise");
    tiny_vit_free(&t);
}

int main(void) {
    be = qft_backend_cpu();
    test_reference();
    test_statistics();
    test_residual();
    test_gradient();
    const char *uniform4 = "bits: 4, symmetric: false, signed: false";
    const char *log2_4 = "kind: log2, bits: 4";
    test_model("4-bit uniform probabilities", uniform4, 1.0f / 15.0f);
    test_model("4-bit log2 probabilities", log2_4, 1.0f);
    test_model_gradient("4-bit uniform probabilities, uniform noise a = 1", uniform4, 1.0f / 15.0f,
                        "kind: uniform, adapt_every: 0, amplitude: 1");
    test_model_gradient("4-bit log2 probabilities, noise a = 0", log2_4, 1.0f,
                        "kind: uniform, adapt_every: 0, amplitude: 0");
    test_selection();
    QFT_TEST_SUMMARY();
}
