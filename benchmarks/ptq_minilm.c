// Post-training quantization of the real all-MiniLM-L6-v2 (datasets/fetch_minilm.sh): for each preset
// (configs/quant/<preset>.yaml, only the calibrator changed on every rule) x calibrator, calibrate on
// calibration sentences and report the cosine similarity of the quantized model's sentence embeddings
// to the FP model's on held-out sentences (mean and minimum), as a Markdown table on stdout.
//
//   cmake --build build --target ptq_minilm && build/ptq_minilm     # from the repository root
//
// Sentences: the first sentence of the long Description of every package in the dpkg status file
// (/var/lib/dpkg/status; real English written by package maintainers), at least 6 words, preformatted
// lines skipped, exact duplicates dropped, ordered by package name; the k-th sentence goes to the
// calibration set when k is even and to the held-out evaluation set when k is odd, until each has its
// count. Tokenized by qft's WordPiece with the checkpoint's vocab.txt, truncated to --max-len tokens,
// batches of --batch consecutive sentences padded to their longest row (calibration sees the padding
// rows too, as `qft calibrate` on GLUE does). Embedding (sentence-transformers' pooling, as
// tests/test_minilm.c): mask-weighted mean of the last hidden states, L2-normalized.
// Calibration: qft_calibrate_model_batches over all calibration batches (each site observes its FP
// input: "parallel" calibration), then QFT_QUANT_ON.
//
// Options: --model DIR (QFT_MINILM_DIR, else ~/.cache/qft/minilm), --source FILE (/var/lib/dpkg/status),
// --calib N (256), --eval N (256), --batch B (32), --max-len T (64), --presets "w8a8 w6a6 w4a4",
// --calibrators "minmax ema percentile:99.99 mse omse entropy" (percentile:P sets the percentile),
// --configs DIR (configs/quant), --sentences FILE (a --dump file instead of --source; the sentences of
// benchmarks/RESULTS.md are benchmarks/ptq_minilm_sentences.tsv), --dump FILE (write the sentences used: set<TAB>text). The calibrator
// name "preset" keeps each rule's calibrator as its YAML file sets it (for per-site ablations).
// Fine-tuned models (benchmarks/methods_minilm.sh): --weights FILE quantizes and evaluates these weights
// (e.g. a `qft train` run's model.safetensors) instead of the checkpoint's, always against the original FP
// model's embeddings (PTQ after fine-tuning); --checkpoint FILE --run-config YAML skips calibration and
// evaluates the weights (--weights, else the checkpoint's) with the checkpoint's own quantizer state
// (qft_quant_prepare_eval: the learned LSQ scales of a QAT checkpoint) under the run's quant.rules
// (YAML: the run's config.yaml), printing one line `checkpoint: mean / min` on stdout.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/hf_config.h"
#include "model/model.h"
#include "text/wordpiece.h"
#include "train/quant_tools.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what, const qft_error *err) {
    fprintf(stderr, "ptq_minilm: %s: %s\n", what, err ? err->message : "");
    exit(1);
}

// ------------------------------------------------------------------------------------------------
// Sentences from the dpkg status file

typedef struct {
    char *package, *text;
} sentence;

static int by_package(const void *a, const void *b) {
    return strcmp(((const sentence *)a)->package, ((const sentence *)b)->package);
}

static int count_words(const char *s) {
    int words = 0, in = 0;
    for (; *s; s++) {
        int space = *s == ' ';
        if (!space && !in) words++;
        in = !space;
    }
    return words;
}

// The first sentence of a paragraph: up to the first ". " (or the whole paragraph when it ends in
// '.'); NULL when there is none.
static char *first_sentence(const char *para) {
    const char *end = strstr(para, ". ");
    size_t n = end ? (size_t)(end - para) + 1 : strlen(para);
    if (n == 0 || para[n - 1] != '.') return NULL;
    char *s = malloc(n + 1);
    memcpy(s, para, n);
    s[n] = 0;
    return s;
}

