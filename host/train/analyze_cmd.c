// `qft analyze` driver: observes every activation site of the model on calibration batches, feeds the
// statistics accumulators and per-batch error decompositions, and writes the report and its summary.
#include "analyze_cmd.h"

#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backend/backend.h"
#include "../data/dataset.h"
#include "../io/config_quant.h"
#include "../model/model.h"
#include "../quant/analyze_error.h"
#include "../quant/analyze_report.h"
#include "../quant/analyze_stats.h"
#include "../quant/calib.h"
#include "run_files.h"

#define TOP_TOKENS 5
#define TOP_CHANNELS 5

// Squared-error parts of one site at one bit width, summed over batches as n_b * part_b (so dividing by
// n gives the element-weighted mean), plus the union of the per-batch ranges.
typedef struct {
    double e_tot, e_clip, e_round_out, e_round_in0, e_amp, e_amp_uniform;
    uint64_t n, outliers, clipped, outliers_clipped, inliers_unclipped;
    float lo, hi, lo0, hi0;
    double out_e, out_e_inlier, out_count;  // linear output error sums (INPUT sites with a weight)
} error_sums;

typedef struct {
    const qft_quant_site *site;
    qft_analyze_stats stats;
    qft_quant_format grid;             // uniform per-tensor grid shape; bits set per width
    int bit_count;
    int bits[QFT_ANALYZE_CMD_MAX_BITS];
    error_sums sums[QFT_ANALYZE_CMD_MAX_BITS];
    const float *weight;               // INPUT sites: the linear's weight [out_features, C] (host memory)
    int out_features;
} site_acc;

typedef struct {
    site_acc *acc;
    int count;
    int *acc_of;                       // model site index -> acc index, -1 for sites not analyzed
    const qft_batch *batch;            // the batch being run (text: its attention mask)
    int NH;
    float *scratch;                    // valid values of one observed tensor (padding left out)
    qft_status status;                 // first failure inside the observer, which cannot return one
    qft_error err;
} analyze_ctx;

static int is_activation(qft_site_role role) {
    return role == QFT_SITE_INPUT || role == QFT_SITE_OUTPUT || role == QFT_SITE_PROBS;
}

// The grid a site is analyzed with: the first quant.rules entry matching it if that one is enabled,
// else 8-bit asymmetric on an unsigned grid (torch's default activation observer, quint8). The
// decomposition is defined for uniform per-tensor quantizers only (docs/analyze.md §2), so a rule's
// granularity, learnability and log kind are dropped; a log kind keeps its bits on the default grid.
static qft_quant_format site_grid(const qft_quant_rule_list *rules, const char *name, int *rule_bits) {
    qft_quant_format f = qft_quant_format_default();
    f.is_signed = 0;
    f.symmetric = 0;
    *rule_bits = 0;
    for (int r = 0; r < rules->count; r++) {
        if (fnmatch(rules->items[r].pattern, name, 0) != 0) continue;
        const qft_quant_format *u = &rules->items[r].format;
        if (u->enabled) {
            *rule_bits = u->bits;
            if (u->kind == QFT_QUANT_UNIFORM) {
                f.is_signed = u->is_signed;
                f.symmetric = u->symmetric;
                f.narrow = u->narrow;
            }
        }
        break;
    }
    f.enabled = 1;
    return f;
}

static void add_bits(site_acc *a, int bits) {
    for (int i = 0; i < a->bit_count; i++)
        if (a->bits[i] == bits) return;
    a->bits[a->bit_count++] = bits;
}

