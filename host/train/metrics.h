// Evaluation metrics for classification and regression, and the per-task GLUE score.
// Definitions follow scikit-learn (accuracy_score, f1_score, matthews_corrcoef) and SciPy
// (pearsonr, spearmanr), which HF `evaluate`'s glue metric calls; all sums are in double.
#ifndef QFT_TRAIN_METRICS_H
#define QFT_TRAIN_METRICS_H

#include <stddef.h>

#include "../core/status.h"

// Every function errors (QFT_ERR_INVALID) on n == 0 or a NULL array. Class labels are ints >= 0.

// Fraction of i with predictions[i] == labels[i].
qft_status qft_metric_accuracy(const int *predictions, const int *labels, size_t n, double *out, qft_error *err);

// Binary F1 with class 1 as the positive class: 2 TP / (2 TP + FP + FN); 0 when there is no positive
// prediction or label at all (sklearn's zero_division default). Values other than 0/1 are an error.
qft_status qft_metric_f1_binary(const int *predictions, const int *labels, size_t n, double *out, qft_error *err);

// Matthews correlation coefficient, multiclass form (sklearn's matthews_corrcoef, from the confusion
// matrix); 0 when predictions or labels are constant (the denominator vanishes), as sklearn.
// Class ids must be < 65536.
qft_status qft_metric_matthews(const int *predictions, const int *labels, size_t n, double *out, qft_error *err);

// Pearson correlation. Undefined for a constant x or y (SciPy returns NaN); qft returns 0 there so
// that a degenerate early evaluation still logs a number. Non-finite inputs are an error.
qft_status qft_metric_pearson(const float *x, const float *y, size_t n, double *out, qft_error *err);

// Spearman rank correlation: Pearson of the ranks, ties getting their average rank (SciPy's
// spearmanr / rankdata(method="average")). Constant input -> 0 as qft_metric_pearson.
qft_status qft_metric_spearman(const float *x, const float *y, size_t n, double *out, qft_error *err);

// The GLUE score of one task: CoLA Matthews correlation; SST-2, MNLI (matched or mismatched), QNLI,
// RTE, WNLI accuracy; MRPC, QQP F1 and accuracy; STS-B Pearson and Spearman. `score` is the mean of
// the task's metrics, as the GLUE leaderboard averages a two-metric task into its task score.
typedef struct {
    int count;                 // 1 or 2
    const char *names[2];      // "matthews_correlation", "accuracy", "f1", "pearson", "spearmanr"
    double values[2];
    double score;              // mean of values[0..count)
} qft_glue_metrics;

// task as qft_glue_task_find takes it ("cola", "sst-2", "STS-B", ...). predictions: the predicted
// class index (integer-valued float in [0, num_labels)) or, for STS-B, the predicted score; labels
// likewise (the loader's qft_glue_example.label). Errors on an unknown task, n == 0, a non-integer or
// out-of-range class, a non-finite score.
qft_status qft_glue_metrics_compute(const char *task, const float *predictions, const float *labels, size_t n,
                                    qft_glue_metrics *out, qft_error *err);

#endif
