// GLUE TSV loader: knows each task's columns, header and labels per split, reads a whole file,
// splits it in place into examples and rejects malformed rows with a file:line message.
#include "glue.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

// Task table. Sources (HF transformers src/transformers/data/processors/glue.py):
// - CoLA: train/dev have no header, columns (source, label, original label, sentence): text line[3],
//   label line[1]; test has header "index sentence": text line[1]. Labels ["0", "1"].
// - SST-2: header "sentence label": text line[0], label line[1]; test "index sentence": line[1].
// - MRPC: header "Quality #1 ID #2 ID #1 String #2 String": text line[3], line[4], label line[0];
//   test "index #1 ID #2 ID #1 String #2 String", same text columns. Labels ["0", "1"].
// - STS-B: 10 columns, text line[7], line[8] ("sentence1", "sentence2"), label line[-1] ("score");
//   test has 9 (no score). Regression, num_labels 1.
// - QQP: header "id qid1 qid2 question1 question2 is_duplicate": text line[3], line[4], label line[5];
//   test "id question1 question2": line[1], line[2]. Rows raising IndexError are skipped.
// - MNLI: text line[8], line[9] ("sentence1", "sentence2"), label line[-1] ("gold_label"; train has
//   12 columns, dev 16); test 10 columns. Labels ["contradiction", "entailment", "neutral"] (this is
//   transformers' processor order, which we follow; HF `datasets`' glue/mnli uses
//   entailment/neutral/contradiction instead: mind it when importing a fine-tuned MNLI head).
// - QNLI: "index question sentence label": text line[1], line[2], label line[-1];
//   labels ["entailment", "not_entailment"].
// - RTE: "index sentence1 sentence2 label", labels ["entailment", "not_entailment"].
// - WNLI: "index sentence1 sentence2 label", labels ["0", "1"].
// Test files of every task carry no label. num_labels from glue_tasks_num_labels there.
static const qft_glue_task_info glue_tasks[QFT_GLUE_TASK_COUNT] = {
    {QFT_GLUE_COLA, "cola", "CoLA", 2, 0, 0, "sentence", NULL, {"0", "1", NULL}, 1, {"matthews_correlation", NULL}},
    {QFT_GLUE_SST2, "sst2", "SST-2", 2, 0, 0, "sentence", NULL, {"0", "1", NULL}, 1, {"accuracy", NULL}},
    {QFT_GLUE_MRPC, "mrpc", "MRPC", 2, 0, 1, "#1 String", "#2 String", {"0", "1", NULL}, 2, {"f1", "accuracy"}},
    {QFT_GLUE_STSB, "stsb", "STS-B", 1, 1, 1, "sentence1", "sentence2", {NULL, NULL, NULL}, 2, {"pearson", "spearmanr"}},
    {QFT_GLUE_QQP, "qqp", "QQP", 2, 0, 1, "question1", "question2", {"0", "1", NULL}, 2, {"f1", "accuracy"}},
    {QFT_GLUE_MNLI, "mnli", "MNLI", 3, 0, 1, "sentence1", "sentence2", {"contradiction", "entailment", "neutral"}, 1,
     {"accuracy", NULL}},
    {QFT_GLUE_QNLI, "qnli", "QNLI", 2, 0, 1, "question", "sentence", {"entailment", "not_entailment", NULL}, 1,
     {"accuracy", NULL}},
    {QFT_GLUE_RTE, "rte", "RTE", 2, 0, 1, "sentence1", "sentence2", {"entailment", "not_entailment", NULL}, 1,
     {"accuracy", NULL}},
    {QFT_GLUE_WNLI, "wnli", "WNLI", 2, 0, 1, "sentence1", "sentence2", {"0", "1", NULL}, 1, {"accuracy", NULL}},
};

#define LABEL_NONE (-1)
#define LABEL_LAST (-2)

// Where a split's fields are. columns > 0: the exact count (and the header's); columns == 0: rows
// must match the header, which needs at least min_columns (MNLI: train 12, dev 16, test 10).
typedef struct {
    int has_header;
    int columns, min_columns;
    int text_a, text_b, label;  // column indices; text_b -1 = none; label LABEL_NONE / LABEL_LAST
} glue_layout;