static void sums_add(error_sums *s, const qft_analyze_error *e) {
    double n = (double)e->n;
    if (s->n == 0) {
        s->lo = e->lo, s->hi = e->hi, s->lo0 = e->lo0, s->hi0 = e->hi0;
    } else {
        s->lo = fminf(s->lo, e->lo), s->hi = fmaxf(s->hi, e->hi);
        s->lo0 = fminf(s->lo0, e->lo0), s->hi0 = fmaxf(s->hi0, e->hi0);
    }
    s->e_tot += n * e->e_tot;
    s->e_clip += n * e->e_clip;
    s->e_round_out += n * e->e_round_out;
    s->e_round_in0 += n * e->e_round_in0;
    s->e_amp += n * e->e_amp;
    s->e_amp_uniform += n * e->e_amp_uniform;
    s->n += e->n;
    s->outliers += e->outliers;
    s->clipped += e->clipped;
    s->outliers_clipped += e->outliers_clipped;
    s->inliers_unclipped += e->inliers_unclipped;
}

// Packs the values of one observed tensor that belong to real tokens into ctx->scratch: text token
// rows whose attention mask is 1 (*seq_rows gets each sequence's count), and for attention
// probabilities the (query, key) pairs where both are real tokens, flattened to one channel.
// Returns the number of rows packed (of *cols values each).
static size_t pack_valid(analyze_ctx *ctx, const site_acc *a, const float *x, int rows, int C, int *seq_rows,
                         int *cols) {
    const qft_batch *b = ctx->batch;
    const float *mask = b->attention_mask;
    int B = b->batch_size, T = b->seq_len;
    size_t at = 0;
    *cols = C;
    if (a->site->role == QFT_SITE_PROBS) {
        *cols = 1;
        int queries = rows / (B * ctx->NH);
        for (int r = 0; r < rows; r++) {
            int seq = r / (ctx->NH * queries), q = r % queries;
            if (mask && mask[(size_t)seq * T + q] == 0.0f) continue;
            const float *row = x + (size_t)r * C;
            for (int k = 0; k < C; k++)
                if (!mask || mask[(size_t)seq * T + k] != 0.0f) ctx->scratch[at++] = row[k];
        }
        return at;
    }
    if (!mask || rows != B * T) {
        memcpy(ctx->scratch, x, (size_t)rows * C * sizeof(float));
        return (size_t)rows;
    }
    for (int s = 0; s < B; s++) {
        seq_rows[s] = 0;
        for (int t = 0; t < T; t++) {
            if (mask[(size_t)s * T + t] == 0.0f) continue;
            memcpy(ctx->scratch + at * C, x + ((size_t)s * T + t) * C, (size_t)C * sizeof(float));
            at++;
            seq_rows[s]++;
        }
    }
    return at;
}

// The range a site's calibrator gives on one tensor (qft_analyze_range_fn): the decomposition then
// measures the quantizer that calibrator would set. ctx is the site's format (its calibrator field);
// minmax when the calibrator cannot run (it cannot fail on the finite values it gets here).
static void calibrator_range(const float *x, size_t n, void *ctx, float *lo, float *hi) {
    const qft_quant_format *f = ctx;
    qft_error err;
    if (f->calibrator == QFT_CALIB_MINMAX || qft_calib_range(f->calibrator, f, x, n, lo, hi, &err) != QFT_OK)
        qft_analyze_range_minmax(x, n, NULL, lo, hi);
}

