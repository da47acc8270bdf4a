// The training and evaluation drivers behind `qft train` and `qft eval`: build the model and data
// from a config, loop over optimizer steps, log metrics, checkpoint, resume and evaluate.
#ifndef QFT_TRAIN_TRAINER_H
#define QFT_TRAIN_TRAINER_H

#include <signal.h>

#include "../core/status.h"
#include "../io/config.h"
#include "metrics.h"

// MNLI's second evaluation, on dev_mismatched (GLUE's MNLI-mm); present is 0 for other data.
typedef struct {
    int present;
    long examples;
    double loss, accuracy;
} qft_mnli_mismatched;

typedef struct {
    long steps_done;          // optimizer steps completed in total (including resumed ones)
    long steps_this_run;
    double final_loss;        // mean training loss over the last logging window
    double eval_loss, eval_accuracy;
    double train_seconds;     // wall time in the step loop (excludes evaluation)
    double ms_per_step;       // steps of this run only
    double peak_rss_mb;
    int interrupted;          // stopped by SIGTERM/SIGINT (a checkpoint was written)
    int resumed;
    char checkpoint[2100];    // last checkpoint written
    qft_glue_metrics glue;    // GLUE task metrics of the last evaluation (count 0 otherwise)
    qft_mnli_mismatched mnli_mm;  // MNLI: the last evaluation on dev_mismatched
    char eval_split[16];      // eval.split the evaluations ran on: "test" or "validation"
    long train_examples;      // examples of the training split (data.validation_size held out)
} qft_train_summary;

typedef struct {
    long examples;
    double loss, accuracy;
    qft_glue_metrics glue;    // GLUE task metrics (count 0 when the data is not GLUE); MNLI: matched
    qft_mnli_mismatched mnli_mm;
    int quantized;            // fake quantization was on (quant.rules with a calibration)
    char split[16];           // eval.split: "test" or "validation"
} qft_eval_summary;

// GLUE submission files written by qft_predict.
#define QFT_PREDICT_MAX_FILES 2
typedef struct {
    int file_count;
    char files[QFT_PREDICT_MAX_FILES][2200];   // runs/<name>/predictions/<Task>.tsv (MNLI: -m and -mm)
    long examples[QFT_PREDICT_MAX_FILES];
} qft_predict_summary;

// stop_flag: set asynchronously (signal handler) to request checkpoint-and-exit.
qft_status qft_train(const qft_config *cfg, volatile sig_atomic_t *stop_flag, qft_train_summary *out,
                     qft_error *err);

// Evaluates eval.checkpoint (or the newest checkpoint of the run) on the split eval.split names: the
// evaluation split (MNLI: dev_matched, then dev_mismatched) or the validation split held out of the
// training data (data.validation_size).
qft_status qft_evaluate(const qft_config *cfg, qft_eval_summary *out, qft_error *err);

// GLUE only: predicts the test split(s) with the same checkpoint qft_evaluate would use and writes
// the GLUE server's submission files, <run dir>/predictions/<Task>.tsv ("index\tprediction", the
// label names of the task, STS-B scores as %.3f).
qft_status qft_predict(const qft_config *cfg, qft_predict_summary *out, qft_error *err);

#endif
