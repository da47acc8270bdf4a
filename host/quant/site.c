// Quant site registry and the per-site forward/backward glue: rule matching, parameter and buffer
// allocation, and the STE / LSQ plumbing around linear layers, stream tensors and probabilities.
#include "site.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void qft_quant_state_init(qft_quant_state *st, const qft_backend *be) {
    memset(st, 0, sizeof *st);
    st->be = be;
    st->nonfinite_site = -1;
}

void qft_quant_state_free(qft_quant_state *st) {
    const qft_backend *be = st->be;
    if (be) {
        void *buffers[] = {st->params, st->grads, st->buffers, st->groups, st->scratch_input, st->scratch_weight};
        for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++)
            if (buffers[i]) be->release(buffers[i]);
    }
    free(st->sites);
    memset(st, 0, sizeof *st);
    st->nonfinite_site = -1;
}

qft_status qft_quant_add_site(qft_quant_state *st, const char *name, qft_site_role role, int rows, int C,
                              float *weight, float *grad, qft_error *err) {
    if (st->count == st->capacity) {
        int capacity = st->capacity ? 2 * st->capacity : 64;
        qft_quant_site *grown = realloc(st->sites, (size_t)capacity * sizeof *grown);
        if (!grown) return qft_fail(err, QFT_ERR_OOM, "out of memory registering quant site %s", name);
        st->sites = grown;
        st->capacity = capacity;
    }
    qft_quant_site *site = &st->sites[st->count];
    memset(site, 0, sizeof *site);
    if (strlen(name) >= sizeof site->name)
        return qft_fail(err, QFT_ERR_INTERNAL, "quant site name too long: %s", name);
    snprintf(site->name, sizeof site->name, "%s", name);
    site->role = role;
    site->rows = rows;
    site->C = C;
    site->rule = -1;
    site->fmt = qft_quant_format_default();
    site->weight = weight;
    site->grad = grad;
    site->noise_amplitude = 1.0f;
    st->count++;
    return QFT_OK;
}

int qft_quant_find(const qft_quant_state *st, const char *name) {
    for (int i = 0; i < st->count; i++)
        if (strcmp(st->sites[i].name, name) == 0) return i;
    return -1;
}

static const char *role_name(qft_site_role role) {
    static const char *const names[] = {"weight", "input", "output", "probs"};
    return names[role];
}

// The quantizer parameter count and layout of a site in its format; errors name the site and rule.
static qft_status site_layout(qft_quant_site *site, int rule, qft_error *err) {
    const qft_quant_format *f = &site->fmt;
    int C = site->C;
    site->layout.qmin = qft_quant_qmin(f);
    site->layout.qmax = qft_quant_qmax(f);
    site->layout.group_size = 0;
    site->layout.column_group = NULL;
    if (f->kind != QFT_QUANT_UNIFORM && site->role != QFT_SITE_PROBS)
        return qft_fail(err, QFT_ERR_INVALID, "quant.rules rule %d: kind %s applies to attention probabilities only, "
                        "but matches %s site %s", rule, qft_quant_kind_name(f->kind), role_name(site->role), site->name);
    if (f->learn != QFT_LEARN_NONE && site->role != QFT_SITE_WEIGHT && site->role != QFT_SITE_INPUT)
        return qft_fail(err, QFT_ERR_INVALID, "quant.rules rule %d: learn %s is for linear weights and inputs, but "
                        "matches %s site %s", rule, qft_quant_learn_name(f->learn), role_name(site->role), site->name);
    if (site->role == QFT_SITE_PROBS && f->granularity != QFT_GRAN_TENSOR)
        return qft_fail(err, QFT_ERR_INVALID, "quant.rules rule %d: attention probabilities %s are quantized per tensor, "
                        "got granularity %s", rule, site->name, qft_quant_granularity_name(f->granularity));
    switch (f->granularity) {
    case QFT_GRAN_TENSOR:
        site->layout.axis = QFT_FQ_PER_TENSOR;
        site->n_params = 1;
        break;
    case QFT_GRAN_CHANNEL:
        site->layout.axis = site->role == QFT_SITE_WEIGHT ? QFT_FQ_PER_ROW : QFT_FQ_PER_COLUMN;
        site->n_params = site->role == QFT_SITE_WEIGHT ? site->rows : C;
        break;
    case QFT_GRAN_GROUP:
        if (C % f->group_size != 0)
            return qft_fail(err, QFT_ERR_INVALID, "quant.rules rule %d: group_size %d does not divide the %d channels of %s",
                            rule, f->group_size, C, site->name);
        if (site->role == QFT_SITE_WEIGHT) {
            site->layout.axis = QFT_FQ_PER_ROW_GROUP;
            site->layout.group_size = f->group_size;
            site->n_params = site->rows * (C / f->group_size);
        } else {
            site->layout.axis = QFT_FQ_COLUMN_MAP;
            site->n_params = C / f->group_size;
        }
        break;
    case QFT_GRAN_PEG:
        if (site->role == QFT_SITE_WEIGHT)
            return qft_fail(err, QFT_ERR_INVALID, "quant.rules rule %d: granularity peg is for activations, but matches "
                            "weight site %s", rule, site->name);
        if (f->peg_groups > C)
            return qft_fail(err, QFT_ERR_INVALID, "quant.rules rule %d: peg_groups %d exceeds the %d channels of %s", rule,
                            f->peg_groups, C, site->name);
        site->layout.axis = QFT_FQ_COLUMN_MAP;
        site->n_params = f->peg_groups;
        break;
    }
    return QFT_OK;
}

