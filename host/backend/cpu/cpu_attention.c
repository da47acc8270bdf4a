// Multi-head self-attention core on the CPU: softmax(q k^T * scale + key mask) v per (batch, head),
// and its backward; (batch, head) pairs run in parallel and each owns its rows of out/dq/dk/dv.
// q, k, v (and dq, dk, dv) rows are qkv_stride floats apart (S below), so a fused [N, 3C] QKV
// projection is read in place; out and dout rows are C = NH*HS apart. Only the first Tq tokens of
// each sequence are queries (out/dout [B, Tq, C], probs [B, NH, Tq, T]); all T are keys.
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"
#include "quant/format.h"

// Logit given to padded keys: exp(-1e30 - max) underflows to exactly 0, yet a fully padded row
// stays finite (all logits equal, so it becomes uniform) instead of producing NaN as -inf would.
#define ATTENTION_MASKED_LOGIT (-1e30f)

// Query rows are processed in groups of this many: each inner loop then carries this many
// independent accumulator chains, which hides FMA latency (T and HS are small: 17 and 16 in the
// demo ViT, so one chain per row would leave the core waiting on its own results).
#define ATTENTION_QUERY_GROUP 4
_Static_assert(ATTENTION_QUERY_GROUP == 4, "the dk/dv updates below spell out four rows");

// Keys per chunk of scores (8: an AVX2 register; T = 17 then wastes 7 lanes per row instead of 15, 5%
// faster than 16-key chunks on the demo ViT) and channels per chunk of row accumulators.
#define ATTENTION_KEY_CHUNK 8
#define ATTENTION_CHANNEL_CHUNK 64

// q.k for a key chunk at once vectorizes over keys when K (or V) of one head is transposed to
// [HS][T_padded] first; that copy lives on the stack, so it is used up to this many floats (128 KiB,
// e.g. T = 512, HS = 64) and plain per-key dot products beyond.
#define ATTENTION_MAX_TRANSPOSED_FLOATS 32768

static inline int padded_key_count(int T) {
    return (T + ATTENTION_KEY_CHUNK - 1) / ATTENTION_KEY_CHUNK * ATTENTION_KEY_CHUNK;
}

static inline float head_dot(const float *a, const float *b, int HS) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int d = 0; d < HS; d++) sum += a[d] * b[d];
    return sum;
}

// transposed[d * T_padded + j] = rows[j * row_stride + d] for the T rows of one head; the padding
// columns are zero, so dot loops can always run whole key chunks.
static void transpose_head(float *restrict transposed, const float *restrict rows, size_t row_stride, int T, int HS) {
    const int T_padded = padded_key_count(T);
    for (int d = 0; d < HS; d++) {
        float *column = transposed + (size_t)d * T_padded;
        for (int j = 0; j < T; j++) column[j] = rows[(size_t)j * row_stride + d];
        for (int j = T; j < T_padded; j++) column[j] = 0.0f;
    }
}

// dots[r][j] = x_r . rows_j for the group's rows x_r (all valid pointers; duplicates allowed) and all
// T rows of one head, from the transposed copy when there is one. dots rows have stride T.
static inline __attribute__((always_inline)) void group_dots_with_head(
    float *restrict dots, const float *const *x_rows, const float *restrict transposed, const float *restrict rows,
    size_t row_stride, int T, int HS) {
    if (transposed) {
        const int T_padded = padded_key_count(T);
        for (int j0 = 0; j0 < T; j0 += ATTENTION_KEY_CHUNK) {
            float acc[ATTENTION_QUERY_GROUP][ATTENTION_KEY_CHUNK] = {{0}};
            for (int d = 0; d < HS; d++) {
                const float *column = transposed + (size_t)d * T_padded + j0;
                for (int r = 0; r < ATTENTION_QUERY_GROUP; r++) {
                    const float xd = x_rows[r][d];
#pragma omp simd
                    for (int jj = 0; jj < ATTENTION_KEY_CHUNK; jj++) acc[r][jj] += xd * column[jj];
                }
            }
            const int width = T - j0 < ATTENTION_KEY_CHUNK ? T - j0 : ATTENTION_KEY_CHUNK;
            for (int r = 0; r < ATTENTION_QUERY_GROUP; r++) {
                float *dots_row = dots + (size_t)r * T + j0;
                if (width == ATTENTION_KEY_CHUNK) {
#pragma omp simd
                    for (int jj = 0; jj < ATTENTION_KEY_CHUNK; jj++) dots_row[jj] = acc[r][jj];
                } else {
                    for (int jj = 0; jj < width; jj++) dots_row[jj] = acc[r][jj];
                }
            }
        }
    } else {
        for (int r = 0; r < ATTENTION_QUERY_GROUP; r++)
            for (int j = 0; j < T; j++) dots[(size_t)r * T + j] = head_dot(x_rows[r], rows + (size_t)j * row_stride, HS);
    }
}

