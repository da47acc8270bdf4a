// LayerNorm over the last dim on the CPU (biased variance, rstd = 1/sqrt(var + eps)), and its
// backward: rows in parallel for dinp, then column blocks in parallel for dweight/dbias.
#include <math.h>

#include "backend/cpu/cpu_ops.h"

void cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                           const float *bias, int N, int C, float eps) {
    if (N <= 0 || C <= 0) return;
#pragma omp parallel for schedule(static) if ((size_t)N * C > QFT_CPU_PARALLEL_MIN_COMPUTE)
    for (int row = 0; row < N; row++) {
        const float *x = inp + (size_t)row * C;
        float *y = out + (size_t)row * C;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int c = 0; c < C; c++) sum += x[c];
        float row_mean = sum / (float)C;
        // Two-pass variance: no cancellation for rows with a large mean (BERT's outlier dims).
        float sum_sq = 0.0f;
#pragma omp simd reduction(+ : sum_sq)
        for (int c = 0; c < C; c++) {
            float centered = x[c] - row_mean;
            sum_sq += centered * centered;
        }
        float row_rstd = 1.0f / sqrtf(sum_sq / (float)C + eps);
        for (int c = 0; c < C; c++) {
            float normalized = (x[c] - row_mean) * row_rstd;
            float scaled = weight ? normalized * weight[c] : normalized;
            y[c] = bias ? scaled + bias[c] : scaled;
        }
        if (mean) mean[row] = row_mean;
        if (rstd) rstd[row] = row_rstd;
    }
}

void cpu_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *weight, const float *mean, const float *rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    if (dinp) {
#pragma omp parallel for schedule(static) if ((size_t)N * C > QFT_CPU_PARALLEL_MIN_COMPUTE)
        for (int row = 0; row < N; row++) {
            const float *x = inp + (size_t)row * C;
            const float *dy = dout + (size_t)row * C;
            float *dx = dinp + (size_t)row * C;
            float row_mean = mean[row], row_rstd = rstd[row];
            // dnorm = dy * weight; dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm))
            float sum_dnorm = 0.0f, sum_dnorm_norm = 0.0f;
#pragma omp simd reduction(+ : sum_dnorm, sum_dnorm_norm)
            for (int c = 0; c < C; c++) {
                float normalized = (x[c] - row_mean) * row_rstd;
                float dnorm = weight ? dy[c] * weight[c] : dy[c];
                sum_dnorm += dnorm;
                sum_dnorm_norm += dnorm * normalized;
            }
            float mean_dnorm = sum_dnorm / (float)C;
            float mean_dnorm_norm = sum_dnorm_norm / (float)C;
            for (int c = 0; c < C; c++) {
                float normalized = (x[c] - row_mean) * row_rstd;
                float dnorm = weight ? dy[c] * weight[c] : dy[c];
                dx[c] += (dnorm - mean_dnorm - normalized * mean_dnorm_norm) * row_rstd;
            }
        }
    }
    if (dweight || dbias) {
        int block_count = (C + QFT_CPU_COLUMN_BLOCK - 1) / QFT_CPU_COLUMN_BLOCK;
#pragma omp parallel for schedule(static) if ((size_t)N * C > QFT_CPU_PARALLEL_MIN_COMPUTE && block_count > 1)
        for (int block = 0; block < block_count; block++) {
            int col_begin = block * QFT_CPU_COLUMN_BLOCK;
            int width = C - col_begin < QFT_CPU_COLUMN_BLOCK ? C - col_begin : QFT_CPU_COLUMN_BLOCK;
            double acc_weight[QFT_CPU_COLUMN_BLOCK] = {0}, acc_bias[QFT_CPU_COLUMN_BLOCK] = {0};
            for (int row = 0; row < N; row++) {
                const float *x = inp + (size_t)row * C + col_begin;
                const float *dy = dout + (size_t)row * C + col_begin;
                float row_mean = mean[row], row_rstd = rstd[row];
                for (int c = 0; c < width; c++) {
                    float normalized = (x[c] - row_mean) * row_rstd;
                    acc_weight[c] += (double)(dy[c] * normalized);
                    acc_bias[c] += (double)dy[c];
                }
            }
            for (int c = 0; c < width; c++) {
                if (dweight) dweight[col_begin + c] += (float)acc_weight[c];
                if (dbias) dbias[col_begin + c] += (float)acc_bias[c];
            }
        }
    }
}
