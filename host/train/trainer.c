// Training loop: data order from (seed, epoch), gradient accumulation, AdamW, logging to
// metrics.jsonl and a TTY progress bar, periodic/final/signal checkpoints, resume, evaluation
// (MNLI: matched and mismatched) and GLUE test-set submission files.
#include "trainer.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../backend/backend.h"
#include "../data/dataset.h"
#include "../method/kd.h"
#include "../method/methods.h"
#include "../model/model.h"
#include "../method/oscillation.h"
#include "../quant/quant_io.h"
#include "checkpoint.h"
#include "metrics.h"
#include "optimizer.h"
#include "quant_tools.h"
#include "run_files.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mb(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)usage.ru_maxrss / 1024.0;  // Linux reports KiB
}

static int is_mnli(const qft_dataset *ds) { return ds->glue_task && ds->glue_task->id == QFT_GLUE_MNLI; }

// The split every evaluation runs on (eval.split): the evaluation files, or the examples
// data.validation_size holds out of the training split.
static int eval_split(const qft_config *cfg) {
    return strcmp(cfg->eval.split, "validation") == 0 ? QFT_SPLIT_VALIDATION : QFT_SPLIT_EVAL;
}

// Opens the evaluation split eval.split names and, for MNLI's dev_matched, dev_mismatched as well
// (the validation split is held out of MNLI's one training file: no mismatched counterpart).
static qft_status open_eval_splits(const qft_config *cfg, qft_dataset *ds, qft_dataset *mismatched, qft_error *err) {
    int split = eval_split(cfg);
    qft_status st = qft_dataset_open(ds, cfg, split, err);
    if (st == QFT_OK && split == QFT_SPLIT_EVAL && is_mnli(ds))
        st = qft_dataset_open(mismatched, cfg, QFT_SPLIT_EVAL_MISMATCHED, err);
    return st;
}


// GLUE metrics of one evaluation (only for data.dataset glue; count 0 otherwise).
typedef struct {
    qft_eval_summary base;
    qft_glue_metrics glue;
    const char *task;  // GLUE task name, or NULL
    int imagefolder;   // data.dataset imagefolder: skipped / corrupt are reported
    long skipped;      // files of the eval folder skipped at scan time
    long corrupt;      // failed decodes during this evaluation
    qft_mnli_mismatched mnli_mm;  // MNLI: the dev_mismatched evaluation
} eval_result;

// The prediction a head's output row stands for: the argmax class (first on ties), or the score of
// a regression head.
static float head_prediction(const float *row, int num_labels) {
    if (num_labels == 1) return row[0];
    int best = 0;
    for (int j = 1; j < num_labels; j++)
        if (row[j] > row[best]) best = j;
    return (float)best;
}

// Evaluation over the whole split in eval_batch_size chunks; no dropout. Classification accuracy
// is the argmax's; a regression head (num_labels 1) has a loss (MSE) and no accuracy (NaN, printed
// as null). GLUE data also gets the task's metrics from the predictions (argmax or the score).
// imagefolder data comes from the loader (epoch 0, folder order, eval transform).
static void evaluate_dataset(qft_model *model, qft_dataset *ds, qft_batch_buffer *buf, int batch_size,
                             eval_result *out) {
    int *indices = malloc((size_t)batch_size * sizeof(int));
    float *logits = malloc((size_t)batch_size * model->num_labels * sizeof(float));
    int glue = ds->glue_task != NULL && ds->count > 0;
    float *predictions = glue ? malloc((size_t)ds->count * sizeof(float)) : NULL;
    float *truths = glue ? malloc((size_t)ds->count * sizeof(float)) : NULL;
    if (!predictions || !truths) glue = 0;  // out of memory: loss and accuracy only
    double loss_sum = 0.0;
    long correct = 0, counted = 0;
    qft_error err = {{0}};
    memset(out, 0, sizeof *out);
    long corrupt_before = qft_dataset_corrupt_decodes(ds);
    for (int start = 0; start < ds->count; start += batch_size) {
        int n = ds->count - start < batch_size ? ds->count - start : batch_size;
        if (ds->kind == QFT_DATASET_IMAGEFOLDER) {
            int got = 0;
            if (qft_dataset_loader_fill(ds, 0, start / batch_size, buf, &got, &err) != QFT_OK || got != n) {
                fprintf(stderr, "evaluation stopped after %ld examples: %s\n", counted, err.message);
                break;
            }
        } else {
            for (int i = 0; i < n; i++) indices[i] = start + i;
            qft_dataset_fill(ds, indices, n, buf);
        }
        if (qft_model_set_batch(model, &buf->batch, &err) != QFT_OK) continue;
        float loss = qft_model_forward(model, 0, 0, 0);
        loss_sum += (double)loss * n;
        qft_model_read_logits(model, logits);
        for (int i = 0; i < n; i++) {
            const float *row = logits + (size_t)i * model->num_labels;
            float prediction = head_prediction(row, model->num_labels), truth;
            if (model->num_labels > 1) {
                correct += (int)prediction == buf->batch.labels[i];
                truth = (float)buf->batch.labels[i];
            } else {
                truth = buf->batch.targets ? buf->batch.targets[i] : 0.0f;
            }
            if (glue) {
                predictions[counted + i] = prediction;
                truths[counted + i] = truth;
            }
        }
        counted += n;
    }
    out->base.examples = counted;
    out->skipped = qft_dataset_skipped_files(ds);
    out->corrupt = qft_dataset_corrupt_decodes(ds) - corrupt_before;
    out->imagefolder = ds->kind == QFT_DATASET_IMAGEFOLDER;
    out->base.loss = counted ? loss_sum / counted : NAN;
    out->base.accuracy = counted && model->num_labels > 1 ? (double)correct / counted : NAN;
    if (glue && predictions && truths && counted > 0) {
        out->task = ds->glue_task->name;
        if (qft_glue_metrics_compute(ds->glue_task->name, predictions, truths, (size_t)counted, &out->glue, &err) !=
            QFT_OK) {
            // A diverged regression head (non-finite score): report the metrics as not measured.
            out->glue.count = ds->glue_task->metric_count;
            for (int k = 0; k < out->glue.count; k++) {
                out->glue.names[k] = ds->glue_task->metric_names[k];
                out->glue.values[k] = NAN;
            }
            out->glue.score = NAN;
        }
    }
    free(indices);
    free(logits);
    free(predictions);
    free(truths);
}

