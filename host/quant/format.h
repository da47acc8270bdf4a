// Quantizer formats: what one quant site does (bits, grid, granularity, calibrator, learnability)
// and the host-side arithmetic every module shares (integer grid, range -> scale/zero point, q/dq).
#ifndef QFT_QUANT_FORMAT_H
#define QFT_QUANT_FORMAT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum {
    QFT_QUANT_UNIFORM = 0,     // affine integer grid (METHODS.md §1)
    QFT_QUANT_LOG2,            // 2^-q levels for attention probabilities (FQ-ViT, METHODS.md §4)
    QFT_QUANT_LOG_SQRT2        // scale * 2^(-q/2) levels (RepQ-ViT, METHODS.md §4)
} qft_quant_kind;

typedef enum {
    QFT_GRAN_TENSOR = 0,       // one scale for the tensor
    QFT_GRAN_CHANNEL,          // weights: per output row; activations: per last-dim channel
    QFT_GRAN_GROUP,            // weights: blocks of group_size along the input dim; activations: along channels
    QFT_GRAN_PEG               // per-embedding-group: channels sorted by range, split into peg_groups groups
} qft_quant_granularity;

typedef enum {
    QFT_CALIB_MINMAX = 0,
    QFT_CALIB_EMA,             // EMA of per-batch min/max
    QFT_CALIB_PERCENTILE,
    QFT_CALIB_MSE,
    QFT_CALIB_OMSE,
    QFT_CALIB_ENTROPY          // KL on a 2048-bin histogram of |x| (TensorRT)
} qft_calibrator_kind;

typedef enum {
    QFT_LEARN_NONE = 0,        // calibrated, frozen scale; STE for the input
    QFT_LEARN_LSQ,             // learnable scale (Esser et al. 2020)
    QFT_LEARN_LSQ_PLUS         // learnable scale and offset (Bhalgat et al. 2020)
} qft_quant_learn;

typedef struct {
    int enabled;               // 0: the site passes values through unchanged
    qft_quant_kind kind;
    int bits;                  // 2..8
    int is_signed;             // integer grid [-2^(b-1), 2^(b-1)-1] (narrow: lower end +1); else [0, 2^b-1]
    int symmetric;             // zero point fixed (0 for signed grids)
    int narrow;                // signed narrow range
    qft_quant_granularity granularity;
    int group_size;            // QFT_GRAN_GROUP
    int peg_groups;            // QFT_GRAN_PEG: number of groups K
    qft_calibrator_kind calibrator;
    double percentile;         // QFT_CALIB_PERCENTILE, e.g. 99.99
    double ema_momentum;       // QFT_CALIB_EMA: m <- m + c (m_batch - m), c = ema_momentum
    qft_quant_learn learn;
} qft_quant_format;

// The default site format: disabled, 8-bit signed symmetric per tensor, minmax calibrator.
qft_quant_format qft_quant_format_default(void);

static inline int qft_quant_qmin(const qft_quant_format *f) {
    if (!f->is_signed) return 0;
    return f->narrow ? -(1 << (f->bits - 1)) + 1 : -(1 << (f->bits - 1));
}
static inline int qft_quant_qmax(const qft_quant_format *f) {
    return f->is_signed ? (1 << (f->bits - 1)) - 1 : (1 << f->bits) - 1;
}

// Smallest scale: torch's observers clamp to float32 eps, so a zero range still gives a usable step.
#define QFT_QUANT_MIN_SCALE 1.1920928955078125e-07f

// Scale and zero point for the calibrated range [lo, hi], in PyTorch's observer form (METHODS.md §1):
//   asymmetric: lo' = min(lo, 0), hi' = max(hi, 0); s = (hi' - lo') / (qmax - qmin);
//               z = clamp(qmin - rint(lo' / s), qmin, qmax)
//   symmetric:  amax = max(-lo, hi); s = amax / ((qmax - qmin) / 2);
//               z = 0 for signed grids, (qmin + qmax + 1) / 2 for unsigned (torch's quint8 128)
// s is clamped below by QFT_QUANT_MIN_SCALE. z is an integer stored in a float.
void qft_quant_params_from_range(const qft_quant_format *f, float lo, float hi, float *scale, float *zero_point);

// One value through the uniform quantizer, bit for bit as the backend ops and torch's
// fake_quantize_per_tensor_affine: q = clamp(rint(x * inv_scale) + z, qmin, qmax); (q - z) * scale,
// inv_scale = 1.0f / scale computed in float. Default rounding mode: round half to even.
static inline float qft_quant_dequant(float x, float scale, float inv_scale, float zero_point, int qmin, int qmax) {
    float q = rintf(x * inv_scale) + zero_point;
    q = fminf(fmaxf(q, (float)qmin), (float)qmax);
    return (q - zero_point) * scale;
}