static sentence *read_dpkg_sentences(const char *path, int *count) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "ptq_minilm: %s: cannot open\n", path);
        exit(1);
    }
    sentence *out = NULL;
    int n = 0, cap = 0;
    char line[8192], package[256] = "", para[4096] = "";
    int in_desc = 0, para_done = 0, preformatted = 0;
    for (;;) {
        char *got = fgets(line, sizeof line, f);
        size_t len = got ? strlen(line) : 0;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!got || len == 0) {  // end of a stanza
            char *s = package[0] && para[0] && !preformatted ? first_sentence(para) : NULL;
            if (s && count_words(s) >= 6 && strlen(s) <= 400) {
                if (n == cap) cap = cap ? 2 * cap : 1024, out = realloc(out, (size_t)cap * sizeof *out);
                out[n].package = strdup(package);
                out[n].text = s;
                n++;
            } else {
                free(s);
            }
            package[0] = para[0] = 0;
            in_desc = para_done = preformatted = 0;
            if (!got) break;
            continue;
        }
        if (line[0] != ' ' && line[0] != '\t') {
            in_desc = 0;
            if (strncmp(line, "Package: ", 9) == 0) snprintf(package, sizeof package, "%s", line + 9);
            else if (strncmp(line, "Description: ", 13) == 0) in_desc = 1;
            continue;
        }
        if (!in_desc || para_done) continue;
        if (strcmp(line, " .") == 0) {
            para_done = para[0] != 0;
            continue;
        }
        if (line[1] == ' ' || line[1] == '\t') preformatted = 1;  // Debian policy: displayed verbatim
        const char *text = line + 1;
        size_t used = strlen(para);
        if (used + strlen(text) + 2 < sizeof para) snprintf(para + used, sizeof para - used, "%s%s", used ? " " : "", text);
    }
    fclose(f);
    qsort(out, (size_t)n, sizeof *out, by_package);
    int kept = 0;  // exact duplicates (e.g. a library's -dev and runtime packages) count once
    for (int i = 0; i < n; i++) {
        int dup = 0;
        for (int j = 0; j < kept && !dup; j++) dup = strcmp(out[j].text, out[i].text) == 0;
        if (dup) {
            free(out[i].package), free(out[i].text);
            continue;
        }
        out[kept++] = out[i];
    }
    *count = kept;
    return out;
}

// A --dump file (set<TAB>text lines; set = calib | eval) read back, so the same sentences can be used
// on a machine with another package set.
static void read_sentence_file(const char *path, char **calib, int n_calib, int *got_c, char **eval, int n_eval,
                               int *got_e) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "ptq_minilm: %s: cannot open\n", path);
        exit(1);
    }
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        *tab = 0;
        if (strcmp(line, "calib") == 0 && *got_c < n_calib) calib[(*got_c)++] = strdup(tab + 1);
        else if (strcmp(line, "eval") == 0 && *got_e < n_eval) eval[(*got_e)++] = strdup(tab + 1);
    }
    fclose(f);
}

// ------------------------------------------------------------------------------------------------
// Batches

typedef struct {
    int n, T;
    int32_t *ids, *types;
    float *mask;
} text_batch;

typedef struct {
    text_batch *b;
    int count;
    long tokens;  // real (unpadded) tokens
} batch_set;

static batch_set make_batches(const qft_wordpiece *tok, char **texts, int n, int B, int max_len) {
    batch_set set = {calloc((size_t)(n + B - 1) / B, sizeof(text_batch)), 0, 0};
    qft_wordpiece_encoding *enc = calloc((size_t)n, sizeof *enc);
    qft_error err;
    for (int i = 0; i < n; i++)
        if (qft_wordpiece_encode(tok, texts[i], strlen(texts[i]), NULL, 0, (size_t)max_len, 0, &enc[i], &err) != QFT_OK)
            die(texts[i], &err);
    for (int start = 0; start < n; start += B) {
        text_batch *b = &set.b[set.count++];
        b->n = n - start < B ? n - start : B;
        b->T = 0;
        for (int i = 0; i < b->n; i++) b->T = (int)enc[start + i].length > b->T ? (int)enc[start + i].length : b->T;
        b->ids = calloc((size_t)b->n * b->T, sizeof(int32_t));
        b->types = calloc((size_t)b->n * b->T, sizeof(int32_t));
        b->mask = calloc((size_t)b->n * b->T, sizeof(float));
        for (int i = 0; i < b->n; i++) {
            const qft_wordpiece_encoding *e = &enc[start + i];
            for (size_t t = 0; t < e->length; t++) {
                b->ids[(size_t)i * b->T + t] = e->input_ids[t];
                b->types[(size_t)i * b->T + t] = e->token_type_ids[t];
                b->mask[(size_t)i * b->T + t] = (float)e->attention_mask[t];
            }
            set.tokens += (long)e->length;
        }
    }
    for (int i = 0; i < n; i++) qft_wordpiece_encoding_free(&enc[i]);
    free(enc);
    return set;
}

