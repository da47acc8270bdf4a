// Hugging Face checkpoints: config.json -> model config (host/model/hf_config.h), then the tiny
// checkpoints of tests/golden/hf_*/ (written and converted from pytorch_model.bin by
// tests/oracle/make_hf_checkpoints.py) import by their HF names with the expected report of missing
// heads and unexpected tensors, and the forward equals the float64 PyTorch golden.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden_loader.h"
#include "model/hf_config.h"
#include "model/model.h"
#include "test_util.h"

// tests/oracle/README.md: 1e-4 relative is the target for fp32 activations against the fp64 golden.
#define TOLERANCE 1e-4

typedef struct {
    char *text;
    size_t size;
    FILE *stream;
} log_capture;

static void log_open(log_capture *c) {
    c->text = NULL;
    c->size = 0;
    c->stream = open_memstream(&c->text, &c->size);
    if (!c->stream) {
        perror("open_memstream");
        exit(2);
    }
}

static void log_close(log_capture *c) {
    fclose(c->stream);
    c->stream = NULL;
}

static int count_lines_with(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

// Loads config.json + model.safetensors of tests/golden/<dir>; returns 0 on a failed step (reported).
static int load_checkpoint(const char *dir, qft_model *m, int max_batch, int max_seq, log_capture *log,
                           int *missing_head) {
    char cfg_path[512], st_path[512];
    snprintf(cfg_path, sizeof cfg_path, "tests/golden/%s/config.json", dir);
    snprintf(st_path, sizeof st_path, "tests/golden/%s/model.safetensors", dir);
    qft_model_config mc;
    qft_error err;
    if (qft_hf_config_load(cfg_path, &mc, &err) != QFT_OK) {
        CHECK(0, "%s", err.message);
        return 0;
    }
    mc.dropout = 0.0;
    if (qft_model_create(m, &mc, max_batch, max_seq, qft_backend_cpu(), 7, &err) != QFT_OK) {
        CHECK(0, "%s: %s", dir, err.message);
        return 0;
    }
    log_open(log);
    qft_status s = qft_model_import(m, st_path, log->stream, missing_head, &err);
    log_close(log);
    CHECK(s == QFT_OK, "%s: import: %s", dir, err.message);
    if (s != QFT_OK) {
        qft_model_free(m);
        free(log->text);
        return 0;
    }
    return 1;
}

static void test_hf_config(void) {
    qft_model_config mc;
    qft_error err;
    CHECK(qft_hf_config_load("tests/golden/hf_vit/config.json", &mc, &err) == QFT_OK, "%s", err.message);
    CHECK(strcmp(mc.type, "vit") == 0 && mc.hidden_size == 16 && mc.num_layers == 1 && mc.num_heads == 2 &&
              mc.intermediate_size == 32 && mc.image_size == 8 && mc.patch_size == 4 && mc.num_channels == 3 &&
              mc.num_labels == 3 && strcmp(mc.hidden_act, "gelu") == 0 && mc.layer_norm_eps == 1e-12 &&
              mc.dropout == 0.0,
          "vit config fields");
    CHECK(qft_hf_config_load("tests/golden/hf_bert_pt/config.json", &mc, &err) == QFT_OK, "%s", err.message);
    CHECK(strcmp(mc.type, "bert") == 0 && mc.vocab_size == 24 && mc.max_position_embeddings == 8 &&
              mc.type_vocab_size == 2 && mc.num_labels == 2 && fabs(mc.dropout - 0.1) < 1e-12 && mc.pooler == 1,
          "bert config fields");

    const char *tanh_json =
        "{\"model_type\":\"bert\",\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
        "\"intermediate_size\":16,\"hidden_act\":\"gelu_new\",\"num_labels\":5}";
    CHECK(qft_hf_config_parse(tanh_json, "a.json", &mc, &err) == QFT_OK, "%s", err.message);
    CHECK(strcmp(mc.hidden_act, "gelu_tanh") == 0 && mc.num_labels == 5 && mc.vocab_size == 30522,
          "gelu_new -> gelu_tanh, num_labels, default vocab");
    const char *id2label_json =
        "{\"model_type\":\"deit\",\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
        "\"intermediate_size\":16,\"hidden_act\":\"gelu_pytorch_tanh\",\"id2label\":{\"0\":\"a\",\"1\":\"b\","
        "\"2\":\"c\",\"3\":\"d\"}}";
    CHECK(qft_hf_config_parse(id2label_json, "b.json", &mc, &err) == QFT_OK, "%s", err.message);
    CHECK(mc.num_labels == 4 && strcmp(mc.hidden_act, "gelu_tanh") == 0 && mc.image_size == 224, "id2label size");

    struct {
        const char *json, *key;
    } bad[] = {
        {"{\"model_type\":\"gpt2\",\"hidden_size\":8}", "model_type"},
        {"{\"model_type\":\"vit\",\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":4}",
         "hidden_size"},
        {"{\"model_type\":\"vit\",\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
         "\"intermediate_size\":4,\"hidden_act\":\"relu\"}",
         "hidden_act"},
        {"{\"model_type\":\"bert\",\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":3,"
         "\"intermediate_size\":4}",
         "num_attention_heads"},
        {"{\"model_type\":\"bert\",\"hidden_size\":8,\"num_hidden_layers\":\"x\",\"num_attention_heads\":2,"
         "\"intermediate_size\":4}",
         "num_hidden_layers"},
        {"{\"model_type\":\"vit\",\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
         "\"intermediate_size\":4,\"layer_norm_eps\":-1}",
         "layer_norm_eps"},
        {"{\"model_type\":\"vit\",\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
         "\"intermediate_size\":4,\"num_labels\":3,\"id2label\":{\"0\":\"a\"}}",
         "num_labels"},
        {"{\"model_type\":", "malformed"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qft_status s = qft_hf_config_parse(bad[i].json, "bad.json", &mc, &err);
        CHECK(s != QFT_OK && strstr(err.message, "bad.json") && strstr(err.message, bad[i].key),
              "bad config %zu: expected an error naming bad.json and '%s', got '%s'", i, bad[i].key,
              s == QFT_OK ? "ok" : err.message);
    }
    qft_status s = qft_hf_config_load("tests/golden/no_such_dir/config.json", &mc, &err);
    CHECK(s == QFT_ERR_IO && strstr(err.message, "no_such_dir/config.json"), "missing file: %s", err.message);
}

static void test_vision(const char *name) {
    char dir[64], io_path[128];
    snprintf(dir, sizeof dir, "hf_%s", name);
    snprintf(io_path, sizeof io_path, "tests/golden/hf_%s_io.safetensors", name);
    qft_safetensors io;
    qft_error err;
    if (qft_safetensors_open(&io, io_path, &err) != QFT_OK) {
        CHECK(0, "%s", err.message);
        return;
    }
    size_t n_pix, n_logits, n_hidden;
    float *pixels = golden_read_f32(&io, "pixel_values", &n_pix);
    float *ref_logits = golden_read_f32(&io, "logits", &n_logits);
    float *ref_hidden = golden_read_f32(&io, "last_hidden_state", &n_hidden);
    const qft_tensor_info *pv = qft_safetensors_find(&io, "pixel_values");
    int B = (int)pv->shape[0];
    qft_model m;
    log_capture log;
    int missing = -1;
    if (load_checkpoint(dir, &m, B, 0, &log, &missing)) {
        CHECK(missing == 0, "%s: %d head tensors missing", name, missing);
        CHECK(log.size == 0, "%s: unexpected import log: %s", name, log.text);
        m.prune_last_layer = 0;
        qft_batch batch = {.batch_size = B, .images = pixels};
        CHECK(qft_model_set_batch(&m, &batch, &err) == QFT_OK, "%s", err.message);
        qft_model_forward(&m, 0, 0, 0);
        float *logits = malloc(n_logits * sizeof(float)), *hidden = malloc(n_hidden * sizeof(float));
        CHECK((size_t)B * m.num_labels == n_logits && (size_t)B * m.head_T * m.D == n_hidden, "%s: output sizes",
              name);
        if ((size_t)B * m.head_T * m.D == n_hidden) {
            qft_model_read_logits(&m, logits);
            qft_model_read_hidden(&m, hidden);
            double e_logits = qft_max_rel_error(logits, ref_logits, n_logits, 0.0);
            double e_hidden = qft_max_rel_error(hidden, ref_hidden, n_hidden, 0.0);
            CHECK(e_logits <= TOLERANCE, "%s: logits rel error %.3g", name, e_logits);
            CHECK(e_hidden <= TOLERANCE, "%s: last_hidden_state rel error %.3g", name, e_hidden);
            printf("%-10s logits %.2e  hidden %.2e\n", name, e_logits, e_hidden);
        }
        free(logits);
        free(hidden);
        free(log.text);
        qft_model_free(&m);
    }
    free(pixels);
    free(ref_logits);
    free(ref_hidden);
    qft_safetensors_close(&io);
}

// has_classifier: the checkpoint is a BertForSequenceClassification (no head missing, logits compared);
// otherwise classifier.{weight,bias} are reported missing and the pooler loads.
static void test_bert(const char *name, int expect_cls_extras, int has_classifier) {
    char dir[64], io_path[128];
    snprintf(dir, sizeof dir, "hf_%s", name);
    snprintf(io_path, sizeof io_path, "tests/golden/hf_%s_io.safetensors", name);
    qft_safetensors io;
    qft_error err;
    if (qft_safetensors_open(&io, io_path, &err) != QFT_OK) {
        CHECK(0, "%s", err.message);
        return;
    }
    size_t n_tok, n_hidden, n_pooled;
    int32_t *ids = golden_read_i32(&io, "input_ids", &n_tok);
    int32_t *types = golden_read_i32(&io, "token_type_ids", NULL);
    int32_t *mask_i = golden_read_i32(&io, "attention_mask", NULL);
    float *ref_hidden = golden_read_f32(&io, "last_hidden_state", &n_hidden);
    float *ref_pooled = golden_read_f32(&io, "pooler_output", &n_pooled);
    const qft_tensor_info *ti = qft_safetensors_find(&io, "input_ids");
    int B = (int)ti->shape[0], T = (int)ti->shape[1];
    float *mask = malloc(n_tok * sizeof(float));
    for (size_t i = 0; i < n_tok; i++) mask[i] = (float)mask_i[i];
    qft_model m;
    log_capture log;
    int missing = -1;
    if (load_checkpoint(dir, &m, B, T, &log, &missing)) {
        if (has_classifier) {
            CHECK(missing == 0 && count_lines_with(log.text, "missing") == 0, "%s: missing %d: %s", name, missing,
                  log.text);
        } else {
            // classifier.{weight,bias} are new; the pooler comes from the checkpoint
            CHECK(missing == 2, "%s: expected 2 missing head tensors (classifier), got %d", name, missing);
            CHECK(count_lines_with(log.text, "missing head tensor") == 2 && strstr(log.text, "'classifier.weight'") &&
                      strstr(log.text, "'classifier.bias'") && !strstr(log.text, "pooler"),
                  "%s: missing-head report: %s", name, log.text);
        }
        const char *extras[] = {"cls.predictions.bias",
                                "cls.predictions.transform.dense.weight",
                                "cls.predictions.transform.dense.bias",
                                "cls.predictions.transform.LayerNorm.weight",
                                "cls.predictions.transform.LayerNorm.bias",
                                "cls.predictions.decoder.weight",
                                "cls.predictions.decoder.bias",
                                "cls.seq_relationship.weight",
                                "cls.seq_relationship.bias"};
        int n_extras = (int)(sizeof extras / sizeof extras[0]);
        for (int i = 0; expect_cls_extras && i < n_extras; i++) {
            char quoted[128];
            snprintf(quoted, sizeof quoted, "unexpected tensor '%s'", extras[i]);
            CHECK(strstr(log.text, quoted) != NULL, "%s: '%s' not reported: %s", name, extras[i], log.text);
        }
        int n_unexpected = count_lines_with(log.text, "unexpected tensor");
        CHECK(n_unexpected == (expect_cls_extras ? n_extras : 0), "%s: %d unexpected tensors reported: %s", name,
              n_unexpected, log.text);
        CHECK(strstr(log.text, "position_ids") == NULL, "%s: position_ids buffer reported: %s", name, log.text);

        qft_batch batch = {.batch_size = B, .seq_len = T, .input_ids = ids, .token_type_ids = types,
                           .attention_mask = mask};
        CHECK(qft_model_set_batch(&m, &batch, &err) == QFT_OK, "%s", err.message);
        qft_model_forward(&m, 0, 0, 0);
        float *hidden = malloc(n_hidden * sizeof(float)), *pooled = malloc(n_pooled * sizeof(float));
        CHECK((size_t)B * T * m.D == n_hidden && (size_t)B * m.D == n_pooled, "%s: output sizes", name);
        if ((size_t)B * T * m.D == n_hidden && (size_t)B * m.D == n_pooled) {
            qft_model_read_hidden(&m, hidden);
            m.be->copy_to_host(pooled, m.acts.pooled, n_pooled * sizeof(float));
            // rows with attention_mask == 1 (padded rows are not part of the contract)
            double max_diff = 0.0, max_ref = 0.0;
            for (size_t row = 0; row < n_tok; row++) {
                if (!mask_i[row]) continue;
                for (int c = 0; c < m.D; c++) {
                    size_t i = row * (size_t)m.D + (size_t)c;
                    max_diff = fmax(max_diff, fabs((double)hidden[i] - ref_hidden[i]));
                    max_ref = fmax(max_ref, fabs((double)ref_hidden[i]));
                }
            }
            double e_hidden = max_diff / max_ref;
            double e_pooled = qft_max_rel_error(pooled, ref_pooled, n_pooled, 0.0);
            CHECK(e_hidden <= TOLERANCE, "%s: last_hidden_state rel error %.3g", name, e_hidden);
            CHECK(e_pooled <= TOLERANCE, "%s: pooler_output rel error %.3g", name, e_pooled);
            printf("%-10s hidden %.2e  pooled %.2e", name, e_hidden, e_pooled);
            if (has_classifier) {
                size_t n_logits;
                float *ref_logits = golden_read_f32(&io, "logits", &n_logits);
                CHECK(n_logits == (size_t)B * m.num_labels, "%s: %zu logits for %d labels", name, n_logits, m.num_labels);
                float *logits = malloc((size_t)B * m.num_labels * sizeof(float));
                qft_model_read_logits(&m, logits);
                double e_logits = n_logits == (size_t)B * m.num_labels
                                      ? qft_max_rel_error(logits, ref_logits, n_logits, 0.0)
                                      : INFINITY;
                CHECK(e_logits <= TOLERANCE, "%s: logits rel error %.3g", name, e_logits);
                printf("  logits %.2e", e_logits);
                free(logits);
                free(ref_logits);
            }
            printf("\n");
        }
        if (getenv("QFT_TEST_VERBOSE")) fputs(log.text, stdout);
        free(hidden);
        free(pooled);
        free(log.text);
        qft_model_free(&m);
    }
    free(ids);
    free(types);
    free(mask_i);
    free(mask);
    free(ref_hidden);
    free(ref_pooled);
    qft_safetensors_close(&io);
}

// A config whose hidden size disagrees with the checkpoint: the import names the tensor.
static void test_shape_mismatch(void) {
    char dir[256], cfg_path[512];
    qft_test_make_temp_dir(dir, sizeof dir, "qft_hf_import");
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    FILE *f = fopen(cfg_path, "w");
    if (!f) {
        CHECK(0, "cannot write %s", cfg_path);
        qft_test_remove_temp_dir(dir);
        return;
    }
    fputs("{\"model_type\":\"vit\",\"hidden_size\":24,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
          "\"intermediate_size\":32,\"image_size\":8,\"patch_size\":4,\"num_channels\":3,\"num_labels\":3}\n",
          f);
    fclose(f);
    qft_model_config mc;
    qft_error err;
    CHECK(qft_hf_config_load(cfg_path, &mc, &err) == QFT_OK, "%s", err.message);
    qft_model m;
    if (qft_model_create(&m, &mc, 1, 0, qft_backend_cpu(), 7, &err) == QFT_OK) {
        qft_status s = qft_model_import(&m, "tests/golden/hf_vit/model.safetensors", NULL, NULL, &err);
        CHECK(s == QFT_ERR_SHAPE, "wrong hidden size: import returned %d", (int)s);
        CHECK(s != QFT_OK && strstr(err.message, "hf_vit/model.safetensors") && strstr(err.message, "vit.") &&
                  strchr(err.message, '\n') == NULL,
              "shape error should name the file and the tensor: '%s'", err.message);
        printf("shape mismatch: %s\n", err.message);
        qft_model_free(&m);
    } else {
        CHECK(0, "%s", err.message);
    }
    qft_test_remove_temp_dir(dir);
}

// Index of a parameter by HF name (exits the test when absent: the model tables are fixed).
static const qft_param *param_named(const qft_model *m, const char *name) {
    for (int i = 0; i < m->table.count; i++)
        if (strcmp(m->table.items[i].name, name) == 0) return &m->table.items[i];
    fprintf(stderr, "no parameter %s\n", name);
    exit(2);
}

// model.ignore_mismatched_sizes: hf_bert_cls has a 3-label classifier. A 5-label model refuses it
// by default; with the flag the classifier keeps its init (listed on the log) while the encoder and
// pooler load. A hidden-size mismatch is still an error with the flag.
static void test_ignore_mismatched_sizes(void) {
    qft_model_config mc;
    qft_error err;
    const char *weights = "tests/golden/hf_bert_cls/model.safetensors";
    if (qft_hf_config_load("tests/golden/hf_bert_cls/config.json", &mc, &err) != QFT_OK) {
        CHECK(0, "%s", err.message);
        return;
    }
    mc.num_labels = 5;
    qft_model m;
    if (qft_model_create(&m, &mc, 1, 8, qft_backend_cpu(), 7, &err) != QFT_OK) {
        CHECK(0, "%s", err.message);
        return;
    }
    size_t n = m.table.total_floats;
    float *before = malloc(n * sizeof(float)), *after = malloc(n * sizeof(float));
    m.be->copy_to_host(before, m.params, n * sizeof(float));
    qft_status s = qft_model_import(&m, weights, NULL, NULL, &err);
    CHECK(s == QFT_ERR_SHAPE && strstr(err.message, "classifier.weight"),
          "5-label model from a 3-label checkpoint without the flag: status %d, '%s'", (int)s, err.message);
    log_capture log;
    log_open(&log);
    int missing = -1;
    s = qft_model_import_pretrained(&m, weights, 1, log.stream, &missing, &err);
    log_close(&log);
    CHECK(s == QFT_OK, "ignore_mismatched_sizes: %s", err.message);
    CHECK(missing == 2 && count_lines_with(log.text, "model.ignore_mismatched_sizes") == 2 &&
              strstr(log.text, "'classifier.weight' has shape [3, 8], the model's is [5, 8]") &&
              strstr(log.text, "'classifier.bias' has shape [3], the model's is [5]"),
          "expected the two classifier tensors reported, got %d: %s", missing, log.text);
    m.be->copy_to_host(after, m.params, n * sizeof(float));
    const qft_param *head = param_named(&m, "classifier.weight");
    const qft_param *word = param_named(&m, "bert.embeddings.word_embeddings.weight");
    CHECK(memcmp(before + head->offset, after + head->offset, head->numel * sizeof(float)) == 0,
          "the mismatched classifier should keep its init");
    CHECK(memcmp(before + word->offset, after + word->offset, word->numel * sizeof(float)) != 0,
          "the encoder should load from the checkpoint");
    free(log.text);
    free(before);
    free(after);
    qft_model_free(&m);

    mc.num_labels = 3;
    mc.hidden_size = 12;
    mc.num_heads = 2;
    if (qft_model_create(&m, &mc, 1, 8, qft_backend_cpu(), 7, &err) != QFT_OK) {
        CHECK(0, "%s", err.message);
        return;
    }
    s = qft_model_import_pretrained(&m, weights, 1, NULL, NULL, &err);
    CHECK(s == QFT_ERR_SHAPE && strstr(err.message, "embeddings"),
          "an encoder shape mismatch must fail even with the flag: status %d, '%s'", (int)s, err.message);
    qft_model_free(&m);
}

static uint32_t float_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

// bf16 rounding of an fp32 value (round to nearest even; the weights are finite).
static uint32_t bf16_round_bits(float x) {
    uint32_t u = float_bits(x);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return u & 0xFFFF0000u;
}

// The hf_vit weights saved as bfloat16 and converted by the script (raw BF16 bits) import as the
// bf16 rounding of the fp32 checkpoint's values, exactly.
static void test_bf16(void) {
    qft_model full, half;
    log_capture log_full, log_half;
    int missing = -1;
    if (!load_checkpoint("hf_vit", &full, 1, 0, &log_full, &missing)) return;
    free(log_full.text);
    if (load_checkpoint("hf_vit_bf16", &half, 1, 0, &log_half, &missing)) {
        CHECK(missing == 0 && log_half.size == 0, "bf16: missing %d, log '%s'", missing, log_half.text);
        size_t n = full.table.total_floats;
        CHECK(half.table.total_floats == n, "bf16: parameter counts differ");
        float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
        full.be->copy_to_host(a, full.params, n * sizeof(float));
        half.be->copy_to_host(b, half.params, n * sizeof(float));
        size_t wrong = 0, changed = 0;
        for (size_t i = 0; i < n; i++) {
            if (float_bits(b[i]) != bf16_round_bits(a[i])) wrong++;
            if (a[i] != b[i]) changed++;
        }
        CHECK(wrong == 0, "bf16: %zu of %zu values are not the bf16 rounding of the fp32 checkpoint", wrong, n);
        CHECK(changed > n / 2, "bf16: only %zu of %zu values were rounded", changed, n);
        free(a);
        free(b);
        free(log_half.text);
        qft_model_free(&half);
    }
    qft_model_free(&full);
}

int main(void) {
    test_hf_config();
    test_vision("vit");
    test_vision("deit");
    test_bert("bert_pt", 1, 0);
    test_bert("bert_bare", 0, 0);
    test_bert("bert_cls", 0, 1);
    test_shape_mismatch();
    test_ignore_mismatched_sizes();
    test_bf16();
    QFT_TEST_SUMMARY();
}