// The log code q' = rint(-log2 r) (sqrt2 = 0) or rint(-2 log2 r) (sqrt2 = 1) of a positive finite or
// infinite float r, evaluated exactly from r's bits instead of with log2f: log2f's last-ulp error puts
// floats next to a threshold (r = 2^e * sqrt2, 2^e * 2^(1/4), ...) on the wrong level, and rounds some
// of them to an exact .5 that rint sends to the even neighbour. r = 2^e * m, m in [1, 2), so
// rint(-log2 r) = -e - [m > sqrt2] and rint(-2 log2 r) = -2e - [m > 2^(1/4)] - [m > 2^(3/4)]; the
// thresholds are irrational and each is >= 1.4e-8 relative away from every float, so "m > t" is
// "mantissa bits > those of the largest float below t" (computed with 50-digit arithmetic).
#define QFT_LOG_MANTISSA_SQRT2 0x3504F3u     // 1.41421354 < sqrt(2) < 1.41421366
#define QFT_LOG_MANTISSA_2_POW_1_4 0x1837F0u // 1.18920708 < 2^(1/4) < 1.18920720
#define QFT_LOG_MANTISSA_2_POW_3_4 0x5744FCu // 1.68179274 < 2^(3/4) < 1.68179286
static inline int qft_log_code(float r, int sqrt2) {
    // Subnormal r: scale up by 2^32 so the exponent field is meaningful, and take it back out of e.
    int subnormal = r < 1.17549435e-38f;
    float normal = subnormal ? r * 0x1p32f : r;
    uint32_t bits;
    memcpy(&bits, &normal, sizeof bits);
    int exponent = (int)(bits >> 23) - 127 - (subnormal ? 32 : 0);
    uint32_t mantissa = bits & 0x7FFFFFu;
    return sqrt2 ? -2 * exponent - (mantissa > QFT_LOG_MANTISSA_2_POW_1_4) - (mantissa > QFT_LOG_MANTISSA_2_POW_3_4)
                 : -exponent - (mantissa > QFT_LOG_MANTISSA_SQRT2);
}

// One value through the log2 (sqrt2 = 0) or log-sqrt2 (sqrt2 = 1) quantizer with scale s (METHODS.md §4),
// bit for bit as the backend's log_quant_forward / backward:
//   r = x * (1/s) in float; q' = qft_log_code(r);
//   x_hat = 0 where x <= 0 (or NaN) or q' >= 2^bits; else q = max(q', 0) and x_hat = s * 2^(-q) or
//   s * 2^(-q/2), the latter computed as ldexp(s * (q odd ? sqrt2 : 1), -ceil(q/2)) so it is exact up
//   to one rounding; a level that underflows to 0 is the zero level.
// *in_range (may be NULL) = 1 where the STE passes the gradient: x_hat != 0 and q' >= 0.
static inline float qft_log_dequant(float x, float s, int bits, int sqrt2, int *in_range) {
    float r = x * (1.0f / s);
    int code = r > 0.0f ? qft_log_code(r, sqrt2) : (1 << bits);  // zero, negative, NaN: the zero level
    if (code >= (1 << bits)) {
        if (in_range) *in_range = 0;
        return 0.0f;
    }
    int q = code < 0 ? 0 : code;
    float value = !sqrt2 ? ldexpf(s, -q) : ldexpf((q & 1) ? s * 1.41421356237309505f : s, -((q + 1) >> 1));
    if (in_range) *in_range = code >= 0 && value != 0.0f;
    return value;
}

// One line describing a format, e.g. "int4 signed symmetric per-channel, minmax"; "fp" when disabled.
void qft_quant_format_describe(const qft_quant_format *f, char *buf, size_t cap);

// Parse / print enum names used in configs ("uniform", "log2", "log_sqrt2"; "tensor", "channel",
// "group", "peg"; "minmax", "ema", "percentile", "mse", "omse", "entropy"; "none", "lsq", "lsq_plus").
// Parsers return -1 for an unknown name.
int qft_quant_kind_parse(const char *name);
int qft_quant_granularity_parse(const char *name);
int qft_calibrator_parse(const char *name);
int qft_quant_learn_parse(const char *name);
const char *qft_quant_kind_name(qft_quant_kind k);
const char *qft_quant_granularity_name(qft_quant_granularity g);
const char *qft_calibrator_name(qft_calibrator_kind c);
const char *qft_quant_learn_name(qft_quant_learn l);

#endif
