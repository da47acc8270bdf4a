// Fake quantization on the CPU: the uniform affine quantizer (forward, STE backward, torch's learnable
// LSQ/LSQ+ backward) over every qft_fq_layout, and the log2 / log-sqrt2 quantizers of attention probabilities.
#include <float.h>
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"
#include "quant/format.h"

// The layout switch runs once per call, never per element. Layouts fall in two shapes:
//  - segments: contiguous runs of elements that share one (s, z) - per tensor (one run), per row (runs of C),
//    per row group (runs of group_size). The inner loop sees scalar parameters.
//  - column maps: the group changes with the column (per column, PEG column groups). A tile of columns gets
//    its parameters gathered into small arrays once and reused for a block of rows, so 1/s is computed once
//    per (row block, column) instead of once per element.

// Forward / STE work unit for segment layouts: fixed chunks of the flattened tensor (~64 KB of input).
enum { FQ_CHUNK = 16384 };
// Column-map work unit: up to FQ_TILE_COLUMNS columns x FQ_TILE_ROWS rows; 1/s costs one division per 64
// elements. Tiles are as wide as the rows (up to 16 KB), so a row block is one contiguous stream (1 KB pieces
// of rows 16 KB apart measured 16 GB/s at 1 thread on a [4096, 4096] forward; whole rows 21, see FQ_ROW_GROUP).
enum { FQ_TILE_COLUMNS = 4096, FQ_TILE_ROWS = 64 };
// Learnable reductions split a long segment into at most FQ_MAX_CHUNKS chunks of >= FQ_MIN_REDUCE_CHUNK
// elements and add the chunk sums in chunk order; column maps split the rows into FQ_ROW_BLOCKS fixed blocks
// and keep per-(block, column) partial sums for FQ_LEARNABLE_TILE_COLUMNS columns at a time. With the column
// tile and the group sums that is ~256 KB of the calling thread's stack (not of the OpenMP workers').
// Both splits depend only on the shape, so dscale / dzero are the same bits for any thread count.
enum { FQ_MAX_CHUNKS = 256, FQ_MIN_REDUCE_CHUNK = 16384, FQ_ROW_BLOCKS = 8, FQ_LEARNABLE_TILE_COLUMNS = 1024 };
// Lanes of the accumulators inside a segment (fixed order: element j of a run goes to lane j % 16), and how
// many terms a lane (or a column) adds in float before its sum joins a double accumulator.
enum { FQ_LANES = 16, FQ_FLOAT_RUN = 8 };

typedef struct {
    float scale, inv_scale, zero_point;
} fq_params;

// z is rounded half to even and clamped to the grid, as torch's learnable forward does with a raw
// learnable zero point (_get_zero_point_from_tensor / _get_rounded_zero_point); integer z passes unchanged.
static inline float fq_round_zero_point(const float *zero_point, size_t k, float qmin, float qmax) {
    return cpu_fq_zero_point(zero_point, k, qmin, qmax);
}

static inline fq_params fq_params_at(const float *scale, const float *zero_point, size_t k, float qmin, float qmax) {
    fq_params p;
    p.scale = scale[k];
    p.inv_scale = 1.0f / p.scale;  // torch: inv_scale = 1.0f / scale, in float
    p.zero_point = fq_round_zero_point(zero_point, k, qmin, qmax);
    return p;
}

// 1 for NaN and +-Inf (the comparison is false for NaN), without a branch.
static inline unsigned fq_non_finite(float x) { return !(fabsf(x) <= FLT_MAX); }

// torch's fake_quant_tensor_cachemask kernel (aten/src/ATen/native/quantized/cpu/kernels/QuantizedOpKernels.cpp):
// qval = z + nearbyint(x * inv_scale); out = (clamp(qval, qmin, qmax) - z) * scale. (q - z) is a small integer,
// so torch's double product rounded to float equals this float product. NaN stays NaN (both compares are false).
static inline float fq_dequant(float x, float scale, float inv_scale, float zero_point, float qmin, float qmax) {
    float q = rintf(x * inv_scale) + zero_point;
    q = q < qmin ? qmin : q;
    q = q > qmax ? qmax : q;
    return (q - zero_point) * scale;
}

