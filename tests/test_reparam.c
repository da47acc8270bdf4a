// RepQ-style folding (host/method/reparam.c): a ViT whose qkv / fc1 inputs are quantized per channel
// gives the same outputs after the per-channel scales are folded into LayerNorm and the next linear
// and the sites turned per tensor; BERT (post-LN) and quantized LayerNorm outputs are refused.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"
#include "method/reparam.h"
#include "model/model.h"
#include "quant/calib.h"
#include "test_util.h"

enum { B = 8 };

typedef struct {
    qft_calibrator **calibrators;
} observer_ctx;

// Minmax calibration of every enabled activation site on the batches that pass through.
static void observe(void *vctx, qft_quant_state *st, int index, const float *x, int rows, int C) {
    observer_ctx *ctx = vctx;
    qft_quant_site *site = &st->sites[index];
    if (site->role == QFT_SITE_WEIGHT) rows = site->rows;
    qft_error err;
    int axis = site->layout.axis == QFT_FQ_PER_COLUMN ? QFT_CALIB_AXIS_COLUMN : QFT_CALIB_AXIS_ROW;
    if (site->role == QFT_SITE_WEIGHT && qft_calibrator_batches(ctx->calibrators[index]) > 0) return;
    CHECK(qft_calibrator_observe(ctx->calibrators[index], x, (size_t)rows, (size_t)C, axis, &err) == QFT_OK, "%s",
          err.message);
}

static qft_config vit_config(const char *rules_yaml) {
    qft_config cfg;
    qft_error err;
    qft_config_defaults(&cfg);
    cfg.model.hidden_size = 32;
    cfg.model.num_layers = 2;
    cfg.model.num_heads = 2;
    cfg.model.intermediate_size = 64;
    CHECK(qft_config_load_string(&cfg, rules_yaml, strlen(rules_yaml), "rules", &err) == QFT_OK, "%s", err.message);
    return cfg;
}

// A model with non-trivial LayerNorm affines (gamma, beta far from 1, 0), calibrated on `images`.
static void build(qft_model *m, const qft_config *cfg, const float *images) {
    qft_error err;
    CHECK(qft_model_create(m, &cfg->model, B, 0, qft_backend_cpu(), 7, &err) == QFT_OK, "%s", err.message);
    for (int l = 0; l < m->num_layers; l++) {
        for (int c = 0; c < m->D; c++) {
            qft_layer_params *w = &m->w.layers[l];
            w->ln1_w[c] = 0.5f + (float)((c * 37 + l * 11) % 29) / 10.0f;
            w->ln1_b[c] = (float)((c * 13 + l) % 7) / 5.0f - 0.6f;
            w->ln2_w[c] = 0.3f + (float)((c * 23 + l * 5) % 31) / 8.0f;
            w->ln2_b[c] = (float)((c * 17 + l) % 9) / 6.0f - 0.7f;
        }
    }
    CHECK(qft_model_quant_configure(m, &cfg->quant.rules, &err) == QFT_OK, "%s", err.message);
    qft_quant_state *q = &m->quant;
    observer_ctx ctx = {calloc((size_t)q->count, sizeof(qft_calibrator *))};
    for (int i = 0; i < q->count; i++)
        if (q->sites[i].fmt.enabled)
            CHECK(qft_calibrator_create(&q->sites[i].fmt, q->sites[i].n_params, q->sites[i].name, &ctx.calibrators[i],
                                        &err) == QFT_OK, "%s", err.message);
    qft_batch batch = {.batch_size = B, .images = images};
    CHECK(qft_model_set_batch(m, &batch, &err) == QFT_OK, "%s", err.message);
    q->observe = observe;
    q->observe_ctx = &ctx;
    q->mode = QFT_QUANT_OBSERVE;
    qft_model_forward(m, 0, 0, 0);
    for (int i = 0; i < q->count; i++) {
        if (!ctx.calibrators[i]) continue;
        CHECK(qft_calibrator_finish(ctx.calibrators[i], q->sites[i].scale, q->sites[i].zero_point, NULL, NULL, &err) ==
                  QFT_OK, "%s", err.message);
        q->sites[i].calibrated = 1;
        qft_calibrator_free(ctx.calibrators[i]);
    }
    free(ctx.calibrators);
    q->observe = NULL;
    q->mode = QFT_QUANT_ON;
}

static double max_abs_diff(const float *a, const float *b, size_t n, double *max_ref) {
    double d = 0.0;
    *max_ref = 0.0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        *max_ref = fmax(*max_ref, fabs((double)b[i]));
    }
    return d;
}

