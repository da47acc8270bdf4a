// ViT input assembly on the CPU: patchify images into rows a linear layer can embed (Conv2d with
// stride = kernel = P as a matmul), and prepend CLS (+ DeiT distillation) tokens and add positions.
#include "backend/cpu/cpu_ops.h"

void cpu_patchify_forward(float *out, const float *images, int B, int CH, int H, int W, int P) {
    if (B <= 0 || CH <= 0 || P <= 0) return;
    // Like Conv2d with stride P, trailing pixels that do not fill a whole patch are dropped.
    const int grid_h = H / P, grid_w = W / P;
    const int patch_count = grid_h * grid_w;
    const size_t patch_size = (size_t)CH * P * P;
    const size_t work = (size_t)B * patch_count * patch_size;
#pragma omp parallel for collapse(2) schedule(static) if (work > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (int b = 0; b < B; b++) {
        for (int patch = 0; patch < patch_count; patch++) {
            const int grid_y = patch / grid_w, grid_x = patch % grid_w;
            float *dst = out + ((size_t)b * patch_count + patch) * patch_size;
            for (int ch = 0; ch < CH; ch++) {
                for (int py = 0; py < P; py++) {
                    const float *src =
                        images + (((size_t)b * CH + ch) * H + (size_t)grid_y * P + py) * W + (size_t)grid_x * P;
                    for (int px = 0; px < P; px++) *dst++ = src[px];
                }
            }
        }
    }
}

void cpu_vit_tokens_forward(float *out, const float *patches, const float *cls, const float *dist,
                            const float *pos, int B, int NP, int D) {
    if (B <= 0 || D <= 0) return;
    const int prefix = dist ? 2 : 1;
    const int T = NP + prefix;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * T * D > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *token = t == 0 ? cls : (t == 1 && dist) ? dist : patches + ((size_t)b * NP + t - prefix) * D;
            const float *pos_row = pos + (size_t)t * D;
            float *out_row = out + ((size_t)b * T + t) * D;
            for (int d = 0; d < D; d++) out_row[d] = token[d] + pos_row[d];
        }
    }
}

void cpu_vit_tokens_backward(float *dpatches, float *dcls, float *ddist, float *dpos, const float *dout,
                             int B, int NP, int D) {
    if (B <= 0 || D <= 0) return;
    // The op table has no n_prefix argument here: a distillation token is present iff ddist is given.
    const int prefix = ddist ? 2 : 1;
    const int T = NP + prefix;
    const size_t batch_stride = (size_t)T * D;
    if (dpatches) {
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * NP * D > QFT_CPU_PARALLEL_MIN_MEMORY_BOUND)
        for (int b = 0; b < B; b++) {
            for (int p = 0; p < NP; p++) {
                const float *dout_row = dout + (size_t)b * batch_stride + (size_t)(prefix + p) * D;
                float *dpatch_row = dpatches + ((size_t)b * NP + p) * D;
                for (int d = 0; d < D; d++) dpatch_row[d] += dout_row[d];
            }
        }
    }
    if (dcls) cpu_column_sums_accumulate(dcls, dout, B, D, batch_stride);
    if (ddist) cpu_column_sums_accumulate(ddist, dout + D, B, D, batch_stride);
    if (dpos) cpu_column_sums_accumulate(dpos, dout, B, T * D, batch_stride);
}
