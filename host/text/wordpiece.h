// WordPiece tokenizer equal to Hugging Face's BertTokenizer / tokenizers' BertNormalizer +
// BertPreTokenizer + WordPiece + BERT template ([CLS] a [SEP] b [SEP]).
#ifndef QFT_TEXT_WORDPIECE_H
#define QFT_TEXT_WORDPIECE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct {
    int do_lower_case;             // lower-case and strip accents (uncased models)
    int tokenize_chinese_chars;    // CJK ideographs become tokens of their own
    int split_special_tokens;      // "[CLS]" etc. in the raw text map to their ids, as HF does
    int max_input_chars_per_word;  // longer words become [UNK]; HF uses 100
} qft_wordpiece_options;

// BERT uncased defaults: lower-case, Chinese chars, special tokens split, 100 chars per word.
qft_wordpiece_options qft_wordpiece_default_options(void);

typedef struct qft_wordpiece qft_wordpiece;

// Loads vocab.txt (one token per line, id = line number). Needs [UNK], [CLS], [SEP] and [PAD].
qft_status qft_wordpiece_load(const char *vocab_path, const qft_wordpiece_options *options,
                              qft_wordpiece **out, qft_error *err);
void qft_wordpiece_free(qft_wordpiece *tokenizer);

size_t qft_wordpiece_vocab_size(const qft_wordpiece *tokenizer);
// -1 when token is not in the vocabulary.
int32_t qft_wordpiece_token_id(const qft_wordpiece *tokenizer, const char *token);
// NULL when id is out of range.
const char *qft_wordpiece_id_token(const qft_wordpiece *tokenizer, int32_t id);

// Token ids of text (length bytes, any bytes: invalid UTF-8 is dropped), no special tokens added.
// *ids is malloc'ed (free it); *count may be 0.
qft_status qft_wordpiece_tokenize(const qft_wordpiece *tokenizer, const char *text, size_t length,
                                  int32_t **ids, size_t *count, qft_error *err);

typedef struct {
    int32_t *input_ids;
    int32_t *token_type_ids;
    int32_t *attention_mask;
    size_t length;
} qft_wordpiece_encoding;

// [CLS] a [SEP] (b [SEP] when b != NULL). max_length 0: no truncation; otherwise the pieces are
// truncated 'longest_first' as tokenizers does (the shorter piece, a on a tie, keeps
// min(its length, budget / 2), the longer the rest of the budget) and, with
// pad_to_max_length, padded with [PAD] (type id 0, mask 0) to max_length.
qft_status qft_wordpiece_encode(const qft_wordpiece *tokenizer, const char *a, size_t a_length,
                                const char *b, size_t b_length, size_t max_length,
                                int pad_to_max_length, qft_wordpiece_encoding *out, qft_error *err);
void qft_wordpiece_encoding_free(qft_wordpiece_encoding *encoding);

#endif
