// Writes the `qft analyze` report: Markdown tables, one CSV per plot, and PNGs drawn by a gnuplot
// script that names only fixed files (site names travel in the CSVs, never through a shell).
#include "analyze_report.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

extern char **environ;

#define HISTOGRAM_BINS 256
#define MAX_BIT_WIDTHS 8   // bits are 2..8, so at most 7 distinct widths

qft_analyze_report_options qft_analyze_report_options_default(void) {
    qft_analyze_report_options o;
    memset(&o, 0, sizeof o);
    o.top_channels = 5;
    return o;
}

typedef struct {
    const char *dir;
    qft_error *err;
} writer;

static qft_status open_file(const writer *w, const char *name, FILE **file) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", w->dir, name) >= sizeof path)
        return qft_fail(w->err, QFT_ERR_INVALID, "%s: report directory path too long", w->dir);
    *file = fopen(path, "w");
    if (!*file) return qft_fail(w->err, QFT_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    return QFT_OK;
}

static qft_status close_file(const writer *w, const char *name, FILE *file) {
    int bad = ferror(file);
    if (fclose(file) != 0 || bad) return qft_fail(w->err, QFT_ERR_IO, "%s/%s: write failed", w->dir, name);
    return QFT_OK;
}

// RFC 4180 field: quoted, inner quotes doubled, so any site name survives a CSV reader.
static void csv_name(FILE *f, const char *name) {
    fputc('"', f);
    for (const char *p = name; *p; p++) {
        if (*p == '"') fputc('"', f);
        fputc(*p == '\n' || *p == '\r' ? ' ' : *p, f);
    }
    fputc('"', f);
}

// Markdown table cell text: characters that would end the cell or start markup are escaped.
static void md_text(FILE *f, const char *text) {
    for (const char *p = text; *p; p++) {
        if (*p == '\n' || *p == '\r') {
            fputc(' ', f);
            continue;
        }
        if (strchr("\\`*_{}[]<>()#+-!|~", *p)) fputc('\\', f);
        fputc(*p, f);
    }
}

// A name safe inside a single-quoted gnuplot string with enhanced text off: [A-Za-z0-9.-] kept, others '_'.
static void gnuplot_label(char *out, size_t size, const char *name) {
    size_t i = 0;
    for (const char *p = name; *p && i + 1 < size; p++, i++) {
        char c = *p;
        int keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
        out[i] = keep ? c : '_';
    }
    out[i] = '\0';
}

static int collect_bit_widths(const qft_analyze_site *sites, size_t count, int *bits) {
    int n = 0;
    for (size_t s = 0; s < count; s++)
        for (size_t e = 0; e < sites[s].error_count; e++) {
            int b = sites[s].errors[e].bits, seen = 0;
            for (int i = 0; i < n; i++) seen |= bits[i] == b;
            if (seen || n == MAX_BIT_WIDTHS) continue;
            int i = n++;
            for (; i > 0 && bits[i - 1] > b; i--) bits[i] = bits[i - 1];
            bits[i] = b;
        }
    return n;
}

static const qft_analyze_error *site_error(const qft_analyze_site *site, int bits, size_t *index) {
    for (size_t e = 0; e < site->error_count; e++)
        if (site->errors[e].bits == bits) {
            *index = e;
            return &site->errors[e];
        }
    return NULL;
}

static qft_status write_ranges_csv(const writer *w, const qft_analyze_site *sites, const qft_analyze_summary *sum,
                                   size_t count) {
    FILE *f;
    qft_status st = open_file(w, "ranges.csv", &f);
    if (st != QFT_OK) return st;
    fprintf(f, "index,site,min,max,p0.01,p99.99,absmax\n");
    for (size_t s = 0; s < count; s++) {
        fprintf(f, "%zu,", s);
        csv_name(f, sites[s].name);
        fprintf(f, ",%.9g,%.9g,%.9g,%.9g,%.9g\n", sum[s].min, sum[s].max, sum[s].percentile[0],
                sum[s].percentile[QFT_ANALYZE_PERCENTILE_COUNT - 1], sum[s].absmax);
    }
    return close_file(w, "ranges.csv", f);
}

// The values the integer grid can produce, (q - z) * scale for q in [qmin, qmax].
static double grid_value(const qft_analyze_error *e, int q) { return ((double)q - e->zero_point) * e->scale; }

