// Multi-head self-attention core on the CPU: softmax(q k^T * scale + key mask) v per (batch, head),
// and its backward; (batch, head) pairs run in parallel and each owns its rows of out/dq/dk/dv.
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"

// Logit given to padded keys: exp(-1e30 - max) underflows to exactly 0, yet a fully padded row
// stays finite (all logits equal, so it becomes uniform) instead of producing NaN as -inf would.
#define ATTENTION_MASKED_LOGIT (-1e30f)

// q.k for all keys at once vectorizes over keys when K (or V) of one head is transposed to [HS][T]
// first; that copy lives on the stack, so it is used up to this many floats (128 KiB, e.g. T = 512,
// HS = 64) and plain per-key dot products beyond.
#define ATTENTION_MAX_TRANSPOSED_FLOATS 32768

// Per-row accumulators over channels are kept in chunks of this many floats (4 AVX-512 registers).
#define ATTENTION_CHANNEL_CHUNK 64

static inline float head_dot(const float *a, const float *b, int HS) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int d = 0; d < HS; d++) sum += a[d] * b[d];
    return sum;
}

// Keys are processed in chunks of this many (one AVX-512 register of scores).
#define ATTENTION_KEY_CHUNK 16

static inline int padded_key_count(int T) { return (T + ATTENTION_KEY_CHUNK - 1) / ATTENTION_KEY_CHUNK * ATTENTION_KEY_CHUNK; }

// transposed[d * T_padded + j] = rows[j * row_stride + d] for the T rows of one head; the padding
// columns are zero, so dot loops can always run whole key chunks.
static void transpose_head(float *restrict transposed, const float *restrict rows, size_t row_stride, int T, int HS) {
    const int T_padded = padded_key_count(T);
    for (int d = 0; d < HS; d++)
        for (int j = T; j < T_padded; j++) transposed[(size_t)d * T_padded + j] = 0.0f;
    for (int j = 0; j < T; j++)
        for (int d = 0; d < HS; d++) transposed[(size_t)d * T_padded + j] = rows[(size_t)j * row_stride + d];
}

// dots[j] = x . rows_j for all T rows of one head: from the transposed copy when there is one.
static inline void dots_with_head(float *restrict dots, const float *restrict x, const float *restrict transposed,
                                  const float *restrict rows, size_t row_stride, int T, int HS) {
    if (transposed) {
        const int T_padded = padded_key_count(T);
        for (int j0 = 0; j0 < T; j0 += ATTENTION_KEY_CHUNK) {
            float acc[ATTENTION_KEY_CHUNK] = {0};
            for (int d = 0; d < HS; d++) {
                const float xd = x[d];
                const float *column = transposed + (size_t)d * T_padded + j0;
#pragma omp simd
                for (int jj = 0; jj < ATTENTION_KEY_CHUNK; jj++) acc[jj] += xd * column[jj];
            }
            const int width = T - j0 < ATTENTION_KEY_CHUNK ? T - j0 : ATTENTION_KEY_CHUNK;
            memcpy(dots + j0, acc, (size_t)width * sizeof(float));
        }
    } else {
        for (int j = 0; j < T; j++) dots[j] = head_dot(x, rows + (size_t)j * row_stride, HS);
    }
}

// One (batch, head): scores, masked softmax, probs @ v. Always inlined into a switch on HS, so the
// common head sizes get constant trip counts and keep their accumulators in registers.
static inline __attribute__((always_inline)) void attention_head_forward(
    float *out_head, float *prob_head, float *local_row, const float *q_head, const float *k_head,
    const float *v_head, const float *mask_row, float *k_transposed, int T, int HS, size_t C, float scale) {
    if (k_transposed) transpose_head(k_transposed, k_head, C, T, HS);
    for (int i = 0; i < T; i++) {
        const float *q_row = q_head + (size_t)i * C;
        float *prob_row = prob_head ? prob_head + (size_t)i * T : local_row;
        dots_with_head(prob_row, q_row, k_transposed, k_head, C, T, HS);
        float row_max = -INFINITY;
        for (int j = 0; j < T; j++) {
            float logit = mask_row && mask_row[j] < 0.5f ? ATTENTION_MASKED_LOGIT : prob_row[j] * scale;
            prob_row[j] = logit;
            row_max = logit > row_max ? logit : row_max;
        }
        float inv_sum = 1.0f / cpu_exp_shifted_sum(prob_row, T, row_max);
        for (int j = 0; j < T; j++) prob_row[j] *= inv_sum;

        // out_i = sum_j p_j v_j, in register-sized channel chunks (constant-size after inlining).
        for (int d0 = 0; d0 < HS; d0 += ATTENTION_CHANNEL_CHUNK) {
            const int width = HS - d0 < ATTENTION_CHANNEL_CHUNK ? HS - d0 : ATTENTION_CHANNEL_CHUNK;
            float out_acc[ATTENTION_CHANNEL_CHUNK] = {0};
            for (int j = 0; j < T; j++) {
                const float p = prob_row[j];
                if (p == 0.0f) continue;  // padded key
                const float *v_row = v_head + (size_t)j * C + d0;
#pragma omp simd
                for (int d = 0; d < width; d++) out_acc[d] += p * v_row[d];
            }
            memcpy(out_head + (size_t)i * C + d0, out_acc, (size_t)width * sizeof(float));
        }
    }
}