// evaluate_dataset on the evaluation split and, for MNLI (mismatched has examples), on
// dev_mismatched too: GLUE reports MNLI-m and MNLI-mm.
static void evaluate_splits(qft_model *model, qft_dataset *ds, qft_dataset *mismatched, qft_batch_buffer *buf,
                            int batch_size, eval_result *out) {
    evaluate_dataset(model, ds, buf, batch_size, out);
    if (mismatched->count == 0) return;
    eval_result mm;
    evaluate_dataset(model, mismatched, buf, batch_size, &mm);
    out->mnli_mm = (qft_mnli_mismatched){1, mm.base.examples, mm.base.loss, mm.base.accuracy};
}

// `, "key": value` with %.6f, or null for NaN/inf (not JSON numbers).
static void json_number(FILE *f, const char *key, double value) {
    if (isfinite(value)) fprintf(f, ", \"%s\": %.6f", key, value);
    else fprintf(f, ", \"%s\": null", key);
}

// The metrics.jsonl line of one evaluation: eval_split (eval.split), eval_loss, eval_accuracy,
// eval_examples and, for GLUE, eval_<metric> for each of the task's metrics plus eval_score (their
// mean, the GLUE task score); MNLI adds eval_mnli_mm_loss, eval_mnli_mm_accuracy and
// eval_mnli_mm_examples (dev_mismatched).
static void write_eval_line(FILE *f, long step, const char *split, const eval_result *ev) {
    fprintf(f, "{\"step\": %ld, \"eval_split\": \"%s\"", step, split);
    json_number(f, "eval_loss", ev->base.loss);
    json_number(f, "eval_accuracy", ev->base.accuracy);
    fprintf(f, ", \"eval_examples\": %ld", ev->base.examples);
    if (ev->imagefolder) fprintf(f, ", \"eval_skipped_files\": %ld, \"eval_corrupt_decodes\": %ld", ev->skipped, ev->corrupt);
    if (ev->task) {
        fprintf(f, ", \"eval_task\": \"%s\"", ev->task);
        char key[64];
        for (int k = 0; k < ev->glue.count; k++) {
            if (!strcmp(ev->glue.names[k], "accuracy")) continue;  // already eval_accuracy
            snprintf(key, sizeof key, "eval_%s", ev->glue.names[k]);
            json_number(f, key, ev->glue.values[k]);
        }
        json_number(f, "eval_score", ev->glue.score);
    }
    if (ev->mnli_mm.present) {
        json_number(f, "eval_mnli_mm_loss", ev->mnli_mm.loss);
        json_number(f, "eval_mnli_mm_accuracy", ev->mnli_mm.accuracy);
        fprintf(f, ", \"eval_mnli_mm_examples\": %ld", ev->mnli_mm.examples);
    }
    fprintf(f, "}\n");
}

