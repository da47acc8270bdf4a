// Knowledge distillation (host/method/kd.c): the KL op and its gradient, the whole-model KD loss
// (logits, hidden-state MSE, regression) against finite differences, and the teacher's parameter swap.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "method/kd.h"
#include "model/model.h"
#include "test_util.h"

// T^2 * mean_i KL(softmax(z_t/T) || softmax(z_s/T)), in double from the definition.
static double reference_kd(const float *zs, const float *zt, int N, int V, double T) {
    double total = 0.0;
    for (int i = 0; i < N; i++) {
        double ms = -INFINITY, mt = -INFINITY, ss = 0.0, st = 0.0;
        for (int j = 0; j < V; j++) {
            ms = fmax(ms, zs[i * V + j] / T);
            mt = fmax(mt, zt[i * V + j] / T);
        }
        for (int j = 0; j < V; j++) {
            ss += exp(zs[i * V + j] / T - ms);
            st += exp(zt[i * V + j] / T - mt);
        }
        for (int j = 0; j < V; j++) {
            double lt = zt[i * V + j] / T - mt - log(st), ls = zs[i * V + j] / T - ms - log(ss);
            total += exp(lt) * (lt - ls);
        }
    }
    return T * T * total / N;
}

// The op's KL against the definition, and its gradient (dloss_scale = T/N for T^2 * mean KL) against
// central differences of the reference.
static void test_kl_op(void) {
    const qft_backend *be = qft_backend_cpu();
    enum { N = 4, V = 6 };
    const float T = 2.5f;
    float *zs = random_tensor(N * V, -3, 3), *zt = random_tensor(N * V, -3, 3);
    float losses[N], ps[N * V], pt[N * V], grad[N * V] = {0};
    be->kd_kl_forward(losses, ps, pt, zs, zt, N, V, T);
    double sum = 0.0;
    for (int i = 0; i < N; i++) sum += losses[i];
    double ref = reference_kd(zs, zt, N, V, T);
    double kd = T * T * sum / N;
    CHECK(fabs(kd - ref) < 1e-6 * fmax(1.0, ref), "KL forward %.9g vs reference %.9g", kd, ref);
    be->kd_kl_forward(losses, ps, pt, zt, zt, N, V, T);
    CHECK(fabsf(losses[0]) < 1e-7f && fabsf(losses[N - 1]) < 1e-7f, "KL of a distribution to itself: %g", losses[0]);
    be->kd_kl_forward(losses, ps, pt, zs, zt, N, V, T);
    be->kd_kl_backward(grad, ps, pt, N, V, T / N);
    double worst = 0.0;
    for (int k = 0; k < N * V; k++) {
        float keep = zs[k];
        const float h = 1e-2f;
        zs[k] = keep + h;
        double up = reference_kd(zs, zt, N, V, T);
        zs[k] = keep - h;
        double down = reference_kd(zs, zt, N, V, T);
        zs[k] = keep;
        double fd = (up - down) / (2.0 * h);
        worst = fmax(worst, fabs(fd - grad[k]));
    }
    CHECK(worst < 1e-4, "KL gradient vs finite differences: max abs error %.3g", worst);
    printf("KL op: T^2 mean KL %.6f, gradient max abs error vs finite differences %.3g\n", ref, worst);
    free(zs);
    free(zt);
}

typedef struct {
    qft_model_config mc;
    qft_batch batch;
    float *images, *targets;
    int32_t *ids, *labels;
} tiny_case;

// A 2-layer ViT or BERT (classification, or BERT regression with num_labels 1), no dropout.
static void tiny_setup(tiny_case *c, const char *type, int num_labels, int B) {
    memset(c, 0, sizeof *c);
    qft_config cfg;
    qft_config_defaults(&cfg);
    c->mc = cfg.model;
    snprintf(c->mc.type, sizeof c->mc.type, "%s", type);
    c->mc.hidden_size = 16;
    c->mc.num_layers = 2;
    c->mc.num_heads = 2;
    c->mc.intermediate_size = 32;
    c->mc.num_labels = num_labels;
    c->mc.dropout = 0.0;
    c->mc.init_std = 0.2;  // logits far enough from uniform for a KL that finite differences resolve
    c->mc.image_size = 8;
    c->mc.patch_size = 4;
    c->mc.num_channels = 1;
    c->mc.vocab_size = 30;
    c->mc.max_position_embeddings = 8;
    c->batch.batch_size = B;
    c->labels = malloc((size_t)B * sizeof(int32_t));
    c->targets = random_tensor((size_t)B, -1, 1);
    for (int i = 0; i < B; i++) c->labels[i] = i % (num_labels > 1 ? num_labels : 1);
    if (strcmp(type, "bert") == 0) {
        c->batch.seq_len = 6;
        c->ids = malloc((size_t)B * 6 * sizeof(int32_t));
        for (int i = 0; i < B * 6; i++) c->ids[i] = (int32_t)(test_rng_next() % 30);
        c->batch.input_ids = c->ids;
    } else {
        c->images = random_tensor((size_t)B * 64, -1, 1);
        c->batch.images = c->images;
    }
    if (num_labels == 1) c->batch.targets = c->targets;
    else c->batch.labels = c->labels;
}

