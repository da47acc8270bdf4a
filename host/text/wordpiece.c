// WordPiece tokenization as Hugging Face's BertTokenizer: clean text, split CJK, strip accents and
// lower-case, split on whitespace and punctuation, greedy longest-match-first pieces, BERT template.
#include "text/wordpiece.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/unicode_tables.h"

struct qft_wordpiece {
    qft_wordpiece_options options;
    char *blob;              // all tokens, NUL-terminated, back to back
    size_t *token_offsets;   // id -> offset in blob
    size_t vocab_size;
    int32_t *slots;          // open-addressing hash table of ids, -1 = empty
    size_t slot_mask;
    int32_t unk_id, cls_id, sep_id, pad_id;
    int32_t special_ids[5];  // [PAD] [UNK] [CLS] [SEP] [MASK] as found in the vocab, -1 if absent
};

static const char *const special_tokens[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

qft_wordpiece_options qft_wordpiece_default_options(void) {
    qft_wordpiece_options o = {1, 1, 1, 100};
    return o;
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int32_t lookup(const qft_wordpiece *t, const char *s, size_t n) {
    for (size_t i = hash_bytes(s, n) & t->slot_mask;; i = (i + 1) & t->slot_mask) {
        int32_t id = t->slots[i];
        if (id < 0) return -1;
        const char *tok = t->blob + t->token_offsets[id];
        if (strncmp(tok, s, n) == 0 && tok[n] == '\0') return id;
    }
}

size_t qft_wordpiece_vocab_size(const qft_wordpiece *t) { return t->vocab_size; }
int32_t qft_wordpiece_token_id(const qft_wordpiece *t, const char *token) {
    return lookup(t, token, strlen(token));
}
const char *qft_wordpiece_id_token(const qft_wordpiece *t, int32_t id) {
    return id >= 0 && (size_t)id < t->vocab_size ? t->blob + t->token_offsets[id] : NULL;
}

void qft_wordpiece_free(qft_wordpiece *t) {
    if (!t) return;
    free(t->blob);
    free(t->token_offsets);
    free(t->slots);
    free(t);
}

qft_status qft_wordpiece_load(const char *path, const qft_wordpiece_options *options,
                              qft_wordpiece **out, qft_error *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return qft_fail(err, QFT_ERR_IO, "%s: cannot open vocabulary: %s", path, strerror(errno));
    qft_wordpiece *t = calloc(1, sizeof *t);
    if (!t) {
        fclose(f);
        return qft_fail(err, QFT_ERR_OOM, "%s: out of memory", path);
    }
    t->options = options ? *options : qft_wordpiece_default_options();
    if (t->options.max_input_chars_per_word <= 0) t->options.max_input_chars_per_word = 100;
    size_t size = 0, capacity = 1 << 16;
    t->blob = malloc(capacity);
    for (size_t got; t->blob && (got = fread(t->blob + size, 1, capacity - size - 1, f)) > 0;) {
        size += got;
        if (size + 1 == capacity) {
            char *grown = realloc(t->blob, capacity *= 2);
            if (!grown) break;
            t->blob = grown;
        }
    }
    int read_error = ferror(f);
    fclose(f);
    if (!t->blob || size + 1 == capacity) {
        qft_wordpiece_free(t);
        return qft_fail(err, QFT_ERR_OOM, "%s: out of memory", path);
    }
    if (read_error) {
        qft_wordpiece_free(t);
        return qft_fail(err, QFT_ERR_IO, "%s: read error", path);
    }
    t->blob[size] = '\0';
    // One token per line; a final line without newline counts, a trailing newline adds nothing.
    size_t lines = 0;
    for (size_t i = 0; i < size; i++) lines += t->blob[i] == '\n';
    if (size > 0 && t->blob[size - 1] != '\n') lines++;
    if (lines == 0) {
        qft_wordpiece_free(t);
        return qft_fail(err, QFT_ERR_PARSE, "%s: empty vocabulary", path);
    }
    size_t slot_count = 16;
    while (slot_count < 2 * lines) slot_count *= 2;
    t->token_offsets = malloc(lines * sizeof *t->token_offsets);
    t->slots = malloc(slot_count * sizeof *t->slots);
    if (!t->token_offsets || !t->slots) {
        qft_wordpiece_free(t);
        return qft_fail(err, QFT_ERR_OOM, "%s: out of memory", path);
    }
    memset(t->slots, 0xff, slot_count * sizeof *t->slots);
    t->slot_mask = slot_count - 1;
    size_t start = 0;
    for (size_t id = 0; id < lines; id++) {
        size_t end = start;
        while (end < size && t->blob[end] != '\n') end++;
        size_t next = end + 1;
        while (end > start && (t->blob[end - 1] == '\r' || t->blob[end - 1] == ' ')) end--;
        t->blob[end] = '\0';
        t->token_offsets[id] = start;
        // A duplicate token keeps its last id, as tokenizers' vocabulary map does.
        size_t n = end - start, i = hash_bytes(t->blob + start, n) & t->slot_mask;
        for (;; i = (i + 1) & t->slot_mask) {
            int32_t other = t->slots[i];
            if (other < 0 || strcmp(t->blob + t->token_offsets[other], t->blob + start) == 0) break;
        }
        t->slots[i] = (int32_t)id;
        start = next;
    }
    t->vocab_size = lines;
    for (int k = 0; k < 5; k++) t->special_ids[k] = qft_wordpiece_token_id(t, special_tokens[k]);
    t->pad_id = t->special_ids[0];
    t->unk_id = t->special_ids[1];
    t->cls_id = t->special_ids[2];
    t->sep_id = t->special_ids[3];
    for (int k = 0; k < 4; k++) {
        if (t->special_ids[k] < 0) {
            qft_wordpiece_free(t);
            return qft_fail(err, QFT_ERR_INVALID, "%s: vocabulary has no %s token", path,
                            special_tokens[k]);
        }
    }
    *out = t;
    return QFT_OK;
}

// ---- Unicode helpers ----

static qft_unicode_class char_class(uint32_t cp) {
    size_t lo = 0, hi = qft_unicode_class_run_count;  // last run with start <= cp
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (qft_unicode_class_runs[mid].start <= cp) lo = mid; else hi = mid;
    }
    return (qft_unicode_class)qft_unicode_class_runs[lo].unicode_class;
}

static const qft_unicode_mapping *find_mapping(const qft_unicode_mapping *table, size_t count,
                                               uint32_t cp) {
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (table[mid].code_point == cp) return &table[mid];
        if (table[mid].code_point < cp) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

// Decodes one code point at s[*pos]; an invalid sequence (overlong, surrogate, > U+10FFFF,
// truncated) consumes only its valid prefix and yields U+FFFD, as Python's errors='replace'.
static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *pos) {
    size_t i = *pos;
    unsigned char c = s[i];
    if (c < 0x80) { *pos = i + 1; return c; }
    int need;
    uint32_t cp;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2; cp = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3; cp = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else { *pos = i + 1; return 0xFFFD; }
    i++;
    for (int k = 0; k < need; k++, i++) {
        if (i >= n || s[i] < lo || s[i] > hi) { *pos = i; return 0xFFFD; }
        cp = (cp << 6) | (s[i] & 0x3F);
        lo = 0x80; hi = 0xBF;
    }
    *pos = i;
    return cp;
}

static size_t utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// ---- growable buffers ----

typedef struct { uint32_t *data; size_t count, capacity; } cp_vec;
typedef struct { int32_t *data; size_t count, capacity; } id_vec;

static int cp_push(cp_vec *v, uint32_t cp) {
    if (v->count == v->capacity) {
        size_t cap = v->capacity ? v->capacity * 2 : 256;
        uint32_t *grown = realloc(v->data, cap * sizeof *grown);
        if (!grown) return 0;
        v->data = grown; v->capacity = cap;
    }
    v->data[v->count++] = cp;
    return 1;
}
static int id_push(id_vec *v, int32_t id) {
    if (v->count == v->capacity) {
        size_t cap = v->capacity ? v->capacity * 2 : 64;
        int32_t *grown = realloc(v->data, cap * sizeof *grown);
        if (!grown) return 0;
        v->data = grown; v->capacity = cap;
    }
    v->data[v->count++] = id;
    return 1;
}

// Lower-cases cp after accent stripping (tokenizers' order) and appends it.
static int push_lower(cp_vec *v, uint32_t cp) {
    const qft_unicode_mapping *m = find_mapping(qft_unicode_lower, qft_unicode_lower_count, cp);
    return cp_push(v, m ? m->value : cp);
}

// BertNormalizer on one code point: clean text, pad CJK with spaces, strip accents, lower-case.
static int normalize_char(const qft_wordpiece_options *o, uint32_t cp, cp_vec *out) {
    qft_unicode_class c = char_class(cp);
    if (c == QFT_UNICODE_CTRL) return 1;
    if (c == QFT_UNICODE_WS) return cp_push(out, ' ');
    int cjk = o->tokenize_chinese_chars && c == QFT_UNICODE_CJK;
    if (cjk && !cp_push(out, ' ')) return 0;
    if (!o->do_lower_case) {
        if (!cp_push(out, cp)) return 0;
    } else if (c == QFT_UNICODE_MN) {
        // dropped
    } else if (cp >= 0xAC00 && cp <= 0xD7A3) {  // Hangul syllable: algorithmic NFD into jamo
        uint32_t s = cp - 0xAC00, l = 0x1100 + s / 588, vw = 0x1161 + (s % 588) / 28, tr = s % 28;
        if (!push_lower(out, l) || !push_lower(out, vw)) return 0;
        if (tr && !push_lower(out, 0x11A7 + tr)) return 0;
    } else {
        const qft_unicode_mapping *m = find_mapping(qft_unicode_strip, qft_unicode_strip_count, cp);
        if (!m) {
            if (!push_lower(out, cp)) return 0;
        } else if (m->length == 0) {
            if (!push_lower(out, m->value)) return 0;
        } else {
            for (uint32_t k = 0; k < m->length; k++)
                if (!push_lower(out, qft_unicode_strip_data[m->value + k])) return 0;
        }
    }
    if (cjk && !cp_push(out, ' ')) return 0;
    return 1;
}

// Greedy longest-match-first pieces of one word; the whole word is [UNK] if any part has no piece.
static int wordpiece_word(const qft_wordpiece *t, const uint32_t *word, size_t n, char *utf8,
                          size_t *char_offsets, id_vec *ids) {
    if (n > (size_t)t->options.max_input_chars_per_word) return id_push(ids, t->unk_id);
    // utf8 = word, char_offsets[k] = byte offset of char k; a continuation is looked up as "##" +
    // the piece, copied into the second half of the buffer.
    size_t bytes = 0;
    for (size_t k = 0; k < n; k++) {
        char_offsets[k] = bytes;
        bytes += utf8_put(word[k], utf8 + bytes);
    }
    char_offsets[n] = bytes;
    char *piece = utf8 + bytes;
    size_t first = ids->count, start = 0;
    while (start < n) {
        size_t end = n;
        int32_t found = -1;
        for (; end > start; end--) {
            size_t from = char_offsets[start], length = char_offsets[end] - from;
            if (start == 0) {
                found = lookup(t, utf8, length);
            } else {
                piece[0] = '#'; piece[1] = '#';
                memcpy(piece + 2, utf8 + from, length);
                found = lookup(t, piece, length + 2);
            }
            if (found >= 0) break;
        }
        if (found < 0) {
            ids->count = first;
            return id_push(ids, t->unk_id);
        }
        if (!id_push(ids, found)) return 0;
        start = end;
    }
    return 1;
}

static qft_status tokenize_segment(const qft_wordpiece *t, const unsigned char *s, size_t n,
                                   cp_vec *norm, id_vec *ids, qft_error *err) {
    norm->count = 0;
    for (size_t pos = 0; pos < n;) {
        uint32_t cp = utf8_next(s, n, &pos);
        if (!normalize_char(&t->options, cp, norm)) goto oom;
    }
    size_t max_word = 0, run = 0;
    for (size_t k = 0; k < norm->count; k++) {
        qft_unicode_class c = char_class(norm->data[k]);
        run = (c == QFT_UNICODE_WS || c == QFT_UNICODE_PUNCT) ? 0 : run + 1;
        if (run > max_word) max_word = run;
    }
    size_t limit = (size_t)t->options.max_input_chars_per_word;
    if (max_word > limit) max_word = limit;
    if (max_word < 1) max_word = 1;  // a punctuation mark is a one-char word
    char *utf8 = malloc(8 * max_word + 8);
    size_t *offsets = malloc((max_word + 1) * sizeof *offsets);
    if (!utf8 || !offsets) {
        free(utf8); free(offsets);
        goto oom;
    }
    size_t word_start = 0;
    int ok = 1;
    for (size_t k = 0; ok && k <= norm->count; k++) {
        qft_unicode_class c = k < norm->count ? char_class(norm->data[k]) : QFT_UNICODE_WS;
        if (c != QFT_UNICODE_WS && c != QFT_UNICODE_PUNCT) continue;
        if (k > word_start)
            ok = wordpiece_word(t, norm->data + word_start, k - word_start, utf8, offsets, ids);
        if (ok && c == QFT_UNICODE_PUNCT)
            ok = wordpiece_word(t, norm->data + k, 1, utf8, offsets, ids);
        word_start = k + 1;
    }
    free(utf8); free(offsets);
    if (!ok) goto oom;
    return QFT_OK;
oom:
    return qft_fail(err, QFT_ERR_OOM, "wordpiece: out of memory tokenizing %zu bytes", n);
}

static qft_status tokenize_into(const qft_wordpiece *t, const char *text, size_t n, id_vec *ids,
                                qft_error *err) {
    cp_vec norm = {0};
    const unsigned char *s = (const unsigned char *)text;
    size_t segment = 0;
    qft_status st = QFT_OK;
    // Special tokens written in the raw text are matched before normalization, as HF's added tokens.
    for (size_t i = 0; i < n && st == QFT_OK; i++) {
        if (!t->options.split_special_tokens || s[i] != '[') continue;
        for (int k = 0; k < 5; k++) {
            size_t len = strlen(special_tokens[k]);
            if (t->special_ids[k] < 0 || n - i < len || memcmp(s + i, special_tokens[k], len) != 0) continue;
            st = tokenize_segment(t, s + segment, i - segment, &norm, ids, err);
            if (st == QFT_OK && !id_push(ids, t->special_ids[k]))
                st = qft_fail(err, QFT_ERR_OOM, "wordpiece: out of memory");
            segment = i + len;
            i = segment - 1;
            break;
        }
    }
    if (st == QFT_OK) st = tokenize_segment(t, s + segment, n - segment, &norm, ids, err);
    free(norm.data);
    return st;
}

qft_status qft_wordpiece_tokenize(const qft_wordpiece *t, const char *text, size_t length,
                                  int32_t **ids, size_t *count, qft_error *err) {
    id_vec v = {0};
    *ids = NULL;
    *count = 0;
    qft_status st = tokenize_into(t, text ? text : "", text ? length : 0, &v, err);
    if (st != QFT_OK) {
        free(v.data);
        return st;
    }
    *ids = v.data;
    *count = v.count;
    return QFT_OK;
}

void qft_wordpiece_encoding_free(qft_wordpiece_encoding *e) {
    if (!e) return;
    free(e->input_ids);
    free(e->token_type_ids);
    free(e->attention_mask);
    memset(e, 0, sizeof *e);
}

qft_status qft_wordpiece_encode(const qft_wordpiece *t, const char *a, size_t a_length,
                                const char *b, size_t b_length, size_t max_length,
                                int pad_to_max_length, qft_wordpiece_encoding *out, qft_error *err) {
    memset(out, 0, sizeof *out);
    size_t specials = b ? 3 : 2;
    if (max_length && max_length < specials)
        return qft_fail(err, QFT_ERR_INVALID, "wordpiece: max_length %zu is below the %zu special tokens",
                        max_length, specials);
    id_vec va = {0}, vb = {0};
    qft_status st = tokenize_into(t, a ? a : "", a ? a_length : 0, &va, err);
    if (st == QFT_OK && b) st = tokenize_into(t, b, b_length, &vb, err);
    if (st != QFT_OK) {
        free(va.data); free(vb.data);
        return st;
    }
    size_t na = va.count, nb = vb.count;
    if (max_length) {
        // longest_first as tokenizers: the shorter (a on a tie) keeps min(length, budget / 2)
        // and the longer gets the rest.
        size_t budget = max_length - specials;
        if (na + nb > budget) {
            if (na <= nb) {
                na = na < budget / 2 ? na : budget / 2;
                nb = budget - na;
            } else {
                nb = nb < budget / 2 ? nb : budget / 2;
                na = budget - nb;
            }
        }
    }
    size_t length = na + nb + specials;
    size_t total = pad_to_max_length && max_length > length ? max_length : length;
    out->input_ids = malloc(total * sizeof(int32_t));
    out->token_type_ids = malloc(total * sizeof(int32_t));
    out->attention_mask = malloc(total * sizeof(int32_t));
    if (!out->input_ids || !out->token_type_ids || !out->attention_mask) {
        free(va.data); free(vb.data);
        qft_wordpiece_encoding_free(out);
        return qft_fail(err, QFT_ERR_OOM, "wordpiece: out of memory encoding %zu tokens", total);
    }
    size_t k = 0;
    out->input_ids[k] = t->cls_id; out->token_type_ids[k++] = 0;
    for (size_t i = 0; i < na; i++) { out->input_ids[k] = va.data[i]; out->token_type_ids[k++] = 0; }
    out->input_ids[k] = t->sep_id; out->token_type_ids[k++] = 0;
    if (b) {
        for (size_t i = 0; i < nb; i++) { out->input_ids[k] = vb.data[i]; out->token_type_ids[k++] = 1; }
        out->input_ids[k] = t->sep_id; out->token_type_ids[k++] = 1;
    }
    for (size_t i = 0; i < total; i++) out->attention_mask[i] = i < length;
    for (; k < total; k++) { out->input_ids[k] = t->pad_id; out->token_type_ids[k] = 0; }
    out->length = total;
    free(va.data); free(vb.data);
    return QFT_OK;
}
