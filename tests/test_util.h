// Tiny assertion helpers shared by the C tests: count checks, print failures, exit non-zero on any.
// Each test binary ends with QFT_TEST_SUMMARY(), which prints "N passed, M failed".
#ifndef QFT_TEST_UTIL_H
#define QFT_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int qft_test_passed = 0;
static int qft_test_failed = 0;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (cond) {                                                               \
            qft_test_passed++;                                                    \
        } else {                                                                  \
            qft_test_failed++;                                                    \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                  \
            fprintf(stderr, __VA_ARGS__);                                         \
            fprintf(stderr, "\n");                                                \
        }                                                                         \
    } while (0)

// max |a-b| / max(max|b|, floor): a relative error normalized by the reference tensor's scale.
static inline double qft_max_rel_error(const float *a, const float *b, size_t n, double floor_value) {
    double max_diff = 0.0, max_ref = floor_value;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > max_diff || isnan(d)) max_diff = isnan(d) ? INFINITY : d;
        if (fabs((double)b[i]) > max_ref) max_ref = fabs((double)b[i]);
    }
    return max_diff / max_ref;
}

#define QFT_TEST_SUMMARY()                                                        \
    do {                                                                          \
        printf("%d passed, %d failed\n", qft_test_passed, qft_test_failed);       \
        return qft_test_failed == 0 && qft_test_passed > 0 ? 0 : 1;               \
    } while (0)

#endif
