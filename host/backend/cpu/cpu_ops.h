// Private declarations of the fp32 CPU backend's ops, shared by cpu_*.c and the table in cpu_backend.c.
// Also holds the OpenMP work thresholds and the SIMD math helpers that several op files share.
#ifndef QFT_BACKEND_CPU_OPS_H
#define QFT_BACKEND_CPU_OPS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"

// Element counts above which an op forks OpenMP threads: about 15 us of single-thread work, twice
// the fork/join cost of a sleeping team (~7.5 us measured with OMP_WAIT_POLICY=passive on 2 cores;
// ~0.5 us with spinning workers), so forking pays off under either wait policy.
#define QFT_CPU_PARALLEL_MIN_MEMORY_BOUND 131072  // ~0.1 ns/element: add, copies, column sums
#define QFT_CPU_PARALLEL_MIN_COMPUTE 32768        // ~0.3-1 ns/element: SIMD gelu/exp, LayerNorm, Philox
#define QFT_CPU_PARALLEL_MIN_SCALAR_LIBM 4096     // ~5 ns/element: scalar expf/log (cross-entropy)

// Column reductions (bias, LayerNorm weight, position-embedding grads) split the columns into
// blocks of this many floats (one 64-byte cache line); each block is owned by one thread and summed
// in row order, so results are identical for any thread count.
#define QFT_CPU_COLUMN_BLOCK 16

// ---- vectorized transcendental functions ----
// glibc >= 2.35 ships SIMD variants of erff/tanhf/expf in libmvec (<= 4 ulp, vs ~1 ulp scalar), which
// makes GELU ~10x faster; glibc only declares them under -ffast-math, so declare them here. libm.so
// is a linker script that pulls libmvec in as needed. Elsewhere the same loops call the scalar functions.
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 35)
#pragma omp declare simd notinbranch
float erff(float);
#pragma omp declare simd notinbranch
float tanhf(float);
#pragma omp declare simd notinbranch
float expf(float);
#endif
#endif

#if defined(__clang__)
// Clang may not map these calls to libmvec and then reports each `omp simd` loop it could not
// vectorize as a warning (an error under -Werror); the scalar code it falls back to is correct.
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

// Elementwise kernels run on blocks of exactly this many lanes (a zero-padded copy for the tail), so
// every element takes the same vector code path whatever the thread split or the position: results
// stay bit-identical for any thread count.
#define QFT_CPU_VECTOR_BLOCK 16

// row[j] = expf(row[j] - shift) for j < count; returns their float sum (a fixed, position-determined
// order: SIMD partial sums per full block, then the tail).
static inline float cpu_exp_shifted_sum(float *row, int count, float shift) {
    float sum = 0.0f;
    int begin = 0;
    for (; begin + QFT_CPU_VECTOR_BLOCK <= count; begin += QFT_CPU_VECTOR_BLOCK) {
        float *block = row + begin;
#pragma omp simd reduction(+ : sum)
        for (int lane = 0; lane < QFT_CPU_VECTOR_BLOCK; lane++) {
            block[lane] = expf(block[lane] - shift);
            sum += block[lane];
        }
    }
    if (begin < count) {  // the tail goes through the same vector code on a zero-padded copy
        const int width = count - begin;
        float block[QFT_CPU_VECTOR_BLOCK] = {0};
        for (int lane = 0; lane < width; lane++) block[lane] = row[begin + lane] - shift;
#pragma omp simd
        for (int lane = 0; lane < QFT_CPU_VECTOR_BLOCK; lane++) block[lane] = expf(block[lane]);
        for (int lane = 0; lane < width; lane++) {
            row[begin + lane] = block[lane];
            sum += block[lane];
        }
    }
    return sum;
}

// dst[c] += sum over rows r of src[r * row_stride + c], for c < cols; double accumulation.
void cpu_column_sums_accumulate(float *dst, const float *src, int rows, int cols, size_t row_stride);

void *cpu_alloc(size_t bytes);
void cpu_release(void *ptr);
void cpu_zero(void *ptr, size_t bytes);
void cpu_copy_to_device(void *dst, const void *host_src, size_t bytes);
void cpu_copy_to_host(void *host_dst, const void *src, size_t bytes);
void cpu_copy(void *dst, const void *src, size_t bytes);