static qft_batch as_batch(const text_batch *b) {
    qft_batch batch = {.batch_size = b->n, .seq_len = b->T, .input_ids = b->ids, .token_type_ids = b->types,
                       .attention_mask = b->mask};
    return batch;
}

static qft_status next_calibration_batch(void *ctx, int index, qft_batch *batch, int *rows, qft_error *err) {
    (void)err;
    const batch_set *set = ctx;
    *rows = 0;
    if (index >= set->count) return QFT_OK;
    *batch = as_batch(&set->b[index]);
    *rows = set->b[index].n;
    return QFT_OK;
}

// Sentence embeddings [sentences, D] of every batch of `set`; the quantizers' non-finite check after
// each batch. Returns the number of non-finite embedding values.
static long embed(qft_model *m, const batch_set *set, float *out, float *hidden, qft_error *err, qft_status *status) {
    int D = m->D;
    long nonfinite = 0, row0 = 0;
    *status = QFT_OK;
    for (int k = 0; k < set->count; k++) {
        const text_batch *b = &set->b[k];
        qft_batch batch = as_batch(b);
        if ((*status = qft_model_set_batch(m, &batch, err)) != QFT_OK) return 0;
        qft_model_forward(m, 0, 0, 0);
        if ((*status = qft_model_quant_check(m, err)) != QFT_OK) return 0;
        qft_model_read_hidden(m, hidden);
        for (int i = 0; i < b->n; i++) {
            double acc[1024] = {0}, count = 0.0, norm = 0.0;
            for (int t = 0; t < b->T; t++) {
                float w = b->mask[(size_t)i * b->T + t];
                if (w == 0.0f) continue;
                count += w;
                for (int c = 0; c < D; c++) acc[c] += w * (double)hidden[((size_t)i * b->T + t) * D + c];
            }
            for (int c = 0; c < D; c++) norm += (acc[c] / count) * (acc[c] / count);
            norm = sqrt(norm);
            for (int c = 0; c < D; c++) {
                float v = (float)(acc[c] / count / norm);
                nonfinite += !isfinite(v);
                out[(size_t)(row0 + i) * D + c] = v;
            }
        }
        row0 += b->n;
    }
    return nonfinite;
}

// ------------------------------------------------------------------------------------------------

static int split_words(char *s, char **out, int cap) {
    int n = 0;
    for (char *tok = strtok(s, " ,"); tok && n < cap; tok = strtok(NULL, " ,")) out[n++] = tok;
    return n;
}

static qft_calibrator_kind calibrator_kind(const char *name) {
    for (int k = QFT_CALIB_MINMAX; k <= QFT_CALIB_ENTROPY; k++)
        if (strcmp(qft_calibrator_name((qft_calibrator_kind)k), name) == 0) return (qft_calibrator_kind)k;
    fprintf(stderr, "ptq_minilm: unknown calibrator %s\n", name);
    exit(2);
}

static uint64_t fnv1a(uint64_t h, const char *s) {
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (h ^ '\n') * 1099511628211ull;
}

typedef struct {
    char text[96];
    double seconds;
} cell;

// "mean / min" cosine similarity of q to fp over n rows of D.
static void cosine_text(const float *fp, const float *q, int n, int D, char *text, size_t cap) {
    double sum_cos = 0.0, min_cos = 2.0;
    for (int i = 0; i < n; i++) {
        double dot = 0.0, na = 0.0, nb = 0.0;
        for (int d = 0; d < D; d++) {
            double a = fp[(size_t)i * D + d], b = q[(size_t)i * D + d];
            dot += a * b, na += a * a, nb += b * b;
        }
        double cs = dot / sqrt(na * nb);
        sum_cos += cs;
        min_cos = fmin(min_cos, cs);
    }
    snprintf(text, cap, "%.4f / %.4f", sum_cos / n, min_cos);
}