// One stderr line: "eval loss L, accuracy A" ("validation loss" on eval.split validation) and the
// GLUE metrics.
static void print_eval_line(const char *prefix, const char *split, const eval_result *ev) {
    fprintf(stderr, "%s%s loss %.4f", prefix, strcmp(split, "validation") ? "eval" : "validation", ev->base.loss);
    if (isfinite(ev->base.accuracy)) fprintf(stderr, ", accuracy %.4f", ev->base.accuracy);
    if (ev->task) {
        fprintf(stderr, " (GLUE %s:", ev->task);
        for (int k = 0; k < ev->glue.count; k++) fprintf(stderr, " %s %.4f", ev->glue.names[k], ev->glue.values[k]);
        if (ev->glue.count > 1) fprintf(stderr, ", score %.4f", ev->glue.score);
        if (ev->mnli_mm.present) fprintf(stderr, "; mismatched: accuracy %.4f", ev->mnli_mm.accuracy);
        fprintf(stderr, ")");
    }
    fprintf(stderr, "\n");
}

static void progress_bar(long step, long total, double loss, double its, double eta) {
    int width = 24, filled = total > 0 ? (int)((double)width * step / total) : 0;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r[%s] step %ld/%ld  loss %.4f  %.1f it/s  ETA %dm%02ds ", bar, step, total, loss, its,
            (int)eta / 60, (int)eta % 60);
}

typedef struct {
    qft_model model;
    qft_optimizer opt;
    qft_kd kd;            // kd.enabled: the frozen teacher (kd.model == NULL otherwise)
    qft_dataset train, eval, eval_mm;  // eval_mm: MNLI dev_mismatched, else empty
    qft_batch_buffer train_buf, eval_buf;
    int *order;
    FILE *metrics;
    qft_oscillation *oscillation;  // NULL unless oscillation control is on
    qft_methods methods;
} train_state;

static void train_state_free(train_state *s) {
    qft_oscillation_free(s->oscillation);
    if (s->metrics) fclose(s->metrics);
    free(s->order);
    qft_batch_buffer_free(&s->train_buf);
    qft_batch_buffer_free(&s->eval_buf);
    qft_dataset_free(&s->train);
    qft_dataset_free(&s->eval);
    qft_dataset_free(&s->eval_mm);
    qft_methods_free(&s->methods);
    if (s->model.be) qft_optimizer_free(&s->opt, &s->model);
    qft_kd_free(&s->kd);
    qft_model_free(&s->model);
}

#define TRY(expr)                         \
    do {                                  \
        status = (expr);                  \
        if (status != QFT_OK) goto done;  \
    } while (0)

// A step checkpoint with the methods' state (the oscillation tracker, the noise histograms) beside the model and
// optimizer.
static qft_status save_checkpoint(train_state *s, const char *run_dir, uint64_t seed, qft_train_summary *out,
                                  qft_error *err) {
    int tracker = qft_oscillation_tensor_count(s->oscillation), noise = qft_noise_tensor_count(&s->methods.noise);
    int capacity = tracker + noise;
    qft_write_tensor *extra = capacity ? calloc((size_t)capacity, sizeof *extra) : NULL;
    if (capacity && !extra) return qft_fail(err, QFT_ERR_OOM, "out of memory staging a checkpoint");
    int count = tracker ? qft_oscillation_collect(s->oscillation, extra, tracker) : 0;
    qft_status st = tracker && count == 0 ? qft_fail(err, QFT_ERR_OOM, "out of memory staging the oscillation state")
                                          : QFT_OK;
    if (noise) count += qft_noise_collect(&s->methods.noise, extra + count, noise);
    if (st == QFT_OK)
        st = qft_checkpoint_save(run_dir, &s->model, &s->opt, (unsigned long)seed, 2, extra, count, out->checkpoint,
                                 sizeof out->checkpoint, err);
    free(extra);
    return st;
}

// The oscillation tracker's state and the noise histograms of a resumed checkpoint (none in checkpoints
// written without them).
static qft_status load_method_state(train_state *s, const char *path, qft_error *err) {
    if (!s->oscillation && !qft_noise_tensor_count(&s->methods.noise)) return QFT_OK;
    qft_safetensors file;
    qft_status st = qft_safetensors_open(&file, path, err);
    if (st) return st;
    st = qft_oscillation_load(s->oscillation, &file, err);
    if (st == QFT_OK) st = qft_noise_load(&s->methods.noise, &file, err);
    qft_safetensors_close(&file);
    return st;
}

