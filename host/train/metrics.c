// Accuracy, binary F1, Matthews correlation, Pearson and Spearman over caller-owned arrays, and
// the choice and averaging of the metrics that make up each GLUE task's score.
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../data/glue.h"

#define MATTHEWS_MAX_CLASSES 65536

static qft_status check_args(const void *a, const void *b, size_t n, const char *metric, qft_error *err) {
    if (!a || !b) return qft_fail(err, QFT_ERR_INVALID, "%s: NULL input array", metric);
    if (n == 0) return qft_fail(err, QFT_ERR_INVALID, "%s: no examples (empty input)", metric);
    return QFT_OK;
}

qft_status qft_metric_accuracy(const int *predictions, const int *labels, size_t n, double *out, qft_error *err) {
    qft_status status = check_args(predictions, labels, n, "accuracy", err);
    if (status != QFT_OK) return status;
    size_t correct = 0;
    for (size_t i = 0; i < n; i++) correct += predictions[i] == labels[i];
    *out = (double)correct / (double)n;
    return QFT_OK;
}

qft_status qft_metric_f1_binary(const int *predictions, const int *labels, size_t n, double *out, qft_error *err) {
    qft_status status = check_args(predictions, labels, n, "f1", err);
    if (status != QFT_OK) return status;
    size_t tp = 0, fp = 0, fn = 0;
    for (size_t i = 0; i < n; i++) {
        int p = predictions[i], l = labels[i];
        if ((p != 0 && p != 1) || (l != 0 && l != 1))
            return qft_fail(err, QFT_ERR_INVALID, "f1: element %zu: prediction %d, label %d; binary F1 needs 0/1", i,
                            p, l);
        tp += p == 1 && l == 1;
        fp += p == 1 && l == 0;
        fn += p == 0 && l == 1;
    }
    size_t denominator = 2 * tp + fp + fn;
    *out = denominator ? 2.0 * (double)tp / (double)denominator : 0.0;
    return QFT_OK;
}

qft_status qft_metric_matthews(const int *predictions, const int *labels, size_t n, double *out, qft_error *err) {
    qft_status status = check_args(predictions, labels, n, "matthews_correlation", err);
    if (status != QFT_OK) return status;
    int classes = 0;
    for (size_t i = 0; i < n; i++) {
        int p = predictions[i], l = labels[i];
        if (p < 0 || l < 0 || p >= MATTHEWS_MAX_CLASSES || l >= MATTHEWS_MAX_CLASSES)
            return qft_fail(err, QFT_ERR_INVALID,
                            "matthews_correlation: element %zu: prediction %d, label %d; expected class ids in [0, %d)",
                            i, p, l, MATTHEWS_MAX_CLASSES);
        if (p + 1 > classes) classes = p + 1;
        if (l + 1 > classes) classes = l + 1;
    }
    // sklearn: with t_k, p_k the true and predicted counts of class k and c the correct count,
    // MCC = (c n - sum t_k p_k) / sqrt((n^2 - sum p_k^2)(n^2 - sum t_k^2)); 0 if that vanishes.
    double *true_count = calloc((size_t)classes * 2, sizeof *true_count);
    if (!true_count) return qft_fail(err, QFT_ERR_OOM, "matthews_correlation: out of memory");
    double *pred_count = true_count + classes;
    double correct = 0.0;
    for (size_t i = 0; i < n; i++) {
        true_count[labels[i]] += 1.0;
        pred_count[predictions[i]] += 1.0;
        correct += predictions[i] == labels[i];
    }
    double samples = (double)n, tp_dot = 0.0, pp_dot = 0.0, tt_dot = 0.0;
    for (int k = 0; k < classes; k++) {
        tp_dot += true_count[k] * pred_count[k];
        pp_dot += pred_count[k] * pred_count[k];
        tt_dot += true_count[k] * true_count[k];
    }
    free(true_count);
    double cov_tp = correct * samples - tp_dot;
    double cov_pp = samples * samples - pp_dot;
    double cov_tt = samples * samples - tt_dot;
    *out = cov_pp * cov_tt == 0.0 ? 0.0 : cov_tp / sqrt(cov_pp * cov_tt);
    return QFT_OK;
}

// Pearson of two double arrays (two-pass: mean, then centered sums); 0 if either is constant.
static double pearson_double(const double *x, const double *y, size_t n) {
    double mean_x = 0.0, mean_y = 0.0;
    for (size_t i = 0; i < n; i++) {
        mean_x += x[i];
        mean_y += y[i];
    }
    mean_x /= (double)n;
    mean_y /= (double)n;
    double sxy = 0.0, sxx = 0.0, syy = 0.0;
    for (size_t i = 0; i < n; i++) {
        double dx = x[i] - mean_x, dy = y[i] - mean_y;
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if (sxx == 0.0 || syy == 0.0) return 0.0;
    double r = sxy / sqrt(sxx * syy);
    return r > 1.0 ? 1.0 : r < -1.0 ? -1.0 : r;  // rounding can step just past +-1
}

static qft_status to_double(const float *x, size_t n, const char *metric, double **out, qft_error *err) {
    double *d = malloc(n * sizeof *d);
    if (!d) return qft_fail(err, QFT_ERR_OOM, "%s: out of memory for %zu values", metric, n);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            free(d);
            return qft_fail(err, QFT_ERR_INVALID, "%s: element %zu is not finite", metric, i);
        }
        d[i] = x[i];
    }
    *out = d;
    return QFT_OK;
}

