// Training arithmetic outside the ops: learning-rate schedules, global grad-norm clipping, AdamW
// decay groups, gradient accumulation (two half batches == one full batch), frozen quantizer ranges.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden_loader.h"
#include "model/model.h"
#include "test_util.h"
#include "train/optimizer.h"

static void test_schedules(void) {
    qft_config cfg;
    qft_config_defaults(&cfg);
    qft_train_config hp = cfg.train;
    hp.lr = 1.0;
    hp.warmup_steps = 10;
    hp.min_lr_ratio = 0.1;
    long total = 110;
    snprintf(hp.schedule, sizeof hp.schedule, "cosine");
    CHECK(fabsf(qft_schedule_lr(&hp, 0, total) - 0.1f) < 1e-7f, "warmup step 0: lr/warmup");
    CHECK(fabsf(qft_schedule_lr(&hp, 9, total) - 1.0f) < 1e-7f, "last warmup step reaches lr");
    CHECK(fabsf(qft_schedule_lr(&hp, 10, total) - 1.0f) < 1e-6f, "cosine starts at lr");
    CHECK(fabsf(qft_schedule_lr(&hp, 60, total) - 0.55f) < 1e-6f, "cosine midpoint = (lr + min)/2, got %g",
          qft_schedule_lr(&hp, 60, total));
    CHECK(fabsf(qft_schedule_lr(&hp, 110, total) - 0.1f) < 1e-6f, "cosine ends at lr * min_lr_ratio");
    CHECK(fabsf(qft_schedule_lr(&hp, 500, total) - 0.1f) < 1e-6f, "past the end stays at the floor");
    snprintf(hp.schedule, sizeof hp.schedule, "linear");
    CHECK(fabsf(qft_schedule_lr(&hp, 35, total) - 0.775f) < 1e-6f, "linear quarter point, got %g",
          qft_schedule_lr(&hp, 35, total));
    snprintf(hp.schedule, sizeof hp.schedule, "constant");
    CHECK(qft_schedule_lr(&hp, 80, total) == 1.0f, "constant after warmup");
    hp.warmup_steps = 0;
    CHECK(qft_schedule_lr(&hp, 0, total) == 1.0f, "no warmup: full lr at step 0");
}

static qft_model load_golden_vit(float **images, int32_t **labels, int *B) {
    qft_safetensors st;
    qft_error err;
    qft_model model;
    if (qft_safetensors_open(&st, "tests/golden/vit_tiny.safetensors", &err) != QFT_OK) {
        fprintf(stderr, "%s\n", err.message);
        exit(1);
    }
    qft_model_config mc;
    golden_model_config(&st, &mc);
    size_t n;
    *labels = golden_read_i32(&st, "labels", &n);
    *B = (int)n;
    *images = golden_read_f32(&st, "pixel_values", NULL);
    if (qft_model_create(&model, &mc, *B, 0, qft_backend_cpu(), 1, &err) != QFT_OK ||
        qft_model_import(&model, "tests/golden/vit_tiny.safetensors", NULL, NULL, &err) != QFT_OK) {
        fprintf(stderr, "%s\n", err.message);
        exit(1);
    }
    qft_safetensors_close(&st);
    return model;
}

// Rows {0,1,2} at once vs rows {0} and {1,2} accumulated with weights matching their share.
static void test_grad_accumulation(void) {
    float *images;
    int32_t *labels;
    int B;
    qft_model model = load_golden_vit(&images, &labels, &B);
    size_t n = model.table.total_floats, image_floats = (size_t)model.channels * model.image_size * model.image_size;
    qft_error err;
    float *full = malloc(n * sizeof(float)), *accumulated = malloc(n * sizeof(float));

    qft_batch batch = {.batch_size = B, .images = images, .labels = labels};
    qft_model_set_batch(&model, &batch, &err);
    qft_model_zero_grads(&model);
    qft_model_forward(&model, 1, 1, 0);
    qft_model_backward(&model, 1.0f, 1, 0);
    model.be->copy_to_host(full, model.grads, n * sizeof(float));

    qft_model_zero_grads(&model);
    qft_batch first = {.batch_size = 1, .images = images, .labels = labels};
    qft_batch rest = {.batch_size = B - 1, .images = images + image_floats, .labels = labels + 1};
    qft_model_set_batch(&model, &first, &err);
    qft_model_forward(&model, 1, 1, 0);
    qft_model_backward(&model, 1.0f / (float)B, 1, 0);
    qft_model_set_batch(&model, &rest, &err);
    qft_model_forward(&model, 1, 1, 0);
    qft_model_backward(&model, (float)(B - 1) / (float)B, 1, 0);
    model.be->copy_to_host(accumulated, model.grads, n * sizeof(float));
    double e = qft_max_rel_error(accumulated, full, n, 1e-30);
    CHECK(e < 1e-5, "accumulated micro-batch gradients differ from the full batch: %.3g", e);

    // Clipping: with grad_clip below the norm, the update uses gradients scaled to norm == clip.
    qft_config cfg;
    qft_config_defaults(&cfg);
    cfg.train.grad_clip = 1e-3;
    qft_optimizer opt;
    CHECK(qft_optimizer_create(&opt, &model, &cfg.train, 100, 0.0f, 0, &err) == QFT_OK, "%s", err.message);
    float norm_before = qft_optimizer_step(&opt, &model);
    double clipped = sqrt(model.be->sum_squares(model.grads, n));
    CHECK(norm_before > 1e-3f && fabs(clipped - 1e-3) < 1e-6, "clipped norm %.6g (before %.6g)", clipped,
          norm_before);
    CHECK(opt.step == 1, "optimizer step counter");

    // Decay groups: biases and LayerNorm parameters carry no weight decay, matrices do.
    const qft_param *ln = qft_param_table_find(&model.table, "vit.encoder.layer.0.layernorm_before.weight");
    const qft_param *bias = qft_param_table_find(&model.table, "vit.encoder.layer.0.attention.attention.query.bias");
    const qft_param *matrix = qft_param_table_find(&model.table, "vit.encoder.layer.0.intermediate.dense.weight");
    CHECK(ln && !ln->weight_decay && bias && !bias->weight_decay && matrix && matrix->weight_decay,
          "weight decay groups");
    qft_optimizer_free(&opt, &model);
    free(full);
    free(accumulated);
    free(images);
    free(labels);
    qft_model_free(&model);
}

