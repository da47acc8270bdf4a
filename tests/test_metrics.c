// Checks host/train/metrics.c against values from tests/oracle/metrics_oracle.py and the edge cases
// (constant predictions, empty input, bad class ids) and the per-task GLUE score selection.
#include <math.h>
#include <string.h>

#include "../host/train/metrics.h"
#include "test_util.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))
#define TOL 1e-9

// The fixed arrays of tests/oracle/metrics_oracle.py (CLASS_CASES, REGRESSION_CASES), in its order.
static const int binary_pred[] = {1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1};
static const int binary_label[] = {1, 0, 0, 1, 0, 1, 1, 0, 1, 0, 0, 1};
static const int skewed_pred[] = {0, 0, 0, 1, 0, 0, 0, 0, 1, 0};
static const int skewed_label[] = {0, 1, 0, 1, 0, 0, 1, 0, 0, 0};
static const int three_pred[] = {0, 1, 2, 2, 1, 0, 0, 2, 1, 1, 2, 0, 1};
static const int three_label[] = {0, 1, 2, 1, 1, 0, 2, 2, 0, 1, 2, 0, 2};
static const int constant_pred[] = {1, 1, 1, 1, 1, 1};
static const int constant_label[] = {0, 1, 1, 0, 1, 0};
static const float scores_x[] = {0.5f, 2.25f, 3.0f, 4.75f, 1.5f, 2.0f, 5.0f, 0.0f};
static const float scores_y[] = {1.0f, 2.0f, 3.5f, 4.0f, 1.25f, 2.5f, 4.5f, 0.75f};
static const float ties_x[] = {1.0f, 2.0f, 2.0f, 3.0f, 3.0f, 3.0f, 4.0f, 0.5f, 2.0f};
static const float ties_y[] = {0.0f, 1.5f, 1.0f, 3.0f, 2.0f, 3.0f, 5.0f, 1.0f, 1.0f};
static const float anti_x[] = {3.0f, 1.0f, 2.0f, 5.0f, 4.0f};
static const float anti_y[] = {0.25f, 4.0f, 1.0f, 0.5f, 0.0f};

// Output of `/usr/bin/python3 tests/oracle/metrics_oracle.py` ("reference: numpy textbook formulas":
// that interpreter has numpy but neither scipy nor sklearn; the script cross-checks MCC two ways).
static const double expected_class[4][3] = {
    {0.75, 0.7692307692307693, 0.50709255283711},             // binary: accuracy, f1, mcc
    {0.7, 0.4, 0.2182178902359924},                           // binary_skewed
    {0.6923076923076923, NAN, 0.5446428571428571},            // three_class (no binary F1)
    {0.5, 0.6666666666666666, 0.0},                           // constant_prediction
};
static const double expected_regression[3][2] = {
    {0.9669211627637868, 0.9761904761904763},  // scores: pearson, spearman
    {0.8820290356874896, 0.9163795899053138},  // ties
    {-0.7733891912365308, -0.7},               // anti
};

static void check_class_case(const char *name, const int *p, const int *l, size_t n, const double *expected) {
    qft_error err = {{0}};
    double v = -2.0;
    CHECK(qft_metric_accuracy(p, l, n, &v, &err) == QFT_OK && fabs(v - expected[0]) < TOL,
          "%s accuracy %.17g vs %.17g", name, v, expected[0]);
    if (!isnan(expected[1])) {
        v = -2.0;
        CHECK(qft_metric_f1_binary(p, l, n, &v, &err) == QFT_OK && fabs(v - expected[1]) < TOL,
              "%s f1 %.17g vs %.17g", name, v, expected[1]);
    } else {
        CHECK(qft_metric_f1_binary(p, l, n, &v, &err) == QFT_ERR_INVALID, "%s: F1 of 3 classes must fail", name);
    }
    v = -2.0;
    CHECK(qft_metric_matthews(p, l, n, &v, &err) == QFT_OK && fabs(v - expected[2]) < TOL,
          "%s mcc %.17g vs %.17g", name, v, expected[2]);
}

static void check_regression_case(const char *name, const float *x, const float *y, size_t n,
                                  const double *expected) {
    qft_error err = {{0}};
    double v = -2.0;
    CHECK(qft_metric_pearson(x, y, n, &v, &err) == QFT_OK && fabs(v - expected[0]) < TOL,
          "%s pearson %.17g vs %.17g", name, v, expected[0]);
    v = -2.0;
    CHECK(qft_metric_spearman(x, y, n, &v, &err) == QFT_OK && fabs(v - expected[1]) < TOL,
          "%s spearman %.17g vs %.17g", name, v, expected[1]);
    // Symmetric in its arguments.
    double w = -2.0;
    CHECK(qft_metric_spearman(y, x, n, &w, &err) == QFT_OK && fabs(w - v) < 1e-12, "%s spearman symmetry", name);
}

