// Model-level goldens: ViT, DeiT, BERT (classification and regression) built from the same
// safetensors weights as the PyTorch oracle; logits, loss and every parameter gradient must match.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden_loader.h"
#include "model/model.h"
#include "test_util.h"

// Targets from tests/oracle/README.md (max|a-ref|/max|ref| per tensor); torch's own fp32 reaches
// <= 8e-7 on logits and <= 1.6e-6 on gradients, so these leave two orders of magnitude.
#define LOGITS_TOLERANCE 1e-4
#define GRAD_TOLERANCE 1e-3

static int is_zero_grad(const char *zero_grads, const char *name) {
    if (!zero_grads) return 0;
    size_t n = strlen(name);
    for (const char *p = strstr(zero_grads, name); p; p = strstr(p + 1, name)) {
        int starts = p == zero_grads || p[-1] == ',';
        int ends = p[n] == '\0' || p[n] == ',';
        if (starts && ends) return 1;
    }
    return 0;
}

static void check_golden(const char *path) {
    qft_safetensors st;
    qft_error err;
    if (qft_safetensors_open(&st, path, &err) != QFT_OK) {
        CHECK(0, "cannot open golden: %s", err.message);
        return;
    }
    qft_model_config mc;
    golden_model_config(&st, &mc);
    size_t n_logits;
    float *ref_logits = golden_read_f32(&st, "logits", &n_logits);
    int B = (int)(n_logits / (size_t)mc.num_labels);
    int is_text = strcmp(mc.type, "bert") == 0;
    int T = 0;
    qft_batch batch;
    memset(&batch, 0, sizeof batch);
    batch.batch_size = B;
    float *images = NULL, *mask = NULL, *targets = NULL;
    int32_t *ids = NULL, *types = NULL, *labels = NULL;
    if (is_text) {
        size_t n;
        ids = golden_read_i32(&st, "input_ids", &n);
        T = (int)(n / (size_t)B);
        types = golden_read_i32(&st, "token_type_ids", NULL);
        int32_t *mask_ints = golden_read_i32(&st, "attention_mask", NULL);
        mask = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) mask[i] = (float)mask_ints[i];
        free(mask_ints);
        batch.seq_len = T;
        batch.input_ids = ids;
        batch.token_type_ids = types;
        batch.attention_mask = mask;
    } else {
        images = golden_read_f32(&st, "pixel_values", NULL);
        batch.images = images;
    }
    if (mc.num_labels == 1) targets = golden_read_f32(&st, "labels", NULL), batch.targets = targets;
    else labels = golden_read_i32(&st, "labels", NULL), batch.labels = labels;

    qft_model model;
    qft_status status = qft_model_create(&model, &mc, B, is_text ? T : 0, qft_backend_cpu(), 1, &err);
    CHECK(status == QFT_OK, "%s: model create: %s", path, err.message);
    if (status != QFT_OK) return;
    int missing_head = -1;
    status = qft_model_import(&model, path, NULL, &missing_head, &err);
    CHECK(status == QFT_OK && missing_head == 0, "%s: import: %s (missing head %d)", path, err.message, missing_head);
    status = qft_model_set_batch(&model, &batch, &err);
    CHECK(status == QFT_OK, "%s: set batch: %s", path, err.message);

    float loss = qft_model_forward(&model, 1, 7, 0);
    float *logits = malloc(n_logits * sizeof(float));
    qft_model_read_logits(&model, logits);
    double e_logits = qft_max_rel_error(logits, ref_logits, n_logits, 1e-30);
    CHECK(e_logits <= LOGITS_TOLERANCE, "%s: logits max rel error %.3g > %.0e", path, e_logits, LOGITS_TOLERANCE);
    float *ref_loss = golden_read_f32(&st, "loss", NULL);
    double e_loss = fabs(loss - ref_loss[0]) / fabs(ref_loss[0]);
    CHECK(e_loss <= LOGITS_TOLERANCE, "%s: loss %.7f vs %.7f (rel %.3g)", path, loss, ref_loss[0], e_loss);

    qft_model_zero_grads(&model);
    qft_model_backward(&model, 1.0f, 7, 0);
    float *grads = malloc(model.table.total_floats * sizeof(float));
    model.be->copy_to_host(grads, model.grads, model.table.total_floats * sizeof(float));
    const char *zero_grads = qft_safetensors_metadata(&st, "zero_grads");
    double worst = 0.0;
    const char *worst_name = "";
    for (int i = 0; i < model.table.count; i++) {
        const qft_param *p = &model.table.items[i];
        char name[256];
        snprintf(name, sizeof name, "grad.%s", p->name);
        float *ref = golden_read_f32(&st, name, NULL);
        double e;
        if (is_zero_grad(zero_grads, name)) {
            // Analytically zero (key bias under softmax): compare against the key weight's grad scale.
            char weight_name[256];
            snprintf(weight_name, sizeof weight_name, "%s", name);
            char *dot = strrchr(weight_name, '.');
            snprintf(dot, sizeof weight_name - (size_t)(dot - weight_name), ".weight");
            size_t nw;
            float *ref_w = golden_read_f32(&st, weight_name, &nw);
            double max_w = 0.0, max_a = 0.0;
            for (size_t j = 0; j < nw; j++) max_w = fmax(max_w, fabs(ref_w[j]));
            for (size_t j = 0; j < p->numel; j++) max_a = fmax(max_a, fabs(grads[p->offset + j]));
            e = max_a / max_w;
            free(ref_w);
        } else {
            e = qft_max_rel_error(grads + p->offset, ref, p->numel, 1e-30);
        }
        CHECK(e <= GRAD_TOLERANCE, "%s: %s max rel error %.3g > %.0e", path, name, e, GRAD_TOLERANCE);
        if (e > worst) worst = e, worst_name = p->name;
        free(ref);
    }
    printf("%s: logits %.2e, loss %.2e, worst grad %.2e (%s)\n", path, e_logits, e_loss, worst, worst_name);

    if (!is_text) {
        // Without the pruned last layer every token's hidden state exists: it must equal HF's
        // last_hidden_state, and the logits must not change (pruning only skips unread rows).
        model.prune_last_layer = 0;
        qft_model_forward(&model, 1, 7, 0);
        size_t n_hidden;
        float *ref_hidden = golden_read_f32(&st, "last_hidden_state", &n_hidden);
        float *hidden = malloc(n_hidden * sizeof(float)), *full_logits = malloc(n_logits * sizeof(float));
        CHECK(model.head_T * (size_t)B * model.D == n_hidden, "%s: unpruned hidden size", path);
        qft_model_read_hidden(&model, hidden);
        qft_model_read_logits(&model, full_logits);
        double e_hidden = qft_max_rel_error(hidden, ref_hidden, n_hidden, 1e-30);
        CHECK(e_hidden <= LOGITS_TOLERANCE, "%s: last_hidden_state max rel error %.3g", path, e_hidden);
        CHECK(qft_max_rel_error(full_logits, logits, n_logits, 1e-30) <= 1e-6,
              "%s: logits with and without the pruned last layer differ", path);
        free(hidden);
        free(full_logits);
        free(ref_hidden);
    }
    free(grads);
    free(logits);
    free(ref_loss);
    free(ref_logits);
    free(images);
    free(mask);
    free(targets);
    free(ids);
    free(types);
    free(labels);
    qft_model_free(&model);
    qft_safetensors_close(&st);
}

int main(void) {
    check_golden("tests/golden/vit_tiny.safetensors");
    check_golden("tests/golden/deit_tiny.safetensors");
    check_golden("tests/golden/bert_tiny.safetensors");
    check_golden("tests/golden/bert_tiny_regression.safetensors");
    QFT_TEST_SUMMARY();
}
