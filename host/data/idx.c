// IDX loader for (Fashion-)MNIST: reads gzipped or raw files through zlib and checks magic,
// dimensions, exact payload length and image/label agreement before handing out the bytes.
#include "idx.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

const char *qft_idx_default_dir(void) { return "/usr/share/datasets/fashion-mnist"; }

void qft_idx_free(qft_idx_dataset *ds) {
    if (!ds) return;
    free(ds->pixels);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

// zlib's error text (e.g. "unexpected end of file" for a cut gzip stream), else "".
static const char *gz_problem(gzFile f, const char *path) {
    int code = 0;
    const char *msg = gzerror(f, &code);
    if (code == Z_OK || !msg) return "";
    size_t n = strlen(path);  // zlib prefixes "<path>: "; our messages already lead with the path
    return strncmp(msg, path, n) == 0 && strncmp(msg + n, ": ", 2) == 0 ? msg + n + 2 : msg;
}

// Reads up to n bytes; returns how many arrived (short on EOF), or -1 on a stream error.
static long long read_bytes(gzFile f, uint8_t *dst, size_t n) {
    size_t got = 0;
    while (got < n) {
        size_t want = n - got < (1u << 30) ? n - got : (1u << 30);
        int r = gzread(f, dst + got, (unsigned)want);
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (long long)got;
}

// Reads exactly `expected` payload bytes into a buffer grown as data arrives, so a header that lies
// about a huge size costs memory only for the bytes actually present. Then insists on EOF.
static qft_status read_payload(gzFile f, const char *path, const char *what, size_t expected,
                               uint8_t **out, qft_error *err) {
    size_t cap = expected < (1u << 20) ? expected : (1u << 20), got = 0;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) return qft_fail(err, QFT_ERR_OOM, "%s: out of memory", path);
    while (got < expected) {
        if (got == cap) {
            size_t grown = cap > expected / 2 ? expected : cap * 2;
            uint8_t *next = realloc(buf, grown);
            if (!next) {
                free(buf);
                return qft_fail(err, QFT_ERR_OOM, "%s: out of memory for %zu bytes of %s", path, expected, what);
            }
            buf = next;
            cap = grown;
        }
        size_t want = cap - got;
        long long r = read_bytes(f, buf + got, want);
        if (r < 0) {
            free(buf);
            return qft_fail(err, QFT_ERR_PARSE, "%s: corrupt data after %zu bytes of %s: %s", path, got, what,
                            gz_problem(f, path));
        }
        got += (size_t)r;
        if ((size_t)r < want) break;  // read_bytes only stops short at end of file
    }
    if (got != expected) {
        const char *why = gz_problem(f, path);
        free(buf);
        return qft_fail(err, QFT_ERR_PARSE, "%s: truncated: expected %zu bytes of %s, got %zu%s%s", path,
                        expected, what, got, *why ? ": " : "", why);
    }
    uint8_t extra;
    long long r = read_bytes(f, &extra, 1);
    if (r != 0) {
        free(buf);
        if (r < 0)
            return qft_fail(err, QFT_ERR_PARSE, "%s: corrupt data after the %zu bytes of %s: %s", path,
                            expected, what, gz_problem(f, path));
        return qft_fail(err, QFT_ERR_PARSE, "%s: unexpected data after the %zu bytes of %s the header declares",
                        path, expected, what);
    }
    *out = buf;
    return QFT_OK;
}

// Opens path and reads its header: magic and `ndim` big-endian dimensions.
static qft_status open_idx(const char *path, uint32_t magic, int ndim, uint32_t *dims, gzFile *out,
                           qft_error *err) {
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return qft_fail(err, QFT_ERR_IO, "%s: cannot open: %s", path, errno ? strerror(errno) : "gzopen failed");
    gzbuffer(f, 1u << 17);  // larger than zlib's 8 KB default: fewer read calls on the 26 MB training set
    // Magic first, so a wrong kind of file is reported as such even when it is short.
    uint8_t header[16];
    size_t want = 4 + 4 * (size_t)ndim;
    long long got = read_bytes(f, header, 4);
    if (got == 4) {
        uint32_t found = be32(header);
        if (found != magic) {
            gzclose(f);
            return qft_fail(err, QFT_ERR_PARSE, "%s: wrong magic 0x%08x, expected 0x%08x (IDX %s file)", path,
                            found, magic, magic == QFT_IDX_MAGIC_IMAGES ? "images" : "labels");
        }
        long long rest = read_bytes(f, header + 4, want - 4);
        got = rest < 0 ? -1 : 4 + rest;
    }
    if (got < 0 || (size_t)got < want) {
        qft_status s =
            got < 0 ? qft_fail(err, QFT_ERR_PARSE, "%s: corrupt gzip stream: %s", path, gz_problem(f, path))
                    : qft_fail(err, QFT_ERR_PARSE, "%s: truncated: %lld bytes, shorter than the %zu-byte IDX header",
                               path, got, want);
        gzclose(f);
        return s;
    }
    for (int i = 0; i < ndim; i++) dims[i] = be32(header + 4 + 4 * i);
    *out = f;
    return QFT_OK;
}

qft_status qft_idx_load(qft_idx_dataset *ds, const char *images_path, const char *labels_path,
                        qft_error *err) {
    memset(ds, 0, sizeof *ds);
    if (!images_path || !labels_path)
        return qft_fail(err, QFT_ERR_INVALID, "idx: images and labels paths are both required");

    uint32_t image_dims[3] = {0}, label_dims[1] = {0};
    gzFile images = NULL, labels = NULL;
    qft_status s = open_idx(images_path, QFT_IDX_MAGIC_IMAGES, 3, image_dims, &images, err);
    if (s != QFT_OK) return s;
    uint32_t count = image_dims[0], rows = image_dims[1], cols = image_dims[2];
    if (count == 0 || count > INT32_MAX) {
        s = qft_fail(err, QFT_ERR_PARSE, "%s: image count %u out of range (1 .. %d)", images_path, count, INT32_MAX);
        goto fail;
    }
    if (rows == 0 || cols == 0 || rows > QFT_IDX_MAX_SIDE || cols > QFT_IDX_MAX_SIDE) {
        s = qft_fail(err, QFT_ERR_PARSE, "%s: image size %ux%u out of range (1 .. %d per side)", images_path, rows,
                     cols, QFT_IDX_MAX_SIDE);
        goto fail;
    }
    size_t per_image = (size_t)rows * cols;
    if ((size_t)count > SIZE_MAX / per_image) {
        s = qft_fail(err, QFT_ERR_PARSE, "%s: %u images of %ux%u overflow the address space", images_path, count,
                     rows, cols);
        goto fail;
    }
    // Check the label header before reading 47 MB of pixels, so a mismatch fails fast.
    s = open_idx(labels_path, QFT_IDX_MAGIC_LABELS, 1, label_dims, &labels, err);
    if (s != QFT_OK) goto fail;
    if (label_dims[0] != count) {
        s = qft_fail(err, QFT_ERR_INVALID, "%s: %u labels, but %s holds %u images", labels_path, label_dims[0],
                     images_path, count);
        goto fail;
    }
    s = read_payload(images, images_path, "pixels", (size_t)count * per_image, &ds->pixels, err);
    if (s != QFT_OK) goto fail;
    s = read_payload(labels, labels_path, "labels", count, &ds->labels, err);
    if (s != QFT_OK) goto fail;
    gzclose(images);
    gzclose(labels);
    ds->count = (int)count;
    ds->rows = (int)rows;
    ds->cols = (int)cols;
    return QFT_OK;
fail:
    if (images) gzclose(images);
    if (labels) gzclose(labels);
    qft_idx_free(ds);
    return s;
}
