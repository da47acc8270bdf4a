// Checkpoint write (atomic, via the safetensors writer), load, and discovery of the newest one.
// Parameters keep their HF names; optimizer moments are two flat tensors over the parameter buffer.
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../io/safetensors.h"
#include "../quant/quant_io.h"

#define MOMENT1_NAME "optimizer.exp_avg"
#define MOMENT2_NAME "optimizer.exp_avg_sq"
#define QUANT_MOMENT1_NAME "optimizer.quant.exp_avg"
#define QUANT_MOMENT2_NAME "optimizer.quant.exp_avg_sq"
// Adaptive noise fine-tuning's per-site amplitudes (host/method/noise.c): state a resume needs.
#define NOISE_AMPLITUDE_NAME "qft.noise.amplitude"

static int parse_step_file(const char *name, long *step) {
    char tail[32];
    if (sscanf(name, "step_%ld.safetensor%31s", step, tail) == 2 && strcmp(tail, "s") == 0) return 1;
    return 0;
}

// Fills steps[] with the step numbers of the step files in dir (at most capacity); returns the count.
static int list_checkpoint_steps(const char *dir, long *steps, int capacity) {
    int count = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) && count < capacity) {
        long step;
        if (parse_step_file(e->d_name, &step)) steps[count++] = step;
    }
    closedir(d);
    return count;
}

enum { MAX_LISTED_CHECKPOINTS = 4096 };

// Deletes all but the newest `keep` step files.
static void prune_checkpoints(const char *dir, int keep) {
    long steps[MAX_LISTED_CHECKPOINTS];
    int count = list_checkpoint_steps(dir, steps, MAX_LISTED_CHECKPOINTS);
    for (int i = 0; i < count; i++) {
        int newer = 0;
        for (int j = 0; j < count; j++) newer += steps[j] > steps[i];
        if (newer >= keep) {
            char path[2048];
            snprintf(path, sizeof path, "%s/step_%08ld.safetensors", dir, steps[i]);
            remove(path);
        }
    }
}

