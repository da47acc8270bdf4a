// `quant.rules` entries: one table of fields (name, parser, default, doc) shared by the YAML reader,
// the resolved-config writer and the reference docs, so the three cannot drift apart.
#include "config_quant.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

qft_quant_rule qft_quant_rule_default(void) {
    qft_quant_rule rule;
    memset(&rule, 0, sizeof rule);
    rule.format = qft_quant_format_default();
    rule.format.enabled = 1;
    return rule;
}

// Scalar text as a NUL-terminated string (fields are short; longer text is rejected by the caller).
static int text_copy(char *dst, size_t cap, const char *text, size_t len) {
    if (len >= cap || memchr(text, '\0', len)) return 0;
    memcpy(dst, text, len);
    dst[len] = '\0';
    return 1;
}

static int parse_bool(const char *s, int *out) {
    static const char *const truthy[] = {"true", "yes", "on", "1"}, *const falsy[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, truthy[i]) == 0) return *out = 1, 1;
        if (strcasecmp(s, falsy[i]) == 0) return *out = 0, 1;
    }
    return 0;
}

static int parse_int(const char *s, long lo, long hi, int *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

static int parse_real(const char *s, double lo, double hi, double *out) {
    char *end = NULL;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi)) return 0;
    *out = v;
    return 1;
}

static int parse_enum(const char *s, int (*parse)(const char *), int *out) {
    int v = parse(s);
    if (v < 0) return 0;
    *out = v;
    return 1;
}

// Field table. `set` returns 1 on success; `expect` is the message for a bad value.
typedef struct {
    const char *name;
    const char *type;     // for the docs
    const char *expect;   // "expected ..." text
    const char *doc;
} rule_field;

static const rule_field rule_fields[] = {
    {"pattern", "string", "a non-empty glob of at most 127 bytes",
     "Glob over site names (`*` matches any run of characters, dots included; `?` one character). Required."},
    {"enable", "bool", "true or false", "`false`: matching sites stay in floating point (default `true`)."},
    {"kind", "enum", "one of uniform, log2, log_sqrt2",
     "`uniform` (affine integer grid), `log2` or `log_sqrt2` (attention probabilities only). Default `uniform`."},
    {"bits", "int", "an integer in [2, 8]", "Bits of the integer code. Default `8`."},
    {"signed", "bool", "true or false",
     "Signed grid [-2^(b-1), 2^(b-1)-1] (default `true`) or unsigned [0, 2^b-1]."},
    {"symmetric", "bool", "true or false",
     "Zero point fixed at 0 (signed) or mid-grid (unsigned), step from the largest magnitude (default `true`); false = affine with a zero point."},
    {"narrow", "bool", "true or false", "Signed grid without its lowest code, [-(2^(b-1)-1), 2^(b-1)-1]. Default `false`."},
    {"granularity", "enum", "one of tensor, channel, group, peg",
     "`tensor`, `channel` (weights: per output row; activations: per channel of the last dim), `group` (blocks of group_size along the input dim / channels) or `peg` (per-embedding-group, activations). Default `tensor`."},
    {"group_size", "int", "an integer in [1, 1048576]", "Elements per group for granularity `group`. Default `128`."},
    {"peg_groups", "int", "an integer in [1, 65536]", "Number of channel groups K for granularity `peg`. Default `6`."},
    {"calibrator", "enum", "one of minmax, ema, percentile, mse, omse, entropy",
     "How `qft calibrate` sets the range. Default `minmax`."},
    {"percentile", "float", "a number in (50, 100]", "Percentile of the `percentile` calibrator. Default `99.99`."},
    {"ema_momentum", "float", "a number in (0, 1]", "c in m <- m + c (m_batch - m) for the `ema` calibrator. Default `0.01`."},
    {"learn", "enum", "one of none, lsq, lsq_plus",
     "Learned quantizer parameters during training: `none` (frozen, STE), `lsq` (scale), `lsq_plus` (scale and offset). Default `none`."},
};
#define RULE_FIELD_COUNT (sizeof rule_fields / sizeof rule_fields[0])

static int field_set(qft_quant_rule *rule, int index, const char *s) {
    qft_quant_format *f = &rule->format;
    int iv;
    switch (index) {
    case 0:
        if (!*s) return 0;
        return text_copy(rule->pattern, sizeof rule->pattern, s, strlen(s));
    case 1: return parse_bool(s, &f->enabled);
    case 2: return parse_enum(s, qft_quant_kind_parse, &iv) ? (f->kind = (qft_quant_kind)iv, 1) : 0;
    case 3: return parse_int(s, 2, 8, &f->bits);
    case 4: return parse_bool(s, &f->is_signed);
    case 5: return parse_bool(s, &f->symmetric);
    case 6: return parse_bool(s, &f->narrow);
    case 7: return parse_enum(s, qft_quant_granularity_parse, &iv) ? (f->granularity = (qft_quant_granularity)iv, 1) : 0;
    case 8: return parse_int(s, 1, 1 << 20, &f->group_size);
    case 9: return parse_int(s, 1, 65536, &f->peg_groups);
    case 10: return parse_enum(s, qft_calibrator_parse, &iv) ? (f->calibrator = (qft_calibrator_kind)iv, 1) : 0;
    case 11: return parse_real(s, 50.0, 100.0, &f->percentile) && f->percentile > 50.0;
    case 12: return parse_real(s, 0.0, 1.0, &f->ema_momentum) && f->ema_momentum > 0.0;
    case 13: return parse_enum(s, qft_quant_learn_parse, &iv) ? (f->learn = (qft_quant_learn)iv, 1) : 0;
    }
    return 0;
}