static size_t site_buffer_floats(const qft_quant_site *site) {
    if (site->role == QFT_SITE_PROBS) return 0;
    return (size_t)site->rows * site->C;
}

static size_t round_up16(size_t n) { return (n + 15) & ~(size_t)15; }

qft_status qft_quant_configure(qft_quant_state *st, const qft_quant_rule_list *rules, qft_error *err) {
    const qft_backend *be = st->be;
    size_t param_floats = 0, buffer_floats = 0, group_ints = 0, scratch_in = 0, scratch_w = 0;
    st->enabled_count = 0;
    for (int i = 0; i < st->count; i++) {
        qft_quant_site *site = &st->sites[i];
        site->rule = -1;
        site->fmt = qft_quant_format_default();
        for (int r = 0; r < rules->count; r++) {
            if (fnmatch(rules->items[r].pattern, site->name, 0) == 0) {
                site->rule = r;
                site->fmt = rules->items[r].format;
                break;
            }
        }
        if (!site->fmt.enabled) continue;
        qft_status status = site_layout(site, site->rule + 1, err);  // 1-based, as quant-sites prints
        if (status) return status;
        st->enabled_count++;
        site->param_offset = param_floats;
        param_floats += round_up16(2 * (size_t)site->n_params);
        buffer_floats += round_up16(site_buffer_floats(site));
        if (site->layout.axis == QFT_FQ_COLUMN_MAP) group_ints += round_up16((size_t)site->C);
        size_t n = (size_t)site->rows * site->C;
        if (site->role == QFT_SITE_WEIGHT && n > scratch_w) scratch_w = n;
        if ((site->role == QFT_SITE_INPUT || site->role == QFT_SITE_OUTPUT) && n > scratch_in) scratch_in = n;
    }
    if (st->enabled_count == 0) return QFT_OK;
    st->param_floats = param_floats;
    st->params = be->alloc(param_floats * sizeof(float));
    st->grads = be->alloc(param_floats * sizeof(float));
    st->buffers = buffer_floats ? be->alloc(buffer_floats * sizeof(float)) : NULL;
    st->groups = group_ints ? be->alloc(group_ints * sizeof(int32_t)) : NULL;
    st->scratch_input = scratch_in ? be->alloc(scratch_in * sizeof(float)) : NULL;
    st->scratch_weight = scratch_w ? be->alloc(scratch_w * sizeof(float)) : NULL;
    st->scratch_input_floats = scratch_in;
    st->scratch_weight_floats = scratch_w;
    if (!st->params || !st->grads || (buffer_floats && !st->buffers) || (group_ints && !st->groups) ||
        (scratch_in && !st->scratch_input) || (scratch_w && !st->scratch_weight))
        return qft_fail(err, QFT_ERR_OOM, "out of memory allocating quantizer state (%zu MB of buffers)",
                        buffer_floats * sizeof(float) >> 20);
    float *host = calloc(param_floats, sizeof(float));
    if (!host) return qft_fail(err, QFT_ERR_OOM, "out of memory initializing quantizer parameters");
    size_t buffer_at = 0, group_at = 0;
    for (int i = 0; i < st->count; i++) {
        qft_quant_site *site = &st->sites[i];
        if (!site->fmt.enabled) continue;
        site->scale = st->params + site->param_offset;
        site->zero_point = site->scale + site->n_params;
        site->dscale = st->grads + site->param_offset;
        site->dzero = site->dscale + site->n_params;
        for (int k = 0; k < site->n_params; k++) host[site->param_offset + (size_t)k] = 1.0f;
        size_t n = site_buffer_floats(site);
        site->buffer = n ? st->buffers + buffer_at : NULL;
        buffer_at += round_up16(n);
        if (site->layout.axis == QFT_FQ_COLUMN_MAP) {
            site->column_group = st->groups + group_at;
            group_at += round_up16((size_t)site->C);
            // Contiguous channel groups until calibration sorts PEG channels by range.
            int32_t map[site->C];
            for (int c = 0; c < site->C; c++) map[c] = (int32_t)((int64_t)c * site->n_params / site->C);
            be->copy_to_device(site->column_group, map, (size_t)site->C * sizeof(int32_t));
            site->layout.column_group = site->column_group;
        }
    }
    be->copy_to_device(st->params, host, param_floats * sizeof(float));
    free(host);
    return QFT_OK;
}

