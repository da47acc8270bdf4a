// On-disk cache of tokenized text examples (GLUE): the fixed-length rows a dataset trains on, keyed
// by a hash of everything that determines them, so a large split is tokenized once, not every start.
//
// A cache file is trusted only when its magic, format version, key, sizes, every row length and a
// checksum over all of it check out; anything else is reported as invalid and rebuilt by the caller.
#ifndef QFT_DATA_TOKEN_CACHE_H
#define QFT_DATA_TOKEN_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

// Bump when the tokenizer's output or this file's layout changes: old files then miss.
#define QFT_TOKEN_CACHE_VERSION 1u

// The dataset arrays the cache holds (malloc'ed; rows padded to seq_len).
typedef struct {
    size_t count;
    int seq_len;
    int32_t pad_id;        // what the ids hold past each row's tokens ([PAD])
    int32_t *ids, *types;  // [count, seq_len]
    float *mask;           // [count, seq_len]: 1 on the tokens, 0 on the padding (a prefix of each row)
    int32_t *labels;       // [count]
    float *targets;        // [count] regression targets, or NULL
} qft_token_rows;

void qft_token_rows_free(qft_token_rows *rows);

// 64-bit FNV-1a, fed incrementally: the key over the inputs, and the file checksum.
typedef struct {
    uint64_t state;
} qft_hash64;

void qft_hash64_init(qft_hash64 *hash);
void qft_hash64_update(qft_hash64 *hash, const void *data, size_t size);
// Feeds a file's bytes; errors name the file.
qft_status qft_hash64_update_file(qft_hash64 *hash, const char *path, qft_error *err);

// $XDG_CACHE_HOME/qft/<sub> or $HOME/.cache/qft/<sub>; 0 when neither variable is set or it does not fit.
int qft_token_cache_dir(const char *sub, char *dir, size_t size);

typedef enum { QFT_TOKEN_CACHE_MISSING, QFT_TOKEN_CACHE_LOADED, QFT_TOKEN_CACHE_INVALID } qft_token_cache_result;

// Reads path into rows (allocated here; the caller owns them on LOADED). INVALID: the file exists but
// fails a check (why gets the reason, e.g. "checksum mismatch"); rows is then left zeroed.
qft_token_cache_result qft_token_cache_load(const char *path, uint64_t key, int seq_len, qft_token_rows *rows,
                                            char *why, size_t why_size);

// Writes rows under key: the directory is created, the file written to a temporary name and renamed,
// so a reader never sees a partial file under path.
qft_status qft_token_cache_save(const char *path, uint64_t key, const qft_token_rows *rows, qft_error *err);

#endif
