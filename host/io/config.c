// Run configuration: one schema table (key, type, storage, default, range, doc) drives defaults,
// YAML and override parsing with file:line errors, validation, resolved-YAML output and the docs.
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "../data/glue.h"
#include "config_quant.h"

// ---------------------------------------------------------------------------------------------
// The schema

typedef enum { KEY_INTEGER, KEY_REAL, KEY_BOOL, KEY_STRING, KEY_ENUM, KEY_REAL_LIST, KEY_QUANT_RULES } config_key_type;

typedef struct {
    const char *name;           // dotted key: "train.lr"
    config_key_type type;
    size_t offset;              // into qft_config
    size_t size;                // of the field: int or long for integers, the array for strings
    long long int_default;      // KEY_INTEGER, KEY_BOOL
    double real_default;        // KEY_REAL
    qft_real_list list_default; // KEY_REAL_LIST
    unsigned list_lengths;      // KEY_REAL_LIST: bit n set = a list of n values is allowed
    const char *string_default; // KEY_STRING, KEY_ENUM
    long long int_min, int_max; // KEY_INTEGER, inclusive
    double real_min, real_max;  // KEY_REAL, each value of KEY_REAL_LIST; +-INFINITY = unbounded on that side
    int min_open, max_open;     // the same: bound excluded
    const char *choices;        // KEY_ENUM: "a|b|c"
    const char *doc;            // one line, no '|' (it goes into a Markdown table)
} config_key;

typedef struct {
    const char *name;
    const char *doc;
} config_section;

static const config_section config_sections[] = {
    {"run", "Where the run writes its outputs, and its seed."},
    {"model", "Architecture and initialization. Vision keys apply to `vit`/`deit`, text keys to `bert`."},
    {"data", "Dataset, batching and preprocessing."},
    {"train", "Optimizer (AdamW), learning-rate schedule, logging and checkpoints."},
    {"eval", "What `qft eval` and the evaluations during `qft train` run on."},
    {"oscillation", "Weight-oscillation control for low-bit QAT (Nagel et al. 2022): dampening loss and freezing of weights whose integer code keeps flipping. Needs enabled weight quant sites; see docs/methods.md."},
    {"quant", "Fake quantization: which sites are quantized and how (`qft quant-sites` lists the sites and the rule each matched), calibration. Ready rule lists: `configs/quant/*.yaml`, given as a second `--config`."},
    {"kd", "Knowledge distillation from the floating-point teacher (Hinton et al. 2015; docs/methods.md): loss = (1 - alpha) task + alpha T^2 KL(softmax(z_t/T) || softmax(z_s/T)) + hidden_weight MSE(encoder outputs); a regression head (num_labels 1) uses the MSE to the teacher's prediction as its distillation term."},
    {"penalty", "Outlier-range penalty fine-tuning [ours, QuantTune-style]: L = L_task + lambda * sum_l w_l (1/M_l) sum (relu(abs(x - mu_l) - tau_l) / sigma_l)^p over the chosen sites (docs/methods.md)."},
    {"noise", "Adaptive random-noise fine-tuning [ours]: during training, enabled quant sites replace Q(x) by x + a_site * step * eps (or Quant-Noise's Bernoulli mix); evaluation uses the real quantizer (docs/methods.md)."},
};
#define SECTION_COUNT (sizeof config_sections / sizeof config_sections[0])

// Compile-time check that a field has one of the listed C types (a mismatch fails _Generic).
#define FIELD(f, ...)                                                                          \
    .offset = offsetof(qft_config, f) +                                                        \
              0 * sizeof(char[_Generic(((qft_config *)0)->f, __VA_ARGS__)]),                   \
    .size = sizeof(((qft_config *)0)->f)
#define INTEGER(key, f, def, lo, hi, text)                                                     \
    {.name = key, .type = KEY_INTEGER, FIELD(f, int: 1, long: 1), .int_default = def,          \
     .int_min = lo, .int_max = hi, .doc = text}
#define REAL(key, f, def, lo, lo_open, hi, hi_open, text)                                      \
    {.name = key, .type = KEY_REAL, FIELD(f, double: 1), .real_default = def, .real_min = lo,  \
     .min_open = lo_open, .real_max = hi, .max_open = hi_open, .doc = text}
#define BOOL(key, f, def, text)                                                                \
    {.name = key, .type = KEY_BOOL, FIELD(f, int: 1), .int_default = def, .doc = text}
#define STRING(key, f, def, text)                                                              \
    {.name = key, .type = KEY_STRING, FIELD(f, char *: 1), .string_default = def, .doc = text}
#define ENUM(key, f, def, list, text)                                                          \
    {.name = key, .type = KEY_ENUM, FIELD(f, char *: 1), .string_default = def,                \
     .choices = list, .doc = text}
#define QUANT_RULES(key, f, text)                                                             \
    {.name = key, .type = KEY_QUANT_RULES, FIELD(f, qft_quant_rule_list: 1), .doc = text}
// A list key's default and allowed lengths: REAL_LIST(..., VALUES(1, 0.5), LENGTH(1) | LENGTH(3), ...).
#define REAL_LIST(key, f, def, lengths, lo, lo_open, hi, hi_open, text)                        \
    {.name = key, .type = KEY_REAL_LIST, FIELD(f, qft_real_list: 1), .list_default = def,      \
     .list_lengths = lengths, .real_min = lo, .min_open = lo_open, .real_max = hi,            \
     .max_open = hi_open, .doc = text}
#define VALUES(n, ...) {.count = n, .values = {__VA_ARGS__}}
#define LENGTH(n) (1u << (n))
#define CLOSED 0
#define OPEN 1

