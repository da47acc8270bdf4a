// Model-level fake quantization against PyTorch: quantized ViT / DeiT / BERT (every site role, mixed
// formats, LSQ / LSQ+) must reproduce tests/golden/quant_*.safetensors; plus OFF and weight-only identities.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden_loader.h"
#include "model/model.h"
#include "test_util.h"

// Bounds (tests/oracle/README.md, quant_* goldens). The golden's scales keep every quantized element
// well away from a rounding threshold, so qft's float32 network makes the same rounding decisions as
// the float64 reference and what remains is summation-order noise (~1e-6).
#define LOGITS_TOLERANCE 1e-5
#define GRAD_TOLERANCE 1e-4

typedef struct {
    const char *path;
    qft_safetensors st;
    qft_model_config mc;
    qft_batch batch;
    int B, T, is_text;
    float *images, *mask;
    int32_t *ids, *types, *labels;
    qft_quant_rule_list rules;
} golden_case;

// 1 when `name` is an entry of the comma-separated `list`.
static int in_list(const char *list, const char *name) {
    if (!list) return 0;
    size_t n = strlen(name);
    for (const char *p = strstr(list, name); p; p = strstr(p + 1, name))
        if ((p == list || p[-1] == ',') && (p[n] == '\0' || p[n] == ',' || p[n] == ':')) return 1;
    return 0;
}

// The rows the golden's site saw ("name:rows" in site_rows), or -1.
static int golden_site_rows(const golden_case *g, const char *name) {
    const char *list = qft_safetensors_metadata(&g->st, "site_rows");
    size_t n = strlen(name);
    for (const char *p = list ? strstr(list, name) : NULL; p; p = strstr(p + 1, name))
        if ((p == list || p[-1] == ',') && p[n] == ':') return atoi(p + n + 1);
    return -1;
}

static int load_case(golden_case *g, const char *path) {
    memset(g, 0, sizeof *g);
    g->path = path;
    qft_error err;
    if (qft_safetensors_open(&g->st, path, &err) != QFT_OK) {
        CHECK(0, "cannot open golden: %s", err.message);
        return 0;
    }
    golden_model_config(&g->st, &g->mc);
    g->B = golden_meta_int(&g->st, "batch_size", 0);
    g->is_text = strcmp(g->mc.type, "bert") == 0;
    g->batch.batch_size = g->B;
    if (g->is_text) {
        size_t n;
        g->ids = golden_read_i32(&g->st, "input_ids", &n);
        g->T = (int)(n / (size_t)g->B);
        g->types = golden_read_i32(&g->st, "token_type_ids", NULL);
        int32_t *mask_ints = golden_read_i32(&g->st, "attention_mask", NULL);
        g->mask = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) g->mask[i] = (float)mask_ints[i];
        free(mask_ints);
        g->batch.seq_len = g->T;
        g->batch.input_ids = g->ids;
        g->batch.token_type_ids = g->types;
        g->batch.attention_mask = g->mask;
    } else {
        g->images = golden_read_f32(&g->st, "pixel_values", NULL);
        g->batch.images = g->images;
    }
    g->labels = golden_read_i32(&g->st, "labels", NULL);
    g->batch.labels = g->labels;
    // The rules travel as YAML in the golden and go through the config parser, as a --config would.
    const char *yaml = qft_safetensors_metadata(&g->st, "rules_yaml");
    qft_config cfg;
    qft_config_defaults(&cfg);
    qft_status status = yaml ? qft_config_load_string(&cfg, yaml, strlen(yaml), "rules_yaml", &err) : QFT_ERR_INVALID;
    CHECK(status == QFT_OK, "%s: rules_yaml: %s", path, yaml ? err.message : "missing");
    g->rules = cfg.quant.rules;
    return status == QFT_OK;
}

static void free_case(golden_case *g) {
    free(g->images);
    free(g->mask);
    free(g->ids);
    free(g->types);
    free(g->labels);
    qft_safetensors_close(&g->st);
}

// A model with the golden's weights and batch; rules applied when given (mode stays OFF).
static int make_model(qft_model *m, const golden_case *g, const qft_quant_rule_list *rules) {
    qft_error err;
    qft_status status = qft_model_create(m, &g->mc, g->B, g->is_text ? g->T : 0, qft_backend_cpu(), 1, &err);
    CHECK(status == QFT_OK, "%s: model create: %s", g->path, err.message);
    if (status != QFT_OK) return 0;
    int missing_head = -1;
    status = qft_model_import(m, g->path, NULL, &missing_head, &err);
    CHECK(status == QFT_OK && missing_head == 0, "%s: import: %s", g->path, err.message);
    if (status == QFT_OK) status = qft_model_set_batch(m, &g->batch, &err);
    if (status == QFT_OK && rules) status = qft_model_quant_configure(m, rules, &err);
    CHECK(status == QFT_OK, "%s: set batch / configure: %s", g->path, err.message);
    return status == QFT_OK;
}

