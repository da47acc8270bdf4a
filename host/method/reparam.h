// RepQ-style reparameterization (Li et al., ICCV 2023, arXiv 2212.08254; METHODS.md §13): the
// per-channel quantizers of pre-LN LayerNorm outputs become one per-tensor quantizer, with the
// channel differences folded into the LayerNorm affine and the next linear layer.
#ifndef QFT_METHOD_REPARAM_H
#define QFT_METHOD_REPARAM_H

#include "../core/status.h"
#include "../model/model.h"

typedef struct {
    int folded;              // LayerNorm -> linear pairs folded
    int recalibrated;        // weight sites recalibrated (per their calibrator) on the folded weights
    double max_r1, min_r1;   // range of the channel scale ratios s_c / mean(s)
} qft_reparam_summary;

// For every pre-LN pair (ln1 -> qkv, ln2 -> fc1) whose linear-input site is enabled, uniform,
// per-channel and calibrated: with s~ = mean(s), z~ = rint(mean(z)), r1 = s / s~, r2 = z - z~,
//   LayerNorm:  gamma' = gamma / r1,  beta' = (beta + s * r2) / r1
//   linear:     W'[:, c] = r1_c W[:, c],  b' = b - W (s * r2)
// and the site turns per-tensor with (s~, z~). With integer r2 the quantized codes are unchanged and
// the linear's output is the same up to float rounding. Enabled weight sites of those linears are
// recalibrated on W' (RepQ recalibrates them too). Refused (error naming the reason): post-LN BERT
// (its LayerNorm output also feeds the residual: folding would change it), a quantized LayerNorm
// output site (ln1/ln2.output: it would see the rescaled values), an LSQ+ input site (real offsets).
// LSQ-learned per-channel scales fold as calibrated ones do (Quadapter-style training, docs/quant.md).
qft_status qft_reparam_fold(qft_model *m, qft_reparam_summary *out, qft_error *err);

#endif