// acc_out[r][d] (+)= sum_j weights[r][j] * rows_j[d] for the group's rows, in channel chunks;
// out_rows[r] == NULL skips row r's store. accumulate: add into out_rows instead of overwriting.
static inline __attribute__((always_inline)) void group_weighted_rows(
    float *const *out_rows, const float *const *weight_rows, const float *restrict rows, size_t row_stride, int T,
    int HS, int accumulate) {
    for (int d0 = 0; d0 < HS; d0 += ATTENTION_CHANNEL_CHUNK) {
        const int width = HS - d0 < ATTENTION_CHANNEL_CHUNK ? HS - d0 : ATTENTION_CHANNEL_CHUNK;
        float acc[ATTENTION_QUERY_GROUP][ATTENTION_CHANNEL_CHUNK] = {{0}};
        for (int j = 0; j < T; j++) {
            float weights[ATTENTION_QUERY_GROUP];
            int any = 0;
            for (int r = 0; r < ATTENTION_QUERY_GROUP; r++) {
                weights[r] = weight_rows[r][j];
                any |= weights[r] != 0.0f;
            }
            if (!any) continue;  // a padded key (probability 0 for every row)
            const float *row = rows + (size_t)j * row_stride + d0;
            for (int r = 0; r < ATTENTION_QUERY_GROUP; r++) {
#pragma omp simd
                for (int d = 0; d < width; d++) acc[r][d] += weights[r] * row[d];
            }
        }
        for (int r = 0; r < ATTENTION_QUERY_GROUP; r++) {
            if (!out_rows[r]) continue;
            if (accumulate) {
                for (int d = 0; d < width; d++) out_rows[r][d0 + d] += acc[r][d];
            } else {
                memcpy(out_rows[r] + d0, acc[r], (size_t)width * sizeof(float));
            }
        }
    }
}

// Fake-quantized probability; *pass = 1 where the STE passes the gradient (qft_prob_quant in backend.h).
static inline float prob_quantize(const qft_prob_quant *pq, float p, int *pass) {
    if (pq->kind == QFT_QUANT_UNIFORM) {
        const float inv = 1.0f / pq->scale;
        const float code = rintf(p * inv) + pq->zero_point;
        *pass = code >= (float)pq->qmin && code <= (float)pq->qmax;
        return qft_quant_dequant(p, pq->scale, inv, pq->zero_point, pq->qmin, pq->qmax);
    }
    return qft_log_dequant(p, pq->scale, pq->bits, pq->kind == QFT_QUANT_LOG_SQRT2, pass);
}

// rows[r] (T each) of the group's first valid_rows rows -> quantized copies in out (T apart), or their noise
// form in training (pq->noise; row r is row first_row + r of the flattened [B, NH, Tq, T] probabilities); the
// pointers are redirected to the copies. The other rows (past Tq: a repeated row whose result is never stored,
// or zeros) are left as they are.
static void prob_rows_quantize(const qft_prob_quant *pq, const float **rows, float *out, int T, int valid_rows,
                               size_t first_row) {
    int contiguous = 1;  // the group's rows are one run of the flattened probabilities (always, as called here)
    for (int r = 1; r < valid_rows; r++) contiguous &= rows[r] == rows[0] + (size_t)r * T;
    for (int r = 0; r < valid_rows; r++) {
        float *q_row = out + (size_t)r * T;
        if (pq->noise) {
            if (!contiguous || r == 0)
                cpu_prob_noise_run(q_row, rows[r], (uint64_t)(first_row + (size_t)r) * (uint64_t)T,
                                   contiguous ? valid_rows * T : T, pq);
        } else {
            int pass;
            for (int j = 0; j < T; j++) q_row[j] = prob_quantize(pq, rows[r][j], &pass);
        }
    }
    for (int r = 0; r < valid_rows; r++) rows[r] = out + (size_t)r * T;
}

