// Linear layer on the CPU: out = inp @ weight^T + bias through OpenBLAS sgemm, and its backward
// (dinp += dout @ weight, dweight += dout^T @ inp, dbias += column sums of dout).
#include <cblas.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"

void cpu_linear_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C,
                        int OC) {
    if (N <= 0 || OC <= 0) return;
    float beta = 0.0f;
    if (bias) {
        // Seed every row with the bias and let sgemm accumulate onto it (beta = 1): one pass over out.
#pragma omp parallel for schedule(static) if ((size_t)N * OC > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
        for (int row = 0; row < N; row++) {
            // A plain loop, not memcpy: rows are short (64..3072 floats) and a call per row cost 2% of the
            // demo step.
            float *out_row = out + (size_t)row * OC;
#pragma omp simd
            for (int c = 0; c < OC; c++) out_row[c] = bias[c];
        }
        beta = 1.0f;
    }
    if (C <= 0) {
        if (!bias) memset(out, 0, (size_t)N * OC * sizeof(float));
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C, beta, out, OC);
}

void cpu_linear_backward_input(float *dinp, const float *dout, const float *weight, int N, int C, int OC) {
    if (N <= 0 || C <= 0) return;
    if (OC <= 0) {
        memset(dinp, 0, (size_t)N * C * sizeof(float));
        return;
    }
    // dinp[N,C] = dout[N,OC] @ weight[OC,C] (beta = 0: OpenBLAS clears dinp and accumulates as with beta = 1)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C, 0.0f, dinp, C);
}

void cpu_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                         const float *weight, int N, int C, int OC) {
    if (N <= 0 || OC <= 0 || C < 0) return;
    if (dinp && C > 0) {
        // dinp[N,C] += dout[N,OC] @ weight[OC,C]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f,
                    dinp, C);
    }
    if (dweight && C > 0) {
        // dweight[OC,C] += dout^T[OC,N] @ inp[N,C]
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight,
                    C);
    }
    if (dbias) cpu_column_sums_accumulate(dbias, dout, N, OC, (size_t)OC);
}