static void test_fold(const char *what, const char *rules, double tolerance) {
    qft_config cfg = vit_config(rules);
    qft_model m;
    size_t pixels = (size_t)B * 28 * 28;
    float *images = malloc(pixels * sizeof(float));
    uint64_t state = 12345;
    for (size_t i = 0; i < pixels; i++) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        images[i] = (float)((state >> 40) & 0xFFFF) / 65535.0f * 3.0f - 1.0f;
    }
    build(&m, &cfg, images);
    qft_batch batch = {.batch_size = B, .images = images};
    qft_error err;
    CHECK(qft_model_set_batch(&m, &batch, &err) == QFT_OK, "%s", err.message);
    float before[B * 10], after[B * 10], fp[B * 10];
    qft_model_forward(&m, 0, 0, 0);
    qft_model_read_logits(&m, before);
    m.quant.mode = QFT_QUANT_OFF;
    qft_model_forward(&m, 0, 0, 0);
    qft_model_read_logits(&m, fp);
    m.quant.mode = QFT_QUANT_ON;
    qft_reparam_summary sum;
    CHECK(qft_reparam_fold(&m, &sum, &err) == QFT_OK, "%s: fold: %s", what, err.message);
    CHECK(sum.folded == 4, "%s: 4 pairs folded (2 layers x qkv, fc1), got %d", what, sum.folded);
    CHECK(sum.max_r1 > 1.5 && sum.min_r1 < 0.7, "%s: channel scales really differ (r1 in [%g, %g])", what,
          sum.min_r1, sum.max_r1);
    CHECK(m.layer_sites[0].qkv_in->n_params == 1 && m.layer_sites[1].fc1_in->layout.axis == QFT_FQ_PER_TENSOR,
          "%s: folded sites are per tensor", what);
    qft_model_forward(&m, 0, 0, 0);
    qft_model_read_logits(&m, after);
    double ref, d = max_abs_diff(after, before, B * 10, &ref), ref_fp, d_quant = max_abs_diff(before, fp, B * 10, &ref_fp);
    printf("%s: folded vs unfolded max |diff| %.3g (logits up to %.3g); quantization itself moves them %.3g\n", what,
           d, ref, d_quant);
    CHECK(d <= tolerance * ref, "%s: folded logits differ by %.3g (bound %.3g)", what, d, tolerance * ref);
    CHECK(d_quant > 10 * d, "%s: the quantization effect (%.3g) dwarfs the folding difference (%.3g)", what, d_quant,
          d);
    m.quant.mode = QFT_QUANT_OFF;
    qft_model_forward(&m, 0, 0, 0);
    qft_model_read_logits(&m, after);
    d = max_abs_diff(after, fp, B * 10, &ref);
    CHECK(d <= 1e-4 * ref, "%s: the folded FP model computes the same function (diff %.3g)", what, d);
    qft_model_free(&m);
    free(images);
}

static void test_refusals(void) {
    qft_config cfg = vit_config("quant: {rules: [{pattern: '*.qkv.input', granularity: channel, symmetric: false, "
                                "signed: false}, {pattern: '*.ln1.output'}]}");
    qft_model m;
    qft_error err;
    float images[B * 28 * 28];
    for (int i = 0; i < B * 28 * 28; i++) images[i] = (float)(i % 17) / 17.0f;
    build(&m, &cfg, images);
    qft_reparam_summary sum;
    CHECK(qft_reparam_fold(&m, &sum, &err) == QFT_ERR_INVALID && strstr(err.message, "ln1.output is quantized"),
          "quantized LayerNorm output refused: %s", err.message);
    qft_model_free(&m);

    qft_config bert;
    qft_config_defaults(&bert);
    const char *yaml = "model: {type: bert, hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64, "
                       "vocab_size: 50, num_labels: 2}\nquant: {rules: [{pattern: '*.fc1.input', granularity: channel}]}";
    CHECK(qft_config_load_string(&bert, yaml, strlen(yaml), "bert", &err) == QFT_OK, "%s", err.message);
    CHECK(qft_model_create(&m, &bert.model, 2, 8, qft_backend_cpu(), 1, &err) == QFT_OK, "%s", err.message);
    CHECK(qft_model_quant_configure(&m, &bert.quant.rules, &err) == QFT_OK, "%s", err.message);
    CHECK(qft_reparam_fold(&m, &sum, &err) == QFT_ERR_INVALID && strstr(err.message, "post-LN"),
          "BERT refused with the reason: %s", err.message);
    qft_model_free(&m);

    cfg = vit_config("quant: {rules: [{pattern: '*.qkv.input'}]}");
    CHECK(qft_model_create(&m, &cfg.model, 2, 0, qft_backend_cpu(), 1, &err) == QFT_OK, "%s", err.message);
    CHECK(qft_model_quant_configure(&m, &cfg.quant.rules, &err) == QFT_OK, "%s", err.message);
    CHECK(qft_reparam_fold(&m, &sum, &err) == QFT_ERR_INVALID && strstr(err.message, "no per-channel"),
          "nothing per channel to fold: %s", err.message);
    qft_model_free(&m);
}

int main(void) {
    // Activations only: the codes are the same after folding, so the outputs agree to float rounding.
    test_fold("8-bit inputs", "quant: {rules: [{pattern: '*.qkv.input', granularity: channel, symmetric: false, "
              "signed: false}, {pattern: '*.fc1.input', granularity: channel, symmetric: false, signed: false}]}", 1e-5);
    test_fold("4-bit inputs", "quant: {rules: [{pattern: '*.qkv.input', bits: 4, granularity: channel, symmetric: false, "
              "signed: false}, {pattern: '*.fc1.input', bits: 4, granularity: channel, symmetric: false, signed: false}]}",
              1e-5);
    test_refusals();
    QFT_TEST_SUMMARY();
}
