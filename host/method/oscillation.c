// Oscillation tracking, dampening and freezing over a model's low-bit weight sites: per-weight
// state in backend memory, the schedules of Nagel et al. (2022), and checkpoint (de)serialization.
#include "oscillation.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    qft_quant_site *site;
    size_t n;
    int8_t *prev, *dir;   // last integer code (shifted into int8) and last non-zero move direction
    float *freq, *ema;    // oscillation frequency EMA and integer-code EMA
    uint8_t *frozen;
} tracked_site;

struct qft_oscillation {
    qft_oscillation_config cfg;
    const qft_backend *be;
    tracked_site *sites;
    int count;
    int initialized;
    double last_loss;
    qft_quant_state *model_sites;  // every site (the bin regularizer covers all enabled weight sites)
    // Host staging for checkpoints: 5 fields per site as F32.
    float *staging;
    char *names;
    int64_t *shapes;
};

enum { FIELDS = 5, NAME_CAP = 160 };
static const char *const field_names[FIELDS] = {"prev", "dir", "freq", "ema", "frozen"};

static double cosine_ramp(double from, double to, const qft_oscillation_config *cfg, long step, long total) {
    double begin = cfg->start * (double)total;
    if ((double)step < begin || total <= 0) return -1.0;
    double span = (double)total - begin;
    double t = span > 0 ? ((double)step - begin) / span : 1.0;
    if (t > 1.0) t = 1.0;
    return from + (to - from) * (1.0 - cos(M_PI * t)) / 2.0;
}

double qft_oscillation_lambda(const qft_oscillation_config *cfg, long step, long total_steps) {
    double v = cosine_ramp(0.0, cfg->dampen_lambda, cfg, step, total_steps);
    return v < 0.0 ? 0.0 : v;
}

double qft_oscillation_threshold(const qft_oscillation_config *cfg, long step, long total_steps) {
    if (cfg->freeze_threshold <= 0.0) return 0.0;
    double v = cosine_ramp(cfg->freeze_threshold_start, cfg->freeze_threshold, cfg, step, total_steps);
    return v < 0.0 ? 0.0 : v;
}

void qft_oscillation_free(qft_oscillation *osc) {
    if (!osc) return;
    for (int i = 0; i < osc->count; i++) {
        tracked_site *t = &osc->sites[i];
        void *buffers[] = {t->prev, t->dir, t->freq, t->ema, t->frozen};
        for (int k = 0; k < FIELDS; k++)
            if (buffers[k]) osc->be->release(buffers[k]);
    }
    free(osc->sites);
    free(osc->staging);
    free(osc->names);
    free(osc->shapes);
    free(osc);
}

qft_status qft_oscillation_create(qft_oscillation **out, qft_model *m, const qft_oscillation_config *cfg,
                                  qft_error *err) {
    *out = NULL;
    if (cfg->dampen_lambda <= 0.0 && cfg->freeze_threshold <= 0.0 && cfg->bin_reg_lambda <= 0.0) return QFT_OK;
    qft_oscillation *osc = calloc(1, sizeof *osc);
    if (!osc) return qft_fail(err, QFT_ERR_OOM, "oscillation: out of memory");
    osc->cfg = *cfg;
    osc->be = m->be;
    osc->sites = calloc((size_t)m->quant.count, sizeof *osc->sites);
    if (!osc->sites) {
        qft_oscillation_free(osc);
        return qft_fail(err, QFT_ERR_OOM, "oscillation: out of memory");
    }
    for (int i = 0; i < m->quant.count; i++) {
        qft_quant_site *s = &m->quant.sites[i];
        if (s->role != QFT_SITE_WEIGHT || !s->fmt.enabled || s->fmt.bits > cfg->max_bits) continue;
        tracked_site *t = &osc->sites[osc->count++];
        t->site = s;
        t->n = (size_t)s->rows * s->C;
        t->prev = m->be->alloc(t->n);
        t->dir = m->be->alloc(t->n);
        t->freq = m->be->alloc(t->n * sizeof(float));
        t->ema = m->be->alloc(t->n * sizeof(float));
        t->frozen = m->be->alloc(t->n);
        if (!t->prev || !t->dir || !t->freq || !t->ema || !t->frozen) {
            qft_oscillation_free(osc);
            return qft_fail(err, QFT_ERR_OOM, "oscillation: out of memory for the tracker of %s", s->name);
        }
    }
    if (osc->count == 0 && cfg->bin_reg_lambda <= 0.0) {
        qft_oscillation_free(osc);
        fprintf(stderr, "oscillation: no enabled weight site has <= %d bits: nothing to track\n", cfg->max_bits);
        return QFT_OK;
    }
    osc->model_sites = &m->quant;
    *out = osc;
    return QFT_OK;
}