static void tiny_free(tiny_case *c) {
    free(c->images);
    free(c->targets);
    free(c->ids);
    free(c->labels);
}

static int make_model(qft_model *m, const tiny_case *c, uint64_t seed) {
    qft_error err = {{0}};
    int ok = qft_model_create(m, &c->mc, c->batch.batch_size, 6, qft_backend_cpu(), seed, &err) == QFT_OK &&
             qft_model_set_batch(m, &c->batch, &err) == QFT_OK;
    CHECK(ok, "model: %s", err.message);
    return ok;
}

// Teacher = another seed's model, exported, so the student loads it through kd.teacher.
static int setup_kd(qft_kd *kd, qft_model *student, qft_model *teacher, const tiny_case *c, const char *dir,
                    double alpha, double T, double hidden_weight) {
    qft_error err = {{0}};
    char path[1200];
    snprintf(path, sizeof path, "%s/teacher.safetensors", dir);
    if (!make_model(teacher, c, 2) || !make_model(student, c, 1)) return 0;
    CHECK(qft_model_export(teacher, path, 0, &err) == QFT_OK, "export: %s", err.message);
    qft_config cfg;
    qft_config_defaults(&cfg);
    qft_kd_config kc = cfg.kd;
    kc.enabled = 1;
    kc.alpha = alpha;
    kc.temperature = T;
    kc.hidden_weight = hidden_weight;
    snprintf(kc.teacher, sizeof kc.teacher, "%s", path);
    int ok = qft_kd_init(kd, student, &kc, "", 0, NULL, &err) == QFT_OK;
    CHECK(ok, "kd init: %s", err.message);
    teacher->prune_last_layer = student->prune_last_layer;  // kd turns pruning off for the hidden term
    return ok;
}

// Total loss (1 - alpha) task + alpha KD + hidden_weight MSE of the student as it stands.
static double total_loss(qft_kd *kd, qft_model *m) {
    float task = qft_model_forward(m, 1, 3, 0);
    return (1.0 - kd->alpha) * task + qft_kd_loss(kd);
}

// The teacher forward through the student's object gives exactly a separate FP model's logits and
// encoder output even with the student quantized; afterwards the student's quantization is back on,
// its logits are those of a run without the teacher, and with a zero KD term so are its gradients.
static void test_swap(const char *type, const char *dir) {
    tiny_case c;
    tiny_setup(&c, type, 3, 3);
    qft_model student, teacher, alone;
    qft_kd kd;
    qft_error err = {{0}};
    if (!setup_kd(&kd, &student, &teacher, &c, dir, 0.5, 2.0, 0.3) || !make_model(&alone, &c, 1)) return;
    alone.prune_last_layer = student.prune_last_layer;
    qft_config cfg;
    qft_config_defaults(&cfg);
    qft_config_override(&cfg, "quant.rules=[{pattern: '*.weight', bits: 4, granularity: channel}]", &err);
    CHECK(qft_model_quant_configure(&student, &cfg.quant.rules, &err) == QFT_OK &&
              qft_model_quant_configure(&alone, &cfg.quant.rules, &err) == QFT_OK,
          "quant: %s", err.message);
    student.quant.mode = alone.quant.mode = QFT_QUANT_ON;
    size_t nl = (size_t)c.batch.batch_size * 3, nh = (size_t)c.batch.batch_size * qft_model_seq_len(&student) * 16;
    float *ref_logits = malloc(nl * sizeof(float)), *ref_hidden = malloc(nh * sizeof(float));
    qft_model_forward(&teacher, 0, 0, 0);
    qft_model_read_logits(&teacher, ref_logits);
    memcpy(ref_hidden, qft_model_encoder_output(&teacher), nh * sizeof(float));
    qft_kd_teacher_forward(&kd);
    CHECK(memcmp(kd.teacher_logits, ref_logits, nl * sizeof(float)) == 0,
          "%s: teacher logits through the swap equal the FP model's exactly", type);
    CHECK(memcmp(kd.teacher_hidden, ref_hidden, nh * sizeof(float)) == 0,
          "%s: teacher encoder output equals the FP model's exactly", type);
    const qft_param *head = &student.table.items[student.table.count - 2];  // classifier.weight
    CHECK(student.quant.mode == QFT_QUANT_ON && student.w.head_w == student.params + head->offset,
          "%s: quant mode and parameter views restored", type);

    // Student with KD (alpha 0 and no hidden term: a zero KD term) vs the same model alone.
    kd.alpha = 0.0f;
    kd.hidden_weight = 0.0f;
    kd.hook.task_weight = 1.0f;
    qft_model_zero_grads(&student);
    qft_model_zero_grads(&alone);
    float loss_kd = qft_model_forward(&student, 1, 3, 0), loss_alone = qft_model_forward(&alone, 1, 3, 0);
    qft_kd_loss(&kd);
    float *logits_kd = malloc(nl * sizeof(float)), *logits_alone = malloc(nl * sizeof(float));
    qft_model_read_logits(&student, logits_kd);
    qft_model_read_logits(&alone, logits_alone);
    qft_model_backward(&student, 1.0f, 3, 0);
    qft_model_backward(&alone, 1.0f, 3, 0);
    CHECK(loss_kd == loss_alone && memcmp(logits_kd, logits_alone, nl * sizeof(float)) == 0,
          "%s: student loss and logits after the teacher forward equal a run without KD (%g vs %g)", type, loss_kd,
          loss_alone);
    size_t differ = 0;
    for (size_t i = 0; i < student.table.total_floats; i++) differ += student.grads[i] != alone.grads[i];
    CHECK(differ == 0, "%s: gradients with a zero KD term equal those without KD (%zu differ)", type, differ);
    free(ref_logits);
    free(ref_hidden);
    free(logits_kd);
    free(logits_alone);
    qft_kd_free(&kd);
    qft_model_free(&student);
    qft_model_free(&teacher);
    qft_model_free(&alone);
    tiny_free(&c);
}