static void test_oracle_values(void) {
    check_class_case("binary", binary_pred, binary_label, N_OF(binary_pred), expected_class[0]);
    check_class_case("binary_skewed", skewed_pred, skewed_label, N_OF(skewed_pred), expected_class[1]);
    check_class_case("three_class", three_pred, three_label, N_OF(three_pred), expected_class[2]);
    check_class_case("constant_prediction", constant_pred, constant_label, N_OF(constant_pred), expected_class[3]);
    check_regression_case("scores", scores_x, scores_y, N_OF(scores_x), expected_regression[0]);
    check_regression_case("ties", ties_x, ties_y, N_OF(ties_x), expected_regression[1]);
    check_regression_case("anti", anti_x, anti_y, N_OF(anti_x), expected_regression[2]);
}

static void test_edge_cases(void) {
    qft_error err = {{0}};
    double v = 0.0;
    int a[] = {0, 1}, b[] = {0, 1};
    float x[] = {1.0f, 2.0f}, y[] = {3.0f, 4.0f};
    // Empty input is an error for every metric, with a message naming the metric.
    CHECK(qft_metric_accuracy(a, b, 0, &v, &err) == QFT_ERR_INVALID && strstr(err.message, "accuracy"), "acc empty");
    CHECK(qft_metric_f1_binary(a, b, 0, &v, &err) == QFT_ERR_INVALID, "f1 empty");
    CHECK(qft_metric_matthews(a, b, 0, &v, &err) == QFT_ERR_INVALID, "mcc empty");
    CHECK(qft_metric_pearson(x, y, 0, &v, &err) == QFT_ERR_INVALID, "pearson empty");
    CHECK(qft_metric_spearman(x, y, 0, &v, &err) == QFT_ERR_INVALID && strstr(err.message, "empty"), "spearman empty");
    CHECK(qft_metric_accuracy(NULL, b, 2, &v, &err) == QFT_ERR_INVALID, "NULL array");

    // Constant predictions or constant labels: MCC 0 (sklearn), F1 0 with no positives at all.
    int zeros[] = {0, 0, 0, 0}, mixed[] = {0, 1, 0, 1};
    v = 9.0;
    CHECK(qft_metric_matthews(zeros, mixed, 4, &v, &err) == QFT_OK && v == 0.0, "mcc constant pred %g", v);
    v = 9.0;
    CHECK(qft_metric_matthews(mixed, zeros, 4, &v, &err) == QFT_OK && v == 0.0, "mcc constant label %g", v);
    v = 9.0;
    CHECK(qft_metric_f1_binary(zeros, zeros, 4, &v, &err) == QFT_OK && v == 0.0, "f1 no positives %g", v);
    v = 9.0;
    CHECK(qft_metric_matthews(mixed, mixed, 4, &v, &err) == QFT_OK && fabs(v - 1.0) < 1e-12, "mcc perfect %g", v);
    int flipped[] = {1, 0, 1, 0};
    CHECK(qft_metric_matthews(flipped, mixed, 4, &v, &err) == QFT_OK && fabs(v + 1.0) < 1e-12, "mcc inverse %g", v);
    int negative[] = {0, -1};
    CHECK(qft_metric_matthews(negative, b, 2, &v, &err) == QFT_ERR_INVALID, "mcc negative class");
    CHECK(qft_metric_f1_binary(negative, b, 2, &v, &err) == QFT_ERR_INVALID, "f1 negative class");

    // Constant regression input: defined as 0 here (SciPy gives NaN).
    float flat[] = {2.0f, 2.0f, 2.0f}, ramp[] = {1.0f, 2.0f, 3.0f};
    v = 9.0;
    CHECK(qft_metric_pearson(flat, ramp, 3, &v, &err) == QFT_OK && v == 0.0, "pearson constant %g", v);
    v = 9.0;
    CHECK(qft_metric_spearman(ramp, flat, 3, &v, &err) == QFT_OK && v == 0.0, "spearman constant %g", v);
    float bad[] = {1.0f, NAN, 3.0f};
    CHECK(qft_metric_pearson(bad, ramp, 3, &v, &err) == QFT_ERR_INVALID && strstr(err.message, "element 1"),
          "pearson NaN: %s", err.message);
    // A monotone but nonlinear relation: Spearman 1, Pearson below 1.
    float cube[] = {1.0f, 8.0f, 27.0f};
    CHECK(qft_metric_spearman(ramp, cube, 3, &v, &err) == QFT_OK && fabs(v - 1.0) < 1e-12, "spearman monotone");
    CHECK(qft_metric_pearson(ramp, cube, 3, &v, &err) == QFT_OK && v < 0.999, "pearson nonlinear %g", v);
}