// Quantization-aware training starts from quantizer parameters: the resumed checkpoint's, else the
// calibration file (quant.calibration or <run>/calibration.safetensors), else a calibration on
// quant.calib_batches training batches now (written to the run directory). Then quantization is on.
static qft_status quant_training_start(const qft_config *cfg, train_state *s, const char *run_dir, qft_error *err) {
    qft_quant_state *q = &s->model.quant;
    int calibrated = 1;
    for (int i = 0; i < q->count; i++)
        if (q->sites[i].fmt.enabled && !q->sites[i].calibrated) calibrated = 0;
    if (!calibrated) {
        char path[2200];
        qft_calibration_path(cfg, path, sizeof path);
        if (cfg->quant.calibration[0] || access(path, F_OK) == 0) {
            qft_status status = qft_quant_io_load_path(q, path, "", err);
            if (status) return status;
            fprintf(stderr, "quantizers: calibration from %s\n", path);
        } else {
            qft_calibrate_summary cal = {0};
            int B = cfg->data.batch_size;
            qft_status status = qft_calibrate_model(&s->model, &s->train, &s->train_buf, B, cfg->quant.calib_batches,
                                                    &cal, err);
            if (status == QFT_OK)
                status = qft_calibration_save(&s->model, run_dir, cfg->model.init_from[0] ? cfg->model.init_from : "",
                                              &cal, err);
            if (status) return status;
            fprintf(stderr, "quantizers: calibrated %d site(s) on %ld example(s): %s\n", cal.sites, cal.examples,
                    cal.path);
        }
    }
    q->mode = QFT_QUANT_ON;
    return QFT_OK;
}