qft_rule_field_result qft_quant_rule_set_field(qft_quant_rule *rule, const char *name, size_t name_len,
                                               const char *text, size_t len, char *why, size_t why_cap) {
    for (size_t i = 0; i < RULE_FIELD_COUNT; i++) {
        if (strlen(rule_fields[i].name) != name_len || memcmp(rule_fields[i].name, name, name_len) != 0) continue;
        char value[256];
        if (text_copy(value, sizeof value, text, len) && field_set(rule, (int)i, value)) return RULE_FIELD_OK;
        snprintf(why, why_cap, "expected %s", rule_fields[i].expect);
        return RULE_FIELD_BAD_VALUE;
    }
    size_t n = 0;
    n += (size_t)snprintf(why, why_cap, "known rule fields:");
    for (size_t i = 0; i < RULE_FIELD_COUNT && n < why_cap; i++)
        n += (size_t)snprintf(why + n, why_cap - n, " %s", rule_fields[i].name);
    return RULE_FIELD_UNKNOWN;
}

int qft_quant_rule_check(const qft_quant_rule *rule, char *why, size_t why_cap) {
    const qft_quant_format *f = &rule->format;
    if (!rule->pattern[0]) return snprintf(why, why_cap, "a rule needs a `pattern`"), 1;
    if (f->kind != QFT_QUANT_UNIFORM && f->granularity != QFT_GRAN_TENSOR)
        return snprintf(why, why_cap, "kind %s supports granularity tensor only", qft_quant_kind_name(f->kind)), 1;
    if (f->kind != QFT_QUANT_UNIFORM &&
        (f->calibrator == QFT_CALIB_MSE || f->calibrator == QFT_CALIB_OMSE || f->calibrator == QFT_CALIB_ENTROPY))
        return snprintf(why, why_cap, "kind %s takes its scale from the top of the range: use calibrator minmax, ema "
                        "or percentile", qft_quant_kind_name(f->kind)), 1;
    if (f->kind != QFT_QUANT_UNIFORM && f->learn != QFT_LEARN_NONE)
        return snprintf(why, why_cap, "kind %s has no learnable form (learn: none)", qft_quant_kind_name(f->kind)), 1;
    if (f->granularity == QFT_GRAN_PEG && f->calibrator != QFT_CALIB_MINMAX)
        return snprintf(why, why_cap, "granularity peg forms its groups from per-channel min/max: needs calibrator "
                        "minmax"), 1;
    if (f->learn == QFT_LEARN_LSQ_PLUS && f->symmetric)
        return snprintf(why, why_cap, "learn lsq_plus learns an offset: needs symmetric: false"), 1;
    if (f->narrow && !f->is_signed) return snprintf(why, why_cap, "narrow needs a signed grid"), 1;
    return 0;
}

static void write_yaml_string(FILE *out, const char *s) {
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

// The shortest %g form that reads back as the same double.
static void real_shortest(char *buf, size_t cap, double v) {
    for (int digits = 6; digits <= 17; digits++) {
        snprintf(buf, cap, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) return;
    }
}

void qft_quant_rule_write_yaml(FILE *out, const qft_quant_rule *rule, const char *indent) {
    const qft_quant_format *f = &rule->format;
    char percentile[32], momentum[32];
    real_shortest(percentile, sizeof percentile, f->percentile);
    real_shortest(momentum, sizeof momentum, f->ema_momentum);
    fprintf(out, "%s- {pattern: ", indent);
    write_yaml_string(out, rule->pattern);
    fprintf(out,
            ", enable: %s, kind: %s, bits: %d, signed: %s, symmetric: %s, narrow: %s, granularity: %s, "
            "group_size: %d, peg_groups: %d, calibrator: %s, percentile: %s, ema_momentum: %s, learn: %s}",
            f->enabled ? "true" : "false", qft_quant_kind_name(f->kind), f->bits, f->is_signed ? "true" : "false",
            f->symmetric ? "true" : "false", f->narrow ? "true" : "false", qft_quant_granularity_name(f->granularity),
            f->group_size, f->peg_groups, qft_calibrator_name(f->calibrator), percentile, momentum,
            qft_quant_learn_name(f->learn));
}

void qft_quant_rule_write_docs(FILE *out) {
    fputs("\nFields of one `quant.rules` entry (a mapping; every field but `pattern` is optional):\n\n", out);
    fputs("| field | type | meaning |\n|---|---|---|\n", out);
    for (size_t i = 0; i < RULE_FIELD_COUNT; i++)
        fprintf(out, "| `%s` | %s | %s |\n", rule_fields[i].name, rule_fields[i].type, rule_fields[i].doc);
}
