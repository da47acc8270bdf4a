// `qft <command>` entry point: parses the command line, loads the config, dispatches, and prints
// the one-line JSON summary last on stdout. The only place with process-wide state (signal flag).
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "io/config.h"
#include "model/hf_config.h"
#include "train/analyze_cmd.h"
#include "train/quant_tools.h"
#include "train/reparam_cmd.h"
#include "train/trainer.h"

static volatile sig_atomic_t stop_requested = 0;

static void on_stop_signal(int signum) {
    (void)signum;
    stop_requested = 1;
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: qft <command> [--config FILE] [key.path=value ...]\n"
            "commands:\n"
            "  train        train (or fine-tune) a model; resumes from the run's newest checkpoint\n"
            "  eval         evaluate eval.checkpoint (default: the run's newest checkpoint) on eval.split\n"
            "  predict      GLUE: write the test-set submission files of that checkpoint to\n"
            "               <run.dir>/<run.name>/predictions/\n"
            "  quant-sites  list the model's quant sites and the rule (quant.rules) each one matched\n"
            "  reparam      ViT/DeiT: fold calibrated per-channel qkv/fc1 input quantizers into per-tensor\n"
            "               ones (RepQ); writes <run.dir>/<run.name>/reparam/{model,calibration}.safetensors\n"
            "               and eval.yaml\n"
            "  calibrate    set every enabled site's range from quant.calib_batches training batches;\n"
            "               writes <run.dir>/<run.name>/calibration.safetensors (eval then quantizes)\n"
            "  analyze      outlier statistics and quantization-error split of every activation site over\n"
            "               quant.calib_batches training batches: <run.dir>/<run.name>/report.md\n"
            "  config-docs  print the reference of every config key (configs/README.md)\n"
            "  config       print the resolved config\n");
}

// JSON string escaping for messages in the summary line.
static void print_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

// A number, or null when it was not measured (NaN/inf are not JSON).
static void print_json_number(const char *key, double value, int decimals) {
    if (isfinite(value)) printf(", \"%s\": %.*f", key, decimals, value);
    else printf(", \"%s\": null", key);
}

// GLUE task metrics (e.g. "eval_matthews_correlation") and their mean as "<prefix>score".
static void print_glue_metrics(const char *prefix, const qft_glue_metrics *glue) {
    char key[80];
    for (int k = 0; k < glue->count; k++) {
        if (strcmp(glue->names[k], "accuracy") == 0) continue;  // printed as accuracy already
        snprintf(key, sizeof key, "%s%s", prefix, glue->names[k]);
        print_json_number(key, glue->values[k], 6);
    }
    if (glue->count > 0) {
        snprintf(key, sizeof key, "%sscore", prefix);
        print_json_number(key, glue->score, 6);
    }
}

// MNLI's dev_mismatched evaluation (GLUE's MNLI-mm) next to the matched figures.
static void print_mnli_mismatched(const char *prefix, const qft_mnli_mismatched *mm) {
    if (!mm->present) return;
    char key[80];
    snprintf(key, sizeof key, "%smnli_mm_accuracy", prefix);
    print_json_number(key, mm->accuracy, 6);
    snprintf(key, sizeof key, "%smnli_mm_loss", prefix);
    print_json_number(key, mm->loss, 6);
    printf(", \"%smnli_mm_examples\": %ld", prefix, mm->examples);
}

static int fail(const char *command, const qft_error *err) {
    fprintf(stderr, "qft %s: error: %s\n", command, err->message);
    printf("{\"command\": \"%s\", \"ok\": false, \"error\": ", command);
    print_json_string(err->message);
    printf("}\n");
    return 1;
}