qft_status qft_train(const qft_config *cfg, volatile sig_atomic_t *stop_flag, qft_train_summary *out,
                     qft_error *err) {
    memset(out, 0, sizeof *out);
    out->final_loss = out->eval_loss = out->eval_accuracy = NAN;  // "not measured in this run"
    qft_apply_threads(cfg);
    train_state s;
    memset(&s, 0, sizeof s);
    qft_status status = QFT_OK;
    const qft_train_config *hp = &cfg->train;
    char run_dir[1100], path[2200];
    qft_run_dir(cfg, run_dir, sizeof run_dir);
    TRY(qft_make_dirs(run_dir, err));
    snprintf(path, sizeof path, "%s/config.yaml", run_dir);
    TRY(qft_config_write(cfg, path, err));

    TRY(qft_dataset_open(&s.train, cfg, QFT_SPLIT_TRAIN, err));
    TRY(open_eval_splits(cfg, &s.eval, &s.eval_mm, err));
    snprintf(out->eval_split, sizeof out->eval_split, "%s", cfg->eval.split);
    out->train_examples = s.train.count;
    // Evaluation during training reuses the training activations, so it runs in chunks of at most
    // the training batch (a larger eval batch would size every activation buffer for it).
    int B = cfg->data.batch_size;
    int EB = cfg->data.eval_batch_size < B ? cfg->data.eval_batch_size : B;
    long batches_per_epoch = s.train.count / B;
    if (batches_per_epoch < 1) {
        status = qft_fail(err, QFT_ERR_INVALID, "data.batch_size %d is larger than the training set (%d examples)", B,
                          s.train.count);
        goto done;
    }
    long total_steps = hp->steps > 0 ? hp->steps : (long)hp->epochs * batches_per_epoch / hp->grad_accum;
    if (total_steps < 1) {
        status = qft_fail(err, QFT_ERR_INVALID, "train.steps and train.epochs give no optimizer step");
        goto done;
    }
    const qft_backend *be = qft_backend_cpu();
    TRY(qft_model_create(&s.model, &cfg->model, B, cfg->data.max_seq_len, be, (uint64_t)cfg->run.seed, err));
    s.model.label_smoothing = (float)hp->label_smoothing;
    if (cfg->kd.enabled) {
        // Before the student's import: the teacher starts from the same seeded init (see qft_kd_init).
        const char *teacher = cfg->kd.teacher[0] ? cfg->kd.teacher : cfg->model.init_from;
        FILE *log = strcmp(teacher, cfg->model.init_from) != 0 ? stderr : NULL;  // else the student's import says it
        TRY(qft_kd_init(&s.kd, &s.model, &cfg->kd, cfg->model.init_from, cfg->model.ignore_mismatched_sizes, log,
                        err));
        fprintf(stderr, "kd: teacher %s (alpha %g, temperature %g, hidden_weight %g)\n", teacher, cfg->kd.alpha,
                cfg->kd.temperature, cfg->kd.hidden_weight);
    }
    if (cfg->model.init_from[0]) {
        int missing_head = 0;
        TRY(qft_model_import_pretrained(&s.model, cfg->model.init_from, cfg->model.ignore_mismatched_sizes, stderr,
                                        &missing_head, err));
    }
    TRY(qft_model_quant_configure(&s.model, &cfg->quant.rules, err));
    TRY(qft_methods_init(&s.methods, cfg, &s.model, err));
    TRY(qft_optimizer_create(&s.opt, &s.model, hp, total_steps, (float)cfg->quant.scale_lr, cfg->quant.freeze_after,
                             err));
    TRY(qft_oscillation_create(&s.oscillation, &s.model, &cfg->oscillation, err));
    TRY(qft_batch_buffer_init(&s.train_buf, &s.train, B, err));
    TRY(qft_batch_buffer_init(&s.eval_buf, &s.eval, EB, err));
    s.order = malloc((size_t)s.train.count * sizeof(int));
    if (!s.order) {
        status = qft_fail(err, QFT_ERR_OOM, "out of memory for the epoch order");
        goto done;
    }

    // Resume: auto = newest checkpoint of this run if any; never; or an explicit path.
    char resume_path[2200] = "";
    if (strcmp(hp->resume, "auto") == 0) {
        if (!qft_checkpoint_latest(run_dir, resume_path, sizeof resume_path)) resume_path[0] = '\0';
    } else if (strcmp(hp->resume, "never") != 0) {
        snprintf(resume_path, sizeof resume_path, "%s", hp->resume);
    } else {
        int removed = qft_checkpoint_remove_all(run_dir);
        if (removed) fprintf(stderr, "train.resume=never: removed %d old checkpoint(s) of %s\n", removed, run_dir);
    }
    if (resume_path[0]) {
        long saved_total = -1;
        TRY(qft_checkpoint_load(resume_path, &s.model, &s.opt, &saved_total, err));
        TRY(load_method_state(&s, resume_path, err));
        out->resumed = 1;
        fprintf(stderr, "resumed from %s at step %ld\n", resume_path, s.opt.step);
        // The schedule depends on the run length: a different length is a different run.
        if (saved_total > 0 && saved_total != total_steps)
            fprintf(stderr, "warning: the checkpoint was written by a %ld-step run, this run has %ld steps: the "
                    "learning-rate schedule changes, so results differ from an uninterrupted run\n", saved_total,
                    total_steps);
    }
    if (s.model.quant.enabled_count > 0) TRY(quant_training_start(cfg, &s, run_dir, err));
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    s.metrics = fopen(path, out->resumed ? "a" : "w");
    if (!s.metrics) {
        status = qft_fail(err, QFT_ERR_IO, "%s: cannot open for writing: %s", path, strerror(errno));
        goto done;
    }

    int tty = isatty(2);
    long start_step = s.opt.step, loaded_epoch = -1;
    double loss_window = 0.0, task_window = 0.0, penalty_window = 0.0, t_start = now_seconds(), t_loop = 0.0;
    // Distillation: the task loss and the two KD terms are logged apart from the total.
    double kd_window = 0.0, kd_hidden_window = 0.0;
    int kd_on = cfg->kd.enabled;
    double alpha = cfg->kd.alpha;
    int window = 0;
    uint64_t seed = (uint64_t)cfg->run.seed;
    while (s.opt.step < total_steps) {
        if (stop_flag && *stop_flag) {
            out->interrupted = 1;
            break;
        }
        double t0 = now_seconds();
        qft_model_zero_grads(&s.model);
        qft_quant_zero_grads(&s.model.quant);
        double step_loss = 0.0, step_task = 0.0, step_kd = 0.0, step_kd_hidden = 0.0, step_penalty = 0.0;
        for (int micro = 0; micro < hp->grad_accum; micro++) {
            // The global micro-batch index fixes epoch and position: resuming needs only the step.
            long k = s.opt.step * hp->grad_accum + micro;
            long epoch = k / batches_per_epoch, slot = k % batches_per_epoch;
            if (s.train.kind == QFT_DATASET_IMAGEFOLDER) {
                // The loader's order is keyed by (seed, epoch) too; a resume starts it at slot.
                int got = 0;
                TRY(qft_dataset_loader_fill(&s.train, epoch, (int)slot, &s.train_buf, &got, err));
            } else {
                if (epoch != loaded_epoch) {
                    qft_epoch_order(s.order, s.train.count, seed, (uint64_t)epoch, cfg->data.shuffle);
                    loaded_epoch = epoch;
                }
                qft_dataset_fill(&s.train, s.order + slot * B, B, &s.train_buf);
            }
            TRY(qft_model_set_batch(&s.model, &s.train_buf.batch, err));
            uint64_t rng_step = (uint64_t)k;
            if (kd_on) qft_kd_teacher_forward(&s.kd);
            qft_methods_begin_micro(&s.methods, s.opt.step, total_steps, micro, seed, rng_step,
                                    1.0f / (float)hp->grad_accum);
            float loss = qft_model_forward(&s.model, 1, seed, rng_step);
            TRY(qft_model_quant_check(&s.model, err));
            double total = loss;
            if (kd_on) {
                // alpha = 1 drops the task term, so a batch without labels (loss NaN) still trains.
                total = qft_kd_loss(&s.kd) + (alpha < 1.0 ? (1.0 - alpha) * loss : 0.0);
                step_kd += s.kd.logit_loss / hp->grad_accum;
                step_kd_hidden += s.kd.hidden_loss / hp->grad_accum;
            }
            qft_model_backward(&s.model, 1.0f / (float)hp->grad_accum, seed, rng_step);
            qft_methods_end_micro(&s.methods);
            // The loss is the task (or KD) loss + lambda * L_out (the penalty's gradient went in through the
            // site hooks).
            double weighted_penalty, raw_penalty;
            qft_methods_take_penalty(&s.methods, &weighted_penalty, &raw_penalty);
            step_task += loss / hp->grad_accum;
            step_penalty += raw_penalty / hp->grad_accum;
            step_loss += (total + weighted_penalty) / hp->grad_accum;
        }
        if (!isfinite(step_loss)) {
            status = qft_fail(err, QFT_ERR_INVALID, "training diverged: loss is %f at step %ld (lower train.lr?)",
                              step_loss, s.opt.step);
            goto done;
        }
        float lr = qft_schedule_lr(hp, s.opt.step, total_steps);
        qft_oscillation_before_step(s.oscillation, &s.model, s.opt.step, total_steps);
        float grad_norm = qft_optimizer_step(&s.opt, &s.model);
        qft_oscillation_after_step(s.oscillation, &s.model, s.opt.step, total_steps);
        t_loop += now_seconds() - t0;
        loss_window += step_loss;
        task_window += step_task;
        kd_window += step_kd;
        kd_hidden_window += step_kd_hidden;
        penalty_window += step_penalty;
        window++;
        long step = s.opt.step;
        if (step % hp->log_every == 0 || step == total_steps) {
            fprintf(s.metrics, "{\"step\": %ld, \"loss\": %.6f", step, loss_window / window);
            if (kd_on || s.methods.penalty.enabled) json_number(s.metrics, "task_loss", task_window / window);
            if (kd_on) {
                json_number(s.metrics, "kd_loss", kd_window / window);
                if (cfg->kd.hidden_weight > 0.0) json_number(s.metrics, "kd_hidden_loss", kd_hidden_window / window);
            }
            if (s.methods.penalty.enabled) {  // loss = task_loss + penalty_lambda * penalty
                double max_ratio, mean_ratio;
                qft_penalty_take_ratios(&s.methods.penalty, &max_ratio, &mean_ratio);
                fprintf(s.metrics, ", \"penalty\": %.6g, \"penalty_lambda\": %.6g, \"penalty_max_sigma\": %.4g"
                        ", \"penalty_mean_sigma\": %.4g", penalty_window / window, s.methods.penalty.lambda_now,
                        max_ratio, mean_ratio);
            }
            fprintf(s.metrics, ", \"lr\": %.6g, \"grad_norm\": %.6g, \"ms_per_step\": %.3f", lr, grad_norm,
                    1000.0 * t_loop / (double)(step - start_step));
            if (s.oscillation) {
                qft_oscillation_stats os;
                qft_oscillation_stats_get(s.oscillation, &os);
                fprintf(s.metrics, ", \"osc_dampen_loss\": %.6g, \"osc_frozen\": %zu, \"osc_tracked\": %zu, "
                        "\"osc_oscillating\": %.6g", os.dampen_loss, os.frozen, os.tracked, os.oscillating);
            }
            fprintf(s.metrics, "}\n");
            fflush(s.metrics);
            out->final_loss = loss_window / window;
            loss_window = task_window = kd_window = kd_hidden_window = penalty_window = 0.0;
            window = 0;
        }
        if (tty) {
            double its = (double)(step - start_step) / (t_loop > 0 ? t_loop : 1e-9);
            progress_bar(step, total_steps, step_loss, its, (double)(total_steps - step) / (its > 0 ? its : 1));
        }
        long micro_done = step * hp->grad_accum;
        int epoch_end = hp->eval_every == 0 && micro_done / batches_per_epoch != (micro_done - hp->grad_accum) / batches_per_epoch;
        int eval_now = (hp->eval_every > 0 && step % hp->eval_every == 0) || epoch_end || step == total_steps;
        if (eval_now) {
            eval_result ev;
            evaluate_splits(&s.model, &s.eval, &s.eval_mm, &s.eval_buf, EB, &ev);
            write_eval_line(s.metrics, step, cfg->eval.split, &ev);
            fflush(s.metrics);
            if (tty) fprintf(stderr, "\n");
            char prefix[48];
            snprintf(prefix, sizeof prefix, "step %ld: ", step);
            print_eval_line(prefix, cfg->eval.split, &ev);
            out->eval_loss = ev.base.loss;
            out->eval_accuracy = ev.base.accuracy;
            out->glue = ev.task ? ev.glue : (qft_glue_metrics){0};
            out->mnli_mm = ev.mnli_mm;
        }
        if (hp->checkpoint_every > 0 && step % hp->checkpoint_every == 0 && step != total_steps)
            TRY(save_checkpoint(&s, run_dir, seed, out, err));
    }
    if (tty) fprintf(stderr, "\n");
    if (s.opt.step == start_step && !out->interrupted) {
        // Nothing left to train (a finished run resumed): still report where the model stands.
        eval_result ev;
        evaluate_splits(&s.model, &s.eval, &s.eval_mm, &s.eval_buf, EB, &ev);
        out->eval_loss = ev.base.loss;
        out->eval_accuracy = ev.base.accuracy;
        out->glue = ev.task ? ev.glue : (qft_glue_metrics){0};
        out->mnli_mm = ev.mnli_mm;
    }
    TRY(save_checkpoint(&s, run_dir, seed, out, err));
    snprintf(path, sizeof path, "%s/model.safetensors", run_dir);
    TRY(qft_model_export(&s.model, path, 0, err));
    if (s.train.kind == QFT_DATASET_IMAGEFOLDER) {
        // Decodes this run: a resume starts the loader at its position, so they cover only the steps run.
        fprintf(stderr, "imagefolder: train %ld file(s) skipped, %ld failed decode(s) of %ld; %s %ld skipped, %ld "
                "failed decode(s)\n", qft_dataset_skipped_files(&s.train), qft_dataset_corrupt_decodes(&s.train),
                qft_dataset_image_decodes(&s.train), eval_split(cfg) == QFT_SPLIT_VALIDATION ? "validation" : "val",
                qft_dataset_skipped_files(&s.eval), qft_dataset_corrupt_decodes(&s.eval));
    }
    out->steps_done = s.opt.step;
    out->steps_this_run = s.opt.step - start_step;
    out->train_seconds = now_seconds() - t_start;
    out->ms_per_step = out->steps_this_run > 0 ? 1000.0 * t_loop / (double)out->steps_this_run : 0.0;
    out->peak_rss_mb = peak_rss_mb();
done:
    train_state_free(&s);
    return status;
}