static const config_key config_keys[] = {
    STRING("run.name", run.name, "vit_fmnist",
           "Run name: outputs (config.yaml, metrics.jsonl, report.md, checkpoints) go to run.dir/run.name/."),
    STRING("run.dir", run.dir, "runs", "Parent directory of all run directories."),
    INTEGER("run.seed", run.seed, 1337, 0, LONG_MAX,
            "Seed of every random stream (init, dropout, shuffling, noise): same seed, same run."),
    INTEGER("run.threads", run.threads, 0, 0, 1024, "CPU threads for the CPU backend; 0 = all cores."),

    ENUM("model.type", model.type, "vit", "vit|deit|bert",
         "Architecture: `vit`/`deit` classify images from patches, `bert` is a text encoder."),
    INTEGER("model.hidden_size", model.hidden_size, 64, 1, 65536,
            "Width of the residual stream; a multiple of model.num_heads."),
    INTEGER("model.num_layers", model.num_layers, 4, 1, 1000, "Number of transformer blocks."),
    INTEGER("model.num_heads", model.num_heads, 4, 1, 1024, "Attention heads per block."),
    INTEGER("model.intermediate_size", model.intermediate_size, 256, 1, 1 << 20,
            "Width of the MLP's hidden layer."),
    ENUM("model.hidden_act", model.hidden_act, "gelu", "gelu|gelu_tanh",
         "MLP activation: `gelu` (exact, erf) or `gelu_tanh` (tanh approximation)."),
    REAL("model.layer_norm_eps", model.layer_norm_eps, 1e-6, 0, OPEN, 1, OPEN,
         "Epsilon added to the variance in every LayerNorm."),
    REAL("model.dropout", model.dropout, 0.0, 0, CLOSED, 0.9, CLOSED,
         "Hidden dropout probability; 0 = off."),
    INTEGER("model.num_labels", model.num_labels, 10, 1, 100000,
            "Classifier outputs; 1 = regression (bert)."),
    INTEGER("model.image_size", model.image_size, 28, 1, 65536,
            "Side of the square input image in pixels; a multiple of model.patch_size."),
    INTEGER("model.patch_size", model.patch_size, 7, 1, 65536, "Side of a square patch in pixels."),
    INTEGER("model.num_channels", model.num_channels, 1, 1, 16, "Input image channels (1 = grayscale)."),
    INTEGER("model.vocab_size", model.vocab_size, 30522, 1, 1 << 24, "Token vocabulary size (bert)."),
    INTEGER("model.max_position_embeddings", model.max_position_embeddings, 512, 1, 1 << 20,
            "Longest sequence the position table covers (bert)."),
    INTEGER("model.type_vocab_size", model.type_vocab_size, 2, 1, 1024,
            "Number of token-type (segment) ids (bert)."),
    BOOL("model.pooler", model.pooler, 1,
         "Apply the dense+tanh pooler to the first token before the classifier."),
    STRING("model.init_from", model.init_from, "",
           "safetensors file (Hugging Face names) to initialize from; empty = random init."),
    STRING("model.hf_config", model.hf_config, "",
           "Hugging Face config.json: the architecture keys (type, sizes, heads, act, eps, vocab, "
           "positions, image/patch/channels, labels, dropout) start from it; model keys written in "
           "the YAML or as overrides still win. Empty = none."),
    BOOL("model.ignore_mismatched_sizes", model.ignore_mismatched_sizes, 0,
         "model.init_from: a head tensor (classifier, DeiT heads, pooler) whose shape differs from the model's (a checkpoint fine-tuned for another number of labels) keeps its random init and is listed on stderr instead of failing, as Hugging Face's from_pretrained(ignore_mismatched_sizes=True); any other shape mismatch is still an error."),
    REAL("model.init_std", model.init_std, 0.02, 0, CLOSED, 1, CLOSED,
         "Standard deviation of the random weight init."),

    ENUM("data.dataset", data.dataset, "fashion_mnist", "fashion_mnist|synthetic_text|glue|imagefolder",
         "`fashion_mnist` (28x28 grayscale, 10 classes; needs vit/deit), `synthetic_text` (generated token sequences; needs bert), `glue` (a GLUE task's TSV files tokenized with WordPiece; needs bert; evaluates on dev, MNLI on dev_matched) or `imagefolder` (ImageNet-layout JPEG/PNG folders `<data.path>/train/<class>/...` and `<data.path>/val/<class>/...`, decoded by a threaded loader; needs vit/deit with model.num_channels 3; the number of classes must equal model.num_labels)."),
    STRING("data.path", data.path, "",
           "Dataset directory; empty = where Debian's dataset-fashion-mnist installs it. `glue`: the GLUE root, holding `<TASK>/train.tsv` and `<TASK>/dev.tsv` (e.g. `RTE/`, `STS-B/`, `MNLI/dev_matched.tsv`); `imagefolder`: the root holding `train/` and `val/`; checked when the data is opened."),
    ENUM("data.task", data.task, "", "|cola|sst2|mrpc|stsb|qqp|mnli|qnli|rte|wnli",
         "GLUE task; required for data.dataset `glue`, which then needs model.num_labels = 1 for `stsb` (regression), 3 for `mnli`, else 2."),
    STRING("data.vocab", data.vocab, "",
           "WordPiece vocab.txt of the model (`glue`); required when the data is opened, so presets may leave it empty."),
    BOOL("data.do_lower_case", data.do_lower_case, 1,
         "Lower-case and strip accents before WordPiece (uncased models); false for cased vocabularies."),
    INTEGER("data.batch_size", data.batch_size, 128, 1, 1 << 20, "Training examples per batch."),
    INTEGER("data.eval_batch_size", data.eval_batch_size, 500, 1, 1 << 20,
            "Examples per evaluation batch."),
    INTEGER("data.max_seq_len", data.max_seq_len, 128, 1, 8192,
            "Tokens per text example, at most model.max_position_embeddings."),
    REAL_LIST("data.normalize_mean", data.normalize_mean, VALUES(1, 0.2860), LENGTH(1) | LENGTH(3), -INFINITY,
              CLOSED, INFINITY, CLOSED,
              "Pixel mean subtracted after scaling pixels to [0, 1], as torchvision's Normalize: `(x - mean[c]) / std[c]`. One number for every channel, or one per channel (`[0.485, 0.456, 0.406]`; as many as model.num_channels). Use the pretrained model's values: Hugging Face ViT checkpoints 0.5, DeiT/timm ImageNet models `[0.485, 0.456, 0.406]`."),
    REAL_LIST("data.normalize_std", data.normalize_std, VALUES(1, 0.3530), LENGTH(1) | LENGTH(3), 0, OPEN,
              INFINITY, CLOSED,
              "Pixel standard deviation divided out after subtracting the mean: one number or one per channel, like data.normalize_mean (HF ViT: 0.5; DeiT/timm ImageNet: `[0.229, 0.224, 0.225]`)."),
    INTEGER("data.workers", data.workers, 2, 1, 256,
            "Image decoding threads of the `imagefolder` loader (results do not depend on it)."),
    ENUM("data.interpolation", data.interpolation, "bilinear", "bilinear|bicubic",
         "Resampling filter of the `imagefolder` resize and random resized crop (Pillow's)."),
    REAL("data.crop_ratio", data.crop_ratio, 0.875, 0, OPEN, 1, CLOSED,
         "`imagefolder` evaluation: resize the shorter side to round(model.image_size / crop_ratio), then center-crop model.image_size."),
    BOOL("data.shuffle", data.shuffle, 1, "Reshuffle the training set every epoch (seeded by run.seed)."),
    INTEGER("data.train_limit", data.train_limit, 0, 0, LONG_MAX,
            "Use only N training examples; 0 = all. The first N, except `imagefolder`: N images keeping every class (each class keeps a share proportional to its size, at least one image, evenly strided over its sorted files; N below the number of classes is an error)."),
    INTEGER("data.eval_limit", data.eval_limit, 0, 0, LONG_MAX,
            "Use only N evaluation examples; 0 = all. Chosen as for data.train_limit."),
    INTEGER("data.validation_size", data.validation_size, 0, 0, LONG_MAX,
            "Hold N examples out of the training split as the validation split (eval.split `validation`), so hyper-parameters can be chosen without the test set; 0 = none. Taken after data.train_limit, from its M examples; training keeps the other M - N (steps per epoch follow), and calibration (`qft calibrate`, QAT start) and `qft analyze` draw only from those. The picks do not depend on run.seed: examples floor(i * M / N), i = 0..N-1 (evenly spaced), except `imagefolder`: the N images data.train_limit = N would keep (every class, proportional to its size, evenly strided; N below the number of classes is an error). N >= M is an error. data.eval_limit does not apply to it."),

    INTEGER("train.epochs", train.epochs, 15, 0, 100000,
            "Passes over the training set; used when train.steps is 0."),
    INTEGER("train.steps", train.steps, 0, 0, LONG_MAX,
            "Total optimizer steps; 0 = derive from train.epochs."),
    REAL("train.lr", train.lr, 2e-3, 0, CLOSED, 10, CLOSED, "Peak learning rate."),
    REAL("train.min_lr_ratio", train.min_lr_ratio, 0.0, 0, CLOSED, 1, CLOSED,
         "Final learning rate as a fraction of train.lr."),
    ENUM("train.schedule", train.schedule, "cosine", "cosine|linear|constant",
         "Learning-rate decay after warmup."),
    INTEGER("train.warmup_steps", train.warmup_steps, 200, 0, LONG_MAX,
            "Steps of linear warmup from 0 to train.lr."),
    REAL("train.weight_decay", train.weight_decay, 0.05, 0, CLOSED, 10, CLOSED,
         "AdamW decoupled weight decay."),
    REAL("train.beta1", train.beta1, 0.9, 0, CLOSED, 1, OPEN, "AdamW first-moment decay."),
    REAL("train.beta2", train.beta2, 0.999, 0, CLOSED, 1, OPEN, "AdamW second-moment decay."),
    REAL("train.adam_eps", train.adam_eps, 1e-8, 0, OPEN, 1, CLOSED, "AdamW denominator epsilon."),
    REAL("train.grad_clip", train.grad_clip, 1.0, 0, CLOSED, INFINITY, CLOSED,
         "Clip the global gradient L2 norm to this; 0 = off."),
    INTEGER("train.grad_accum", train.grad_accum, 1, 1, 65536,
            "Batches whose gradients are summed per optimizer step."),
    REAL("train.label_smoothing", train.label_smoothing, 0.0, 0, CLOSED, 1, OPEN,
         "Cross-entropy label smoothing."),
    INTEGER("train.log_every", train.log_every, 50, 1, LONG_MAX, "Write a metrics line every N steps."),
    INTEGER("train.eval_every", train.eval_every, 0, 0, LONG_MAX,
            "Evaluate every N steps; 0 = at the end of each epoch."),
    INTEGER("train.checkpoint_every", train.checkpoint_every, 0, 0, LONG_MAX,
            "Checkpoint every N steps; 0 = only at the end."),
    STRING("train.resume", train.resume, "auto",
           "`auto` = continue from the run directory's latest checkpoint if there is one, `never` = start fresh, else a checkpoint path."),
    BOOL("train.freeze_weights", train.freeze_weights, 0,
         "Keep the model's parameters fixed and train only learnable quantizer parameters (LSQ scales / LSQ+ offsets), as Quadapter trains its channel scales with the model frozen."),

    STRING("eval.checkpoint", eval.checkpoint, "",
           "Checkpoint to evaluate; empty = the latest in the run directory."),
    ENUM("eval.split", eval.split, "test", "test|validation",
         "Split of every evaluation of `qft train` (train.eval_every / epoch ends, the final one) and of `qft eval`: `test` = the held-out files (Fashion-MNIST t10k, `imagefolder` val/, GLUE dev; MNLI dev_matched and dev_mismatched) or `validation` = the data.validation_size examples held out of the training split (needs data.validation_size > 0; MNLI: no mismatched evaluation). JSON lines name it: `split` in `qft eval`'s, `eval_split` in `qft train`'s and in metrics.jsonl."),

    QUANT_RULES("quant.rules", quant.rules,
                "Rule list, first match wins: each site takes the format of the first rule whose `pattern` matches its name; sites no rule matches stay in floating point. A YAML file or override that sets the key replaces the whole list. Fields: table below."),
    REAL("oscillation.dampen_lambda", oscillation.dampen_lambda, 0.0, 0, CLOSED, 100, CLOSED,
         "Final weight of the dampening loss sum_l kernel_mean((sg(w_hat) - clamp(w))^2), reached by a cosine ramp after oscillation.start (Nagel et al.: 0.1); 0 = off."),
    REAL("oscillation.freeze_threshold", oscillation.freeze_threshold, 0.0, 0, CLOSED, 1, CLOSED,
         "Final oscillation-frequency threshold above which a weight freezes at its EMA code (Nagel et al.: 0.01-0.011 at 3-4 bits, at least 2-3x momentum); 0 = no freezing."),
    REAL("oscillation.freeze_threshold_start", oscillation.freeze_threshold_start, 0.1, 0, CLOSED, 1, CLOSED,
         "Freezing threshold right after oscillation.start; it follows a cosine down to oscillation.freeze_threshold."),
    REAL("oscillation.momentum", oscillation.momentum, 0.01, 0, OPEN, 1, CLOSED,
         "EMA factor m of the oscillation frequency f = m o + (1 - m) f and of the integer-code EMA."),
    REAL("oscillation.start", oscillation.start, 0.25, 0, CLOSED, 1, OPEN,
         "Fraction of training before dampening and freezing begin (tracking starts at step 1)."),
    INTEGER("oscillation.max_bits", oscillation.max_bits, 4, 2, 8,
            "Only weight quantizers with at most this many bits are tracked (oscillations matter at low bits)."),
    REAL("oscillation.bin_reg_lambda", oscillation.bin_reg_lambda, 0.0, 0, CLOSED, 100, CLOSED,
         "Final weight of VVTQ's bin regularizer (mean squared distance to the bin centre plus the variance of the weights sharing a code, per quantizer of every enabled per-tensor or per-channel weight site), on the same cosine ramp (VVTQ: 0.01); 0 = off."),

    INTEGER("quant.calib_batches", quant.calib_batches, 8, 1, 1 << 20,
            "Training batches (evaluation transform, no shuffling) that `qft calibrate` and `qft analyze` observe."),
    STRING("quant.calibration", quant.calibration, "",
           "Calibration state (`qft calibrate` writes `<run>/calibration.safetensors`) that `qft eval` and quantization-aware training start from; empty = that file in the run directory. Training with enabled sites and no calibration calibrates on quant.calib_batches first and writes the file."),
    REAL("quant.scale_lr", quant.scale_lr, 0.0, 0, CLOSED, 10, CLOSED,
         "Peak learning rate of learnable quantizer parameters (LSQ scales, LSQ+ offsets), on the train.lr schedule, without weight decay or clipping; 0 = train.lr."),
    INTEGER("quant.freeze_after", quant.freeze_after, 0, 0, LONG_MAX,
            "Freeze the quantizer ranges after this many optimizer steps: later steps leave learnable scales and offsets as they are (their AdamW moments are kept); 0 = never."),

    BOOL("kd.enabled", kd.enabled, 0,
         "Train against a frozen copy of the teacher (kd.teacher), run in the same process with quantization off before each student forward."),
    REAL("kd.alpha", kd.alpha, 0.5, 0, CLOSED, 1, CLOSED,
         "Weight of the distillation term; the task loss gets 1 - alpha (1 = distillation only; labels are then not needed)."),
    REAL("kd.temperature", kd.temperature, 1.0, 0, OPEN, 100, CLOSED,
         "Softmax temperature T of both logit sets; the KL is multiplied by T^2 so its gradient keeps its size."),
    REAL("kd.hidden_weight", kd.hidden_weight, 0.0, 0, CLOSED, 1e6, CLOSED,
         "Weight of the mean squared error between the student's and the teacher's encoder outputs (the last layer's output, all tokens); 0 = off."),
    STRING("kd.teacher", kd.teacher, "",
           "Safetensors of the teacher (same architecture); empty = model.init_from, the FP checkpoint fine-tuning starts from. Not stored in checkpoints: a resume reads it again."),

    REAL("penalty.lambda", penalty.lambda, 0.0, 0, CLOSED, 1e6, CLOSED,
         "Coefficient of the outlier-range penalty in the training loss; 0 = off."),
    STRING("penalty.sites", penalty.sites, "layers.*.ln?.output,layers.*.fc2.input,layers.*.resid?.output",
           "Comma-separated globs (`*` spans dots) over site names (`qft quant-sites` lists them): the penalized activations, quantized or not. fc1.input is the same tensor as an LN output and is left out of the default."),
    REAL("penalty.k", penalty.k, 6.0, 0, OPEN, 1e6, CLOSED,
         "mode sigma: the allowed range is mu +- k sigma of the tensor in the current step (6 = Bondarenko et al.'s outlier definition)."),
    REAL("penalty.p", penalty.p, 2.0, 1, CLOSED, 8, CLOSED, "Exponent of the excess beyond the range."),
    ENUM("penalty.mode", penalty.mode, "sigma", "sigma|quant_range",
         "`sigma`: range mu +- k sigma; `quant_range`: the site's current quantizer range where the site is quantized (else sigma)."),
    ENUM("penalty.weighting", penalty.weighting, "adaptive", "adaptive|uniform",
         "`adaptive`: w_l = min(max abs(x - mu) / tau, penalty.weight_max), stop-gradient (more stretched ranges weigh more); `uniform`: w_l = 1."),
    ENUM("penalty.normalize", penalty.normalize, "outliers", "outliers|elements",
         "Divisor M_l of a site's summed excess: `outliers` the number of elements beyond the range this step (every outlier pulls the same whatever the tensor size), `elements` all N_l elements."),
    REAL("penalty.weight_max", penalty.weight_max, 10.0, 1, CLOSED, 1e6, CLOSED, "Upper clip of the adaptive weight."),
    INTEGER("penalty.warmup_steps", penalty.warmup_steps, 0, 0, LONG_MAX,
            "lambda ramps up linearly over the first N optimizer steps; 0 = full from the start."),

    ENUM("noise.kind", noise.kind, "off", "off|uniform|gaussian|bernoulli|histogram",
         "Noise that stands in for the quantizer of enabled sites during training: `uniform` x + a step U(-1/2, 1/2), `gaussian` the same variance, `bernoulli` Quant-Noise's x + M (Q(x) - x) with M ~ Bernoulli(noise.p), `histogram` NIPQ's x + step eps with eps drawn from the site's measured rounding-residual histogram (256 bins; uniform until the first measurement; no amplitude). Needs quant.rules."),
    STRING("noise.sites", noise.sites, "*", "Comma-separated globs over the enabled sites that get noise; the others quantize for real."),
    REAL("noise.p", noise.p, 0.5, 0, CLOSED, 1, CLOSED, "kind bernoulli: probability that an element is quantized exactly."),
    REAL("noise.amplitude", noise.amplitude, 1.0, 0, CLOSED, 100, CLOSED,
         "a_site before the first adaptation (and always when noise.adapt_every = 0); not used by kind histogram."),
    INTEGER("noise.adapt_every", noise.adapt_every, 50, 0, LONG_MAX,
            "Every N optimizer steps a_site = clip(sqrt(12 mean(((Q(x) - x) / step)^2)), amplitude_min, amplitude_max) over the unclipped elements of the current batch (kind histogram: the histogram of (Q(x) - x) / step over them); 0 = never."),
    REAL("noise.amplitude_min", noise.amplitude_min, 0.5, 0, CLOSED, 100, CLOSED,
         "Lower clip of the adapted a_site (not used by kind histogram)."),
    REAL("noise.amplitude_max", noise.amplitude_max, 2.0, 0, CLOSED, 100, CLOSED,
         "Upper clip of the adapted a_site (not used by kind histogram)."),
    REAL("noise.anneal", noise.anneal, 0.0, 0, CLOSED, 1, CLOSED,
         "Over this last fraction of training the noise gives way (noise.anneal_to); 0 = no annealing."),
    ENUM("noise.anneal_to", noise.anneal_to, "quantizer", "quantizer|zero",
         "`quantizer`: each site uses its real quantizer on a micro-step with probability 1 - f (f falls linearly from 1 to 0 over noise.anneal), full-strength noise otherwise, so training ends as plain QAT; `zero`: the noise (a_site, p for bernoulli, eps for histogram) is scaled by f, ending with x clamped to the quantizer range but not rounded."),
};
#define KEY_COUNT (sizeof config_keys / sizeof config_keys[0])

