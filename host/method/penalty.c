// Outlier-range penalty: site selection, per-step statistics and the forward/backward calls into the backend
// ops (outlier_penalty_forward / _backward, tensor_moments). Formulas: docs/methods.md §1, METHODS.md §6.
#include "penalty.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "glob_list.h"

qft_status qft_penalty_init(qft_penalty *pen, const qft_penalty_config *cfg, const qft_quant_state *st,
                            qft_error *err) {
    memset(pen, 0, sizeof *pen);
    pen->cfg = cfg;
    pen->enabled = cfg->lambda > 0.0;
    if (!pen->enabled) return QFT_OK;
    pen->quant_range = strcmp(cfg->mode, "quant_range") == 0;
    pen->adaptive = strcmp(cfg->weighting, "adaptive") == 0;
    pen->per_outlier = strcmp(cfg->normalize, "outliers") == 0;
    pen->count = st->count;
    pen->sites = calloc((size_t)st->count, sizeof *pen->sites);
    if (!pen->sites) return qft_fail(err, QFT_ERR_OOM, "out of memory for the outlier penalty's sites");
    int selected = 0;
    for (int i = 0; i < st->count; i++) {
        const qft_quant_site *site = &st->sites[i];
        // Weights and attention probabilities are not activations of the stream.
        if (site->role != QFT_SITE_INPUT && site->role != QFT_SITE_OUTPUT) continue;
        pen->sites[i].selected = qft_glob_list_match(cfg->sites, site->name);
        selected += pen->sites[i].selected;
    }
    char unmatched[QFT_STR_MAX];
    if (qft_glob_list_unmatched(cfg->sites, st, QFT_SITE_INPUT, QFT_SITE_OUTPUT, unmatched, sizeof unmatched))
        return qft_fail(err, QFT_ERR_INVALID, "penalty.sites: pattern \"%s\" matches no activation site "
                        "(`qft quant-sites` lists them)", unmatched);
    if (!selected) return qft_fail(err, QFT_ERR_INVALID, "penalty.sites: no activation site selected");
    return QFT_OK;
}

void qft_penalty_free(qft_penalty *pen) {
    free(pen->sites);
    memset(pen, 0, sizeof *pen);
}

void qft_penalty_set_step(qft_penalty *pen, long step) {
    long warmup = pen->cfg ? pen->cfg->warmup_steps : 0;
    double ramp = warmup > 0 && step < warmup ? (double)(step + 1) / (double)warmup : 1.0;
    pen->lambda_now = pen->enabled ? pen->cfg->lambda * ramp : 0.0;
}

void qft_penalty_take_ratios(qft_penalty *pen, double *max_ratio, double *mean_ratio) {
    *max_ratio = pen->max_ratio;
    *mean_ratio = pen->ratio_count ? pen->ratio_sum / (double)pen->ratio_count : 0.0;
    pen->max_ratio = pen->ratio_sum = 0.0;
    pen->ratio_count = 0;
}

// The union of an active site's quantizer ranges [(qmin - z) s, (qmax - z) s] over its groups.
static void quantizer_range(const qft_quant_state *st, const qft_quant_site *site, float *lo, float *hi) {
    int n = site->n_params;
    float *host = malloc(2 * (size_t)n * sizeof(float));
    *lo = INFINITY;
    *hi = -INFINITY;
    if (!host) return;
    st->be->copy_to_host(host, site->scale, 2 * (size_t)n * sizeof(float));
    float qmin = (float)site->layout.qmin, qmax = (float)site->layout.qmax;
    for (int k = 0; k < n; k++) {
        float s = host[k], z = fminf(fmaxf(rintf(host[n + k]), qmin), qmax);
        *lo = fminf(*lo, (qmin - z) * s);
        *hi = fmaxf(*hi, (qmax - z) * s);
    }
    free(host);
}

void qft_penalty_observe(qft_penalty *pen, qft_quant_state *st, int index, const float *x, int rows) {
    if (!pen->enabled || !pen->training || !pen->sites[index].selected) return;
    qft_penalty_site *ps = &pen->sites[index];
    const qft_quant_site *site = &st->sites[index];
    size_t n = (size_t)rows * site->C;
    ps->ready = 0;
    if (n == 0) return;
    double m[4];
    st->be->tensor_moments(x, n, m);
    double mu = m[0], sigma = m[1], tau = pen->cfg->k * sigma;
    if (pen->quant_range && qft_site_active(st, site)) {
        float lo, hi;
        quantizer_range(st, site, &lo, &hi);
        if (lo < hi) {
            mu = 0.5 * ((double)lo + (double)hi);
            tau = 0.5 * ((double)hi - (double)lo);
        }
    }
    double spread = fmax(m[3] - mu, mu - m[2]);
    if (sigma > 0.0) {
        double ratio = fmax(m[3] - m[0], m[0] - m[2]) / sigma;  // about the mean, in either mode
        pen->max_ratio = fmax(pen->max_ratio, ratio);
        pen->ratio_sum += ratio;
        pen->ratio_count++;
    }
    if (!(tau > 0.0) || !(sigma > 0.0)) return;  // a constant tensor has no outliers
    double weight = pen->adaptive ? fmin(spread / tau, pen->cfg->weight_max) : 1.0;
    size_t outside = 0;
    double sum = st->be->outlier_penalty_forward(x, n, (float)mu, (float)tau, (float)pen->cfg->p, &outside);
    // L_l = w (1/M) sum (excess / sigma)^p, M = the outlier count or N (docs/methods.md §1).
    double denom = (pen->per_outlier ? (double)(outside ? outside : 1) : (double)n) * pow(sigma, pen->cfg->p);
    pen->loss += weight * sum / denom;
    ps->x = x;
    ps->rows = rows;
    ps->mu = (float)mu;
    ps->tau = (float)tau;
    ps->coef = weight / denom;
    ps->ready = outside > 0;
}

void qft_penalty_backward(qft_penalty *pen, qft_quant_state *st, int index, float *dx, int rows) {
    if (!pen->enabled || !pen->training || !pen->sites[index].ready) return;
    qft_penalty_site *ps = &pen->sites[index];
    ps->ready = 0;
    if (rows != ps->rows || pen->lambda_now <= 0.0) return;
    size_t n = (size_t)rows * st->sites[index].C;
    // dL/dx_i = lambda w p relu(|x_i - mu| - tau)^(p-1) sign(x_i - mu) / (M sigma^p); the op applies p.
    double coef = pen->lambda_now * ps->coef * pen->backward_scale;
    st->be->outlier_penalty_backward(dx, ps->x, n, ps->mu, ps->tau, (float)pen->cfg->p, (float)coef);
}
