// Weight-oscillation control (Nagel et al. 2022): the dampening loss's gradient against finite
// differences, the tracker on constructed code sequences (flip-flop vs drift), freezing, the
// frozen-gradient mask and the schedules.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "method/oscillation.h"
#include "test_util.h"

static const qft_backend *be;

static void test_dampen_gradient(void) {
    enum { ROWS = 3, C = 5 };
    float w[ROWS * C], dw[ROWS * C], scale[ROWS] = {0.1f, 0.25f, 0.05f}, zero[ROWS] = {0, 1, -2};
    qft_fq_layout L = {.qmin = -4, .qmax = 3, .axis = QFT_FQ_PER_ROW};
    for (int i = 0; i < ROWS * C; i++) {
        // Off-centre points inside a bin (|x/s - code| near 0.3) plus two clipped ones.
        float s = scale[i / C];
        w[i] = s * ((float)((i * 7) % 8 - 4) + 0.3f * ((i % 2) ? 1.0f : -1.0f)) - s * zero[i / C];
    }
    w[2] = 5.0f, w[C + 1] = -9.0f;  // clipped: no gradient
    memset(dw, 0, sizeof dw);
    const float coef = 0.7f;
    double loss = be->oscillation_dampen(dw, w, scale, zero, ROWS, C, &L, coef);
    CHECK(loss > 0.0, "dampening loss %g > 0", loss);
    CHECK(dw[2] == 0.0f && dw[C + 1] == 0.0f, "clipped weights get no dampening gradient");
    for (int i = 0; i < ROWS * C; i++) {
        if (i == 2 || i == C + 1) continue;
        double h = 1e-3 * scale[i / C];
        float saved = w[i];
        w[i] = saved + (float)h;
        double up = be->oscillation_dampen(NULL, w, scale, zero, ROWS, C, &L, coef);
        w[i] = saved - (float)h;
        double down = be->oscillation_dampen(NULL, w, scale, zero, ROWS, C, &L, coef);
        w[i] = saved;
        double fd = coef * (up - down) / (2 * h);
        CHECK(fabs(fd - dw[i]) <= 1e-3 * fabs(fd) + 1e-6, "element %d: gradient %g vs finite difference %g", i, dw[i],
              fd);
    }
}

static void test_bin_regularizer(void) {
    enum { ROWS = 2, C = 12 };
    float w[ROWS * C], dw[ROWS * C] = {0}, scale[ROWS] = {0.2f, 0.5f}, zero[ROWS] = {0, 0};
    qft_fq_layout L = {.qmin = -2, .qmax = 1, .axis = QFT_FQ_PER_ROW};
    for (int i = 0; i < ROWS * C; i++) {
        // Several weights per code (so the variance term is live), off the rounding boundaries.
        float s = scale[i / C];
        w[i] = s * ((float)(i % 4 - 2) + 0.05f * (float)((i * 5) % 7) - 0.17f);
    }
    const float coef = 0.3f;
    double loss = be->bin_regularizer(dw, w, scale, zero, ROWS, C, &L, coef);
    CHECK(loss > 0.0, "bin regularizer loss %g > 0", loss);
    int checked = 0;
    for (int i = 0; i < ROWS * C; i++) {
        float s = scale[i / C], saved = w[i];
        if (saved < s * L.qmin || saved > s * L.qmax) continue;
        double h = 1e-3 * s;
        w[i] = saved + (float)h;
        double up = be->bin_regularizer(NULL, w, scale, zero, ROWS, C, &L, coef);
        w[i] = saved - (float)h;
        double down = be->bin_regularizer(NULL, w, scale, zero, ROWS, C, &L, coef);
        w[i] = saved;
        double fd = coef * (up - down) / (2 * h);
        CHECK(fabs(fd - dw[i]) <= 2e-3 * fabs(fd) + 1e-5, "element %d: bin regularizer gradient %g vs fd %g", i,
              dw[i], fd);
        checked++;
    }
    CHECK(checked >= 16, "gradients checked on %d in-range weights (the rest are clipped)", checked);
    // Weights exactly on their bin centres, one per code: nothing to regularize.
    float centred[4] = {-0.4f, -0.2f, 0.0f, 0.2f}, dc[4] = {0};
    float one_scale = 0.2f, one_zero = 0.0f;
    qft_fq_layout T = {.qmin = -2, .qmax = 1, .axis = QFT_FQ_PER_TENSOR};
    CHECK(be->bin_regularizer(dc, centred, &one_scale, &one_zero, 1, 4, &T, 1.0f) == 0.0 && dc[0] == 0.0f,
          "weights on distinct bin centres have zero loss and gradient");
}

