// ImageNet-format image folders (<root>/<class>/<files>), as torchvision's ImageFolder: classes are
// the sorted subfolder names, files are sorted; images are decoded to 8-bit RGB: JPEG (recognised by
// its FF D8 FF magic, not the extension) with libjpeg-turbo exactly as Pillow decodes it
// (jpeg_decode.h), other formats (PNG, BMP, PNM, GIF, TGA...) with stb_image.
#ifndef QFT_DATA_IMAGEFOLDER_H
#define QFT_DATA_IMAGEFOLDER_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "image_transform.h"

typedef struct {
    char *root;
    int num_classes;
    char **class_names;  // sorted by byte value (Python's sorted() on UTF-8 names)
    int count;           // usable images
    char **paths;        // count full paths, class by class, each class's files sorted as ImageFolder
    int32_t *labels;     // count class indices
    int skipped;         // files that are not decodable images (corrupt, truncated header, not an image)
} qft_imagefolder;

// How much of each file qft_imagefolder_open reads to decide whether it is an image.
typedef enum {
    QFT_IMAGEFOLDER_CHECK_HEADER = 0,  // header probe (libjpeg's jpeg_read_header, stbi_info): fast
    QFT_IMAGEFOLDER_CHECK_DECODE       // full decode: also rejects files corrupt after the header
} qft_imagefolder_check;

// Scans root. Hidden entries (leading '.') are ignored; subfolders inside a class folder are walked
// as ImageFolder does (os.walk, sorted). Files that fail the check are skipped and counted in
// `skipped`. Errors (naming the folder): root unreadable or with no class folders (QFT_ERR_IO /
// QFT_ERR_INVALID); a class folder with no usable image (QFT_ERR_INVALID). On failure folder is zeroed.
qft_status qft_imagefolder_open(qft_imagefolder *folder, const char *root, qft_imagefolder_check check,
                                qft_error *err);

void qft_imagefolder_free(qft_imagefolder *folder);

// Keeps `limit` images (data.train_limit / eval_limit; 0 or >= count keeps all), every class
// represented: class c keeps 1 + floor((limit - C) * (n_c - 1) / (count - C)) of its n_c images, the
// leftover going one each to the classes with the largest remainders (ties: lower class), picked at
// file positions floor(i * n_c / keep_c), evenly strided over its sorted files. Deterministic; the
// kept images stay in folder order. limit < num_classes is QFT_ERR_INVALID (folder unchanged).
qft_status qft_imagefolder_subset(qft_imagefolder *folder, long limit, qft_error *err);

// The picks of qft_imagefolder_subset without removing anything: chosen[0..count-1] gets 1 for the
// n images a subset of n keeps (all when n == count), 0 for the others. n below num_classes or
// above count is QFT_ERR_INVALID. data.validation_size holds out these picks.
qft_status qft_imagefolder_pick(const qft_imagefolder *folder, long n, char *chosen, qft_error *err);

// Keeps the images whose chosen[i] is nonzero (value 1) or zero (value 0), in folder order, and
// frees the paths of the others.
void qft_imagefolder_keep(qft_imagefolder *folder, const char *chosen, int value);

// Decodes into 8-bit RGB: JPEG as Pillow's Image.open(...).convert("RGB") (bit-exact; greyscale
// replicated; CMYK/YCCK JPEGs and truncated JPEGs are QFT_ERR_PARSE), and any other image stb_image
// reads (grey, grey+alpha, RGB, RGBA, 8 or 16 bit; alpha dropped, grey replicated). A file that
// cannot be decoded is QFT_ERR_PARSE naming it; callers that scanned with CHECK_HEADER should skip
// and count such files rather than stop.
qft_status qft_image_load(const char *path, qft_image_rgb8 *image, qft_error *err);
qft_status qft_image_decode(const uint8_t *bytes, size_t size, const char *name, qft_image_rgb8 *image,
                            qft_error *err);

// Sample i of the folder, decoded.
qft_status qft_imagefolder_load(const qft_imagefolder *folder, int index, qft_image_rgb8 *image, qft_error *err);

#endif
