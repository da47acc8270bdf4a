// The outlier-range penalty (host/method/penalty.c, docs/methods.md §1): the backend ops against direct
// sums and finite differences, and the whole model's penalty gradient (site hooks on INPUT and OUTPUT
// sites, quantized or not) against finite differences of the penalty with its statistics held fixed.
#include <string.h>

#include "backend/backend.h"
#include "io/config.h"
#include "method/methods.h"
#include "model/model.h"
#include "test_util.h"

static const qft_backend *be;

// Ops: moments against a double loop; forward against a direct sum; backward (accumulating) against
// central differences of the forward, for p = 2 and p = 3.
static void test_ops(void) {
    size_t n = 5000;
    float *x = random_tensor(n, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i += 97) x[i] *= 12.0f;  // outliers
    double m[4], sum = 0.0, sq = 0.0, mn = x[0], mx = x[0];
    be->tensor_moments(x, n, m);
    for (size_t i = 0; i < n; i++) sum += x[i], mn = fmin(mn, x[i]), mx = fmax(mx, x[i]);
    for (size_t i = 0; i < n; i++) sq += (x[i] - sum / n) * (x[i] - sum / n);
    CHECK(fabs(m[0] - sum / n) < 1e-12 && fabs(m[1] - sqrt(sq / n)) < 1e-12 && m[2] == mn && m[3] == mx,
          "moments (%g %g %g %g) vs (%g %g %g %g)", m[0], m[1], m[2], m[3], sum / n, sqrt(sq / n), mn, mx);
    float mu = (float)m[0], tau = (float)(2.0 * m[1]);
    for (int p = 2; p <= 3; p++) {
        double direct = 0.0;
        size_t direct_count = 0, count = 0;
        for (size_t i = 0; i < n; i++) {
            double e = fabs((double)x[i] - mu) - tau;
            if (e > 0) direct += pow(e, p), direct_count++;
        }
        double got = be->outlier_penalty_forward(x, n, mu, tau, (float)p, &count);
        CHECK(direct > 0 && fabs(got - direct) <= 1e-9 * direct, "p=%d forward %.12g vs %.12g", p, got, direct);
        CHECK(count == direct_count && count > 20 && count < n, "p=%d outlier count %zu vs %zu", p, count, direct_count);
        float *dx = calloc(n, sizeof(float));
        for (size_t i = 0; i < n; i++) dx[i] = 0.25f;  // backward accumulates
        be->outlier_penalty_backward(dx, x, n, mu, tau, (float)p, 0.5f);
        double worst = 0.0, scale = 0.0;
        int outside = 0;
        for (size_t i = 0; i < n; i++) {
            float keep = x[i], h = 1e-2f;
            x[i] = keep + h;
            double up = be->outlier_penalty_forward(x, n, mu, tau, (float)p, NULL);
            x[i] = keep - h;
            double down = be->outlier_penalty_forward(x, n, mu, tau, (float)p, NULL);
            x[i] = keep;
            double fd = 0.5 * (up - down) / (2.0 * h) + 0.25;
            worst = fmax(worst, fabs(fd - dx[i]));
            scale = fmax(scale, fabs(fd - 0.25));
            outside += fabs(fd - 0.25) > 0;
        }
        CHECK(outside > 20 && worst <= 2e-3 * scale, "p=%d backward vs finite differences: max error %.3g of %.3g "
              "(%d elements beyond tau)", p, worst, scale, outside);
        free(dx);
    }
    free(x);
}

// A test hook that recomputes the model's penalty with the statistics of a reference forward held fixed
// (mu, tau and w are stop-gradient in the method), so finite differences see the same objective.
typedef struct {
    const qft_penalty *pen;
    double loss;
} frozen_penalty;

static void frozen_observe(void *ctx, qft_quant_state *st, int site, const float *x, int rows) {
    frozen_penalty *f = ctx;
    const qft_penalty_site *ps = &f->pen->sites[site];
    if (!ps->selected || !(ps->tau > 0)) return;
    size_t n = (size_t)rows * st->sites[site].C;
    // coef = w_l / (M_l sigma_l^p), frozen at the reference forward (M_l too: the outlier count).
    f->loss += ps->coef * st->be->outlier_penalty_forward(x, n, ps->mu, ps->tau, (float)f->pen->cfg->p, NULL);
}