// Forward, zeroed gradients, backward; logits and parameter gradients copied out. Returns the loss.
static float run_step(qft_model *m, float *logits, float *grads) {
    float loss = qft_model_forward(m, 1, 7, 0);
    qft_model_read_logits(m, logits);
    qft_model_zero_grads(m);
    qft_quant_zero_grads(&m->quant);
    qft_model_backward(m, 1.0f, 7, 0);
    m->be->copy_to_host(grads, m->grads, m->table.total_floats * sizeof(float));
    return loss;
}

// Loads the golden's scales and zero points into the enabled sites; checks that the rules enable
// exactly the golden's sites.
static void load_site_params(qft_model *m, const golden_case *g) {
    const char *sites = qft_safetensors_metadata(&g->st, "sites");
    int enabled = 0;
    for (int i = 0; i < m->quant.count; i++) {
        qft_quant_site *site = &m->quant.sites[i];
        CHECK(site->fmt.enabled == in_list(sites, site->name), "%s: site %s enabled %d, golden lists it %d", g->path,
              site->name, site->fmt.enabled, in_list(sites, site->name));
        if (!site->fmt.enabled) continue;
        enabled++;
        char name[160];
        size_t n_scale, n_zero;
        snprintf(name, sizeof name, "site.%s.scale", site->name);
        float *scale = golden_read_f32(&g->st, name, &n_scale);
        snprintf(name, sizeof name, "site.%s.zero_point", site->name);
        float *zero = golden_read_f32(&g->st, name, &n_zero);
        CHECK(n_scale == (size_t)site->n_params && n_zero == n_scale, "%s: site %s has %d parameters, golden %zu",
              g->path, site->name, site->n_params, n_scale);
        if (n_scale == (size_t)site->n_params) {
            m->be->copy_to_device(site->scale, scale, n_scale * sizeof(float));
            m->be->copy_to_device(site->zero_point, zero, n_zero * sizeof(float));
            site->calibrated = 1;
        }
        free(scale);
        free(zero);
    }
    int listed = 1;
    for (const char *p = sites; p && (p = strchr(p, ',')); p++) listed++;
    CHECK(sites && enabled == listed, "%s: %d sites enabled, golden lists %d", g->path, enabled, listed);
}

// Every parameter gradient against the golden; key biases (analytically zero) against the key weight's.
static double check_param_grads(const qft_model *m, const golden_case *g, const float *grads, const char *what) {
    const char *zero_grads = qft_safetensors_metadata(&g->st, "zero_grads");
    double worst = 0.0;
    for (int i = 0; i < m->table.count; i++) {
        const qft_param *p = &m->table.items[i];
        char name[256];
        snprintf(name, sizeof name, "grad.%s", p->name);
        double e;
        if (in_list(zero_grads, name)) {
            char weight_name[256];
            snprintf(weight_name, sizeof weight_name, "%s", name);
            char *dot = strrchr(weight_name, '.');
            snprintf(dot, sizeof weight_name - (size_t)(dot - weight_name), ".weight");
            size_t nw;
            float *ref_w = golden_read_f32(&g->st, weight_name, &nw);
            double max_w = 0.0, max_a = 0.0;
            for (size_t j = 0; j < nw; j++) max_w = fmax(max_w, fabs(ref_w[j]));
            for (size_t j = 0; j < p->numel; j++) max_a = fmax(max_a, fabs(grads[p->offset + j]));
            e = max_a / max_w;
            free(ref_w);
        } else {
            float *ref = golden_read_f32(&g->st, name, NULL);
            e = qft_max_rel_error(grads + p->offset, ref, p->numel, 1e-30);
            free(ref);
        }
        CHECK(e <= GRAD_TOLERANCE, "%s (%s): %s max rel error %.3g > %.0e", g->path, what, name, e, GRAD_TOLERANCE);
        worst = fmax(worst, e);
    }
    return worst;
}