static const glue_layout train_layouts[QFT_GLUE_TASK_COUNT] = {
    [QFT_GLUE_COLA] = {0, 4, 4, 3, -1, 1},
    [QFT_GLUE_SST2] = {1, 2, 2, 0, -1, 1},
    [QFT_GLUE_MRPC] = {1, 5, 5, 3, 4, 0},
    [QFT_GLUE_STSB] = {1, 10, 10, 7, 8, LABEL_LAST},
    [QFT_GLUE_QQP] = {1, 6, 6, 3, 4, 5},
    [QFT_GLUE_MNLI] = {1, 0, 11, 8, 9, LABEL_LAST},
    [QFT_GLUE_QNLI] = {1, 4, 4, 1, 2, LABEL_LAST},
    [QFT_GLUE_RTE] = {1, 4, 4, 1, 2, LABEL_LAST},
    [QFT_GLUE_WNLI] = {1, 4, 4, 1, 2, LABEL_LAST},
};

static const glue_layout test_layouts[QFT_GLUE_TASK_COUNT] = {
    [QFT_GLUE_COLA] = {1, 2, 2, 1, -1, LABEL_NONE},
    [QFT_GLUE_SST2] = {1, 2, 2, 1, -1, LABEL_NONE},
    [QFT_GLUE_MRPC] = {1, 5, 5, 3, 4, LABEL_NONE},
    [QFT_GLUE_STSB] = {1, 9, 9, 7, 8, LABEL_NONE},
    [QFT_GLUE_QQP] = {1, 3, 3, 1, 2, LABEL_NONE},
    [QFT_GLUE_MNLI] = {1, 0, 10, 8, 9, LABEL_NONE},
    [QFT_GLUE_QNLI] = {1, 3, 3, 1, 2, LABEL_NONE},
    [QFT_GLUE_RTE] = {1, 3, 3, 1, 2, LABEL_NONE},
    [QFT_GLUE_WNLI] = {1, 3, 3, 1, 2, LABEL_NONE},
};

#define MAX_FIELDS 64

const qft_glue_task_info *qft_glue_task_by_id(qft_glue_task_id id) {
    return (unsigned)id < QFT_GLUE_TASK_COUNT ? &glue_tasks[id] : NULL;
}

const qft_glue_task_info *qft_glue_task_find(const char *name) {
    if (!name) return NULL;
    char compact[32];
    size_t n = 0;
    for (const char *p = name; *p; p++) {
        if (*p == '-' || *p == '_') continue;
        if (n + 1 >= sizeof compact) return NULL;
        compact[n++] = (char)tolower((unsigned char)*p);
    }
    compact[n] = '\0';
    for (int i = 0; i < QFT_GLUE_TASK_COUNT; i++)
        if (strcmp(compact, glue_tasks[i].name) == 0) return &glue_tasks[i];
    return NULL;
}

const char *qft_glue_split_file(const qft_glue_task_info *task, qft_glue_split split) {
    if (!task) return NULL;
    int mnli = task->id == QFT_GLUE_MNLI;
    switch (split) {
    case QFT_GLUE_TRAIN: return "train.tsv";
    case QFT_GLUE_DEV: return mnli ? "dev_matched.tsv" : "dev.tsv";
    case QFT_GLUE_TEST: return mnli ? "test_matched.tsv" : "test.tsv";
    case QFT_GLUE_DEV_MISMATCHED: return mnli ? "dev_mismatched.tsv" : NULL;
    case QFT_GLUE_TEST_MISMATCHED: return mnli ? "test_mismatched.tsv" : NULL;
    default: return NULL;
    }
}

const char *qft_glue_submission_file(const qft_glue_task_info *task, qft_glue_split split) {
    // Spelled out, not built from dir_name, so the table reads like the GLUE site's list.
    static const char *files[QFT_GLUE_TASK_COUNT] = {
        [QFT_GLUE_COLA] = "CoLA.tsv", [QFT_GLUE_SST2] = "SST-2.tsv", [QFT_GLUE_MRPC] = "MRPC.tsv",
        [QFT_GLUE_STSB] = "STS-B.tsv", [QFT_GLUE_QQP] = "QQP.tsv",   [QFT_GLUE_MNLI] = "MNLI-m.tsv",
        [QFT_GLUE_QNLI] = "QNLI.tsv",  [QFT_GLUE_RTE] = "RTE.tsv",   [QFT_GLUE_WNLI] = "WNLI.tsv",
    };
    if (!task) return NULL;
    if (split == QFT_GLUE_TEST) return files[task->id];
    if (split == QFT_GLUE_TEST_MISMATCHED && task->id == QFT_GLUE_MNLI) return "MNLI-mm.tsv";
    return NULL;
}