static void set_batch(qft_model *m, int B) {
    float *images = random_tensor((size_t)B * 28 * 28, -1.0f, 1.0f);
    int32_t labels[16];
    for (int b = 0; b < B; b++) labels[b] = b % 10;
    qft_batch batch = {.batch_size = B, .images = images, .labels = labels};
    qft_error err;
    CHECK(qft_model_set_batch(m, &batch, &err) == QFT_OK, "set batch: %s", err.message);
    free(images);
}

// d(lambda L_out)/dtheta from the model's backward (with hooks minus without) against central differences
// of lambda L_out(theta) with frozen statistics, on sampled parameters. `extra_yaml` may quantize sites; then
// no penalized site may lie downstream of a quantizer (rounding makes finite differences meaningless there),
// but the quantized sites themselves may be penalized (their unquantized values are).
static void test_model_gradient(const char *what, const char *mode, const char *normalize, const char *sites,
                                const char *extra_yaml) {
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "model: {hidden_size: 16, num_layers: 2, num_heads: 2, intermediate_size: 32}\n"
             "penalty: {lambda: 4.0, k: 1.5, mode: %s, normalize: %s, sites: \"%s\"}\n%s", mode, normalize, sites,
             extra_yaml);
    qft_config cfg;
    qft_error err;
    qft_config_defaults(&cfg);
    if (qft_config_load_string(&cfg, yaml, strlen(yaml), what, &err) != QFT_OK) {
        CHECK(0, "%s: config: %s", what, err.message);
        return;
    }
    int B = 4;
    qft_model m;
    qft_methods methods;
    CHECK(qft_model_create(&m, &cfg.model, B, 0, be, 5, &err) == QFT_OK, "%s: model: %s", what, err.message);
    CHECK(qft_model_quant_configure(&m, &cfg.quant.rules, &err) == QFT_OK, "%s: rules: %s", what, err.message);
    CHECK(qft_methods_init(&methods, &cfg, &m, &err) == QFT_OK, "%s: methods: %s", what, err.message);
    CHECK(m.prune_last_layer == 1, "%s: a penalty on the last layer keeps its pruning (CLS rows only)", what);
    if (m.quant.enabled_count) {
        // A fixed range a little narrower than the activations: some values clip, the rest round.
        for (int i = 0; i < m.quant.count; i++) {
            qft_quant_site *site = &m.quant.sites[i];
            if (!site->fmt.enabled) continue;
            float s[site->n_params], z[site->n_params];
            for (int k = 0; k < site->n_params; k++) s[k] = site->role == QFT_SITE_WEIGHT ? 0.02f : 0.03f, z[k] = 0;
            be->copy_to_device(site->scale, s, sizeof s);
            be->copy_to_device(site->zero_point, z, sizeof z);
        }
        m.quant.mode = QFT_QUANT_ON;
    }
    set_batch(&m, B);
    size_t np = m.table.total_floats;
    float *with = malloc(np * sizeof(float)), *without = malloc(np * sizeof(float));
    qft_model_zero_grads(&m);
    qft_methods_begin_micro(&methods, 0, 10, 0, 7, 0, 1.0f);
    qft_model_forward(&m, 1, 7, 0);
    qft_model_backward(&m, 1.0f, 7, 0);
    qft_methods_end_micro(&methods);
    double weighted, raw;
    qft_methods_take_penalty(&methods, &weighted, &raw);
    be->copy_to_host(with, m.grads, np * sizeof(float));
    // The same step with no hooks: the task gradient alone.
    m.quant.hooks = NULL;
    qft_model_zero_grads(&m);
    qft_model_forward(&m, 1, 7, 0);
    qft_model_backward(&m, 1.0f, 7, 0);
    be->copy_to_host(without, m.grads, np * sizeof(float));
    frozen_penalty frozen = {&methods.penalty, 0.0};
    qft_site_hooks probe = {.ctx = &frozen, .observe = frozen_observe};
    m.quant.hooks = &probe;
    double lambda = methods.penalty.lambda_now;
    CHECK(raw > 0 && weighted == lambda * raw, "%s: penalty %g (weighted %g)", what, raw, weighted);
    if (!strcmp(mode, "quant_range")) {
        // Quantized sites use their quantizer's range: [-8 s, 7 s] for 4-bit signed symmetric, s = 0.03.
        int site = qft_quant_find(&m.quant, "final_ln.output");
        const qft_penalty_site *ps = &methods.penalty.sites[site];
        CHECK(fabsf(ps->mu - (-0.5f * 0.03f)) < 1e-6f && fabsf(ps->tau - 7.5f * 0.03f) < 1e-6f,
              "%s: final_ln.output range mu %g tau %g, expected the quantizer's -0.015 +- 0.225", what, ps->mu, ps->tau);
    }
    // Sampled parameters: every 37th, which lands in every tensor of this small model.
    float *params = malloc(np * sizeof(float));
    be->copy_to_host(params, m.params, np * sizeof(float));
    double worst = 0.0, scale = 0.0;
    int sampled = 0, moved = 0;
    for (size_t j = 3; j < np; j += 37) {
        float keep = params[j], h = 2e-3f;
        double loss[2];
        for (int side = 0; side < 2; side++) {
            float v = side ? keep - h : keep + h;
            be->copy_to_device(m.params + j, &v, sizeof v);
            frozen.loss = 0.0;
            qft_model_forward(&m, 1, 7, 0);
            loss[side] = lambda * frozen.loss;
        }
        be->copy_to_device(m.params + j, &keep, sizeof keep);
        double fd = (loss[0] - loss[1]) / (2.0 * h), analytic = (double)with[j] - (double)without[j];
        worst = fmax(worst, fabs(fd - analytic));
        scale = fmax(scale, fabs(fd));
        moved += fabs(analytic) > 1e-5;
        sampled++;
    }
    CHECK(moved > sampled / 3 && worst <= 2e-2 * scale, "%s: penalty gradient vs finite differences: max error %.3g "
          "of %.3g over %d parameters (%d with a penalty gradient)", what, worst, scale, sampled, moved);
    printf("%s: L_out %.4g, penalty gradient max error %.3g of %.3g over %d parameters\n", what, raw, worst, scale,
           sampled);
    free(params);
    free(with);
    free(without);
    qft_methods_free(&methods);
    qft_model_free(&m);
}