static void note_nonfinite(qft_quant_state *st, const qft_quant_site *site, size_t count) {
    if (!count) return;
    if (st->nonfinite_site < 0) st->nonfinite_site = (int)(site - st->sites);
    st->nonfinite += count;
}

// Zero point as the quantizer uses it: symmetric signed grids have none.
static const float *site_zero(const qft_quant_site *site) { return site->zero_point; }

static int site_index(const qft_quant_state *st, const qft_quant_site *site) { return (int)(site - st->sites); }

static void hook_observe(qft_quant_state *st, qft_quant_site *site, const float *x, int rows) {
    if (st && site && st->hooks && st->hooks->observe && st->mode != QFT_QUANT_OBSERVE)
        st->hooks->observe(st->hooks->ctx, st, site_index(st, site), x, rows);
}

static void hook_backward(qft_quant_state *st, qft_quant_site *site, float *dx, int rows) {
    if (st && site && dx && st->hooks && st->hooks->backward && st->mode != QFT_QUANT_OBSERVE)
        st->hooks->backward(st->hooks->ctx, st, site_index(st, site), dx, rows);
}

// out = Q(x) for an active site: a method's stand-in (noise) or the real fake quantizer.
static void site_quantize(qft_quant_state *st, qft_quant_site *site, float *out, const float *x, int rows) {
    size_t bad = 0;
    if (st->hooks && st->hooks->quantize &&
        st->hooks->quantize(st->hooks->ctx, st, site_index(st, site), out, x, rows, &bad)) {
        note_nonfinite(st, site, bad);
        return;
    }
    note_nonfinite(st, site, st->be->fake_quant_forward(out, x, site->scale, site_zero(site), rows, site->C,
                                                        &site->layout));
}

void qft_quant_weights_forward(qft_quant_state *st) {
    if (!st || st->mode == QFT_QUANT_OFF) return;
    for (int i = 0; i < st->count; i++) {
        qft_quant_site *site = &st->sites[i];
        if (site->role != QFT_SITE_WEIGHT || !site->fmt.enabled) continue;
        if (st->mode == QFT_QUANT_OBSERVE) {
            if (st->observe) st->observe(st->observe_ctx, st, i, site->weight, site->rows, site->C);
            continue;
        }
        site_quantize(st, site, site->buffer, site->weight, site->rows);
    }
}

const float *qft_site_weight(const qft_quant_state *st, const qft_quant_site *site, const float *weight) {
    return qft_site_active(st, site) ? site->buffer : weight;
}