// One (batch, head): scores, masked softmax, probs @ v. Always inlined into a switch on HS, so the
// common head sizes get constant trip counts and keep their accumulators in registers.
static inline __attribute__((always_inline)) void attention_head_forward(
    float *out_head, float *prob_head, float *group_buffer, const float *q_head, const float *k_head,
    const float *v_head, const float *mask_row, float *k_transposed, int T, int Tq, int HS, size_t C, size_t S,
    float scale, const qft_prob_quant *pq, float *quant_group, size_t head_row) {
    if (k_transposed) transpose_head(k_transposed, k_head, S, T, HS);
    for (int i0 = 0; i0 < Tq; i0 += ATTENTION_QUERY_GROUP) {
        const int valid_rows = Tq - i0 < ATTENTION_QUERY_GROUP ? Tq - i0 : ATTENTION_QUERY_GROUP;
        // Rows past Tq repeat the last row (constant trip counts) and are never stored.
        const float *q_rows[ATTENTION_QUERY_GROUP];
        float *out_rows[ATTENTION_QUERY_GROUP];
        const float *prob_rows[ATTENTION_QUERY_GROUP];
        float *scores = prob_head ? prob_head + (size_t)i0 * T : group_buffer;
        float *group_scores = valid_rows == ATTENTION_QUERY_GROUP ? scores : group_buffer;
        for (int r = 0; r < ATTENTION_QUERY_GROUP; r++) {
            const int row = r < valid_rows ? i0 + r : Tq - 1;
            q_rows[r] = q_head + (size_t)row * S;
            out_rows[r] = r < valid_rows ? out_head + (size_t)(i0 + r) * C : NULL;
            prob_rows[r] = group_scores + (size_t)(r < valid_rows ? r : valid_rows - 1) * T;
        }
        group_dots_with_head(group_scores, q_rows, k_transposed, k_head, S, T, HS);
        for (int r = 0; r < valid_rows; r++) {
            float *prob_row = group_scores + (size_t)r * T;
            if (mask_row) {
#pragma omp simd
                for (int j = 0; j < T; j++) prob_row[j] = mask_row[j] < 0.5f ? ATTENTION_MASKED_LOGIT : prob_row[j] * scale;
            } else {
#pragma omp simd
                for (int j = 0; j < T; j++) prob_row[j] *= scale;
            }
            float row_max = -INFINITY;
#pragma omp simd reduction(max : row_max)
            for (int j = 0; j < T; j++) row_max = prob_row[j] > row_max ? prob_row[j] : row_max;
#pragma omp simd
            for (int j = 0; j < T; j++) prob_row[j] -= row_max;
        }
        // The group's rows are contiguous: one exp pass over all of them wastes fewer SIMD lanes on
        // row tails than a pass per row (T = 17: 5 vector calls instead of 8).
        cpu_exp_shifted_sum(group_scores, valid_rows * T, 0.0f);
        for (int r = 0; r < valid_rows; r++) {
            float *prob_row = group_scores + (size_t)r * T;
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int j = 0; j < T; j++) sum += prob_row[j];
            const float inv_sum = 1.0f / sum;
#pragma omp simd
            for (int j = 0; j < T; j++) prob_row[j] *= inv_sum;
        }
        // P_hat (in training possibly its noise form) weights v; P is saved
        if (pq) prob_rows_quantize(pq, prob_rows, quant_group, T, valid_rows, head_row + (size_t)i0);
        group_weighted_rows(out_rows, prob_rows, v_head, S, T, HS, 0);
        if (prob_head && group_scores != scores)  // a partial last group was computed in the buffer
            memcpy(scores, group_scores, (size_t)valid_rows * T * sizeof(float));
    }
}