// Gradient of the total loss (task + KD logits + hidden MSE) through the whole FP student against
// central differences, on the parameters with the largest gradients.
static void test_model_gradient(const char *type, int num_labels, double hidden_weight, const char *dir) {
    tiny_case c;
    tiny_setup(&c, type, num_labels, 3);
    qft_model student, teacher;
    qft_kd kd;
    if (!setup_kd(&kd, &student, &teacher, &c, dir, 0.6, 2.0, hidden_weight)) return;
    qft_kd_teacher_forward(&kd);
    qft_model_zero_grads(&student);
    double base = total_loss(&kd, &student);
    qft_model_backward(&student, 1.0f, 3, 0);
    size_t n = student.table.total_floats;
    float *grad = malloc(n * sizeof(float));
    memcpy(grad, student.grads, n * sizeof(float));
    double worst = 0.0, largest = 0.0;
    for (int pick = 0; pick < 16; pick++) {
        size_t best = 0;
        for (size_t i = 0; i < n; i++)
            if (fabsf(grad[i]) > fabsf(grad[best])) best = i;
        float keep = student.params[best];
        const float h = 2e-3f;
        student.params[best] = keep + h;
        double up = total_loss(&kd, &student);
        student.params[best] = keep - h;
        double down = total_loss(&kd, &student);
        student.params[best] = keep;
        double fd = (up - down) / (2.0 * h);
        worst = fmax(worst, fabs(fd - grad[best]) / fmax(fabs(fd), 1e-2));
        largest = fmax(largest, fabs(grad[best]));
        grad[best] = 0.0f;  // next pick
    }
    CHECK(worst < 2e-2, "%s (labels %d, hidden_weight %g): KD loss %.4g, gradient vs finite differences: max rel "
          "error %.3g (largest gradient %.3g)", type, num_labels, hidden_weight, base, worst, largest);
    printf("%s labels %d hidden_weight %g: KD %.4g, hidden MSE %.4g, gradient max rel error %.3g over the 16 "
           "largest (largest %.3g)\n", type, num_labels, hidden_weight, kd.logit_loss, kd.hidden_loss, worst, largest);
    CHECK(kd.logit_loss > 1e-4 && (hidden_weight == 0.0 || kd.hidden_loss > 1e-4),
          "%s: the KD terms are not trivially zero (%g, %g)", type, kd.logit_loss, kd.hidden_loss);
    free(grad);
    qft_kd_free(&kd);
    qft_model_free(&student);
    qft_model_free(&teacher);
    tiny_free(&c);
}

int main(void) {
    char dir[1100];
    qft_test_make_temp_dir(dir, sizeof dir, "qft_kd");
    test_kl_op();
    test_swap("vit", dir);
    test_swap("bert", dir);
    test_model_gradient("vit", 3, 0.0, dir);
    test_model_gradient("vit", 3, 0.5, dir);
    test_model_gradient("bert", 3, 0.5, dir);
    test_model_gradient("bert", 1, 0.5, dir);
    qft_test_remove_temp_dir(dir);
    QFT_TEST_SUMMARY();
}