// quant.freeze_after = 1: the first step moves the LSQ scales, the second leaves them and their
// moments as they are while the weights still move.
static void test_quant_freeze(void) {
    float *images;
    int32_t *labels;
    int B;
    qft_model model = load_golden_vit(&images, &labels, &B);
    qft_error err = {{0}};
    qft_config cfg;
    qft_config_defaults(&cfg);
    const char *rule = "quant.rules=[{pattern: '*.fc1.weight', bits: 4, granularity: channel, learn: lsq}]";
    CHECK(qft_config_override(&cfg, rule, &err) == QFT_OK &&
              qft_model_quant_configure(&model, &cfg.quant.rules, &err) == QFT_OK,
          "LSQ rules: %s", err.message);
    // Scales at a tenth of each weight's range, so the LSQ gradient is far from zero.
    qft_quant_state *q = &model.quant;
    for (size_t i = 0; i < q->param_floats; i++) q->params[i] = 0.01f;
    q->mode = QFT_QUANT_ON;
    qft_optimizer opt;
    CHECK(qft_optimizer_create(&opt, &model, &cfg.train, 100, 0.0f, 1, &err) == QFT_OK, "%s", err.message);
    qft_batch batch = {.batch_size = B, .images = images, .labels = labels};
    qft_model_set_batch(&model, &batch, &err);
    size_t nq = q->param_floats, np = model.table.total_floats;
    float *scales[3], *moments[2], *params = malloc(np * sizeof(float));
    for (int k = 0; k < 3; k++) scales[k] = malloc(nq * sizeof(float));
    for (int k = 0; k < 2; k++) moments[k] = malloc(2 * nq * sizeof(float));
    memcpy(scales[0], q->params, nq * sizeof(float));
    for (int step = 0; step < 2; step++) {
        if (step == 1) memcpy(params, model.params, np * sizeof(float));
        qft_model_zero_grads(&model);
        qft_quant_zero_grads(q);
        qft_model_forward(&model, 1, 1, (uint64_t)step);
        qft_model_backward(&model, 1.0f, 1, (uint64_t)step);
        qft_optimizer_step(&opt, &model);
        memcpy(scales[step + 1], q->params, nq * sizeof(float));
        memcpy(moments[step], opt.qm, nq * sizeof(float));
        memcpy(moments[step] + nq, opt.qv, nq * sizeof(float));
    }
    CHECK(nq > 0 && memcmp(scales[0], scales[1], nq * sizeof(float)) != 0,
          "step 1 (before the freeze) moves the scales");
    CHECK(memcmp(scales[1], scales[2], nq * sizeof(float)) == 0 &&
              memcmp(moments[0], moments[1], 2 * nq * sizeof(float)) == 0,
          "step 2 (frozen) keeps the scales and their moments");
    CHECK(memcmp(params, model.params, np * sizeof(float)) != 0, "the weights still train after the freeze");
    for (int k = 0; k < 3; k++) free(scales[k]);
    for (int k = 0; k < 2; k++) free(moments[k]);
    free(params);
    qft_optimizer_free(&opt, &model);
    free(images);
    free(labels);
    qft_model_free(&model);
}

int main(void) {
    test_schedules();
    test_grad_accumulation();
    test_quant_freeze();
    QFT_TEST_SUMMARY();
}