static void test_glue_scores(void) {
    qft_error err = {{0}};
    qft_glue_metrics m;
    float pred[13], label[13];
    for (size_t i = 0; i < N_OF(binary_pred); i++) {
        pred[i] = (float)binary_pred[i];
        label[i] = (float)binary_label[i];
    }
    size_t n = N_OF(binary_pred);
    CHECK(qft_glue_metrics_compute("cola", pred, label, n, &m, &err) == QFT_OK && m.count == 1 &&
              strcmp(m.names[0], "matthews_correlation") == 0 && fabs(m.score - expected_class[0][2]) < TOL,
          "cola score: %s", err.message);
    const char *accuracy_tasks[] = {"sst2", "SST-2", "mnli", "qnli", "rte", "wnli"};
    for (size_t t = 0; t < N_OF(accuracy_tasks); t++)
        CHECK(qft_glue_metrics_compute(accuracy_tasks[t], pred, label, n, &m, &err) == QFT_OK && m.count == 1 &&
                  strcmp(m.names[0], "accuracy") == 0 && fabs(m.score - expected_class[0][0]) < TOL,
              "%s score: %s", accuracy_tasks[t], err.message);
    const char *f1_tasks[] = {"mrpc", "qqp"};
    for (size_t t = 0; t < N_OF(f1_tasks); t++)
        CHECK(qft_glue_metrics_compute(f1_tasks[t], pred, label, n, &m, &err) == QFT_OK && m.count == 2 &&
                  strcmp(m.names[0], "f1") == 0 && strcmp(m.names[1], "accuracy") == 0 &&
                  fabs(m.values[0] - expected_class[0][1]) < TOL && fabs(m.values[1] - expected_class[0][0]) < TOL &&
                  fabs(m.score - 0.5 * (expected_class[0][0] + expected_class[0][1])) < TOL,
              "%s score: %s", f1_tasks[t], err.message);
    CHECK(qft_glue_metrics_compute("sts-b", scores_x, scores_y, N_OF(scores_x), &m, &err) == QFT_OK && m.count == 2 &&
              strcmp(m.names[0], "pearson") == 0 && strcmp(m.names[1], "spearmanr") == 0 &&
              fabs(m.values[0] - expected_regression[0][0]) < TOL &&
              fabs(m.values[1] - expected_regression[0][1]) < TOL,
          "stsb score: %s", err.message);

    // MNLI has three classes; a fourth is out of range, and so is a fractional class or a test label (-1).
    float three_p[13], three_l[13];
    for (size_t i = 0; i < N_OF(three_pred); i++) {
        three_p[i] = (float)three_pred[i];
        three_l[i] = (float)three_label[i];
    }
    CHECK(qft_glue_metrics_compute("mnli", three_p, three_l, N_OF(three_pred), &m, &err) == QFT_OK &&
              fabs(m.score - expected_class[2][0]) < TOL, "mnli 3 classes");
    CHECK(qft_glue_metrics_compute("sst2", three_p, three_l, N_OF(three_pred), &m, &err) == QFT_ERR_INVALID &&
              strstr(err.message, "[0, 2)"), "sst2 class 2: %s", err.message);
    float frac[] = {0.5f, 1.0f}, test_labels[] = {-1.0f, -1.0f};
    CHECK(qft_glue_metrics_compute("rte", frac, label, 2, &m, &err) == QFT_ERR_INVALID, "fractional class");
    CHECK(qft_glue_metrics_compute("rte", pred, test_labels, 2, &m, &err) == QFT_ERR_INVALID && m.count == 0,
          "test labels: %s", err.message);
    CHECK(qft_glue_metrics_compute("squad", pred, label, n, &m, &err) == QFT_ERR_INVALID &&
              strstr(err.message, "squad"), "unknown task: %s", err.message);
    CHECK(qft_glue_metrics_compute("cola", pred, label, 0, &m, &err) == QFT_ERR_INVALID, "empty glue");
}

int main(void) {
    test_oracle_values();
    test_edge_cases();
    test_glue_scores();
    QFT_TEST_SUMMARY();
}
