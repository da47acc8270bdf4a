// `qft quant-sites` and `qft calibrate`: build the configured model, apply the quant rules, then list
// the sites or run calibration batches through it and write the calibration state.
#include "quant_tools.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../backend/backend.h"
#include "../data/dataset.h"
#include "../model/model.h"
#include "../quant/calib.h"
#include "../quant/quant_io.h"
#include "checkpoint.h"
#include "run_files.h"

static const char *role_text(qft_site_role role) {
    static const char *const names[] = {"weight", "input", "output", "probs"};
    return names[role];
}

qft_status qft_quant_sites(const qft_config *cfg, FILE *out, qft_quant_sites_summary *summary, qft_error *err) {
    qft_model model;
    qft_status status = qft_model_create(&model, &cfg->model, 1, cfg->data.max_seq_len, qft_backend_cpu(),
                                         (uint64_t)cfg->run.seed, err);
    if (status) return status;
    status = qft_model_quant_configure(&model, &cfg->quant.rules, err);
    if (status == QFT_OK) {
        const qft_quant_state *q = &model.quant;
        fprintf(out, "%-32s %-7s %-11s %-5s %s\n", "site", "role", "shape", "rule", "format");
        for (int i = 0; i < q->count; i++) {
            const qft_quant_site *site = &q->sites[i];
            char shape[32], rule[16], format[160];
            if (site->role == QFT_SITE_WEIGHT) snprintf(shape, sizeof shape, "%dx%d", site->rows, site->C);
            else snprintf(shape, sizeof shape, "[*,%d]", site->C);
            if (site->rule >= 0) snprintf(rule, sizeof rule, "%d", site->rule + 1);
            else snprintf(rule, sizeof rule, "-");
            qft_quant_format_describe(&site->fmt, format, sizeof format);
            fprintf(out, "%-32s %-7s %-11s %-5s %s\n", site->name, role_text(site->role), shape, rule, format);
        }
        summary->sites = q->count;
        summary->enabled = q->enabled_count;
    }
    qft_model_free(&model);
    return status;
}

// ---------------------------------------------------------------------------------------------
// Calibration

typedef struct {
    qft_calibrator **calibrators;  // per site; NULL for disabled sites
    qft_status status;             // the first observer error (observers cannot return one)
    qft_error err;
} calibration;

// How a site's tensor splits into the calibrator's channels (see calib.h's layout notes).
static void calibration_shape(const qft_quant_site *site, int rows, int C, size_t *r, size_t *cols,
                              qft_calib_axis *axis) {
    *r = (size_t)rows;
    *cols = (size_t)C;
    *axis = QFT_CALIB_AXIS_COLUMN;
    switch (site->layout.axis) {
    case QFT_FQ_PER_TENSOR:
    case QFT_FQ_PER_ROW: *axis = QFT_CALIB_AXIS_ROW; break;
    case QFT_FQ_PER_ROW_GROUP:
        *r = (size_t)rows * C / site->layout.group_size;
        *cols = (size_t)site->layout.group_size;
        *axis = QFT_CALIB_AXIS_ROW;
        break;
    case QFT_FQ_PER_COLUMN:
    case QFT_FQ_COLUMN_MAP: break;  // PEG calibrates every channel, groups are formed afterwards
    }
}

static void calibration_observe(void *ctx, qft_quant_state *st, int index, const float *x, int rows, int C) {
    calibration *cal = ctx;
    const qft_quant_site *site = &st->sites[index];
    qft_calibrator *c = cal->calibrators[index];
    if (cal->status || !c) return;
    // Weights do not change between batches: one observation is the whole story.
    if (site->role == QFT_SITE_WEIGHT && qft_calibrator_batches(c) > 0) return;
    size_t r, cols;
    qft_calib_axis axis;
    calibration_shape(site, rows, C, &r, &cols, &axis);
    // The CPU backend's memory is host memory; a device backend would copy x to the host here.
    cal->status = qft_calibrator_observe(c, x, r, cols, axis, &cal->err);
}

