// Tokenized-example cache files: FNV-1a hashing of the inputs, the cache directory, and reading
// (fully validated) and atomically writing the compact row format.
#include "token_cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// File layout (host byte order; the endian marker rejects a file from another byte order):
//   header: magic "QFTTOKC\0", u32 version, u32 seq_len, u64 key, u64 count, u64 tokens,
//           u32 has_targets, u32 endian marker, i32 pad_id, u32 zero
//   u16 lengths[count], i32 ids[tokens], u8 types[tokens], i32 labels[count],
//   f32 targets[count] (has_targets only), u64 FNV-1a of everything before it.
// Only the tokens are stored (padding and mask follow from the lengths): QQP's train split is ~5x
// smaller than its padded rows.
static const char cache_magic[8] = {'Q', 'F', 'T', 'T', 'O', 'K', 'C', '\0'};
#define ENDIAN_MARKER 0x01020304u

typedef struct {
    char magic[8];
    uint32_t version, seq_len;
    uint64_t key, count, tokens;
    uint32_t has_targets, endian;
    int32_t pad_id;
    uint32_t reserved;
} cache_header;

void qft_token_rows_free(qft_token_rows *rows) {
    free(rows->ids);
    free(rows->types);
    free(rows->mask);
    free(rows->labels);
    free(rows->targets);
    memset(rows, 0, sizeof *rows);
}

void qft_hash64_init(qft_hash64 *hash) { hash->state = 14695981039346656037ull; }

void qft_hash64_update(qft_hash64 *hash, const void *data, size_t size) {
    const unsigned char *p = data;
    uint64_t h = hash->state;
    for (size_t i = 0; i < size; i++) h = (h ^ p[i]) * 1099511628211ull;
    hash->state = h;
}

qft_status qft_hash64_update_file(qft_hash64 *hash, const char *path, qft_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return qft_fail(err, QFT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) qft_hash64_update(hash, buf, got);
    int failed = ferror(f);
    fclose(f);
    if (failed) return qft_fail(err, QFT_ERR_IO, "%s: read error", path);
    return QFT_OK;
}

int qft_token_cache_dir(const char *sub, char *dir, size_t size) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int written;
    // The XDG spec: a relative XDG_CACHE_HOME is invalid and must be ignored.
    if (xdg && xdg[0] == '/') written = snprintf(dir, size, "%s/qft/%s", xdg, sub);
    else if (home && home[0]) written = snprintf(dir, size, "%s/.cache/qft/%s", home, sub);
    else return 0;
    return written > 0 && (size_t)written < size;
}

static void set_why(char *why, size_t size, const char *text) {
    if (why && size) snprintf(why, size, "%s", text);
}

qft_token_cache_result qft_token_cache_load(const char *path, uint64_t key, int seq_len, qft_token_rows *rows,
                                            char *why, size_t why_size) {
    memset(rows, 0, sizeof *rows);
    FILE *f = fopen(path, "rb");
    if (!f) return QFT_TOKEN_CACHE_MISSING;
    struct stat info;
    unsigned char *data = NULL;
    size_t size = 0;
    if (fstat(fileno(f), &info) == 0 && info.st_size >= 0) {
        size = (size_t)info.st_size;
        data = malloc(size ? size : 1);
        if (data && fread(data, 1, size, f) != size) {
            free(data);
            data = NULL;
        }
    }
    fclose(f);
    if (!data) {
        set_why(why, why_size, "unreadable");
        return QFT_TOKEN_CACHE_INVALID;
    }
    const char *problem = NULL;
    cache_header h;
    size_t tokens = 0, count = 0, expected = 0;
    if (size < sizeof h + sizeof(uint64_t)) {
        problem = "truncated header";
    } else {
        memcpy(&h, data, sizeof h);
        count = (size_t)h.count;
        tokens = (size_t)h.tokens;
        if (memcmp(h.magic, cache_magic, sizeof cache_magic) != 0 || h.endian != ENDIAN_MARKER) problem = "not a qft token cache";
        else if (h.version != QFT_TOKEN_CACHE_VERSION) problem = "another format version";
        else if (h.key != key || h.seq_len != (uint32_t)seq_len) problem = "key mismatch";
        else if (h.has_targets > 1 || count == 0) problem = "bad header";
        else {
            // Each count is at most the file size first, so the expected size cannot overflow.
            if (h.count <= size && h.tokens <= size)
                expected = sizeof h + count * (2 + 4 + (h.has_targets ? 4 : 0)) + tokens * 5 + sizeof(uint64_t);
            if (expected != size) problem = "wrong file size (truncated?)";
        }
    }
    if (!problem) {
        uint64_t stored;
        memcpy(&stored, data + size - sizeof stored, sizeof stored);
        qft_hash64 hash;
        qft_hash64_init(&hash);
        qft_hash64_update(&hash, data, size - sizeof stored);
        if (hash.state != stored) problem = "checksum mismatch";
    }
    const unsigned char *p = data + sizeof h;
    if (!problem) {
        size_t sum = 0;
        for (size_t r = 0; r < count && !problem; r++) {
            uint16_t length;
            memcpy(&length, p + 2 * r, sizeof length);
            if (length == 0 || length > (uint32_t)seq_len) problem = "a row length out of range";
            sum += length;
        }
        if (!problem && sum != tokens) problem = "row lengths do not add up";
    }
    if (problem) {
        set_why(why, why_size, problem);
        free(data);
        return QFT_TOKEN_CACHE_INVALID;
    }
    size_t n = count * (size_t)seq_len;
    rows->ids = calloc(n, sizeof(int32_t));
    rows->types = calloc(n, sizeof(int32_t));
    rows->mask = calloc(n, sizeof(float));
    rows->labels = malloc(count * sizeof(int32_t));
    rows->targets = h.has_targets ? malloc(count * sizeof(float)) : NULL;
    if (!rows->ids || !rows->types || !rows->mask || !rows->labels || (h.has_targets && !rows->targets)) {
        qft_token_rows_free(rows);
        free(data);
        set_why(why, why_size, "out of memory");
        return QFT_TOKEN_CACHE_INVALID;
    }
    const unsigned char *ids = p + 2 * count, *types = ids + 4 * tokens, *labels = types + tokens;
    size_t at = 0;
    for (size_t r = 0; r < count; r++) {
        uint16_t length;
        memcpy(&length, p + 2 * r, sizeof length);
        memcpy(rows->ids + r * seq_len, ids + 4 * at, 4 * (size_t)length);
        for (size_t t = 0; t < length; t++) {
            rows->types[r * seq_len + t] = types[at + t];
            rows->mask[r * seq_len + t] = 1.0f;
        }
        for (size_t t = length; t < (size_t)seq_len; t++) rows->ids[r * seq_len + t] = h.pad_id;
        at += length;
    }
    memcpy(rows->labels, labels, 4 * count);
    if (h.has_targets) memcpy(rows->targets, labels + 4 * count, 4 * count);
    rows->count = count;
    rows->seq_len = seq_len;
    rows->pad_id = h.pad_id;
    free(data);
    return QFT_TOKEN_CACHE_LOADED;
}

