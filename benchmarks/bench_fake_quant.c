// Fake-quant op throughput on the CPU backend in GB/s (bytes each op must read + write), next to a copy and an
// accumulate kernel in the same run as the memory-bandwidth yardsticks, at 1 and 2 threads (build target bench_fake_quant).
//
// usage: build/bench_fake_quant [rows C reps]     (default 4096 4096 9: 64 MB tensors, median of 9 runs)
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    const qft_backend *backend;
    float *x, *dout, *out, *dinp, *scale, *zero_point, *dscale, *dzero;
    int rows, C;
    size_t n;
} bench_data;

typedef enum { OP_COPY, OP_ACCUMULATE, OP_FORWARD, OP_STE, OP_LEARNABLE } bench_op;

// Bytes an op moves at minimum: the copy reads x and writes out; the accumulate and every backward read dout and
// read + write dinp, and the backwards also read x. Write-allocate traffic is not counted (the same for all).
static double op_bytes(bench_op op, size_t n) {
    switch (op) {
    case OP_COPY:
    case OP_FORWARD: return 2.0 * 4.0 * (double)n;
    case OP_ACCUMULATE: return 3.0 * 4.0 * (double)n;
    default: return 4.0 * 4.0 * (double)n;
    }
}

static void run_op(bench_data *d, bench_op op, const qft_fq_layout *layout) {
    const size_t n = d->n;
    switch (op) {
    case OP_COPY: {
        float *out = d->out;
        const float *x = d->x;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) out[i] = x[i];
        break;
    }
    case OP_ACCUMULATE: {
        float *dinp = d->dinp;
        const float *dout = d->dout;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) dinp[i] += dout[i];
        break;
    }
    case OP_FORWARD:
        d->backend->fake_quant_forward(d->out, d->x, d->scale, d->zero_point, d->rows, d->C, layout);
        break;
    case OP_STE:
        d->backend->fake_quant_backward(d->dinp, NULL, NULL, d->dout, d->x, d->scale, d->zero_point, d->rows, d->C,
                                        layout, 1.0f);
        break;
    case OP_LEARNABLE:
        d->backend->fake_quant_backward(d->dinp, d->dscale, d->dzero, d->dout, d->x, d->scale, d->zero_point, d->rows,
                                        d->C, layout, 1e-3f);
        break;
    }
}

// Median GB/s over reps timed runs after one untimed warm-up run.
static double measure(bench_data *d, bench_op op, const qft_fq_layout *layout, int reps) {
    double *seconds = malloc((size_t)reps * sizeof(double));
    run_op(d, op, layout);
    for (int r = 0; r < reps; r++) {
        double start = now_s();
        run_op(d, op, layout);
        seconds[r] = now_s() - start;
    }
    qsort(seconds, (size_t)reps, sizeof(double), compare_doubles);
    double median = seconds[reps / 2];
    free(seconds);
    return op_bytes(op, d->n) / median * 1e-9;
}

int main(int argc, char **argv) {
    bench_data d = {.backend = qft_backend_cpu()};
    d.rows = argc > 1 ? atoi(argv[1]) : 4096;
    d.C = argc > 2 ? atoi(argv[2]) : 4096;
    const int reps = argc > 3 ? atoi(argv[3]) : 9;
    if (d.rows <= 0 || d.C <= 0 || reps <= 0) {
        fprintf(stderr, "usage: %s [rows C reps]\n", argv[0]);
        return 2;
    }
    d.n = (size_t)d.rows * d.C;
    const size_t groups = (size_t)(d.rows > d.C ? d.rows : d.C);
    d.x = malloc(d.n * sizeof(float));
    d.dout = malloc(d.n * sizeof(float));
    d.out = malloc(d.n * sizeof(float));
    d.dinp = calloc(d.n, sizeof(float));
    d.scale = malloc(groups * sizeof(float));
    d.zero_point = malloc(groups * sizeof(float));
    d.dscale = calloc(groups, sizeof(float));
    d.dzero = calloc(groups, sizeof(float));
    if (!d.x || !d.dout || !d.out || !d.dinp || !d.scale || !d.zero_point || !d.dscale || !d.dzero) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    // Inputs spread over the 8-bit grid and beyond (a few percent clipped); every page touched before timing.
    uint64_t state = 12345;
    for (size_t i = 0; i < d.n; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        float u = (float)(state >> 40) * (1.0f / 16777216.0f);
        d.x[i] = (u - 0.5f) * 2.2f;
        d.dout[i] = u - 0.5f;
        d.out[i] = 0.0f;
    }
    for (size_t k = 0; k < groups; k++) {
        d.scale[k] = 1.0f / 127.0f * (1.0f + 0.001f * (float)(k % 7));
        d.zero_point[k] = (float)(k % 5);
    }

    const struct {
        const char *name;
        qft_fq_axis axis;
    } layouts[] = {{"per tensor", QFT_FQ_PER_TENSOR}, {"per row (weights)", QFT_FQ_PER_ROW},
                   {"per column (activations)", QFT_FQ_PER_COLUMN}};
    const struct {
        const char *name;
        bench_op op;
    } ops[] = {{"forward", OP_FORWARD}, {"STE backward", OP_STE}, {"learnable backward", OP_LEARNABLE}};
    const int thread_counts[2] = {1, 2};
    double copy_gbs[2], accumulate_gbs[2], gbs[3][3][2];
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(thread_counts[t]);
        copy_gbs[t] = measure(&d, OP_COPY, NULL, reps);
        accumulate_gbs[t] = measure(&d, OP_ACCUMULATE, NULL, reps);
        for (int l = 0; l < 3; l++) {
            qft_fq_layout layout = {.qmin = -128, .qmax = 127, .axis = layouts[l].axis};
            for (int o = 0; o < 3; o++) gbs[l][o][t] = measure(&d, ops[o].op, &layout, reps);
        }
    }

    printf("fake-quant throughput, [%d, %d] fp32 (%.0f MB per tensor), int8 grid, median of %d runs; GB/s = bytes "
           "read + written / time\n\n",
           d.rows, d.C, 4.0 * (double)d.n / 1048576.0, reps);
    printf("| kernel | bytes / element | 1 thread GB/s | 2 threads GB/s | 2 threads, share of the yardstick |\n");
    printf("| --- | --- | --- | --- | --- |\n");
    printf("| copy `out = x` (yardstick for forward) | 8 | %.1f | %.1f | 100%% |\n", copy_gbs[0], copy_gbs[1]);
    printf("| accumulate `dinp += dout` (yardstick for backward) | 12 | %.1f | %.1f | 100%% |\n", accumulate_gbs[0],
           accumulate_gbs[1]);
    for (int l = 0; l < 3; l++) {
        for (int o = 0; o < 3; o++) {
            double yardstick = ops[o].op == OP_FORWARD ? copy_gbs[1] : accumulate_gbs[1];
            printf("| %s %s | %d | %.1f | %.1f | %.0f%% |\n", layouts[l].name, ops[o].name,
                   ops[o].op == OP_FORWARD ? 8 : 16, gbs[l][o][0], gbs[l][o][1], 100.0 * gbs[l][o][1] / yardstick);
        }
    }
    free(d.x), free(d.dout), free(d.out), free(d.dinp), free(d.scale), free(d.zero_point), free(d.dscale);
    free(d.dzero);
    return 0;
}
