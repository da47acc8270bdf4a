// qft_calibrate_model_batches: calibration from a caller-supplied batch iterator (what a program with
// its own data, e.g. benchmarks/ptq_minilm.c, uses). A tiny random BERT with per-channel weight and
// per-tensor input rules: the ranges it sets equal the ranges computed directly from the tensors the
// sites see (weights: per output row; pooler.input: the [CLS] rows of the last hidden states over all
// batches); the iterator's end, max_batches, errors and the restored quant mode.
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "train/quant_tools.h"
#include "test_util.h"

enum { B = 4, T = 8, NB = 3, D = 32, VOCAB = 100 };

typedef struct {
    int32_t ids[NB][B * T];
    float mask[NB][B * T];
    int count;       // batches the iterator has
    int fail_at;     // index that returns an error (-1 = none)
    int calls;
} batches;

static qft_status next_batch(void *ctx, int index, qft_batch *batch, int *rows, qft_error *err) {
    batches *bs = ctx;
    bs->calls++;
    if (index == bs->fail_at) return qft_fail(err, QFT_ERR_IO, "test iterator: batch %d unreadable", index);
    if (index >= bs->count) {
        *rows = 0;
        return QFT_OK;
    }
    batch->batch_size = B;
    batch->seq_len = T;
    batch->input_ids = bs->ids[index];
    batch->attention_mask = bs->mask[index];
    *rows = B;
    return QFT_OK;
}

static void make_model(qft_model *m, const qft_config *cfg) {
    qft_error err;
    qft_status s = qft_model_create(m, &cfg->model, B, T, qft_backend_cpu(), 7, &err);
    if (s == QFT_OK) s = qft_model_quant_configure(m, &cfg->quant.rules, &err);
    if (s != QFT_OK) {
        fprintf(stderr, "model: %s\n", err.message);
        exit(1);
    }
}

// PEG (Bondarenko et al. 2021): layers.1.fc1.input's channels, sorted by calibrated range, form 4
// groups of 8; each group's quantizer covers the union of its channels' ranges.
static void test_peg(batches *bs) {
    static const char yaml[] =
        "model: {type: bert, hidden_size: 32, num_layers: 2, num_heads: 4, intermediate_size: 64, vocab_size: 100,\n"
        "        max_position_embeddings: 16, num_labels: 2}\n"
        "quant: {rules: [{pattern: \"layers.1.fc1.input\", granularity: peg, peg_groups: 4, symmetric: false, "
        "signed: false}]}\n";
    qft_config cfg;
    qft_error err;
    qft_config_defaults(&cfg);
    CHECK(qft_config_load_string(&cfg, yaml, strlen(yaml), "peg", &err) == QFT_OK, "%s", err.message);
    qft_model ref, m;
    make_model(&ref, &cfg);
    float lo[D], hi[D];
    for (int c = 0; c < D; c++) lo[c] = FLT_MAX, hi[c] = -FLT_MAX;
    for (int b = 0; b < NB; b++) {
        qft_batch batch = {.batch_size = B, .seq_len = T, .input_ids = bs->ids[b], .attention_mask = bs->mask[b]};
        CHECK(qft_model_set_batch(&ref, &batch, &err) == QFT_OK, "%s", err.message);
        qft_model_forward(&ref, 0, 0, 0);
        const float *x = ref.acts.layers[1].ln1_out;  // post-LN: fc1's input is LN1's output
        for (int r = 0; r < B * T; r++)
            for (int c = 0; c < D; c++) lo[c] = fminf(lo[c], x[(size_t)r * D + c]), hi[c] = fmaxf(hi[c], x[(size_t)r * D + c]);
    }
    make_model(&m, &cfg);
    qft_calibrate_summary sum;
    memset(&sum, 0, sizeof sum);
    bs->calls = 0;
    CHECK(qft_calibrate_model_batches(&m, next_batch, bs, NB, &sum, &err) == QFT_OK, "peg calibrate: %s", err.message);
    const qft_quant_site *site = &m.quant.sites[qft_quant_find(&m.quant, "layers.1.fc1.input")];
    int members[4] = {0}, bad_group = 0;
    float group_lo[4], group_hi[4], group_min_range[4], group_max_range[4];
    for (int k = 0; k < 4; k++) group_lo[k] = group_min_range[k] = FLT_MAX, group_hi[k] = group_max_range[k] = -FLT_MAX;
    for (int c = 0; c < D; c++) {
        int k = site->column_group[c];
        if (k < 0 || k >= 4) {
            bad_group++;
            continue;
        }
        members[k]++;
        group_lo[k] = fminf(group_lo[k], lo[c]), group_hi[k] = fmaxf(group_hi[k], hi[c]);
        group_min_range[k] = fminf(group_min_range[k], hi[c] - lo[c]);
        group_max_range[k] = fmaxf(group_max_range[k], hi[c] - lo[c]);
    }
    CHECK(bad_group == 0 && members[0] == 8 && members[1] == 8 && members[2] == 8 && members[3] == 8,
          "4 groups of 8 channels (%d %d %d %d)", members[0], members[1], members[2], members[3]);
    for (int k = 0; k + 1 < 4; k++)
        CHECK(group_max_range[k] <= group_min_range[k + 1], "group %d's widest channel (%g) <= group %d's narrowest (%g)",
              k, group_max_range[k], k + 1, group_min_range[k + 1]);
    for (int k = 0; k < 4; k++) {
        float want_scale, want_zero;
        qft_quant_params_from_range(&site->fmt, group_lo[k], group_hi[k], &want_scale, &want_zero);
        CHECK(site->scale[k] == want_scale && site->zero_point[k] == want_zero,
              "group %d: scale %g zp %g, want %g %g (union of its channels' ranges)", k, site->scale[k],
              site->zero_point[k], want_scale, want_zero);
    }
    qft_model_free(&ref);
    qft_model_free(&m);
}