// The site observer (QFT_QUANT_OBSERVE): statistics, then the decomposition of this batch's tensor at
// every bit width of the site and, for a linear's input, the error at the linear's output.
static void observe(void *vctx, qft_quant_state *state, int site_index, const float *x, int rows, int C) {
    analyze_ctx *ctx = vctx;
    if (ctx->status != QFT_OK || ctx->acc_of[site_index] < 0) return;
    site_acc *a = &ctx->acc[ctx->acc_of[site_index]];
    int seq_rows[ctx->batch->batch_size > 0 ? ctx->batch->batch_size : 1], cols;
    seq_rows[0] = -1;  // stays -1 unless text token rows were packed sequence by sequence
    size_t n_rows = pack_valid(ctx, a, x, rows, C, seq_rows, &cols);
    const float *v = ctx->scratch;
    qft_error *err = &ctx->err;
    qft_status st = QFT_OK;
    if (n_rows == 0) return;
    if (seq_rows[0] >= 0) {
        // Text: one statistics update per sequence, so a top token reads example/position.
        size_t at = 0;
        for (int s = 0; s < ctx->batch->batch_size && st == QFT_OK; s++) {
            if (seq_rows[s] > 0) st = qft_analyze_stats_update(&a->stats, v + at * cols, (size_t)seq_rows[s], err);
            at += (size_t)seq_rows[s];
        }
    } else {
        st = qft_analyze_stats_update(&a->stats, v, n_rows, err);
    }
    for (int i = 0; i < a->bit_count && st == QFT_OK; i++) {
        qft_quant_format f = a->grid;
        f.bits = a->bits[i];
        qft_analyze_error e;
        st = qft_analyze_error_decompose(v, n_rows * cols, &f, calibrator_range, &f, QFT_ANALYZE_DEFAULT_K,
                                         a->site->name, &e, err);
        if (st != QFT_OK) break;
        sums_add(&a->sums[i], &e);
        if (a->weight) {
            qft_analyze_output_error o;
            st = qft_analyze_error_linear_output(v, n_rows, (size_t)C, a->weight, (size_t)a->out_features, &e,
                                                 a->site->name, &o, err);
            if (st != QFT_OK) break;
            double count = (double)n_rows * a->out_features;
            a->sums[i].out_e += o.e_out * count;
            a->sums[i].out_e_inlier += o.e_out_inlier_step * count;
            a->sums[i].out_count += count;
        }
    }
    ctx->status = st;
}

// One site's decomposition over all batches as the report's record. The parts are the
// element-weighted means of the per-batch parts; mean and std are those of every value; lo/hi (lo0/hi0)
// are the union of the per-batch ranges, and scale/scale0 the quantizer that union gives (what a
// minmax calibration over the same batches sets).
static void finish_error(const site_acc *a, int i, const qft_analyze_summary *sum, qft_analyze_error *e,
                         qft_analyze_output_error *o) {
    const error_sums *s = &a->sums[i];
    qft_quant_format f = a->grid;
    f.bits = a->bits[i];
    memset(e, 0, sizeof *e);
    e->bits = f.bits;
    e->qmin = qft_quant_qmin(&f);
    e->qmax = qft_quant_qmax(&f);
    e->k = QFT_ANALYZE_DEFAULT_K;
    e->n = (size_t)s->n;
    e->outliers = (size_t)s->outliers;
    e->clipped = (size_t)s->clipped;
    e->outliers_clipped = (size_t)s->outliers_clipped;
    e->inliers_unclipped = (size_t)s->inliers_unclipped;
    e->mean = sum->mean;
    e->std = sum->std;
    e->lo = s->lo, e->hi = s->hi, e->lo0 = s->lo0, e->hi0 = s->hi0;
    qft_quant_params_from_range(&f, s->lo, s->hi, &e->scale, &e->zero_point);
    qft_quant_params_from_range(&f, s->lo0, s->hi0, &e->scale0, &e->zero_point0);
    double n = s->n ? (double)s->n : 1.0;
    e->e_tot = s->e_tot / n;
    e->e_clip = s->e_clip / n;
    e->e_round_out = s->e_round_out / n;
    e->e_round_in0 = s->e_round_in0 / n;
    e->e_amp = s->e_amp / n;
    e->e_amp_uniform = s->e_amp_uniform / n;
    if (s->e_tot > 0.0) {
        e->share_clip = s->e_clip / s->e_tot;
        e->share_round_out = s->e_round_out / s->e_tot;
        e->share_round_in0 = s->e_round_in0 / s->e_tot;
        e->share_amp = s->e_amp / s->e_tot;
    }
    if (o) {
        double count = s->out_count > 0.0 ? s->out_count : 1.0;
        o->e_out = s->out_e / count;
        o->e_out_inlier_step = s->out_e_inlier / count;
        o->e_out_amp = o->e_out - o->e_out_inlier_step;
        o->share_amp = s->out_e > 0.0 ? (s->out_e - s->out_e_inlier) / s->out_e : 0.0;
    }
}