// torch's STE mask (fake_quantize_*_cachemask): the code is rounded first, then z is added.
static inline float fq_ste(float x, float dout, float inv_scale, float zero_point, float qmin, float qmax) {
    float q = rintf(x * inv_scale) + zero_point;
    return q >= qmin && q <= qmax ? dout : 0.0f;
}

// One element of torch's learnable backward (fake_quantize_learnable_{tensor,channel}_grad_kernel_cpu in
// QuantizedOpKernels.cpp). Torch writes nearbyint(z + x * inv_scale) and (q - z) * scale - x; its AVX2/AVX-512
// builds contract both into fused multiply-adds (checked by tests/oracle/make_quant_goldens.py; nvcc contracts
// by default too), so qft calls fmaf explicitly to get the same bits under any compiler flags.
// grad_factor multiplies each term before the sum, as in torch.
static inline __attribute__((always_inline)) void fq_learnable_terms(float x, float dout, float scale, float inv_scale,
                                                                     float zero_point, float qmin, float qmax,
                                                                     float grad_factor, float *dx, float *dscale,
                                                                     float *dzero) {
    float q = rintf(fmaf(x, inv_scale, zero_point));
    int inside = q >= qmin && q <= qmax;
    *dx = inside ? dout : 0.0f;
    float clipped = q < qmin ? qmin - zero_point : qmax - zero_point;
    float scale_inside = dout * fmaf(q - zero_point, scale, -x) * inv_scale * grad_factor;  // LSQ: rint(x/s) - x/s
    *dscale = inside ? scale_inside : dout * clipped * grad_factor;
    *dzero = inside ? 0.0f : -dout * scale * grad_factor;  // LSQ+: d/dz = -s where clipped
}

// ---- segment layouts: runs with scalar parameters ----

static size_t fq_forward_run(float *out, const float *inp, size_t n, fq_params p, float qmin, float qmax) {
    unsigned bad = 0;
    // omp simd: out may alias inp, which a plain loop would have to check for at run time.
#pragma omp simd reduction(+ : bad)
    for (size_t i = 0; i < n; i++) {
        bad += fq_non_finite(inp[i]);
        out[i] = fq_dequant(inp[i], p.scale, p.inv_scale, p.zero_point, qmin, qmax);
    }
    return bad;
}

// In place (dinp == dout: the masked gradient replaces dout) or accumulating (dinp += masked dout). Both loops read
// element i before writing it, so the aliasing is safe; the compiler unswitches the invariant test.
static void fq_ste_run(float *dinp, const float *dout, const float *inp, size_t n, fq_params p, float qmin,
                       float qmax) {
    if (dinp == dout) {
#pragma omp simd
        for (size_t i = 0; i < n; i++) dinp[i] = fq_ste(inp[i], dout[i], p.inv_scale, p.zero_point, qmin, qmax);
        return;
    }
#pragma omp simd
    for (size_t i = 0; i < n; i++) dinp[i] += fq_ste(inp[i], dout[i], p.inv_scale, p.zero_point, qmin, qmax);
}

