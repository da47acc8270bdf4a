// GLUE benchmark TSV readers: the nine tasks' train/dev/test files in the layout of the GLUE
// download script (<dir>/<TASK>/{train,dev,test}.tsv; MNLI: dev_matched, dev_mismatched, ...).
//
// Column layouts and label orders follow Hugging Face transformers'
// src/transformers/data/processors/glue.py (the *Processor._create_examples methods and get_labels),
// which itself follows google-research/bert run_classifier.py. Like that code, files are read with
// quoting disabled (csv.reader(..., delimiter="\t", quotechar=None), i.e. QUOTE_NONE): a '"' is an
// ordinary character, a field ends only at a tab or the end of the line. A UTF-8 byte-order mark
// is dropped (transformers' DataProcessor._read_tsv opens with encoding="utf-8-sig"; MRPC's files
// start with one). Lines may end in "\n" or "\r\n"; the last line may lack its newline.
#ifndef QFT_DATA_GLUE_H
#define QFT_DATA_GLUE_H

#include <stddef.h>

#include "../core/status.h"

typedef enum {
    QFT_GLUE_COLA,
    QFT_GLUE_SST2,
    QFT_GLUE_MRPC,
    QFT_GLUE_STSB,
    QFT_GLUE_QQP,
    QFT_GLUE_MNLI,
    QFT_GLUE_QNLI,
    QFT_GLUE_RTE,
    QFT_GLUE_WNLI,
    QFT_GLUE_TASK_COUNT
} qft_glue_task_id;

typedef enum {
    QFT_GLUE_TRAIN,
    QFT_GLUE_DEV,              // MNLI: dev_matched.tsv
    QFT_GLUE_TEST,             // MNLI: test_matched.tsv; test files carry no labels
    QFT_GLUE_DEV_MISMATCHED,   // MNLI only
    QFT_GLUE_TEST_MISMATCHED,  // MNLI only
    QFT_GLUE_SPLIT_COUNT
} qft_glue_split;

// What a task is and how it is scored. Metric names are those of HF `evaluate`'s glue metric
// ("matthews_correlation", "accuracy", "f1", "pearson", "spearmanr").
typedef struct {
    qft_glue_task_id id;
    const char *name;            // lower-case key: "cola", "sst2", "mrpc", "stsb", "qqp", "mnli", ...
    const char *dir_name;        // directory in the GLUE download: "CoLA", "SST-2", "STS-B", ...
    int num_labels;              // 1 for STS-B (regression), else the number of classes
    int is_regression;           // STS-B only: label is a float score in [0, 5]
    int has_text_b;              // sentence-pair task
    const char *text_a_column;   // header name of the first text column (CoLA train/dev: no header)
    const char *text_b_column;   // header name of the second, or NULL
    const char *label_names[3];  // class index -> label string as written in the TSV; NULL past num_labels
    int metric_count;            // 1 or 2
    const char *metric_names[2]; // the GLUE score of the task (CoLA: MCC; MRPC/QQP: F1 and accuracy; ...)
} qft_glue_task_info;

typedef struct {
    char *text_a;     // first sentence (points into the examples' storage)
    char *text_b;     // second sentence, or NULL for single-sentence tasks
    float label;      // class index (0..num_labels-1) or STS-B score; -1 on test files
    int has_label;    // 0 on test files
} qft_glue_example;

typedef struct {
    const qft_glue_task_info *task;
    qft_glue_example *examples;
    size_t count;
    // QQP train/dev only: rows whose column count differs from the header's are skipped, as the
    // HF processor does (it catches IndexError); this counts them. Every other task errors instead.
    size_t skipped_rows;
    char *storage;    // the file's bytes, split in place; owned
} qft_glue_examples;

// Task by name, case-insensitive; accepts the HF spellings with or without the dash
// ("sst-2"/"sst2", "sts-b"/"stsb") and the directory names ("CoLA", "SST-2", ...). NULL if unknown.
const qft_glue_task_info *qft_glue_task_find(const char *name);
const qft_glue_task_info *qft_glue_task_by_id(qft_glue_task_id id);

// File name of a split ("train.tsv", "dev_matched.tsv", ...); NULL when the task has no such split
// (the mismatched splits exist for MNLI only).
const char *qft_glue_split_file(const qft_glue_task_info *task, qft_glue_split split);

// The GLUE server's submission file name for a test split: "CoLA.tsv", "SST-2.tsv", "MRPC.tsv",
// "STS-B.tsv", "QQP.tsv", "MNLI-m.tsv" / "MNLI-mm.tsv", "QNLI.tsv", "RTE.tsv", "WNLI.tsv" (the
// directory name, except for MNLI's two). NULL for train and dev splits.
const char *qft_glue_submission_file(const qft_glue_task_info *task, qft_glue_split split);

// Writes "<glue_dir>/<dir_name>/<split file>" into path; error if the split does not exist for the
// task or the path does not fit.
qft_status qft_glue_split_path(const char *glue_dir, const char *task, qft_glue_split split, char *path,
                               size_t path_size, qft_error *err);

// Loads one GLUE TSV. The split is taken from the file name: a name starting with "test" is a test
// file (its own column layout, no labels), anything else is read as train/dev. Errors (one line,
// "file:line: ..."): unknown task (QFT_ERR_INVALID), missing/unreadable file (QFT_ERR_IO), missing or
// wrong header, a row whose column count differs from the header's (or from 4 in header-less CoLA
// train/dev), an unknown label, an STS-B score that is not a number in [0, 5], a NUL byte, no
// examples at all (QFT_ERR_PARSE). On failure out is left zeroed.
qft_status qft_glue_load(const char *task, const char *path, qft_glue_examples *out, qft_error *err);

// Same, with the split given explicitly (only whether it is a test split matters for the layout).
qft_status qft_glue_load_split(const char *task, const char *path, qft_glue_split split, qft_glue_examples *out,
                               qft_error *err);

// Frees and zeroes; safe on a zeroed or already-freed set.
void qft_glue_free(qft_glue_examples *examples);

#endif