// Learnable quantizer gradients (scale; LSQ+ zero point) against the golden times `factor(site)`.
// factor = NULL: 1. Returns the worst error.
static double check_site_grads(const qft_model *m, const golden_case *g, const double *factors, const char *what) {
    const char *learnable = qft_safetensors_metadata(&g->st, "learnable_sites");
    double worst = 0.0;
    int seen = 0;
    for (int i = 0; i < m->quant.count; i++) {
        const qft_quant_site *site = &m->quant.sites[i];
        int learns = site->fmt.enabled && site->fmt.learn != QFT_LEARN_NONE;
        CHECK(learns == in_list(learnable, site->name), "%s: site %s learnable %d vs golden", g->path, site->name,
              learns);
        if (!learns) continue;
        seen++;
        for (int zero = 0; zero <= (site->fmt.learn == QFT_LEARN_LSQ_PLUS); zero++) {
            char name[160];
            snprintf(name, sizeof name, "grad.site.%s.%s", site->name, zero ? "zero_point" : "scale");
            size_t n;
            float *ref = golden_read_f32(&g->st, name, &n);
            float *got = malloc(n * sizeof(float));
            m->be->copy_to_host(got, zero ? site->dzero : site->dscale, n * sizeof(float));
            if (factors)
                for (size_t k = 0; k < n; k++) ref[k] = (float)(ref[k] * factors[i]);
            double e = qft_max_rel_error(got, ref, n, 1e-30);
            CHECK(e <= GRAD_TOLERANCE, "%s (%s): %s max rel error %.3g > %.0e", g->path, what, name, e,
                  GRAD_TOLERANCE);
            worst = fmax(worst, e);
            free(ref);
            free(got);
        }
    }
    CHECK(seen > 0, "%s: no learnable site checked", g->path);
    return worst;
}

// The quantized model against the golden; for ViT/DeiT also without the pruned last layer.
static void check_quantized(const golden_case *g) {
    qft_model m;
    if (!make_model(&m, g, &g->rules)) return;
    load_site_params(&m, g);
    m.quant.mode = QFT_QUANT_ON;
    size_t n_logits;
    float *ref_logits = golden_read_f32(&g->st, "logits", &n_logits);
    float *ref_loss = golden_read_f32(&g->st, "loss", NULL);
    float *logits = malloc(n_logits * sizeof(float));
    float *grads = malloc(m.table.total_floats * sizeof(float));
    float loss = run_step(&m, logits, grads);
    qft_error err;
    CHECK(qft_model_quant_check(&m, &err) == QFT_OK, "%s: %s", g->path, err.message);
    double e_logits = qft_max_rel_error(logits, ref_logits, n_logits, 1e-30);
    double e_loss = fabs(loss - ref_loss[0]) / fabs(ref_loss[0]);
    CHECK(e_logits <= LOGITS_TOLERANCE, "%s: logits max rel error %.3g", g->path, e_logits);
    CHECK(e_loss <= LOGITS_TOLERANCE, "%s: loss %.7f vs %.7f", g->path, loss, ref_loss[0]);
    // Every site saw the rows the reference's quantizer saw (pruned last layer: B*keep after the attention).
    int rows_pruned[m.quant.count];
    for (int i = 0; i < m.quant.count; i++) {
        const qft_quant_site *site = &m.quant.sites[i];
        rows_pruned[i] = site->role == QFT_SITE_WEIGHT ? site->rows : site->last_rows;
        if (!site->fmt.enabled || site->role == QFT_SITE_PROBS) continue;
        CHECK(rows_pruned[i] == golden_site_rows(g, site->name), "%s: site %s saw %d rows, the reference %d",
              g->path, site->name, rows_pruned[i], golden_site_rows(g, site->name));
    }
    double e_grads = check_param_grads(&m, g, grads, "quantized");
    double e_sites = check_site_grads(&m, g, NULL, "quantized");
    printf("%s: logits %.2e, loss %.2e, worst parameter grad %.2e, worst quantizer grad %.2e\n", g->path, e_logits,
           e_loss, e_grads, e_sites);

    if (!g->is_text) {
        // Unpruned: every value the head reads is the same (frozen scales, no row-dependent quantizer),
        // and so is every parameter gradient; an LSQ scale gradient after the last attention is the
        // same sum with N counting B*T rows instead of B*keep, so it scales by sqrt(rows_pruned/rows).
        m.prune_last_layer = 0;
        run_step(&m, logits, grads);
        double e_full = qft_max_rel_error(logits, ref_logits, n_logits, 1e-30);
        CHECK(e_full <= LOGITS_TOLERANCE, "%s: unpruned logits max rel error %.3g", g->path, e_full);
        double e_full_grads = check_param_grads(&m, g, grads, "unpruned");
        double factors[m.quant.count];
        int rescaled = 0;
        for (int i = 0; i < m.quant.count; i++) {
            const qft_quant_site *site = &m.quant.sites[i];
            int rows = site->role == QFT_SITE_WEIGHT ? site->rows : site->last_rows;
            factors[i] = rows > 0 ? sqrt((double)rows_pruned[i] / rows) : 1.0;
            rescaled += site->fmt.learn != QFT_LEARN_NONE && rows != rows_pruned[i];
        }
        CHECK(rescaled >= 2, "%s: expected learnable sites after the last attention", g->path);
        double e_full_sites = check_site_grads(&m, g, factors, "unpruned");
        printf("%s unpruned: logits %.2e, worst parameter grad %.2e, worst quantizer grad %.2e (%d rescaled)\n",
               g->path, e_full, e_full_grads, e_full_sites, rescaled);
    }
    free(logits);
    free(grads);
    free(ref_logits);
    free(ref_loss);
    qft_model_free(&m);
}

