// Weight-oscillation ops on the CPU (Nagel et al. 2022): the dampening loss and its gradient, the
// per-weight oscillation tracker with freezing, and the frozen-gradient mask; elementwise over rows.
#include <math.h>
#include <stdint.h>

#include "backend/cpu/cpu_ops.h"

// Index of the quantizer parameters of element (r, c) of a [rows, C] weight.
static inline size_t param_index(const qft_fq_layout *L, int r, int c, int C) {
    switch (L->axis) {
    case QFT_FQ_PER_ROW: return (size_t)r;
    case QFT_FQ_PER_COLUMN: return (size_t)c;
    case QFT_FQ_PER_ROW_GROUP: return (size_t)r * (size_t)(C / L->group_size) + (size_t)(c / L->group_size);
    case QFT_FQ_COLUMN_MAP: return (size_t)L->column_group[c];
    case QFT_FQ_PER_TENSOR: break;
    }
    return 0;
}

static inline float zero_at(const float *zero_point, size_t k, float qmin, float qmax) {
    return zero_point ? fminf(fmaxf(rintf(zero_point[k]), qmin), qmax) : 0.0f;
}

double cpu_oscillation_dampen(float *dw, const float *w, const float *scale, const float *zero_point, int rows,
                              int C, const qft_fq_layout *L, float coef) {
    const float qmin = (float)L->qmin, qmax = (float)L->qmax;
    double loss = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : loss) if ((size_t)rows * C > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < C; c++) {
            size_t k = param_index(L, r, c, C), i = (size_t)r * C + c;
            float s = scale[k], z = zero_at(zero_point, k, qmin, qmax);
            float lo = s * (qmin - z), hi = s * (qmax - z);
            float x = w[i], clamped = fminf(fmaxf(x, lo), hi);
            float code = fminf(fmaxf(rintf(x * (1.0f / s)) + z, qmin), qmax);
            float diff = clamped - (code - z) * s;
            loss += (double)diff * diff;
            if (dw && x >= lo && x <= hi) dw[i] += coef * 2.0f * diff;
        }
    }
    return loss;
}

size_t cpu_oscillation_track(float *w, const float *scale, const float *zero_point, int rows, int C,
                             const qft_fq_layout *L, int8_t *prev, int8_t *dir, float *freq, float *ema, uint8_t *frozen,
                             float momentum, float threshold, int initialize) {
    const float qmin = (float)L->qmin, qmax = (float)L->qmax, m = momentum;
    size_t newly = 0;
#pragma omp parallel for schedule(static) reduction(+ : newly) if ((size_t)rows * C > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < C; c++) {
            size_t k = param_index(L, r, c, C), i = (size_t)r * C + c;
            float s = scale[k], z = zero_at(zero_point, k, qmin, qmax);
            if (frozen[i]) {
                w[i] = s * (rintf(ema[i]) - z);
                continue;
            }
            float code = fminf(fmaxf(rintf(w[i] * (1.0f / s)) + z, qmin), qmax);
            // Codes fit int8 (bits <= 8; unsigned 8-bit codes are stored shifted by -128).
            int8_t q = (int8_t)((int)code - (qmax > 127.0f ? 128 : 0));
            if (initialize) {
                prev[i] = q;
                ema[i] = code;
                continue;
            }
            int delta = (int)prev[i] - (int)q;
            int step_sign = (delta > 0) - (delta < 0);
            int oscillated = dir[i] * step_sign == -1;
            if (step_sign != 0) dir[i] = (int8_t)step_sign;
            freq[i] = m * (float)oscillated + (1.0f - m) * freq[i];
            ema[i] = m * code + (1.0f - m) * ema[i];
            prev[i] = q;
            if (threshold > 0.0f && freq[i] > threshold) {
                frozen[i] = 1;
                w[i] = s * (rintf(ema[i]) - z);
                newly++;
            }
        }
    }
    return newly;
}

void cpu_oscillation_mask_grad(float *dw, const uint8_t *frozen, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (size_t i = 0; i < n; i++)
        if (frozen[i]) dw[i] = 0.0f;
}
