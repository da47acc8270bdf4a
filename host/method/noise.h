// Adaptive random-noise fine-tuning [ours]: at enabled quant sites during training, quantization noise of
// the site's step, scaled by a per-site amplitude adapted from the measured rounding error (docs/methods.md §2).
#ifndef QFT_METHOD_NOISE_H
#define QFT_METHOD_NOISE_H

#include <stdint.h>

#include "../core/status.h"
#include "../io/config.h"
#include "../quant/site.h"

typedef struct {
    int enabled;             // noise.kind != off
    const qft_noise_config *cfg;
    qft_noise_kind kind;
    int count;
    int *selected;           // [count] the site gets noise
    int training;            // 1 while a training forward runs (evaluation uses the real quantizer)
    int adapt_now;           // measure a_site on this forward
    float factor;            // annealing factor in [0, 1]
    uint64_t seed, step;     // Philox key and the micro-step k (streams are keyed by (seed, k, site))
} qft_noise;

// Selects the enabled sites matching noise.sites; noise without enabled sites is an error.
qft_status qft_noise_init(qft_noise *noise, const qft_noise_config *cfg, qft_quant_state *st, qft_error *err);
void qft_noise_free(qft_noise *noise);

// Per optimizer step `step` of `total` (0-based): annealing factor and whether a_site is measured.
void qft_noise_set_step(qft_noise *noise, long step, long total);

// Philox stream of site `site` at micro-step k; the key is run.seed mixed with a constant so these
// streams never coincide with dropout's (host/core/rng.h).
uint64_t qft_noise_stream(uint64_t step, int site);
uint64_t qft_noise_key(uint64_t seed);

// The site hook (qft_site_hooks.quantize): 1 when it wrote out.
int qft_noise_quantize(qft_noise *noise, qft_quant_state *st, int site, float *out, const float *x, int rows,
                       size_t *nonfinite);

#endif
