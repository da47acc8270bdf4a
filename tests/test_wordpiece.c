// Checks the WordPiece tokenizer against Hugging Face tokenizers' ids for the MiniLM vocabulary
// (tests/golden/wordpiece_cases.bin from tests/oracle/wordpiece_oracle.py), plus padding and errors.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "test_util.h"
#include "text/wordpiece.h"

#define GOLDEN_PATH "tests/golden/wordpiece_cases.bin"

// Undoes the oracle's \xHH escapes in place; returns the byte length.
static size_t unescape(char *s) {
    size_t out = 0;
    for (size_t i = 0; s[i];) {
        if (s[i] == '\\' && s[i + 1] == 'x' && s[i + 2] && s[i + 3]) {
            char hex[3] = {s[i + 2], s[i + 3], 0};
            s[out++] = (char)strtol(hex, NULL, 16);
            i += 4;
        } else {
            s[out++] = s[i++];
        }
    }
    s[out] = '\0';
    return out;
}

static size_t parse_ids(char *s, int32_t *ids, size_t capacity) {
    size_t n = 0;
    for (char *tok = strtok(s, " "); tok && n < capacity; tok = strtok(NULL, " ")) ids[n++] = atoi(tok);
    return n;
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s:", label);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

static void check_golden(const qft_wordpiece *tok) {
    gzFile f = gzopen(GOLDEN_PATH, "rb");
    CHECK(f != NULL, "%s: cannot open (run from the repository root)", GOLDEN_PATH);
    if (!f) return;
    size_t line_size = 1 << 16, cases = 0, mismatches = 0;
    char *line = malloc(line_size);
    int32_t *want = malloc(4096 * sizeof *want), *want_types = malloc(4096 * sizeof *want_types);
    while (gzgets(f, line, (int)line_size)) {
        line[strcspn(line, "\n")] = '\0';
        char *fields[6] = {0};
        int nf = 0;
        for (char *p = line; nf < 6;) {
            fields[nf++] = p;
            char *tab = strchr(p, '\t');
            if (!tab) break;
            *tab = '\0';
            p = tab + 1;
        }
        int pair = fields[0][0] == 'P';
        if (nf < (pair ? 6 : 5)) {
            CHECK(0, "%s: malformed line %zu", GOLDEN_PATH, cases + 1);
            continue;
        }
        cases++;
        size_t max_length = (size_t)atol(fields[1]);
        size_t a_length = unescape(fields[2]);
        size_t b_length = pair ? unescape(fields[3]) : 0;
        size_t n_want = parse_ids(fields[4], want, 4096);
        if (pair) parse_ids(fields[5], want_types, 4096);
        else memset(want_types, 0, n_want * sizeof *want_types);
        qft_wordpiece_encoding enc;
        qft_error err;
        qft_status st = qft_wordpiece_encode(tok, fields[2], a_length, pair ? fields[3] : NULL, b_length,
                                             max_length, 0, &enc, &err);
        int same = st == QFT_OK && enc.length == n_want &&
                   memcmp(enc.input_ids, want, n_want * sizeof *want) == 0 &&
                   memcmp(enc.token_type_ids, want_types, n_want * sizeof *want) == 0;
        for (size_t i = 0; same && i < n_want; i++) same = enc.attention_mask[i] == 1;
        if (!same) {
            mismatches++;
            if (mismatches <= 20) {
                fprintf(stderr, "mismatch (max_length %zu): a=\"%s\"%s%s%s\n", max_length, fields[2],
                        pair ? " b=\"" : "", pair ? fields[3] : "", pair ? "\"" : "");
                print_ids("want", want, n_want);
                if (st == QFT_OK) print_ids("got ", enc.input_ids, enc.length);
                else fprintf(stderr, "  error: %s\n", err.message);
            }
        }
        if (st == QFT_OK) qft_wordpiece_encoding_free(&enc);
    }
    gzclose(f);
    free(line); free(want); free(want_types);
    printf("golden: %zu cases, %zu mismatches\n", cases, mismatches);
    CHECK(cases > 3000, "golden: only %zu cases", cases);
    CHECK(mismatches == 0, "golden: %zu of %zu cases differ from Hugging Face", mismatches, cases);
}

static void check_padding_and_truncation(const qft_wordpiece *tok) {
    qft_wordpiece_encoding enc;
    qft_error err;
    const char *a = "hello world", *b = "the quick brown fox jumps over the lazy dog again and again";
    CHECK(qft_wordpiece_encode(tok, a, strlen(a), b, strlen(b), 32, 1, &enc, &err) == QFT_OK, "pad: %s", err.message);
    CHECK(enc.length == 32, "pad: length %zu", enc.length);
    size_t real = 0;
    for (size_t i = 0; i < enc.length; i++) real += enc.attention_mask[i];
    CHECK(real == 1 + 2 + 1 + 12 + 1, "pad: %zu real tokens", real);
    CHECK(enc.input_ids[0] == qft_wordpiece_token_id(tok, "[CLS]"), "pad: first is [CLS]");
    CHECK(enc.input_ids[31] == qft_wordpiece_token_id(tok, "[PAD]") && enc.token_type_ids[31] == 0 &&
              enc.attention_mask[31] == 0, "pad: last is [PAD]");
    CHECK(enc.token_type_ids[4] == 1 && enc.token_type_ids[3] == 0, "pad: type ids switch after the first [SEP]");
    qft_wordpiece_encoding_free(&enc);

    // longest_first: budget 7 = 10 - 3; lengths 2 and 12 -> 2 and 5.
    CHECK(qft_wordpiece_encode(tok, a, strlen(a), b, strlen(b), 10, 0, &enc, &err) == QFT_OK, "trunc: %s", err.message);
    CHECK(enc.length == 10 && enc.token_type_ids[3] == 0 && enc.token_type_ids[4] == 1 && enc.token_type_ids[9] == 1,
          "trunc: length %zu", enc.length);
    qft_wordpiece_encoding_free(&enc);
    // equal lengths 2 and 2 with budget 3: a keeps 3 / 2 = 1, b the other 2 (as tokenizers).
    CHECK(qft_wordpiece_encode(tok, a, strlen(a), a, strlen(a), 6, 0, &enc, &err) == QFT_OK, "tie: %s", err.message);
    CHECK(enc.length == 6 && enc.token_type_ids[3] == 1 && enc.input_ids[2] == qft_wordpiece_token_id(tok, "[SEP]"),
          "tie: a keeps one token");
    qft_wordpiece_encoding_free(&enc);
    CHECK(qft_wordpiece_encode(tok, a, strlen(a), b, strlen(b), 2, 0, &enc, &err) == QFT_ERR_INVALID,
          "max_length 2 for a pair is an error");
    CHECK(qft_wordpiece_encode(tok, "", 0, NULL, 0, 2, 1, &enc, &err) == QFT_OK && enc.length == 2,
          "empty sentence gives [CLS] [SEP]");
    qft_wordpiece_encoding_free(&enc);

    char word[102];
    memset(word, 'a', 101);
    word[101] = '\0';
    int32_t *ids;
    size_t n;
    CHECK(qft_wordpiece_tokenize(tok, word, 101, &ids, &n, &err) == QFT_OK && n == 1 &&
              ids[0] == qft_wordpiece_token_id(tok, "[UNK]"), "101-char word is [UNK]");
    free(ids);
    CHECK(qft_wordpiece_tokenize(tok, "unaffable", 9, &ids, &n, &err) == QFT_OK && n >= 2, "unaffable splits");
    if (n >= 2) CHECK(strncmp(qft_wordpiece_id_token(tok, ids[1]), "##", 2) == 0, "continuation has ##");
    free(ids);
}

// Random bytes (mostly invalid UTF-8) must never crash and never produce out-of-range ids.
static void check_random_bytes(const qft_wordpiece *tok) {
    char buffer[300];
    int bad = 0;
    for (int round = 0; round < 3000; round++) {
        size_t n = test_rng_next() % sizeof buffer;
        for (size_t i = 0; i < n; i++) {
            uint64_t r = test_rng_next();
            buffer[i] = (char)(round % 3 == 0 ? r : (r % 4 ? 0x80 | (r >> 8) : 'a' + (r >> 8) % 26));
        }
        int32_t *ids;
        size_t count;
        qft_error err;
        if (qft_wordpiece_tokenize(tok, buffer, n, &ids, &count, &err) != QFT_OK) { bad++; continue; }
        for (size_t i = 0; i < count; i++) bad += ids[i] < 0 || (size_t)ids[i] >= qft_wordpiece_vocab_size(tok);
        free(ids);
    }
    CHECK(bad == 0, "random bytes: %d bad results", bad);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) { fputs(text, f); fclose(f); }
}

