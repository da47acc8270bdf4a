// The GLUE token cache (host/data/token_cache.c through qft_dataset_open): a second open reads the
// rows back bit for bit, corrupt or truncated files are rejected and rebuilt, and every key input
// (casing, length, limit, TSV and vocab contents) selects a different entry.
#include <string.h>
#include <sys/stat.h>

#include "data/dataset.h"
#include "data/token_cache.h"
#include "test_util.h"

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0) {
        perror(path);
        exit(2);
    }
    fclose(f);
}

// A vocab where the sentences tokenize into words, word pieces and [UNK]; [PAD] is not id 0, so the
// padding the cache restores is checked too.
static const char *vocab_text = "[unused0]\n[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ncat\nsat\non\nmat\na\ndog\n"
                                "ran\n##s\n##ing\nfast\n.\n,\nit\nis\nnot\n";
static const char *dev_text = "index\tsentence1\tsentence2\tlabel\n"
                              "0\tThe cat sat on the mat.\tA cat sat.\tentailment\n"
                              "1\tA dog ran fast, the cat sat.\tIt is not a dog.\tnot_entailment\n"
                              "2\tDogs running\tThe cats sat on a mat, fast.\tentailment\n"
                              "3\tZebra quagga.\tThe the the the the the the the the the the the.\tnot_entailment\n";

typedef struct {
    int count, seq_len, hit, rejected;
    int32_t *ids, *types, *labels;
    float *mask;
} rows_copy;

// Opens the RTE dev split and keeps a copy of its rows and of how they were obtained.
static int open_dev(const qft_config *cfg, rows_copy *out) {
    qft_dataset ds;
    qft_error err;
    if (qft_dataset_open(&ds, cfg, QFT_SPLIT_EVAL, &err) != QFT_OK) {
        CHECK(0, "open: %s", err.message);
        return 0;
    }
    size_t n = (size_t)ds.count * ds.seq_len;
    out->count = ds.count;
    out->seq_len = ds.seq_len;
    out->hit = ds.token_cache_hit;
    out->rejected = ds.token_cache_rejected;
    out->ids = malloc(n * sizeof(int32_t));
    out->types = malloc(n * sizeof(int32_t));
    out->mask = malloc(n * sizeof(float));
    out->labels = malloc((size_t)ds.count * sizeof(int32_t));
    memcpy(out->ids, ds.ids, n * sizeof(int32_t));
    memcpy(out->types, ds.types, n * sizeof(int32_t));
    memcpy(out->mask, ds.mask, n * sizeof(float));
    memcpy(out->labels, ds.labels, (size_t)ds.count * sizeof(int32_t));
    qft_dataset_free(&ds);
    return 1;
}

static void rows_free(rows_copy *r) {
    free(r->ids);
    free(r->types);
    free(r->mask);
    free(r->labels);
}

static int rows_equal(const rows_copy *a, const rows_copy *b) {
    size_t n = (size_t)a->count * a->seq_len;
    return a->count == b->count && a->seq_len == b->seq_len && !memcmp(a->ids, b->ids, n * sizeof(int32_t)) &&
           !memcmp(a->types, b->types, n * sizeof(int32_t)) && !memcmp(a->mask, b->mask, n * sizeof(float)) &&
           !memcmp(a->labels, b->labels, (size_t)a->count * sizeof(int32_t));
}