// Learnable backward of one run; returns the run's dscale and dzero sums (grad_factor applied per element).
// Sums: each lane adds FQ_FLOAT_RUN terms in float, then the lane's float sum joins a double accumulator. Double
// adds per element ran at 1/3 of the memory bandwidth; this keeps the error of a sum within
// FQ_FLOAT_RUN * 2^-24 * sum|terms| (torch adds all terms in float32).
// dinp == dout: in place (dinp[i] = masked dout[i], read before written); else accumulating (or NULL).
static inline __attribute__((always_inline)) void fq_learnable_run_body(float *dinp, const float *dout,
                                                                        const float *inp, size_t n, fq_params p,
                                                                        float qmin, float qmax, float grad_factor,
                                                                        double *dscale_sum, double *dzero_sum,
                                                                        const int inplace) {
    double dscale_lanes[FQ_LANES] = {0}, dzero_lanes[FQ_LANES] = {0};
    size_t begin = 0;
    for (; begin + FQ_LANES * FQ_FLOAT_RUN <= n; begin += FQ_LANES * FQ_FLOAT_RUN) {
        float dscale_run[FQ_LANES] = {0}, dzero_run[FQ_LANES] = {0};
        for (int step = 0; step < FQ_FLOAT_RUN; step++) {
            const size_t base = begin + (size_t)step * FQ_LANES;
#pragma omp simd
            for (int lane = 0; lane < FQ_LANES; lane++) {
                float dx, dscale, dzero;
                fq_learnable_terms(inp[base + lane], dout[base + lane], p.scale, p.inv_scale, p.zero_point, qmin, qmax,
                                   grad_factor, &dx, &dscale, &dzero);
                if (inplace) dinp[base + lane] = dx;
                else if (dinp) dinp[base + lane] += dx;
                dscale_run[lane] += dscale;
                dzero_run[lane] += dzero;
            }
        }
        for (int lane = 0; lane < FQ_LANES; lane++) {
            dscale_lanes[lane] += dscale_run[lane];
            dzero_lanes[lane] += dzero_run[lane];
        }
    }
    // Tail: < FQ_LANES * FQ_FLOAT_RUN elements, each term straight to its lane's double (lane (i - begin) % FQ_LANES).
    // Whole groups of FQ_LANES compute their terms as one vector, then each lane adds its term: the same additions
    // in the same order as one element at a time (rows of 64, e.g. a per-channel weight of width 64, live here).
    for (; begin + FQ_LANES <= n; begin += FQ_LANES) {
        float dscale_terms[FQ_LANES], dzero_terms[FQ_LANES];
#pragma omp simd
        for (int lane = 0; lane < FQ_LANES; lane++) {
            float dx;
            fq_learnable_terms(inp[begin + lane], dout[begin + lane], p.scale, p.inv_scale, p.zero_point, qmin, qmax,
                               grad_factor, &dx, &dscale_terms[lane], &dzero_terms[lane]);
            if (inplace) dinp[begin + lane] = dx;
            else if (dinp) dinp[begin + lane] += dx;
        }
        for (int lane = 0; lane < FQ_LANES; lane++) {
            dscale_lanes[lane] += dscale_terms[lane];
            dzero_lanes[lane] += dzero_terms[lane];
        }
    }
    for (size_t i = begin; i < n; i++) {  // last < FQ_LANES elements
        float dx, dscale, dzero;
        fq_learnable_terms(inp[i], dout[i], p.scale, p.inv_scale, p.zero_point, qmin, qmax, grad_factor, &dx, &dscale,
                           &dzero);
        if (inplace) dinp[i] = dx;
        else if (dinp) dinp[i] += dx;
        dscale_lanes[(i - begin) % FQ_LANES] += dscale;
        dzero_lanes[(i - begin) % FQ_LANES] += dzero;
    }
    double dscale_total = 0.0, dzero_total = 0.0;
    for (int lane = 0; lane < FQ_LANES; lane++) {
        dscale_total += dscale_lanes[lane];
        dzero_total += dzero_lanes[lane];
    }
    *dscale_sum = dscale_total;
    *dzero_sum = dzero_total;
}

static void fq_learnable_run(float *dinp, const float *dout, const float *inp, size_t n, fq_params p, float qmin,
                             float qmax, float grad_factor, double *dscale_sum, double *dzero_sum) {
    if (dinp && dinp == dout)
        fq_learnable_run_body(dinp, dout, inp, n, p, qmin, qmax, grad_factor, dscale_sum, dzero_sum, 1);
    else
        fq_learnable_run_body(dinp, dout, inp, n, p, qmin, qmax, grad_factor, dscale_sum, dzero_sum, 0);
}

static int fq_is_column_map(const qft_fq_layout *layout) {
    return layout->axis == QFT_FQ_PER_COLUMN || layout->axis == QFT_FQ_COLUMN_MAP;
}

// Segment length of a segment layout: elements [k * length, (k + 1) * length) use parameters k.
static size_t fq_segment_length(const qft_fq_layout *layout, size_t n, int C) {
    switch (layout->axis) {
    case QFT_FQ_PER_ROW: return (size_t)C;
    case QFT_FQ_PER_ROW_GROUP: return (size_t)layout->group_size;
    default: return n;  // QFT_FQ_PER_TENSOR
    }
}