static qft_status write_histogram_csvs(const writer *w, const qft_analyze_site *site, const qft_analyze_error *grid,
                                       double *max_count) {
    const qft_analyze_stats *s = site->stats;
    double lo = s->min, hi = s->max;
    if (!(hi > lo)) {
        // A constant tensor: one bin around its value.
        double pad = fmax(fabs(lo) * 1e-3, 1e-6);
        lo -= pad;
        hi += pad;
    }
    double counts[HISTOGRAM_BINS];
    qft_status st = qft_analyze_stats_linear_histogram(s, lo, hi, HISTOGRAM_BINS, counts, w->err);
    if (st != QFT_OK) return st;
    FILE *f;
    if ((st = open_file(w, "histogram.csv", &f)) != QFT_OK) return st;
    fprintf(f, "bin_lo,bin_hi,count\n");
    double width = (hi - lo) / HISTOGRAM_BINS;
    *max_count = 1.0;
    for (size_t b = 0; b < HISTOGRAM_BINS; b++) {
        fprintf(f, "%.9g,%.9g,%.9g\n", lo + (double)b * width, lo + (double)(b + 1) * width, counts[b]);
        if (counts[b] > *max_count) *max_count = counts[b];
    }
    if ((st = close_file(w, "histogram.csv", f)) != QFT_OK) return st;
    if ((st = open_file(w, "histogram_grid.csv", &f)) != QFT_OK) return st;
    fprintf(f, "q,value\n");
    if (grid)
        for (int q = grid->qmin; q <= grid->qmax; q++) fprintf(f, "%d,%.9g\n", q, grid_value(grid, q));
    return close_file(w, "histogram_grid.csv", f);
}

static qft_status write_error_csv(const writer *w, const qft_analyze_site *sites, size_t count, int bits) {
    char name[64];
    snprintf(name, sizeof name, "error_split_%dbit.csv", bits);
    FILE *f;
    qft_status st = open_file(w, name, &f);
    if (st != QFT_OK) return st;
    fprintf(f, "index,site,clip_pct,round_out_pct,round_in0_pct,amp_pct,e_tot,e_clip,e_round_out,e_round_in0,e_amp,"
               "e_amp_uniform,output_amp_pct\n");
    for (size_t s = 0; s < count; s++) {
        size_t index;
        const qft_analyze_error *e = site_error(&sites[s], bits, &index);
        if (!e) continue;
        fprintf(f, "%zu,", s);
        csv_name(f, sites[s].name);
        fprintf(f, ",%.6f,%.6f,%.6f,%.6f,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,", 100.0 * e->share_clip,
                100.0 * e->share_round_out, 100.0 * e->share_round_in0, 100.0 * e->share_amp, e->e_tot, e->e_clip,
                e->e_round_out, e->e_round_in0, e->e_amp, e->e_amp_uniform);
        if (sites[s].outputs) fprintf(f, "%.6f", 100.0 * sites[s].outputs[index].share_amp);
        fputc('\n', f);
    }
    return close_file(w, name, f);
}

