// Weight-oscillation ops on the CPU (Nagel et al. 2022): the dampening loss and its gradient, the
// per-weight oscillation tracker with freezing, the frozen-gradient mask and VVTQ's bin regularizer.
#include <math.h>
#include <stdint.h>

#include "backend/cpu/cpu_ops.h"

double cpu_oscillation_dampen(float *dw, const float *w, const float *scale, const float *zero_point, int rows,
                              int C, const qft_fq_layout *L, float coef) {
    const float qmin = (float)L->qmin, qmax = (float)L->qmax;
    double loss = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : loss) if ((size_t)rows * C > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < C; c++) {
            size_t k = cpu_fq_group(L, r, c, C), i = (size_t)r * C + c;
            float s = scale[k], z = cpu_fq_zero_point(zero_point, k, qmin, qmax);
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
            size_t k = cpu_fq_group(L, r, c, C), i = (size_t)r * C + c;
            float s = scale[k], z = cpu_fq_zero_point(zero_point, k, qmin, qmax);
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

// One quantizer group of n elements (stride 1) for the bin regularizer: per-code sums, then the
// loss and gradient. levels <= 256 (8-bit codes).
static double bin_regularizer_group(float *dw, const float *w, size_t n, float s, float z, float qmin, float qmax,
                                    float coef) {
    int levels = (int)(qmax - qmin) + 1;
    double sum[256] = {0}, sum_sq[256] = {0};
    int count[256] = {0};
    const float lo = s * (qmin - z), hi = s * (qmax - z), inv = 1.0f / s;
    double mse = 0.0;
    for (size_t i = 0; i < n; i++) {
        float x = fminf(fmaxf(w[i], lo), hi);
        float code = fminf(fmaxf(rintf(w[i] * inv) + z, qmin), qmax);
        int k = (int)(code - qmin);
        double diff = (double)x - (double)((code - z) * s);
        mse += diff * diff;
        sum[k] += x, sum_sq[k] += (double)x * x, count[k]++;
    }
    double loss = mse / (double)n;
    for (int k = 0; k < levels; k++)
        if (count[k] > 1) loss += (sum_sq[k] - sum[k] * sum[k] / count[k]) / (count[k] - 1);
    if (!dw) return loss;
    for (size_t i = 0; i < n; i++) {
        if (w[i] < lo || w[i] > hi) continue;
        float code = fminf(fmaxf(rintf(w[i] * inv) + z, qmin), qmax);
        int k = (int)(code - qmin);
        double g = 2.0 * ((double)w[i] - (double)((code - z) * s)) / (double)n;
        if (count[k] > 1) g += 2.0 * ((double)w[i] - sum[k] / count[k]) / (count[k] - 1);
        dw[i] += coef * (float)g;
    }
    return loss;
}

double cpu_bin_regularizer(float *dw, const float *w, const float *scale, const float *zero_point, int rows, int C,
                           const qft_fq_layout *L, float coef) {
    const float qmin = (float)L->qmin, qmax = (float)L->qmax;
    if (L->axis == QFT_FQ_PER_TENSOR)
        return bin_regularizer_group(dw, w, (size_t)rows * C, scale[0], cpu_fq_zero_point(zero_point, 0, qmin, qmax), qmin,
                                     qmax, coef);
    double loss = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : loss) if ((size_t)rows * C > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (int r = 0; r < rows; r++)
        loss += bin_regularizer_group(dw ? dw + (size_t)r * C : NULL, w + (size_t)r * C, (size_t)C, scale[r],
                                      cpu_fq_zero_point(zero_point, (size_t)r, qmin, qmax), qmin, qmax, coef);
    return loss;
}