// Config errors are one line naming the key.
static void test_errors(void) {
    qft_config cfg;
    qft_error err;
    qft_config_defaults(&cfg);
    cfg.penalty.lambda = 1.0;
    snprintf(cfg.penalty.sites, sizeof cfg.penalty.sites, "layers.*.ln1.output,nothing.here");
    qft_model m;
    qft_methods methods;
    CHECK(qft_model_create(&m, &cfg.model, 2, 0, be, 5, &err) == QFT_OK, "model: %s", err.message);
    CHECK(qft_model_quant_configure(&m, &cfg.quant.rules, &err) == QFT_OK, "rules: %s", err.message);
    CHECK(qft_methods_init(&methods, &cfg, &m, &err) == QFT_ERR_INVALID && strstr(err.message, "nothing.here") &&
          !strchr(err.message, '\n'), "an unmatched pattern is named: %s", err.message);
    qft_methods_free(&methods);
    qft_model_free(&m);
}

int main(void) {
    be = qft_backend_cpu();
    test_ops();
    const char *every = "layers.*.ln?.output,layers.*.fc?.input,layers.*.resid?.output,layers.*.qkv.input,"
                        "layers.*.proj.input,final_ln.output,embeddings.output";
    test_model_gradient("fp model", "sigma", "outliers", every, "");
    test_model_gradient("fp model, normalized by all elements", "sigma", "elements", every, "");
    // A quantized OUTPUT site (in-place quantization: the penalty sees the unquantized copy).
    test_model_gradient("quantized final_ln.output and head", "sigma", "outliers", every,
                        "quant:\n  rules:\n    - {pattern: \"final_ln.output\", bits: 4}\n"
                        "    - {pattern: \"head.*\", bits: 4}\n");
    // A quantized INPUT site (the penalty's gradient joins dL/dx after the STE).
    test_model_gradient("quantized layers.1.fc2 input and weight", "sigma", "outliers",
                        "layers.*.ln?.output,layers.*.fc?.input,layers.0.resid?.output,layers.1.resid1.output,"
                        "layers.*.qkv.input,layers.*.proj.input,embeddings.output",
                        "quant:\n  rules:\n    - {pattern: \"layers.1.fc2.*\", bits: 4}\n");
    // mode quant_range: the quantized site's range replaces mu +- k sigma (the others keep sigma).
    test_model_gradient("quant_range mode, quantized final_ln.output", "quant_range", "outliers", every,
                        "quant:\n  rules:\n    - {pattern: \"final_ln.output\", bits: 4}\n");
    test_errors();
    QFT_TEST_SUMMARY();
}
