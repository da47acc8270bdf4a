// The backend op table: every compute op a model or trainer needs, forward and backward.
// Models call only these entries; the CPU backend (fp32 reference) and the CUDA backend implement them.
#ifndef QFT_BACKEND_H
#define QFT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

// Conventions (all ops):
// - Tensors are contiguous row-major fp32 in backend memory. Activations are [N, C] with N = B*T rows.
// - Every backward ACCUMULATES (+=) into its gradient outputs (input grads and parameter grads),
//   as llm.c does: residual branches then need no extra adds, and gradient accumulation is free.
//   Any gradient pointer may be NULL, meaning "not needed" (e.g. no grad for the image input).
// - Ops never allocate; scratch is passed in explicitly where needed.

typedef enum { QFT_GELU_TANH = 0, QFT_GELU_ERF = 1 } qft_gelu_kind;

// How the quantization parameters of a [rows, C] tensor are indexed (the group k of element (r, c)).
typedef enum {
    QFT_FQ_PER_TENSOR = 0,     // k = 0
    QFT_FQ_PER_ROW,            // k = r               (weights [OC, C]: per output channel)
    QFT_FQ_PER_COLUMN,         // k = c               (activations: per channel of the last dim)
    QFT_FQ_PER_ROW_GROUP,      // k = r * (C / group_size) + c / group_size  (weights: groups along the input dim)
    QFT_FQ_COLUMN_MAP          // k = column_group[c] (activations: channel groups, PEG)
} qft_fq_axis;

// COLUMN_MAP group indices lie in [0, QFT_FQ_MAX_COLUMN_GROUPS): the learnable backward keeps one double
// accumulator per group (PEG uses a handful of groups; per-embedding K = C stays below this for our models).
#define QFT_FQ_MAX_COLUMN_GROUPS 4096

typedef struct {
    int qmin, qmax;                // integer grid
    qft_fq_axis axis;
    int group_size;                // QFT_FQ_PER_ROW_GROUP (divides C)
    const int32_t *column_group;   // QFT_FQ_COLUMN_MAP: [C] group of each column (backend memory)
} qft_fq_layout;

// Fake quantization of attention probabilities inside the attention op (NULL = none). The op saves
// the unquantized probabilities; P_hat = Q(P) weights the values, and the softmax backward receives
// dP = dP_hat * STE mask (no gradient to the quantizer's parameters).
// noise != NULL (training, docs/methods.md §2): P~ = the quantizer's noise form stands in for P_hat in the
// forward and in the backward's dv; the backward's mask stays the real quantizer's at P. Element
// i = ((b * NH + h) * Tq + row) * T + key of the flattened [B, NH, Tq, T] probabilities draws word i & 3 of
// Philox block qft_philox_block_at(params.seed, params.stream, i >> 2), mapped as quant_noise_forward maps it
// to v (uniform u - 1/2, Gaussian Box-Muller over sqrt(12), Bernoulli u). Where the quantizer clips, and for
// P = 0 exactly (masked keys), P~ = Q(P). Elsewhere, with a = params.amplitude, p = params.p:
//   uniform grid:  P~ = clamp(P + a s v, (qmin - z) s, (qmax - z) s)      (bernoulli: v < p ? Q(P) : P, clamped)
//   log kinds:     c = -k log2(P / s) (k = 1 log2, 2 log_sqrt2: the code before rounding),
//                  P~ = s 2^(-clamp(c + a v, 0, 2^bits - 1) / k)         (bernoulli: v < p ? Q(P) : P, clamped)
typedef struct {
    int kind;                      // qft_quant_kind: 0 uniform, 1 log2, 2 log_sqrt2 (host/quant/format.h)
    int bits;                      // log kinds
    int qmin, qmax;                // uniform grid
    float scale, zero_point;       // uniform (s, z) / log scale, per tensor, host values
    const struct qft_prob_noise *noise;  // NULL: the real quantizer
} qft_prob_quant;