static int compare_double(const void *pa, const void *pb) {
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

// The overall figures of one bit width (see qft_analyze_cmd_bits).
static void summarize_bits(const analyze_ctx *ctx, int bits, const qft_analyze_error *const *errors,
                           qft_analyze_cmd_bits *out, double *shares) {
    double tot = 0, clip = 0, round_out = 0, round_in0 = 0, amp = 0, top = -INFINITY;
    double role_tot[4] = {0}, role_amp[4] = {0};  // by qft_site_role (the weight slot stays unused)
    memset(out, 0, sizeof *out);
    out->bits = bits;
    for (int s = 0; s < ctx->count; s++) {
        const site_acc *a = &ctx->acc[s];
        for (int i = 0; i < a->bit_count; i++) {
            if (a->bits[i] != bits) continue;
            const error_sums *e = &a->sums[i];
            tot += e->e_tot, clip += e->e_clip, round_out += e->e_round_out, round_in0 += e->e_round_in0;
            amp += e->e_amp;
            role_tot[a->site->role] += e->e_tot;
            role_amp[a->site->role] += e->e_amp;
            shares[out->sites++] = errors[s][i].share_amp;
            if (e->e_amp > top) {
                top = e->e_amp;
                snprintf(out->top_site, sizeof out->top_site, "%s", a->site->name);
                out->top_site_share_amp = errors[s][i].share_amp;
            }
        }
    }
    if (tot > 0.0) {
        out->share_clip = clip / tot;
        out->share_round_out = round_out / tot;
        out->share_round_in0 = round_in0 / tot;
        out->share_amp = amp / tot;
    }
    double *role_share[] = {NULL, &out->share_amp_input, &out->share_amp_output, &out->share_amp_probs};
    for (int r = QFT_SITE_INPUT; r <= QFT_SITE_PROBS; r++)
        *role_share[r] = role_tot[r] > 0.0 ? role_amp[r] / role_tot[r] : NAN;
    qsort(shares, (size_t)out->sites, sizeof *shares, compare_double);
    int m = out->sites;
    out->median_share_amp = m == 0 ? NAN : m % 2 ? shares[m / 2] : 0.5 * (shares[m / 2 - 1] + shares[m / 2]);
}

// The "Overall" section appended to report.md: the figures of the JSON line, with their definitions.
static qft_status append_overall(const char *path, const qft_analyze_cmd_summary *sum, qft_error *err) {
    FILE *f = fopen(path, "a");
    if (!f) return qft_fail(err, QFT_ERR_IO, "%s: cannot append: %s", path, strerror(errno));
    fprintf(f, "\n## Overall (qft analyze)\n\nWeights: `%s`; %ld batches, %ld examples of the training split; %d "
               "activation sites, %llu values. Each batch's tensor is decomposed with its own minmax range and "
               "the parts are summed over batches weighted by their element counts; scale and scale0 above are "
               "those of the union of the batch ranges. Overall share = a part's squared error summed over every "
               "value of every site / the summed total squared error. Text: padding tokens are left out.\n\n"
               "| bits | sites | clip | round out | round in0 | amp | amp: linear inputs | amp: LN/residual/embedding "
               "outputs | amp: attention probs | median site amp | top amp site (its share) |\n"
               "|---|---|---|---|---|---|---|---|---|---|---|\n",
            sum->weights, sum->batches, sum->examples, sum->sites, (unsigned long long)sum->values);
    for (int i = 0; i < sum->bit_count; i++) {
        const qft_analyze_cmd_bits *b = &sum->bits[i];
        fprintf(f, "| %d | %d |", b->bits, b->sites);
        const double shares[] = {b->share_clip, b->share_round_out, b->share_round_in0, b->share_amp,
                                 b->share_amp_input, b->share_amp_output, b->share_amp_probs, b->median_share_amp};
        for (size_t k = 0; k < sizeof shares / sizeof shares[0]; k++) {
            if (isfinite(shares[k])) fprintf(f, " %.1f%% |", 100.0 * shares[k]);
            else fprintf(f, " n/a |");
        }
        fprintf(f, " %s (%.1f%%) |\n", b->top_site, 100.0 * b->top_site_share_amp);
    }
    int failed = ferror(f);
    failed |= fclose(f) != 0;
    return failed ? qft_fail(err, QFT_ERR_IO, "%s: write failed", path) : QFT_OK;
}

// Sets up one accumulator per activation site and the analysis rules that enable exactly those.
static qft_status setup_sites(analyze_ctx *ctx, qft_model *m, const qft_quant_rule_list *user_rules, qft_error *err) {
    // Enabling the activation sites (any valid per-tensor format: OBSERVE mode does not quantize)
    // makes the model show them to the observer whatever quant.rules enables.
    qft_quant_rule_list rules = {0};
    const char *patterns[] = {"*.input", "*.output", "*.probs"};
    for (int i = 0; i < 3; i++) {
        rules.items[i] = qft_quant_rule_default();
        snprintf(rules.items[i].pattern, sizeof rules.items[i].pattern, "%s", patterns[i]);
    }
    rules.count = 3;
    qft_status st = qft_model_quant_configure(m, &rules, err);
    if (st != QFT_OK) return st;
    qft_quant_state *q = &m->quant;
    ctx->acc_of = malloc((size_t)q->count * sizeof *ctx->acc_of);
    ctx->acc = calloc((size_t)q->count, sizeof *ctx->acc);
    if (!ctx->acc_of || !ctx->acc) return qft_fail(err, QFT_ERR_OOM, "out of memory for %d site accumulators", q->count);
    size_t scratch = 0;
    const int widths[] = QFT_ANALYZE_CMD_BITS;
    for (int i = 0; i < q->count; i++) {
        const qft_quant_site *site = &q->sites[i];
        ctx->acc_of[i] = -1;
        if (!is_activation(site->role)) continue;
        if (!site->fmt.enabled)
            return qft_fail(err, QFT_ERR_INTERNAL, "activation site %s is not observed", site->name);
        site_acc *a = &ctx->acc[ctx->count];
        a->site = site;
        int rule_bits;
        a->grid = site_grid(user_rules, site->name, &rule_bits);
        for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) add_bits(a, widths[w]);
        if (rule_bits) add_bits(a, rule_bits);
        int probs = site->role == QFT_SITE_PROBS, per_example = site->rows / m->max_B;
        // Token positions: vision rows are [B, T] blocks; text updates per sequence (row = position);
        // probabilities are one channel of values.
        size_t seq_len = probs || m->kind == QFT_MODEL_BERT || per_example <= 1 ? 0 : (size_t)per_example;
        st = qft_analyze_stats_init(&a->stats, probs ? 1 : (size_t)site->C, seq_len, probs ? 0 : TOP_TOKENS, err);
        if (st != QFT_OK) return st;
        ctx->acc_of[i] = ctx->count++;
        if (site->role == QFT_SITE_INPUT) {
            char weight_name[sizeof site->name];
            snprintf(weight_name, sizeof weight_name, "%.*s.weight", (int)(strlen(site->name) - strlen(".input")),
                     site->name);
            int w = qft_quant_find(q, weight_name);
            if (w >= 0) {
                a->weight = q->sites[w].weight;
                a->out_features = q->sites[w].rows;
            }
        }
        size_t n = (size_t)site->rows * site->C;
        if (n > scratch) scratch = n;
    }
    ctx->scratch = malloc(scratch * sizeof(float));
    if (!ctx->scratch) return qft_fail(err, QFT_ERR_OOM, "out of memory for a %zu-value analysis buffer", scratch);
    ctx->NH = m->NH;
    return QFT_OK;
}

