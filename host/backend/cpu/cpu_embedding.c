// Row lookups on the CPU: token/position/segment embeddings (accumulating gather and its scatter-add
// backward) and select_tokens, the gather of a run of tokens (CLS pooling).
#include <string.h>

#include "backend/cpu/cpu_ops.h"

void cpu_embedding_forward(float *out, const int32_t *ids, const float *table, int N, int C) {
    if (N <= 0 || C <= 0) return;
#pragma omp parallel for schedule(static) if ((size_t)N * C > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (int row = 0; row < N; row++) {
        if (ids[row] < 0) continue;  // negative ids (padding sentinels) contribute nothing
        const float *table_row = table + (size_t)ids[row] * C;
        float *out_row = out + (size_t)row * C;
        for (int c = 0; c < C; c++) out_row[c] += table_row[c];
    }
}

void cpu_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int N, int C) {
    if (!dtable || N <= 0 || C <= 0) return;
    // Repeated ids make a row-parallel scatter race; column blocks are owned by one thread each
    // and visited in row order, so the sums are race-free and deterministic.
    int block_count = (C + QFT_CPU_COLUMN_BLOCK - 1) / QFT_CPU_COLUMN_BLOCK;
#pragma omp parallel for schedule(static) if ((size_t)N * C > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND && block_count > 1)
    for (int block = 0; block < block_count; block++) {
        int col_begin = block * QFT_CPU_COLUMN_BLOCK;
        int width = C - col_begin < QFT_CPU_COLUMN_BLOCK ? C - col_begin : QFT_CPU_COLUMN_BLOCK;
        for (int row = 0; row < N; row++) {
            if (ids[row] < 0) continue;
            float *dtable_row = dtable + (size_t)ids[row] * C + col_begin;
            const float *dout_row = dout + (size_t)row * C + col_begin;
            for (int c = 0; c < width; c++) dtable_row[c] += dout_row[c];
        }
    }
}

void cpu_select_tokens_forward(float *out, const float *inp, int B, int T, int C, int first, int count) {
    size_t row_floats = (size_t)count * C;
    for (int b = 0; b < B; b++)
        memcpy(out + (size_t)b * row_floats, inp + ((size_t)b * T + first) * C, row_floats * sizeof(float));
}

void cpu_select_tokens_backward(float *dinp, const float *dout, int B, int T, int C, int first, int count) {
    if (!dinp) return;
    size_t row_floats = (size_t)count * C;
    for (int b = 0; b < B; b++) {
        float *dinp_rows = dinp + ((size_t)b * T + first) * C;
        const float *dout_rows = dout + (size_t)b * row_floats;
        for (size_t i = 0; i < row_floats; i++) dinp_rows[i] += dout_rows[i];
    }
}
