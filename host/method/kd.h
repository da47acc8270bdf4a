// Knowledge distillation from a frozen floating-point teacher (Hinton et al. 2015, METHODS.md §9):
// the teacher's parameters, its forward through the student's model object, and the KD loss terms.
#ifndef QFT_METHOD_KD_H
#define QFT_METHOD_KD_H

#include <stdio.h>

#include "../core/status.h"
#include "../io/config.h"
#include "../model/model.h"

typedef struct {
    qft_model *model;
    float alpha, temperature, hidden_weight;
    float *teacher_params;          // [table.total_floats] backend memory: the only teacher copy
    float *teacher_logits;          // [max_B, L] of the current batch
    float *teacher_hidden;          // [max_B * max_T, D] teacher encoder output (hidden_weight > 0)
    float *p_student, *p_teacher;   // [max_B, L] temperature softmaxes saved for the backward
    float *row_losses;              // [max_B] per-row KL
    double logit_loss;              // last qft_kd_loss: T^2 * mean KL (regression: MSE to the teacher)
    double hidden_loss;             // last qft_kd_loss: mean squared encoder-output difference
    qft_output_loss hook;           // what qft_model_backward calls (model->output_loss)
} qft_kd;

// Sets up distillation for model m, created moments ago and still holding its seeded random init:
// the teacher buffer starts as a copy of it, then cfg->teacher (else init_from) is imported, so a head
// the file lacks gets exactly the student's initial head. Installs the backward hook on m and, when
// hidden_weight > 0 on ViT/DeiT, computes every token of the last layer (prune_last_layer = 0).
qft_status qft_kd_init(qft_kd *kd, qft_model *m, const qft_kd_config *cfg, const char *init_from,
                       int ignore_mismatched_sizes, FILE *log, qft_error *err);
void qft_kd_free(qft_kd *kd);

// After qft_model_set_batch, before the student's forward: the teacher forward (quantization off, no
// dropout) through the same model; keeps only its logits (and encoder output when hidden_weight > 0).
void qft_kd_teacher_forward(qft_kd *kd);

// After the student's forward: the distillation terms of this batch (kd->logit_loss, kd->hidden_loss)
// and the saved softmaxes the backward hook uses. Returns their weighted sum
// alpha * logit_loss + hidden_weight * hidden_loss.
double qft_kd_loss(qft_kd *kd);

#endif