// The dampening loss aggregates per weight tensor as Nagel et al.'s kernel_mean: summed over the
// output dimension, averaged over the rest, i.e. each element weighs 1 / C (C = input features).
double qft_oscillation_before_step(qft_oscillation *osc, qft_model *m, long step, long total_steps) {
    if (!osc) return 0.0;
    double lambda = qft_oscillation_lambda(&osc->cfg, step, total_steps), loss = 0.0;
    for (int i = 0; i < osc->count; i++) {
        tracked_site *t = &osc->sites[i];
        qft_quant_site *s = t->site;
        if (lambda > 0.0) {
            float coef = (float)(lambda / s->C);
            loss += lambda / s->C *
                    m->be->oscillation_dampen(s->grad, s->weight, s->scale, s->zero_point, s->rows, s->C, &s->layout,
                                              coef);
        }
        if (osc->cfg.freeze_threshold > 0.0) m->be->oscillation_mask_grad(s->grad, t->frozen, t->n);
    }
    double bin_lambda = cosine_ramp(0.0, osc->cfg.bin_reg_lambda, &osc->cfg, step, total_steps);
    for (int i = 0; bin_lambda > 0.0 && i < osc->model_sites->count; i++) {
        qft_quant_site *s = &osc->model_sites->sites[i];
        if (s->role != QFT_SITE_WEIGHT || !s->fmt.enabled) continue;
        if (s->layout.axis != QFT_FQ_PER_TENSOR && s->layout.axis != QFT_FQ_PER_ROW) continue;
        loss += bin_lambda * m->be->bin_regularizer(s->grad, s->weight, s->scale, s->zero_point, s->rows, s->C,
                                                    &s->layout, (float)bin_lambda);
    }
    osc->last_loss = loss;
    return loss;
}

void qft_oscillation_after_step(qft_oscillation *osc, qft_model *m, long step, long total_steps) {
    if (!osc) return;
    float threshold = (float)qft_oscillation_threshold(&osc->cfg, step, total_steps);
    for (int i = 0; i < osc->count; i++) {
        tracked_site *t = &osc->sites[i];
        qft_quant_site *s = t->site;
        m->be->oscillation_track(s->weight, s->scale, s->zero_point, s->rows, s->C, &s->layout, t->prev, t->dir,
                                 t->freq, t->ema, t->frozen, (float)osc->cfg.momentum, threshold, !osc->initialized);
    }
    osc->initialized = 1;
}

void qft_oscillation_stats_get(const qft_oscillation *osc, qft_oscillation_stats *out) {
    memset(out, 0, sizeof *out);
    if (!osc) return;
    out->dampen_loss = osc->last_loss;
    size_t active = 0, oscillating = 0;
    for (int i = 0; i < osc->count; i++) {
        const tracked_site *t = &osc->sites[i];
        uint8_t *frozen = malloc(t->n);
        float *freq = malloc(t->n * sizeof(float));
        if (!frozen || !freq) {
            free(frozen), free(freq);
            continue;
        }
        osc->be->copy_to_host(frozen, t->frozen, t->n);
        osc->be->copy_to_host(freq, t->freq, t->n * sizeof(float));
        for (size_t j = 0; j < t->n; j++) {
            out->frozen += frozen[j] != 0;
            if (!frozen[j]) active++, oscillating += freq[j] > osc->cfg.momentum;
        }
        out->tracked += t->n;
        free(frozen), free(freq);
    }
    out->oscillating = active ? (double)oscillating / (double)active : 0.0;
}

int qft_oscillation_tensor_count(const qft_oscillation *osc) { return osc ? FIELDS * osc->count + 1 : 0; }

// Field k of a site as floats in dst (bytes: the staging copy of the int8/uint8 state).
static void field_to_host(const qft_oscillation *osc, const tracked_site *t, int k, float *dst, uint8_t *bytes) {
    if (k == 2 || k == 3) {
        osc->be->copy_to_host(dst, k == 2 ? t->freq : t->ema, t->n * sizeof(float));
        return;
    }
    osc->be->copy_to_host(bytes, k == 0 ? (void *)t->prev : k == 1 ? (void *)t->dir : (void *)t->frozen, t->n);
    for (size_t j = 0; j < t->n; j++) dst[j] = k == 4 ? (float)bytes[j] : (float)((int8_t)bytes[j]);
}

