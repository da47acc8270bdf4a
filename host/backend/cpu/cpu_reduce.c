// Reductions of the CPU backend: column sums for bias-like gradients, the squared norm used for
// global gradient clipping, and in-place scaling. All are deterministic for any thread count.
#include "backend/cpu/cpu_ops.h"

// Fixed-size chunks (independent of the thread count) whose partial sums are added in chunk order,
// so sum_squares returns the same bits with 1 or 64 threads.
enum { SUM_SQUARES_MAX_CHUNKS = 256, SUM_SQUARES_MIN_CHUNK = 16384 };

// One column block; inlined with a constant width for full blocks so the accumulators stay in
// registers instead of making a store-to-load round trip per row.
static inline __attribute__((always_inline)) void column_block_sums(float *dst, const float *src, int rows,
                                                                    size_t row_stride, int width) {
    double acc[QFT_CPU_COLUMN_BLOCK] = {0};
    for (int row = 0; row < rows; row++) {
        const float *src_row = src + (size_t)row * row_stride;
        for (int c = 0; c < width; c++) acc[c] += (double)src_row[c];
    }
    for (int c = 0; c < width; c++) dst[c] += (float)acc[c];
}

void cpu_column_sums_accumulate(float *dst, const float *src, int rows, int cols, size_t row_stride) {
    if (rows <= 0 || cols <= 0) return;
    int block_count = (cols + QFT_CPU_COLUMN_BLOCK - 1) / QFT_CPU_COLUMN_BLOCK;
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND && block_count > 1)
    for (int block = 0; block < block_count; block++) {
        int col_begin = block * QFT_CPU_COLUMN_BLOCK;
        int width = cols - col_begin < QFT_CPU_COLUMN_BLOCK ? cols - col_begin : QFT_CPU_COLUMN_BLOCK;
        if (width == QFT_CPU_COLUMN_BLOCK)
            column_block_sums(dst + col_begin, src + col_begin, rows, row_stride, QFT_CPU_COLUMN_BLOCK);
        else
            column_block_sums(dst + col_begin, src + col_begin, rows, row_stride, width);
    }
}

double cpu_sum_squares(const float *x, size_t n) {
    if (n == 0) return 0.0;
    size_t chunk = (n + SUM_SQUARES_MAX_CHUNKS - 1) / SUM_SQUARES_MAX_CHUNKS;
    if (chunk < SUM_SQUARES_MIN_CHUNK) chunk = SUM_SQUARES_MIN_CHUNK;
    size_t chunk_count = (n + chunk - 1) / chunk;
    double partial[SUM_SQUARES_MAX_CHUNKS];
#pragma omp parallel for schedule(static) if (chunk_count > 1)
    for (size_t chunk_index = 0; chunk_index < chunk_count; chunk_index++) {
        size_t begin = chunk_index * chunk;
        size_t end = begin + chunk < n ? begin + chunk : n;
        // Eight independent lanes let the compiler vectorize while keeping a fixed summation order.
        double lanes[8] = {0};
        size_t i = begin;
        for (; i + 8 <= end; i += 8)
            for (int lane = 0; lane < 8; lane++) lanes[lane] += (double)x[i + lane] * (double)x[i + lane];
        double acc = 0.0;
        for (; i < end; i++) acc += (double)x[i] * (double)x[i];
        for (int lane = 0; lane < 8; lane++) acc += lanes[lane];
        partial[chunk_index] = acc;
    }
    double total = 0.0;
    for (size_t chunk_index = 0; chunk_index < chunk_count; chunk_index++) total += partial[chunk_index];
    return total;
}

void cpu_scale(float *x, float factor, size_t n) {
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (size_t i = 0; i < n; i++) x[i] *= factor;
}
