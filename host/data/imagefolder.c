// ImageNet-format folder scanning (torchvision ImageFolder's class and file order) and decoding to
// RGB: JPEG (by its FF D8 FF magic, whatever the extension) with libjpeg-turbo set up as Pillow
// (jpeg_decode.c), everything else with stb_image. Files that are not decodable images are skipped
// and counted, never fatal.
#include "imagefolder.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jpeg_decode.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

// Symlinked folders are followed (as os.walk(followlinks=True)); a loop stops at this depth.
#define IMAGEFOLDER_MAX_DEPTH 32

typedef struct {
    char **items;
    int count, capacity;
} string_list;

static int string_list_push(string_list *list, char *s) {
    if (!s) return 0;
    if (list->count == list->capacity) {
        int capacity = list->capacity ? list->capacity * 2 : 64;
        char **items = realloc(list->items, sizeof(char *) * (size_t)capacity);
        if (!items) {
            free(s);
            return 0;
        }
        list->items = items;
        list->capacity = capacity;
    }
    list->items[list->count++] = s;
    return 1;
}

static void string_list_free(string_list *list) {
    for (int i = 0; i < list->count; i++) free(list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

static char *join_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", dir, name);
    return s;
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// A file found under a class folder: the folder it is in and its name, compared as ImageFolder's
// sorted(os.walk(...)) then sorted(fnames) orders them: by folder path, then by name.
typedef struct {
    char *dir, *name;
} found_file;

typedef struct {
    found_file *items;
    int count, capacity;
} found_list;

static int compare_found(const void *a, const void *b) {
    const found_file *x = a, *y = b;
    int c = strcmp(x->dir, y->dir);
    return c ? c : strcmp(x->name, y->name);
}

static void found_list_free(found_list *list) {
    for (int i = 0; i < list->count; i++) {
        free(list->items[i].dir);
        free(list->items[i].name);
    }
    free(list->items);
    memset(list, 0, sizeof *list);
}

// Collects every regular file below dir (hidden entries ignored). Returns 0 on allocation failure.
static int collect_files(const char *dir, int depth, found_list *out) {
    DIR *handle = opendir(dir);
    if (!handle) return 1;  // an unreadable subfolder holds no images we can use
    int ok = 1;
    for (struct dirent *e; ok && (e = readdir(handle));) {
        if (e->d_name[0] == '.') continue;
        char *path = join_path(dir, e->d_name);
        struct stat st;
        if (!path) {
            ok = 0;
        } else if (stat(path, &st) != 0) {
            // dangling link: nothing to read
        } else if (S_ISDIR(st.st_mode)) {
            if (depth < IMAGEFOLDER_MAX_DEPTH) ok = collect_files(path, depth + 1, out);
        } else if (S_ISREG(st.st_mode)) {
            if (out->count == out->capacity) {
                int capacity = out->capacity ? out->capacity * 2 : 64;
                found_file *items = realloc(out->items, sizeof(found_file) * (size_t)capacity);
                if (!items) ok = 0;
                else {
                    out->items = items;
                    out->capacity = capacity;
                }
            }
            if (ok) {
                found_file f = {strdup(dir), strdup(e->d_name)};
                out->items[out->count++] = f;
                if (!f.dir || !f.name) ok = 0;
            }
        }
        free(path);
    }
    closedir(handle);
    return ok;
}

// Reads the first bytes of f (up to 3) and rewinds it: 1 when they are the JPEG magic.
static int file_is_jpeg(FILE *f) {
    uint8_t magic[3];
    size_t got = fread(magic, 1, sizeof magic, f);
    rewind(f);
    return qft_jpeg_is_jpeg(magic, got);
}

static int file_is_image(const char *path, qft_imagefolder_check check) {
    if (check == QFT_IMAGEFOLDER_CHECK_DECODE) {
        qft_image_rgb8 image;
        if (qft_image_load(path, &image, NULL) != QFT_OK) return 0;
        qft_image_free(&image);
        return 1;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int w = 0, h = 0, channels = 0, ok;
    if (file_is_jpeg(f)) ok = qft_jpeg_read_size_file(f, path, &w, &h, NULL) == QFT_OK;
    else ok = stbi_info_from_file(f, &w, &h, &channels);
    fclose(f);
    return ok && w > 0 && h > 0;
}

void qft_imagefolder_free(qft_imagefolder *folder) {
    if (!folder) return;
    free(folder->root);
    for (int i = 0; i < folder->num_classes; i++) free(folder->class_names[i]);
    free(folder->class_names);
    for (int i = 0; i < folder->count; i++) free(folder->paths[i]);
    free(folder->paths);
    free(folder->labels);
    memset(folder, 0, sizeof *folder);
}

qft_status qft_imagefolder_open(qft_imagefolder *folder, const char *root, qft_imagefolder_check check,
                                qft_error *err) {
    memset(folder, 0, sizeof *folder);
    DIR *handle = opendir(root);
    if (!handle) return qft_fail(err, QFT_ERR_IO, "%s: cannot open image folder", root);
    string_list classes = {0}, paths = {0};
    int32_t *labels = NULL;
    int label_capacity = 0, skipped = 0;
    qft_status status = QFT_OK;
    for (struct dirent *e; (e = readdir(handle));) {
        if (e->d_name[0] == '.') continue;
        char *path = join_path(root, e->d_name);
        struct stat st;
        int is_dir = path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
        free(path);
        if (is_dir && !string_list_push(&classes, strdup(e->d_name))) {
            status = qft_fail(err, QFT_ERR_OOM, "%s: out of memory listing classes", root);
            break;
        }
    }
    closedir(handle);
    if (status == QFT_OK && classes.count == 0)
        status = qft_fail(err, QFT_ERR_INVALID, "%s: no class folders (expected <root>/<class>/<image files>)", root);
    if (status == QFT_OK) qsort(classes.items, (size_t)classes.count, sizeof(char *), compare_strings);
    for (int c = 0; status == QFT_OK && c < classes.count; c++) {
        char *class_dir = join_path(root, classes.items[c]);
        found_list files = {0};
        if (!class_dir || !collect_files(class_dir, 0, &files)) {
            status = qft_fail(err, QFT_ERR_OOM, "%s/%s: out of memory listing files", root, classes.items[c]);
        } else {
            if (files.count > 1) qsort(files.items, (size_t)files.count, sizeof(found_file), compare_found);
            int usable = 0, class_skipped = 0;
            for (int i = 0; status == QFT_OK && i < files.count; i++) {
                char *file = join_path(files.items[i].dir, files.items[i].name);
                if (!file) {
                    status = qft_fail(err, QFT_ERR_OOM, "%s: out of memory", class_dir);
                } else if (!file_is_image(file, check)) {
                    class_skipped++;
                    free(file);
                } else {
                    if (paths.count == label_capacity) {
                        label_capacity = label_capacity ? label_capacity * 2 : 256;
                        int32_t *grown = realloc(labels, sizeof(int32_t) * (size_t)label_capacity);
                        if (!grown) {
                            free(file);
                            status = qft_fail(err, QFT_ERR_OOM, "%s: out of memory", class_dir);
                            break;
                        }
                        labels = grown;
                    }
                    labels[paths.count] = c;
                    if (!string_list_push(&paths, file)) {
                        status = qft_fail(err, QFT_ERR_OOM, "%s: out of memory", class_dir);
                        break;
                    }
                    usable++;
                }
            }
            skipped += class_skipped;
            if (status == QFT_OK && usable == 0)
                status = qft_fail(err, QFT_ERR_INVALID, "%s: class folder has no usable image (%d files, %d skipped)",
                                  class_dir, files.count, class_skipped);
        }
        found_list_free(&files);
        free(class_dir);
    }
    if (status == QFT_OK) {
        folder->root = strdup(root);
        if (!folder->root) status = qft_fail(err, QFT_ERR_OOM, "%s: out of memory", root);
    }
    if (status != QFT_OK) {
        free(folder->root);
        folder->root = NULL;
        string_list_free(&classes);
        string_list_free(&paths);
        free(labels);
        return status;
    }
    folder->num_classes = classes.count;
    folder->class_names = classes.items;
    folder->count = paths.count;
    folder->paths = paths.items;
    folder->labels = labels;
    folder->skipped = skipped;
    return QFT_OK;
}

// Images each class keeps: 1 + its share of the rest, proportional to its size beyond the first
// image, the leftover (fewer than the classes) to the largest remainders. first[c] is class c's
// first image; the shares sum to limit exactly and never exceed a class's size.
static void subset_quotas(const int *first, int classes, long limit, int count, int *keep, int64_t *remainder) {
    int64_t spare = limit - classes, pool = count - classes;
    long assigned = 0;
    for (int c = 0; c < classes; c++) {
        int64_t share = spare * (first[c + 1] - first[c] - 1);
        keep[c] = 1 + (int)(share / pool);
        remainder[c] = share % pool;
        assigned += keep[c];
    }
    for (long left = limit - assigned; left > 0; left--) {
        int best = 0;
        for (int c = 1; c < classes; c++)
            if (remainder[c] > remainder[best]) best = c;
        keep[best]++;
        remainder[best] = -1;
    }
}

qft_status qft_imagefolder_pick(const qft_imagefolder *folder, long n, char *chosen, qft_error *err) {
    int classes = folder->num_classes;
    if (n > folder->count)
        return qft_fail(err, QFT_ERR_INVALID, "%s: a subset of %ld images of %d", folder->root, n, folder->count);
    if (n < classes)
        return qft_fail(err, QFT_ERR_INVALID, "%s: a subset of %ld images cannot hold all %d classes", folder->root,
                        n, classes);
    int *first = calloc((size_t)classes + 1, sizeof(int)), *keep = calloc((size_t)classes, sizeof(int));
    int64_t *remainder = calloc((size_t)classes, sizeof(int64_t));
    if (!first || !keep || !remainder) {
        free(first), free(keep), free(remainder);
        return qft_fail(err, QFT_ERR_OOM, "%s: out of memory choosing a subset", folder->root);
    }
    memset(chosen, 0, (size_t)folder->count);
    if (n == folder->count) {
        memset(chosen, 1, (size_t)folder->count);
    } else {
        // Images are grouped by class in class order: class c is [first[c], first[c + 1]).
        for (int i = 0; i < folder->count; i++) first[folder->labels[i] + 1]++;
        for (int c = 0; c < classes; c++) first[c + 1] += first[c];
        subset_quotas(first, classes, n, folder->count, keep, remainder);
        for (int c = 0; c < classes; c++) {
            int64_t size = first[c + 1] - first[c];
            for (int i = 0; i < keep[c]; i++) chosen[first[c] + (int)((int64_t)i * size / keep[c])] = 1;
        }
    }
    free(first), free(keep), free(remainder);
    return QFT_OK;
}

void qft_imagefolder_keep(qft_imagefolder *folder, const char *chosen, int value) {
    int kept = 0;
    for (int i = 0; i < folder->count; i++) {
        if ((chosen[i] != 0) != (value != 0)) {
            free(folder->paths[i]);
            continue;
        }
        folder->paths[kept] = folder->paths[i];
        folder->labels[kept++] = folder->labels[i];
    }
    folder->count = kept;
}

qft_status qft_imagefolder_subset(qft_imagefolder *folder, long limit, qft_error *err) {
    if (limit <= 0 || limit >= folder->count) return QFT_OK;
    char *chosen = malloc((size_t)folder->count);
    if (!chosen) return qft_fail(err, QFT_ERR_OOM, "%s: out of memory choosing a subset", folder->root);
    qft_status st = qft_imagefolder_pick(folder, limit, chosen, err);
    if (st == QFT_OK) qft_imagefolder_keep(folder, chosen, 1);
    free(chosen);
    return st;
}

// stb hands back malloc'd RGB (its default allocator), which qft_image_free releases.
static qft_status take_stb_pixels(unsigned char *pixels, int width, int height, const char *name,
                                  qft_image_rgb8 *image, qft_error *err) {
    if (!pixels) return qft_fail(err, QFT_ERR_PARSE, "%s: not a decodable image (corrupt or unsupported format)", name);
    if (width <= 0 || height <= 0) {
        stbi_image_free(pixels);
        return qft_fail(err, QFT_ERR_PARSE, "%s: image has size %dx%d", name, width, height);
    }
    image->width = width;
    image->height = height;
    image->pixels = pixels;
    return QFT_OK;
}

qft_status qft_image_load(const char *path, qft_image_rgb8 *image, qft_error *err) {
    memset(image, 0, sizeof *image);
    FILE *f = fopen(path, "rb");
    if (!f) return qft_fail(err, QFT_ERR_IO, "%s: cannot open image", path);
    if (file_is_jpeg(f)) {
        qft_status st = qft_jpeg_decode_file(f, path, image, err);
        fclose(f);
        return st;
    }
    int width = 0, height = 0, channels = 0;
    unsigned char *pixels = stbi_load_from_file(f, &width, &height, &channels, 3);
    fclose(f);
    return take_stb_pixels(pixels, width, height, path, image, err);
}

qft_status qft_image_decode(const uint8_t *bytes, size_t size, const char *name, qft_image_rgb8 *image,
                            qft_error *err) {
    memset(image, 0, sizeof *image);
    if (size == 0 || size > INT_MAX) return qft_fail(err, QFT_ERR_PARSE, "%s: image of %zu bytes", name, size);
    if (qft_jpeg_is_jpeg(bytes, size)) return qft_jpeg_decode(bytes, size, name, image, err);
    int width = 0, height = 0, channels = 0;
    unsigned char *pixels = stbi_load_from_memory(bytes, (int)size, &width, &height, &channels, 3);
    return take_stb_pixels(pixels, width, height, name, image, err);
}

qft_status qft_imagefolder_load(const qft_imagefolder *folder, int index, qft_image_rgb8 *image, qft_error *err) {
    memset(image, 0, sizeof *image);
    if (index < 0 || index >= folder->count)
        return qft_fail(err, QFT_ERR_INVALID, "%s: sample %d out of range (0..%d)", folder->root, index, folder->count - 1);
    return qft_image_load(folder->paths[index], image, err);
}