// The report records and the summary, from the accumulated sums; writes the report.
static qft_status write_report(analyze_ctx *ctx, const qft_config *cfg, const char *run_dir,
                               qft_analyze_cmd_summary *out, qft_error *err) {
    int n = ctx->count;
    qft_analyze_site *records = calloc((size_t)n, sizeof *records);
    qft_analyze_error *errors = calloc((size_t)n * QFT_ANALYZE_CMD_MAX_BITS, sizeof *errors);
    qft_analyze_output_error *outputs = calloc((size_t)n * QFT_ANALYZE_CMD_MAX_BITS, sizeof *outputs);
    const qft_analyze_error **by_site = calloc((size_t)n, sizeof *by_site);
    double *shares = malloc((size_t)n * sizeof *shares);
    qft_status st = QFT_OK;
    if (!records || !errors || !outputs || !by_site || !shares) {
        st = qft_fail(err, QFT_ERR_OOM, "out of memory for the report of %d sites", n);
        goto done;
    }
    int widths[QFT_ANALYZE_CMD_MAX_BITS], width_count = 0;
    for (int s = 0; s < n && st == QFT_OK; s++) {
        site_acc *a = &ctx->acc[s];
        qft_analyze_summary sum;
        st = qft_analyze_stats_summary(&a->stats, a->site->name, &sum, err);
        if (st != QFT_OK) break;
        out->values += sum.count;
        qft_analyze_error *e = errors + (size_t)s * QFT_ANALYZE_CMD_MAX_BITS;
        qft_analyze_output_error *o = outputs + (size_t)s * QFT_ANALYZE_CMD_MAX_BITS;
        for (int i = 0; i < a->bit_count; i++) {
            finish_error(a, i, &sum, &e[i], a->weight ? &o[i] : NULL);
            int seen = 0;
            for (int k = 0; k < width_count; k++) seen |= widths[k] == a->bits[i];
            if (!seen) {
                int k = width_count++;
                for (; k > 0 && widths[k - 1] < a->bits[i]; k--) widths[k] = widths[k - 1];
                widths[k] = a->bits[i];
            }
        }
        records[s] = (qft_analyze_site){a->site->name, &a->stats, e, a->weight ? o : NULL, (size_t)a->bit_count};
        by_site[s] = e;
    }
    if (st != QFT_OK) goto done;
    out->bit_count = width_count;
    for (int k = 0; k < width_count; k++) summarize_bits(ctx, widths[k], by_site, &out->bits[k], shares);

    // The histogram shows the site that contributes the most range-amplification error at 8 bits,
    // with its 8-bit grid: the site behind the headline number.
    qft_analyze_report_options options = qft_analyze_report_options_default();
    for (int s = 0; s < n; s++)
        if (strcmp(ctx->acc[s].site->name, out->bits[0].top_site) == 0) {
            options.histogram_site = (size_t)s;
            for (int i = 0; i < ctx->acc[s].bit_count; i++)
                if (ctx->acc[s].bits[i] == out->bits[0].bits) options.histogram_error = (size_t)i;
        }
    options.top_channels = TOP_CHANNELS;
    char title[700];
    snprintf(title, sizeof title, "qft analyze: %s", cfg->run.name);
    options.title = title;
    st = qft_analyze_report_write(run_dir, records, (size_t)n, &options, &out->plotted, err);
    snprintf(out->report, sizeof out->report, "%s/report.md", run_dir);
    if (st == QFT_OK) st = append_overall(out->report, out, err);
done:
    free(records);
    free(errors);
    free(outputs);
    free(by_site);
    free(shares);
    return st;
}

