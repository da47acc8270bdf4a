// Adaptive noise on attention probabilities [ours] (docs/methods.md §2): the PROBS-site half of host/method/noise.c.
// The attention op draws the noise (qft_prob_quant.noise in backend.h); these hooks give it the parameters and
// measure the site's amplitude from the real quantizer's residual on this forward's probabilities.
#ifndef QFT_METHOD_NOISE_PROBS_H
#define QFT_METHOD_NOISE_PROBS_H

#include "noise.h"

// The probs_noise hook (qft_site_hooks): 1 and *out filled when PROBS site `index` (quantizer pq) gets noise in
// this training micro-batch: a_site times the annealing factor, stream qft_noise_stream(k, index).
int qft_noise_probs(const qft_noise *noise, qft_quant_state *st, int index, const qft_prob_quant *pq,
                    qft_quant_noise *out);

// The probs_measure hook: probs == NULL: 1 when a_site of PROBS site `index` is measured on this forward
// (noise.adapt_every); with the probabilities [rows, T]: a_site = clip(sqrt(12 mean r^2), amplitude_min,
// amplitude_max) over prob_quant_residual's elements (r in steps of the uniform grid, in log codes for the log
// kinds). Returns 0 then.
int qft_noise_probs_measure(const qft_noise *noise, qft_quant_state *st, int index, const qft_prob_quant *pq,
                            const float *probs, int rows, int T);

#endif
