// libjpeg-turbo decoding with Pillow's settings; errors longjmp back here instead of exit().
#include "jpeg_decode.h"

#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
// after jpeglib.h, which it needs: the message codes (JWRN_JPEG_EOF)
#include <jerror.h>

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int hit_eof;  // libjpeg ran out of data and padded (JWRN_JPEG_EOF)
    char message[JMSG_LENGTH_MAX];
} qft_jpeg_error;

static void on_error_exit(j_common_ptr cinfo) {
    qft_jpeg_error *e = (qft_jpeg_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->message);
    longjmp(e->jump, 1);
}

// Warnings (msg_level -1) and trace messages: never printed. Only the premature end of data matters.
static void on_emit_message(j_common_ptr cinfo, int msg_level) {
    qft_jpeg_error *e = (qft_jpeg_error *)cinfo->err;
    if (msg_level < 0) {
        cinfo->err->num_warnings++;
        if (cinfo->err->msg_code == JWRN_JPEG_EOF) e->hit_eof = 1;
    }
}

static void on_output_message(j_common_ptr cinfo) { (void)cinfo; }

int qft_jpeg_is_jpeg(const uint8_t *bytes, size_t size) {
    return size >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF;
}

typedef struct {
    struct jpeg_decompress_struct cinfo;
    qft_jpeg_error jerr;
    uint8_t *pixels;
} decode_state;

static void init_state(decode_state *s) {
    memset(s, 0, sizeof *s);
    s->cinfo.err = jpeg_std_error(&s->jerr.pub);
    s->jerr.pub.error_exit = on_error_exit;
    s->jerr.pub.emit_message = on_emit_message;
    s->jerr.pub.output_message = on_output_message;
}

// Everything that can longjmp runs in here, with its state in *s (not in locals of this frame), so
// nothing set between setjmp and longjmp is lost. Returns 0 with s->jerr.message set on failure.
static int run_decode(decode_state *s, const uint8_t *bytes, size_t size, FILE *file, int header_only,
                      const char **why) {
    j_decompress_ptr cinfo = &s->cinfo;
    jpeg_create_decompress(cinfo);
    if (file) jpeg_stdio_src(cinfo, file);
    else jpeg_mem_src(cinfo, bytes, (unsigned long)size);
    jpeg_read_header(cinfo, TRUE);
    if (s->jerr.hit_eof) {
        *why = "truncated (file ends inside the headers)";
        return 0;
    }
    if (cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK ||
        (cinfo->num_components != 1 && cinfo->num_components != 3)) {
        *why = "CMYK/YCCK or unusual component count: not supported";
        return 0;
    }
    if (cinfo->image_width == 0 || cinfo->image_height == 0) {
        *why = "image has zero size";
        return 0;
    }
    if (header_only) return 1;
    cinfo->out_color_space = JCS_RGB;  // greyscale is replicated, as Pillow's L -> RGB
    cinfo->dct_method = JDCT_ISLOW;
    cinfo->do_fancy_upsampling = TRUE;
    cinfo->scale_num = cinfo->scale_denom = 1;
    jpeg_start_decompress(cinfo);
    if (cinfo->output_components != 3) {
        *why = "unexpected output component count";
        return 0;
    }
    size_t stride = (size_t)cinfo->output_width * 3;
    s->pixels = malloc(stride * cinfo->output_height);
    if (!s->pixels) {
        *why = "out of memory";
        return 0;
    }
    while (cinfo->output_scanline < cinfo->output_height) {
        JSAMPROW row = s->pixels + stride * cinfo->output_scanline;
        jpeg_read_scanlines(cinfo, &row, 1);
    }
    // Pillow needs every byte of entropy data but not the EOI after it: data ending early is an
    // error, a missing end marker is not.
    if (s->jerr.hit_eof) {
        *why = "truncated (premature end of data)";
        return 0;
    }
    jpeg_finish_decompress(cinfo);
    return 1;
}

static qft_status decode_common(const uint8_t *bytes, size_t size, FILE *file, const char *name, int header_only,
                                qft_image_rgb8 *image, int *width, int *height, qft_error *err) {
    if (image) memset(image, 0, sizeof *image);
    decode_state *s = malloc(sizeof *s);
    if (!s) return qft_fail(err, QFT_ERR_OOM, "%s: out of memory decoding JPEG", name);
    init_state(s);
    const char *why = NULL;
    int ok = 0;
    if (setjmp(s->jerr.jump) == 0) ok = run_decode(s, bytes, size, file, header_only, &why);
    qft_status status = QFT_OK;
    if (!ok) {
        status = qft_fail(err, why && strcmp(why, "out of memory") == 0 ? QFT_ERR_OOM : QFT_ERR_PARSE,
                          "%s: not a decodable JPEG: %s", name, why ? why : s->jerr.message);
        free(s->pixels);
    } else {
        if (width) *width = (int)s->cinfo.image_width;
        if (height) *height = (int)s->cinfo.image_height;
        if (image) {
            image->width = (int)s->cinfo.output_width;
            image->height = (int)s->cinfo.output_height;
            image->pixels = s->pixels;
        }
    }
    jpeg_destroy_decompress(&s->cinfo);
    free(s);
    return status;
}

qft_status qft_jpeg_decode(const uint8_t *bytes, size_t size, const char *name, qft_image_rgb8 *image,
                           qft_error *err) {
    memset(image, 0, sizeof *image);
    if (!qft_jpeg_is_jpeg(bytes, size)) return qft_fail(err, QFT_ERR_PARSE, "%s: not a JPEG", name);
    return decode_common(bytes, size, NULL, name, 0, image, NULL, NULL, err);
}

qft_status qft_jpeg_decode_file(FILE *file, const char *name, qft_image_rgb8 *image, qft_error *err) {
    return decode_common(NULL, 0, file, name, 0, image, NULL, NULL, err);
}

qft_status qft_jpeg_read_size_file(FILE *file, const char *name, int *width, int *height, qft_error *err) {
    return decode_common(NULL, 0, file, name, 1, NULL, width, height, err);
}
