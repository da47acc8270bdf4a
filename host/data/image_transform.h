// Image preprocessing for vision models, matching torchvision on PIL images: eval = Resize(shorter
// side) + CenterCrop, train = RandomResizedCrop + RandomHorizontalFlip, then ToTensor + Normalize.
#ifndef QFT_DATA_IMAGE_TRANSFORM_H
#define QFT_DATA_IMAGE_TRANSFORM_H

#include <stdint.h>

#include "../core/status.h"

// 8-bit RGB image, rows top to bottom, pixels interleaved (R, G, B); owns its pixels.
typedef struct {
    int width, height;
    uint8_t *pixels;  // width * height * 3
} qft_image_rgb8;

void qft_image_free(qft_image_rgb8 *image);

typedef enum { QFT_INTERP_BILINEAR = 0, QFT_INTERP_BICUBIC } qft_image_interpolation;

typedef struct {
    int crop_size;    // output is 3 x crop_size x crop_size
    int resize_size;  // eval: the shorter side is resized to this before the center crop
    qft_image_interpolation interpolation;
    float mean[3], std[3];
    // train: RandomResizedCrop's area fraction and aspect-ratio ranges, flip probability
    float scale_min, scale_max, ratio_min, ratio_max;
    float flip_probability;
} qft_image_transform_config;

// ImageNet settings: mean 0.485,0.456,0.406, std 0.229,0.224,0.225, bilinear, resize_size =
// round(crop_size / 0.875) (256 for 224), scale 0.08-1, ratio 3/4-4/3, flip 0.5.
void qft_image_transform_defaults(qft_image_transform_config *cfg, int crop_size);

// round(crop_size / crop_fraction): the eval resize that keeps crop_fraction of the shorter side.
int qft_image_eval_resize_size(int crop_size, double crop_fraction);

// PIL's Image.resize (Pillow's two-pass fixed-point resampler: horizontal then vertical, each
// rounded to 8 bits; the filter support widens by the scale when downscaling, i.e. antialiased).
// out is allocated; the result is bit-identical to Pillow's for RGB images.
qft_status qft_image_resize(const qft_image_rgb8 *in, int out_width, int out_height,
                            qft_image_interpolation interpolation, qft_image_rgb8 *out, qft_error *err);

// Copies the rectangle (left, top, width, height), which must lie inside the image.
qft_status qft_image_crop(const qft_image_rgb8 *in, int left, int top, int width, int height,
                          qft_image_rgb8 *out, qft_error *err);

// Eval transform without the float conversion: Resize(resize_size) + CenterCrop(crop_size), as
// 8-bit pixels (crop_size x crop_size). Useful to compare with torchvision before normalization.
qft_status qft_image_eval_pixels(const qft_image_transform_config *cfg, const qft_image_rgb8 *in,
                                 qft_image_rgb8 *out, qft_error *err);

// Eval transform into out_chw (3 * crop_size * crop_size floats, channel-major):
// (pixel / 255 - mean[c]) / std[c].
qft_status qft_image_eval_transform(const qft_image_transform_config *cfg, const qft_image_rgb8 *in,
                                    float *out_chw, qft_error *err);

// The rectangle RandomResizedCrop picks (torchvision's algorithm: 10 attempts, then a center crop
// clamped to the ratio range) and the flip decision, drawn from Philox stream
// QFT_IMAGE_TRAIN_STREAM + epoch, indices sample_index * 64 + k: a pure function of
// (seed, epoch, sample_index) and the image size.
#define QFT_IMAGE_TRAIN_STREAM 0x1A6E000000000000ull
typedef struct {
    int left, top, width, height;
    int flip;
} qft_image_train_params;
qft_image_train_params qft_image_train_sample(const qft_image_transform_config *cfg, int image_width,
                                              int image_height, uint64_t seed, uint64_t epoch,
                                              uint64_t sample_index);

// torchvision's resized_crop (crop, then PIL resize to size x size) followed by an optional
// horizontal flip: the train transform for given parameters.
qft_status qft_image_resized_crop(const qft_image_rgb8 *in, const qft_image_train_params *params, int size,
                                  qft_image_interpolation interpolation, qft_image_rgb8 *out, qft_error *err);

// Train transform: crop + resize to crop_size x crop_size, optional flip, normalize into out_chw.
qft_status qft_image_train_pixels(const qft_image_transform_config *cfg, const qft_image_rgb8 *in,
                                  uint64_t seed, uint64_t epoch, uint64_t sample_index,
                                  qft_image_rgb8 *out, qft_error *err);
qft_status qft_image_train_transform(const qft_image_transform_config *cfg, const qft_image_rgb8 *in,
                                     uint64_t seed, uint64_t epoch, uint64_t sample_index,
                                     float *out_chw, qft_error *err);

// ToTensor + Normalize of an already cropped image into out_chw.
void qft_image_normalize(const qft_image_transform_config *cfg, const qft_image_rgb8 *in, float *out_chw);

#endif