// ---------------------------------------------------------------------------------------------
// Small helpers

static void *field_ptr(qft_config *cfg, const config_key *key) { return (char *)cfg + key->offset; }
static const void *field_cptr(const qft_config *cfg, const config_key *key) {
    return (const char *)cfg + key->offset;
}

static long long integer_get(const qft_config *cfg, const config_key *key) {
    if (key->size == sizeof(int)) return *(const int *)field_cptr(cfg, key);
    return *(const long *)field_cptr(cfg, key);
}

static void integer_set(qft_config *cfg, const config_key *key, long long value) {
    if (key->size == sizeof(int)) *(int *)field_ptr(cfg, key) = (int)value;
    else *(long *)field_ptr(cfg, key) = (long)value;
}

static long long integer_storage_max(const config_key *key) {
    return key->size == sizeof(int) ? INT_MAX : LONG_MAX;
}

// Copies len bytes into a char array field and zero-fills the rest, so equal configs compare equal
// byte for byte (the round-trip tests rely on it).
static void string_set(char *dst, size_t cap, const char *src, size_t len) {
    memset(dst, 0, cap);
    if (len >= cap) len = cap - 1;
    memcpy(dst, src, len);
}

static const config_key *key_find(const char *name, size_t len) {
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (strlen(config_keys[i].name) == len && memcmp(config_keys[i].name, name, len) == 0)
            return &config_keys[i];
    return NULL;
}

static int section_find(const char *name, size_t len) {
    for (size_t i = 0; i < SECTION_COUNT; i++)
        if (strlen(config_sections[i].name) == len && memcmp(config_sections[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

// Copies untrusted text for a one-line message: control bytes become '?', long text is cut
// (at a UTF-8 character boundary) and ends in "...".
static void text_for_message(char *out, size_t cap, const char *src, size_t len) {
    size_t limit = cap - 4; // room for "..." and NUL
    int cut = len > limit;
    size_t n = cut ? limit : len;
    if (cut)
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80) n--;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        out[i] = (c < 0x20 || c == 0x7F) ? '?' : (char)c;
    }
    if (cut) memcpy(out + n, "...", 3), n += 3;
    out[n] = '\0';
}

// Shortest form that reads back as exactly the same double: "10", "0.002", "1e-6".
static void real_format(char *buf, size_t cap, double value) {
    if (isfinite(value) && value == floor(value) && fabs(value) < 1e15) {
        snprintf(buf, cap, "%.0f", value);
        return;
    }
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(buf, cap, "%.*g", precision, value);
        if (strtod(buf, NULL) == value) break;
    }
    // "1e-06" -> "1e-6", "1e+20" -> "1e20"
    char *exponent = strchr(buf, 'e');
    if (exponent) {
        char *digits = exponent + 1, *write = exponent + 1;
        if (*digits == '-') *write++ = *digits++;
        else if (*digits == '+') digits++;
        while (*digits == '0' && digits[1]) digits++;
        memmove(write, digits, strlen(digits) + 1);
    }
}

static void real_format_yaml(char *buf, size_t cap, double value) {
    real_format(buf, cap, value);
    if (!strpbrk(buf, ".eEni")) strncat(buf, ".0", cap - strlen(buf) - 1);
}

// "[0, 10]", "(0, 1]", ">= 0", "> 0", "any"
#define RANGE_CAP 96
static void range_format(char *buf, size_t cap, const config_key *key) {
    if (key->type == KEY_INTEGER) {
        if (key->int_max >= integer_storage_max(key)) snprintf(buf, cap, ">= %lld", key->int_min);
        else snprintf(buf, cap, "[%lld, %lld]", key->int_min, key->int_max);
        return;
    }
    char lo[32], hi[32];
    real_format(lo, sizeof lo, key->real_min);
    real_format(hi, sizeof hi, key->real_max);
    int has_min = !isinf(key->real_min), has_max = !isinf(key->real_max);
    if (!has_min && !has_max) snprintf(buf, cap, "any");
    else if (!has_max) snprintf(buf, cap, "%s %s", key->min_open ? ">" : ">=", lo);
    else if (!has_min) snprintf(buf, cap, "%s %s", key->max_open ? "<" : "<=", hi);
    else snprintf(buf, cap, "%c%s, %s%c", key->min_open ? '(' : '[', lo, hi, key->max_open ? ')' : ']');
}

static int real_in_range(const config_key *key, double value) {
    if (!isfinite(value)) return 0;
    if (key->min_open ? value <= key->real_min : value < key->real_min) return 0;
    if (key->max_open ? value >= key->real_max : value > key->real_max) return 0;
    return 1;
}

static int enum_allows(const config_key *key, const char *value, size_t len) {
    const char *choice = key->choices;
    while (*choice) {
        size_t n = strcspn(choice, "|");
        if (n == len && memcmp(choice, value, len) == 0) return 1;
        choice += n;
        if (*choice == '|') choice++;
    }
    return 0;
}

static const char *type_expectation(const config_key *key) {
    switch (key->type) {
    case KEY_INTEGER: return "an integer";
    case KEY_REAL: return "a number";
    case KEY_BOOL: return "a boolean (true/false/yes/no/on/off/1/0)";
    case KEY_STRING: return "a string";
    case KEY_ENUM: return "a scalar";
    case KEY_QUANT_RULES: return "a list of rule mappings";
    case KEY_REAL_LIST: return "a number or a list of numbers";
    }
    return "a value";
}

// The allowed lengths of a list key in words: "1 or 3", "1, 2 or 3".
static void list_lengths_format(char *buf, size_t cap, const config_key *key) {
    int lengths[32], n = 0;
    for (int i = 0; i < 32; i++)
        if (key->list_lengths & LENGTH(i)) lengths[n++] = i;
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%d", i == 0 ? "" : i == n - 1 ? " or " : ", ", lengths[i]);
}

static int list_length_allowed(const config_key *key, int count) {
    return count >= 0 && count < 32 && (key->list_lengths & LENGTH(count)) != 0 && count <= QFT_REAL_LIST_MAX;
}

static int ascii_equal_nocase(const char *a, size_t len, const char *b) {
    if (strlen(b) != len) return 0;
    for (size_t i = 0; i < len; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = (char)(x - 'A' + 'a');
        if (x != y) return 0;
    }
    return 1;
}

// Edit distance, for "did you mean" suggestions; both strings are short (callers cap them).
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb) {
    size_t row[72];
    if (lb >= sizeof row / sizeof row[0]) return (size_t)-1;
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t above = row[j];
            size_t best = diagonal + (a[i - 1] != b[j - 1]);
            if (above + 1 < best) best = above + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    return row[lb];
}