// Forward or STE backward of a segment layout over fixed chunks of the flat tensor; a chunk is split where
// it crosses a segment boundary, so each run has scalar parameters.
static size_t fq_segments_elementwise(float *out, const float *dout, const float *inp, size_t n, size_t length,
                                      const float *scale, const float *zero_point, float qmin, float qmax,
                                      int backward) {
    const size_t chunk_count = (n + FQ_CHUNK - 1) / FQ_CHUNK;
    size_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (n > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (size_t chunk = 0; chunk < chunk_count; chunk++) {
        size_t begin = chunk * FQ_CHUNK, end = begin + FQ_CHUNK < n ? begin + FQ_CHUNK : n;
        while (begin < end) {
            size_t segment = begin / length;
            size_t run_end = (segment + 1) * length < end ? (segment + 1) * length : end;
            fq_params p = fq_params_at(scale, zero_point, segment, qmin, qmax);
            if (backward)
                fq_ste_run(out + begin, dout + begin, inp + begin, run_end - begin, p, qmin, qmax);
            else
                bad += fq_forward_run(out + begin, inp + begin, run_end - begin, p, qmin, qmax);
            begin = run_end;
        }
    }
    return bad;
}

static void fq_segments_learnable(float *dinp, float *dscale, float *dzero, const float *dout, const float *inp,
                                  size_t n, size_t length, const float *scale, const float *zero_point, float qmin,
                                  float qmax, float grad_factor) {
    const size_t segment_count = n / length;
    if (length <= FQ_MIN_REDUCE_CHUNK) {
        // Many short segments (rows, groups): one thread owns each segment and writes its sums directly.
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
        for (size_t segment = 0; segment < segment_count; segment++) {
            size_t begin = segment * length;
            double dscale_sum, dzero_sum;
            fq_learnable_run(dinp ? dinp + begin : NULL, dout + begin, inp + begin, length,
                             fq_params_at(scale, zero_point, segment, qmin, qmax), qmin, qmax, grad_factor,
                             &dscale_sum, &dzero_sum);
            if (dscale) dscale[segment] += (float)dscale_sum;
            if (dzero) dzero[segment] += (float)dzero_sum;
        }
        return;
    }
    // Few long segments (per tensor, or very wide rows): each is split into fixed chunks summed in order.
    size_t chunk = (length + FQ_MAX_CHUNKS - 1) / FQ_MAX_CHUNKS;
    if (chunk < FQ_MIN_REDUCE_CHUNK) chunk = FQ_MIN_REDUCE_CHUNK;
    const size_t chunk_count = (length + chunk - 1) / chunk;
    for (size_t segment = 0; segment < segment_count; segment++) {
        const fq_params p = fq_params_at(scale, zero_point, segment, qmin, qmax);
        const size_t base = segment * length;
        double dscale_partial[FQ_MAX_CHUNKS], dzero_partial[FQ_MAX_CHUNKS];
#pragma omp parallel for schedule(static) if (chunk_count > 1)
        for (size_t index = 0; index < chunk_count; index++) {
            size_t begin = base + index * chunk;
            size_t count = (index + 1) * chunk < length ? chunk : length - index * chunk;
            fq_learnable_run(dinp ? dinp + begin : NULL, dout + begin, inp + begin, count, p, qmin, qmax, grad_factor,
                             &dscale_partial[index], &dzero_partial[index]);
        }
        double dscale_sum = 0.0, dzero_sum = 0.0;
        for (size_t index = 0; index < chunk_count; index++) {
            dscale_sum += dscale_partial[index];
            dzero_sum += dzero_partial[index];
        }
        if (dscale) dscale[segment] += (float)dscale_sum;
        if (dzero) dzero[segment] += (float)dzero_sum;
    }
}

// ---- column-map layouts: per-column parameter arrays ----

typedef struct {
    float scale[FQ_TILE_COLUMNS], inv_scale[FQ_TILE_COLUMNS], zero_point[FQ_TILE_COLUMNS];
    int32_t group[FQ_TILE_COLUMNS];
} fq_column_tile;

static void fq_fill_tile(fq_column_tile *tile, const float *scale, const float *zero_point,
                         const qft_fq_layout *layout, int first_column, int width, float qmin, float qmax) {
    for (int j = 0; j < width; j++) {
        int c = first_column + j;
        int32_t k = layout->axis == QFT_FQ_COLUMN_MAP ? layout->column_group[c] : c;
        fq_params p = fq_params_at(scale, zero_point, (size_t)k, qmin, qmax);
        tile->scale[j] = p.scale;
        tile->inv_scale[j] = p.inv_scale;
        tile->zero_point[j] = p.zero_point;
        tile->group[j] = k;
    }
}

// `group` consecutive rows of one tile: each column's parameters are loaded once for all of them (the extra
// loads of per-column parameters, not the arithmetic, are what slows this layout down).
static inline __attribute__((always_inline)) unsigned fq_column_rows(float *out, const float *dout, const float *inp,
                                                                     size_t stride, int width, int group,
                                                                     const fq_column_tile *tile, float qmin,
                                                                     float qmax, int backward) {
    unsigned bad = 0;
    if (backward && out == dout) {  // in place
#pragma omp simd
        for (int j = 0; j < width; j++) {
            const float inv_scale = tile->inv_scale[j], zero_point = tile->zero_point[j];
            for (int r = 0; r < group; r++)
                out[r * stride + j] = fq_ste(inp[r * stride + j], dout[r * stride + j], inv_scale, zero_point, qmin,
                                             qmax);
        }
        return 0;
    }
    if (backward) {
#pragma omp simd
        for (int j = 0; j < width; j++) {
            const float inv_scale = tile->inv_scale[j], zero_point = tile->zero_point[j];
            for (int r = 0; r < group; r++)
                out[r * stride + j] += fq_ste(inp[r * stride + j], dout[r * stride + j], inv_scale, zero_point, qmin,
                                              qmax);
        }
        return 0;
    }
#pragma omp simd reduction(+ : bad)
    for (int j = 0; j < width; j++) {
        const float scale = tile->scale[j], inv_scale = tile->inv_scale[j], zero_point = tile->zero_point[j];
        for (int r = 0; r < group; r++) {
            bad += fq_non_finite(inp[r * stride + j]);
            out[r * stride + j] = fq_dequant(inp[r * stride + j], scale, inv_scale, zero_point, qmin, qmax);
        }
    }
    return bad;
}

enum { FQ_ROW_GROUP = 4 };

static size_t fq_columns_elementwise(float *out, const float *dout, const float *inp, int rows, int C,
                                     const float *scale, const float *zero_point, const qft_fq_layout *layout,
                                     float qmin, float qmax, int backward) {
    const int tiles_per_row = (C + FQ_TILE_COLUMNS - 1) / FQ_TILE_COLUMNS;
    const int row_blocks = (rows + FQ_TILE_ROWS - 1) / FQ_TILE_ROWS;
    const long item_count = (long)tiles_per_row * row_blocks;
    size_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad) if ((size_t)rows * C > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (long item = 0; item < item_count; item++) {
        const int first_row = (int)(item / tiles_per_row) * FQ_TILE_ROWS;
        const int first_column = (int)(item % tiles_per_row) * FQ_TILE_COLUMNS;
        const int width = C - first_column < FQ_TILE_COLUMNS ? C - first_column : FQ_TILE_COLUMNS;
        const int row_end = rows - first_row < FQ_TILE_ROWS ? rows : first_row + FQ_TILE_ROWS;
        fq_column_tile tile;
        fq_fill_tile(&tile, scale, zero_point, layout, first_column, width, qmin, qmax);
        int row = first_row;
        for (; row < row_end; row += FQ_ROW_GROUP) {
            const size_t offset = (size_t)row * C + first_column;
            const float *g = backward ? dout + offset : NULL;
            if (row + FQ_ROW_GROUP <= row_end)
                bad += fq_column_rows(out + offset, g, inp + offset, (size_t)C, width, FQ_ROW_GROUP, &tile, qmin, qmax,
                                      backward);
            else
                for (int r = row; r < row_end; r++)
                    bad += fq_column_rows(out + offset + (size_t)(r - row) * C, g ? g + (size_t)(r - row) * C : NULL,
                                          inp + offset + (size_t)(r - row) * C, (size_t)C, width, 1, &tile, qmin,
                                          qmax, backward);
        }
    }
    return bad;
}

// Learnable backward of a column map: per column tile, FQ_ROW_BLOCKS fixed row blocks produce per-column
// partial sums (rows in order), added block by block. PER_COLUMN writes each column sum to its own entry;
// COLUMN_MAP adds column sums to per-group double accumulators in column order and rounds once at the end.
static void fq_columns_learnable(float *dinp, float *dscale, float *dzero, const float *dout, const float *inp,
                                 int rows, int C, const float *scale, const float *zero_point,
                                 const qft_fq_layout *layout, float qmin, float qmax, float grad_factor) {
    const int rows_per_block = (rows + FQ_ROW_BLOCKS - 1) / FQ_ROW_BLOCKS;
    const int column_map = layout->axis == QFT_FQ_COLUMN_MAP;
    const int inplace = dinp && dinp == dout;
    double dscale_group[QFT_FQ_MAX_COLUMN_GROUPS], dzero_group[QFT_FQ_MAX_COLUMN_GROUPS];
    int group_count = 0;
    for (int first_column = 0; first_column < C; first_column += FQ_LEARNABLE_TILE_COLUMNS) {
        const int width = C - first_column < FQ_LEARNABLE_TILE_COLUMNS ? C - first_column : FQ_LEARNABLE_TILE_COLUMNS;
        fq_column_tile tile;
        fq_fill_tile(&tile, scale, zero_point, layout, first_column, width, qmin, qmax);
        double dscale_partial[FQ_ROW_BLOCKS][FQ_LEARNABLE_TILE_COLUMNS];
        double dzero_partial[FQ_ROW_BLOCKS][FQ_LEARNABLE_TILE_COLUMNS];
#pragma omp parallel for schedule(static) if ((size_t)rows * width > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
        for (int block = 0; block < FQ_ROW_BLOCKS; block++) {
            double *dscale_acc = dscale_partial[block], *dzero_acc = dzero_partial[block];
            for (int j = 0; j < width; j++) dscale_acc[j] = dzero_acc[j] = 0.0;
            const int row_end = (block + 1) * rows_per_block < rows ? (block + 1) * rows_per_block : rows;
            // Each column adds FQ_FLOAT_RUN rows in float, then that sum joins its double accumulator.
            for (int run_row = block * rows_per_block; run_row < row_end; run_row += FQ_FLOAT_RUN) {
                const int run_end = run_row + FQ_FLOAT_RUN < row_end ? run_row + FQ_FLOAT_RUN : row_end;
                float dscale_run[FQ_LEARNABLE_TILE_COLUMNS], dzero_run[FQ_LEARNABLE_TILE_COLUMNS];
                for (int j = 0; j < width; j++) dscale_run[j] = dzero_run[j] = 0.0f;
                for (int row = run_row; row < run_end; row++) {
                    const size_t offset = (size_t)row * C + first_column;
                    const float *x = inp + offset, *g = dout + offset;
                    float *dx = dinp ? dinp + offset : NULL;
#pragma omp simd
                    for (int j = 0; j < width; j++) {
                        float dx_term, dscale_term, dzero_term;
                        fq_learnable_terms(x[j], g[j], tile.scale[j], tile.inv_scale[j], tile.zero_point[j], qmin,
                                           qmax, grad_factor, &dx_term, &dscale_term, &dzero_term);
                        if (inplace) dx[j] = dx_term;
                        else if (dx) dx[j] += dx_term;
                        dscale_run[j] += dscale_term;
                        dzero_run[j] += dzero_term;
                    }
                }
                for (int j = 0; j < width; j++) {
                    dscale_acc[j] += dscale_run[j];
                    dzero_acc[j] += dzero_run[j];
                }
            }
        }
        for (int j = 0; j < width; j++) {
            double dscale_sum = 0.0, dzero_sum = 0.0;
            for (int block = 0; block < FQ_ROW_BLOCKS; block++) {
                dscale_sum += dscale_partial[block][j];
                dzero_sum += dzero_partial[block][j];
            }
            const int32_t k = tile.group[j];
            if (!column_map) {
                if (dscale) dscale[k] += (float)dscale_sum;
                if (dzero) dzero[k] += (float)dzero_sum;
                continue;
            }
            for (; group_count <= k; group_count++) dscale_group[group_count] = dzero_group[group_count] = 0.0;
            dscale_group[k] += dscale_sum;
            dzero_group[k] += dzero_sum;
        }
    }
    for (int k = 0; k < group_count; k++) {
        if (dscale) dscale[k] += (float)dscale_group[k];
        if (dzero) dzero[k] += (float)dzero_group[k];
    }
}

size_t cpu_fake_quant_forward(float *out, const float *inp, const float *scale, const float *zero_point, int rows,
                              int C, const qft_fq_layout *layout) {
    const size_t n = (size_t)rows * C;
    if (n == 0) return 0;
    const float qmin = (float)layout->qmin, qmax = (float)layout->qmax;
    if (fq_is_column_map(layout))
        return fq_columns_elementwise(out, NULL, inp, rows, C, scale, zero_point, layout, qmin, qmax, 0);
    return fq_segments_elementwise(out, NULL, inp, n, fq_segment_length(layout, n, C), scale, zero_point, qmin,
                                   qmax, 0);
}

void cpu_fake_quant_backward(float *dinp, float *dscale, float *dzero, const float *dout, const float *inp,
                             const float *scale, const float *zero_point, int rows, int C,
                             const qft_fq_layout *layout, float grad_factor) {
    const size_t n = (size_t)rows * C;
    if (n == 0) return;
    const float qmin = (float)layout->qmin, qmax = (float)layout->qmax;
    const int column_map = fq_is_column_map(layout);
    if (!dscale && !dzero) {
        if (!dinp) return;
        if (column_map)
            fq_columns_elementwise(dinp, dout, inp, rows, C, scale, zero_point, layout, qmin, qmax, 1);
        else
            fq_segments_elementwise(dinp, dout, inp, n, fq_segment_length(layout, n, C), scale, zero_point, qmin,
                                    qmax, 1);
        return;
    }
    if (column_map)
        fq_columns_learnable(dinp, dscale, dzero, dout, inp, rows, C, scale, zero_point, layout, qmin, qmax,
                             grad_factor);
    else
        fq_segments_learnable(dinp, dscale, dzero, dout, inp, n, fq_segment_length(layout, n, C), scale, zero_point,
                              qmin, qmax, grad_factor);
}

// ---- log2 / log-sqrt2 quantizers (FQ-ViT, Lin et al. 2022; RepQ-ViT, Li et al. 2023; METHODS.md §4) ----
//
// q' = rint(-log2 r) or rint(-2 log2 r) with r = x * (1/s) in float, evaluated exactly from r's bits
// (qft_log_code in quant/format.h, shared with the attention op's probability quantizer).

// Every element maps to a slot of small per-call tables: slot 0 = above the grid (q' < 0: x_hat = s, no
// input gradient), slot 1 + q for levels q = 0 .. 2^bits - 1, slot 2^bits + 1 = zero (q' >= 2^bits, x <= 0).
enum { LOG_QUANT_MAX_SLOTS = (1 << 8) + 2 };

typedef struct {
    float value[LOG_QUANT_MAX_SLOTS];      // x_hat
    float inside[LOG_QUANT_MAX_SLOTS];     // 1 where the input gradient passes, else 0
    float scale_grad[LOG_QUANT_MAX_SLOTS]; // d x_hat / d s
    int levels;
} log_quant_tables;

// Level q: x_hat = s * 2^(-q/2) written as RepQ-ViT's log2 reparameterization s_q * 2^-ceil(q/2) with
// s_q = s * sqrt(2) (float product) for odd q, so the stored value is exactly what the integer kernel's
// shift computes. ldexp in double then one rounding to float is exact scaling (subnormals rounded once).
static void log_quant_build_tables(log_quant_tables *t, int bits, int sqrt2, float scale) {
    const float sqrt2_float = (float)M_SQRT2;
    t->levels = 1 << bits;
    t->value[0] = scale;
    t->inside[0] = 0.0f;
    t->scale_grad[0] = 1.0f;
    for (int q = 0; q < t->levels; q++) {
        int odd = sqrt2 && (q & 1);
        int shift = sqrt2 ? (q + 1) / 2 : q;
        float value = (float)ldexp((double)(odd ? scale * sqrt2_float : scale), -shift);
        // A level that underflows to 0 is the zero level: no gradient to x or s (METHODS.md §4 [ours]).
        t->value[q + 1] = value;
        t->inside[q + 1] = value != 0.0f ? 1.0f : 0.0f;
        t->scale_grad[q + 1] = value != 0.0f ? (float)ldexp(odd ? (double)sqrt2_float : 1.0, -shift) : 0.0f;
    }
    t->value[t->levels + 1] = 0.0f;
    t->inside[t->levels + 1] = 0.0f;
    t->scale_grad[t->levels + 1] = 0.0f;
}

static inline int log_quant_slot(float x, float inv_scale, int sqrt2, int levels) {
    float r = x * inv_scale;
    if (!(r > 0.0f)) return levels + 1;  // 0, negative and NaN r: the zero slot
    int code = qft_log_code(r, sqrt2);
    return code < 0 ? 0 : (code >= levels ? levels + 1 : code + 1);
}

size_t cpu_log_quant_forward(float *out, const float *inp, size_t n, int bits, int sqrt2, const float *scale) {
    log_quant_tables tables;
    log_quant_build_tables(&tables, bits, sqrt2, *scale);
    const float inv_scale = 1.0f / *scale;
    const int levels = tables.levels;
    size_t bad = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : bad) if (n > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        bad += fq_non_finite(x);
        float value = tables.value[log_quant_slot(x, inv_scale, sqrt2, levels)];
        out[i] = x != x ? x : value;  // NaN stays NaN
    }
    return bad;
}

