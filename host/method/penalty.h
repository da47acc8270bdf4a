// Outlier-range penalty [ours, QuantTune-style]: per chosen site, a stop-gradient range mu +- tau from the
// step's statistics (or the quantizer's range) and the loss/gradient on the excess beyond it (docs/methods.md §1).
#ifndef QFT_METHOD_PENALTY_H
#define QFT_METHOD_PENALTY_H

#include "../core/status.h"
#include "../io/config.h"
#include "../quant/site.h"

typedef struct {
    int selected;          // the site is penalized
    int ready;             // observed in this training forward, backward not yet run
    const float *x;        // the observed tensor (valid until the backward)
    int rows;
    float mu, tau;         // stop-gradient statistics of the forward
    double coef;           // w_l / (M_l sigma_l^p): the loss's factor on sum relu(|x - mu| - tau)^p
} qft_penalty_site;

typedef struct {
    int enabled;           // penalty.lambda > 0
    const qft_penalty_config *cfg;
    int quant_range;       // penalty.mode = quant_range
    int adaptive;          // penalty.weighting = adaptive
    int per_outlier;       // penalty.normalize = outliers (M_l = the outlier count, else N_l)
    int count;             // one entry per quant site
    qft_penalty_site *sites;
    int training;          // 1 while a training forward/backward runs
    double lambda_now;     // lambda at the current step (warmup applied)
    float backward_scale;  // the model backward's loss scale (1 / grad_accum)
    double loss;           // L_out summed over the training forwards since the last qft_penalty_take
    double max_ratio;      // monitor: max over sites and forwards of max|x - mu| / sigma since the last reset
    double ratio_sum;      // monitor: sum of that ratio over (site, forward) pairs since the last reset
    long ratio_count;
} qft_penalty;

// Selects the sites matching penalty.sites; a pattern that matches no site is an error naming it.
qft_status qft_penalty_init(qft_penalty *pen, const qft_penalty_config *cfg, const qft_quant_state *st, qft_error *err);
void qft_penalty_free(qft_penalty *pen);

// lambda at optimizer step `step` (0-based): linear warmup over penalty.warmup_steps.
void qft_penalty_set_step(qft_penalty *pen, long step);

// The outlier-ratio monitor since the last call (max and mean over sites and forwards of max|x - mu| / sigma;
// 0 when nothing was observed), then reset.
void qft_penalty_take_ratios(qft_penalty *pen, double *max_ratio, double *mean_ratio);

// The site hooks (qft_site_hooks.observe / .backward).
void qft_penalty_observe(qft_penalty *pen, qft_quant_state *st, int site, const float *x, int rows);
void qft_penalty_backward(qft_penalty *pen, qft_quant_state *st, int site, float *dx, int rows);

#endif