// Applies --config FILE and key=value overrides, in command-line order, over *cfg.
static qft_status load_config(int argc, char **argv, qft_config *cfg, qft_error *err) {
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) return qft_fail(err, QFT_ERR_INVALID, "--config needs a file name");
            qft_status st = qft_config_load_file(cfg, argv[++i], err);
            if (st != QFT_OK) return st;
        } else if (strchr(argv[i], '=')) {
            qft_status st = qft_config_override(cfg, argv[i], err);
            if (st != QFT_OK) return st;
        } else {
            return qft_fail(err, QFT_ERR_INVALID,
                            "unexpected argument '%s' (expected --config FILE or key.path=value)", argv[i]);
        }
    }
    return QFT_OK;
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *command = argv[1];
    if (strcmp(command, "config-docs") == 0) {
        qft_config_write_docs(stdout);
        return 0;
    }
    int known = strcmp(command, "train") == 0 || strcmp(command, "eval") == 0 || strcmp(command, "predict") == 0 ||
                strcmp(command, "config") == 0 || strcmp(command, "quant-sites") == 0 ||
                strcmp(command, "calibrate") == 0 || strcmp(command, "analyze") == 0 || strcmp(command, "reparam") == 0;
    if (!known) {
        fprintf(stderr, "qft: unknown command '%s'\n", command);
        usage(stderr);
        return 2;
    }

    qft_config cfg;
    qft_error err = {{0}};
    qft_config_defaults(&cfg);
    if (load_config(argc, argv, &cfg, &err) != QFT_OK) return fail(command, &err);
    if (cfg.model.hf_config[0]) {
        // model.hf_config sets the architecture under the explicit keys: start again from the
        // defaults with config.json applied, then replay the file and the overrides on top.
        qft_config base;
        qft_config_defaults(&base);
        char hf_path[QFT_STR_MAX];
        snprintf(hf_path, sizeof hf_path, "%s", cfg.model.hf_config);
        qft_model_config hf;
        if (qft_hf_config_load(hf_path, &hf, &err) != QFT_OK) return fail(command, &err);
        base.model = hf;
        snprintf(base.model.hf_config, sizeof base.model.hf_config, "%s", hf_path);
        cfg = base;
        if (load_config(argc, argv, &cfg, &err) != QFT_OK) return fail(command, &err);
    }
    if (qft_config_validate(&cfg, &err) != QFT_OK) return fail(command, &err);

    if (strcmp(command, "config") == 0) {
        return qft_config_write_stream(&cfg, stdout, &err) == QFT_OK ? 0 : fail(command, &err);
    }
    if (strcmp(command, "calibrate") == 0) {
        qft_calibrate_summary cal;
        if (qft_calibrate(&cfg, &cal, &err) != QFT_OK) return fail(command, &err);
        printf("{\"command\": \"calibrate\", \"ok\": true, \"sites\": %d, \"batches\": %d, \"examples\": %ld",
               cal.sites, cal.batches, cal.examples);
        print_json_number("seconds", cal.seconds, 2);
        printf(", \"calibration\": ");
        print_json_string(cal.path);
        printf("}\n");
        return 0;
    }
    if (strcmp(command, "reparam") == 0) {
        qft_reparam_cmd_summary rp;
        if (qft_reparam_command(&cfg, &rp, &err) != QFT_OK) return fail(command, &err);
        printf("{\"command\": \"reparam\", \"ok\": true, \"folded\": %d, \"recalibrated\": %d", rp.fold.folded,
               rp.fold.recalibrated);
        print_json_number("min_r1", rp.fold.min_r1, 6);
        print_json_number("max_r1", rp.fold.max_r1, 6);
        printf(", \"eval_config\": ");
        print_json_string(rp.eval_config);
        printf("}\n");
        return 0;
    }
    if (strcmp(command, "quant-sites") == 0) {
        qft_quant_sites_summary sites;
        if (qft_quant_sites(&cfg, stdout, &sites, &err) != QFT_OK) return fail(command, &err);
        printf("{\"command\": \"quant-sites\", \"ok\": true, \"sites\": %d, \"enabled\": %d}\n", sites.sites,
               sites.enabled);
        return 0;
    }
    if (strcmp(command, "analyze") == 0) {
        qft_analyze_cmd_summary an;
        if (qft_analyze_run(&cfg, &an, &err) != QFT_OK) return fail(command, &err);
        printf("{\"command\": \"analyze\", \"ok\": true, \"run\": ");
        print_json_string(cfg.run.name);
        printf(", \"weights\": ");
        print_json_string(an.weights);
        printf(", \"report\": ");
        print_json_string(an.report);
        printf(", \"plotted\": %s, \"batches\": %ld, \"examples\": %ld, \"sites\": %d, \"values\": %llu",
               an.plotted ? "true" : "false", an.batches, an.examples, an.sites, (unsigned long long)an.values);
        for (int i = 0; i < an.bit_count; i++) {
            const qft_analyze_cmd_bits *b = &an.bits[i];
            char key[64];
            static const char *const parts[] = {"share_clip", "share_round_out", "share_round_in0", "share_amp",
                                                "share_amp_input", "share_amp_output", "share_amp_probs",
                                                "median_share_amp", "top_site_share_amp"};
            const double values[] = {b->share_clip, b->share_round_out, b->share_round_in0, b->share_amp,
                                     b->share_amp_input, b->share_amp_output, b->share_amp_probs,
                                     b->median_share_amp, b->top_site_share_amp};
            for (int k = 0; k < 9; k++) {
                snprintf(key, sizeof key, "%s_%dbit", parts[k], b->bits);
                print_json_number(key, values[k], 6);
            }
            printf(", \"top_site_%dbit\": ", b->bits);
            print_json_string(b->top_site);
        }
        printf("}\n");
        return 0;
    }
    if (strcmp(command, "eval") == 0) {
        qft_eval_summary ev;
        if (qft_evaluate(&cfg, &ev, &err) != QFT_OK) return fail(command, &err);
        printf("{\"command\": \"eval\", \"ok\": true, \"quantized\": %s, \"split\": \"%s\", \"examples\": %ld",
               ev.quantized ? "true" : "false", ev.split, ev.examples);
        print_json_number("loss", ev.loss, 6);
        print_json_number("accuracy", ev.accuracy, 6);
        print_glue_metrics("", &ev.glue);
        print_mnli_mismatched("", &ev.mnli_mm);
        printf("}\n");
        return 0;
    }
    if (strcmp(command, "predict") == 0) {
        qft_predict_summary pred;
        if (qft_predict(&cfg, &pred, &err) != QFT_OK) return fail(command, &err);
        printf("{\"command\": \"predict\", \"ok\": true, \"files\": [");
        for (int k = 0; k < pred.file_count; k++) {
            if (k) printf(", ");
            print_json_string(pred.files[k]);
        }
        printf("], \"examples\": [");
        for (int k = 0; k < pred.file_count; k++) printf("%s%ld", k ? ", " : "", pred.examples[k]);
        printf("]}\n");
        return 0;
    }

    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop_signal;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    qft_train_summary summary;
    if (qft_train(&cfg, &stop_requested, &summary, &err) != QFT_OK) return fail(command, &err);
    printf("{\"command\": \"train\", \"ok\": true, \"run\": ");
    print_json_string(cfg.run.name);
    printf(", \"steps\": %ld, \"steps_this_run\": %ld, \"resumed\": %s, \"interrupted\": %s", summary.steps_done,
           summary.steps_this_run, summary.resumed ? "true" : "false", summary.interrupted ? "true" : "false");
    print_json_number("final_loss", summary.final_loss, 6);
    print_json_number("eval_loss", summary.eval_loss, 6);
    print_json_number("eval_accuracy", summary.eval_accuracy, 6);
    printf(", \"eval_split\": \"%s\", \"train_examples\": %ld", summary.eval_split, summary.train_examples);
    print_glue_metrics("eval_", &summary.glue);
    print_mnli_mismatched("eval_", &summary.mnli_mm);
    print_json_number("train_seconds", summary.train_seconds, 2);
    print_json_number("ms_per_step", summary.ms_per_step, 3);
    print_json_number("peak_rss_mb", summary.peak_rss_mb, 1);
    printf(", \"checkpoint\": ");
    print_json_string(summary.checkpoint);
    printf("}\n");
    return 0;
}