// " (did you mean 'train.lr'?)" when a known key or section is close, else "".
static void suggestion_format(char *buf, size_t cap, const char *name, size_t len) {
    buf[0] = '\0';
    if (len == 0 || len > 64) return;
    const char *best = NULL;
    size_t best_distance = (size_t)-1;
    for (size_t i = 0; i < KEY_COUNT + SECTION_COUNT; i++) {
        const char *candidate = i < KEY_COUNT ? config_keys[i].name : config_sections[i - KEY_COUNT].name;
        size_t d = edit_distance(name, len, candidate, strlen(candidate));
        if (d < best_distance) best_distance = d, best = candidate;
    }
    size_t threshold = len <= 4 ? 1 : len <= 8 ? 2 : 3;
    if (best_distance > threshold) {
        // "lr" or "train.hidden_size": the last component names exactly one known key.
        const char *last = name + len;
        while (last > name && last[-1] != '.') last--;
        size_t last_len = (size_t)(name + len - last);
        best = NULL;
        for (size_t i = 0; i < KEY_COUNT; i++) {
            const char *dot = strrchr(config_keys[i].name, '.');
            if (strlen(dot + 1) == last_len && memcmp(dot + 1, last, last_len) == 0) {
                if (best) return; // ambiguous
                best = config_keys[i].name;
            }
        }
        if (!best) return;
    }
    snprintf(buf, cap, " (did you mean '%s'?)", best);
}

// ---------------------------------------------------------------------------------------------
// Loading: one loader per call, working on a copy of the config that is committed only on success.

typedef struct {
    yaml_parser_t parser;
    int parser_ready;
    const unsigned char *input;
    size_t input_len;
    const char *name;       // file name for messages
    const char *assignment; // non-NULL while applying an override
    qft_error *err;
    qft_config work;
    unsigned long key_line[KEY_COUNT];         // 1-based line a key was set on in this file, 0 = not yet
    unsigned long section_line[SECTION_COUNT]; // same for section mappings
} config_loader;

static void message_make_one_line(qft_error *err) {
    if (!err) return;
    for (char *p = err->message; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7F) *p = ' ';
}

// Prefixes the message with "file:line: " or "override 'a=b': "; `key` (when given) follows as
// "key: " for files only, since an override already shows its key.
static qft_status loader_fail(config_loader *loader, unsigned long line, const char *key, qft_status code,
                              const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static qft_status loader_fail(config_loader *loader, unsigned long line, const char *key, qft_status code,
                              const char *fmt, ...) {
    char body[768];
    va_list args;
    va_start(args, fmt);
    vsnprintf(body, sizeof body, fmt, args);
    va_end(args);
    if (loader->assignment) {
        char shown[160];
        text_for_message(shown, sizeof shown, loader->assignment, strlen(loader->assignment));
        qft_fail(loader->err, code, "override '%s': %s", shown, body);
    } else if (key) {
        qft_fail(loader->err, code, "%s:%lu: %s: %s", loader->name, line, key, body);
    } else {
        qft_fail(loader->err, code, "%s:%lu: %s", loader->name, line, body);
    }
    message_make_one_line(loader->err);
    return code;
}

static qft_status loader_syntax_error(config_loader *loader, const yaml_parser_t *parser) {
    if (parser->error == YAML_MEMORY_ERROR)
        return loader_fail(loader, 1, NULL, QFT_ERR_OOM, "out of memory while parsing YAML");
    unsigned long line, column;
    if (parser->error == YAML_READER_ERROR) {
        // Reader errors (bad encoding, control characters) carry a byte offset, not a mark.
        size_t end = parser->problem_offset < loader->input_len ? parser->problem_offset : loader->input_len;
        line = 1, column = 1;
        for (size_t i = 0; i < end; i++) {
            if (loader->input[i] == '\n') line++, column = 1;
            else column++;
        }
    } else {
        line = (unsigned long)parser->problem_mark.line + 1;
        column = (unsigned long)parser->problem_mark.column + 1;
    }
    char context[160] = "";
    if (parser->context)
        snprintf(context, sizeof context, " (%s at line %lu)", parser->context,
                 (unsigned long)parser->context_mark.line + 1);
    const char *problem = parser->problem ? parser->problem : "malformed YAML";
    if (loader->assignment)
        return loader_fail(loader, line, NULL, QFT_ERR_PARSE, "YAML syntax error: %s%s", problem, context);
    qft_fail(loader->err, QFT_ERR_PARSE, "%s:%lu:%lu: YAML syntax error: %s%s", loader->name, line, column,
             problem, context);
    message_make_one_line(loader->err);
    return QFT_ERR_PARSE;
}

static unsigned long event_line(const yaml_event_t *event) { return (unsigned long)event->start_mark.line + 1; }

static qft_status loader_next(config_loader *loader, yaml_event_t *event) {
    if (!yaml_parser_parse(&loader->parser, event)) return loader_syntax_error(loader, &loader->parser);
    return QFT_OK;
}

// A first pass over the whole input, so that broken syntax is reported as such even when a
// semantic error (which the second pass stops at) comes earlier in the file. It also bounds the
// nesting depth: libyaml's scanner costs O(depth) per token, so 10^5 '[' would take minutes.
static qft_status loader_check_syntax(config_loader *loader) {
    enum { MAX_DEPTH = 32 };
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return qft_fail(loader->err, QFT_ERR_OOM, "out of memory (YAML parser)");
    yaml_parser_set_input_string(&parser, loader->input, loader->input_len);
    qft_status status = QFT_OK;
    int depth = 0;
    for (;;) {
        yaml_event_t event;
        if (!yaml_parser_parse(&parser, &event)) {
            status = loader_syntax_error(loader, &parser);
            break;
        }
        yaml_event_type_t type = event.type;
        unsigned long line = event_line(&event);
        yaml_event_delete(&event);
        if (type == YAML_STREAM_END_EVENT) break;
        if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) depth++;
        if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT) depth--;
        if (depth > MAX_DEPTH) {
            status = loader_fail(loader, line, NULL, QFT_ERR_PARSE, "YAML nested deeper than %d levels", MAX_DEPTH);
            break;
        }
    }
    yaml_parser_delete(&parser);
    return status;
}

static int scalar_is_null(const yaml_event_t *event) {
    if (event->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *v = (const char *)event->data.scalar.value;
    size_t n = event->data.scalar.length;
    return n == 0 || (n == 1 && v[0] == '~') || (n == 4 && (!memcmp(v, "null", 4) || !memcmp(v, "Null", 4) ||
                                                             !memcmp(v, "NULL", 4)));
}

// `got "fast"` / `got an empty value`, for type errors.
static void got_scalar(char *buf, size_t cap, const char *text, size_t len) {
    if (len == 0) {
        snprintf(buf, cap, "an empty value");
        return;
    }
    char shown[72];
    text_for_message(shown, sizeof shown, text, len);
    snprintf(buf, cap, "\"%s\"", shown);
}

static const char *event_kind(const yaml_event_t *event) {
    switch (event->type) {
    case YAML_SEQUENCE_START_EVENT: return "a sequence";
    case YAML_MAPPING_START_EVENT: return "a mapping";
    case YAML_ALIAS_EVENT: return "an alias (aliases are not supported)";
    default: return "an unexpected YAML node";
    }
}

// Parses a number for `key` into *out, checking the key's range: the key's value, or item `item` (>= 0)
// of a list, which messages name as "data.normalize_std[1]" (overrides too, where the key is implied).
static qft_status loader_parse_real(config_loader *loader, const config_key *key, long item, const char *text,
                                    size_t len, unsigned long line, double *out) {
    char label[96];
    if (item < 0) snprintf(label, sizeof label, "%s", key->name);
    else snprintf(label, sizeof label, "%s[%ld]", key->name, item);
    char number[512], *end = NULL;
    double value = 0;
    int ok = len > 0 && len < sizeof number && !memchr(text, '\0', len) && text[0] != ' ' && text[0] != '\t' &&
             text[0] != '\n';
    if (ok) {
        memcpy(number, text, len);
        number[len] = '\0';
        value = strtod(number, &end);
        ok = end == number + len;
    }
    if (!ok) {
        char got[96];
        got_scalar(got, sizeof got, text, len);
        if (item < 0) return loader_fail(loader, line, key->name, QFT_ERR_INVALID, "expected a number, got %s", got);
        return loader_fail(loader, line, NULL, QFT_ERR_INVALID, "%s: expected a number, got %s", label, got);
    }
    if (!real_in_range(key, value)) {
        char range[RANGE_CAP], shown[72];
        range_format(range, sizeof range, key);
        text_for_message(shown, sizeof shown, text, len);
        int bracket = isfinite(value) && (range[0] == '[' || range[0] == '(');
        return loader_fail(loader, line, NULL, QFT_ERR_INVALID, "%s = %s: out of range%s%s", label, shown,
                           bracket ? " " : ", must be ", isfinite(value) ? range : "a finite number");
    }
    *out = value;
    return QFT_OK;
}

static qft_status loader_list_length_fail(config_loader *loader, const config_key *key, unsigned long line,
                                          long count) {
    char lengths[64];
    list_lengths_format(lengths, sizeof lengths, key);
    return loader_fail(loader, line, key->name, QFT_ERR_INVALID, "expected %s numbers, got %ld", lengths, count);
}

// Reads the items of a YAML sequence (its start already read) into a KEY_REAL_LIST: numbers only,
// as many as the key allows.
static qft_status loader_apply_list(config_loader *loader, const config_key *key, unsigned long line) {
    qft_real_list list;
    memset(&list, 0, sizeof list);
    long count = 0;
    for (;;) {
        yaml_event_t event;
        qft_status status = loader_next(loader, &event);
        if (status) return status;
        if (event.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&event);
            break;
        }
        double value = 0;
        if (event.type == YAML_SCALAR_EVENT)
            status = loader_parse_real(loader, key, count, (const char *)event.data.scalar.value,
                                       event.data.scalar.length, event_line(&event), &value);
        else
            status = loader_fail(loader, event_line(&event), NULL, QFT_ERR_INVALID, "%s[%ld]: expected a number, got %s",
                                 key->name, count, event_kind(&event));
        yaml_event_delete(&event);
        if (status) return status;
        if (count < QFT_REAL_LIST_MAX) list.values[count] = value;
        count++;
    }
    if (!list_length_allowed(key, count > INT_MAX ? -1 : (int)count))
        return loader_list_length_fail(loader, key, line, count);
    list.count = (int)count;
    memcpy(field_ptr(&loader->work, key), &list, sizeof list);
    return QFT_OK;
}

