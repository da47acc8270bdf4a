// Folding per-channel LayerNorm-output quantizers into per-tensor ones (RepQ-ViT): host arithmetic
// on the LayerNorm and linear parameters and the sites' quantizer state, then the site's new layout.
#include "reparam.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/calib.h"

typedef struct {
    float *ln_w, *ln_b, *lin_w, *lin_b;   // backend memory (host memory on the CPU backend)
    qft_quant_site *input, *weight, *ln_out;
    int C, OC;
} fold_pair;

static qft_status pair_check(const fold_pair *p, qft_error *err) {
    const qft_quant_site *s = p->input;
    if (p->ln_out && p->ln_out->fmt.enabled)
        return qft_fail(err, QFT_ERR_INVALID, "reparam: %s is quantized: folding would rescale the values it sees "
                        "(disable it or leave %s per tensor)", p->ln_out->name, s->name);
    // LSQ-learned per-channel scales fold like calibrated ones (that is Quadapter's channel scale,
    // docs/quant.md); an LSQ+ offset is a real number, so r2 would not be integral.
    if (s->fmt.kind != QFT_QUANT_UNIFORM || s->fmt.learn == QFT_LEARN_LSQ_PLUS)
        return qft_fail(err, QFT_ERR_INVALID, "reparam: %s must be a uniform quantizer with integer zero points "
                        "(calibrated or learn: lsq, not lsq_plus)", s->name);
    if (!s->calibrated) return qft_fail(err, QFT_ERR_INVALID, "reparam: %s is not calibrated", s->name);
    return QFT_OK;
}

// Re-runs a weight site's calibrator on the folded weight (weights need no data).
static qft_status recalibrate_weight(const qft_backend *be, qft_quant_site *w, qft_error *err) {
    qft_quant_format fmt = w->fmt;
    qft_calibrator *c = NULL;
    int rows = w->rows, C = w->C;
    size_t r = (size_t)rows, cols = (size_t)C;
    if (w->layout.axis == QFT_FQ_PER_ROW_GROUP) r = (size_t)rows * C / w->layout.group_size, cols = w->layout.group_size;
    qft_status st = qft_calibrator_create(&fmt, w->n_params, w->name, &c, err);
    float *host = st == QFT_OK ? malloc((size_t)rows * C * sizeof(float)) : NULL;
    float *scale = host ? malloc((size_t)w->n_params * 2 * sizeof(float)) : NULL;
    if (st == QFT_OK && (!host || !scale)) st = qft_fail(err, QFT_ERR_OOM, "reparam: out of memory");
    if (st == QFT_OK) {
        be->copy_to_host(host, w->weight, (size_t)rows * C * sizeof(float));
        st = qft_calibrator_observe(c, host, r, cols, QFT_CALIB_AXIS_ROW, err);
    }
    if (st == QFT_OK) st = qft_calibrator_finish(c, scale, scale + w->n_params, NULL, NULL, err);
    if (st == QFT_OK) {
        be->copy_to_device(w->scale, scale, (size_t)w->n_params * sizeof(float));
        be->copy_to_device(w->zero_point, scale + w->n_params, (size_t)w->n_params * sizeof(float));
    }
    qft_calibrator_free(c);
    free(host);
    free(scale);
    return st;
}