// Runs the tracker over a sequence of weight values for one element; returns frozen.
static int track_sequence(const float *values, int steps, float threshold, float momentum, float *freq_out,
                          float *final_w) {
    float w, scale = 1.0f, zero = 0.0f, freq = 0.0f, ema = 0.0f;
    int8_t prev = 0, dir = 0;
    uint8_t frozen = 0;
    qft_fq_layout L = {.qmin = -8, .qmax = 7, .axis = QFT_FQ_PER_TENSOR};
    for (int t = 0; t < steps; t++) {
        w = values[t];
        be->oscillation_track(&w, &scale, &zero, 1, 1, &L, &prev, &dir, &freq, &ema, &frozen, momentum, threshold,
                              t == 0);
    }
    *freq_out = freq;
    *final_w = w;
    return frozen;
}

static void test_tracker(void) {
    enum { STEPS = 60 };
    float flip[STEPS], drift[STEPS], freq, final_w;
    for (int t = 0; t < STEPS; t++) {
        flip[t] = (t % 2) ? 2.6f : 2.4f;                     // codes 2, 3, 2, 3: an oscillation each step
        drift[t] = -5.0f + 0.2f * (float)t;                  // codes rise steadily: never an oscillation
    }
    CHECK(!track_sequence(flip, STEPS, 0.0f, 0.1f, &freq, &final_w), "no freezing with threshold 0");
    // After the first two moves every flip reverses the last direction: f -> 1 - 0.9^(n-2).
    double expected = 1.0 - pow(0.9, STEPS - 2);
    CHECK(fabs(freq - expected) < 1e-4, "flip-flop frequency %g (expected %g)", freq, expected);
    CHECK(!track_sequence(drift, STEPS, 0.0f, 0.1f, &freq, &final_w) && freq == 0.0f,
          "a monotone drift is no oscillation (frequency %g)", freq);
    int frozen = track_sequence(flip, STEPS, 0.5f, 0.1f, &freq, &final_w);
    CHECK(frozen, "the flip-flop weight freezes once its frequency passes 0.5");
    CHECK(final_w == 2.0f || final_w == 3.0f, "a frozen weight sits on a bin centre (%g)", final_w);

    uint8_t mask[4] = {0, 1, 0, 1};
    float grad[4] = {1, 2, 3, 4};
    be->oscillation_mask_grad(grad, mask, 4);
    CHECK(grad[0] == 1 && grad[1] == 0 && grad[2] == 3 && grad[3] == 0, "frozen weights get no gradient");
}

static void test_schedules(void) {
    qft_oscillation_config cfg = {.dampen_lambda = 0.1, .freeze_threshold = 0.01, .freeze_threshold_start = 0.1,
                                  .momentum = 0.01, .start = 0.25, .max_bits = 4};
    CHECK(qft_oscillation_lambda(&cfg, 0, 100) == 0.0 && qft_oscillation_lambda(&cfg, 24, 100) == 0.0,
          "lambda is 0 before 25%% of training");
    CHECK(fabs(qft_oscillation_lambda(&cfg, 25, 100)) < 1e-12, "lambda starts its ramp at 0");
    CHECK(fabs(qft_oscillation_lambda(&cfg, 100, 100) - 0.1) < 1e-12, "lambda reaches dampen_lambda at the end");
    CHECK(fabs(qft_oscillation_lambda(&cfg, 62, 100) - 0.05 * (1 - cos(M_PI * 37.0 / 75.0))) < 1e-12,
          "lambda follows the cosine ramp");
    CHECK(qft_oscillation_threshold(&cfg, 10, 100) == 0.0, "no freezing before the start");
    CHECK(fabs(qft_oscillation_threshold(&cfg, 25, 100) - 0.1) < 1e-12 &&
              fabs(qft_oscillation_threshold(&cfg, 100, 100) - 0.01) < 1e-12,
          "threshold goes from freeze_threshold_start to freeze_threshold");
}

int main(void) {
    be = qft_backend_cpu();
    test_dampen_gradient();
    test_bin_regularizer();
    test_tracker();
    test_schedules();
    QFT_TEST_SUMMARY();
}