// Parses one scalar for `key` into loader->work; `is_null` marks a plain empty/~/null scalar.
static qft_status loader_apply_scalar(config_loader *loader, const config_key *key, const char *text, size_t len,
                                      int is_null, unsigned long line) {
    char got[96];
    got_scalar(got, sizeof got, text, len);
    int has_nul = memchr(text, '\0', len) != NULL;
    switch (key->type) {
    case KEY_INTEGER: {
        size_t i = (len > 0 && (text[0] == '-' || text[0] == '+')) ? 1 : 0;
        int digits = i < len;
        for (size_t j = i; j < len; j++)
            if (text[j] < '0' || text[j] > '9') digits = 0;
        if (!digits)
            return loader_fail(loader, line, key->name, QFT_ERR_INVALID, "expected an integer, got %s", got);
        // Digits only, so a text too long for the buffer is out of range anyway.
        char number[512];
        size_t n = len < sizeof number ? len : sizeof number - 1;
        memcpy(number, text, n);
        number[n] = '\0';
        errno = 0;
        long long value = strtoll(number, NULL, 10);
        if (errno == ERANGE || len != n || value < key->int_min || value > key->int_max) {
            char range[RANGE_CAP], shown[72];
            range_format(range, sizeof range, key);
            text_for_message(shown, sizeof shown, text, len);
            return loader_fail(loader, line, NULL, QFT_ERR_INVALID, "%s = %s: out of range%s%s", key->name, shown,
                               range[0] == '[' ? " " : ", must be ", range);
        }
        integer_set(&loader->work, key, value);
        return QFT_OK;
    }
    case KEY_REAL:
        return loader_parse_real(loader, key, -1, text, len, line, (double *)field_ptr(&loader->work, key));
    case KEY_REAL_LIST: {
        qft_real_list list;
        memset(&list, 0, sizeof list);
        qft_status status = loader_parse_real(loader, key, -1, text, len, line, &list.values[0]);
        if (status) return status;
        list.count = 1;
        if (!list_length_allowed(key, 1)) return loader_list_length_fail(loader, key, line, 1);
        memcpy(field_ptr(&loader->work, key), &list, sizeof list);
        return QFT_OK;
    }
    case KEY_BOOL: {
        static const char *const truthy[] = {"true", "yes", "on", "1"};
        static const char *const falsy[] = {"false", "no", "off", "0"};
        for (size_t i = 0; i < 4; i++) {
            if (ascii_equal_nocase(text, len, truthy[i])) {
                *(int *)field_ptr(&loader->work, key) = 1;
                return QFT_OK;
            }
            if (ascii_equal_nocase(text, len, falsy[i])) {
                *(int *)field_ptr(&loader->work, key) = 0;
                return QFT_OK;
            }
        }
        return loader_fail(loader, line, key->name, QFT_ERR_INVALID, "expected %s, got %s", type_expectation(key),
                           got);
    }
    case KEY_STRING:
    case KEY_ENUM: {
        if (is_null) len = 0;
        if (has_nul && !is_null)
            return loader_fail(loader, line, key->name, QFT_ERR_INVALID, "string contains a NUL byte");
        if (key->type == KEY_ENUM && !enum_allows(key, text, len)) {
            char shown[72];
            text_for_message(shown, sizeof shown, text, len);
            return loader_fail(loader, line, key->name, QFT_ERR_INVALID, "'%s' is not one of %s", shown,
                               key->choices);
        }
        if (len >= key->size)
            return loader_fail(loader, line, key->name, QFT_ERR_INVALID,
                               "string of %zu bytes is longer than the limit of %zu", len, key->size - 1);
        string_set((char *)field_ptr(&loader->work, key), key->size, text, len);
        return QFT_OK;
    }
    case KEY_QUANT_RULES:  // lists come through loader_apply_node; here only an empty override value
        if (!is_null) break;
        memset(field_ptr(&loader->work, key), 0, sizeof(qft_quant_rule_list));
        return QFT_OK;
    }
    return loader_fail(loader, line, key->name, QFT_ERR_INTERNAL, "unknown key type");
}

// One `quant.rules` entry: a mapping of rule fields (config_quant.c), up to its end event.
static qft_status loader_quant_rule(config_loader *loader, const config_key *key, qft_quant_rule *rule,
                                    unsigned long rule_line) {
    *rule = qft_quant_rule_default();
    unsigned int seen = 0;  // field names given so far, to reject duplicates
    char names[16][24];
    for (;;) {
        yaml_event_t name_event, value_event;
        qft_status status = loader_next(loader, &name_event);
        if (status) return status;
        if (name_event.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&name_event);
            break;
        }
        unsigned long line = event_line(&name_event);
        if (name_event.type != YAML_SCALAR_EVENT) {
            yaml_event_delete(&name_event);
            return loader_fail(loader, line, key->name, QFT_ERR_INVALID, "a rule field must be a plain name");
        }
        char name[24];
        size_t name_len = name_event.data.scalar.length;
        int name_fits = name_len < sizeof name;
        if (name_fits) memcpy(name, name_event.data.scalar.value, name_len), name[name_len] = '\0';
        yaml_event_delete(&name_event);
        status = loader_next(loader, &value_event);
        if (status) return status;
        if (value_event.type != YAML_SCALAR_EVENT) {
            const char *kind = event_kind(&value_event);
            yaml_event_delete(&value_event);
            return loader_fail(loader, line, key->name, QFT_ERR_INVALID, "rule field '%s': expected a scalar, got %s",
                               name_fits ? name : "?", kind);
        }
        char why[400];
        qft_rule_field_result result =
            name_fits ? qft_quant_rule_set_field(rule, name, name_len, (const char *)value_event.data.scalar.value,
                                                 value_event.data.scalar.length, why, sizeof why)
                      : RULE_FIELD_UNKNOWN;
        char got[96];
        got_scalar(got, sizeof got, (const char *)value_event.data.scalar.value, value_event.data.scalar.length);
        yaml_event_delete(&value_event);
        if (result == RULE_FIELD_UNKNOWN) {
            if (!name_fits) qft_quant_rule_set_field(rule, "", 0, "", 0, why, sizeof why);
            return loader_fail(loader, line, key->name, QFT_ERR_INVALID, "unknown rule field '%s' (%s)",
                               name_fits ? name : "(too long)", why);
        }
        if (result == RULE_FIELD_BAD_VALUE)
            return loader_fail(loader, line, key->name, QFT_ERR_INVALID, "rule field '%s': %s, got %s", name, why, got);
        for (unsigned int i = 0; i < seen && i < 16; i++)
            if (strcmp(names[i], name) == 0)
                return loader_fail(loader, line, key->name, QFT_ERR_INVALID, "rule field '%s' given twice", name);
        if (seen < 16) snprintf(names[seen], sizeof names[seen], "%s", name);
        seen++;
    }
    char why[200];
    if (qft_quant_rule_check(rule, why, sizeof why))
        return loader_fail(loader, rule_line, key->name, QFT_ERR_INVALID, "rule %d%s%s%s: %s",
                           ((qft_quant_rule_list *)field_ptr(&loader->work, key))->count + 1,
                           rule->pattern[0] ? " '" : "", rule->pattern, rule->pattern[0] ? "'" : "", why);
    return QFT_OK;
}

// `quant.rules`: a sequence of rule mappings (or an empty value = no rules). Replaces the list.
static qft_status loader_quant_rules(config_loader *loader, const config_key *key, const yaml_event_t *value) {
    qft_quant_rule_list *list = (qft_quant_rule_list *)field_ptr(&loader->work, key);
    memset(list, 0, sizeof *list);  // replaced, not appended; unused slots stay zero for comparisons
    if (value->type == YAML_SCALAR_EVENT && scalar_is_null(value)) return QFT_OK;
    if (value->type != YAML_SEQUENCE_START_EVENT)
        return loader_fail(loader, event_line(value), key->name, QFT_ERR_INVALID,
                           "expected a list of rule mappings (e.g. [{pattern: \"*.weight\", bits: 4}]), got %s",
                           value->type == YAML_SCALAR_EVENT ? "a scalar" : event_kind(value));
    for (;;) {
        yaml_event_t event;
        qft_status status = loader_next(loader, &event);
        if (status) return status;
        yaml_event_type_t type = event.type;
        unsigned long line = event_line(&event);
        const char *kind = event_kind(&event);
        yaml_event_delete(&event);
        if (type == YAML_SEQUENCE_END_EVENT) return QFT_OK;
        if (type != YAML_MAPPING_START_EVENT)
            return loader_fail(loader, line, key->name, QFT_ERR_INVALID, "each rule must be a mapping, got %s",
                               type == YAML_SCALAR_EVENT ? "a scalar" : kind);
        if (list->count == QFT_MAX_QUANT_RULES)
            return loader_fail(loader, line, key->name, QFT_ERR_INVALID, "more than %d rules", QFT_MAX_QUANT_RULES);
        status = loader_quant_rule(loader, key, &list->items[list->count], line);
        if (status) return status;
        list->count++;
    }
}

// Applies the node that starts with `value` (already read) to a leaf key.
static qft_status loader_apply_node(config_loader *loader, const config_key *key, const yaml_event_t *value) {
    if (key->type == KEY_QUANT_RULES) return loader_quant_rules(loader, key, value);
    if (value->type == YAML_SCALAR_EVENT)
        return loader_apply_scalar(loader, key, (const char *)value->data.scalar.value, value->data.scalar.length,
                                   scalar_is_null(value), event_line(value));
    if (key->type == KEY_REAL_LIST && value->type == YAML_SEQUENCE_START_EVENT)
        return loader_apply_list(loader, key, event_line(value));
    if (key->type == KEY_ENUM)
        return loader_fail(loader, event_line(value), key->name, QFT_ERR_INVALID, "expected one of %s, got %s",
                           key->choices, event_kind(value));
    return loader_fail(loader, event_line(value), key->name, QFT_ERR_INVALID, "expected %s, got %s",
                       type_expectation(key), event_kind(value));
}