static void ctx_free(analyze_ctx *ctx) {
    for (int s = 0; s < ctx->count; s++) qft_analyze_stats_free(&ctx->acc[s].stats);
    free(ctx->acc);
    free(ctx->acc_of);
    free(ctx->scratch);
}

// Runs `batches` batches of the training split in order through the observing model.
static qft_status run_batches(qft_model *model, qft_dataset *ds, qft_batch_buffer *buf, analyze_ctx *ctx,
                              long batches, qft_analyze_cmd_summary *out, qft_error *err) {
    int B = buf->capacity, indices[B];
    for (long k = 0; k < batches; k++) {
        int n = B;
        qft_status st = QFT_OK;
        if (ds->kind == QFT_DATASET_IMAGEFOLDER) {
            st = qft_dataset_loader_fill(ds, 0, (int)k, buf, &n, err);
        } else {
            n = ds->count - (int)k * B < B ? ds->count - (int)k * B : B;
            for (int i = 0; i < n; i++) indices[i] = (int)k * B + i;
            qft_dataset_fill(ds, indices, n, buf);
        }
        if (st == QFT_OK) st = qft_model_set_batch(model, &buf->batch, err);
        if (st != QFT_OK) return st;
        qft_model_forward(model, 0, 0, 0);
        if (ctx->status != QFT_OK) {
            *err = ctx->err;
            return ctx->status;
        }
        out->batches++;
        out->examples += n;
        fprintf(stderr, "analyze: batch %ld/%ld\n", k + 1, batches);
    }
    return QFT_OK;
}