const float *qft_site_input_forward(qft_quant_state *st, qft_quant_site *site, const float *x, int rows) {
    if (qft_site_observed(st, site)) st->observe(st->observe_ctx, st, (int)(site - st->sites), x, rows, site->C);
    hook_observe(st, site, x, rows);
    if (!qft_site_active(st, site)) return x;
    site->last_rows = rows;
    site_quantize(st, site, site->buffer, x, rows);
    return site->buffer;
}

void qft_site_output_forward(qft_quant_state *st, qft_quant_site *site, float *x, int rows) {
    if (qft_site_observed(st, site)) st->observe(st->observe_ctx, st, (int)(site - st->sites), x, rows, site->C);
    if (!qft_site_active(st, site)) {
        hook_observe(st, site, x, rows);
        return;
    }
    site->last_rows = rows;
    st->be->copy(site->buffer, x, (size_t)rows * site->C * sizeof(float));
    hook_observe(st, site, site->buffer, rows);
    site_quantize(st, site, x, site->buffer, rows);
}

// The site's real probability quantizer (no noise).
static void probs_quantizer(qft_quant_state *st, qft_quant_site *site, qft_prob_quant *pq) {
    float host[2];
    st->be->copy_to_host(host, site->scale, sizeof host);  // scale, zero point (n_params = 1)
    pq->kind = (int)site->fmt.kind;
    pq->bits = site->fmt.bits;
    pq->qmin = site->layout.qmin;
    pq->qmax = site->layout.qmax;
    pq->scale = host[0];
    pq->zero_point = host[1];
    pq->noise = NULL;
}

const qft_prob_quant *qft_site_probs(qft_quant_state *st, qft_quant_site *site, qft_prob_storage *storage) {
    if (!qft_site_active(st, site)) return NULL;
    probs_quantizer(st, site, &storage->quant);
    if (st->hooks && st->hooks->probs_noise &&
        st->hooks->probs_noise(st->hooks->ctx, st, site_index(st, site), &storage->quant, &storage->noise.params))
        storage->quant.noise = &storage->noise;
    return &storage->quant;
}

int qft_site_probs_wants_measure(qft_quant_state *st, qft_quant_site *site) {
    if (!qft_site_active(st, site) || !st->hooks || !st->hooks->probs_measure) return 0;
    qft_prob_quant pq;
    probs_quantizer(st, site, &pq);
    return st->hooks->probs_measure(st->hooks->ctx, st, site_index(st, site), &pq, NULL, 0, 0);
}

void qft_site_probs_measure(qft_quant_state *st, qft_quant_site *site, const float *probs, int rows, int T) {
    if (!qft_site_active(st, site) || !st->hooks || !st->hooks->probs_measure) return;
    qft_prob_quant pq;
    probs_quantizer(st, site, &pq);
    st->hooks->probs_measure(st->hooks->ctx, st, site_index(st, site), &pq, probs, rows, T);
}

void qft_site_probs_observe(qft_quant_state *st, qft_quant_site *site, const float *probs, int rows, int T) {
    if (qft_site_observed(st, site)) st->observe(st->observe_ctx, st, (int)(site - st->sites), probs, rows, T);
}

float qft_site_lsq_grad_factor(const qft_quant_site *site, int rows) {
    double per_group = (double)rows * site->C / site->n_params;
    return (float)(1.0 / sqrt(per_group * site->layout.qmax));
}

// dL/dx += STE(dL/dx_hat), plus the learnable parameter gradients of the site.
static void site_ste_backward(qft_quant_state *st, qft_quant_site *site, float *dx, const float *d_hat,
                              const float *x, int rows) {
    int learn = site->fmt.learn != QFT_LEARN_NONE;
    float *dzero = site->fmt.learn == QFT_LEARN_LSQ_PLUS ? site->dzero : NULL;
    st->be->fake_quant_backward(dx, learn ? site->dscale : NULL, dzero, d_hat, x, site->scale, site_zero(site), rows,
                                site->C, &site->layout, learn ? qft_site_lsq_grad_factor(site, rows) : 1.0f);
}