static qft_status loader_unknown_key(config_loader *loader, unsigned long line, const char *prefix,
                                     const char *key, size_t key_len) {
    char full[200], shown[160], suggestion[96];
    size_t prefix_len = strlen(prefix);
    size_t cap = sizeof full - 1;
    size_t n = 0;
    if (prefix_len) {
        memcpy(full, prefix, prefix_len);
        full[prefix_len] = '.';
        n = prefix_len + 1;
    }
    size_t take = key_len < cap - n ? key_len : cap - n;
    memcpy(full + n, key, take);
    n += take;
    full[n] = '\0';
    text_for_message(shown, sizeof shown, full, n);
    suggestion_format(suggestion, sizeof suggestion, full, key_len == take ? n : 0);
    return loader_fail(loader, line, NULL, QFT_ERR_INVALID, "unknown key '%s'%s", shown, suggestion);
}

// Reads key/value pairs up to the mapping's end. `prefix` is "" at the top level or a section name;
// the schema has two levels, so this recurses at most once.
static qft_status loader_mapping(config_loader *loader, const char *prefix) {
    for (;;) {
        yaml_event_t key_event, value_event;
        qft_status status = loader_next(loader, &key_event);
        if (status) return status;
        if (key_event.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&key_event);
            return QFT_OK;
        }
        unsigned long line = event_line(&key_event);
        if (key_event.type != YAML_SCALAR_EVENT) {
            const char *kind = event_kind(&key_event);
            yaml_event_delete(&key_event);
            return loader_fail(loader, line, NULL, QFT_ERR_INVALID, "a key must be a plain name, got %s", kind);
        }
        const char *name = (const char *)key_event.data.scalar.value;
        size_t name_len = key_event.data.scalar.length;
        char full[128];
        size_t prefix_len = strlen(prefix);
        const config_key *key = NULL;
        int section = -1;
        if (prefix_len + 1 + name_len < sizeof full && !memchr(name, '\0', name_len)) {
            size_t n = 0;
            if (prefix_len) {
                memcpy(full, prefix, prefix_len);
                full[prefix_len] = '.';
                n = prefix_len + 1;
            }
            memcpy(full + n, name, name_len);
            full[n + name_len] = '\0';
            key = key_find(full, n + name_len);
            if (!key && !prefix_len) section = section_find(full, n + name_len);
        }
        if (!key && section < 0) {
            status = loader_unknown_key(loader, line, prefix, name, name_len);
            yaml_event_delete(&key_event);
            return status;
        }
        yaml_event_delete(&key_event);

        if (key) {
            size_t index = (size_t)(key - config_keys);
            if (loader->key_line[index])
                return loader_fail(loader, line, NULL, QFT_ERR_INVALID, "duplicate key '%s' (first set at line %lu)",
                                   key->name, loader->key_line[index]);
            loader->key_line[index] = line;
        } else {
            if (loader->section_line[section])
                return loader_fail(loader, line, NULL, QFT_ERR_INVALID,
                                   "duplicate key '%s' (first seen at line %lu)", full,
                                   loader->section_line[section]);
            loader->section_line[section] = line;
        }

        status = loader_next(loader, &value_event);
        if (status) return status;
        if (key) {
            status = loader_apply_node(loader, key, &value_event);
        } else if (value_event.type == YAML_MAPPING_START_EVENT) {
            status = loader_mapping(loader, full);
        } else if (value_event.type == YAML_SCALAR_EVENT && scalar_is_null(&value_event)) {
            status = QFT_OK; // `eval:` with every key commented out
        } else {
            char got[96];
            if (value_event.type == YAML_SCALAR_EVENT)
                got_scalar(got, sizeof got, (const char *)value_event.data.scalar.value,
                           value_event.data.scalar.length);
            else
                snprintf(got, sizeof got, "%s", event_kind(&value_event));
            status = loader_fail(loader, event_line(&value_event), NULL, QFT_ERR_INVALID,
                                 "'%s' is a section: expected a mapping of its keys, got %s", full, got);
        }
        yaml_event_delete(&value_event);
        if (status) return status;
    }
}

// The whole stream: nothing (empty file), or documents whose root is a mapping or empty.
static qft_status loader_stream(config_loader *loader) {
    yaml_event_t event;
    qft_status status = loader_next(loader, &event); // STREAM-START
    if (status) return status;
    yaml_event_delete(&event);
    int documents = 0;
    for (;;) {
        status = loader_next(loader, &event);
        if (status) return status;
        yaml_event_type_t type = event.type;
        unsigned long line = event_line(&event);
        yaml_event_delete(&event);
        if (type == YAML_STREAM_END_EVENT) return QFT_OK;
        if (type != YAML_DOCUMENT_START_EVENT)
            return loader_fail(loader, line, NULL, QFT_ERR_PARSE, "unexpected YAML event");

        status = loader_next(loader, &event);
        if (status) return status;
        line = event_line(&event);
        if (event.type == YAML_MAPPING_START_EVENT) {
            yaml_event_delete(&event);
            if (documents++)
                return loader_fail(loader, line, NULL, QFT_ERR_INVALID,
                                   "more than one YAML document ('---'); put every key in one");
            status = loader_mapping(loader, "");
            if (status) return status;
        } else if (event.type == YAML_SCALAR_EVENT && scalar_is_null(&event)) {
            yaml_event_delete(&event);
        } else {
            char got[96];
            if (event.type == YAML_SCALAR_EVENT)
                got_scalar(got, sizeof got, (const char *)event.data.scalar.value, event.data.scalar.length);
            else
                snprintf(got, sizeof got, "%s", event_kind(&event));
            yaml_event_delete(&event);
            return loader_fail(loader, line, NULL, QFT_ERR_INVALID,
                               "the top level must be a mapping of keys (e.g. 'train: {lr: 1e-3}'), got %s", got);
        }

        status = loader_next(loader, &event); // DOCUMENT-END
        if (status) return status;
        yaml_event_delete(&event);
    }
}

static qft_status loader_begin(config_loader *loader, const qft_config *cfg, const void *input, size_t len,
                               qft_error *err) {
    memset(loader, 0, sizeof *loader);
    memcpy(&loader->work, cfg, sizeof *cfg);
    loader->err = err;
    loader->input = (const unsigned char *)input;
    loader->input_len = len;
    if (!yaml_parser_initialize(&loader->parser)) return qft_fail(err, QFT_ERR_OOM, "out of memory (YAML parser)");
    loader->parser_ready = 1;
    yaml_parser_set_input_string(&loader->parser, loader->input, len);
    return QFT_OK;
}

static void loader_end(config_loader *loader) {
    if (loader->parser_ready) yaml_parser_delete(&loader->parser);
    loader->parser_ready = 0;
}

// ---------------------------------------------------------------------------------------------
// Public API

void qft_config_defaults(qft_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const config_key *key = &config_keys[i];
        switch (key->type) {
        case KEY_INTEGER: integer_set(cfg, key, key->int_default); break;
        case KEY_BOOL: *(int *)field_ptr(cfg, key) = (int)key->int_default; break;
        case KEY_REAL: *(double *)field_ptr(cfg, key) = key->real_default; break;
        case KEY_REAL_LIST: memcpy(field_ptr(cfg, key), &key->list_default, sizeof key->list_default); break;
        case KEY_STRING:
        case KEY_ENUM:
            string_set((char *)field_ptr(cfg, key), key->size, key->string_default, strlen(key->string_default));
            break;
        case KEY_QUANT_RULES: break;  // memset: no rules
        }
    }
}

qft_status qft_config_load_string(qft_config *cfg, const char *yaml, size_t len, const char *name,
                                  qft_error *err) {
    if (!name) name = "<config>";
    if (!cfg || (!yaml && len)) return qft_fail(err, QFT_ERR_INTERNAL, "%s: no config or no input given", name);
    static const char empty[1] = "";
    config_loader *loader = malloc(sizeof *loader);
    if (!loader) return qft_fail(err, QFT_ERR_OOM, "%s: out of memory", name);
    qft_status status = loader_begin(loader, cfg, yaml ? yaml : empty, len, err);
    if (status == QFT_OK) {
        loader->name = name;
        status = loader_check_syntax(loader);
        if (status == QFT_OK) status = loader_stream(loader);
    }
    loader_end(loader);
    if (status == QFT_OK) {
        string_set(loader->work.source_path, sizeof loader->work.source_path, name, strlen(name));
        memcpy(cfg, &loader->work, sizeof *cfg);
    }
    free(loader);
    return status;
}