// Number of cache files, and the path of the one most recently listed.
static int cache_files(const char *dir, char *last, size_t size) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(last, size, "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

// Expects the next open to reject the cache file, rebuild, and give the reference rows.
static void expect_rebuilt(const qft_config *cfg, const rows_copy *reference, const char *what) {
    rows_copy r;
    if (!open_dev(cfg, &r)) return;
    CHECK(!r.hit && r.rejected, "%s: hit %d rejected %d, expected a rejected file and a rebuild", what, r.hit,
          r.rejected);
    CHECK(rows_equal(&r, reference), "%s: rebuilt rows differ", what);
    rows_free(&r);
}

int main(void) {
    char root[256], path[1200], cache_dir[1200], cache_file[1300];
    qft_test_make_temp_dir(root, sizeof root, "qft_token_cache");
    snprintf(path, sizeof path, "%s/RTE", root);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/RTE/dev.tsv", root);
    write_file(path, dev_text);
    char vocab[1200];
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", root);
    write_file(vocab, vocab_text);
    snprintf(path, sizeof path, "%s/xdg", root);
    setenv("XDG_CACHE_HOME", path, 1);
    snprintf(cache_dir, sizeof cache_dir, "%s/xdg/qft/glue", root);

    qft_config cfg;
    qft_config_defaults(&cfg);
    snprintf(cfg.model.type, sizeof cfg.model.type, "bert");
    snprintf(cfg.data.dataset, sizeof cfg.data.dataset, "glue");
    snprintf(cfg.data.task, sizeof cfg.data.task, "rte");
    snprintf(cfg.data.path, sizeof cfg.data.path, "%s", root);
    snprintf(cfg.data.vocab, sizeof cfg.data.vocab, "%s", vocab);
    cfg.model.num_labels = 2;
    cfg.data.max_seq_len = 16;

    rows_copy first, second;
    if (!open_dev(&cfg, &first)) return 1;
    CHECK(!first.hit && !first.rejected && first.count == 4, "first open: hit %d rejected %d count %d", first.hit,
          first.rejected, first.count);
    CHECK(cache_files(cache_dir, cache_file, sizeof cache_file) == 1, "first open should write one cache file");
    int unk = 0, truncated = 0;
    for (int r = 0; r < first.count; r++) {
        truncated += first.mask[(size_t)r * first.seq_len + first.seq_len - 1] != 0.0f;
        for (int t = 0; t < first.seq_len; t++) unk += first.ids[(size_t)r * first.seq_len + t] == 2;
    }
    CHECK(unk > 0 && truncated > 0 && first.labels[1] == 1 && first.ids[first.seq_len - 1] == 1,
          "the fixture should exercise [UNK], truncation, padding with [PAD] = 1 and labels");
    if (open_dev(&cfg, &second)) {
        CHECK(second.hit && !second.rejected, "second open should read the cache (hit %d)", second.hit);
        CHECK(rows_equal(&first, &second), "cached rows differ from the tokenized ones");
        rows_free(&second);
    }

    // A flipped bit in the token ids, then a truncated file: rejected, rebuilt, rewritten.
    FILE *f = fopen(cache_file, "r+b");
    CHECK(f && fseek(f, 100, SEEK_SET) == 0, "cannot open %s", cache_file);
    if (f) {
        int c = fgetc(f);
        fseek(f, 100, SEEK_SET);
        fputc(c ^ 0x10, f);
        fclose(f);
    }
    expect_rebuilt(&cfg, &first, "flipped bit");
    CHECK(truncate(cache_file, 60) == 0, "truncate %s", cache_file);
    expect_rebuilt(&cfg, &first, "truncated file");
    write_file(cache_file, "");
    expect_rebuilt(&cfg, &first, "empty file");
    if (open_dev(&cfg, &second)) {
        CHECK(second.hit && rows_equal(&first, &second), "the rebuilt cache should be used again");
        rows_free(&second);
    }

    // Every key input selects another entry (a miss, not a rejection): casing, length, limit, the
    // TSV's and the vocab's contents. Each miss writes one more file.
    cfg.data.do_lower_case = 0;
    rows_copy cased;
    if (open_dev(&cfg, &cased)) {
        CHECK(!cased.hit && !cased.rejected && !rows_equal(&cased, &first), "do_lower_case=false: should miss");
        rows_free(&cased);
    }
    cfg.data.do_lower_case = 1;
    cfg.data.max_seq_len = 12;
    rows_copy shorter;
    if (open_dev(&cfg, &shorter)) {
        CHECK(!shorter.hit && !shorter.rejected && shorter.seq_len == 12, "max_seq_len=12: should miss");
        rows_free(&shorter);
    }
    cfg.data.max_seq_len = 16;
    cfg.data.eval_limit = 2;
    rows_copy limited;
    if (open_dev(&cfg, &limited)) {
        CHECK(!limited.hit && limited.count == 2, "eval_limit=2: hit %d count %d", limited.hit, limited.count);
        rows_free(&limited);
    }
    cfg.data.eval_limit = 0;
    snprintf(path, sizeof path, "%s/RTE/dev.tsv", root);
    write_file(path, "index\tsentence1\tsentence2\tlabel\n0\tThe dog.\tA cat.\tnot_entailment\n");
    rows_copy edited;
    if (open_dev(&cfg, &edited)) {
        CHECK(!edited.hit && edited.count == 1, "edited dev.tsv: hit %d count %d", edited.hit, edited.count);
        rows_free(&edited);
    }
    write_file(vocab, "[PAD]\n[unused0]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ndog\nthe\n.\n");
    if (open_dev(&cfg, &edited)) {
        CHECK(!edited.hit && edited.count == 1, "edited vocab: hit %d", edited.hit);
        rows_free(&edited);
    }
    CHECK(cache_files(cache_dir, cache_file, sizeof cache_file) == 6, "expected 6 cache entries");
    rows_free(&first);

    char command[1400];
    snprintf(command, sizeof command, "rm -rf '%s'", root);
    CHECK(system(command) == 0, "cleanup %s", root);
    QFT_TEST_SUMMARY();
}