// Mode OFF with the rules configured is the FP model, bit for bit (logits and every gradient).
static void check_off_identity(const golden_case *g) {
    qft_model plain, ruled;
    if (!make_model(&plain, g, NULL)) return;
    if (!make_model(&ruled, g, &g->rules)) {
        qft_model_free(&plain);
        return;
    }
    load_site_params(&ruled, g);
    ruled.quant.mode = QFT_QUANT_OFF;
    CHECK(ruled.quant.enabled_count > 0, "%s: no enabled site", g->path);
    size_t nl = (size_t)g->B * g->mc.num_labels, np = plain.table.total_floats;
    float *l0 = malloc(nl * sizeof(float)), *l1 = malloc(nl * sizeof(float));
    float *g0 = malloc(np * sizeof(float)), *g1 = malloc(np * sizeof(float));
    float loss0 = run_step(&plain, l0, g0), loss1 = run_step(&ruled, l1, g1);
    CHECK(loss0 == loss1 && memcmp(l0, l1, nl * sizeof(float)) == 0, "%s: mode OFF logits differ from the FP model",
          g->path);
    CHECK(memcmp(g0, g1, np * sizeof(float)) == 0, "%s: mode OFF gradients differ from the FP model", g->path);
    // And quantization really changes something when on (the identity above is not vacuous).
    ruled.quant.mode = QFT_QUANT_ON;
    run_step(&ruled, l1, g1);
    CHECK(memcmp(l0, l1, nl * sizeof(float)) != 0, "%s: mode ON gives the FP logits", g->path);
    free(l0);
    free(l1);
    free(g0);
    free(g1);
    qft_model_free(&plain);
    qft_model_free(&ruled);
}

// Weight-only quantization equals the FP model whose weights were replaced by their host fake-quantized
// copies (qft_quant_dequant), bit for bit: the backend weight quantizer and the GEMM add nothing else.
static void check_weight_only(const golden_case *g) {
    static const char yaml[] = "quant:\n  rules:\n"
                               "    - {pattern: \"head*.weight\", bits: 8}\n"
                               "    - {pattern: \"*.fc2.weight\", bits: 3, narrow: true, granularity: channel}\n"
                               "    - {pattern: \"*.weight\", bits: 4, granularity: channel}\n";
    qft_config cfg;
    qft_error err;
    qft_config_defaults(&cfg);
    CHECK(qft_config_load_string(&cfg, yaml, strlen(yaml), "weight-only", &err) == QFT_OK, "weight-only rules: %s",
          err.message);
    qft_model q, fp;
    if (!make_model(&q, g, &cfg.quant.rules)) return;
    if (!make_model(&fp, g, NULL)) {
        qft_model_free(&q);
        return;
    }
    size_t np = q.table.total_floats;
    float *params = malloc(np * sizeof(float));
    q.be->copy_to_host(params, q.params, np * sizeof(float));
    int weights = 0;
    for (int i = 0; i < q.quant.count; i++) {
        qft_quant_site *site = &q.quant.sites[i];
        if (!site->fmt.enabled) continue;
        CHECK(site->role == QFT_SITE_WEIGHT, "%s: weight-only rules enabled %s", g->path, site->name);
        weights++;
        int qmin = qft_quant_qmin(&site->fmt), qmax = qft_quant_qmax(&site->fmt);
        float *w = params + (site->weight - q.params);
        float scale[site->n_params], zero[site->n_params];
        int per_row = site->n_params > 1, C = site->C;
        for (int k = 0; k < site->n_params; k++) {
            size_t begin = per_row ? (size_t)k * C : 0, end = per_row ? begin + C : (size_t)site->rows * C;
            float lo = w[begin], hi = w[begin];
            for (size_t j = begin; j < end; j++) lo = fminf(lo, w[j]), hi = fmaxf(hi, w[j]);
            qft_quant_params_from_range(&site->fmt, lo, hi, &scale[k], &zero[k]);
            scale[k] *= 0.8f;  // some weights clip
        }
        q.be->copy_to_device(site->scale, scale, sizeof scale);
        q.be->copy_to_device(site->zero_point, zero, sizeof zero);
        site->calibrated = 1;
        for (size_t j = 0; j < (size_t)site->rows * C; j++) {
            int k = per_row ? (int)(j / (size_t)C) : 0;
            w[j] = qft_quant_dequant(w[j], scale[k], 1.0f / scale[k], zero[k], qmin, qmax);
        }
    }
    int expected = g->is_text ? 1 + 4 * g->mc.num_layers + 1 : 1 + 4 * g->mc.num_layers + 1 + !strcmp(g->mc.type, "deit");
    CHECK(weights == expected, "%s: %d weight sites enabled, expected %d", g->path, weights, expected);
    fp.be->copy_to_device(fp.params, params, np * sizeof(float));
    q.quant.mode = QFT_QUANT_ON;
    size_t nl = (size_t)g->B * g->mc.num_labels;
    float *lq = malloc(nl * sizeof(float)), *lf = malloc(nl * sizeof(float));
    float loss_q = qft_model_forward(&q, 1, 7, 0), loss_f = qft_model_forward(&fp, 1, 7, 0);
    qft_model_read_logits(&q, lq);
    qft_model_read_logits(&fp, lf);
    CHECK(loss_q == loss_f && memcmp(lq, lf, nl * sizeof(float)) == 0,
          "%s: weight-only logits differ from the FP model with host-quantized weights (max rel %.3g)", g->path,
          qft_max_rel_error(lq, lf, nl, 1e-30));
    free(lq);
    free(lf);
    free(params);
    qft_model_free(&q);
    qft_model_free(&fp);
}

