// Losses on the CPU: cross-entropy with label smoothing and ignored targets (as
// torch.nn.CrossEntropyLoss(label_smoothing=eps, ignore_index<0) per row), mean squared error, and
// the distillation KL between temperature softmaxes (Hinton et al. 2015).
#include <math.h>

#include "backend/cpu/cpu_ops.h"

void cpu_cross_entropy_forward(float *losses, float *probs, const float *logits, const int32_t *targets, int N,
                               int V, float label_smoothing) {
    if (N <= 0 || V <= 0) return;
#pragma omp parallel for schedule(static) if ((size_t)N * V > QFT_CPU_PARALLEL_MIN_SCALAR_LIBM)
    for (int row = 0; row < N; row++) {
        const float *x = logits + (size_t)row * V;
        float row_max = -INFINITY;
        double logit_sum = 0.0;
        for (int j = 0; j < V; j++) {
            row_max = x[j] > row_max ? x[j] : row_max;
            logit_sum += x[j];
        }
        double exp_sum = 0.0;
        for (int j = 0; j < V; j++) exp_sum += (double)expf(x[j] - row_max);
        if (probs) {
            float *p = probs + (size_t)row * V;
            float inv_sum = (float)(1.0 / exp_sum);
            for (int j = 0; j < V; j++) p[j] = expf(x[j] - row_max) * inv_sum;
        }
        int32_t target = targets[row];
        if (target < 0 || target >= V) {  // ignored row (targets >= V are treated alike: never read OOB)
            losses[row] = 0.0f;
            continue;
        }
        // log p_j = x_j - (max + log sum exp(x - max))
        double log_normalizer = (double)row_max + log(exp_sum);
        double log_prob_target = (double)x[target] - log_normalizer;
        double sum_log_probs = logit_sum - (double)V * log_normalizer;
        double eps = (double)label_smoothing;
        losses[row] = (float)(-(1.0 - eps) * log_prob_target - eps / V * sum_log_probs);
    }
}

void cpu_cross_entropy_backward(float *dlogits, const float *probs, const int32_t *targets, int N, int V,
                                float label_smoothing, float dloss_scale) {
    if (!dlogits || N <= 0 || V <= 0) return;
    // The smoothed target distribution is (1-eps) onehot + eps/V; it sums to 1, so dloss/dlogit = p - q.
    const float uniform_part = label_smoothing / (float)V;
    const float onehot_part = 1.0f - label_smoothing;
#pragma omp parallel for schedule(static) if ((size_t)N * V > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (int row = 0; row < N; row++) {
        int32_t target = targets[row];
        if (target < 0 || target >= V) continue;
        const float *p = probs + (size_t)row * V;
        float *dx = dlogits + (size_t)row * V;
        for (int j = 0; j < V; j++) {
            float smoothed = j == target ? onehot_part + uniform_part : uniform_part;
            dx[j] += dloss_scale * (p[j] - smoothed);
        }
    }
}

float cpu_mse_forward(const float *pred, const float *target, size_t n) {
    if (n == 0) return 0.0f;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double diff = (double)pred[i] - (double)target[i];
        sum += diff * diff;
    }
    return (float)(sum / (double)n);
}

void cpu_mse_backward(float *dpred, const float *pred, const float *target, size_t n, float dloss_scale) {
    if (!dpred || n == 0) return;
    // d mean((pred - target)^2) / d pred_i = 2 (pred_i - target_i) / n, times the upstream scale.
    const float factor = 2.0f * dloss_scale / (float)n;
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (size_t i = 0; i < n; i++) dpred[i] += factor * (pred[i] - target[i]);
}

// log softmax(x / T) of one row into out (as double: the KL subtracts two nearly equal logs).
static void log_softmax_row(double *out, const float *x, int V, float temperature) {
    double inv_t = 1.0 / (double)temperature, row_max = -INFINITY, sum = 0.0;
    for (int j = 0; j < V; j++) {
        out[j] = (double)x[j] * inv_t;
        row_max = out[j] > row_max ? out[j] : row_max;
    }
    for (int j = 0; j < V; j++) sum += exp(out[j] - row_max);
    double log_norm = row_max + log(sum);
    for (int j = 0; j < V; j++) out[j] -= log_norm;
}

void cpu_kd_kl_forward(float *losses, float *p_student, float *p_teacher, const float *student_logits,
                       const float *teacher_logits, int N, int V, float temperature) {
    if (N <= 0 || V <= 0) return;
#pragma omp parallel for schedule(static) if ((size_t)N * V > QFT_CPU_PARALLEL_MIN_SCALAR_LIBM)
    for (int row = 0; row < N; row++) {
        double log_s[V], log_t[V];
        log_softmax_row(log_s, student_logits + (size_t)row * V, V, temperature);
        log_softmax_row(log_t, teacher_logits + (size_t)row * V, V, temperature);
        double kl = 0.0;
        for (int j = 0; j < V; j++) {
            double pt = exp(log_t[j]);
            if (pt > 0.0) kl += pt * (log_t[j] - log_s[j]);
            p_student[(size_t)row * V + j] = (float)exp(log_s[j]);
            p_teacher[(size_t)row * V + j] = (float)pt;
        }
        losses[row] = (float)kl;
    }
}

void cpu_kd_kl_backward(float *dlogits, const float *p_student, const float *p_teacher, int N, int V,
                        float dloss_scale) {
    if (!dlogits || N <= 0 || V <= 0) return;
    size_t n = (size_t)N * V;
#pragma omp parallel for schedule(static) if (n > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (size_t i = 0; i < n; i++) dlogits[i] += dloss_scale * (p_student[i] - p_teacher[i]);
}
