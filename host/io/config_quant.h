// The fields of one `quant.rules` entry: parsing a field's scalar text, checking a whole rule,
// writing it back as YAML and documenting the fields. config.c walks the YAML and calls these.
#ifndef QFT_IO_CONFIG_QUANT_H
#define QFT_IO_CONFIG_QUANT_H

#include <stddef.h>
#include <stdio.h>

#include "config.h"

typedef enum { RULE_FIELD_OK = 0, RULE_FIELD_UNKNOWN, RULE_FIELD_BAD_VALUE } qft_rule_field_result;

// A fresh rule: every field at its default (enabled, 8-bit signed symmetric per tensor, minmax).
qft_quant_rule qft_quant_rule_default(void);

// Sets field `name` of `rule` from a YAML scalar. On RULE_FIELD_BAD_VALUE, `why` says what was expected.
qft_rule_field_result qft_quant_rule_set_field(qft_quant_rule *rule, const char *name, size_t name_len,
                                               const char *text, size_t len, char *why, size_t why_cap);

// Cross-field checks of a complete rule (pattern given, bits in range for the kind, ...). 0 = fine,
// else `why` holds the reason.
int qft_quant_rule_check(const qft_quant_rule *rule, char *why, size_t why_cap);

// `- {pattern: "...", enable: true, ...}` with every field, so a resolved config loads back the same.
void qft_quant_rule_write_yaml(FILE *out, const qft_quant_rule *rule, const char *indent);

// Markdown table of the rule fields (for configs/README.md).
void qft_quant_rule_write_docs(FILE *out);

#endif
