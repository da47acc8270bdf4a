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

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for a full-range box (0, in_size):
// per output index, the first input index, the tap count, and ksize fixed-point weights.
static int resample_coefficients(int in_size, int out_size, qft_image_interpolation interpolation,
                                 int **bounds_out, int32_t **weights_out) {
    double support = interpolation == QFT_INTERP_BICUBIC ? 2.0 : 1.0;
    double (*filter)(double) = interpolation == QFT_INTERP_BICUBIC ? filter_bicubic : filter_bilinear;
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    support *= filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    int *bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    int32_t *weights = malloc(sizeof(int32_t) * (size_t)ksize * (size_t)out_size);
    double *k = malloc(sizeof(double) * (size_t)ksize);
    if (!bounds || !weights || !k) {
        free(bounds);
        free(weights);
        free(k);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
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
            weights[(size_t)xx * ksize + x] = (int32_t)(w < 0 ? -0.5 + w : 0.5 + w);
        }
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = xmax;
    }
    free(k);
    *bounds_out = bounds;
    *weights_out = weights;
    return ksize;
}

static uint8_t clip8(int64_t sum) {
    int64_t v = sum >> PIL_PRECISION_BITS;  // sum < 0 clips to 0 below either way
    return sum < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

// One pass along x (step 3 bytes) or y (step = row length): out has out_len samples per line.
static void resample_pass(const uint8_t *in, uint8_t *out, int lines, int out_len,
                          int along_rows, int width_in, int width_out, const int *bounds,
                          const int32_t *weights, int ksize) {
    for (int line = 0; line < lines; line++) {
        for (int o = 0; o < out_len; o++) {
            int xmin = bounds[2 * o], taps = bounds[2 * o + 1];
            const int32_t *k = weights + (size_t)o * ksize;
            for (int c = 0; c < 3; c++) {
                int64_t sum = 1 << (PIL_PRECISION_BITS - 1);
                for (int t = 0; t < taps; t++) {
                    size_t at = along_rows ? ((size_t)line * width_in + (size_t)(xmin + t)) * 3 + c
                                           : ((size_t)(xmin + t) * width_in + (size_t)line) * 3 + c;
                    sum += (int64_t)in[at] * k[t];
                }
                size_t to = along_rows ? ((size_t)line * width_out + (size_t)o) * 3 + c
                                       : ((size_t)o * width_out + (size_t)line) * 3 + c;
                out[to] = clip8(sum);
            }
        }
    }
}

qft_status qft_image_resize(const qft_image_rgb8 *in, int out_width, int out_height,
                            qft_image_interpolation interpolation, qft_image_rgb8 *out, qft_error *err) {
    memset(out, 0, sizeof *out);
    if (in->width <= 0 || in->height <= 0 || out_width <= 0 || out_height <= 0)
        return qft_fail(err, QFT_ERR_INVALID, "image resize: %dx%d -> %dx%d: sizes must be positive",
                        in->width, in->height, out_width, out_height);
    size_t out_bytes = (size_t)out_width * out_height * 3;
    uint8_t *result = malloc(out_bytes);
    if (!result) return qft_fail(err, QFT_ERR_OOM, "image resize: out of memory for %dx%d", out_width, out_height);
    const uint8_t *source = in->pixels;
    uint8_t *temp = NULL;
    int width = in->width;
    int *bounds = NULL;
    int32_t *weights = NULL;
    // Pillow skips a pass whose size does not change; each pass rounds to 8 bits.
    if (out_width != in->width) {
        int ksize = resample_coefficients(in->width, out_width, interpolation, &bounds, &weights);
        int vertical_follows = out_height != in->height;
        if (vertical_follows) temp = malloc((size_t)out_width * in->height * 3);
        if (!ksize || (vertical_follows && !temp)) goto oom;
        resample_pass(source, vertical_follows ? temp : result, in->height, out_width, 1, in->width, out_width,
                      bounds, weights, ksize);
        free(bounds);
        free(weights);
        bounds = NULL;
        weights = NULL;
        source = temp;
        width = out_width;
    }
    if (out_height != in->height) {
        int ksize = resample_coefficients(in->height, out_height, interpolation, &bounds, &weights);
        if (!ksize) goto oom;
        resample_pass(source, result, width, out_height, 0, width, width, bounds, weights, ksize);
        free(bounds);
        free(weights);
    } else if (out_width == in->width) {
        memcpy(result, in->pixels, out_bytes);
    }
    free(temp);
    out->width = out_width;
    out->height = out_height;
    out->pixels = result;
    return QFT_OK;
oom:
    free(bounds);
    free(weights);
    free(temp);
    free(result);
    return qft_fail(err, QFT_ERR_OOM, "image resize: out of memory for %dx%d", out_width, out_height);
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
    qft_image_rgb8 resized;
    qft_status st = qft_image_resize(in, new_w, new_h, cfg->interpolation, &resized, err);
    if (st != QFT_OK) return st;
    st = qft_image_crop(&resized, half_round_even(new_w - crop), half_round_even(new_h - crop), crop, crop, out, err);
    qft_image_free(&resized);
    return st;
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
    qft_image_rgb8 cropped;
    qft_status st = qft_image_crop(in, p->left, p->top, p->width, p->height, &cropped, err);
    if (st != QFT_OK) return st;
    st = qft_image_resize(&cropped, size, size, interpolation, out, err);
    qft_image_free(&cropped);
    if (st != QFT_OK) return st;
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
