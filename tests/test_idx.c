// IDX loader: tiny raw and gzipped files made here, the real Fashion-MNIST files when installed, and
// every bad-input class (missing, wrong magic, truncated, count mismatch, trailing data, absurd dims);
// the Fashion-MNIST dataset's normalization equals torchvision's ToTensor + Normalize.
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data/dataset.h"
#include "data/idx.h"
#include "test_util.h"

static char temp_dir[256];

static void join(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", temp_dir, name); }

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void write_file(const char *path, const uint8_t *bytes, size_t n, int gzip) {
    if (gzip) {
        gzFile f = gzopen(path, "wb");
        if (!f || (n && gzwrite(f, bytes, (unsigned)n) != (int)n)) exit(2);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        if (!f || (n && fwrite(bytes, 1, n, f) != n)) exit(2);
        fclose(f);
    }
}

// Writes an images file (magic, count, rows, cols, then `payload` bytes of a counting pattern).
static void write_images(const char *path, uint32_t magic, uint32_t count, uint32_t rows, uint32_t cols,
                         size_t payload, int gzip) {
    uint8_t *buf = malloc(16 + payload);
    put_be32(buf, magic);
    put_be32(buf + 4, count);
    put_be32(buf + 8, rows);
    put_be32(buf + 12, cols);
    for (size_t i = 0; i < payload; i++) buf[16 + i] = (uint8_t)(i * 7 + 3);
    write_file(path, buf, 16 + payload, gzip);
    free(buf);
}

static void write_labels(const char *path, uint32_t magic, uint32_t count, const uint8_t *labels, size_t n,
                         int gzip) {
    uint8_t *buf = malloc(8 + n);
    put_be32(buf, magic);
    put_be32(buf + 4, count);
    if (n) memcpy(buf + 8, labels, n);
    write_file(path, buf, 8 + n, gzip);
    free(buf);
}

static int dataset_is_zero(const qft_idx_dataset *ds) {
    return ds->count == 0 && ds->rows == 0 && ds->cols == 0 && ds->pixels == NULL && ds->labels == NULL;
}

static void expect_fail(const char *images, const char *labels, qft_status want, const char *names_file,
                        const char *needle, const char *what) {
    qft_idx_dataset ds;
    qft_error err = {{0}};
    qft_status s = qft_idx_load(&ds, images, labels, &err);
    CHECK(s == want, "%s: status %s, expected %s (%s)", what, qft_status_name(s), qft_status_name(want),
          err.message);
    CHECK(strstr(err.message, names_file) != NULL, "%s: message does not name %s: %s", what, names_file,
          err.message);
    CHECK(strstr(err.message, needle) != NULL, "%s: message lacks '%s': %s", what, needle, err.message);
    CHECK(strchr(err.message, '\n') == NULL, "%s: message is not one line", what);
    CHECK(dataset_is_zero(&ds), "%s: dataset not zeroed on failure", what);
    qft_idx_free(&ds);
}

static void test_tiny(void) {
    const uint8_t labels[3] = {0, 9, 255};
    for (int gzip_images = 0; gzip_images < 2; gzip_images++) {
        for (int gzip_labels = 0; gzip_labels < 2; gzip_labels++) {
            char images_path[512], labels_path[512];
            join(images_path, sizeof images_path, gzip_images ? "tiny-images.gz" : "tiny-images");
            join(labels_path, sizeof labels_path, gzip_labels ? "tiny-labels.gz" : "tiny-labels");
            write_images(images_path, QFT_IDX_MAGIC_IMAGES, 3, 2, 4, 24, gzip_images);
            write_labels(labels_path, QFT_IDX_MAGIC_LABELS, 3, labels, 3, gzip_labels);
            qft_idx_dataset ds;
            qft_error err = {{0}};
            qft_status s = qft_idx_load(&ds, images_path, labels_path, &err);
            CHECK(s == QFT_OK, "tiny (gz %d/%d): %s", gzip_images, gzip_labels, err.message);
            if (s != QFT_OK) continue;
            CHECK(ds.count == 3 && ds.rows == 2 && ds.cols == 4, "dims %d %d %d", ds.count, ds.rows, ds.cols);
            int bad = 0;
            for (int i = 0; i < 24; i++) bad += ds.pixels[i] != (uint8_t)(i * 7 + 3);
            CHECK(bad == 0, "%d pixels differ", bad);
            CHECK(memcmp(ds.labels, labels, 3) == 0, "labels differ");
            qft_idx_free(&ds);
            CHECK(dataset_is_zero(&ds), "free zeroes");
            qft_idx_free(&ds);  // idempotent
        }
    }
}

static void test_bad_inputs(void) {
    char images[512], labels[512], other[512], missing[512];
    const uint8_t lab[3] = {1, 2, 3};
    join(images, sizeof images, "img");
    join(labels, sizeof labels, "lab");
    join(other, sizeof other, "other");
    join(missing, sizeof missing, "no-such-file.gz");
    write_images(images, QFT_IDX_MAGIC_IMAGES, 3, 2, 4, 24, 0);
    write_labels(labels, QFT_IDX_MAGIC_LABELS, 3, lab, 3, 0);

    expect_fail(missing, labels, QFT_ERR_IO, missing, "cannot open", "missing images");
    expect_fail(images, missing, QFT_ERR_IO, missing, "cannot open", "missing labels");
    // Swapped arguments: each file has the other's magic.
    expect_fail(labels, images, QFT_ERR_PARSE, labels, "wrong magic 0x00000801, expected 0x00000803",
                "swapped files");
    write_labels(other, 0x00000802u, 3, lab, 3, 0);
    expect_fail(images, other, QFT_ERR_PARSE, other, "wrong magic 0x00000802, expected 0x00000801", "label magic");
    // Raw (non-IDX) bytes.
    write_file(other, (const uint8_t *)"hello, world, not idx", 21, 0);
    expect_fail(other, labels, QFT_ERR_PARSE, other, "wrong magic", "text file");

    // Truncated pixel data, raw and gzipped.
    write_images(other, QFT_IDX_MAGIC_IMAGES, 3, 2, 4, 10, 0);
    expect_fail(other, labels, QFT_ERR_PARSE, other, "expected 24 bytes of pixels, got 10", "truncated raw");
    write_images(other, QFT_IDX_MAGIC_IMAGES, 3, 2, 4, 10, 1);
    expect_fail(other, labels, QFT_ERR_PARSE, other, "expected 24 bytes of pixels, got 10", "truncated gz payload");
    write_labels(other, QFT_IDX_MAGIC_LABELS, 3, lab, 2, 1);
    expect_fail(images, other, QFT_ERR_PARSE, other, "expected 3 bytes of labels, got 2", "truncated labels");
    // Header cut short.
    write_file(other, (const uint8_t *)"\0\0\x08\x03\0\0\0\x03", 8, 0);
    expect_fail(other, labels, QFT_ERR_PARSE, other, "shorter than the 16-byte IDX header", "short header");
    write_file(other, (const uint8_t *)"", 0, 0);
    expect_fail(other, labels, QFT_ERR_PARSE, other, "shorter than", "empty file");

    // A gzip stream cut in the middle (a partial download): every cut fails with a message.
    char big[512];
    join(big, sizeof big, "big.gz");
    write_images(big, QFT_IDX_MAGIC_IMAGES, 50, 28, 28, 50 * 784, 1);
    FILE *f = fopen(big, "rb");
    uint8_t gz[65536];
    size_t gz_len = fread(gz, 1, sizeof gz, f);
    fclose(f);
    char big_labels[512];
    uint8_t fifty[50] = {0};
    join(big_labels, sizeof big_labels, "big-labels");
    write_labels(big_labels, QFT_IDX_MAGIC_LABELS, 50, fifty, 50, 0);
    int cut_ok = 0, cut_total = 0;
    for (size_t n = 0; n + 1 < gz_len; n += gz_len / 37 + 1) {
        write_file(other, gz, n, 0);
        qft_idx_dataset ds;
        qft_error err = {{0}};
        cut_total++;
        if (qft_idx_load(&ds, other, big_labels, &err) != QFT_OK && strstr(err.message, other) &&
            !strchr(err.message, '\n'))
            cut_ok++;
        qft_idx_free(&ds);
    }
    CHECK(cut_ok == cut_total, "%d of %d cut gzip files passed or gave a bad message", cut_total - cut_ok,
          cut_total);
    // The intact file loads.
    qft_idx_dataset ds;
    qft_error err = {{0}};
    CHECK(qft_idx_load(&ds, big, big_labels, &err) == QFT_OK && ds.count == 50, "big: %s", err.message);
    qft_idx_free(&ds);
    // A corrupt gzip body (flipped bytes in the deflate stream) is an error, not garbage pixels.
    memcpy(gz + gz_len / 2, "\xff\xff\xff\xff", 4);
    write_file(other, gz, gz_len, 0);
    CHECK(qft_idx_load(&ds, other, big_labels, &err) != QFT_OK && strstr(err.message, other),
          "corrupt gzip accepted: %s", err.message);
    qft_idx_free(&ds);

    // Count mismatch.
    write_labels(other, QFT_IDX_MAGIC_LABELS, 4, lab, 3, 0);
    expect_fail(images, other, QFT_ERR_INVALID, other, "4 labels, but", "count mismatch");
    // Trailing data after the declared payload.
    write_images(other, QFT_IDX_MAGIC_IMAGES, 3, 2, 4, 25, 0);
    expect_fail(other, labels, QFT_ERR_PARSE, other, "unexpected data after the 24 bytes of pixels", "trailing");
    // Absurd dimensions: zero, over the side limit, count past INT32_MAX, and a huge claim on a tiny file
    // (must fail as truncated without allocating the claimed size).
    write_images(other, QFT_IDX_MAGIC_IMAGES, 3, 0, 4, 0, 0);
    expect_fail(other, labels, QFT_ERR_PARSE, other, "image size 0x4 out of range", "zero rows");
    write_images(other, QFT_IDX_MAGIC_IMAGES, 0, 28, 28, 0, 0);
    expect_fail(other, labels, QFT_ERR_PARSE, other, "image count 0 out of range", "zero count");
    write_images(other, QFT_IDX_MAGIC_IMAGES, 3, 70000, 4, 24, 0);
    expect_fail(other, labels, QFT_ERR_PARSE, other, "image size 70000x4 out of range", "huge rows");
    write_images(other, QFT_IDX_MAGIC_IMAGES, 0x80000000u, 28, 28, 24, 0);
    expect_fail(other, labels, QFT_ERR_PARSE, other, "image count 2147483648 out of range", "huge count");
    write_images(other, QFT_IDX_MAGIC_IMAGES, 0x7fffffffu, 65535, 65535, 24, 0);
    char huge_labels[512];
    join(huge_labels, sizeof huge_labels, "huge-labels");
    write_labels(huge_labels, QFT_IDX_MAGIC_LABELS, 0x7fffffffu, lab, 3, 0);
    expect_fail(other, huge_labels, QFT_ERR_PARSE, other, "got 24", "huge claim, tiny file");

    expect_fail(NULL, labels, QFT_ERR_INVALID, "idx", "required", "NULL path");
}

static void test_fashion_mnist(void) {
    const char *dir = qft_idx_default_dir();
    CHECK(strcmp(dir, "/usr/share/datasets/fashion-mnist") == 0, "default dir %s", dir);
    char images[512], labels[512];
    snprintf(images, sizeof images, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(labels, sizeof labels, "%s/train-labels-idx1-ubyte.gz", dir);
    if (access(images, R_OK) != 0 || access(labels, R_OK) != 0) {
        printf("SKIP Fashion-MNIST: %s not installed (apt-get install dataset-fashion-mnist)\n", images);
        return;
    }
    qft_idx_dataset ds;
    qft_error err = {{0}};
    qft_status s = qft_idx_load(&ds, images, labels, &err);
    CHECK(s == QFT_OK, "train: %s", err.message);
    if (s == QFT_OK) {
        CHECK(ds.count == 60000 && ds.rows == 28 && ds.cols == 28, "train dims %d %d %d", ds.count, ds.rows, ds.cols);
        CHECK(ds.labels[0] == 9, "first train label %d, expected 9 (ankle boot)", ds.labels[0]);
        int per_class[256] = {0}, max_pixel = 0;
        for (int i = 0; i < ds.count; i++) per_class[ds.labels[i]]++;
        for (size_t i = 0; i < (size_t)ds.count * 784; i++)
            if (ds.pixels[i] > max_pixel) max_pixel = ds.pixels[i];
        int balanced = 1;
        for (int c = 0; c < 10; c++) balanced &= per_class[c] == 6000;
        CHECK(balanced, "train classes not 6000 each");
        CHECK(max_pixel == 255, "max pixel %d", max_pixel);
        qft_idx_free(&ds);
    }
    snprintf(images, sizeof images, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(labels, sizeof labels, "%s/t10k-labels-idx1-ubyte.gz", dir);
    s = qft_idx_load(&ds, images, labels, &err);
    CHECK(s == QFT_OK, "test: %s", err.message);
    if (s == QFT_OK) {
        CHECK(ds.count == 10000 && ds.rows == 28 && ds.cols == 28, "test dims %d %d %d", ds.count, ds.rows, ds.cols);
        int per_class[256] = {0};
        for (int i = 0; i < ds.count; i++) per_class[ds.labels[i]]++;
        int balanced = 1;
        for (int c = 0; c < 10; c++) balanced &= per_class[c] == 1000;
        CHECK(balanced, "test classes not 1000 each");
        qft_idx_free(&ds);
    }
    // Train images with test labels: the count mismatch names both files.
    snprintf(images, sizeof images, "%s/train-images-idx3-ubyte.gz", dir);
    expect_fail(images, labels, QFT_ERR_INVALID, labels, "10000 labels, but", "train images + test labels");
}

// Batches of data.dataset fashion_mnist are (x / 255 - mean) / std in float32, as torchvision's
// ToTensor + Normalize compute them, for a scalar and a one-item list; more values than channels fail.
static void test_normalize(void) {
    char images[512], labels[512];
    join(images, sizeof images, "t10k-images-idx3-ubyte.gz");
    join(labels, sizeof labels, "t10k-labels-idx1-ubyte.gz");
    const uint8_t label_bytes[2] = {1, 2};
    write_images(images, QFT_IDX_MAGIC_IMAGES, 2, 28, 28, 2 * 784, 1);
    write_labels(labels, QFT_IDX_MAGIC_LABELS, 2, label_bytes, 2, 1);
    const qft_real_list means[2] = {{1, {0.2860}}, {1, {0.25}}}, stds[2] = {{1, {0.3530}}, {1, {0.5}}};
    for (int k = 0; k < 2; k++) {
        qft_config cfg;
        qft_config_defaults(&cfg);
        snprintf(cfg.data.path, sizeof cfg.data.path, "%s", temp_dir);
        cfg.data.normalize_mean = means[k];
        cfg.data.normalize_std = stds[k];
        qft_dataset ds;
        qft_batch_buffer buf;
        qft_error err = {{0}};
        CHECK(qft_dataset_open(&ds, &cfg, 1, &err) == QFT_OK, "open: %s", err.message);
        CHECK(qft_batch_buffer_init(&buf, &ds, 2, &err) == QFT_OK, "buffer: %s", err.message);
        const int indices[2] = {1, 0};
        qft_dataset_fill(&ds, indices, 2, &buf);
        float mean = (float)means[k].values[0], std = (float)stds[k].values[0];
        int bad = 0;
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 784; j++) {
                uint8_t x = (uint8_t)((indices[i] * 784 + j) * 7 + 3);
                bad += buf.batch.images[i * 784 + j] != ((float)x / 255.0f - mean) / std;
            }
        CHECK(bad == 0, "mean %g std %g: %d pixels differ from (x / 255 - mean) / std", mean, std, bad);
        CHECK(buf.batch.labels[0] == 2 && buf.batch.labels[1] == 1, "labels follow the indices");
        qft_batch_buffer_free(&buf);
        qft_dataset_free(&ds);
    }
    qft_config cfg;
    qft_config_defaults(&cfg);
    snprintf(cfg.data.path, sizeof cfg.data.path, "%s", temp_dir);
    cfg.data.normalize_mean = (qft_real_list){3, {0.485, 0.456, 0.406}};
    qft_dataset ds;
    qft_error err = {{0}};
    CHECK(qft_dataset_open(&ds, &cfg, 1, &err) == QFT_ERR_INVALID &&
              strstr(err.message, "data.normalize_mean: 3 values for 1-channel images"),
          "3 means for grayscale: %s", err.message);
}

int main(void) {
    qft_test_make_temp_dir(temp_dir, sizeof temp_dir, "qft_idx");
    test_tiny();
    test_bad_inputs();
    test_fashion_mnist();
    test_normalize();
    qft_test_remove_temp_dir(temp_dir);
    QFT_TEST_SUMMARY();
}