void cpu_attention_forward(float *out, float *probs, const float *q, const float *k, const float *v,
                           const float *key_mask, int B, int T, int NH, int HS, float scale) {
    if (B <= 0 || T <= 0 || NH <= 0 || HS <= 0) return;
    const size_t C = (size_t)NH * HS;
    const size_t work = (size_t)B * NH * T * T * HS;
    const int use_transposed = (size_t)padded_key_count(T) * HS <= ATTENTION_MAX_TRANSPOSED_FLOATS;
#pragma omp parallel for collapse(2) schedule(static) if (work > QFT_CPU_PARALLEL_MIN_COMPUTE)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const size_t head_offset = (size_t)b * T * C + (size_t)h * HS;
            const float *mask_row = key_mask ? key_mask + (size_t)b * T : NULL;
            float *prob_head = probs ? probs + ((size_t)b * NH + h) * T * T : NULL;
            float k_transposed[use_transposed ? (size_t)padded_key_count(T) * HS : 1];
            float local_row[T];  // used when the caller does not keep probs (inference)
            float *transposed = use_transposed ? k_transposed : NULL;
#define ATTENTION_HEAD_FORWARD(head_size)                                                                     \
    attention_head_forward(out + head_offset, prob_head, local_row, q + head_offset, k + head_offset,        \
                           v + head_offset, mask_row, transposed, T, head_size, C, scale)
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
static inline __attribute__((always_inline)) void attention_head_backward(
    float *dq_head, float *dk_head, float *dv_head, float *dlogit_row, const float *dout_head,
    const float *prob_head, const float *q_head, const float *k_head, const float *v_head, float *v_transposed,
    int T, int HS, size_t C, float scale) {
    if (v_transposed && (dq_head || dk_head)) transpose_head(v_transposed, v_head, C, T, HS);
    for (int i = 0; i < T; i++) {
        const float *prob_row = prob_head + (size_t)i * T;
        const float *dout_row = dout_head + (size_t)i * C;
        const float *q_row = q_head + (size_t)i * C;
        if (dv_head) {
            for (int j = 0; j < T; j++) {
                const float p = prob_row[j];
                if (p == 0.0f) continue;  // padded key: no gradient flows
                float *dv_row = dv_head + (size_t)j * C;
#pragma omp simd
                for (int d = 0; d < HS; d++) dv_row[d] += p * dout_row[d];
            }
        }
        if (!dq_head && !dk_head) continue;
        // Softmax backward: dlogit_j = p_j (dp_j - sum_k p_k dp_k), with dp_j = dout_i . v_j;
        // the logits were scaled, so dq and dk carry the scale once more.
        dots_with_head(dlogit_row, dout_row, v_transposed, v_head, C, T, HS);
        float weighted_dprob = 0.0f;
        for (int j = 0; j < T; j++) weighted_dprob += prob_row[j] * dlogit_row[j];
        for (int j = 0; j < T; j++) dlogit_row[j] = prob_row[j] * (dlogit_row[j] - weighted_dprob) * scale;
        if (dk_head) {
            for (int j = 0; j < T; j++) {
                const float dlogit = dlogit_row[j];
                if (dlogit == 0.0f) continue;
                float *dk_row = dk_head + (size_t)j * C;
#pragma omp simd
                for (int d = 0; d < HS; d++) dk_row[d] += dlogit * q_row[d];
            }
        }
        if (dq_head) {
            for (int d0 = 0; d0 < HS; d0 += ATTENTION_CHANNEL_CHUNK) {
                const int width = HS - d0 < ATTENTION_CHANNEL_CHUNK ? HS - d0 : ATTENTION_CHANNEL_CHUNK;
                float dq_acc[ATTENTION_CHANNEL_CHUNK] = {0};
                for (int j = 0; j < T; j++) {
                    const float dlogit = dlogit_row[j];
                    if (dlogit == 0.0f) continue;
                    const float *k_row = k_head + (size_t)j * C + d0;
#pragma omp simd
                    for (int d = 0; d < width; d++) dq_acc[d] += dlogit * k_row[d];
                }
                float *dq_row = dq_head + (size_t)i * C + d0;
                for (int d = 0; d < width; d++) dq_row[d] += dq_acc[d];
            }
        }
    }
}

void cpu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                            const float *q, const float *k, const float *v, int B, int T, int NH, int HS,
                            float scale) {
    if (B <= 0 || T <= 0 || NH <= 0 || HS <= 0) return;
    if (!dq && !dk && !dv) return;
    const size_t C = (size_t)NH * HS;
    const size_t work = (size_t)B * NH * T * T * HS;
    const int use_transposed = (size_t)padded_key_count(T) * HS <= ATTENTION_MAX_TRANSPOSED_FLOATS;
#pragma omp parallel for collapse(2) schedule(static) if (work > QFT_CPU_PARALLEL_MIN_COMPUTE)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const size_t head_offset = (size_t)b * T * C + (size_t)h * HS;
            const float *prob_head = probs + ((size_t)b * NH + h) * T * T;
            float v_transposed[use_transposed ? (size_t)padded_key_count(T) * HS : 1];
            float *transposed = use_transposed ? v_transposed : NULL;
            float dlogit_row[T];
            float *dq_head = dq ? dq + head_offset : NULL;
            float *dk_head = dk ? dk + head_offset : NULL;
            float *dv_head = dv ? dv + head_offset : NULL;
#define ATTENTION_HEAD_BACKWARD(head_size)                                                                    \
    attention_head_backward(dq_head, dk_head, dv_head, dlogit_row, dout + head_offset, prob_head,             \
                            q + head_offset, k + head_offset, v + head_offset, transposed, T, head_size, C, scale)
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