int qft_oscillation_collect(qft_oscillation *osc, qft_write_tensor *tensors, int capacity) {
    if (!osc || capacity < qft_oscillation_tensor_count(osc)) return 0;
    size_t total = 0;
    for (int i = 0; i < osc->count; i++) total += FIELDS * osc->sites[i].n;
    free(osc->staging), free(osc->names), free(osc->shapes);
    osc->staging = malloc((total + 1) * sizeof(float));
    osc->names = malloc((size_t)qft_oscillation_tensor_count(osc) * NAME_CAP);
    osc->shapes = malloc((size_t)qft_oscillation_tensor_count(osc) * sizeof(int64_t));
    size_t largest = 1;
    for (int i = 0; i < osc->count; i++) largest = osc->sites[i].n > largest ? osc->sites[i].n : largest;
    uint8_t *bytes = malloc(largest);
    if (!osc->staging || !osc->names || !osc->shapes || !bytes) {
        free(bytes);
        return 0;
    }
    int e = 0;
    float *at = osc->staging;
    for (int i = 0; i < osc->count; i++) {
        tracked_site *t = &osc->sites[i];
        for (int k = 0; k < FIELDS; k++, e++) {
            char *name = osc->names + (size_t)e * NAME_CAP;
            snprintf(name, NAME_CAP, "qft.oscillation.%s.%s", t->site->name, field_names[k]);
            field_to_host(osc, t, k, at, bytes);
            osc->shapes[e] = (int64_t)t->n;
            tensors[e] = (qft_write_tensor){name, QFT_DTYPE_F32, 1, &osc->shapes[e], at, 1};
            at += t->n;
        }
    }
    // Whether tracking has recorded its first codes (a resume must not re-initialize).
    char *name = osc->names + (size_t)e * NAME_CAP;
    snprintf(name, NAME_CAP, "qft.oscillation.initialized");
    *at = (float)osc->initialized;
    osc->shapes[e] = 1;
    tensors[e] = (qft_write_tensor){name, QFT_DTYPE_F32, 1, &osc->shapes[e], at, 1};
    free(bytes);
    return e + 1;
}

qft_status qft_oscillation_load(qft_oscillation *osc, const qft_safetensors *file, qft_error *err) {
    if (!osc) return QFT_OK;
    const qft_tensor_info *flag = qft_safetensors_find(file, "qft.oscillation.initialized");
    if (!flag) return QFT_OK;  // a checkpoint written without oscillation control: start tracking afresh
    float value = 0.0f;
    qft_status st = flag->numel == 1 ? qft_safetensors_read_f32(file, flag, &value, err)
                                     : qft_fail(err, QFT_ERR_SHAPE, "%s: bad qft.oscillation.initialized", file->path);
    if (st) return st;
    osc->initialized = value != 0.0f;
    for (int i = 0; i < osc->count; i++) {
        tracked_site *t = &osc->sites[i];
        float *host = malloc(t->n * sizeof(float));
        uint8_t *bytes = malloc(t->n);
        if (!host || !bytes) {
            free(host), free(bytes);
            return qft_fail(err, QFT_ERR_OOM, "oscillation: out of memory loading %s", file->path);
        }
        for (int k = 0; k < FIELDS && st == QFT_OK; k++) {
            char name[NAME_CAP];
            snprintf(name, sizeof name, "qft.oscillation.%s.%s", t->site->name, field_names[k]);
            int64_t n = (int64_t)t->n;
            const qft_tensor_info *info;
            st = qft_safetensors_expect(file, name, 1, &n, &info, err);
            if (st == QFT_OK) st = qft_safetensors_read_f32(file, info, host, err);
            if (st != QFT_OK) break;
            if (k == 2 || k == 3) {
                osc->be->copy_to_device(k == 2 ? t->freq : t->ema, host, t->n * sizeof(float));
                continue;
            }
            for (size_t j = 0; j < t->n; j++) bytes[j] = k == 4 ? (uint8_t)(host[j] != 0.0f) : (uint8_t)(int8_t)host[j];
            osc->be->copy_to_device(k == 0 ? (void *)t->prev : k == 1 ? (void *)t->dir : (void *)t->frozen, bytes, t->n);
        }
        free(host), free(bytes);
        if (st) return st;
    }
    return QFT_OK;
}