static qft_status fold_pair_apply(const qft_backend *be, const fold_pair *p, qft_reparam_summary *out,
                                  qft_error *err) {
    qft_quant_site *site = p->input;
    int C = p->C, OC = p->OC;
    float *s = malloc((size_t)C * sizeof(float)), *z = malloc((size_t)C * sizeof(float));
    float *gamma = malloc((size_t)C * sizeof(float)), *beta = malloc((size_t)C * sizeof(float));
    float *W = malloc((size_t)OC * C * sizeof(float)), *b = malloc((size_t)OC * sizeof(float));
    qft_status st = s && z && gamma && beta && W && b ? QFT_OK : qft_fail(err, QFT_ERR_OOM, "reparam: out of memory");
    if (st == QFT_OK) {
        be->copy_to_host(s, site->scale, (size_t)C * sizeof(float));
        be->copy_to_host(z, site->zero_point, (size_t)C * sizeof(float));
        be->copy_to_host(gamma, p->ln_w, (size_t)C * sizeof(float));
        be->copy_to_host(beta, p->ln_b, (size_t)C * sizeof(float));
        be->copy_to_host(W, p->lin_w, (size_t)OC * C * sizeof(float));
        be->copy_to_host(b, p->lin_b, (size_t)OC * sizeof(float));
        double s_sum = 0.0, z_sum = 0.0;
        for (int c = 0; c < C; c++) s_sum += s[c], z_sum += z[c];
        float s_mean = (float)(s_sum / C);
        // An integer z~ keeps r2 integral, which is what makes the codes identical (METHODS.md §13).
        float z_mean = fminf(fmaxf(rintf((float)(z_sum / C)), (float)site->layout.qmin), (float)site->layout.qmax);
        for (int o = 0; o < OC; o++) {
            double shift = 0.0;
            for (int c = 0; c < C; c++) shift += (double)W[(size_t)o * C + c] * s[c] * (z[c] - z_mean);
            b[o] = (float)(b[o] - shift);
        }
        for (int c = 0; c < C; c++) {
            float r1 = s[c] / s_mean, r2 = z[c] - z_mean;
            gamma[c] = gamma[c] / r1;
            beta[c] = (beta[c] + s[c] * r2) / r1;
            for (int o = 0; o < OC; o++) W[(size_t)o * C + c] *= r1;
            if (r1 > out->max_r1) out->max_r1 = r1;
            if (r1 < out->min_r1) out->min_r1 = r1;
        }
        be->copy_to_device(p->ln_w, gamma, (size_t)C * sizeof(float));
        be->copy_to_device(p->ln_b, beta, (size_t)C * sizeof(float));
        be->copy_to_device(p->lin_w, W, (size_t)OC * C * sizeof(float));
        be->copy_to_device(p->lin_b, b, (size_t)OC * sizeof(float));
        // The site becomes per tensor; its parameter slots keep their place (the first pair is used).
        site->fmt.granularity = QFT_GRAN_TENSOR;
        site->layout.axis = QFT_FQ_PER_TENSOR;
        site->n_params = 1;
        site->zero_point = site->scale + 1;
        float params[2] = {s_mean, z_mean};
        be->copy_to_device(site->scale, params, sizeof params);
        out->folded++;
    }
    if (st == QFT_OK && p->weight && p->weight->fmt.enabled) {
        st = recalibrate_weight(be, p->weight, err);
        out->recalibrated += st == QFT_OK;
    }
    free(s), free(z), free(gamma), free(beta), free(W), free(b);
    return st;
}

// A per-channel linear-input site: the only kind RepQ folds.
static int foldable(const qft_quant_site *s) {
    return s && s->fmt.enabled && s->fmt.granularity == QFT_GRAN_CHANNEL;
}

qft_status qft_reparam_fold(qft_model *m, qft_reparam_summary *out, qft_error *err) {
    memset(out, 0, sizeof *out);
    out->min_r1 = INFINITY;
    int any = 0;
    for (int l = 0; l < m->num_layers; l++)
        any |= foldable(m->layer_sites[l].qkv_in) || foldable(m->layer_sites[l].fc1_in);
    if (!any)
        return qft_fail(err, QFT_ERR_INVALID, "reparam: no per-channel qkv.input or fc1.input site to fold (quant.rules "
                        "must quantize them with granularity channel)");
    if (m->kind == QFT_MODEL_BERT)
        return qft_fail(err, QFT_ERR_INVALID, "reparam: BERT is post-LN: its LayerNorm outputs also feed the residual "
                        "stream, so folding the quantizer into the LayerNorm would change it; not applied");
    for (int l = 0; l < m->num_layers; l++) {
        qft_layer_sites *ls = &m->layer_sites[l];
        qft_layer_params *w = &m->w.layers[l];
        fold_pair pairs[2] = {
            {w->ln1_w, w->ln1_b, w->qkv_w, w->qkv_b, ls->qkv_in, ls->qkv_w, ls->ln1, m->D, 3 * m->D},
            {w->ln2_w, w->ln2_b, w->fc1_w, w->fc1_b, ls->fc1_in, ls->fc1_w, ls->ln2, m->D, m->F},
        };
        for (int k = 0; k < 2; k++) {
            if (!foldable(pairs[k].input)) continue;
            qft_status st = pair_check(&pairs[k], err);
            if (st == QFT_OK) st = fold_pair_apply(m->be, &pairs[k], out, err);
            if (st) return st;
        }
    }
    return QFT_OK;
}