void cpu_linear_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C,
                        int OC);
void cpu_linear_backward_input(float *dinp, const float *dout, const float *weight, int N, int C, int OC);
void cpu_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                         const float *weight, int N, int C, int OC);

void cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                           const float *bias, int N, int C, float eps);
void cpu_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *weight, const float *mean, const float *rstd, int N, int C);

void cpu_gelu_forward(float *out, const float *inp, size_t n, qft_gelu_kind kind);
void cpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n, qft_gelu_kind kind);
void cpu_tanh_forward(float *out, const float *inp, size_t n);
void cpu_tanh_backward(float *dinp, const float *out, const float *dout, size_t n);

void cpu_softmax_forward(float *out, const float *inp, int N, int C);
void cpu_softmax_backward(float *dinp, const float *out, const float *dout, int N, int C);

void cpu_attention_forward(float *out, float *probs, const float *q, const float *k, const float *v, int qkv_stride,
                           const float *key_mask, int B, int T, int Tq, int NH, int HS, float scale,
                           const qft_prob_quant *prob_quant);
void cpu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                            const float *q, const float *k, const float *v, int qkv_stride, int B, int T, int Tq,
                            int NH, int HS, float scale, const qft_prob_quant *prob_quant);
// Attention-probability noise (cpu_prob_noise.c): out[e] = the noise form of pq (pq->noise != NULL) at p[e],
// element first + e of the flattened probabilities; and the backend's prob_quant_residual.
void cpu_prob_noise_run(float *out, const float *p, uint64_t first, int n, const qft_prob_quant *pq);
size_t cpu_prob_quant_residual(const float *probs, size_t n, const qft_prob_quant *pq, double *sum_sq);

void cpu_embedding_forward(float *out, const int32_t *ids, const float *table, int N, int C);
void cpu_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int N, int C);
void cpu_patchify_forward(float *out, const float *images, int B, int CH, int H, int W, int P);
void cpu_vit_tokens_forward(float *out, const float *patches, const float *cls, const float *dist,
                            const float *pos, int B, int NP, int D);
void cpu_vit_tokens_backward(float *dpatches, float *dcls, float *ddist, float *dpos, const float *dout,
                             int B, int NP, int D);
void cpu_select_tokens_forward(float *out, const float *inp, int B, int T, int C, int first, int count);
void cpu_select_tokens_backward(float *dinp, const float *dout, int B, int T, int C, int first, int count);

void cpu_add_forward(float *out, const float *a, const float *b, size_t n);
void cpu_add_backward(float *da, float *db, const float *dout, size_t n);
// Philox blocks computed QFT_CPU_PHILOX_LANES at a time, one per SIMD lane (cpu_elementwise.c):
// uniforms[lane * 4 + word] = the four uniforms of Philox block (first_block + lane), i.e. exactly
// qft_philox_uniform(seed, stream, 4 * (first_block + lane) + word) of core/rng.h.
#define QFT_CPU_PHILOX_LANES 16
void cpu_philox_uniform_blocks(float *restrict uniforms, uint64_t first_block, uint64_t seed, uint64_t stream);
// The noise values v of QFT_CPU_PHILOX_LANES * 4 elements from their uniforms, in place (cpu_method.c; the
// mapping backend.h's quant_noise_forward documents): uniform u - 1/2, Gaussian Box-Muller on word pairs over
// sqrt(12), Bernoulli u itself, histogram the inverse CDF (`histogram` needed only for that kind).
typedef struct cpu_noise_histogram cpu_noise_histogram;
void cpu_noise_values(float *values, qft_noise_kind kind, const cpu_noise_histogram *histogram);
void cpu_dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t seed, uint64_t stream);
void cpu_dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t seed, uint64_t stream);

void cpu_cross_entropy_forward(float *losses, float *probs, const float *logits, const int32_t *targets, int N,
                               int V, float label_smoothing);
void cpu_cross_entropy_backward(float *dlogits, const float *probs, const int32_t *targets, int N, int V,
                                float label_smoothing, float dloss_scale);
