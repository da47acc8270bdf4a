// Adaptive noise on attention probabilities: the noise parameters the attention op draws with, and a_site
// measured from the probability quantizer's rounding residual (uniform steps or log codes).
#include "noise_probs.h"

static int probs_selected(const qft_noise *noise, const qft_quant_state *st, int index) {
    return noise->enabled && noise->training && index >= 0 && index < noise->count && noise->selected[index] &&
           st->sites[index].role == QFT_SITE_PROBS;
}

int qft_noise_probs(const qft_noise *noise, qft_quant_state *st, int index, const qft_prob_quant *pq,
                    qft_quant_noise *out) {
    if (!probs_selected(noise, st, index)) return 0;
    float strength = qft_noise_strength(noise, index);
    if (strength == 0.0f) return 0;  // annealed to the real quantizer on this micro-step
    *out = (qft_quant_noise){.kind = noise->kind,
                             .amplitude = st->sites[index].noise_amplitude * strength,
                             .p = (float)noise->cfg->p * strength,
                             .seed = qft_noise_key(noise->seed),
                             .stream = qft_noise_stream(noise->step, index)};
    return 1;
}

int qft_noise_probs_measure(const qft_noise *noise, qft_quant_state *st, int index, const qft_prob_quant *pq,
                            const float *probs, int rows, int T) {
    if (!probs_selected(noise, st, index) || !noise->adapt_now) return 0;
    if (!probs) return 1;
    double sum_sq = 0.0;
    size_t inside = st->be->prob_quant_residual(probs, (size_t)rows * T, pq, &sum_sq);
    qft_noise_set_amplitude(noise, &st->sites[index], sum_sq, inside);
    return 0;
}