qft_status qft_checkpoint_save(const char *run_dir, const qft_model *model, const qft_optimizer *opt,
                               unsigned long seed, int keep, const qft_write_tensor *extra, int extra_count,
                               char *written_path, size_t path_size, qft_error *err) {
    char dir[2048], path[2100];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return qft_fail(err, QFT_ERR_IO, "%s: cannot create checkpoint directory: %s", dir, strerror(errno));
    snprintf(path, sizeof path, "%s/step_%08ld.safetensors", dir, opt->step);

    size_t n = model->table.total_floats, bytes = n * sizeof(float);
    // Quantization-aware runs also carry the quantizer state and, when it learns, its moments.
    qft_quant_io_export quant = {0};
    if (model->quant.enabled_count > 0) {
        qft_status qst = qft_quant_io_collect(&model->quant, QFT_CHECKPOINT_QUANT_PREFIX, &quant, err);
        if (qst != QFT_OK) return qst;
    }
    size_t qn = opt->quant_floats;
    int sites = model->quant.enabled_count > 0 ? model->quant.count : 0;
    int count = model->table.count + 2 + quant.count + (qn ? 2 : 0) + (sites ? 1 : 0) + (extra ? extra_count : 0);
    float *host = malloc(3 * bytes + (2 * qn + (size_t)sites) * sizeof(float));
    qft_write_tensor *entries = calloc((size_t)count, sizeof *entries);
    int quant_meta = 0;
    while (quant.metadata && quant.metadata[quant_meta]) quant_meta++;
    const char **metadata = calloc((size_t)quant_meta + 9, sizeof *metadata);
    if (!host || !entries || !metadata) {
        free(host);
        free(entries);
        free(metadata);
        qft_quant_io_free(&quant);
        return qft_fail(err, QFT_ERR_OOM, "out of memory staging a checkpoint");
    }
    model->be->copy_to_host(host, model->params, bytes);
    model->be->copy_to_host(host + n, opt->m, bytes);
    model->be->copy_to_host(host + 2 * n, opt->v, bytes);
    for (int i = 0; i < model->table.count; i++) {
        const qft_param *p = &model->table.items[i];
        entries[i] = (qft_write_tensor){p->name, QFT_DTYPE_F32, p->ndim, p->shape, host + p->offset, 1};
    }
    int64_t flat_shape[1] = {(int64_t)n}, quant_shape[1] = {(int64_t)qn};
    int e = model->table.count;
    entries[e++] = (qft_write_tensor){MOMENT1_NAME, QFT_DTYPE_F32, 1, flat_shape, host + n, 1};
    entries[e++] = (qft_write_tensor){MOMENT2_NAME, QFT_DTYPE_F32, 1, flat_shape, host + 2 * n, 1};
    for (int i = 0; i < quant.count; i++) entries[e++] = quant.tensors[i];
    if (qn) {
        float *qm = host + 3 * n, *qv = qm + qn;
        model->be->copy_to_host(qm, opt->qm, qn * sizeof(float));
        model->be->copy_to_host(qv, opt->qv, qn * sizeof(float));
        entries[e++] = (qft_write_tensor){QUANT_MOMENT1_NAME, QFT_DTYPE_F32, 1, quant_shape, qm, 1};
        entries[e++] = (qft_write_tensor){QUANT_MOMENT2_NAME, QFT_DTYPE_F32, 1, quant_shape, qv, 1};
    }
    for (int i = 0; extra && i < extra_count; i++) entries[e++] = extra[i];
    int64_t sites_shape[1] = {sites};
    if (sites) {
        float *amplitude = host + 3 * n + 2 * qn;
        for (int i = 0; i < sites; i++) amplitude[i] = model->quant.sites[i].noise_amplitude;
        entries[e++] = (qft_write_tensor){NOISE_AMPLITUDE_NAME, QFT_DTYPE_F32, 1, sites_shape, amplitude, 1};
    }
    char step_text[32], seed_text[32], total_text[32];
    snprintf(step_text, sizeof step_text, "%ld", opt->step);
    snprintf(seed_text, sizeof seed_text, "%lu", seed);
    snprintf(total_text, sizeof total_text, "%ld", opt->total_steps);
    const char *base_metadata[] = {"format", "pt", "qft.step", step_text, "qft.seed", seed_text,
                                   "qft.total_steps", total_text};
    memcpy(metadata, base_metadata, sizeof base_metadata);
    if (quant_meta) memcpy(metadata + 8, quant.metadata, (size_t)quant_meta * sizeof *metadata);
    qft_status st = qft_safetensors_write(path, entries, count, metadata, err);
    free(host);
    free(entries);
    free(metadata);
    qft_quant_io_free(&quant);
    if (st != QFT_OK) return st;
    if (written_path) snprintf(written_path, path_size, "%s", path);
    if (keep > 0) prune_checkpoints(dir, keep);
    return QFT_OK;
}

static qft_status read_moment(const qft_safetensors *st, const char *path, const char *name, size_t n, float *host,
                              qft_error *err) {
    const qft_tensor_info *t = qft_safetensors_find(st, name);
    if (!t) return qft_fail(err, QFT_ERR_SHAPE, "%s: not a training checkpoint (no '%s')", path, name);
    if (t->numel != n)
        return qft_fail(err, QFT_ERR_SHAPE, "%s: '%s' has %zu values, the model has %zu parameters", path, name,
                        t->numel, n);
    return qft_safetensors_read_f32(st, t, host, err);
}