// Sum of dout * d x_hat/d s over [begin, end), in lanes (element j goes to lane (j - begin) % FQ_LANES).
static double log_quant_scale_grad_sum(float *dinp, const float *dout, const float *inp, size_t begin, size_t end,
                                       const log_quant_tables *t, float inv_scale, int sqrt2) {
    double lanes[FQ_LANES] = {0};
    for (size_t i = begin; i < end; i += FQ_LANES) {
        int width = end - i < FQ_LANES ? (int)(end - i) : FQ_LANES;
        float terms[FQ_LANES] = {0};
        for (int lane = 0; lane < width; lane++) {
            int slot = log_quant_slot(inp[i + lane], inv_scale, sqrt2, t->levels);
            if (dinp) dinp[i + lane] += t->inside[slot] != 0.0f ? dout[i + lane] : 0.0f;
            terms[lane] = dout[i + lane] * t->scale_grad[slot];
        }
        for (int lane = 0; lane < FQ_LANES; lane++) lanes[lane] += terms[lane];
    }
    double sum = 0.0;
    for (int lane = 0; lane < FQ_LANES; lane++) sum += lanes[lane];
    return sum;
}

void cpu_log_quant_backward(float *dinp, float *dscale, const float *dout, const float *inp, size_t n, int bits,
                            int sqrt2, const float *scale) {
    if (n == 0) return;
    log_quant_tables tables;
    log_quant_build_tables(&tables, bits, sqrt2, *scale);
    const float inv_scale = 1.0f / *scale;
    const int levels = tables.levels;
    if (!dscale) {
        if (!dinp) return;
#pragma omp parallel for simd schedule(static) if (n > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
        for (size_t i = 0; i < n; i++)
            dinp[i] += tables.inside[log_quant_slot(inp[i], inv_scale, sqrt2, levels)] != 0.0f ? dout[i] : 0.0f;
        return;
    }
    size_t chunk = (n + FQ_MAX_CHUNKS - 1) / FQ_MAX_CHUNKS;
    if (chunk < FQ_MIN_REDUCE_CHUNK) chunk = FQ_MIN_REDUCE_CHUNK;
    const size_t chunk_count = (n + chunk - 1) / chunk;
    double partial[FQ_MAX_CHUNKS];
#pragma omp parallel for schedule(static) if (chunk_count > 1)
    for (size_t index = 0; index < chunk_count; index++) {
        size_t begin = index * chunk, end = begin + chunk < n ? begin + chunk : n;
        partial[index] = log_quant_scale_grad_sum(dinp, dout, inp, begin, end, &tables, inv_scale, sqrt2);
    }
    double sum = 0.0;
    for (size_t index = 0; index < chunk_count; index++) sum += partial[index];
    *dscale += (float)sum;
}