qft_status qft_evaluate(const qft_config *cfg, qft_eval_summary *out, qft_error *err) {
    memset(out, 0, sizeof *out);
    qft_apply_threads(cfg);
    qft_model model;
    qft_dataset ds, mismatched;
    qft_batch_buffer buf;
    memset(&model, 0, sizeof model);
    memset(&ds, 0, sizeof ds);
    memset(&mismatched, 0, sizeof mismatched);
    memset(&buf, 0, sizeof buf);
    qft_status status = QFT_OK;
    char path[2200];
    TRY(qft_eval_checkpoint_path(cfg, path, sizeof path, err));
    int EB = cfg->data.eval_batch_size;
    TRY(open_eval_splits(cfg, &ds, &mismatched, err));
    TRY(qft_model_create(&model, &cfg->model, EB, cfg->data.max_seq_len, qft_backend_cpu(), (uint64_t)cfg->run.seed,
                         err));
    TRY(qft_model_import(&model, path, NULL, NULL, err));
    int quantized = 0;
    TRY(qft_quant_prepare_eval(&model, cfg, path, &quantized, err));
    TRY(qft_batch_buffer_init(&buf, &ds, EB, err));
    eval_result ev;
    evaluate_splits(&model, &ds, &mismatched, &buf, EB, &ev);
    TRY(qft_model_quant_check(&model, err));
    *out = ev.base;
    snprintf(out->split, sizeof out->split, "%s", cfg->eval.split);
    out->quantized = quantized;
    out->glue = ev.task ? ev.glue : (qft_glue_metrics){0};
    out->mnli_mm = ev.mnli_mm;
    if (ev.task) print_eval_line("", cfg->eval.split, &ev);  // the GLUE metrics (the JSON line has loss and accuracy)
    if (ev.imagefolder)
        fprintf(stderr, "imagefolder: %s %ld file(s) skipped, %ld failed decode(s)\n",
                eval_split(cfg) == QFT_SPLIT_VALIDATION ? "validation" : "val", ev.skipped, ev.corrupt);
done:
    qft_batch_buffer_free(&buf);
    qft_dataset_free(&ds);
    qft_dataset_free(&mismatched);
    qft_model_free(&model);
    return status;
}

