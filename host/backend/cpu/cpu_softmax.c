// Row softmax over the last dim on the CPU (max-subtracted for stability) and its backward,
// dinp += out * (dout - sum(out * dout)) per row.
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"

void cpu_softmax_forward(float *out, const float *inp, int N, int C) {
    if (N <= 0 || C <= 0) return;
#pragma omp parallel for schedule(static) if ((size_t)N * C > QFT_CPU_PARALLEL_MIN_COMPUTE)
    for (int row = 0; row < N; row++) {
        const float *x = inp + (size_t)row * C;
        float *y = out + (size_t)row * C;
        float row_max = -INFINITY;
        for (int c = 0; c < C; c++) row_max = x[c] > row_max ? x[c] : row_max;
        if (y != x) memcpy(y, x, (size_t)C * sizeof(float));
        float sum = cpu_exp_shifted_sum(y, C, row_max);
        float inv_sum = 1.0f / sum;
        for (int c = 0; c < C; c++) y[c] *= inv_sum;
    }
}

void cpu_softmax_backward(float *dinp, const float *out, const float *dout, int N, int C) {
    if (!dinp || N <= 0 || C <= 0) return;
#pragma omp parallel for schedule(static) if ((size_t)N * C > QFT_CPU_PARALLEL_MIN_COMPUTE)
    for (int row = 0; row < N; row++) {
        const float *y = out + (size_t)row * C;
        const float *dy = dout + (size_t)row * C;
        float *dx = dinp + (size_t)row * C;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int c = 0; c < C; c++) dot += y[c] * dy[c];
        for (int c = 0; c < C; c++) dx[c] += y[c] * (dy[c] - dot);
    }
}