static qft_status write_gnuplot_script(const writer *w, size_t count, const qft_analyze_site *hist_site,
                                       const qft_analyze_error *grid, double max_count, const int *bits,
                                       int bit_count) {
    FILE *f;
    qft_status st = open_file(w, "plots.gp", &f);
    if (st != QFT_OK) return st;
    int width = 480 + 16 * (int)(count < 200 ? count : 200);
    fprintf(f, "# Draws the qft analyze plots from the CSVs beside it: gnuplot plots.gp\n"
               "set datafile separator comma\nset datafile columnheaders\nset grid ytics\n"
               "set key outside right top\nset xtics rotate by 90 right\nset offsets 0.5, 0.5, 0, 0\n");
    fprintf(f, "set terminal pngcairo noenhanced size %d,600 font ',9'\n", width);
    fprintf(f, "set output 'ranges.png'\nset title 'Activation range per site'\nset ylabel 'value'\n"
               "plot 'ranges.csv' using 1:4:xticlabels(2) with linespoints title 'max', \\\n"
               "     '' using 1:6 with linespoints title 'p99.99', \\\n"
               "     '' using 1:5 with linespoints title 'p0.01', \\\n"
               "     '' using 1:3 with linespoints title 'min'\n");
    for (int i = 0; i < bit_count; i++)
        fprintf(f, "set output 'error_split_%dbit.png'\nset title 'Quantization error split, %d bit (share of E_tot)'\n"
                   "set ylabel 'percent of E_tot'\nset style data histograms\nset style histogram rowstacked\n"
                   "set style fill solid 0.8 border -1\nset boxwidth 0.8\n"
                   "plot 'error_split_%dbit.csv' using 3:xticlabels(2) title 'clip', '' using 4 title 'round_out', \\\n"
                   "     '' using 5 title 'round_in0', '' using 6 title 'amp'\n",
                bits[i], bits[i], bits[i]);
    char label[256];
    gnuplot_label(label, sizeof label, hist_site->name);
    fprintf(f, "set terminal pngcairo noenhanced size 1000,600 font ',9'\nset output 'histogram.png'\n"
               "set offsets 0, 0, 0, 0\nset style fill solid 0.6 noborder\nset xtics norotate autojustify\n"
               "set logscale y\n"
               "set yrange [0.5:%.9g]\nset xlabel 'value'\nset ylabel 'count'\n",
            max_count * 2.0);
    double lo = hist_site->stats->min, hi = hist_site->stats->max;
    if (grid) {
        double g_lo = grid_value(grid, grid->qmin), g_hi = grid_value(grid, grid->qmax);
        double i_lo = ((double)grid->qmin - grid->zero_point0) * grid->scale0;
        double i_hi = ((double)grid->qmax - grid->zero_point0) * grid->scale0;
        lo = fmin(lo, g_lo);
        hi = fmax(hi, g_hi);
        fprintf(f, "set title '%s: values and the %d-bit grid (gray; red: its ends; blue: inlier-only range)'\n", label,
                grid->bits);
        fprintf(f, "set arrow 1 from %.9g, graph 0 to %.9g, graph 1 nohead lc rgb 'red' lw 1.5 front\n", g_lo, g_lo);
        fprintf(f, "set arrow 2 from %.9g, graph 0 to %.9g, graph 1 nohead lc rgb 'red' lw 1.5 front\n", g_hi, g_hi);
        fprintf(f, "set arrow 3 from %.9g, graph 0 to %.9g, graph 1 nohead lc rgb 'blue' dt 2 front\n", i_lo, i_lo);
        fprintf(f, "set arrow 4 from %.9g, graph 0 to %.9g, graph 1 nohead lc rgb 'blue' dt 2 front\n", i_hi, i_hi);
    } else {
        fprintf(f, "set title '%s: values'\n", label);
    }
    double pad = fmax((hi - lo) * 0.02, 1e-6);
    fprintf(f, "set xrange [%.9g:%.9g]\n", lo - pad, hi + pad);
    fprintf(f, "plot 'histogram_grid.csv' using 2:(0.5):(0):(%.9g) with vectors nohead lc rgb '#c8c8c8' title 'grid', "
               "\\\n     'histogram.csv' using (($1+$2)/2):($3 > 0 ? $3 : 1/0):($2-$1) with boxes lc rgb '#3060a0' "
               "title 'count'\n",
            max_count * 2.0 - 0.5);
    return close_file(w, "plots.gp", f);
}

typedef enum { PLOTS_MADE, PLOTS_NO_GNUPLOT, PLOTS_FAILED } plot_result;

// posix_spawnp with argv: no shell sees the directory or any name; gnuplot's chatter goes to
// gnuplot.log so qft's stdout keeps only its JSON line.
static plot_result run_gnuplot(const char *program, const char *dir, char *why, size_t why_size) {
    posix_spawn_file_actions_t actions;
    if (posix_spawn_file_actions_init(&actions) != 0) {
        snprintf(why, why_size, "cannot set up the gnuplot process");
        return PLOTS_FAILED;
    }
    int rc = posix_spawn_file_actions_addchdir_np(&actions, dir);
    if (rc == 0)
        rc = posix_spawn_file_actions_addopen(&actions, 1, "gnuplot.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, 1, 2);
    if (rc == 0) rc = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&actions);
        snprintf(why, why_size, "cannot set up the gnuplot process: %s", strerror(rc));
        return PLOTS_FAILED;
    }
    char *argv[] = {(char *)program, "plots.gp", NULL};
    pid_t pid;
    fflush(NULL);
    rc = posix_spawnp(&pid, program, &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc == ENOENT || rc == EACCES) {
        snprintf(why, why_size, "%s not found", program);
        return PLOTS_NO_GNUPLOT;
    }
    if (rc != 0) {
        snprintf(why, why_size, "cannot run %s: %s", program, strerror(rc));
        return PLOTS_FAILED;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            snprintf(why, why_size, "lost the %s process: %s", program, strerror(errno));
            return PLOTS_FAILED;
        }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(why, why_size, "%s failed (status %d); see gnuplot.log", program,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return PLOTS_FAILED;
    }
    return PLOTS_MADE;
}