// Calibrator channels of a site: its quantizer groups, or every channel for PEG (grouped later).
static int calibration_channels(const qft_quant_site *site) {
    return site->fmt.granularity == QFT_GRAN_PEG ? site->C : site->n_params;
}

// PEG (Bondarenko et al. 2021, §4): sort channels by their calibrated range, split the sorted list
// into K groups of (almost) equal size so outlier channels share a group, and give each group the
// union of its channels' ranges.
static void peg_groups(const qft_quant_format *fmt, int C, int K, const float *lo, const float *hi, int32_t *group,
                       float *scale, float *zero_point) {
    int order[C];
    for (int c = 0; c < C; c++) order[c] = c;
    for (int i = 1; i < C; i++) {  // insertion sort by range (C is at most a few thousand)
        int c = order[i], j = i;
        float range = hi[c] - lo[c];
        while (j > 0 && hi[order[j - 1]] - lo[order[j - 1]] > range) order[j] = order[j - 1], j--;
        order[j] = c;
    }
    for (int k = 0; k < K; k++) {
        int first = (int)((int64_t)k * C / K), last = (int)((int64_t)(k + 1) * C / K);
        float group_lo = INFINITY, group_hi = -INFINITY;
        for (int i = first; i < last; i++) {
            group[order[i]] = k;
            group_lo = fminf(group_lo, lo[order[i]]);
            group_hi = fmaxf(group_hi, hi[order[i]]);
        }
        qft_quant_params_from_range(fmt, group_lo, group_hi, &scale[k], &zero_point[k]);
    }
}