void cpu_attention_forward(float *out, float *probs, const float *q, const float *k, const float *v, int qkv_stride,
                           const float *key_mask, int B, int T, int Tq, int NH, int HS, float scale,
                           const qft_prob_quant *pq) {
    if (B <= 0 || T <= 0 || Tq <= 0 || Tq > T || NH <= 0 || HS <= 0) return;
    const size_t C = (size_t)NH * HS, S = (size_t)qkv_stride;
    const size_t work = (size_t)B * NH * Tq * T * HS;
    const int use_transposed = (size_t)padded_key_count(T) * HS <= ATTENTION_MAX_TRANSPOSED_FLOATS;
#pragma omp parallel for collapse(2) schedule(static) if (work > QFT_CPU_PARALLEL_MIN_COMPUTE)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const size_t head_offset = (size_t)b * Tq * C + (size_t)h * HS;
            const size_t in_offset = (size_t)b * T * S + (size_t)h * HS;
            const float *mask_row = key_mask ? key_mask + (size_t)b * T : NULL;
            float *prob_head = probs ? probs + ((size_t)b * NH + h) * Tq * T : NULL;
            float k_transposed[use_transposed ? (size_t)padded_key_count(T) * HS : 1];
            float group_buffer[(size_t)ATTENTION_QUERY_GROUP * T];  // scores when probs is NULL or for a partial group
            float quant_group[pq ? (size_t)ATTENTION_QUERY_GROUP * T : 1];  // quantized probabilities
            float *transposed = use_transposed ? k_transposed : NULL;
#define ATTENTION_HEAD_FORWARD(head_size)                                                                     \
    attention_head_forward(out + head_offset, prob_head, group_buffer, q + in_offset, k + in_offset,         \
                           v + in_offset, mask_row, transposed, T, Tq, head_size, C, S, scale, pq, quant_group, \
                           ((size_t)b * NH + h) * Tq)
            switch (HS) {
                case 16: ATTENTION_HEAD_FORWARD(16); break;
                case 32: ATTENTION_HEAD_FORWARD(32); break;
                case 64: ATTENTION_HEAD_FORWARD(64); break;
                default: ATTENTION_HEAD_FORWARD(HS); break;
            }
#undef ATTENTION_HEAD_FORWARD
        }
    }
}

// One (batch, head) of the backward; inlined into a switch on HS like the forward.
// dlogit_group: ATTENTION_QUERY_GROUP x T scratch; zero_row: T zeros (probabilities of absent rows).
static inline __attribute__((always_inline)) void attention_head_backward(
    float *dq_head, float *dk_head, float *dv_head, float *dlogit_group, const float *zero_row,
    const float *dout_head, const float *prob_head, const float *q_head, const float *k_head, const float *v_head,
    float *v_transposed, int T, int Tq, int HS, size_t C, size_t S, float scale, const qft_prob_quant *pq,
    float *quant_group, size_t head_row) {
    const int need_dlogits = dq_head || dk_head;
    if (v_transposed && need_dlogits) transpose_head(v_transposed, v_head, S, T, HS);
    for (int i0 = 0; i0 < Tq; i0 += ATTENTION_QUERY_GROUP) {
        const int valid_rows = Tq - i0 < ATTENTION_QUERY_GROUP ? Tq - i0 : ATTENTION_QUERY_GROUP;
        // Absent rows (past Tq) get probability and dlogit 0, so their dk/dv contributions vanish.
        const float *dout_rows[ATTENTION_QUERY_GROUP], *q_rows[ATTENTION_QUERY_GROUP];
        const float *prob_rows[ATTENTION_QUERY_GROUP], *dlogit_rows[ATTENTION_QUERY_GROUP];
        float *dq_rows[ATTENTION_QUERY_GROUP];
        for (int r = 0; r < ATTENTION_QUERY_GROUP; r++) {
            const int row = r < valid_rows ? i0 + r : Tq - 1;
            dout_rows[r] = dout_head + (size_t)row * C;
            q_rows[r] = q_head + (size_t)row * S;
            prob_rows[r] = r < valid_rows ? prob_head + (size_t)row * T : zero_row;
            dlogit_rows[r] = dlogit_group + (size_t)r * T;
            dq_rows[r] = dq_head && r < valid_rows ? dq_head + (size_t)row * S : NULL;
        }
        // With quantized probabilities the values were weighted by P_hat: dv uses P_hat, the softmax P.
        const float *weight_rows[ATTENTION_QUERY_GROUP] = {prob_rows[0], prob_rows[1], prob_rows[2], prob_rows[3]};
        if (pq) prob_rows_quantize(pq, weight_rows, quant_group, T, valid_rows, head_row + (size_t)i0);
        if (dv_head) {  // dv_j += sum_r p_rj dout_r
            for (int j = 0; j < T; j++) {
                const float p0 = weight_rows[0][j], p1 = weight_rows[1][j], p2 = weight_rows[2][j],
                            p3 = weight_rows[3][j];
                if (p0 == 0.0f && p1 == 0.0f && p2 == 0.0f && p3 == 0.0f) continue;  // padded key
                float *dv_row = dv_head + (size_t)j * S;
#pragma omp simd
                for (int d = 0; d < HS; d++)
                    dv_row[d] += p0 * dout_rows[0][d] + p1 * dout_rows[1][d] + p2 * dout_rows[2][d] + p3 * dout_rows[3][d];
            }
        }
        if (!need_dlogits) continue;
        // Softmax backward: dlogit_j = p_j (dp_j - sum_k p_k dp_k), with dp_j = dout_i . v_j;
        // the logits were scaled, so dq and dk carry the scale once more.
        group_dots_with_head(dlogit_group, dout_rows, v_transposed, v_head, S, T, HS);
        for (int r = 0; r < ATTENTION_QUERY_GROUP; r++) {
            const float *prob_row = prob_rows[r];
            float *dlogit_row = dlogit_group + (size_t)r * T;
            if (pq) {  // dP = dP_hat * STE mask
                for (int j = 0; j < T; j++) {
                    int pass;
                    prob_quantize(pq, prob_row[j], &pass);
                    if (!pass) dlogit_row[j] = 0.0f;
                }
            }
            float weighted_dprob = 0.0f;
            for (int j = 0; j < T; j++) weighted_dprob += prob_row[j] * dlogit_row[j];
#pragma omp simd
            for (int j = 0; j < T; j++) dlogit_row[j] = prob_row[j] * (dlogit_row[j] - weighted_dprob) * scale;
        }
        if (dk_head) {  // dk_j += sum_r dlogit_rj q_r
            for (int j = 0; j < T; j++) {
                const float g0 = dlogit_rows[0][j], g1 = dlogit_rows[1][j], g2 = dlogit_rows[2][j],
                            g3 = dlogit_rows[3][j];
                if (g0 == 0.0f && g1 == 0.0f && g2 == 0.0f && g3 == 0.0f) continue;
                float *dk_row = dk_head + (size_t)j * S;
#pragma omp simd
                for (int d = 0; d < HS; d++)
                    dk_row[d] += g0 * q_rows[0][d] + g1 * q_rows[1][d] + g2 * q_rows[2][d] + g3 * q_rows[3][d];
            }
        }
        if (dq_head) group_weighted_rows(dq_rows, dlogit_rows, k_head, S, T, HS, 1);  // dq_r += sum_j dlogit_rj k_j
    }
}

