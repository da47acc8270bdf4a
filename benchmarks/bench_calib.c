// Calibrator cost: seconds to observe and finish one 16M-element fp32 tensor with each calibrator,
// per tensor and per channel (a [16384, 1024] activation, channels = columns). One thread.
//
// Build and run from the repository root after building the library (cmake --build build):
//   cc -O3 -march=native -Ihost benchmarks/bench_calib.c build/libqftlib.a -lm -o build/bench_calib
//   build/bench_calib [rows cols]
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "quant/calib.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Gaussian data (Box-Muller on a xorshift stream) with one outlier column, like a transformer
// activation with an outlier channel.
static void fill(float *x, size_t rows, size_t cols) {
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < rows * cols; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        double u1 = ((double)(s >> 11) + 1.0) / 9007199254740993.0;
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        double u2 = (double)(s >> 11) / 9007199254740992.0;
        x[i] = (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
        if (i % cols == 7) x[i] *= 30.0f;
    }
}

static double run(qft_calibrator_kind kind, const float *x, size_t rows, size_t cols, int channels) {
    qft_quant_format f = qft_quant_format_default();
    f.calibrator = kind;
    qft_calibrator *c;
    qft_error err;
    float *scale = malloc((size_t)channels * sizeof(float)), *zp = malloc((size_t)channels * sizeof(float));
    double t0 = now_s();
    if (qft_calibrator_create(&f, channels, "bench", &c, &err) != QFT_OK ||
        qft_calibrator_observe(c, x, rows, cols, QFT_CALIB_AXIS_COLUMN, &err) != QFT_OK ||
        qft_calibrator_finish(c, scale, zp, NULL, NULL, &err) != QFT_OK) {
        fprintf(stderr, "%s\n", err.message);
        exit(1);
    }
    double t = now_s() - t0;
    qft_calibrator_free(c);
    free(scale);
    free(zp);
    return t;
}

int main(int argc, char **argv) {
    size_t rows = argc > 2 ? strtoul(argv[1], NULL, 10) : 16384, cols = argc > 2 ? strtoul(argv[2], NULL, 10) : 1024;
    float *x = malloc(rows * cols * sizeof(float));
    if (!x) return 1;
    fill(x, rows, cols);
    printf("calibrating [%zu, %zu] = %.1fM values, 8-bit signed symmetric, one batch, 1 thread\n", rows, cols,
           (double)(rows * cols) / 1e6);
    printf("%-11s %12s %13s\n", "calibrator", "per tensor s", "per column s");
    for (int k = QFT_CALIB_MINMAX; k <= QFT_CALIB_ENTROPY; k++)
        printf("%-11s %12.3f %13.3f\n", qft_calibrator_name((qft_calibrator_kind)k),
               run((qft_calibrator_kind)k, x, rows, cols, 1), run((qft_calibrator_kind)k, x, rows, cols, (int)cols));
    free(x);
    return 0;
}