#define TRY(expr)                         \
    do {                                  \
        status = (expr);                  \
        if (status != QFT_OK) goto done;  \
    } while (0)

qft_status qft_analyze_run(const qft_config *cfg, qft_analyze_cmd_summary *out, qft_error *err) {
    memset(out, 0, sizeof *out);
    qft_apply_threads(cfg);
    qft_model model;
    qft_dataset ds;
    qft_batch_buffer buf;
    analyze_ctx ctx;
    memset(&model, 0, sizeof model);
    memset(&ds, 0, sizeof ds);
    memset(&buf, 0, sizeof buf);
    memset(&ctx, 0, sizeof ctx);
    qft_status status = QFT_OK;
    char run_dir[1100];
    qft_run_dir(cfg, run_dir, sizeof run_dir);
    TRY(qft_model_weights_path(cfg, out->weights, sizeof out->weights, err));
    // Weights from model.init_from are a pretrained model: a missing classifier head is initialized.
    int pretrained = strcmp(out->weights, cfg->model.init_from) == 0;
    int B = cfg->data.batch_size;
    TRY(qft_dataset_open(&ds, cfg, QFT_SPLIT_TRAIN, err));
    // quant.calib_batches are training images seen as at evaluation (resize + center crop), in folder
    // order, short last batch kept: the loader is created on the first batch from this config.
    ds.loader_cfg.train = 0;
    ds.loader_cfg.shuffle = 0;
    ds.loader_cfg.drop_last = 0;
    TRY(qft_model_create(&model, &cfg->model, B, cfg->data.max_seq_len, qft_backend_cpu(), (uint64_t)cfg->run.seed,
                         err));
    if (pretrained)
        TRY(qft_model_import_pretrained(&model, out->weights, cfg->model.ignore_mismatched_sizes, stderr, NULL, err));
    else
        TRY(qft_model_import(&model, out->weights, NULL, NULL, err));
    // Every token of the last ViT layer is a value a quantized model sees; pruning would hide them.
    model.prune_last_layer = 0;
    TRY(setup_sites(&ctx, &model, &cfg->quant.rules, err));
    TRY(qft_batch_buffer_init(&buf, &ds, B, err));
    model.quant.mode = QFT_QUANT_OBSERVE;
    model.quant.observe = observe;
    model.quant.observe_ctx = &ctx;
    ctx.batch = &buf.batch;

    long available = (ds.count + B - 1) / B;
    long batches = cfg->quant.calib_batches < available ? cfg->quant.calib_batches : available;
    if (batches < 1) {
        status = qft_fail(err, QFT_ERR_INVALID, "data.batch_size %d: the training split (%d examples) gives no batch",
                          B, ds.count);
        goto done;
    }
    TRY(run_batches(&model, &ds, &buf, &ctx, batches, out, err));
    out->sites = ctx.count;
    TRY(qft_make_dirs(run_dir, err));
    TRY(write_report(&ctx, cfg, run_dir, out, err));
done:
    ctx_free(&ctx);
    qft_batch_buffer_free(&buf);
    qft_dataset_free(&ds);
    qft_model_free(&model);
    return status;
}