qft_status qft_config_load_file(qft_config *cfg, const char *path, qft_error *err) {
    enum { MAX_CONFIG_BYTES = 16 << 20 };
    FILE *file = fopen(path, "rb");
    if (!file) return qft_fail(err, QFT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buffer = malloc(cap);
    qft_status status = buffer ? QFT_OK : qft_fail(err, QFT_ERR_OOM, "%s: out of memory", path);
    while (status == QFT_OK) {
        if (len == cap) {
            if (cap >= MAX_CONFIG_BYTES) {
                status = qft_fail(err, QFT_ERR_INVALID, "%s: larger than %d MiB; not a config file", path,
                                  MAX_CONFIG_BYTES >> 20);
                break;
            }
            char *grown = realloc(buffer, cap * 2);
            if (!grown) {
                status = qft_fail(err, QFT_ERR_OOM, "%s: out of memory", path);
                break;
            }
            buffer = grown, cap *= 2;
        }
        size_t got = fread(buffer + len, 1, cap - len, file);
        len += got;
        if (got == 0) {
            if (ferror(file)) status = qft_fail(err, QFT_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
            break;
        }
    }
    fclose(file);
    if (status == QFT_OK) status = qft_config_load_string(cfg, buffer, len, path, err);
    free(buffer);
    return status;
}

qft_status qft_config_override(qft_config *cfg, const char *assignment, qft_error *err) {
    if (!cfg || !assignment) return qft_fail(err, QFT_ERR_INTERNAL, "override: no config or no assignment given");
    config_loader *loader = malloc(sizeof *loader);
    if (!loader) return qft_fail(err, QFT_ERR_OOM, "override: out of memory");
    const char *equals = strchr(assignment, '=');
    const char *value = equals ? equals + 1 : "";
    qft_status status = loader_begin(loader, cfg, value, strlen(value), err);
    loader->assignment = assignment;
    if (status) goto done;
    if (!equals) {
        status = loader_fail(loader, 0, NULL, QFT_ERR_INVALID, "expected key.path=value (no '=')");
        goto done;
    }
    const char *key_start = assignment, *key_end = equals;
    while (key_start < key_end && (*key_start == ' ' || *key_start == '\t')) key_start++;
    while (key_end > key_start && (key_end[-1] == ' ' || key_end[-1] == '\t')) key_end--;
    size_t key_len = (size_t)(key_end - key_start);
    const config_key *key = key_find(key_start, key_len);
    if (!key) {
        if (key_len == 0) status = loader_fail(loader, 0, NULL, QFT_ERR_INVALID, "no key before '='");
        else if (section_find(key_start, key_len) >= 0)
            status = loader_fail(loader, 0, NULL, QFT_ERR_INVALID, "'%.*s' is a section; set one of its keys",
                                 (int)key_len, key_start);
        else status = loader_unknown_key(loader, 0, "", key_start, key_len);
        goto done;
    }

    // The value is a one-node YAML document, so quoting works as in a file: run.name='a b', and list
    // keys take a flow sequence: data.normalize_mean=[0.5,0.5,0.5].
    status = loader_check_syntax(loader);
    if (status) goto done;
    yaml_event_t event;
    int applied = 0;
    for (;;) {
        status = loader_next(loader, &event);
        if (status) goto done;
        yaml_event_type_t type = event.type;
        if (type == YAML_SCALAR_EVENT || type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT ||
            type == YAML_ALIAS_EVENT) {
            status = applied ? loader_fail(loader, 0, NULL, QFT_ERR_INVALID, "expected one value")
                             : loader_apply_node(loader, key, &event);
            applied = 1;
        }
        yaml_event_delete(&event);
        if (status) goto done;
        if (type == YAML_STREAM_END_EVENT) break;
    }
    if (!applied) status = loader_apply_scalar(loader, key, "", 0, 1, 0); // "model.init_from="

done:
    loader_end(loader);
    if (status == QFT_OK) memcpy(cfg, &loader->work, sizeof *cfg);
    free(loader);
    return status;
}

static qft_status list_check(const qft_real_list *list, const config_key *key, qft_error *err) {
    if (!list_length_allowed(key, list->count)) {
        char lengths[64];
        list_lengths_format(lengths, sizeof lengths, key);
        return qft_fail(err, QFT_ERR_INVALID, "%s: %d values, expected %s", key->name, list->count, lengths);
    }
    for (int i = 0; i < list->count; i++) {
        double value = list->values[i];
        if (real_in_range(key, value)) continue;
        char range[RANGE_CAP], shown[40], label[96];
        range_format(range, sizeof range, key);
        real_format(shown, sizeof shown, value);
        if (list->count == 1) snprintf(label, sizeof label, "%s", key->name);
        else snprintf(label, sizeof label, "%s[%d]", key->name, i);
        int bracket = isfinite(value) && (range[0] == '[' || range[0] == '(');
        return qft_fail(err, QFT_ERR_INVALID, "%s = %s: out of range%s%s", label, shown,
                        bracket ? " " : ", must be ", isfinite(value) ? range : "a finite number");
    }
    return QFT_OK;
}

// Checks one stored value against the schema (validate cannot assume the struct came from a loader).
static qft_status value_check(const qft_config *cfg, const config_key *key, qft_error *err) {
    switch (key->type) {
    case KEY_INTEGER: {
        long long value = integer_get(cfg, key);
        if (value < key->int_min || value > key->int_max) {
            char range[RANGE_CAP];
            range_format(range, sizeof range, key);
            return qft_fail(err, QFT_ERR_INVALID, "%s = %lld: out of range%s%s", key->name, value,
                            range[0] == '[' ? " " : ", must be ", range);
        }
        return QFT_OK;
    }
    case KEY_REAL: {
        double value = *(const double *)field_cptr(cfg, key);
        if (!real_in_range(key, value)) {
            char range[RANGE_CAP], shown[40];
            range_format(range, sizeof range, key);
            real_format(shown, sizeof shown, value);
            int bracket = isfinite(value) && (range[0] == '[' || range[0] == '(');
            return qft_fail(err, QFT_ERR_INVALID, "%s = %s: out of range%s%s", key->name, shown,
                            bracket ? " " : ", must be ", isfinite(value) ? range : "a finite number");
        }
        return QFT_OK;
    }
    case KEY_REAL_LIST: return list_check((const qft_real_list *)field_cptr(cfg, key), key, err);
    case KEY_BOOL: {
        int value = *(const int *)field_cptr(cfg, key);
        if (value != 0 && value != 1)
            return qft_fail(err, QFT_ERR_INVALID, "%s = %d: expected a boolean (0 or 1)", key->name, value);
        return QFT_OK;
    }
    case KEY_STRING:
    case KEY_ENUM: {
        const char *value = (const char *)field_cptr(cfg, key);
        size_t len = strnlen(value, key->size);
        if (len == key->size)
            return qft_fail(err, QFT_ERR_INVALID, "%s: string is not NUL-terminated", key->name);
        if (key->type == KEY_ENUM && !enum_allows(key, value, len)) {
            char shown[72];
            text_for_message(shown, sizeof shown, value, len);
            return qft_fail(err, QFT_ERR_INVALID, "%s: '%s' is not one of %s", key->name, shown, key->choices);
        }
        return QFT_OK;
    }
    case KEY_QUANT_RULES: {
        const qft_quant_rule_list *list = (const qft_quant_rule_list *)field_cptr(cfg, key);
        if (list->count < 0 || list->count > QFT_MAX_QUANT_RULES)
            return qft_fail(err, QFT_ERR_INVALID, "%s: %d rules, at most %d", key->name, list->count,
                            QFT_MAX_QUANT_RULES);
        for (int i = 0; i < list->count; i++) {
            char why[200];
            if (strnlen(list->items[i].pattern, QFT_QUANT_PATTERN_MAX) == QFT_QUANT_PATTERN_MAX)
                return qft_fail(err, QFT_ERR_INVALID, "%s[%d]: pattern is not NUL-terminated", key->name, i);
            if (qft_quant_rule_check(&list->items[i], why, sizeof why))
                return qft_fail(err, QFT_ERR_INVALID, "%s[%d]: %s", key->name, i, why);
        }
        return QFT_OK;
    }
    }
    return QFT_OK;
}

static qft_status config_check(const qft_config *cfg, qft_error *err) {
    for (size_t i = 0; i < KEY_COUNT; i++) {
        qft_status status = value_check(cfg, &config_keys[i], err);
        if (status) return status;
    }
    const qft_model_config *m = &cfg->model;
    int vision = strcmp(m->type, "bert") != 0;
    if (cfg->run.name[0] == '\0' || strchr(cfg->run.name, '/') || !strcmp(cfg->run.name, ".") ||
        !strcmp(cfg->run.name, "..")) {
        char shown[72];
        text_for_message(shown, sizeof shown, cfg->run.name, strlen(cfg->run.name));
        return qft_fail(err, QFT_ERR_INVALID, "run.name: must be a non-empty directory name without '/', got '%s'",
                        shown);
    }
    if (cfg->run.dir[0] == '\0') return qft_fail(err, QFT_ERR_INVALID, "run.dir: must not be empty");
    if (m->hidden_size % m->num_heads != 0)
        return qft_fail(err, QFT_ERR_INVALID, "model.hidden_size (%d) must be a multiple of model.num_heads (%d)",
                        m->hidden_size, m->num_heads);
    if (vision && m->image_size % m->patch_size != 0)
        return qft_fail(err, QFT_ERR_INVALID,
                        "model.image_size (%d) must be a multiple of model.patch_size (%d) for model.type %s",
                        m->image_size, m->patch_size, m->type);
    if (!vision && cfg->data.max_seq_len > m->max_position_embeddings)
        return qft_fail(err, QFT_ERR_INVALID,
                        "data.max_seq_len (%d) exceeds model.max_position_embeddings (%d)", cfg->data.max_seq_len,
                        m->max_position_embeddings);
    int glue = strcmp(cfg->data.dataset, "glue") == 0;
    int text_data = glue || strcmp(cfg->data.dataset, "synthetic_text") == 0;
    if (text_data == vision)
        return qft_fail(err, QFT_ERR_INVALID, "data.dataset %s needs model.type %s, got %s", cfg->data.dataset,
                        text_data ? "bert" : "vit or deit", m->type);
    if (strcmp(cfg->data.dataset, "imagefolder") == 0 && m->num_channels != 3)
        return qft_fail(err, QFT_ERR_INVALID, "data.dataset imagefolder needs model.num_channels 3, got %d",
                        m->num_channels);
    if (vision) {
        const qft_real_list *lists[2] = {&cfg->data.normalize_mean, &cfg->data.normalize_std};
        for (int i = 0; i < 2; i++)
            if (lists[i]->count != 1 && lists[i]->count != m->num_channels)
                return qft_fail(err, QFT_ERR_INVALID,
                                "data.%s has %d values, but model.num_channels is %d (give 1 value for every "
                                "channel, or one per channel)",
                                i ? "normalize_std" : "normalize_mean", lists[i]->count, m->num_channels);
    }
    if (glue) {
        const qft_glue_task_info *task = cfg->data.task[0] ? qft_glue_task_find(cfg->data.task) : NULL;
        if (!task)
            return qft_fail(err, QFT_ERR_INVALID,
                            "data.task: required for data.dataset glue (one of cola, sst2, mrpc, stsb, qqp, mnli, "
                            "qnli, rte, wnli)");
        if (m->num_labels != task->num_labels)
            return qft_fail(err, QFT_ERR_INVALID, "model.num_labels = %d, but GLUE task %s needs %d%s", m->num_labels,
                            task->name, task->num_labels, task->is_regression ? " (regression)" : "");
    }
    if (strcmp(cfg->eval.split, "validation") == 0 && cfg->data.validation_size <= 0)
        return qft_fail(err, QFT_ERR_INVALID, "eval.split: validation needs data.validation_size > 0 (the number of "
                        "training examples to hold out), got %ld", cfg->data.validation_size);
    if (cfg->data.batch_size < 1 || cfg->data.eval_batch_size < 1)
        return qft_fail(err, QFT_ERR_INVALID, "data.batch_size and data.eval_batch_size must be >= 1");
    if (cfg->train.resume[0] == '\0')
        return qft_fail(err, QFT_ERR_INVALID, "train.resume: must be auto, never or a checkpoint path, got ''");
    return QFT_OK;
}

qft_status qft_config_validate(const qft_config *cfg, qft_error *err) {
    qft_status status = config_check(cfg, err);
    if (status) message_make_one_line(err);
    return status;
}

// YAML double-quoted scalar. Code points that a YAML reader would refuse or fold (C0/C1 controls,
// NEL, LS, PS, BOM) are escaped so every string loaded from YAML writes back to the same bytes.
static void yaml_write_quoted(FILE *out, const char *s, size_t len) {
    fputc('"', out);
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            fprintf(out, "\\%c", c);
            i++;
        } else if (c == '\n') {
            fputs("\\n", out), i++;
        } else if (c == '\t') {
            fputs("\\t", out), i++;
        } else if (c < 0x20 || c == 0x7F) {
            fprintf(out, "\\x%02x", c), i++;
        } else if (c < 0x80) {
            fputc(c, out), i++;
        } else {
            // Decode one UTF-8 sequence; invalid bytes (impossible from a YAML load) are escaped alone.
            size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
            unsigned long cp = n == 4 ? c & 0x07u : n == 3 ? c & 0x0Fu : c & 0x1Fu;
            int valid = n > 0 && i + n <= len;
            for (size_t k = 1; valid && k < n; k++) {
                unsigned char cc = (unsigned char)s[i + k];
                if ((cc & 0xC0) != 0x80) valid = 0;
                cp = (cp << 6) | (cc & 0x3Fu);
            }
            if (!valid) {
                fprintf(out, "\\x%02x", c), i++;
            } else if (cp < 0xA0 || cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF || (cp >= 0xD800 && cp <= 0xDFFF) ||
                       cp >= 0xFFFE) {
                if (cp > 0xFFFF) fprintf(out, "\\U%08lx", cp);
                else fprintf(out, "\\u%04lx", cp);
                i += n;
            } else {
                fwrite(s + i, 1, n, out), i += n;
            }
        }
    }
    fputc('"', out);
}