int main(int argc, char **argv) {
    const char *model_dir = getenv("QFT_MINILM_DIR"), *source = "/var/lib/dpkg/status", *configs = "configs/quant";
    const char *dump = NULL, *sentence_file = NULL, *weights_arg = NULL, *checkpoint = NULL, *run_config = NULL;
    char presets_arg[512] = "w8a8 w6a6 w4a4", calibrators_arg[1024] = "minmax ema percentile:99.99 mse omse entropy";
    int n_calib = 256, n_eval = 256, B = 32, max_len = 64;
    char default_dir[1024];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "ptq_minilm: %s needs a value (see the header of benchmarks/ptq_minilm.c)\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--model") == 0) model_dir = v;
        else if (strcmp(a, "--source") == 0) source = v;
        else if (strcmp(a, "--configs") == 0) configs = v;
        else if (strcmp(a, "--dump") == 0) dump = v;
        else if (strcmp(a, "--sentences") == 0) sentence_file = v;
        else if (strcmp(a, "--weights") == 0) weights_arg = v;
        else if (strcmp(a, "--checkpoint") == 0) checkpoint = v;
        else if (strcmp(a, "--run-config") == 0) run_config = v;
        else if (strcmp(a, "--presets") == 0) snprintf(presets_arg, sizeof presets_arg, "%s", v);
        else if (strcmp(a, "--calibrators") == 0) snprintf(calibrators_arg, sizeof calibrators_arg, "%s", v);
        else if (strcmp(a, "--calib") == 0) n_calib = atoi(v);
        else if (strcmp(a, "--eval") == 0) n_eval = atoi(v);
        else if (strcmp(a, "--batch") == 0) B = atoi(v);
        else if (strcmp(a, "--max-len") == 0) max_len = atoi(v);
        else {
            fprintf(stderr, "ptq_minilm: unknown option %s\n", a);
            return 2;
        }
    }
    if (n_calib < 1 || n_eval < 1 || B < 1 || max_len < 3 || max_len > 512) {
        fprintf(stderr, "ptq_minilm: bad --calib/--eval/--batch/--max-len\n");
        return 2;
    }
    if (!checkpoint != !run_config) {
        fprintf(stderr, "ptq_minilm: --checkpoint and --run-config go together\n");
        return 2;
    }
    if (!model_dir) {
        const char *home = getenv("HOME");
        snprintf(default_dir, sizeof default_dir, "%s/.cache/qft/minilm", home ? home : ".");
        model_dir = default_dir;
    }
    char *presets[16], *calibrators[32];
    int n_presets = split_words(presets_arg, presets, 16);
    int n_cals = split_words(calibrators_arg, calibrators, 32);

    // Sentences.
    int n_all = 0;
    sentence *all = sentence_file ? NULL : read_dpkg_sentences(source, &n_all);
    char **calib_text = calloc((size_t)n_calib, sizeof(char *)), **eval_text = calloc((size_t)n_eval, sizeof(char *));
    int got_c = 0, got_e = 0;
    if (sentence_file) {
        read_sentence_file(sentence_file, calib_text, n_calib, &got_c, eval_text, n_eval, &got_e);
        source = sentence_file;
        n_all = got_c + got_e;
    }
    for (int k = 0; k < n_all && !sentence_file && (got_c < n_calib || got_e < n_eval); k++) {
        if (k % 2 == 0 && got_c < n_calib) calib_text[got_c++] = all[k].text;
        else if (k % 2 == 1 && got_e < n_eval) eval_text[got_e++] = all[k].text;
    }
    if (got_c < n_calib || got_e < n_eval) {
        fprintf(stderr, "ptq_minilm: %s gives %d usable sentences: %d calibration, %d held-out (asked %d, %d)\n", source,
                n_all, got_c, got_e, n_calib, n_eval);
        return 1;
    }
    uint64_t hash = 1469598103934665603ull;
    for (int i = 0; i < n_calib; i++) hash = fnv1a(hash, calib_text[i]);
    for (int i = 0; i < n_eval; i++) hash = fnv1a(hash, eval_text[i]);
    if (dump) {
        FILE *f = fopen(dump, "w");
        if (!f) die(dump, NULL);
        for (int i = 0; i < n_calib; i++) fprintf(f, "calib\t%s\n", calib_text[i]);
        for (int i = 0; i < n_eval; i++) fprintf(f, "eval\t%s\n", eval_text[i]);
        fclose(f);
    }

    qft_error err;
    char path[2048];
    qft_model_config mc;
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    if (qft_hf_config_load(path, &mc, &err) != QFT_OK) die("config", &err);
    snprintf(path, sizeof path, "%s/vocab.txt", model_dir);
    qft_wordpiece_options options = qft_wordpiece_default_options();
    qft_wordpiece *tok = NULL;
    if (qft_wordpiece_load(path, &options, &tok, &err) != QFT_OK) die("vocab", &err);
    batch_set calib = make_batches(tok, calib_text, n_calib, B, max_len);
    batch_set eval = make_batches(tok, eval_text, n_eval, B, max_len);
    qft_wordpiece_free(tok);
    char weights[2048];
    snprintf(weights, sizeof weights, "%s/model.safetensors", model_dir);
    fprintf(stderr, "%s: %d usable sentences; calibration %d (%ld tokens, %d batches), held-out %d (%ld tokens); "
            "sentence-set hash %016llx\n", source, n_all, n_calib, calib.tokens, calib.count, n_eval, eval.tokens,
            (unsigned long long)hash);

    int D = mc.hidden_size;
    if (D > 1024) die("hidden_size above 1024", NULL);
    float *hidden = malloc(sizeof(float) * (size_t)B * max_len * D);
    float *fp_emb = malloc(sizeof(float) * (size_t)n_eval * D), *q_emb = malloc(sizeof(float) * (size_t)n_eval * D);
    qft_status status;
    {
        qft_model m;
        if (qft_model_create(&m, &mc, B, max_len, qft_backend_cpu(), 1, &err) != QFT_OK) die("model", &err);
        if (qft_model_import(&m, weights, NULL, NULL, &err) != QFT_OK) die("import", &err);
        if (embed(&m, &eval, fp_emb, hidden, &err, &status) != 0 || status) die("FP embeddings", &err);
        qft_model_free(&m);
    }
    const char *qweights = weights_arg ? weights_arg : checkpoint ? checkpoint : weights;
    if (weights_arg || checkpoint) fprintf(stderr, "quantized model's weights: %s\n", qweights);
    if (checkpoint) {  // a fine-tuned checkpoint with its own quantizer state
        qft_config *cfg = malloc(sizeof *cfg);
        qft_config_defaults(cfg);
        if (qft_config_load_file(cfg, run_config, &err) != QFT_OK) die(run_config, &err);
        qft_model m;
        int quantized = 0;
        char text[96];
        if (qft_model_create(&m, &mc, B, max_len, qft_backend_cpu(), 1, &err) != QFT_OK) die("model", &err);
        if (qft_model_import(&m, qweights, NULL, NULL, &err) != QFT_OK) die(qweights, &err);
        if (qft_quant_prepare_eval(&m, cfg, checkpoint, &quantized, &err) != QFT_OK) die(checkpoint, &err);
        long nonfinite = embed(&m, &eval, q_emb, hidden, &err, &status);
        if (status) die("embeddings", &err);
        if (nonfinite) snprintf(text, sizeof text, "NaN/Inf in %ld values", nonfinite);
        else cosine_text(fp_emb, q_emb, n_eval, D, text, sizeof text);
        fprintf(stderr, "checkpoint %s (%s, %d enabled sites): %s\n", checkpoint, quantized ? "quantized" : "FP",
                m.quant.enabled_count, text);
        printf("checkpoint: %s\n", text);
        qft_model_free(&m);
        free(cfg);
        return 0;
    }

    cell *cells = calloc((size_t)n_presets * n_cals, sizeof(cell));
    for (int p = 0; p < n_presets; p++) {
        qft_config *cfg = malloc(sizeof *cfg);
        qft_config_defaults(cfg);
        snprintf(path, sizeof path, "%s/%s.yaml", configs, presets[p]);
        if (qft_config_load_file(cfg, path, &err) != QFT_OK) die(path, &err);
        for (int k = 0; k < n_cals; k++) {
            char name[64];
            snprintf(name, sizeof name, "%s", calibrators[k]);
            char *colon = strchr(name, ':');
            double pct = colon ? atof(colon + 1) : 0.0;
            if (colon) *colon = 0;
            qft_quant_rule_list rules = cfg->quant.rules;
            int keep = strcmp(name, "preset") == 0;  // the YAML's own calibrators (ablations)
            for (int r = 0; r < rules.count && !keep; r++) {
                rules.items[r].format.calibrator = calibrator_kind(name);
                if (colon) rules.items[r].format.percentile = pct;
            }
            cell *c = &cells[(size_t)p * n_cals + k];
            double t0 = now_s();
            qft_model m;
            qft_calibrate_summary sum;
            memset(&sum, 0, sizeof sum);
            status = qft_model_create(&m, &mc, B, max_len, qft_backend_cpu(), 1, &err);
            if (status == QFT_OK) status = qft_model_import(&m, qweights, NULL, NULL, &err);
            if (status == QFT_OK) status = qft_model_quant_configure(&m, &rules, &err);
            if (status == QFT_OK) status = qft_calibrate_model_batches(&m, next_calibration_batch, &calib, calib.count, &sum, &err);
            c->seconds = now_s() - t0;
            long nonfinite = 0;
            if (status == QFT_OK) {
                m.quant.mode = QFT_QUANT_ON;
                nonfinite = embed(&m, &eval, q_emb, hidden, &err, &status);
            }
            if (status != QFT_OK) {
                snprintf(c->text, sizeof c->text, "error (see stderr)");
                fprintf(stderr, "%s %s: error: %s\n", presets[p], calibrators[k], err.message);
            } else if (nonfinite) {
                snprintf(c->text, sizeof c->text, "NaN/Inf in %ld values", nonfinite);
            } else {
                cosine_text(fp_emb, q_emb, n_eval, D, c->text, sizeof c->text);
            }
            fprintf(stderr, "%s %-16s %-24s (%d sites, %d batches, %.1f s calibration)\n", presets[p], calibrators[k],
                    c->text, sum.sites, sum.batches, c->seconds);
            qft_model_free(&m);
        }
        free(cfg);
    }

    printf("Cosine similarity of the quantized model's sentence embeddings to the FP model's, %d held-out sentences: "
           "mean / min.\n\n| calibrator |", n_eval);
    for (int p = 0; p < n_presets; p++) {
        printf(" ");
        for (const char *s = presets[p]; *s; s++) putchar(*s >= 'a' && *s <= 'z' ? *s - 32 : *s);
        printf(" |");
    }
    printf("\n|---|");
    for (int p = 0; p < n_presets; p++) printf("---:|");
    printf("\n| FP (no quantization) |");
    for (int p = 0; p < n_presets; p++) printf(" 1 / 1 |");
    printf("\n");
    for (int k = 0; k < n_cals; k++) {
        char label[64];
        snprintf(label, sizeof label, "%s", calibrators[k]);
        char *colon = strchr(label, ':');
        if (colon) *colon = ' ';
        printf("| %s |", label);
        for (int p = 0; p < n_presets; p++) printf(" %s |", cells[(size_t)p * n_cals + k].text);
        printf("\n");
    }
    printf("\nSeconds per cell (model load + calibration on %d sentences):\n\n| calibrator |", n_calib);
    for (int p = 0; p < n_presets; p++) printf(" %s |", presets[p]);
    printf("\n|---|");
    for (int p = 0; p < n_presets; p++) printf("---:|");
    printf("\n");
    for (int k = 0; k < n_cals; k++) {
        printf("| %s |", calibrators[k]);
        for (int p = 0; p < n_presets; p++) printf(" %.1f |", cells[(size_t)p * n_cals + k].seconds);
        printf("\n");
    }
    return 0;
}
