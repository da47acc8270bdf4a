// Adaptive random-noise fine-tuning: which sites get noise, the per-site amplitude a_site measured from the
// real quantizer's rounding residual, annealing, and the call of the backend's quant_noise_forward op.
#include "noise.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "glob_list.h"

qft_status qft_noise_init(qft_noise *noise, const qft_noise_config *cfg, qft_quant_state *st, qft_error *err) {
    memset(noise, 0, sizeof *noise);
    noise->cfg = cfg;
    noise->factor = 1.0f;
    noise->enabled = strcmp(cfg->kind, "off") != 0;
    for (int i = 0; i < st->count; i++) st->sites[i].noise_amplitude = (float)cfg->amplitude;
    if (!noise->enabled) return QFT_OK;
    noise->kind = strcmp(cfg->kind, "gaussian") == 0    ? QFT_NOISE_GAUSSIAN
                  : strcmp(cfg->kind, "bernoulli") == 0 ? QFT_NOISE_BERNOULLI
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
    return QFT_OK;
}

void qft_noise_free(qft_noise *noise) {
    free(noise->selected);
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

// a_site = clip(sqrt(12 mean r^2), a_min, a_max), r = (Q(x) - x) / s over the unclipped elements: the
// amplitude whose uniform noise a s U(-1/2, 1/2) has the measured rounding error's variance.
static void adapt_amplitude(const qft_noise *noise, qft_quant_state *st, qft_quant_site *site, const float *x,
                            int rows) {
    double sum_sq = 0.0;
    size_t inside = st->be->quant_residual(x, site->scale, site->zero_point, rows, site->C, &site->layout, &sum_sq);
    if (!inside) return;
    double a = sqrt(12.0 * sum_sq / (double)inside);
    site->noise_amplitude = (float)fmin(fmax(a, noise->cfg->amplitude_min), noise->cfg->amplitude_max);
}

int qft_noise_quantize(qft_noise *noise, qft_quant_state *st, int index, float *out, const float *x, int rows,
                       size_t *nonfinite) {
    if (!noise->enabled || !noise->training || !noise->selected[index]) return 0;
    qft_quant_site *site = &st->sites[index];
    if (noise->adapt_now) adapt_amplitude(noise, st, site, x, rows);
    qft_quant_noise params = {noise->kind, site->noise_amplitude * noise->factor, (float)noise->cfg->p * noise->factor,
                              qft_noise_key(noise->seed), qft_noise_stream(noise->step, index)};
    *nonfinite = st->be->quant_noise_forward(out, x, site->scale, site->zero_point, rows, site->C, &site->layout,
                                             &params);
    return 1;
}