// fwrite that also feeds the checksum; remembers a failure.
typedef struct {
    FILE *f;
    qft_hash64 hash;
    int failed;
} hashed_writer;

static void put(hashed_writer *w, const void *data, size_t size) {
    if (w->failed || size == 0) return;
    if (fwrite(data, 1, size, w->f) != size) w->failed = 1;
    qft_hash64_update(&w->hash, data, size);
}

static qft_status make_dirs(const char *path, qft_error *err) {
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return qft_fail(err, QFT_ERR_IO, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return qft_fail(err, QFT_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
        if (saved == '\0') return QFT_OK;
        *p = saved;
    }
}

// Row length: the mask is 1 on a prefix of the row.
static uint16_t row_length(const qft_token_rows *rows, size_t r) {
    const float *mask = rows->mask + r * rows->seq_len;
    int length = 0;
    while (length < rows->seq_len && mask[length] != 0.0f) length++;
    return (uint16_t)length;
}

qft_status qft_token_cache_save(const char *path, uint64_t key, const qft_token_rows *rows, qft_error *err) {
    if (rows->seq_len < 1 || rows->seq_len > UINT16_MAX || rows->count == 0)
        return qft_fail(err, QFT_ERR_INVALID, "%s: nothing to cache (%zu rows of %d tokens)", path, rows->count,
                        rows->seq_len);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        qft_status st = make_dirs(dir, err);
        if (st != QFT_OK) return st;
    }
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    hashed_writer w = {fopen(tmp, "wb"), {0}, 0};
    if (!w.f) return qft_fail(err, QFT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    qft_hash64_init(&w.hash);
    size_t count = rows->count, T = (size_t)rows->seq_len, tokens = 0;
    for (size_t r = 0; r < count; r++) tokens += row_length(rows, r);
    cache_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, cache_magic, sizeof h.magic);
    h.version = QFT_TOKEN_CACHE_VERSION;
    h.seq_len = (uint32_t)rows->seq_len;
    h.key = key;
    h.count = count;
    h.tokens = tokens;
    h.has_targets = rows->targets != NULL;
    h.endian = ENDIAN_MARKER;
    h.pad_id = rows->pad_id;
    put(&w, &h, sizeof h);
    for (size_t r = 0; r < count; r++) {
        uint16_t length = row_length(rows, r);
        put(&w, &length, sizeof length);
    }
    for (size_t r = 0; r < count; r++) put(&w, rows->ids + r * T, 4 * (size_t)row_length(rows, r));
    uint8_t *types = malloc(T);
    if (!types) w.failed = 1;
    for (size_t r = 0; r < count && types; r++) {
        uint16_t length = row_length(rows, r);
        for (size_t t = 0; t < length; t++) types[t] = (uint8_t)rows->types[r * T + t];  // BERT: 0 or 1
        put(&w, types, length);
    }
    free(types);
    put(&w, rows->labels, 4 * count);
    if (rows->targets) put(&w, rows->targets, 4 * count);
    uint64_t checksum = w.hash.state;
    put(&w, &checksum, sizeof checksum);
    int close_failed = fclose(w.f) != 0;
    if (w.failed || close_failed) {
        unlink(tmp);
        return qft_fail(err, QFT_ERR_IO, "%s: write failed", tmp);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return qft_fail(err, QFT_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(e));
    }
    return QFT_OK;
}
