// AdamW on the CPU, in exactly torch.optim.AdamW's (foreach=False, non-capturable) order:
// decay the parameter first, then update the moments and take the bias-corrected Adam step.
#include <math.h>

#include "backend/cpu/cpu_ops.h"

void cpu_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                      float beta2, float eps, float weight_decay, int step) {
    // Scalars are formed in double as torch does in Python, then used as fp32 in the tensor ops.
    const float decay_factor = (float)(1.0 - (double)lr * (double)weight_decay);
    const double bias_correction1 = 1.0 - pow((double)beta1, (double)step);
    const double bias_correction2 = 1.0 - pow((double)beta2, (double)step);
    const float step_size = (float)((double)lr / bias_correction1);
    const float bias_correction2_sqrt = (float)sqrt(bias_correction2);
    const float one_minus_beta1 = (float)(1.0 - (double)beta1);
    const float one_minus_beta2 = (float)(1.0 - (double)beta2);
    // torch's lerp switches formulas at weight 0.5 for accuracy; keep both branches.
    const int lerp_from_start = one_minus_beta1 < 0.5f;
    const float lerp_complement = 1.0f - one_minus_beta1;
    // Two copies of the loop (one per lerp formula) so the body has no branch and vectorizes.
    if (lerp_from_start) {
#pragma omp parallel for simd schedule(static) if (n > QFT_CPU_PARALLEL_MIN_COMPUTE)
        for (size_t i = 0; i < n; i++) {
            float g = grad[i];
            float p = param[i] * decay_factor;                     // param.mul_(1 - lr * wd)
            float m_new = m[i] + one_minus_beta1 * (g - m[i]);     // exp_avg.lerp_(grad, 1 - beta1)
            float v_new = v[i] * beta2 + one_minus_beta2 * g * g;  // exp_avg_sq.mul_(b2).addcmul_(g, g, 1 - b2)
            float denom = sqrtf(v_new) / bias_correction2_sqrt + eps;
            param[i] = p - step_size * (m_new / denom);  // param.addcdiv_(exp_avg, denom, value=-step_size)
            m[i] = m_new;
            v[i] = v_new;
        }
    } else {
#pragma omp parallel for simd schedule(static) if (n > QFT_CPU_PARALLEL_MIN_COMPUTE)
        for (size_t i = 0; i < n; i++) {
            float g = grad[i];
            float p = param[i] * decay_factor;
            float m_new = g - (g - m[i]) * lerp_complement;
            float v_new = v[i] * beta2 + one_minus_beta2 * g * g;
            float denom = sqrtf(v_new) / bias_correction2_sqrt + eps;
            param[i] = p - step_size * (m_new / denom);
            m[i] = m_new;
            v[i] = v_new;
        }
    }
}