qft_status qft_metric_pearson(const float *x, const float *y, size_t n, double *out, qft_error *err) {
    qft_status status = check_args(x, y, n, "pearson", err);
    if (status != QFT_OK) return status;
    double *dx = NULL, *dy = NULL;
    if ((status = to_double(x, n, "pearson", &dx, err)) != QFT_OK) return status;
    if ((status = to_double(y, n, "pearson", &dy, err)) != QFT_OK) {
        free(dx);
        return status;
    }
    *out = pearson_double(dx, dy, n);
    free(dx);
    free(dy);
    return QFT_OK;
}

typedef struct {
    double value;
    size_t index;
} ranked_value;

static int compare_ranked(const void *a, const void *b) {
    const ranked_value *x = a, *y = b;
    if (x->value != y->value) return x->value < y->value ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;  // stable, so the result is deterministic
}

// Replaces values by their 1-based ranks, tied values sharing the mean of their ranks.
static qft_status rank_average(double *values, size_t n, const char *metric, qft_error *err) {
    ranked_value *order = malloc(n * sizeof *order);
    if (!order) return qft_fail(err, QFT_ERR_OOM, "%s: out of memory for %zu values", metric, n);
    for (size_t i = 0; i < n; i++) order[i] = (ranked_value){values[i], i};
    qsort(order, n, sizeof *order, compare_ranked);
    for (size_t start = 0; start < n;) {
        size_t stop = start + 1;
        while (stop < n && order[stop].value == order[start].value) stop++;
        double rank = 0.5 * (double)(start + 1 + stop);  // mean of ranks start+1 .. stop
        for (size_t k = start; k < stop; k++) values[order[k].index] = rank;
        start = stop;
    }
    free(order);
    return QFT_OK;
}

qft_status qft_metric_spearman(const float *x, const float *y, size_t n, double *out, qft_error *err) {
    qft_status status = check_args(x, y, n, "spearmanr", err);
    if (status != QFT_OK) return status;
    double *dx = NULL, *dy = NULL;
    if ((status = to_double(x, n, "spearmanr", &dx, err)) != QFT_OK) return status;
    if ((status = to_double(y, n, "spearmanr", &dy, err)) != QFT_OK) {
        free(dx);
        return status;
    }
    if ((status = rank_average(dx, n, "spearmanr", err)) == QFT_OK &&
        (status = rank_average(dy, n, "spearmanr", err)) == QFT_OK)
        *out = pearson_double(dx, dy, n);
    free(dx);
    free(dy);
    return status;
}

// Float class ids (as the loader stores them) to ints, checking they are whole and in range.
static qft_status to_classes(const float *x, size_t n, int num_labels, const char *task, const char *what,
                             int **out, qft_error *err) {
    int *c = malloc(n * sizeof *c);
    if (!c) return qft_fail(err, QFT_ERR_OOM, "%s: out of memory for %zu %s", task, n, what);
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (!(v >= 0.0f && v < (float)num_labels && v == floorf(v))) {
            free(c);
            return qft_fail(err, QFT_ERR_INVALID, "%s: %s %zu is %g, expected a class id in [0, %d)", task, what, i,
                            (double)v, num_labels);
        }
        c[i] = (int)v;
    }
    *out = c;
    return QFT_OK;
}

static qft_status metric_by_name(const char *name, const int *pred, const int *label, const float *pred_score,
                                 const float *label_score, size_t n, double *out, qft_error *err) {
    if (strcmp(name, "accuracy") == 0) return qft_metric_accuracy(pred, label, n, out, err);
    if (strcmp(name, "f1") == 0) return qft_metric_f1_binary(pred, label, n, out, err);
    if (strcmp(name, "matthews_correlation") == 0) return qft_metric_matthews(pred, label, n, out, err);
    if (strcmp(name, "pearson") == 0) return qft_metric_pearson(pred_score, label_score, n, out, err);
    if (strcmp(name, "spearmanr") == 0) return qft_metric_spearman(pred_score, label_score, n, out, err);
    return qft_fail(err, QFT_ERR_INTERNAL, "metric \"%s\": unknown", name);
}

qft_status qft_glue_metrics_compute(const char *task, const float *predictions, const float *labels, size_t n,
                                    qft_glue_metrics *out, qft_error *err) {
    memset(out, 0, sizeof *out);
    const qft_glue_task_info *info = qft_glue_task_find(task);
    if (!info) return qft_fail(err, QFT_ERR_INVALID, "GLUE task \"%s\": unknown", task ? task : "");
    qft_status status = check_args(predictions, labels, n, info->name, err);
    if (status != QFT_OK) return status;
    int *pred = NULL, *label = NULL;
    if (!info->is_regression) {
        if ((status = to_classes(predictions, n, info->num_labels, info->name, "prediction", &pred, err)) != QFT_OK)
            return status;
        if ((status = to_classes(labels, n, info->num_labels, info->name, "label", &label, err)) != QFT_OK) {
            free(pred);
            return status;
        }
    }
    double sum = 0.0;
    for (int m = 0; m < info->metric_count && status == QFT_OK; m++) {
        out->names[m] = info->metric_names[m];
        status = metric_by_name(info->metric_names[m], pred, label, predictions, labels, n, &out->values[m], err);
        sum += out->values[m];
    }
    free(pred);
    free(label);
    if (status != QFT_OK) {
        memset(out, 0, sizeof *out);
        return status;
    }
    out->count = info->metric_count;
    out->score = sum / info->metric_count;
    return QFT_OK;
}
