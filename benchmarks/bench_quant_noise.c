// Noise op throughput on the CPU backend: quant_noise_forward (uniform, Gaussian, Bernoulli, histogram) and the
// residual histogram that histogram noise measures every noise.adapt_every steps, next to
// fake_quant_forward on the same tensor and grid, in one process, interleaved repetitions (build target
// bench_quant_noise). The noise op replaces fake_quant_forward at a site during noise training
// (docs/methods.md §2), so the ratio is what the noise adds per quantized site.
//
// usage: build/bench_quant_noise [rows C reps threads]     (default 128 1024 15 2: median of 15 runs)
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend/backend.h"
#include "method/noise.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { OPS = 6, INNER = 20 };  // each timed sample runs the op INNER times

int main(int argc, char **argv) {
    const qft_backend *be = qft_backend_cpu();
    int rows = argc > 1 ? atoi(argv[1]) : 128, C = argc > 2 ? atoi(argv[2]) : 1024;
    int reps = argc > 3 ? atoi(argv[3]) : 15, threads = argc > 4 ? atoi(argv[4]) : 2;
    if (rows <= 0 || C <= 0 || reps <= 0 || threads <= 0) {
        fprintf(stderr, "usage: %s [rows C reps threads]\n", argv[0]);
        return 2;
    }
    omp_set_num_threads(threads);
    size_t n = (size_t)rows * C;
    float *x = malloc(n * sizeof(float)), *out = malloc(n * sizeof(float)), *scale = malloc((size_t)C * sizeof(float));
    double *seconds = malloc((size_t)OPS * reps * sizeof(double));
    if (!x || !out || !scale || !seconds) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    // Activations over a 4-bit symmetric per-column grid, a few percent clipped (as a W4A4 input site).
    uint64_t state = 12345;
    for (size_t i = 0; i < n; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = ((float)(state >> 40) * (1.0f / 16777216.0f) - 0.5f) * 2.2f;
    }
    for (int c = 0; c < C; c++) scale[c] = 1.0f / 7.0f * (1.0f + 0.001f * (float)(c % 7));
    qft_fq_layout layout = {.qmin = -8, .qmax = 7, .axis = QFT_FQ_PER_COLUMN};
    const char *names[OPS] = {"fake_quant_forward", "quant_noise_forward uniform", "quant_noise_forward gaussian",
                              "quant_noise_forward bernoulli", "quant_noise_forward histogram",
                              "quant_residual_histogram"};
    // Histogram noise from the residual histogram of this tensor (256 bins).
    uint64_t counts[QFT_NOISE_BINS];
    float cdf[QFT_NOISE_BINS + 1];
    size_t inside = be->quant_residual_histogram(x, scale, NULL, rows, C, &layout, QFT_NOISE_BINS, counts);
    qft_noise_histogram_cdf(counts, inside, QFT_NOISE_BINS, cdf);
    qft_quant_noise noise[OPS] = {
        {.kind = QFT_NOISE_UNIFORM},
        {.kind = QFT_NOISE_UNIFORM, .amplitude = 1.0f, .seed = 7, .stream = 3},
        {.kind = QFT_NOISE_GAUSSIAN, .amplitude = 1.0f, .seed = 7, .stream = 3},
        {.kind = QFT_NOISE_BERNOULLI, .amplitude = 1.0f, .p = 0.5f, .seed = 7, .stream = 3},
        {.kind = QFT_NOISE_HISTOGRAM, .amplitude = 1.0f, .seed = 7, .stream = 3, .cdf = cdf, .bins = QFT_NOISE_BINS},
        {.kind = QFT_NOISE_UNIFORM}};
    for (int rep = -1; rep < reps; rep++) {  // rep -1: untimed warm-up
        for (int op = 0; op < OPS; op++) {
            double start = now_s();
            for (int k = 0; k < INNER; k++) {
                if (op == 0) be->fake_quant_forward(out, x, scale, NULL, rows, C, &layout);
                else if (op == OPS - 1)
                    be->quant_residual_histogram(x, scale, NULL, rows, C, &layout, QFT_NOISE_BINS, counts);
                else {
                    noise[op].stream = (uint64_t)k;
                    be->quant_noise_forward(out, x, scale, NULL, rows, C, &layout, &noise[op]);
                }
            }
            if (rep >= 0) seconds[op * reps + rep] = (now_s() - start) / INNER;
        }
    }
    printf("[%d, %d] fp32, 4-bit per-column grid, %d thread(s), median of %d samples of %d calls\n\n", rows, C, threads,
           reps, INNER);
    printf("| op | Melem/s median [min, max] | time / fake_quant_forward |\n| --- | ---: | ---: |\n");
    double base = 0.0;
    for (int op = 0; op < OPS; op++) {
        double *s = seconds + (size_t)op * reps;
        qsort(s, (size_t)reps, sizeof(double), compare_doubles);
        double median = s[reps / 2];
        if (op == 0) base = median;
        printf("| %s | %.0f [%.0f, %.0f] | %.2f |\n", names[op], n / median * 1e-6, n / s[reps - 1] * 1e-6,
               n / s[0] * 1e-6, median / base);
    }
    free(x), free(out), free(scale), free(seconds);
    return 0;
}