// One value as a plain number (it loads back as a list of one), more as a flow sequence "[a, b, c]".
#define LIST_TEXT_CAP (QFT_REAL_LIST_MAX * 44 + 4)  // 40 per number, ", " between, brackets
static void list_format_yaml(char *buf, size_t cap, const qft_real_list *list) {
    if (list->count == 1) {
        real_format_yaml(buf, cap, list->values[0]);
        return;
    }
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < list->count && i < QFT_REAL_LIST_MAX && used < cap; i++) {
        char number[40];
        real_format_yaml(number, sizeof number, list->values[i]);
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", number);
    }
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

static void value_write_yaml(FILE *out, const qft_config *cfg, const config_key *key) {
    char buf[40];
    switch (key->type) {
    case KEY_INTEGER: fprintf(out, "%lld", integer_get(cfg, key)); break;
    case KEY_BOOL: fputs(*(const int *)field_cptr(cfg, key) ? "true" : "false", out); break;
    case KEY_REAL:
        real_format_yaml(buf, sizeof buf, *(const double *)field_cptr(cfg, key));
        fputs(buf, out);
        break;
    case KEY_REAL_LIST: {
        char text[LIST_TEXT_CAP];
        list_format_yaml(text, sizeof text, (const qft_real_list *)field_cptr(cfg, key));
        fputs(text, out);
        break;
    }
    case KEY_ENUM:
    case KEY_STRING: {
        const char *value = (const char *)field_cptr(cfg, key);
        size_t len = strnlen(value, key->size);
        if (key->type == KEY_ENUM && len > 0 && enum_allows(key, value, len)) fwrite(value, 1, len, out);
        else yaml_write_quoted(out, value, len);
        break;
    }
    case KEY_QUANT_RULES: {
        const qft_quant_rule_list *list = (const qft_quant_rule_list *)field_cptr(cfg, key);
        if (list->count == 0) fputs("[]", out);
        for (int i = 0; i < list->count; i++) {
            fputc('\n', out);
            qft_quant_rule_write_yaml(out, &list->items[i], "    ");
        }
        break;
    }
    }
}

static void config_write_yaml(const qft_config *cfg, FILE *out) {
    fputs("# qft resolved configuration: every key, with defaults and overrides applied.\n", out);
    for (size_t s = 0; s < SECTION_COUNT; s++) {
        fprintf(out, "%s%s:\n", s ? "\n" : "", config_sections[s].name);
        size_t section_len = strlen(config_sections[s].name);
        for (size_t i = 0; i < KEY_COUNT; i++) {
            const config_key *key = &config_keys[i];
            if (strncmp(key->name, config_sections[s].name, section_len) || key->name[section_len] != '.') continue;
            // A non-empty rule list starts on the next line: no trailing space after the colon.
            int block = key->type == KEY_QUANT_RULES && ((const qft_quant_rule_list *)field_cptr(cfg, key))->count > 0;
            fprintf(out, "  %s:%s", key->name + section_len + 1, block ? "" : " ");
            value_write_yaml(out, cfg, key);
            fputc('\n', out);
        }
    }
}

qft_status qft_config_write_stream(const qft_config *cfg, FILE *out, qft_error *err) {
    config_write_yaml(cfg, out);
    if (fflush(out) != 0 || ferror(out))
        return qft_fail(err, QFT_ERR_IO, "writing the config: %s", strerror(errno));
    return QFT_OK;
}

qft_status qft_config_write(const qft_config *cfg, const char *path, qft_error *err) {
    FILE *out = fopen(path, "w");
    if (!out) return qft_fail(err, QFT_ERR_IO, "%s: cannot open for writing: %s", path, strerror(errno));
    config_write_yaml(cfg, out);
    int failed = ferror(out);
    int saved_errno = errno;
    if (fclose(out) != 0 && !failed) failed = 1, saved_errno = errno;
    if (failed) return qft_fail(err, QFT_ERR_IO, "%s: write failed: %s", path, strerror(saved_errno));
    return QFT_OK;
}

static const char config_docs_intro[] =
    "# Configuration reference\n"
    "\n"
    "Generated from the schema in `host/io/config.c` (`qft config-docs` prints it); do not edit by hand.\n"
    "\n"
    "A run's configuration starts from the defaults below (the Fashion-MNIST ViT demo), then takes the "
    "keys of the YAML file given with `--config FILE`, then `key.path=value` arguments, in command-line "
    "order; `qft config` prints the result. In YAML, "
    "nested mappings and dotted keys mean the same thing (`train: {lr: 1e-3}` is `train.lr: 1e-3`). An "
    "override's value is read as YAML, so quoting works as in a file (`run.name='my run'`) and a list key "
    "takes a flow sequence (`data.normalize_mean=[0.485,0.456,0.406]`). "
    "Booleans accept true/false, yes/no, on/off and 1/0; integers reject fractions. Unknown keys, "
    "duplicate keys, wrong types and out-of-range values are errors, never ignored: each is one line "
    "naming the key and `file:line` (or the override), e.g. "
    "`configs/x.yaml:7: train.lr: expected a number, got \"fast\"`. The resolved configuration of every "
    "run is saved as `<run.dir>/<run.name>/config.yaml` and loads back to the same values.\n";

static void markdown_default(char *buf, size_t cap, const config_key *key) {
    switch (key->type) {
    case KEY_INTEGER: snprintf(buf, cap, "`%lld`", key->int_default); break;
    case KEY_BOOL: snprintf(buf, cap, "`%s`", key->int_default ? "true" : "false"); break;
    case KEY_REAL: {
        char number[40];
        real_format_yaml(number, sizeof number, key->real_default);
        snprintf(buf, cap, "`%s`", number);
        break;
    }
    case KEY_REAL_LIST: {
        char text[LIST_TEXT_CAP];
        list_format_yaml(text, sizeof text, &key->list_default);
        snprintf(buf, cap, "`%s`", text);
        break;
    }
    case KEY_STRING:
    case KEY_ENUM:
        if (key->string_default[0]) snprintf(buf, cap, "`%s`", key->string_default);
        else snprintf(buf, cap, "`\"\"`");
        break;
    case KEY_QUANT_RULES: snprintf(buf, cap, "`[]`"); break;
    }
}

void qft_config_write_docs(FILE *out) {
    fputs(config_docs_intro, out);
    for (size_t s = 0; s < SECTION_COUNT; s++) {
        const config_section *section = &config_sections[s];
        size_t section_len = strlen(section->name);
        fprintf(out, "\n## %s\n\n%s\n\n", section->name, section->doc);
        fputs("| key | type | default | range / choices | meaning |\n", out);
        fputs("|---|---|---|---|---|\n", out);
        for (size_t i = 0; i < KEY_COUNT; i++) {
            const config_key *key = &config_keys[i];
            if (strncmp(key->name, section->name, section_len) || key->name[section_len] != '.') continue;
            const char *type = "";
            char range[160], def[96];
            switch (key->type) {
            case KEY_INTEGER:
                type = key->size == sizeof(int) ? "int" : "long";
                range_format(range, sizeof range, key);
                break;
            case KEY_REAL:
                type = "float";
                range_format(range, sizeof range, key);
                break;
            case KEY_REAL_LIST: {
                type = "float or list";
                char lengths[64], each[RANGE_CAP];
                list_lengths_format(lengths, sizeof lengths, key);
                range_format(each, sizeof each, key);
                if (strcmp(each, "any") == 0) snprintf(range, sizeof range, "%s values", lengths);
                else snprintf(range, sizeof range, "%s values, each %s", lengths, each);
                break;
            }
            case KEY_BOOL:
                type = "bool";
                snprintf(range, sizeof range, "true / false");
                break;
            case KEY_STRING:
                type = "string";
                snprintf(range, sizeof range, "up to %zu bytes", key->size - 1);
                break;
            case KEY_ENUM: {
                type = "enum";
                size_t n = 0;
                range[0] = '\0';
                for (const char *choice = key->choices; *choice;) {
                    size_t len = strcspn(choice, "|");
                    if (len == 0) n += (size_t)snprintf(range + n, sizeof range - n, "%s`\"\"`", n ? ", " : "");
                    else n += (size_t)snprintf(range + n, sizeof range - n, "%s`%.*s`", n ? ", " : "", (int)len, choice);
                    choice += len;
                    if (*choice == '|') choice++;
                }
                break;
            }
            case KEY_QUANT_RULES:
                type = "list";
                snprintf(range, sizeof range, "up to %d rule mappings", QFT_MAX_QUANT_RULES);
                break;
            }
            markdown_default(def, sizeof def, key);
            fprintf(out, "| `%s` | %s | %s | %s | %s |\n", key->name, type, def, range, key->doc);
        }
        if (strcmp(section->name, "quant") == 0) qft_quant_rule_write_docs(out);
    }
}
