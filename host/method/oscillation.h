// Weight-oscillation control for low-bit QAT (Nagel, Fournarakis, Bondarenko, Blankevoort, ICML
// 2022, arXiv 2203.11086; METHODS.md §10): an oscillation tracker per quantized weight, the
// dampening loss pulling latent weights to their bin centres, and freezing of oscillating weights.
#ifndef QFT_METHOD_OSCILLATION_H
#define QFT_METHOD_OSCILLATION_H

#include <stddef.h>

#include "../core/status.h"
#include "../io/config.h"
#include "../io/safetensors.h"
#include "../model/model.h"

typedef struct qft_oscillation qft_oscillation;

typedef struct {
    double dampen_loss;   // lambda(t) * sum over tracked weights of the kernel-mean dampening term
    size_t tracked;       // weights tracked (enabled weight sites with bits <= oscillation.max_bits)
    size_t frozen;        // of which frozen so far
    double oscillating;   // share of tracked, unfrozen weights whose frequency exceeds momentum (recent flips)
} qft_oscillation_stats;

// NULL *out (and QFT_OK) when the config turns neither dampening nor freezing on, or when no enabled
// weight site qualifies. Call after qft_model_quant_configure.
qft_status qft_oscillation_create(qft_oscillation **out, qft_model *m, const qft_oscillation_config *cfg,
                                  qft_error *err);
void qft_oscillation_free(qft_oscillation *osc);

// Before the optimizer step: adds the dampening gradient lambda(t) dL/dw (and the bin regularizer's,
// VVTQ, on every enabled per-tensor / per-channel weight site) to the weight gradients and zeroes
// the gradients of frozen weights. Returns the weighted losses (for logging).
double qft_oscillation_before_step(qft_oscillation *osc, qft_model *m, long step, long total_steps);

// After the optimizer step: tracks code flips, freezes weights whose oscillation frequency passes
// the threshold schedule, and puts frozen weights back on their frozen value.
void qft_oscillation_after_step(qft_oscillation *osc, qft_model *m, long step, long total_steps);

void qft_oscillation_stats_get(const qft_oscillation *osc, qft_oscillation_stats *out);

// The schedules (METHODS.md §10): 0 before start * T, then a cosine ramp over the rest: lambda from 0
// to dampen_lambda, the freezing threshold from freeze_threshold_start to freeze_threshold.
double qft_oscillation_lambda(const qft_oscillation_config *cfg, long step, long total_steps);
double qft_oscillation_threshold(const qft_oscillation_config *cfg, long step, long total_steps);

// Tracker state in checkpoints ("qft.oscillation.<site>.<field>", F32), so a resume is exact.
// Collect: appends to tensors (capacity entries) using host storage owned by osc until the next call.
int qft_oscillation_tensor_count(const qft_oscillation *osc);
int qft_oscillation_collect(qft_oscillation *osc, qft_write_tensor *tensors, int capacity);
qft_status qft_oscillation_load(qft_oscillation *osc, const qft_safetensors *file, qft_error *err);

#endif