// Predicts every example of a test split and writes the submission file: "index\tprediction" rows
// in file order (the index GLUE expects is the row's position), class label names or STS-B scores.
static qft_status predict_split(qft_model *model, qft_dataset *ds, qft_batch_buffer *buf, int batch_size,
                                const char *path, qft_error *err) {
    const qft_glue_task_info *task = ds->glue_task;
    int *indices = malloc((size_t)batch_size * sizeof(int));
    float *logits = malloc((size_t)batch_size * model->num_labels * sizeof(float));
    char tmp[2300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = indices && logits ? fopen(tmp, "w") : NULL;
    qft_status status = QFT_OK;
    if (!f) {
        status = indices && logits ? qft_fail(err, QFT_ERR_IO, "%s: cannot open for writing: %s", tmp, strerror(errno))
                                   : qft_fail(err, QFT_ERR_OOM, "out of memory for a prediction batch");
        goto done;
    }
    fprintf(f, "index\tprediction\n");
    for (int start = 0; start < ds->count && status == QFT_OK; start += batch_size) {
        int n = ds->count - start < batch_size ? ds->count - start : batch_size;
        for (int i = 0; i < n; i++) indices[i] = start + i;
        qft_dataset_fill(ds, indices, n, buf);
        status = qft_model_set_batch(model, &buf->batch, err);
        if (status != QFT_OK) break;
        qft_model_forward(model, 0, 0, 0);
        qft_model_read_logits(model, logits);
        for (int i = 0; i < n; i++) {
            float prediction = head_prediction(logits + (size_t)i * model->num_labels, model->num_labels);
            if (task->is_regression) fprintf(f, "%d\t%.3f\n", start + i, (double)prediction);
            else fprintf(f, "%d\t%s\n", start + i, task->label_names[(int)prediction]);
        }
    }
    int write_failed = ferror(f);
    write_failed |= fclose(f) != 0;
    if (status == QFT_OK && write_failed) status = qft_fail(err, QFT_ERR_IO, "%s: write failed", tmp);
    if (status == QFT_OK && rename(tmp, path) != 0)
        status = qft_fail(err, QFT_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (status != QFT_OK) unlink(tmp);
done:
    free(indices);
    free(logits);
    return status;
}

qft_status qft_predict(const qft_config *cfg, qft_predict_summary *out, qft_error *err) {
    memset(out, 0, sizeof *out);
    if (strcmp(cfg->data.dataset, "glue") != 0)
        return qft_fail(err, QFT_ERR_INVALID, "data.dataset: qft predict writes GLUE test-set submissions, so it "
                        "needs glue, got %s", cfg->data.dataset);
    qft_apply_threads(cfg);
    qft_model model;
    qft_dataset ds;
    qft_batch_buffer buf;
    memset(&model, 0, sizeof model);
    memset(&ds, 0, sizeof ds);
    memset(&buf, 0, sizeof buf);
    qft_status status = QFT_OK;
    char path[2200], run_dir[1100], dir[1200];
    TRY(qft_eval_checkpoint_path(cfg, path, sizeof path, err));
    int EB = cfg->data.eval_batch_size;
    TRY(qft_model_create(&model, &cfg->model, EB, cfg->data.max_seq_len, qft_backend_cpu(), (uint64_t)cfg->run.seed,
                         err));
    TRY(qft_model_import(&model, path, NULL, NULL, err));
    int quantized = 0;
    TRY(qft_quant_prepare_eval(&model, cfg, path, &quantized, err));
    qft_run_dir(cfg, run_dir, sizeof run_dir);
    snprintf(dir, sizeof dir, "%s/predictions", run_dir);
    TRY(qft_make_dirs(dir, err));
    // MNLI has two test splits (matched, mismatched), every other task one.
    int splits[QFT_PREDICT_MAX_FILES] = {QFT_SPLIT_TEST, QFT_SPLIT_TEST_MISMATCHED}, mnli = 0;
    for (int k = 0; k < QFT_PREDICT_MAX_FILES && (k == 0 || mnli); k++) {
        TRY(qft_dataset_open(&ds, cfg, splits[k], err));
        mnli = is_mnli(&ds);
        const char *file =
            qft_glue_submission_file(ds.glue_task, splits[k] == QFT_SPLIT_TEST ? QFT_GLUE_TEST : QFT_GLUE_TEST_MISMATCHED);
        if (!buf.capacity) TRY(qft_batch_buffer_init(&buf, &ds, EB, err));
        snprintf(out->files[k], sizeof out->files[k], "%s/%s", dir, file);
        TRY(predict_split(&model, &ds, &buf, EB, out->files[k], err));
        out->examples[k] = ds.count;
        out->file_count = k + 1;
        fprintf(stderr, "predict: %s: %d test examples\n", out->files[k], ds.count);
        qft_dataset_free(&ds);
    }
done:
    qft_batch_buffer_free(&buf);
    qft_dataset_free(&ds);
    qft_model_free(&model);
    return status;
}