// The attention op's probability quantizer (qft_log_dequant, format.h) is the backend's log op bit for
// bit (values and STE mask), on quant_ops's log cases: probabilities, exact levels and the float
// neighbours of every rounding threshold, where a log2f-based code used to pick the adjacent level.
static void check_prob_quantizer_matches_op(void) {
    qft_safetensors st;
    qft_error err;
    if (qft_safetensors_open(&st, "tests/golden/quant_ops.safetensors", &err) != QFT_OK) {
        CHECK(0, "cannot open quant_ops golden: %s", err.message);
        return;
    }
    const qft_backend *be = qft_backend_cpu();
    const char *cases = qft_safetensors_metadata(&st, "log_cases");
    char list[512];
    snprintf(list, sizeof list, "%s", cases ? cases : "");
    int checked = 0;
    for (char *c = strtok(list, ","); c; c = strtok(NULL, ",")) {
        char name[128];
        size_t n;
        snprintf(name, sizeof name, "%s.x", c);
        float *x = golden_read_f32(&st, name, &n);
        snprintf(name, sizeof name, "%s.scale", c);
        float *scale = golden_read_f32(&st, name, NULL);
        snprintf(name, sizeof name, "%s.config", c);
        int32_t *config = golden_read_i32(&st, name, NULL);
        float *out = malloc(n * sizeof(float)), *mask = calloc(n, sizeof(float)), *ones = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) ones[i] = 1.0f;
        be->log_quant_forward(out, x, n, config[0], config[1], scale);
        be->log_quant_backward(mask, NULL, ones, x, n, config[0], config[1], scale);
        int values = 0, masks = 0;
        for (size_t i = 0; i < n; i++) {
            int in_range;
            float v = qft_log_dequant(x[i], scale[0], config[0], config[1], &in_range);
            values += memcmp(&v, &out[i], sizeof v) != 0;
            masks += (float)in_range != mask[i];
        }
        CHECK(values == 0 && masks == 0, "%s: qft_log_dequant differs from log_quant_forward/backward on %d values, "
              "%d masks of %zu", c, values, masks, n);
        checked++;
        free(x);
        free(scale);
        free(config);
        free(out);
        free(mask);
        free(ones);
    }
    CHECK(checked >= 4, "quant_ops has %d log cases", checked);
    qft_safetensors_close(&st);
}

int main(void) {
    static const char *const goldens[] = {"tests/golden/quant_vit.safetensors", "tests/golden/quant_deit.safetensors",
                                          "tests/golden/quant_bert.safetensors"};
    for (size_t i = 0; i < sizeof goldens / sizeof goldens[0]; i++) {
        golden_case g;
        if (!load_case(&g, goldens[i])) continue;
        check_quantized(&g);
        check_off_identity(&g);
        check_weight_only(&g);
        free_case(&g);
    }
    check_prob_quantizer_matches_op();
    QFT_TEST_SUMMARY();
}
