// Quantizer format defaults, range-to-parameter conversion (PyTorch observer form) and the enum
// names configs use.
#include "format.h"

#include <stdio.h>
#include <string.h>

qft_quant_format qft_quant_format_default(void) {
    qft_quant_format f;
    memset(&f, 0, sizeof f);
    f.enabled = 0;
    f.kind = QFT_QUANT_UNIFORM;
    f.bits = 8;
    f.is_signed = 1;
    f.symmetric = 1;
    f.narrow = 0;
    f.granularity = QFT_GRAN_TENSOR;
    f.group_size = 128;
    f.peg_groups = 6;   // Bondarenko et al. 2021 use K = 6 on BERT-base
    f.calibrator = QFT_CALIB_MINMAX;
    f.percentile = 99.99;
    f.ema_momentum = 0.01;
    f.learn = QFT_LEARN_NONE;
    return f;
}

void qft_quant_params_from_range(const qft_quant_format *f, float lo, float hi, float *scale, float *zero_point) {
    int qmin = qft_quant_qmin(f), qmax = qft_quant_qmax(f);
    float s, z;
    if (f->symmetric) {
        float amax = fmaxf(-lo, hi);
        if (!(amax > 0.0f)) amax = 0.0f;
        s = amax / ((float)(qmax - qmin) / 2.0f);
        z = f->is_signed ? 0.0f : (float)((qmin + qmax + 1) / 2);
    } else {
        float l = fminf(lo, 0.0f), h = fmaxf(hi, 0.0f);
        s = (h - l) / (float)(qmax - qmin);
        if (!(s >= QFT_QUANT_MIN_SCALE)) s = QFT_QUANT_MIN_SCALE;
        z = (float)qmin - rintf(l / s);
        z = fminf(fmaxf(z, (float)qmin), (float)qmax);
    }
    if (!(s >= QFT_QUANT_MIN_SCALE)) s = QFT_QUANT_MIN_SCALE;
    *scale = s;
    *zero_point = z;
}

static int name_index(const char *name, const char *const *names, int count) {
    for (int i = 0; i < count; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

static const char *const kind_names[] = {"uniform", "log2", "log_sqrt2"};
static const char *const granularity_names[] = {"tensor", "channel", "group", "peg"};
static const char *const calibrator_names[] = {"minmax", "ema", "percentile", "mse", "omse", "entropy"};
static const char *const learn_names[] = {"none", "lsq", "lsq_plus"};

int qft_quant_kind_parse(const char *name) { return name_index(name, kind_names, 3); }
int qft_quant_granularity_parse(const char *name) { return name_index(name, granularity_names, 4); }
int qft_calibrator_parse(const char *name) { return name_index(name, calibrator_names, 6); }
int qft_quant_learn_parse(const char *name) { return name_index(name, learn_names, 3); }
const char *qft_quant_kind_name(qft_quant_kind k) { return kind_names[k]; }
const char *qft_quant_granularity_name(qft_quant_granularity g) { return granularity_names[g]; }
const char *qft_calibrator_name(qft_calibrator_kind c) { return calibrator_names[c]; }
const char *qft_quant_learn_name(qft_quant_learn l) { return learn_names[l]; }

void qft_quant_format_describe(const qft_quant_format *f, char *buf, size_t cap) {
    if (!f->enabled) {
        snprintf(buf, cap, "fp");
        return;
    }
    char granularity[48];
    if (f->granularity == QFT_GRAN_GROUP) snprintf(granularity, sizeof granularity, "group %d", f->group_size);
    else if (f->granularity == QFT_GRAN_PEG) snprintf(granularity, sizeof granularity, "peg K=%d", f->peg_groups);
    else snprintf(granularity, sizeof granularity, "per-%s", qft_quant_granularity_name(f->granularity));
    if (f->kind != QFT_QUANT_UNIFORM) {
        snprintf(buf, cap, "%s %d-bit, %s", qft_quant_kind_name(f->kind), f->bits, qft_calibrator_name(f->calibrator));
        return;
    }
    char learn[24] = "";
    if (f->learn != QFT_LEARN_NONE) snprintf(learn, sizeof learn, ", learn %s", qft_quant_learn_name(f->learn));
    snprintf(buf, cap, "int%d %s %s%s %s, %s%s", f->bits, f->is_signed ? "signed" : "unsigned",
             f->symmetric ? "symmetric" : "asymmetric", f->narrow ? " narrow" : "", granularity,
             qft_calibrator_name(f->calibrator), learn);
}