qft_status qft_glue_split_path(const char *glue_dir, const char *task, qft_glue_split split, char *path,
                               size_t path_size, qft_error *err) {
    const qft_glue_task_info *info = qft_glue_task_find(task);
    if (!info) return qft_fail(err, QFT_ERR_INVALID, "GLUE task \"%s\": unknown (expected one of cola, sst2, mrpc, "
                                                     "stsb, qqp, mnli, qnli, rte, wnli)", task ? task : "");
    const char *file = qft_glue_split_file(info, split);
    if (!file) return qft_fail(err, QFT_ERR_INVALID, "GLUE task %s: no such split (mismatched splits are MNLI's)",
                               info->name);
    int written = snprintf(path, path_size, "%s/%s/%s", glue_dir, info->dir_name, file);
    if (written < 0 || (size_t)written >= path_size)
        return qft_fail(err, QFT_ERR_INVALID, "%s/%s/%s: path too long", glue_dir, info->dir_name, file);
    return QFT_OK;
}

void qft_glue_free(qft_glue_examples *examples) {
    if (!examples) return;
    free(examples->examples);
    free(examples->storage);
    memset(examples, 0, sizeof *examples);
}

// Whole file into a NUL-terminated buffer.
static qft_status read_file(const char *path, char **out, size_t *size, qft_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return qft_fail(err, QFT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - 1 - len, f);
        len += got;
        if (got == 0) break;
    }
    if (!buf) {
        fclose(f);
        return qft_fail(err, QFT_ERR_OOM, "%s: out of memory", path);
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        return qft_fail(err, QFT_ERR_IO, "%s: read error", path);
    }
    buf[len] = '\0';
    *out = buf;
    *size = len;
    return QFT_OK;
}

// Splits line (NUL-terminated, no line ending) at tabs in place; returns the field count (fields
// past MAX_FIELDS are counted, not stored).
static int split_fields(char *line, char **fields) {
    int count = 0;
    char *p = line;
    for (;;) {
        if (count < MAX_FIELDS) fields[count] = p;
        count++;
        char *tab = strchr(p, '\t');
        if (!tab) break;
        *tab = '\0';
        p = tab + 1;
    }
    return count;
}

static qft_status parse_label(const qft_glue_task_info *task, const char *text, const char *path, size_t line_no,
                              float *label, qft_error *err) {
    if (task->is_regression) {
        char *end = NULL;
        errno = 0;
        float value = strtof(text, &end);
        if (end == text || *end != '\0' || errno == ERANGE || !isfinite(value) || value < 0.0f || value > 5.0f)
            return qft_fail(err, QFT_ERR_PARSE, "%s:%zu: %s score \"%s\": expected a number in [0, 5]", path,
                            line_no, task->name, text);
        *label = value;
        return QFT_OK;
    }
    for (int i = 0; i < task->num_labels; i++) {
        if (strcmp(text, task->label_names[i]) == 0) {
            *label = (float)i;
            return QFT_OK;
        }
    }
    char expected[128] = "";
    for (int i = 0; i < task->num_labels; i++) {
        size_t used = strlen(expected);
        snprintf(expected + used, sizeof expected - used, "%s\"%s\"", i ? ", " : "", task->label_names[i]);
    }
    return qft_fail(err, QFT_ERR_PARSE, "%s:%zu: %s label \"%.64s\": expected one of %s", path, line_no, task->name,
                    text, expected);
}