float cpu_mse_forward(const float *pred, const float *target, size_t n);
void cpu_mse_backward(float *dpred, const float *pred, const float *target, size_t n, float dloss_scale);
void cpu_kd_kl_forward(float *losses, float *p_student, float *p_teacher, const float *student_logits,
                       const float *teacher_logits, int N, int V, float temperature);
void cpu_kd_kl_backward(float *dlogits, const float *p_student, const float *p_teacher, int N, int V,
                        float dloss_scale);

size_t cpu_fake_quant_forward(float *out, const float *inp, const float *scale, const float *zero_point, int rows,
                              int C, const qft_fq_layout *layout);
void cpu_fake_quant_backward(float *dinp, float *dscale, float *dzero, const float *dout, const float *inp,
                             const float *scale, const float *zero_point, int rows, int C,
                             const qft_fq_layout *layout, float grad_factor);
size_t cpu_log_quant_forward(float *out, const float *inp, size_t n, int bits, int sqrt2, const float *scale);
void cpu_log_quant_backward(float *dinp, float *dscale, const float *dout, const float *inp, size_t n, int bits,
                            int sqrt2, const float *scale);

void cpu_tensor_moments(const float *x, size_t n, double out[4]);
double cpu_outlier_penalty_forward(const float *x, size_t n, float mu, float tau, float p, size_t *count);
void cpu_outlier_penalty_backward(float *dx, const float *x, size_t n, float mu, float tau, float p, float coef);
size_t cpu_quant_noise_forward(float *out, const float *inp, const float *scale, const float *zero_point, int rows,
                               int C, const qft_fq_layout *layout, const qft_quant_noise *noise);
size_t cpu_quant_residual(const float *inp, const float *scale, const float *zero_point, int rows, int C,
                          const qft_fq_layout *layout, double *sum_sq);
size_t cpu_quant_residual_histogram(const float *inp, const float *scale, const float *zero_point, int rows, int C,
                                    const qft_fq_layout *layout, int bins, uint64_t *counts);

double cpu_sum_squares(const float *x, size_t n);
void cpu_scale(float *x, float factor, size_t n);
void cpu_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                      float beta2, float eps, float weight_decay, int step);

// Shared by the quantizer-aware ops (cpu_quant.c, cpu_method.c, cpu_oscillation.c):
// the quantizer group of element (r, c) of a [rows, C] tensor under a qft_fq_layout, and the zero
// point a quantizer uses: rounded half to even and clamped to the grid, as torch's learnable forward
// does with a raw learnable zero point; integer zero points pass unchanged; NULL = 0.
static inline size_t cpu_fq_group(const qft_fq_layout *layout, int r, int c, int C) {
    switch (layout->axis) {
    case QFT_FQ_PER_TENSOR: return 0;
    case QFT_FQ_PER_ROW: return (size_t)r;
    case QFT_FQ_PER_COLUMN: return (size_t)c;
    case QFT_FQ_PER_ROW_GROUP: return (size_t)r * (size_t)(C / layout->group_size) + (size_t)(c / layout->group_size);
    case QFT_FQ_COLUMN_MAP: return (size_t)layout->column_group[c];
    }
    return 0;
}

static inline float cpu_fq_zero_point(const float *zero_point, size_t k, float qmin, float qmax) {
    return zero_point ? fminf(fmaxf(rintf(zero_point[k]), qmin), qmax) : 0.0f;
}

// Weight oscillation (cpu_oscillation.c); contracts in backend.h.
double cpu_oscillation_dampen(float *dw, const float *w, const float *scale, const float *zero_point, int rows,
                              int C, const qft_fq_layout *layout, float coef);
size_t cpu_oscillation_track(float *w, const float *scale, const float *zero_point, int rows, int C,
                             const qft_fq_layout *layout, int8_t *prev, int8_t *dir, float *freq, float *ema,
                             uint8_t *frozen, float momentum, float threshold, int initialize);
void cpu_oscillation_mask_grad(float *dw, const uint8_t *frozen, size_t n);
double cpu_bin_regularizer(float *dw, const float *w, const float *scale, const float *zero_point, int rows, int C,
                           const qft_fq_layout *layout, float coef);

#endif
