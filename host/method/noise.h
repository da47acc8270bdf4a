// Adaptive random-noise fine-tuning [ours]: at enabled quant sites during training, quantization noise of
// the site's step, scaled by a per-site amplitude adapted from the measured rounding error (docs/methods.md §2).
#ifndef QFT_METHOD_NOISE_H
#define QFT_METHOD_NOISE_H

#include <stdint.h>

#include "../core/status.h"
#include "../io/config.h"
#include "../io/safetensors.h"
#include "../quant/site.h"

// noise.kind histogram: bins of the rounding-residual histogram over [-1/2, 1/2] (NIPQ's 256).
#define QFT_NOISE_BINS 256

typedef struct {
    int enabled;             // noise.kind != off
    const qft_noise_config *cfg;
    qft_noise_kind kind;
    int count;
    int *selected;           // [count] the site gets noise
    int training;            // 1 while a training forward runs (evaluation uses the real quantizer)
    int adapt_now;           // measure a_site on this forward
    float factor;            // annealing factor f in [0, 1]
    int anneal_to_quantizer; // noise.anneal_to = quantizer: f is the chance of noise, else a site's quantizer
    uint64_t seed, step;     // Philox key and the micro-step k (streams are keyed by (seed, k, site))
    // kind histogram: [count][QFT_NOISE_BINS + 1] each site's CDF of its measured rounding residual, host
    // memory; the uniform CDF (cdf[j] = j / bins) until a measurement. Checkpointed (qft_noise_collect).
    float *cdf;
    int64_t cdf_shape[2];
} qft_noise;

// Selects the enabled sites matching noise.sites; noise without enabled sites is an error.
qft_status qft_noise_init(qft_noise *noise, const qft_noise_config *cfg, qft_quant_state *st, qft_error *err);
void qft_noise_free(qft_noise *noise);

// Per optimizer step `step` of `total` (0-based): annealing factor and whether a_site is measured.
void qft_noise_set_step(qft_noise *noise, long step, long total);

// Philox stream of site `site` at micro-step k; the key is run.seed mixed with a constant so these
// streams never coincide with dropout's (host/core/rng.h).
uint64_t qft_noise_stream(uint64_t step, int site);

// The strength the noise of `site` draws with this micro-step: 0 = the site uses its real quantizer
// (noise.anneal_to quantizer, with probability 1 - f; keyed by (seed, micro-step, site)), else 1 or f.
float qft_noise_strength(const qft_noise *noise, int site);
uint64_t qft_noise_key(uint64_t seed);

// The CDF of a residual histogram (counts[bins], total their sum): cdf[0] = 0, cdf[j] = (counts[0] + ... +
// counts[j-1]) / total rounded to float, cdf[bins] = 1 exactly; total 0 gives the uniform CDF j / bins.
// a_site = clip(sqrt(12 mean r^2), a_min, a_max) from the sum of r^2 over `inside` unclipped elements, r the
// rounding residual in steps (codes, for log quantizers): the amplitude whose uniform noise a s U(-1/2, 1/2)
// has the measured rounding error's variance. Unchanged when `inside` is 0.
void qft_noise_set_amplitude(const qft_noise *noise, qft_quant_site *site, double sum_sq, size_t inside);
void qft_noise_histogram_cdf(const uint64_t *counts, size_t total, int bins, float *cdf);

// The per-site CDFs of kind histogram in checkpoints ("qft.noise.histogram_cdf", F32 [sites, bins + 1]), so a
// resume between two measurements is bit-exact. Collect appends to tensors (capacity entries) using storage
// owned by noise; load restores them (a checkpoint without them, e.g. from another kind, leaves them as is).
int qft_noise_tensor_count(const qft_noise *noise);
int qft_noise_collect(qft_noise *noise, qft_write_tensor *tensors, int capacity);
qft_status qft_noise_load(qft_noise *noise, const qft_safetensors *file, qft_error *err);

// The site hook (qft_site_hooks.quantize): 1 when it wrote out.
int qft_noise_quantize(qft_noise *noise, qft_quant_state *st, int site, float *out, const float *x, int rows,
                       size_t *nonfinite);

#endif
