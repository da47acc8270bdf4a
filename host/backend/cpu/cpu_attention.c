// Multi-head self-attention core on the CPU: softmax(q k^T * scale + key mask) v per (batch, head),
// and its backward; (batch, head) pairs run in parallel and each owns its rows of out/dq/dk/dv.
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"

// Logit given to padded keys: exp(-1e30 - max) underflows to exactly 0, yet a fully padded row
// stays finite (all logits equal, so it becomes uniform) instead of producing NaN as -inf would.
#define ATTENTION_MASKED_LOGIT (-1e30f)

static inline float head_dot(const float *a, const float *b, int HS) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int d = 0; d < HS; d++) sum += a[d] * b[d];
    return sum;
}

void cpu_attention_forward(float *out, float *probs, const float *q, const float *k, const float *v,
                           const float *key_mask, int B, int T, int NH, int HS, float scale) {
    if (B <= 0 || T <= 0 || NH <= 0 || HS <= 0) return;
    const int C = NH * HS;
    const size_t work = (size_t)B * NH * T * T * HS;
#pragma omp parallel for collapse(2) schedule(static) if (work > QFT_CPU_PARALLEL_MIN_CHEAP)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *mask_row = key_mask ? key_mask + (size_t)b * T : NULL;
            float local_row[T];  // used when the caller does not keep probs (inference)
            for (int i = 0; i < T; i++) {
                const float *q_row = q + ((size_t)b * T + i) * C + (size_t)h * HS;
                float *prob_row = probs ? probs + (((size_t)b * NH + h) * T + i) * T : local_row;
                float row_max = -INFINITY;
                for (int j = 0; j < T; j++) {
                    float logit;
                    if (mask_row && mask_row[j] < 0.5f) {
                        logit = ATTENTION_MASKED_LOGIT;
                    } else {
                        const float *k_row = k + ((size_t)b * T + j) * C + (size_t)h * HS;
                        logit = head_dot(q_row, k_row, HS) * scale;
                    }
                    prob_row[j] = logit;
                    row_max = logit > row_max ? logit : row_max;
                }
                float sum = 0.0f;
                for (int j = 0; j < T; j++) {
                    float e = expf(prob_row[j] - row_max);
                    prob_row[j] = e;
                    sum += e;
                }
                float inv_sum = 1.0f / sum;
                for (int j = 0; j < T; j++) prob_row[j] *= inv_sum;

                float *out_row = out + ((size_t)b * T + i) * C + (size_t)h * HS;
                memset(out_row, 0, (size_t)HS * sizeof(float));
                for (int j = 0; j < T; j++) {
                    float p = prob_row[j];
                    if (p == 0.0f) continue;  // padded key
                    const float *v_row = v + ((size_t)b * T + j) * C + (size_t)h * HS;
                    for (int d = 0; d < HS; d++) out_row[d] += p * v_row[d];
                }
            }
        }
    }
}

void cpu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                            const float *q, const float *k, const float *v, int B, int T, int NH, int HS,
                            float scale) {
    if (B <= 0 || T <= 0 || NH <= 0 || HS <= 0) return;
    if (!dq && !dk && !dv) return;
    const int C = NH * HS;
    const size_t work = (size_t)B * NH * T * T * HS;
#pragma omp parallel for collapse(2) schedule(static) if (work > QFT_CPU_PARALLEL_MIN_CHEAP)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            float dprob[T];
            float dq_acc[HS];
            for (int i = 0; i < T; i++) {
                const float *prob_row = probs + (((size_t)b * NH + h) * T + i) * T;
                const float *dout_row = dout + ((size_t)b * T + i) * C + (size_t)h * HS;
                const float *q_row = q + ((size_t)b * T + i) * C + (size_t)h * HS;
                // Softmax backward: dlogit_j = p_j (dp_j - sum_k p_k dp_k), with dp_j = dout_i . v_j.
                float weighted_dprob = 0.0f;
                if (dq || dk) {
                    for (int j = 0; j < T; j++) {
                        if (prob_row[j] == 0.0f) {
                            dprob[j] = 0.0f;
                            continue;
                        }
                        const float *v_row = v + ((size_t)b * T + j) * C + (size_t)h * HS;
                        dprob[j] = head_dot(dout_row, v_row, HS);
                        weighted_dprob += prob_row[j] * dprob[j];
                    }
                }
                for (int d = 0; d < HS; d++) dq_acc[d] = 0.0f;
                for (int j = 0; j < T; j++) {
                    float p = prob_row[j];
                    if (p == 0.0f) continue;  // padded key: no gradient flows
                    size_t key_offset = ((size_t)b * T + j) * C + (size_t)h * HS;
                    if (dv) {
                        float *dv_row = dv + key_offset;
                        for (int d = 0; d < HS; d++) dv_row[d] += p * dout_row[d];
                    }
                    if (dq || dk) {
                        float dlogit_scaled = p * (dprob[j] - weighted_dprob) * scale;
                        if (dq) {
                            const float *k_row = k + key_offset;
                            for (int d = 0; d < HS; d++) dq_acc[d] += dlogit_scaled * k_row[d];
                        }
                        if (dk) {
                            float *dk_row = dk + key_offset;
                            for (int d = 0; d < HS; d++) dk_row[d] += dlogit_scaled * q_row[d];
                        }
                    }
                }
                if (dq) {
                    float *dq_row = dq + ((size_t)b * T + i) * C + (size_t)h * HS;
                    for (int d = 0; d < HS; d++) dq_row[d] += dq_acc[d];
                }
            }
        }
    }
}
