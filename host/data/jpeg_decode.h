// JPEG decoding with libjpeg-turbo, set up as Pillow decodes (Image.open(...).convert("RGB")), so qft
// sees the pixels torchvision's PIL transforms see: integer IDCT (JDCT_ISLOW), fancy upsampling,
// no scaling, RGB out. Greyscale is replicated to RGB (as Pillow's L -> RGB); CMYK/YCCK JPEGs are not
// supported (QFT_ERR_PARSE). A corrupt file is QFT_ERR_PARSE naming it (never exit() or a crash);
// libjpeg's warnings are silent, except that running out of data before the last scanline (a
// truncated file: libjpeg would pad it) is an error, as Pillow without LOAD_TRUNCATED_IMAGES.
#ifndef QFT_DATA_JPEG_DECODE_H
#define QFT_DATA_JPEG_DECODE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../core/status.h"
#include "image_transform.h"

// 1 when bytes start with the JPEG SOI marker and a following marker (FF D8 FF).
int qft_jpeg_is_jpeg(const uint8_t *bytes, size_t size);

// Decodes a whole JPEG in memory to 8-bit RGB (image->pixels malloc'd; qft_image_free releases it).
qft_status qft_jpeg_decode(const uint8_t *bytes, size_t size, const char *name, qft_image_rgb8 *image,
                           qft_error *err);
// The same from an open file, read from its current position.
qft_status qft_jpeg_decode_file(FILE *file, const char *name, qft_image_rgb8 *image, qft_error *err);

// Reads only the headers (up to the first SOF/SOS) for the image size; fails as decoding would on a
// corrupt header or an unsupported colour space.
qft_status qft_jpeg_read_size_file(FILE *file, const char *name, int *width, int *height, qft_error *err);

#endif