static qft_status load(const qft_glue_task_info *task, const char *path, int is_test, qft_glue_examples *out,
                       qft_error *err) {
    const glue_layout *layout = is_test ? &test_layouts[task->id] : &train_layouts[task->id];
    // QQP train/dev: skip rows with the wrong column count, as transformers' QqpProcessor does
    // (try/except IndexError: continue); a few rows of the released train.tsv are broken this way.
    int skip_bad_rows = task->id == QFT_GLUE_QQP && !is_test;
    char *data = NULL;
    size_t size = 0;
    qft_status status = read_file(path, &data, &size, err);
    if (status != QFT_OK) return status;
    size_t lines = 1;
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
    qft_glue_example *examples = malloc(lines * sizeof *examples);
    if (!examples) {
        free(data);
        return qft_fail(err, QFT_ERR_OOM, "%s: out of memory for %zu rows", path, lines);
    }
    size_t count = 0, skipped = 0, line_no = 0;
    int expected_columns = layout->columns;
    int header_pending = layout->has_header;
    char *p = data, *end = data + size;
    if (size >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3;
    char *fields[MAX_FIELDS];
    while (p < end) {
        line_no++;
        char *newline = memchr(p, '\n', (size_t)(end - p));
        char *line_end = newline ? newline : end;
        if (memchr(p, '\0', (size_t)(line_end - p))) {
            status = qft_fail(err, QFT_ERR_PARSE, "%s:%zu: NUL byte in a text file", path, line_no);
            goto fail;
        }
        char *next = newline ? newline + 1 : end;
        if (line_end > p && line_end[-1] == '\r') line_end--;
        *line_end = '\0';
        char *line = p;
        p = next;
        int n = split_fields(line, fields);
        if (header_pending) {
            header_pending = 0;
            if (n < layout->min_columns || (layout->columns && n != layout->columns) || n > MAX_FIELDS) {
                status = qft_fail(err, QFT_ERR_PARSE,
                                  "%s:%zu: %s %s header has %d tab-separated columns, expected %s%d", path, line_no,
                                  task->name, is_test ? "test" : "train/dev", n, layout->columns ? "" : "at least ",
                                  layout->columns ? layout->columns : layout->min_columns);
                goto fail;
            }
            if (strcmp(fields[layout->text_a], task->text_a_column) != 0) {
                status = qft_fail(err, QFT_ERR_PARSE,
                                  "%s:%zu: header column %d is \"%.64s\", expected \"%s\" (is this a %s %s file?)",
                                  path, line_no, layout->text_a + 1, fields[layout->text_a], task->text_a_column,
                                  task->dir_name, is_test ? "test" : "train/dev");
                goto fail;
            }
            expected_columns = n;
            continue;
        }
        if (n != expected_columns) {
            if (skip_bad_rows) {
                skipped++;
                continue;
            }
            status = qft_fail(err, QFT_ERR_PARSE, "%s:%zu: expected %d tab-separated columns%s, got %d", path,
                              line_no, expected_columns, layout->has_header ? " (as the header)" : "", n);
            goto fail;
        }
        qft_glue_example *ex = &examples[count];
        ex->text_a = fields[layout->text_a];
        ex->text_b = layout->text_b >= 0 ? fields[layout->text_b] : NULL;
        ex->label = -1.0f;
        ex->has_label = 0;
        if (layout->label != LABEL_NONE) {
            int column = layout->label == LABEL_LAST ? n - 1 : layout->label;
            status = parse_label(task, fields[column], path, line_no, &ex->label, err);
            if (status != QFT_OK) goto fail;
            ex->has_label = 1;
        }
        count++;
    }
    if (header_pending) {
        status = qft_fail(err, QFT_ERR_PARSE, "%s: empty file, expected a %s header line", path, task->dir_name);
        goto fail;
    }
    if (count == 0) {
        status = qft_fail(err, QFT_ERR_PARSE, "%s: no examples", path);
        goto fail;
    }
    out->task = task;
    out->examples = examples;
    out->count = count;
    out->skipped_rows = skipped;
    out->storage = data;
    return QFT_OK;
fail:
    free(examples);
    free(data);
    return status;
}

qft_status qft_glue_load_split(const char *task, const char *path, qft_glue_split split, qft_glue_examples *out,
                               qft_error *err) {
    if (!out) return qft_fail(err, QFT_ERR_INTERNAL, "qft_glue_load: out is NULL");
    memset(out, 0, sizeof *out);
    const qft_glue_task_info *info = qft_glue_task_find(task);
    if (!info)
        return qft_fail(err, QFT_ERR_INVALID,
                        "%s: GLUE task \"%s\": unknown (expected one of cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, "
                        "wnli)", path ? path : "(no path)", task ? task : "");
    if (!path) return qft_fail(err, QFT_ERR_INVALID, "GLUE %s: no file path", info->name);
    if (!qft_glue_split_file(info, split))
        return qft_fail(err, QFT_ERR_INVALID, "%s: GLUE task %s has no such split", path, info->name);
    int is_test = split == QFT_GLUE_TEST || split == QFT_GLUE_TEST_MISMATCHED;
    return load(info, path, is_test, out, err);
}

qft_status qft_glue_load(const char *task, const char *path, qft_glue_examples *out, qft_error *err) {
    const char *base = path ? strrchr(path, '/') : NULL;
    base = base ? base + 1 : path;
    int is_test = base && strncasecmp(base, "test", 4) == 0;
    return qft_glue_load_split(task, path, is_test ? QFT_GLUE_TEST : QFT_GLUE_TRAIN, out, err);
}