// Turns a finished calibrator into the site's quantizer parameters (backend memory).
static qft_status calibration_apply(const qft_backend *be, qft_quant_site *site, const qft_calibrator *c,
                                    qft_error *err) {
    int channels = calibration_channels(site), n = site->n_params;
    float *lo = malloc((size_t)channels * sizeof(float)), *hi = malloc((size_t)channels * sizeof(float));
    float *scale = malloc((size_t)channels * sizeof(float)), *zero = malloc((size_t)channels * sizeof(float));
    int32_t *group = malloc((size_t)site->C * sizeof(int32_t));
    qft_status status = lo && hi && scale && zero && group ? QFT_OK
                                                           : qft_fail(err, QFT_ERR_OOM, "out of memory calibrating %s",
                                                                      site->name);
    if (status == QFT_OK) status = qft_calibrator_finish(c, scale, zero, lo, hi, err);
    if (status == QFT_OK) {
        if (site->fmt.granularity == QFT_GRAN_PEG) {
            peg_groups(&site->fmt, site->C, n, lo, hi, group, scale, zero);
            be->copy_to_device(site->column_group, group, (size_t)site->C * sizeof(int32_t));
        } else if (site->fmt.kind != QFT_QUANT_UNIFORM) {
            // log2 / log-sqrt2: the scale is the top of the range (levels s * 2^(-q/2) below it).
            for (int k = 0; k < n; k++) scale[k] = hi[k] > 0.0f ? hi[k] : 1.0f, zero[k] = 0.0f;
        }
        be->copy_to_device(site->scale, scale, (size_t)n * sizeof(float));
        be->copy_to_device(site->zero_point, zero, (size_t)n * sizeof(float));
        site->calibrated = 1;
    }
    free(lo), free(hi), free(scale), free(zero), free(group);
    return status;
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Fills buf with calibration batch `index` (training split, in order). Returns the rows filled.
static int calibration_batch(qft_dataset *ds, int index, int batch_size, qft_batch_buffer *buf, qft_error *err) {
    int start = index * batch_size;
    if (start >= ds->count) return 0;
    int n = ds->count - start < batch_size ? ds->count - start : batch_size;
    if (ds->kind == QFT_DATASET_IMAGEFOLDER) {
        int got = 0;
        if (qft_dataset_loader_fill(ds, 0, index, buf, &got, err) != QFT_OK) return -1;
        return got;
    }
    int *indices = calloc((size_t)n, sizeof(int));
    if (!indices) return qft_fail(err, QFT_ERR_OOM, "out of memory filling a calibration batch"), -1;
    for (int i = 0; i < n; i++) indices[i] = start + i;
    qft_dataset_fill(ds, indices, n, buf);
    free(indices);
    return n;
}

qft_status qft_calibrate_model_batches(qft_model *model, qft_calib_batch_fn next, void *ctx, int max_batches,
                                       qft_calibrate_summary *out, qft_error *err) {
    qft_quant_state *q = &model->quant;
    if (q->enabled_count == 0)
        return qft_fail(err, QFT_ERR_INVALID, "quant.rules enable no site: nothing to calibrate (see qft quant-sites)");
    calibration cal;
    memset(&cal, 0, sizeof cal);
    cal.calibrators = calloc((size_t)q->count, sizeof *cal.calibrators);
    if (!cal.calibrators) return qft_fail(err, QFT_ERR_OOM, "out of memory creating calibrators");
    qft_status status = QFT_OK;
    for (int i = 0; i < q->count && status == QFT_OK; i++) {
        const qft_quant_site *site = &q->sites[i];
        if (!site->fmt.enabled) continue;
        qft_quant_format fmt = site->fmt;
        // PEG groups come from per-channel extremes (the paper's range-based permutation).
        if (fmt.granularity == QFT_GRAN_PEG) fmt.calibrator = QFT_CALIB_MINMAX;
        status = qft_calibrator_create(&fmt, calibration_channels(site), site->name, &cal.calibrators[i], err);
    }
    qft_quant_mode saved_mode = q->mode;
    q->observe = calibration_observe;
    q->observe_ctx = &cal;
    q->mode = QFT_QUANT_OBSERVE;
    int tty = isatty(2);
    for (int b = 0; b < max_batches && status == QFT_OK; b++) {
        qft_batch batch;
        memset(&batch, 0, sizeof batch);
        int n = 0;
        status = next(ctx, b, &batch, &n, err);
        if (status || n <= 0) break;
        status = qft_model_set_batch(model, &batch, err);
        if (status) break;
        qft_model_forward(model, 0, 0, 0);
        if (cal.status) {
            *err = cal.err;
            status = cal.status;
            break;
        }
        out->batches++;
        out->examples += n;
        if (tty) fprintf(stderr, "\rcalibrating: batch %d/%d", b + 1, max_batches);
    }
    if (tty) fprintf(stderr, "\n");
    q->mode = saved_mode;
    q->observe = NULL;
    q->observe_ctx = NULL;
    if (status == QFT_OK && out->batches == 0)
        status = qft_fail(err, QFT_ERR_INVALID, "no calibration batch: nothing to calibrate on");
    for (int i = 0; i < q->count && status == QFT_OK; i++) {
        if (!cal.calibrators[i]) continue;
        status = calibration_apply(model->be, &q->sites[i], cal.calibrators[i], err);
        out->sites += status == QFT_OK;
    }
    for (int i = 0; i < q->count; i++) qft_calibrator_free(cal.calibrators[i]);
    free(cal.calibrators);
    return status;
}

typedef struct {
    qft_dataset *ds;
    qft_batch_buffer *buf;
    int batch_size;
} dataset_batches;

static qft_status dataset_batch(void *ctx, int index, qft_batch *batch, int *rows, qft_error *err) {
    dataset_batches *d = ctx;
    int n = calibration_batch(d->ds, index, d->batch_size, d->buf, err);
    if (n < 0) return QFT_ERR_IO;  // the loader's error or out of memory, message in *err
    if (n > 0) *batch = d->buf->batch;
    *rows = n;
    return QFT_OK;
}

qft_status qft_calibrate_model(qft_model *model, qft_dataset *ds, qft_batch_buffer *buf, int batch_size,
                               int max_batches, qft_calibrate_summary *out, qft_error *err) {
    if (ds->count == 0)
        return qft_fail(err, QFT_ERR_INVALID, "the training split is empty: nothing to calibrate on");
    dataset_batches d = {ds, buf, batch_size};
    return qft_calibrate_model_batches(model, dataset_batch, &d, max_batches, out, err);
}

qft_status qft_calibration_save(const qft_model *model, const char *run_dir, const char *weights,
                                qft_calibrate_summary *out, qft_error *err) {
    qft_status status = qft_make_dirs(run_dir, err);
    if (status) return status;
    snprintf(out->path, sizeof out->path, "%s/calibration.safetensors", run_dir);
    char batches[32], examples[32];
    snprintf(batches, sizeof batches, "%d", out->batches);
    snprintf(examples, sizeof examples, "%ld", out->examples);
    const char *metadata[] = {"qft.calibration.weights", weights, "qft.calibration.batches", batches,
                              "qft.calibration.examples", examples, NULL};
    return qft_quant_io_save(&model->quant, out->path, metadata, err);
}

qft_status qft_calibrate(const qft_config *cfg, qft_calibrate_summary *out, qft_error *err) {
    memset(out, 0, sizeof *out);
    qft_apply_threads(cfg);
    double start = seconds_now();
    char weights[2200], run_dir[1100];
    qft_status status = qft_model_weights_path(cfg, weights, sizeof weights, err);
    if (status) return status;
    qft_run_dir(cfg, run_dir, sizeof run_dir);
    int B = cfg->data.batch_size;
    qft_model model;
    qft_dataset ds;
    qft_batch_buffer buf;
    memset(&model, 0, sizeof model);
    memset(&ds, 0, sizeof ds);
    memset(&buf, 0, sizeof buf);
    status = qft_model_create(&model, &cfg->model, B, cfg->data.max_seq_len, qft_backend_cpu(),
                              (uint64_t)cfg->run.seed, err);
    if (status == QFT_OK) status = qft_model_import(&model, weights, NULL, NULL, err);
    if (status == QFT_OK) status = qft_model_quant_configure(&model, &cfg->quant.rules, err);
    if (status == QFT_OK) status = qft_dataset_open(&ds, cfg, QFT_SPLIT_TRAIN, err);
    if (status == QFT_OK) status = qft_batch_buffer_init(&buf, &ds, B, err);
    if (status == QFT_OK) status = qft_calibrate_model(&model, &ds, &buf, B, cfg->quant.calib_batches, out, err);
    if (status == QFT_OK) status = qft_calibration_save(&model, run_dir, weights, out, err);
    out->seconds = seconds_now() - start;
    qft_batch_buffer_free(&buf);
    qft_dataset_free(&ds);
    qft_model_free(&model);
    return status;
}

void qft_calibration_path(const qft_config *cfg, char *path, size_t size) {
    char run_dir[1100];
    qft_run_dir(cfg, run_dir, sizeof run_dir);
    if (cfg->quant.calibration[0]) snprintf(path, size, "%s", cfg->quant.calibration);
    else snprintf(path, size, "%s/calibration.safetensors", run_dir);
}

qft_status qft_quant_prepare_eval(qft_model *m, const qft_config *cfg, const char *weights, int *quantized,
                                  qft_error *err) {
    *quantized = 0;
    qft_status status = qft_model_quant_configure(m, &cfg->quant.rules, err);
    if (status || m->quant.enabled_count == 0) return status;
    // A quantization-aware checkpoint carries its own (learned) quantizer state.
    qft_safetensors file;
    status = qft_safetensors_open(&file, weights, err);
    if (status) return status;
    int own = qft_quant_io_has_state(&m->quant, &file, QFT_CHECKPOINT_QUANT_PREFIX);
    if (own) status = qft_quant_io_load(&m->quant, &file, QFT_CHECKPOINT_QUANT_PREFIX, err);
    qft_safetensors_close(&file);
    if (status) return status;
    if (!own) {
        char path[2200];
        qft_calibration_path(cfg, path, sizeof path);
        if (access(path, F_OK) != 0)
            return qft_fail(err, QFT_ERR_IO, "%s: no calibration state for the quant.rules (run qft calibrate first, "
                            "or set quant.calibration)", path);
        status = qft_quant_io_load_path(&m->quant, path, "", err);
        if (status) return status;
    }
    m->quant.mode = QFT_QUANT_ON;
    *quantized = 1;
    return QFT_OK;
}