static void md_number(FILE *f, double v) {
    if (isnan(v))
        fprintf(f, " n/a |");
    else
        fprintf(f, " %.4g |", v);
}

static void write_report_md(FILE *f, const qft_analyze_site *sites, const qft_analyze_summary *sum, size_t count,
                            const qft_analyze_report_options *o, const int *bits, int bit_count, plot_result plots,
                            const char *why) {
    fprintf(f, "# ");
    md_text(f, o->title ? o->title : "qft analyze");
    fprintf(f, "\n\n%zu sites. Definitions: docs/analyze.md. Percentiles come from a magnitude histogram "
               "(error <= 0.78%% of |value|); sigma counts use each batch's own mean and std.\n\n",
            count);
    fprintf(f, "## Plots\n\n");
    if (plots == PLOTS_MADE) {
        fprintf(f, "![ranges](ranges.png)\n\n![histogram](histogram.png)\n\n");
        for (int i = 0; i < bit_count; i++)
            fprintf(f, "![error split %d bit](error_split_%dbit.png)\n\n", bits[i], bits[i]);
    } else {
        fprintf(f, "Plots skipped (%s); their data is in ranges.csv, histogram.csv, histogram_grid.csv and "
                   "error_split_<b>bit.csv.\n\n",
                why);
    }
    fprintf(f, "## Statistics\n\n| # | site | count | min | max | mean | std | kurtosis | max abs |");
    for (int i = 0; i < QFT_ANALYZE_PERCENTILE_COUNT; i++) fprintf(f, " p%g |", qft_analyze_percentiles[i]);
    fprintf(f, " > 3 sigma | > 6 sigma |\n|");
    for (int i = 0; i < 11 + QFT_ANALYZE_PERCENTILE_COUNT; i++) fprintf(f, "---|");
    fputc('\n', f);
    for (size_t s = 0; s < count; s++) {
        const qft_analyze_summary *m = &sum[s];
        fprintf(f, "| %zu | ", s);
        md_text(f, sites[s].name);
        fprintf(f, " | %llu |", (unsigned long long)m->count);
        md_number(f, m->min);
        md_number(f, m->max);
        md_number(f, m->mean);
        md_number(f, m->std);
        md_number(f, m->kurtosis);
        md_number(f, m->absmax);
        for (int i = 0; i < QFT_ANALYZE_PERCENTILE_COUNT; i++) md_number(f, m->percentile[i]);
        md_number(f, m->frac_beyond_3sigma);
        md_number(f, m->frac_beyond_6sigma);
        fputc('\n', f);
    }
    int any_nonfinite = 0;
    for (size_t s = 0; s < count; s++) any_nonfinite |= sum[s].nonfinite > 0;
    if (any_nonfinite) {
        fprintf(f, "\nNon-finite values (left out of every statistic):");
        for (size_t s = 0; s < count; s++)
            if (sum[s].nonfinite) {
                fputc(' ', f);
                md_text(f, sites[s].name);
                fprintf(f, " %llu;", (unsigned long long)sum[s].nonfinite);
            }
        fputc('\n', f);
    }

    if (o->top_channels) {
        fprintf(f, "\n## Outlier channels and tokens\n\nChannels: index (max abs, ratio to the median channel's max "
                   "abs). Tokens: batch/row (position in the sequence): max abs.\n\n"
                   "| site | top channels | top tokens |\n|---|---|---|\n");
        qft_analyze_channel channels[16];
        size_t want = o->top_channels < 16 ? o->top_channels : 16;
        for (size_t s = 0; s < count; s++) {
            size_t got = 0;
            fprintf(f, "| ");
            md_text(f, sites[s].name);
            fprintf(f, " |");
            if (qft_analyze_stats_top_channels(sites[s].stats, want, channels, &got, NULL) != QFT_OK)
                fprintf(f, " (out of memory)");
            for (size_t c = 0; c < got; c++)
                fprintf(f, " %zu (%.4g, %.3gx)%s", channels[c].channel, channels[c].absmax,
                        channels[c].ratio_to_median, c + 1 < got ? "," : "");
            fprintf(f, " |");
            const qft_analyze_stats *st = sites[s].stats;
            for (size_t t = 0; t < st->top_count; t++)
                fprintf(f, " %llu/%zu (%zu): %.4g%s", (unsigned long long)st->top[t].batch, st->top[t].row,
                        st->top[t].position, st->top[t].absmax, t + 1 < st->top_count ? "," : "");
            fprintf(f, " |\n");
        }
    }

    for (int i = 0; i < bit_count; i++) {
        fprintf(f, "\n## Quantization error, %d bit\n\nShares of E_tot (MSE per value). amp pred: the uniform-noise "
                   "estimate (|I\\\\C|/N)(scale^2 - scale0^2)/12 beside the measured E_amp.\n\n"
                   "| # | site | E_tot | clip | round out | round in0 | amp | E_amp | amp pred | outliers | clipped | "
                   "scale | scale0 | output amp |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
                bits[i]);
        for (size_t s = 0; s < count; s++) {
            size_t index;
            const qft_analyze_error *e = site_error(&sites[s], bits[i], &index);
            if (!e) continue;
            fprintf(f, "| %zu | ", s);
            md_text(f, sites[s].name);
            fprintf(f, " | %.4g | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.4g | %.4g | %zu | %zu | %.4g | %.4g |",
                    e->e_tot, 100.0 * e->share_clip, 100.0 * e->share_round_out, 100.0 * e->share_round_in0,
                    100.0 * e->share_amp, e->e_amp, e->e_amp_uniform, e->outliers, e->clipped, e->scale, e->scale0);
            if (sites[s].outputs)
                fprintf(f, " %.1f%% |\n", 100.0 * sites[s].outputs[index].share_amp);
            else
                fprintf(f, " |\n");
        }
    }
}

