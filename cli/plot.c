/* plot.c: `glow plot`: the test (and train) bits/dim curves of one or more training runs
 * in one PNG, from their metrics.jsonl files, so that runs can be compared at a glance. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

static const char *help =
    "Usage: glow plot RUN[=LABEL] ... --out FILE [OPTIONS]\n"
    "Bits/dim curves of training runs in one PNG. RUN is a run folder (its metrics.jsonl) or\n"
    "a metrics file; LABEL names it in the legend (default: the folder).\n\n"
    "  --out FILE          the PNG (default curves.png)\n"
    "  --train             the train curves too (the 10-step means of the progress line)\n"
    "  --title T           the title (default \"bits/dim\")\n"
    "  --x time|step       horizontal axis: minutes of training or steps (default step)\n";

enum { O_TRAIN = 256, O_TITLE, O_X };
typedef struct plot_opts {
    int train, minutes;
    const char *title;
} plot_opts;

static int own_option(void *ctx, int c, const char *arg) {
    plot_opts *o = ctx;
    switch (c) {
    case O_TRAIN: o->train = 1; return 0;
    case O_TITLE: o->title = arg; return 0;
    case O_X:
        if (strcmp(arg, "time") && strcmp(arg, "step"))
            return cli_usage_error("--x '%s': expected time or step", arg);
        o->minutes = !strcmp(arg, "time");
        return 0;
    }
    return cli_usage_error("unknown option");
}

/* The minutes since the run's start of each row, from the "time_s" of the train lines;
 * a test line takes the time of the train line of its step. */
static int load_minutes(double *minutes, const curve *c, const char *metrics) {
    FILE *f = fopen(metrics, "r");
    if (!f) return cli_error("%s: cannot open", metrics);
    char *line = NULL;
    size_t cap = 0;
    int i = 0;
    double last = NAN, offset = 0, prev = 0;
    while (getline(&line, &cap, f) > 0 && i < c->n) {
        if (!strstr(line, "\"step\":")) continue;
        const char *t = strstr(line, "\"time_s\":");
        if (t) {
            double v = atof(t + 9);
            if (v < prev) offset += prev; /* a resumed run restarts its clock */
            prev = v, last = (offset + v) / 60;
        }
        minutes[i++] = last;
    }
    free(line);
    fclose(f);
    return 0;
}

int cmd_plot(int argc, char **argv) {
    static const struct option opts[] = {
        OPTION_OUT, OPTION_HELP, {"train", 0, 0, O_TRAIN}, {"title", 1, 0, O_TITLE},
        {"x", 1, 0, O_X}, {0, 0, 0, 0}};
    common_opts co = {.out = "curves.png"};
    plot_opts o = {.title = "bits/dim"};
    int rc = parse_command_line(argc, argv, opts, help, &co, own_option, &o);
    if (rc) return rc < 0 ? 0 : rc;
    int runs = argc - optind, per_run = o.train ? 2 : 1;
    if (runs < 1) return cli_usage_error("give at least one run");
    if (runs * per_run > 8) return cli_usage_error("%d curves: at most 8 in one plot", runs * per_run);
    /* One x array for all: each run's rows are laid end to end, the other runs' series NaN
     * there, so every series is a column over the same rows. */
    curve cv[8] = {{0}};
    char labels[8][160];
    int total = 0;
    for (int r = 0; r < runs; r++) {
        char path[4200], name[4096];
        snprintf(name, sizeof name, "%s", argv[optind + r]);
        char *eq = strchr(name, '=');
        if (eq) *eq = 0;
        size_t len = strlen(name);
        if (len > 6 && !strcmp(name + len - 6, ".jsonl")) snprintf(path, sizeof path, "%s", name);
        else snprintf(path, sizeof path, "%s/metrics.jsonl", name);
        if ((rc = curve_load(&cv[r], path, 1LL << 62, path))) return rc;
        if (cv[r].n == 0) return cli_error("%s: no metrics lines", path);
        snprintf(labels[r * per_run], sizeof labels[0], "%s test", eq ? eq + 1 : name);
        if (o.train) snprintf(labels[r * per_run + 1], sizeof labels[0], "%s train", eq ? eq + 1 : name);
        if (o.minutes) {
            double *m = malloc(sizeof(double) * cv[r].n);
            if (!m) return cli_error("out of memory");
            if ((rc = load_minutes(m, &cv[r], path))) return rc;
            memcpy(cv[r].step, m, sizeof(double) * cv[r].n);
            free(m);
        }
        total += cv[r].n;
    }
    double *x = malloc(sizeof(double) * total), *ys[8];
    for (int s = 0; s < runs * per_run; s++) ys[s] = malloc(sizeof(double) * total);
    if (!x) return cli_error("out of memory");
    for (int at = 0, r = 0; r < runs; at += cv[r].n, r++)
        for (int i = 0; i < cv[r].n; i++) {
            x[at + i] = cv[r].step[i];
            for (int s = 0; s < runs * per_run; s++) {
                int mine = s / per_run == r;
                ys[s][at + i] = !mine ? NAN : s % per_run ? cv[r].train[i] : cv[r].test[i];
            }
        }
    const char *lp[8];
    for (int s = 0; s < runs * per_run; s++) lp[s] = labels[s];
    if (make_dirs(co.out, 0) ||
        glow_plot_write(co.out, o.title, x, (const double *const *)ys, lp, runs * per_run, total,
                        960, 560) != GLOW_OK)
        return cli_error("%s", glow_last_error());
    printf("wrote %s: %d run%s, x = %s\n", co.out, runs, runs > 1 ? "s" : "",
           o.minutes ? "minutes" : "steps");
    for (int s = 0; s < runs * per_run; s++) free(ys[s]);
    for (int r = 0; r < runs; r++) curve_free(&cv[r]);
    free(x);
    return 0;
}