int main(void) {
    static const char yaml[] =
        "model: {type: bert, hidden_size: 32, num_layers: 2, num_heads: 4, intermediate_size: 64, vocab_size: 100,\n"
        "        max_position_embeddings: 16, num_labels: 2}\n"
        "quant:\n"
        "  rules:\n"
        "    - {pattern: \"*.weight\", bits: 8, granularity: channel}\n"
        "    - {pattern: \"*.input\", bits: 6, symmetric: false, signed: false}\n"
        "    - {pattern: \"*.attn.probs\", bits: 8, symmetric: false, signed: false}\n";
    qft_config cfg;
    qft_error err;
    qft_config_defaults(&cfg);
    if (qft_config_load_string(&cfg, yaml, strlen(yaml), "test", &err) != QFT_OK) {
        fprintf(stderr, "config: %s\n", err.message);
        return 1;
    }
    batches bs;
    memset(&bs, 0, sizeof bs);
    uint32_t state = 12345u;
    for (int b = 0; b < NB; b++)
        for (int r = 0; r < B; r++) {
            int len = 3 + (b + r) % (T - 2);  // rows of different lengths: padding is seen by the sites too
            for (int t = 0; t < T; t++) {
                state = state * 1664525u + 1013904223u;
                bs.ids[b][r * T + t] = t == 0 ? 1 : t < len ? 5 + (int)(state >> 8) % (VOCAB - 5) : 0;
                bs.mask[b][r * T + t] = t < len ? 1.0f : 0.0f;
            }
        }
    bs.count = NB;
    bs.fail_at = -1;

    // Reference: the FP model's [CLS] rows of every batch (pooler.input), and the weights.
    qft_model ref;
    make_model(&ref, &cfg);
    float lo = FLT_MAX, hi = -FLT_MAX;
    float *hidden = malloc(sizeof(float) * B * T * D);
    for (int b = 0; b < NB; b++) {
        qft_batch batch = {.batch_size = B, .seq_len = T, .input_ids = bs.ids[b], .attention_mask = bs.mask[b]};
        CHECK(qft_model_set_batch(&ref, &batch, &err) == QFT_OK, "%s", err.message);
        qft_model_forward(&ref, 0, 0, 0);
        qft_model_read_hidden(&ref, hidden);
        for (int r = 0; r < B; r++)
            for (int c = 0; c < D; c++) lo = fminf(lo, hidden[(size_t)r * T * D + c]), hi = fmaxf(hi, hidden[(size_t)r * T * D + c]);
    }

    qft_model m;
    make_model(&m, &cfg);
    qft_calibrate_summary sum;
    memset(&sum, 0, sizeof sum);
    qft_status s = qft_calibrate_model_batches(&m, next_batch, &bs, 5, &sum, &err);
    CHECK(s == QFT_OK, "calibrate: %s", s ? err.message : "");
    CHECK(sum.batches == NB && sum.examples == NB * B, "batches %d examples %ld (want %d, %d)", sum.batches,
          sum.examples, NB, NB * B);
    CHECK(bs.calls == NB + 1, "iterator called %d times (want %d: ended by rows = 0)", bs.calls, NB + 1);
    CHECK(sum.sites == m.quant.enabled_count && sum.sites > 0, "sites %d of %d enabled", sum.sites,
          m.quant.enabled_count);
    CHECK(m.quant.mode == QFT_QUANT_OFF && m.quant.observe == NULL, "quant mode restored");
    int uncalibrated = 0;
    for (int i = 0; i < m.quant.count; i++)
        uncalibrated += m.quant.sites[i].fmt.enabled && !m.quant.sites[i].calibrated;
    CHECK(uncalibrated == 0, "%d enabled sites left uncalibrated", uncalibrated);

    // pooler.input: min/max over the [CLS] rows of all batches.
    const qft_quant_site *pin = &m.quant.sites[qft_quant_find(&m.quant, "pooler.input")];
    float want_scale, want_zero;
    qft_quant_params_from_range(&pin->fmt, lo, hi, &want_scale, &want_zero);
    CHECK(pin->scale[0] == want_scale && pin->zero_point[0] == want_zero, "pooler.input scale %.9g zp %g, want %.9g %g",
          pin->scale[0], pin->zero_point[0], want_scale, want_zero);

    // layers.1.fc1.weight: one range per output row.
    const qft_quant_site *w = &m.quant.sites[qft_quant_find(&m.quant, "layers.1.fc1.weight")];
    int bad = 0;
    for (int r = 0; r < w->rows; r++) {
        float wlo = FLT_MAX, whi = -FLT_MAX;
        for (int c = 0; c < w->C; c++) wlo = fminf(wlo, w->weight[(size_t)r * w->C + c]), whi = fmaxf(whi, w->weight[(size_t)r * w->C + c]);
        qft_quant_params_from_range(&w->fmt, wlo, whi, &want_scale, &want_zero);
        bad += w->scale[r] != want_scale || w->zero_point[r] != want_zero;
    }
    CHECK(bad == 0 && w->n_params == w->rows, "%d of %d weight rows with another scale", bad, w->rows);

    // max_batches caps the iterator; the quant mode in force before is restored.
    qft_model m2;
    make_model(&m2, &cfg);
    m2.quant.mode = QFT_QUANT_ON;
    memset(&sum, 0, sizeof sum);
    bs.calls = 0;
    CHECK(qft_calibrate_model_batches(&m2, next_batch, &bs, 2, &sum, &err) == QFT_OK, "%s", err.message);
    CHECK(sum.batches == 2 && bs.calls == 2 && m2.quant.mode == QFT_QUANT_ON, "max_batches 2: %d batches, %d calls",
          sum.batches, bs.calls);

    // An iterator error stops the calibration and comes back as is; nothing is marked calibrated.
    qft_model m3;
    make_model(&m3, &cfg);
    memset(&sum, 0, sizeof sum);
    bs.fail_at = 1;
    s = qft_calibrate_model_batches(&m3, next_batch, &bs, 5, &sum, &err);
    CHECK(s == QFT_ERR_IO && strstr(err.message, "batch 1 unreadable"), "iterator error: %d %s", s, err.message);
    CHECK(sum.sites == 0 && !m3.quant.sites[qft_quant_find(&m3.quant, "pooler.input")].calibrated &&
              m3.quant.mode == QFT_QUANT_OFF && m3.quant.observe == NULL,
          "state after an iterator error");

    // An iterator without batches: an error, not an uncalibrated model.
    qft_model m4;
    make_model(&m4, &cfg);
    memset(&sum, 0, sizeof sum);
    bs.fail_at = -1;
    bs.count = 0;
    s = qft_calibrate_model_batches(&m4, next_batch, &bs, 5, &sum, &err);
    CHECK(s == QFT_ERR_INVALID && strstr(err.message, "no calibration batch"), "empty iterator: %d %s", s, err.message);

    bs.count = NB;
    test_peg(&bs);

    free(hidden);
    qft_model_free(&ref);
    qft_model_free(&m);
    qft_model_free(&m2);
    qft_model_free(&m3);
    qft_model_free(&m4);
    QFT_TEST_SUMMARY();
}