void qft_qlinear_forward(const qft_backend *be, qft_quant_state *st, qft_quant_site *w_site, qft_quant_site *x_site,
                         float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC) {
    const float *x = qft_site_input_forward(st, x_site, inp, N);
    be->linear_forward(out, x, qft_site_weight(st, w_site, weight), bias, N, C, OC);
}

void qft_qlinear_backward_ex(const qft_backend *be, qft_quant_state *st, qft_quant_site *w_site,
                             qft_quant_site *x_site, float *dinp, int dinp_write, float *dweight, float *dbias,
                             const float *dout, const float *inp, const float *weight, int N, int C, int OC) {
    // A learnable input quantizer needs dL/dx_hat for its own parameters even where the caller wants no
    // input gradient (the patch projection's pixels): dinp = NULL then only skips the STE into dL/dx.
    int x_learns = qft_site_active(st, x_site) && x_site->fmt.learn != QFT_LEARN_NONE;
    int x_active = qft_site_active(st, x_site) && (dinp || x_learns), w_active = qft_site_active(st, w_site) && dweight;
    // The GEMM gradients go to scratch when a quantizer sits in between (they are dL/dx_hat, dL/dW_hat).
    float *dw_hat = w_active ? st->scratch_weight : dweight;
    if (w_active) be->zero(dw_hat, (size_t)OC * C * sizeof(float));
    const float *x_used = qft_site_active(st, x_site) ? x_site->buffer : inp;
    const float *w_used = qft_site_weight(st, w_site, weight);
    if (dinp && dinp_write) {
        // dL/dx_hat written straight into dinp, then masked there by the input STE: no zeroing, no scratch.
        be->linear_backward_input(dinp, dout, w_used, N, C, OC);
        be->linear_backward(NULL, dw_hat, dbias, dout, x_used, w_used, N, C, OC);
        if (x_active) site_ste_backward(st, x_site, dinp, dinp, inp, N);
    } else {
        float *dx_hat = x_active ? st->scratch_input : dinp;
        if (x_active) be->zero(dx_hat, (size_t)N * C * sizeof(float));
        be->linear_backward(dx_hat, dw_hat, dbias, dout, x_used, w_used, N, C, OC);
        if (x_active) site_ste_backward(st, x_site, dinp, dx_hat, inp, N);
    }
    if (w_active) site_ste_backward(st, w_site, dweight, dw_hat, w_site->weight, OC);
    hook_backward(st, x_site, dinp, N);  // dinp now holds this consumer's dL/dx; method losses on x add theirs
}

void qft_qlinear_backward(const qft_backend *be, qft_quant_state *st, qft_quant_site *w_site, qft_quant_site *x_site,
                          float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                          const float *weight, int N, int C, int OC) {
    qft_qlinear_backward_ex(be, st, w_site, x_site, dinp, 0, dweight, dbias, dout, inp, weight, N, C, OC);
}

void qft_site_output_backward(qft_quant_state *st, qft_quant_site *site, float *d, int rows) {
    if (qft_site_active(st, site)) site_ste_backward(st, site, d, d, site->buffer, rows);  // in place (dinp == dout)
    hook_backward(st, site, d, rows);
}

void qft_quant_clamp_scales(qft_quant_state *st) {
    if (!st->param_floats) return;
    // Scales are a few floats per channel: a host round trip is cheaper than a dedicated kernel here.
    float *host = malloc(st->param_floats * sizeof(float));
    if (!host) return;
    st->be->copy_to_host(host, st->params, st->param_floats * sizeof(float));
    for (int i = 0; i < st->count; i++) {
        const qft_quant_site *site = &st->sites[i];
        if (!site->fmt.enabled || site->fmt.learn == QFT_LEARN_NONE) continue;
        float *scale = host + site->param_offset;
        for (int k = 0; k < site->n_params; k++)
            if (!(scale[k] >= QFT_QUANT_MIN_SCALE)) scale[k] = QFT_QUANT_MIN_SCALE;
    }
    st->be->copy_to_device(st->params, host, st->param_floats * sizeof(float));
    free(host);
}

void qft_quant_zero_grads(qft_quant_state *st) {
    if (st->grads) st->be->zero(st->grads, st->param_floats * sizeof(float));
}