qft_status qft_analyze_report_write(const char *dir, const qft_analyze_site *sites, size_t count,
                                    const qft_analyze_report_options *options, int *plotted, qft_error *err) {
    qft_analyze_report_options o = options ? *options : qft_analyze_report_options_default();
    if (plotted) *plotted = 0;
    if (count == 0) return qft_fail(err, QFT_ERR_INVALID, "%s: analyze report with no sites", dir);
    if (o.histogram_site >= count)
        return qft_fail(err, QFT_ERR_INVALID, "%s: histogram site %zu, only %zu sites", dir, o.histogram_site, count);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return qft_fail(err, QFT_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    writer w = {dir, err};
    qft_analyze_summary *sum = calloc(count, sizeof *sum);
    if (!sum) return qft_fail(err, QFT_ERR_OOM, "%s: cannot allocate %zu site summaries", dir, count);
    qft_status st = QFT_OK;
    for (size_t s = 0; s < count && st == QFT_OK; s++)
        st = qft_analyze_stats_summary(sites[s].stats, sites[s].name, &sum[s], err);
    int bits[MAX_BIT_WIDTHS], bit_count = collect_bit_widths(sites, count, bits);
    const qft_analyze_site *hist_site = &sites[o.histogram_site];
    const qft_analyze_error *grid = NULL;
    if (hist_site->error_count)
        grid = &hist_site->errors[o.histogram_error < hist_site->error_count ? o.histogram_error : 0];
    double max_count = 1.0;
    if (st == QFT_OK) st = write_ranges_csv(&w, sites, sum, count);
    if (st == QFT_OK) st = write_histogram_csvs(&w, hist_site, grid, &max_count);
    for (int i = 0; i < bit_count && st == QFT_OK; i++) st = write_error_csv(&w, sites, count, bits[i]);
    if (st == QFT_OK) st = write_gnuplot_script(&w, count, hist_site, grid, max_count, bits, bit_count);
    if (st != QFT_OK) {
        free(sum);
        return st;
    }
    char why[512] = "";
    plot_result plots = run_gnuplot(o.gnuplot ? o.gnuplot : "gnuplot", dir, why, sizeof why);
    if (plotted) *plotted = plots == PLOTS_MADE;
    FILE *f;
    st = open_file(&w, "report.md", &f);
    if (st == QFT_OK) {
        write_report_md(f, sites, sum, count, &o, bits, bit_count, plots, why);
        st = close_file(&w, "report.md", f);
    }
    free(sum);
    return st;
}