// Noise that stands in for a quantizer during training (quant_noise_forward).
typedef enum { QFT_NOISE_UNIFORM = 0, QFT_NOISE_GAUSSIAN, QFT_NOISE_BERNOULLI, QFT_NOISE_HISTOGRAM } qft_noise_kind;
typedef struct {
    qft_noise_kind kind;
    float amplitude;               // uniform / gaussian / histogram: noise of amplitude * step
    float p;                       // bernoulli: probability that an element is quantized exactly
    uint64_t seed, stream;         // Philox key and stream
    // histogram: the CDF of the noise in steps, bins + 1 HOST values over bins equal bins of [-1/2, 1/2]:
    // cdf[0] = 0, cdf[bins] = 1, non-decreasing (cdf[j] = share of the counts in bins 0 .. j-1). NULL for
    // the other kinds. Host memory, like amplitude: a device op takes it by value or copies it.
    const float *cdf;
    int bins;
} qft_quant_noise;

// The noise the attention op draws in place of its probability quantizer (qft_prob_quant.noise): amplitude in
// steps of the uniform grid, in codes for the log kinds.
typedef struct qft_prob_noise {
    qft_quant_noise params;
} qft_prob_noise;

typedef struct qft_backend {
    const char *name;

    // ---- memory ----
    void *(*alloc)(size_t bytes);                  // zero-filled; NULL on failure
    void (*release)(void *ptr);
    void (*zero)(void *ptr, size_t bytes);
    void (*copy_to_device)(void *dst, const void *host_src, size_t bytes);
    void (*copy_to_host)(void *host_dst, const void *src, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes);  // device to device

    // ---- linear: out[N,OC] = inp[N,C] @ weight[OC,C]^T + bias[OC] (bias may be NULL) ----
    void (*linear_forward)(float *out, const float *inp, const float *weight, const float *bias,
                           int N, int C, int OC);
    void (*linear_backward)(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, int N, int C, int OC);
    // dinp[N,C] = dout[N,OC] @ weight[OC,C], WRITTEN (dinp's old contents are ignored): the input gradient of
    // linear_backward without zeroing dinp first (the same values as accumulating into zeros).
    void (*linear_backward_input)(float *dinp, const float *dout, const float *weight, int N, int C, int OC);

    // ---- layernorm over the last dim; saves mean[N] and rstd[N] for backward ----
    void (*layernorm_forward)(float *out, float *mean, float *rstd, const float *inp,
                              const float *weight, const float *bias, int N, int C, float eps);
    void (*layernorm_backward)(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, const float *mean,
                               const float *rstd, int N, int C);

    // ---- elementwise activations (n elements) ----
    void (*gelu_forward)(float *out, const float *inp, size_t n, qft_gelu_kind kind);
    void (*gelu_backward)(float *dinp, const float *inp, const float *dout, size_t n, qft_gelu_kind kind);
    void (*tanh_forward)(float *out, const float *inp, size_t n);
    void (*tanh_backward)(float *dinp, const float *out, const float *dout, size_t n);  // uses the forward OUTPUT

    // ---- softmax over the last dim of [N, C] ----
    void (*softmax_forward)(float *out, const float *inp, int N, int C);
    void (*softmax_backward)(float *dinp, const float *out, const float *dout, int N, int C);

    // ---- multi-head self-attention core ----
    // q, k, v: [B, T, *] rows qkv_stride floats apart, each row holding NH*HS channels (heads
    // interleaved along the channel dim, as HF's linear outputs). qkv_stride = NH*HS for separate
    // tensors; 3*NH*HS with q = qkv, k = qkv + C, v = qkv + 2C for one fused [N, 3C] projection.
    // Queries are the first Tq tokens of each sequence (Tq = T: all; Tq = 1: CLS only), keys all T.
    // out, dout: [B, Tq, NH*HS]. dq, dk, dv use the layout and stride of q, k, v (dq: first Tq rows).
    // probs: [B, NH, Tq, T] saved softmax(q k^T * scale + mask) for backward (may be NULL in forward
    // when no backward follows).
    // key_mask: [B, T] with 1 = attend, 0 = padding, or NULL for no mask. Masked keys get a logit of
    // -1e30 before softmax (probability 0; a fully padded row stays finite and becomes uniform).
    // prob_quant: see qft_prob_quant (NULL = probabilities in floating point).
    void (*attention_forward)(float *out, float *probs, const float *q, const float *k, const float *v,
                              int qkv_stride, const float *key_mask, int B, int T, int Tq, int NH, int HS,
                              float scale, const qft_prob_quant *prob_quant);
    void (*attention_backward)(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                               const float *q, const float *k, const float *v, int qkv_stride,
                               int B, int T, int Tq, int NH, int HS, float scale,
                               const qft_prob_quant *prob_quant);
    // The quantizer's rounding residual on probabilities [n] (for the noise amplitude; prob_quant's noise is
    // ignored): *sum_sq = sum over the elements that get noise (not clipped, not 0; see qft_prob_quant) of r^2,
    // r = (Q(P) - P) / s for the uniform grid and r = q' - c in log codes for the log kinds (q' the rounded code,
    // c = -k log2(P / s)); double, fixed order. Returns how many elements there are.
    size_t (*prob_quant_residual)(const float *probs, size_t n, const qft_prob_quant *prob_quant, double *sum_sq);

    // ---- embeddings: out[N,C] += table[ids[i]] (accumulates so token+position+segment sum up) ----
    void (*embedding_forward)(float *out, const int32_t *ids, const float *table, int N, int C);
    void (*embedding_backward)(float *dtable, const float *dout, const int32_t *ids, int N, int C);

    // ---- patch embedding, step 1: patchify images [B, CH, H, W] into [B, NP, CH*P*P] rows
    //      in (channel, py, px) order, so a conv weight [D, CH, P, P] is a linear weight [D, CH*P*P].
    //      Patches are ordered row-major over the (H/P, W/P) grid, as Conv2d + flatten(2) gives. ----
    void (*patchify_forward)(float *out, const float *images, int B, int CH, int H, int W, int P);

    // ---- ViT token assembly: out[B, T, D], T = NP + n_prefix (n_prefix = 1, or 2 with DeiT's
    //      distillation token): out[b,0] = cls, out[b,1] = dist (if any), out[b,n_prefix+p] = patches[b,p];
    //      then adds pos[T, D] to every row. ----
    void (*vit_tokens_forward)(float *out, const float *patches, const float *cls, const float *dist,
                               const float *pos, int B, int NP, int D);
    void (*vit_tokens_backward)(float *dpatches, float *dcls, float *ddist, float *dpos,
                                const float *dout, int B, int NP, int D);

    // ---- token gather: out[B, count, C] = inp[b, first .. first+count-1, :] of inp [B, T, C]
    //      (CLS pooling is first = 0, count = 1; the pruned last ViT layer keeps the prefix tokens) ----
    void (*select_tokens_forward)(float *out, const float *inp, int B, int T, int C, int first, int count);
    void (*select_tokens_backward)(float *dinp, const float *dout, int B, int T, int C, int first, int count);

    // ---- residual: out = a + b (n elements; out may alias a or b); backward: da += dout, db += dout ----
    void (*add_forward)(float *out, const float *a, const float *b, size_t n);
    void (*add_backward)(float *da, float *db, const float *dout, size_t n);

    // ---- dropout with Philox: element i is kept with probability 1-p (scaled by 1/(1-p)) iff
    //      qft_philox_uniform(seed, stream, i) >= p. The mask is recomputed in backward, never stored.
    //      In-place is allowed (out == inp, dinp == dout is NOT allowed since backward accumulates). ----
    void (*dropout_forward)(float *out, const float *inp, size_t n, float p, uint64_t seed, uint64_t stream);
    void (*dropout_backward)(float *dinp, const float *dout, size_t n, float p, uint64_t seed, uint64_t stream);

    // ---- cross-entropy over logits [N, V] with integer targets; label smoothing eps:
    //      loss_i = -(1-eps) log p[t_i] - eps/V sum_j log p[j]. Targets < 0 are ignored (loss 0, no grad).
    //      losses[N] receives per-row losses; probs[N,V] is saved softmax for backward.
    //      backward: dlogits += dloss_scale * (probs - smoothed_onehot) for each counted row. ----
    void (*cross_entropy_forward)(float *losses, float *probs, const float *logits, const int32_t *targets,
                                  int N, int V, float label_smoothing);
    void (*cross_entropy_backward)(float *dlogits, const float *probs, const int32_t *targets,
                                   int N, int V, float label_smoothing, float dloss_scale);

    // ---- mean squared error for regression heads: loss = mean((pred - target)^2) over n ----
    float (*mse_forward)(const float *pred, const float *target, size_t n);
    void (*mse_backward)(float *dpred, const float *pred, const float *target, size_t n, float dloss_scale);

    // ---- knowledge distillation (Hinton et al. 2015, METHODS.md §9) over logits [N, V] at temperature T:
    //      p_s = softmax(z_s / T), p_t = softmax(z_t / T), losses[i] = KL(p_t || p_s) of row i
    //      = sum_j p_t[j] (log p_t[j] - log p_s[j]) (terms with p_t[j] = 0 count 0); p_s and p_t are saved.
    //      backward: dlogits += dloss_scale * (p_s - p_t) per row, since dKL/dz_s = (p_s - p_t) / T:
    //      the caller folds 1/T, the T^2 factor and the batch mean into dloss_scale. ----
    void (*kd_kl_forward)(float *losses, float *p_student, float *p_teacher, const float *student_logits,
                          const float *teacher_logits, int N, int V, float temperature);
    void (*kd_kl_backward)(float *dlogits, const float *p_student, const float *p_teacher, int N, int V,
                           float dloss_scale);

    // ---- uniform fake quantization of x [rows, C] (METHODS.md §1, §3) ----
    // Element (r, c) uses s = scale[k] > 0 and z = clamp(rint(zero_point[k]), qmin, qmax) of its group k
    // (qft_fq_layout; zero_point NULL = 0). Rounding z is a no-op for the integer zero points calibrators give and
    // is what torch's learnable forward does with a raw learnable z, so callers pass the raw z everywhere.
    //   q = rint(x * (1/s)) + z   (1/s computed once in float; rint half to even, THEN z added)
    //   out = (clamp(q, qmin, qmax) - z) * s
    // Bit for bit torch's fake_quantize_per_tensor_affine / fake_quantize_per_channel_affine (integer zero
    // point) and the forward of _fake_quantize_learnable_per_{tensor,channel}_affine, for finite x with
    // |x/s| < 2^63. Where x/s >= 2^63 (and for +Inf, NaN) torch's int64 cast overflows and it returns
    // (qmin - z) * s; qft clamps to (qmax - z) * s as the formula says, and NaN stays NaN.
    // Returns the number of non-finite inputs (NaN/Inf): callers turn a non-zero count into an error.
    // out may alias inp.
    size_t (*fake_quant_forward)(float *out, const float *inp, const float *scale, const float *zero_point,
                                 int rows, int C, const qft_fq_layout *layout);
    // dscale == dzero == NULL: STE, as torch's fake_quantize_*_cachemask backward (mask on the code as the
    //   forward computes it):  dinp += dout * 1[qmin <= rint(x * (1/s)) + z <= qmax].
    // dscale or dzero non-NULL (LSQ, Esser et al. 2020; LSQ+, Bhalgat et al. 2020): torch's
    //   _fake_quantize_learnable_per_channel_affine backward (QuantizedOpKernels.cpp,
    //   fake_quantize_learnable_channel_grad_kernel_cpu), which rounds x/s and z TOGETHER, with the fused
    //   multiply-adds its AVX2/AVX-512 and CUDA builds compile:
    //     q = rint(fma(x, 1/s, z));  inside = qmin <= q <= qmax
    //     dinp     += inside ? dout : 0
    //     dscale[k] += sum over the group of: inside: dout * fma(q - z, s, -x) * (1/s) * grad_factor
    //                                         (= dout * (rint(x/s) - x/s), the LSQ step gradient)
    //                                         q < qmin: dout * (qmin - z) * grad_factor;  q > qmax: dout * (qmax - z) * grad_factor
    //     dzero[k]  += sum over the group of: inside: 0;  outside: -dout * s * grad_factor
    //   grad_factor multiplies each term before the sum, as torch (LSQ: 1/sqrt(N * qmax), N = group size).
    //   Sums are ACCUMULATED, in a fixed order (same bits for any thread count); error <= 4.8e-7 * sum|terms|.
    //   Deliberate difference: torch's per-TENSOR learnable backward takes z = trunc(clamp(z + 0.5)) (z = 0.5 acts
    //   as 1, z = -3 as -2), unlike its own forward; qft uses the forward's z for every layout (torch's
    //   per-channel rule). They agree for z >= 0 except at exact .5.
    // dinp may be dout itself: then the gradient is masked in place (dinp = dout * mask, WRITTEN, not accumulated;
    // the same values as accumulating into zeros, up to the sign of zero), which saves the caller a scratch buffer.
    void (*fake_quant_backward)(float *dinp, float *dscale, float *dzero, const float *dout, const float *inp,
                                const float *scale, const float *zero_point, int rows, int C,
                                const qft_fq_layout *layout, float grad_factor);

    // ---- log2 / log-sqrt2 fake quantization of attention probabilities in [0, 1] (METHODS.md §4) ----
    // r = x * (1/s) in float; log2: q' = rint(-log2 r), log_sqrt2: q' = rint(-2 log2 r) (evaluated exactly).
    // Levels q = 0 .. 2^bits - 1: x_hat = s * 2^-q (log2) or s_q * 2^-ceil(q/2) with s_q = s * sqrt2 (float
    // product) for odd q, else s (log_sqrt2 = s * 2^(-q/2) in RepQ-ViT's shift form). q' < 0 (x above s): x_hat = s.
    // q' >= 2^bits, x <= 0, or a level that underflows to 0: x_hat = 0. NaN stays NaN.
    // scale: one float (1.0 = FQ-ViT's log2 form). Returns the number of non-finite inputs.
    size_t (*log_quant_forward)(float *out, const float *inp, size_t n, int bits, int sqrt2, const float *scale);
    // dinp += dout where 0 <= q' < 2^bits and x_hat != 0 (METHODS.md §4 [ours]); dscale (may be NULL) +=
    // sum dout * d x_hat/d s, with d x_hat/d s = x_hat / s as the level factor (2^-q, or sqrt2_f * 2^-ceil(q/2)),
    // 1 above the grid (x_hat = s), 0 where x_hat = 0. Fixed-order sum in double.
    void (*log_quant_backward)(float *dinp, float *dscale, const float *dout, const float *inp, size_t n, int bits,
                               int sqrt2, const float *scale);

    // ---- weight oscillation (Nagel et al., ICML 2022, arXiv 2203.11086; METHODS.md §10) on a weight
    //      [rows, C] with its quantizer (scale/zero_point/layout as fake_quant_forward). Codes are
    //      w_int = clamp(rint(w/s) + z, qmin, qmax). ----
    // Dampening: returns sum over elements of (sg(w_hat) - clamp(w, s(qmin-z), s(qmax-z)))^2 and
    // ACCUMULATES coef * 2 (clamp(w) - w_hat) into dw where w is inside the clamp range (the loss's
    // gradient with loss weight coef per element; callers fold lambda and the aggregation into coef).
    double (*oscillation_dampen)(float *dw, const float *w, const float *scale, const float *zero_point, int rows,
                                 int C, const qft_fq_layout *layout, float coef);
    // Tracking after an optimizer step, per element not yet frozen: s_t = sign(prev - code),
    // oscillation o = (dir * s_t == -1), dir = s_t if s_t != 0, freq = m o + (1 - m) freq,
    // ema = m code + (1 - m) ema, prev = code. When threshold > 0 and freq > threshold the element
    // freezes: frozen = 1 and w = s (rint(ema) - z) from then on. Elements already frozen get
    // w = s (rint(ema) - z) (undoing the optimizer's move). Returns the number of elements frozen now.
    // prev/dir: int8 state; freq/ema: float; frozen: uint8 (all zero-initialized; the first call with
    // initialize = 1 only records codes).
    size_t (*oscillation_track)(float *w, const float *scale, const float *zero_point, int rows, int C,
                                const qft_fq_layout *layout, int8_t *prev, int8_t *dir, float *freq, float *ema,
                                uint8_t *frozen, float momentum, float threshold, int initialize);
    // VVTQ bin regularizer (Huang et al., TMLR 2024, arXiv 2307.00331; METHODS.md §11) per quantizer
    // group g (PER_TENSOR or PER_ROW layouts): returns sum_g [ mean_g((sg(w_hat) - w~)^2) +
    // sum_{codes k with |S_k| > 1} var_unbiased(w~[S_k]) ], w~ = clamp(w, s(qmin-z), s(qmax-z)), and
    // ACCUMULATES coef * its gradient into dw (elements inside the range; clipped ones get none).
    double (*bin_regularizer)(float *dw, const float *w, const float *scale, const float *zero_point, int rows, int C,
                              const qft_fq_layout *layout, float coef);
    // dw = 0 where frozen (frozen weights take no gradient).
    void (*oscillation_mask_grad)(float *dw, const uint8_t *frozen, size_t n);
    // ---- fine-tuning methods (host/method/, docs/methods.md) ----
    // Moments of x[n] for the outlier penalty: out = {mean, std (population), min, max}; sums in double
    // over fixed chunks (same bits for any thread count).
    void (*tensor_moments)(const float *x, size_t n, double out[4]);
    // Outlier-range penalty (METHODS.md §6 [ours]): returns sum_i relu(|x_i - mu| - tau)^p (double,
    // fixed-order) and, in *count (may be NULL), the number of elements with |x_i - mu| > tau; writes nothing.
    double (*outlier_penalty_forward)(const float *x, size_t n, float mu, float tau, float p, size_t *count);
    // dx += coef * p * relu(|x_i - mu| - tau)^(p-1) * sign(x_i - mu); the caller folds lambda, w and 1/N
    // (and the loss scale) into coef.
    void (*outlier_penalty_backward)(float *dx, const float *x, size_t n, float mu, float tau, float p, float coef);
    // Quantization noise in place of Q(x) for x [rows, C] with the fake-quant layout (METHODS.md §8 [ours]).
    // Where the quantizer clips (code rint(x/s) + z outside [qmin, qmax]) out is the clipped level, exactly
    // as fake_quant_forward; elsewhere, with s the element's scale, i = r*C + c its flattened index and
    // u0..u3 the uniforms (qft_uint_to_unit_float) of the four words of Philox block
    // qft_philox_block_at(seed, stream, counter = i >> 2), which four consecutive elements share:
    //   uniform:   out = x + amplitude * s * (u[i & 3] - 1/2)   (u[i & 3] = qft_philox_uniform(seed, stream, i))
    //   gaussian:  out = x + amplitude * s * g / sqrt(12), g ~ N(0, 1) (same variance): Box-Muller on the word
    //              pair (ua, ub) = (u0, u1) for i & 3 in {0, 1}, (u2, u3) for {2, 3}; R = sqrt(-2 ln(1 - ua)),
    //              t = 2 pi ub, g = R cos t for i & 3 in {0, 2}, R sin t for {1, 3}
    //   bernoulli: out = u[i & 3] < p ? Q(x) : x   (Quant-Noise, Fan et al. 2021: x + M * sg(Q(x) - x))
    //   histogram: out = x + amplitude * s * eps, eps the inverse of the piecewise-linear CDF at u = u[i & 3]
    //              (NIPQ, Shin et al. 2023): j = the largest bin in [0, bins - 1] with cdf[j] <= u, then
    //              eps = (j + (u - cdf[j]) / (cdf[j+1] - cdf[j])) / bins - 1/2, all in float: bin j with
    //              probability cdf[j+1] - cdf[j], uniform inside it, one uniform per element
    // and out is then clamped to the quantizer's range. The noise of an element depends on (seed, stream, i)
    // only, not on the thread count or on where rows begin within a block. The backward is the quantizer's
    // own (STE / LSQ): identity where the quantizer does not clip. Returns the number of non-finite inputs.
    // out may alias inp.
    size_t (*quant_noise_forward)(float *out, const float *inp, const float *scale, const float *zero_point,
                                  int rows, int C, const qft_fq_layout *layout, const qft_quant_noise *noise);
    // The rounding residual of the real quantizer, for the noise amplitude: *sum_sq = sum over the elements
    // the quantizer does not clip of ((Q(x) - x) / s)^2 (double, fixed order); returns how many there are.
    size_t (*quant_residual)(const float *inp, const float *scale, const float *zero_point, int rows, int C,
                             const qft_fq_layout *layout, double *sum_sq);
    // Its histogram, for histogram noise: counts[bins] (HOST memory, WRITTEN) = how many of those elements have
    // r = ((Q(x) - x) / s) in bin b = floor((r + 1/2) * bins), clamped to [0, bins - 1] (|r| can pass 1/2 by a
    // rounding error), with r computed in double from the float Q(x) as quant_residual does; returns their
    // total (the unclipped elements). Integer counts: the same for any thread count.
    size_t (*quant_residual_histogram)(const float *inp, const float *scale, const float *zero_point, int rows,
                                       int C, const qft_fq_layout *layout, int bins, uint64_t *counts);

    // ---- reductions used by the optimizer ----
    double (*sum_squares)(const float *x, size_t n);  // for global grad-norm clipping
    void (*scale)(float *x, float factor, size_t n);

    // ---- AdamW (Loshchilov & Hutter 2019), decoupled decay; one call per parameter group.
    //      m, v: first/second moments; step >= 1 for bias correction. ----
    void (*adamw_update)(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                         float beta1, float beta2, float eps, float weight_decay, int step);
} qft_backend;

// The fp32 CPU reference backend (OpenMP + BLAS).
const qft_backend *qft_backend_cpu(void);

#endif