// The quantizer state of a quantization-aware checkpoint, if it has one (a checkpoint of an FP run
// has none: the sites then stay uncalibrated and training calibrates them).
static qft_status load_quant(const qft_safetensors *file, const char *path, qft_model *model, qft_optimizer *opt,
                             qft_error *err) {
    if (!qft_safetensors_find(file, QUANT_MOMENT1_NAME) && !qft_quant_io_has_state(&model->quant, file, QFT_CHECKPOINT_QUANT_PREFIX))
        return QFT_OK;
    qft_status st = qft_quant_io_load(&model->quant, file, QFT_CHECKPOINT_QUANT_PREFIX, err);
    const qft_tensor_info *amplitude = qft_safetensors_find(file, NOISE_AMPLITUDE_NAME);
    if (st == QFT_OK && amplitude) {
        int sites = model->quant.count;
        if (amplitude->numel != (size_t)sites)
            return qft_fail(err, QFT_ERR_SHAPE, "%s: '%s' has %zu values, the model has %d quant sites", path,
                            NOISE_AMPLITUDE_NAME, amplitude->numel, sites);
        float values[sites];
        st = qft_safetensors_read_f32(file, amplitude, values, err);
        for (int i = 0; st == QFT_OK && i < sites; i++) model->quant.sites[i].noise_amplitude = values[i];
    }
    size_t qn = opt->quant_floats;
    if (st != QFT_OK || !qn) return st;
    float *host = malloc(qn * sizeof(float));
    if (!host) return qft_fail(err, QFT_ERR_OOM, "out of memory loading %s", path);
    st = read_moment(file, path, QUANT_MOMENT1_NAME, qn, host, err);
    if (st == QFT_OK) model->be->copy_to_device(opt->qm, host, qn * sizeof(float));
    if (st == QFT_OK) st = read_moment(file, path, QUANT_MOMENT2_NAME, qn, host, err);
    if (st == QFT_OK) model->be->copy_to_device(opt->qv, host, qn * sizeof(float));
    free(host);
    return st;
}

qft_status qft_checkpoint_load(const char *path, qft_model *model, qft_optimizer *opt, long *saved_total_steps,
                               qft_error *err) {
    qft_status st = qft_model_import(model, path, NULL, NULL, err);
    if (st != QFT_OK || !opt) return st;
    qft_safetensors file;
    st = qft_safetensors_open(&file, path, err);
    if (st != QFT_OK) return st;
    size_t n = model->table.total_floats;
    float *host = malloc(n * sizeof(float));
    if (!host) {
        qft_safetensors_close(&file);
        return qft_fail(err, QFT_ERR_OOM, "out of memory loading %s", path);
    }
    st = read_moment(&file, path, MOMENT1_NAME, n, host, err);
    if (st == QFT_OK) model->be->copy_to_device(opt->m, host, n * sizeof(float));
    if (st == QFT_OK) st = read_moment(&file, path, MOMENT2_NAME, n, host, err);
    if (st == QFT_OK) model->be->copy_to_device(opt->v, host, n * sizeof(float));
    const char *step = qft_safetensors_metadata(&file, "qft.step");
    char *end = NULL;
    long parsed = step ? strtol(step, &end, 10) : -1;
    if (st == QFT_OK && (!step || *end != '\0' || parsed < 0))
        st = qft_fail(err, QFT_ERR_PARSE, "%s: missing or bad 'qft.step' metadata", path);
    if (st == QFT_OK) opt->step = parsed;
    if (st == QFT_OK && model->quant.enabled_count > 0) st = load_quant(&file, path, model, opt, err);
    const char *total = qft_safetensors_metadata(&file, "qft.total_steps");
    if (saved_total_steps) *saved_total_steps = total ? strtol(total, NULL, 10) : -1;
    free(host);
    qft_safetensors_close(&file);
    return st;
}

int qft_checkpoint_remove_all(const char *run_dir) {
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    long steps[MAX_LISTED_CHECKPOINTS];
    int count = list_checkpoint_steps(dir, steps, MAX_LISTED_CHECKPOINTS);
    int removed = 0;
    for (int i = 0; i < count; i++) {
        char path[2100];
        snprintf(path, sizeof path, "%s/step_%08ld.safetensors", dir, steps[i]);
        removed += remove(path) == 0;
    }
    return removed;
}

int qft_checkpoint_latest(const char *run_dir, char *path, size_t path_size) {
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    long steps[MAX_LISTED_CHECKPOINTS];
    int count = list_checkpoint_steps(dir, steps, MAX_LISTED_CHECKPOINTS);
    long best = -1;
    for (int i = 0; i < count; i++)
        if (steps[i] > best) best = steps[i];
    if (best < 0) return 0;
    snprintf(path, path_size, "%s/step_%08ld.safetensors", dir, best);
    return 1;
}
