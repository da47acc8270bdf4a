// Adaptive random-noise fine-tuning: which sites get noise, the per-site amplitude a_site (or, kind histogram,
// the residual's CDF) measured from the real quantizer's rounding residual, annealing, and the call of the
// backend's quant_noise_forward op.
#include "noise.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/rng.h"
#include "glob_list.h"

qft_status qft_noise_init(qft_noise *noise, const qft_noise_config *cfg, qft_quant_state *st, qft_error *err) {
    memset(noise, 0, sizeof *noise);
    noise->cfg = cfg;
    noise->factor = 1.0f;
    noise->anneal_to_quantizer = strcmp(cfg->anneal_to, "zero") != 0;
    noise->enabled = strcmp(cfg->kind, "off") != 0;
    for (int i = 0; i < st->count; i++) st->sites[i].noise_amplitude = (float)cfg->amplitude;
    if (!noise->enabled) return QFT_OK;
    noise->kind = strcmp(cfg->kind, "gaussian") == 0    ? QFT_NOISE_GAUSSIAN
                  : strcmp(cfg->kind, "bernoulli") == 0 ? QFT_NOISE_BERNOULLI
                  : strcmp(cfg->kind, "histogram") == 0 ? QFT_NOISE_HISTOGRAM
                                                        : QFT_NOISE_UNIFORM;
    if (cfg->amplitude_min > cfg->amplitude_max)
        return qft_fail(err, QFT_ERR_INVALID, "noise.amplitude_min %g is above noise.amplitude_max %g",
                        cfg->amplitude_min, cfg->amplitude_max);
    noise->count = st->count;
    noise->selected = calloc((size_t)st->count, sizeof *noise->selected);
    if (!noise->selected) return qft_fail(err, QFT_ERR_OOM, "out of memory for the noise sites");
    int selected = 0;
    for (int i = 0; i < st->count; i++) {
        const qft_quant_site *site = &st->sites[i];
        // PROBS sites too: the attention op draws their noise (noise_probs.c).
        noise->selected[i] = site->fmt.enabled && qft_glob_list_match(cfg->sites, site->name);
        selected += noise->selected[i];
    }
    if (!selected)
        return qft_fail(err, QFT_ERR_INVALID, "noise.kind %s: no enabled quant site matches noise.sites \"%s\" "
                        "(noise stands in for quantizers: set quant.rules)", cfg->kind, cfg->sites);
    if (noise->kind == QFT_NOISE_HISTOGRAM) {
        noise->cdf_shape[0] = st->count;
        noise->cdf_shape[1] = QFT_NOISE_BINS + 1;
        noise->cdf = malloc((size_t)st->count * (QFT_NOISE_BINS + 1) * sizeof *noise->cdf);
        if (!noise->cdf) return qft_fail(err, QFT_ERR_OOM, "out of memory for the noise histograms");
        for (int i = 0; i < st->count; i++)
            qft_noise_histogram_cdf(NULL, 0, QFT_NOISE_BINS, noise->cdf + (size_t)i * (QFT_NOISE_BINS + 1));
    }
    return QFT_OK;
}

void qft_noise_free(qft_noise *noise) {
    free(noise->selected);
    free(noise->cdf);
    memset(noise, 0, sizeof *noise);
}

void qft_noise_set_step(qft_noise *noise, long step, long total) {
    const qft_noise_config *cfg = noise->cfg;
    noise->adapt_now = cfg->adapt_every > 0 && step % cfg->adapt_every == 0;
    double start = (1.0 - cfg->anneal) * (double)total;
    double factor = cfg->anneal > 0.0 && (double)step >= start ? ((double)total - (double)step) / (cfg->anneal * (double)total) : 1.0;
    noise->factor = (float)fmin(fmax(factor, 0.0), 1.0);
}

uint64_t qft_noise_stream(uint64_t step, int site) { return (step << 16) | (uint64_t)(site & 0xFFFF); }

uint64_t qft_noise_key(uint64_t seed) { return seed ^ 0x4E6F697365ull; /* "Noise" */ }

float qft_noise_strength(const qft_noise *noise, int site) {
    if (!noise->anneal_to_quantizer) return noise->factor;
    if (noise->factor >= 1.0f) return 1.0f;
    // One uniform per (micro-step, site) from the counter no element block reaches (elements use i >> 2).
    float u = qft_uint_to_unit_float(qft_philox_block_at(qft_noise_key(noise->seed), qft_noise_stream(noise->step, site),
                                                         UINT64_MAX).v[0]);
    return u < noise->factor ? 1.0f : 0.0f;
}