void cpu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                            const float *q, const float *k, const float *v, int qkv_stride, int B, int T, int Tq,
                            int NH, int HS, float scale, const qft_prob_quant *pq) {
    if (B <= 0 || T <= 0 || Tq <= 0 || Tq > T || NH <= 0 || HS <= 0) return;
    if (!dq && !dk && !dv) return;
    const size_t C = (size_t)NH * HS, S = (size_t)qkv_stride;
    const size_t work = (size_t)B * NH * Tq * T * HS;
    const int use_transposed = (size_t)padded_key_count(T) * HS <= ATTENTION_MAX_TRANSPOSED_FLOATS;
#pragma omp parallel for collapse(2) schedule(static) if (work > QFT_CPU_PARALLEL_MIN_COMPUTE)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const size_t head_offset = (size_t)b * Tq * C + (size_t)h * HS;
            const size_t in_offset = (size_t)b * T * S + (size_t)h * HS;
            const float *prob_head = probs + ((size_t)b * NH + h) * Tq * T;
            float v_transposed[use_transposed ? (size_t)padded_key_count(T) * HS : 1];
            float *transposed = use_transposed ? v_transposed : NULL;
            float dlogit_group[(size_t)ATTENTION_QUERY_GROUP * T];
            float quant_group[pq ? (size_t)ATTENTION_QUERY_GROUP * T : 1];
            float zero_row[T];
            memset(zero_row, 0, sizeof zero_row);
            float *dq_head = dq ? dq + in_offset : NULL;
            float *dk_head = dk ? dk + in_offset : NULL;
            float *dv_head = dv ? dv + in_offset : NULL;
#define ATTENTION_HEAD_BACKWARD(head_size)                                                                    \
    attention_head_backward(dq_head, dk_head, dv_head, dlogit_group, zero_row, dout + head_offset, prob_head, \
                            q + in_offset, k + in_offset, v + in_offset, transposed, T, Tq, head_size, C, S, scale,  \
                            pq, quant_group, ((size_t)b * NH + h) * Tq)
            switch (HS) {
                case 16: ATTENTION_HEAD_BACKWARD(16); break;
                case 32: ATTENTION_HEAD_BACKWARD(32); break;
                case 64: ATTENTION_HEAD_BACKWARD(64); break;
                default: ATTENTION_HEAD_BACKWARD(HS); break;
            }
#undef ATTENTION_HEAD_BACKWARD
        }
    }
}