static void check_errors(void) {
    char dir[512], path[700];
    qft_test_make_temp_dir(dir, sizeof dir, "qft_wordpiece");
    qft_wordpiece *tok = NULL;
    qft_error err;
    snprintf(path, sizeof path, "%s/missing.txt", dir);
    CHECK(qft_wordpiece_load(path, NULL, &tok, &err) == QFT_ERR_IO && strstr(err.message, "missing.txt"),
          "missing vocab: %s", err.message);
    snprintf(path, sizeof path, "%s/empty.txt", dir);
    write_file(path, "");
    CHECK(qft_wordpiece_load(path, NULL, &tok, &err) == QFT_ERR_PARSE && strstr(err.message, "empty"),
          "empty vocab: %s", err.message);
    const char *missing[4][2] = {{"[UNK]", "[PAD]\n[CLS]\n[SEP]\nhello\n"}, {"[CLS]", "[PAD]\n[UNK]\n[SEP]\n"},
                                 {"[SEP]", "[PAD]\n[UNK]\n[CLS]\n"}, {"[PAD]", "[UNK]\n[CLS]\n[SEP]\n"}};
    for (int k = 0; k < 4; k++) {
        snprintf(path, sizeof path, "%s/no_special.txt", dir);
        write_file(path, missing[k][1]);
        CHECK(qft_wordpiece_load(path, NULL, &tok, &err) == QFT_ERR_INVALID && strstr(err.message, missing[k][0]),
              "vocab without %s: %s", missing[k][0], err.message);
    }
    // A tiny vocabulary with CRLF line ends and no final newline.
    snprintf(path, sizeof path, "%s/tiny.txt", dir);
    write_file(path, "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nun\r\n##aff\r\n##able\r\nhello\r\n!");
    qft_wordpiece_options cased = qft_wordpiece_default_options();
    cased.do_lower_case = 0;
    CHECK(qft_wordpiece_load(path, &cased, &tok, &err) == QFT_OK, "tiny vocab: %s", err.message);
    if (tok) {
        CHECK(qft_wordpiece_vocab_size(tok) == 9 && qft_wordpiece_token_id(tok, "!") == 8, "tiny vocab: 9 tokens");
        int32_t *ids;
        size_t n;
        CHECK(qft_wordpiece_tokenize(tok, "unaffable Hello hello!", 22, &ids, &n, &err) == QFT_OK && n == 6 &&
                  ids[0] == 4 && ids[1] == 5 && ids[2] == 6 && ids[3] == 1 && ids[4] == 7 && ids[5] == 8,
              "tiny vocab, cased: un ##aff ##able [UNK] hello !");
        free(ids);
        qft_wordpiece_free(tok);
    }
    qft_test_remove_temp_dir(dir);
}

int main(void) {
    char path[1024];
    const char *dir = getenv("QFT_MINILM_DIR");
    const char *home = getenv("HOME");
    if (dir && *dir) snprintf(path, sizeof path, "%s/vocab.txt", dir);
    else snprintf(path, sizeof path, "%s/.cache/qft/minilm/vocab.txt", home ? home : ".");
    qft_wordpiece *tok = NULL;
    qft_error err;
    if (qft_wordpiece_load(path, NULL, &tok, &err) != QFT_OK) {
        fprintf(stderr, "test_wordpiece: cannot load the MiniLM vocabulary (%s); run `bash datasets/fetch_minilm.sh` "
                        "or set QFT_MINILM_DIR\n", err.message);
        CHECK(0, "MiniLM vocabulary missing");
    } else {
        CHECK(qft_wordpiece_vocab_size(tok) == 30522, "MiniLM vocab has %zu tokens", qft_wordpiece_vocab_size(tok));
        check_golden(tok);
        check_padding_and_truncation(tok);
        check_random_bytes(tok);
        qft_wordpiece_free(tok);
    }
    check_errors();
    QFT_TEST_SUMMARY();
}