void qft_noise_set_amplitude(const qft_noise *noise, qft_quant_site *site, double sum_sq, size_t inside) {
    if (!inside) return;
    double a = sqrt(12.0 * sum_sq / (double)inside);
    site->noise_amplitude = (float)fmin(fmax(a, noise->cfg->amplitude_min), noise->cfg->amplitude_max);
}

static void adapt_amplitude(const qft_noise *noise, qft_quant_state *st, qft_quant_site *site, const float *x,
                            int rows) {
    double sum_sq = 0.0;
    size_t inside = st->be->quant_residual(x, site->scale, site->zero_point, rows, site->C, &site->layout, &sum_sq);
    qft_noise_set_amplitude(noise, site, sum_sq, inside);
}

void qft_noise_histogram_cdf(const uint64_t *counts, size_t total, int bins, float *cdf) {
    uint64_t below = 0;
    cdf[0] = 0.0f;
    for (int j = 1; j < bins; j++) {
        below += total ? counts[j - 1] : 0;
        cdf[j] = total ? (float)((double)below / (double)total) : (float)j / (float)bins;
    }
    cdf[bins] = 1.0f;
}

// kind histogram: the site's CDF from the histogram of r = (Q(x) - x) / s over the unclipped elements (NIPQ's
// noise: the real rounding residual's distribution, so no amplitude); uniform when every element clips.
static void adapt_histogram(const qft_noise *noise, qft_quant_state *st, int index, const float *x, int rows) {
    const qft_quant_site *site = &st->sites[index];
    uint64_t counts[QFT_NOISE_BINS];
    size_t inside = st->be->quant_residual_histogram(x, site->scale, site->zero_point, rows, site->C, &site->layout,
                                                     QFT_NOISE_BINS, counts);
    qft_noise_histogram_cdf(counts, inside, QFT_NOISE_BINS, noise->cdf + (size_t)index * (QFT_NOISE_BINS + 1));
}

int qft_noise_tensor_count(const qft_noise *noise) { return noise->enabled && noise->cdf ? 1 : 0; }

int qft_noise_collect(qft_noise *noise, qft_write_tensor *tensors, int capacity) {
    if (capacity < qft_noise_tensor_count(noise) || !noise->cdf) return 0;
    tensors[0] = (qft_write_tensor){"qft.noise.histogram_cdf", QFT_DTYPE_F32, 2, noise->cdf_shape, noise->cdf, 1};
    return 1;
}

qft_status qft_noise_load(qft_noise *noise, const qft_safetensors *file, qft_error *err) {
    if (!noise->enabled || !noise->cdf || !qft_safetensors_find(file, "qft.noise.histogram_cdf")) return QFT_OK;
    const qft_tensor_info *info;
    qft_status status = qft_safetensors_expect(file, "qft.noise.histogram_cdf", 2, noise->cdf_shape, &info, err);
    return status == QFT_OK ? qft_safetensors_read_f32(file, info, noise->cdf, err) : status;
}

int qft_noise_quantize(qft_noise *noise, qft_quant_state *st, int index, float *out, const float *x, int rows,
                       size_t *nonfinite) {
    if (!noise->enabled || !noise->training || !noise->selected[index]) return 0;
    qft_quant_site *site = &st->sites[index];
    int histogram = noise->kind == QFT_NOISE_HISTOGRAM;
    if (noise->adapt_now && histogram) adapt_histogram(noise, st, index, x, rows);
    else if (noise->adapt_now) adapt_amplitude(noise, st, site, x, rows);
    float strength = qft_noise_strength(noise, index);
    if (strength == 0.0f) return 0;  // annealed to the real quantizer on this micro-step
    // Histogram noise has no amplitude (the measured residual has the site's own spread): only the annealing.
    qft_quant_noise params = {noise->kind, histogram ? strength : site->noise_amplitude * strength,
                              (float)noise->cfg->p * strength, qft_noise_key(noise->seed),
                              qft_noise_stream(noise->step, index),
                              histogram ? noise->cdf + (size_t)index * (QFT_NOISE_BINS + 1) : NULL,
                              QFT_NOISE_BINS};
    *nonfinite = st->be->quant_noise_forward(out, x, site->scale, site->zero_point, rows, site->C, &site->layout,
                                             &params);
    return 1;
}
