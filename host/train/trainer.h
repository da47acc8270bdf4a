// The training and evaluation drivers behind `qft train` and `qft eval`: build the model and data
// from a config, loop over optimizer steps, log metrics, checkpoint, resume and evaluate.
#ifndef QFT_TRAIN_TRAINER_H
#define QFT_TRAIN_TRAINER_H

#include <signal.h>

#include "../core/status.h"
#include "../io/config.h"
#include "metrics.h"

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
} qft_train_summary;

typedef struct {
    long examples;
    double loss, accuracy;
    qft_glue_metrics glue;    // GLUE task metrics (count 0 when the data is not GLUE)
} qft_eval_summary;

// stop_flag: set asynchronously (signal handler) to request checkpoint-and-exit.
qft_status qft_train(const qft_config *cfg, volatile sig_atomic_t *stop_flag, qft_train_summary *out,
                     qft_error *err);

// Evaluates eval.checkpoint (or the newest checkpoint of the run) on the evaluation split.
qft_status qft_evaluate(const qft_config *cfg, qft_eval_summary *out, qft_error *err);

#endif
