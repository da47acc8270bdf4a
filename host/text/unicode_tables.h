// Generated Unicode tables for the WordPiece tokenizer (see tests/oracle/gen_unicode_tables.py).
// All tables are const and sorted by code point, for binary search.
#ifndef QFT_TEXT_UNICODE_TABLES_H
#define QFT_TEXT_UNICODE_TABLES_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    QFT_UNICODE_OTHER = 0,
    QFT_UNICODE_WS,     // whitespace: becomes a space, splits words
    QFT_UNICODE_CTRL,   // control/format/private-use/surrogate, NUL and U+FFFD: dropped
    QFT_UNICODE_PUNCT,  // punctuation: a token of its own
    QFT_UNICODE_MN,     // non-spacing mark: dropped when stripping accents
    QFT_UNICODE_CJK     // CJK ideograph: a token of its own
} qft_unicode_class;

// The class of every code point from start up to the next run's start.
typedef struct {
    uint32_t start;
    uint8_t unicode_class;
} qft_unicode_class_run;

// length 0: code point -> value; length > 0: code point -> data[value .. value + length).
typedef struct {
    uint32_t code_point;
    uint32_t value;
    uint32_t length;
} qft_unicode_mapping;

extern const qft_unicode_class_run qft_unicode_class_runs[];
extern const size_t qft_unicode_class_run_count;
extern const qft_unicode_mapping qft_unicode_strip[];
extern const size_t qft_unicode_strip_count;
extern const uint32_t qft_unicode_strip_data[];
extern const qft_unicode_mapping qft_unicode_lower[];
extern const size_t qft_unicode_lower_count;

#endif
