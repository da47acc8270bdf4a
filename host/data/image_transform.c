// Eval and train image transforms, bit-compatible with torchvision's PIL path: Pillow's fixed-point
// two-pass resampler, torchvision's center-crop rounding and RandomResizedCrop, driven by Philox.
#include "image_transform.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/rng.h"

// Pillow's Resample.c: coefficients are doubles, then 22-bit fixed point for 8-bit images.
#define PIL_PRECISION_BITS (32 - 8 - 2)

void qft_image_free(qft_image_rgb8 *image) {
    if (!image) return;
    free(image->pixels);
    memset(image, 0, sizeof *image);
}

void qft_image_transform_defaults(qft_image_transform_config *cfg, int crop_size) {
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memset(cfg, 0, sizeof *cfg);
    cfg->crop_size = crop_size;
    cfg->resize_size = qft_image_eval_resize_size(crop_size, 0.875);
    cfg->interpolation = QFT_INTERP_BILINEAR;
    for (int c = 0; c < 3; c++) {
        cfg->mean[c] = mean[c];
        cfg->std[c] = std[c];
    }
    cfg->scale_min = 0.08f;
    cfg->scale_max = 1.0f;
    cfg->ratio_min = 3.0f / 4.0f;
    cfg->ratio_max = 4.0f / 3.0f;
    cfg->flip_probability = 0.5f;
}

int qft_image_eval_resize_size(int crop_size, double crop_fraction) {
    return (int)lround((double)crop_size / crop_fraction);
}

static double filter_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

// Pillow's bicubic: Keys' kernel with a = -0.5.
static double filter_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for a full-range box (0, in_size), evaluated
// only for the output indices first .. first + count - 1 (each one depends on its own index alone):
// per output index, the first input index, the tap count, and ksize fixed-point weights.
static int resample_coefficients(int in_size, int out_size, int first, int count,
                                 qft_image_interpolation interpolation, int **bounds_out, int32_t **weights_out) {
    double support = interpolation == QFT_INTERP_BICUBIC ? 2.0 : 1.0;
    double (*filter)(double) = interpolation == QFT_INTERP_BICUBIC ? filter_bicubic : filter_bilinear;
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    support *= filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    int *bounds = malloc(sizeof(int) * 2 * (size_t)count);
    int32_t *weights = malloc(sizeof(int32_t) * (size_t)ksize * (size_t)count);
    double *k = malloc(sizeof(double) * (size_t)ksize);
    if (!bounds || !weights || !k) {
        free(bounds);
        free(weights);
        free(k);
        return 0;
    }
    for (int i = 0; i < count; i++) {
        int xx = first + i;
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        int x = 0;
        for (; x < xmax; x++) {
            k[x] = filter((x + xmin - center + 0.5) * ss);
            ww += k[x];
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        for (x = 0; x < ksize; x++) {
            double w = k[x] * (1 << PIL_PRECISION_BITS);
            weights[(size_t)i * ksize + x] = (int32_t)(w < 0 ? -0.5 + w : 0.5 + w);
        }
        bounds[2 * i] = xmin;
        bounds[2 * i + 1] = xmax;
    }
    free(k);
    *bounds_out = bounds;
    *weights_out = weights;
    return ksize;
}

// Pillow accumulates in 32-bit ints (no overflow: |weights| sum to little more than 2^22, pixels
// < 2^8) and clips (sum >> 22) to 0..255; sum < 0 gives a negative shift result either way.
static inline uint8_t clip8(int32_t sum) {
    int32_t v = sum >> PIL_PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Horizontal pass over one RGB row: out gets count pixels from the coefficient table.
static void resample_row(const uint8_t *restrict in, uint8_t *restrict out, int count, const int *bounds,
                         const int32_t *weights, int ksize) {
    for (int o = 0; o < count; o++) {
        int taps = bounds[2 * o + 1];
        const uint8_t *p = in + (size_t)bounds[2 * o] * 3;
        const int32_t *k = weights + (size_t)o * ksize;
        int32_t s0 = 1 << (PIL_PRECISION_BITS - 1), s1 = s0, s2 = s0;
        for (int t = 0; t < taps; t++) {
            int32_t w = k[t];
            s0 += p[3 * t] * w;
            s1 += p[3 * t + 1] * w;
            s2 += p[3 * t + 2] * w;
        }
        out[3 * o] = clip8(s0);
        out[3 * o + 1] = clip8(s1);
        out[3 * o + 2] = clip8(s2);
    }
}

// The same with a compile-time tap count K (every output has K taps, see pad_taps): unrolled.
#define QFT_RESAMPLE_ROW_K(K)                                                                          \
    static void resample_row_##K(const uint8_t *restrict in, uint8_t *restrict out, int count,        \
                                 const int *bounds, const int32_t *weights) {                          \
        for (int o = 0; o < count; o++) {                                                              \
            const uint8_t *p = in + (size_t)bounds[2 * o] * 3;                                         \
            const int32_t *k = weights + (size_t)o * K;                                                \
            int32_t s0 = 1 << (PIL_PRECISION_BITS - 1), s1 = s0, s2 = s0;                              \
            for (int t = 0; t < K; t++) {                                                              \
                int32_t w = k[t];                                                                      \
                s0 += p[3 * t] * w;                                                                    \
                s1 += p[3 * t + 1] * w;                                                                \
                s2 += p[3 * t + 2] * w;                                                                \
            }                                                                                          \
            out[3 * o] = clip8(s0);                                                                    \
            out[3 * o + 1] = clip8(s1);                                                                \
            out[3 * o + 2] = clip8(s2);                                                                \
        }                                                                                              \
    }
QFT_RESAMPLE_ROW_K(3)
QFT_RESAMPLE_ROW_K(5)
QFT_RESAMPLE_ROW_K(7)
QFT_RESAMPLE_ROW_K(9)
#undef QFT_RESAMPLE_ROW_K

// Gives every output all ksize taps where the input is wide enough: an output whose window would
// run past the end starts earlier, its weights shifted right behind zeros. Adding pixel * 0 terms
// leaves the integer sums unchanged. Returns whether the table is padded.
static int pad_taps(int in_size, int count, int *bounds, int32_t *weights, int ksize) {
    if (in_size < ksize) return 0;
    for (int o = 0; o < count; o++) {
        int xmin = bounds[2 * o], taps = bounds[2 * o + 1], shift = xmin + ksize - in_size;
        int32_t *k = weights + (size_t)o * ksize;
        if (shift > 0) {
            for (int t = taps - 1; t >= 0; t--) k[t + shift] = k[t];
            for (int t = 0; t < shift; t++) k[t] = 0;
            xmin -= shift;
        }
        bounds[2 * o] = xmin;
        bounds[2 * o + 1] = ksize;
    }
    return 1;
}

// Horizontal pass with the unrolled variant for the table's tap count where there is one.
static void resample_row_any(const uint8_t *in, uint8_t *out, int count, const int *bounds,
                             const int32_t *weights, int ksize, int padded) {
    if (padded) {
        switch (ksize) {
        case 3: resample_row_3(in, out, count, bounds, weights); return;
        case 5: resample_row_5(in, out, count, bounds, weights); return;
        case 7: resample_row_7(in, out, count, bounds, weights); return;
        case 9: resample_row_9(in, out, count, bounds, weights); return;
        default: break;
        }
    }
    resample_row(in, out, count, bounds, weights, ksize);
}

// Vertical pass for one output row: rows[t] (t < taps) are contiguous lines of n bytes.
static void resample_column(const uint8_t *in, size_t stride, uint8_t *restrict out, int n, int taps,
                            const int32_t *k, int32_t *restrict acc) {
#pragma omp simd
    for (int i = 0; i < n; i++) acc[i] = 1 << (PIL_PRECISION_BITS - 1);
    for (int t = 0; t < taps; t++) {
        const uint8_t *restrict row = in + (size_t)t * stride;
        int32_t w = k[t];
#pragma omp simd
        for (int i = 0; i < n; i++) acc[i] += row[i] * w;
    }
#pragma omp simd
    for (int i = 0; i < n; i++) out[i] = clip8(acc[i]);
}

// Pillow's resize of the in_w x in_h image at src (rows stride bytes apart) to out_w x out_h, of
// which only the window (x0, y0, cw, ch) is computed and written to dst (cw * ch pixels). Each
// output sample depends only on its own taps, so this equals resize + crop bit for bit: the
// horizontal pass runs for the window's columns and only the source rows the vertical pass reads.
static int resample_window(const uint8_t *src, size_t stride, int in_w, int in_h, int out_w, int out_h,
                           qft_image_interpolation interpolation, int x0, int y0, int cw, int ch, uint8_t *dst) {
    int horizontal = out_w != in_w, vertical = out_h != in_h;  // Pillow skips an identity pass
    size_t line = (size_t)cw * 3;
    int *xb = NULL, *yb = NULL;
    int32_t *xw = NULL, *yw = NULL, *acc = NULL;
    uint8_t *temp = NULL;
    int xk = 0, yk = 0, ok = 0;
    if (horizontal && !(xk = resample_coefficients(in_w, out_w, x0, cw, interpolation, &xb, &xw))) goto done;
    int xpad = horizontal && pad_taps(in_w, cw, xb, xw, xk);
    if (vertical && !(yk = resample_coefficients(in_h, out_h, y0, ch, interpolation, &yb, &yw))) goto done;
    if (!vertical) {
        for (int y = 0; y < ch; y++) {
            const uint8_t *row = src + (size_t)(y0 + y) * stride;
            if (horizontal) resample_row_any(row, dst + (size_t)y * line, cw, xb, xw, xk, xpad);
            else memcpy(dst + (size_t)y * line, row + (size_t)x0 * 3, line);
        }
        ok = 1;
        goto done;
    }
    // Source rows the vertical pass reads: ymin is nondecreasing in the output index.
    int row_lo = yb[0], row_hi = 0;
    for (int y = 0; y < ch; y++)
        if (yb[2 * y] + yb[2 * y + 1] > row_hi) row_hi = yb[2 * y] + yb[2 * y + 1];
    const uint8_t *rows = src + (size_t)x0 * 3;  // row r of the window's columns: rows + (r - first) * rows_stride
    size_t rows_stride = stride;
    int first = 0;
    if (horizontal) {
        temp = malloc((size_t)(row_hi - row_lo) * line);
        if (!temp) goto done;
        for (int r = row_lo; r < row_hi; r++)
            resample_row_any(src + (size_t)r * stride, temp + (size_t)(r - row_lo) * line, cw, xb, xw, xk, xpad);
        rows = temp;
        rows_stride = line;
        first = row_lo;
    }
    acc = malloc(sizeof(int32_t) * line);
    if (!acc) goto done;
    for (int y = 0; y < ch; y++)
        resample_column(rows + (size_t)(yb[2 * y] - first) * rows_stride, rows_stride, dst + (size_t)y * line,
                        (int)line, yb[2 * y + 1], yw + (size_t)y * yk, acc);
    ok = 1;
done:
    free(xb);
    free(xw);
    free(yb);
    free(yw);
    free(temp);
    free(acc);
    return ok;
}

qft_status qft_image_resize(const qft_image_rgb8 *in, int out_width, int out_height,
                            qft_image_interpolation interpolation, qft_image_rgb8 *out, qft_error *err) {
    memset(out, 0, sizeof *out);
    if (in->width <= 0 || in->height <= 0 || out_width <= 0 || out_height <= 0)
        return qft_fail(err, QFT_ERR_INVALID, "image resize: %dx%d -> %dx%d: sizes must be positive",
                        in->width, in->height, out_width, out_height);
    uint8_t *result = malloc((size_t)out_width * out_height * 3);
    if (!result || !resample_window(in->pixels, (size_t)in->width * 3, in->width, in->height, out_width, out_height,
                                    interpolation, 0, 0, out_width, out_height, result)) {
        free(result);
        return qft_fail(err, QFT_ERR_OOM, "image resize: out of memory for %dx%d", out_width, out_height);
    }
    out->width = out_width;
    out->height = out_height;
    out->pixels = result;
    return QFT_OK;
}

qft_status qft_image_crop(const qft_image_rgb8 *in, int left, int top, int width, int height,
                          qft_image_rgb8 *out, qft_error *err) {
    memset(out, 0, sizeof *out);
    if (width <= 0 || height <= 0 || left < 0 || top < 0 || left + width > in->width || top + height > in->height)
        return qft_fail(err, QFT_ERR_INVALID, "image crop: rectangle (%d, %d, %dx%d) outside the %dx%d image",
                        left, top, width, height, in->width, in->height);
    out->pixels = malloc((size_t)width * height * 3);
    if (!out->pixels) return qft_fail(err, QFT_ERR_OOM, "image crop: out of memory for %dx%d", width, height);
    for (int y = 0; y < height; y++)
        memcpy(out->pixels + (size_t)y * width * 3, in->pixels + ((size_t)(top + y) * in->width + left) * 3,
               (size_t)width * 3);
    out->width = width;
    out->height = height;
    return QFT_OK;
}

// Python's round() of d / 2 for an integer d >= 0: halves go to the even neighbour.
static int half_round_even(int d) {
    int q = d / 2;
    return (d % 2 == 0 || q % 2 == 0) ? q : q + 1;
}

qft_status qft_image_eval_pixels(const qft_image_transform_config *cfg, const qft_image_rgb8 *in,
                                 qft_image_rgb8 *out, qft_error *err) {
    memset(out, 0, sizeof *out);
    int crop = cfg->crop_size, size = cfg->resize_size;
    if (crop <= 0 || size < crop)
        return qft_fail(err, QFT_ERR_INVALID, "eval transform: resize_size %d must be >= crop_size %d > 0", size, crop);
    if (in->width <= 0 || in->height <= 0)
        return qft_fail(err, QFT_ERR_INVALID, "eval transform: empty %dx%d image", in->width, in->height);
    // torchvision's _compute_resized_output_size: the long side is int(size * long / short).
    int w = in->width, h = in->height, new_w, new_h;
    if (w <= h) {
        new_w = size;
        new_h = (int)((double)size * h / w);
    } else {
        new_h = size;
        new_w = (int)((double)size * w / h);
    }
    // Resize then crop = resample only the crop window of the resized image.
    int left = half_round_even(new_w - crop), top = half_round_even(new_h - crop);
    if (left < 0 || top < 0 || left + crop > new_w || top + crop > new_h)
        return qft_fail(err, QFT_ERR_INVALID, "image crop: rectangle (%d, %d, %dx%d) outside the %dx%d image",
                        left, top, crop, crop, new_w, new_h);
    uint8_t *pixels = malloc((size_t)crop * crop * 3);
    if (!pixels || !resample_window(in->pixels, (size_t)w * 3, w, h, new_w, new_h, cfg->interpolation, left, top,
                                    crop, crop, pixels)) {
        free(pixels);
        return qft_fail(err, QFT_ERR_OOM, "eval transform: out of memory for %dx%d", crop, crop);
    }
    out->width = crop;
    out->height = crop;
    out->pixels = pixels;
    return QFT_OK;
}

void qft_image_normalize(const qft_image_transform_config *cfg, const qft_image_rgb8 *in, float *out_chw) {
    size_t plane = (size_t)in->width * in->height;
    for (int c = 0; c < 3; c++) {
        // torchvision: ToTensor divides by 255 in float32, Normalize subtracts mean and divides by std.
        for (size_t i = 0; i < plane; i++)
            out_chw[c * plane + i] = ((float)in->pixels[i * 3 + c] / 255.0f - cfg->mean[c]) / cfg->std[c];
    }
}

qft_status qft_image_eval_transform(const qft_image_transform_config *cfg, const qft_image_rgb8 *in,
                                    float *out_chw, qft_error *err) {
    qft_image_rgb8 cropped;
    qft_status st = qft_image_eval_pixels(cfg, in, &cropped, err);
    if (st != QFT_OK) return st;
    qft_image_normalize(cfg, &cropped, out_chw);
    qft_image_free(&cropped);
    return QFT_OK;
}

// Python's int(round(x)) for x >= 0 (ties to even, as rint in the default rounding mode).
static int round_half_even(double x) { return (int)nearbyint(x); }

qft_image_train_params qft_image_train_sample(const qft_image_transform_config *cfg, int width, int height,
                                              uint64_t seed, uint64_t epoch, uint64_t sample_index) {
    uint64_t stream = QFT_IMAGE_TRAIN_STREAM + epoch, base = sample_index * 64;
    qft_image_train_params p = {0, 0, width, height, 0};
    double area = (double)width * height;
    double log_ratio_min = log((double)cfg->ratio_min), log_ratio_max = log((double)cfg->ratio_max);
    int found = 0;
    for (int attempt = 0; attempt < 10 && !found; attempt++) {
        uint64_t at = base + 4 * (uint64_t)attempt;
        double u_scale = qft_philox_uniform(seed, stream, at), u_ratio = qft_philox_uniform(seed, stream, at + 1);
        double target_area = area * (cfg->scale_min + (cfg->scale_max - cfg->scale_min) * u_scale);
        double aspect = exp(log_ratio_min + (log_ratio_max - log_ratio_min) * u_ratio);
        int w = round_half_even(sqrt(target_area * aspect)), h = round_half_even(sqrt(target_area / aspect));
        if (0 < w && w <= width && 0 < h && h <= height) {
            // torch.randint(0, n + 1): uniform over 0..n
            int top = (int)(qft_philox_uniform(seed, stream, at + 2) * (height - h + 1));
            int left = (int)(qft_philox_uniform(seed, stream, at + 3) * (width - w + 1));
            p.top = top > height - h ? height - h : top;
            p.left = left > width - w ? width - w : left;
            p.width = w;
            p.height = h;
            found = 1;
        }
    }
    if (!found) {
        double in_ratio = (double)width / height;
        int w = width, h = height;
        if (in_ratio < cfg->ratio_min) h = round_half_even(w / (double)cfg->ratio_min);
        else if (in_ratio > cfg->ratio_max) w = round_half_even(h * (double)cfg->ratio_max);
        if (h > height) h = height;
        if (w > width) w = width;
        if (h < 1) h = 1;
        if (w < 1) w = 1;
        p.width = w;
        p.height = h;
        p.top = (height - h) / 2;
        p.left = (width - w) / 2;
    }
    p.flip = qft_philox_uniform(seed, stream, base + 40) < cfg->flip_probability;
    return p;
}

qft_status qft_image_train_pixels(const qft_image_transform_config *cfg, const qft_image_rgb8 *in,
                                  uint64_t seed, uint64_t epoch, uint64_t sample_index,
                                  qft_image_rgb8 *out, qft_error *err) {
    memset(out, 0, sizeof *out);
    if (cfg->crop_size <= 0 || in->width <= 0 || in->height <= 0)
        return qft_fail(err, QFT_ERR_INVALID, "train transform: crop_size %d, image %dx%d must be positive",
                        cfg->crop_size, in->width, in->height);
    qft_image_train_params p = qft_image_train_sample(cfg, in->width, in->height, seed, epoch, sample_index);
    return qft_image_resized_crop(in, &p, cfg->crop_size, cfg->interpolation, out, err);
}

qft_status qft_image_resized_crop(const qft_image_rgb8 *in, const qft_image_train_params *p, int size,
                                  qft_image_interpolation interpolation, qft_image_rgb8 *out, qft_error *err) {
    memset(out, 0, sizeof *out);
    if (p->width <= 0 || p->height <= 0 || p->left < 0 || p->top < 0 || p->left + p->width > in->width ||
        p->top + p->height > in->height)
        return qft_fail(err, QFT_ERR_INVALID, "image crop: rectangle (%d, %d, %dx%d) outside the %dx%d image",
                        p->left, p->top, p->width, p->height, in->width, in->height);
    if (size <= 0)
        return qft_fail(err, QFT_ERR_INVALID, "image resize: %dx%d -> %dx%d: sizes must be positive", p->width,
                        p->height, size, size);
    // The crop is a view into in: Pillow resamples it as an image of its own.
    size_t stride = (size_t)in->width * 3;
    uint8_t *pixels = malloc((size_t)size * size * 3);
    if (!pixels || !resample_window(in->pixels + (size_t)p->top * stride + (size_t)p->left * 3, stride, p->width,
                                    p->height, size, size, interpolation, 0, 0, size, size, pixels)) {
        free(pixels);
        return qft_fail(err, QFT_ERR_OOM, "image resize: out of memory for %dx%d", size, size);
    }
    out->width = size;
    out->height = size;
    out->pixels = pixels;
    if (p->flip) {
        int n = out->width;
        for (int y = 0; y < out->height; y++) {
            uint8_t *row = out->pixels + (size_t)y * n * 3;
            for (int x = 0; x < n / 2; x++)
                for (int c = 0; c < 3; c++) {
                    uint8_t t = row[x * 3 + c];
                    row[x * 3 + c] = row[(n - 1 - x) * 3 + c];
                    row[(n - 1 - x) * 3 + c] = t;
                }
        }
    }
    return QFT_OK;
}

qft_status qft_image_train_transform(const qft_image_transform_config *cfg, const qft_image_rgb8 *in,
                                     uint64_t seed, uint64_t epoch, uint64_t sample_index,
                                     float *out_chw, qft_error *err) {
    qft_image_rgb8 pixels;
    qft_status st = qft_image_train_pixels(cfg, in, seed, epoch, sample_index, &pixels, err);
    if (st != QFT_OK) return st;
    qft_image_normalize(cfg, &pixels, out_chw);
    qft_image_free(&pixels);
    return QFT_OK;
}
