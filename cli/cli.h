/* cli.h: what the subcommands of `glow` share: exit codes, strict number parsing, the
 * model options, loading data and checkpoints, progress and time. */
#ifndef GLOW_CLI_H
#define GLOW_CLI_H

#include <getopt.h>
#include <stdio.h>
#include "glow.h"

/* Exit status: 0 success, 1 a failure the user can fix (bad input, missing file), 2 bad
 * usage. Never a signal. */
enum { EXIT_USER = 1, EXIT_USAGE = 2 };

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

/* Print "glow <cmd>: <message>" on one line to stderr; returns EXIT_USER. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same for bad usage; returns EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern const char *cli_command; /* "train", "eval", ... for messages */

/* Options shared by several commands: one spelling and one meaning everywhere. A command
 * lists the ones it takes in its option table with these macros. */
enum { OPT_CHECKPOINT = 1000, OPT_DATA, OPT_SPLIT, OPT_N, OPT_BATCH, OPT_RAW, OPT_THREADS,
       OPT_OUT, OPT_MATMUL, OPT_ZOOM, OPT_HELP };
#define OPTION_CHECKPOINT {"checkpoint", required_argument, 0, OPT_CHECKPOINT}
#define OPTION_DATA {"data", required_argument, 0, OPT_DATA}
#define OPTION_SPLIT {"split", required_argument, 0, OPT_SPLIT}
#define OPTION_N {"n", required_argument, 0, OPT_N}
#define OPTION_BATCH {"batch", required_argument, 0, OPT_BATCH}
#define OPTION_RAW {"raw", no_argument, 0, OPT_RAW}
#define OPTION_THREADS {"threads", required_argument, 0, OPT_THREADS}
#define OPTION_OUT {"out", required_argument, 0, OPT_OUT}
#define OPTION_MATMUL {"matmul", required_argument, 0, OPT_MATMUL}
#define OPTION_ZOOM {"zoom", required_argument, 0, OPT_ZOOM}
#define OPTION_HELP {"help", no_argument, 0, OPT_HELP}

typedef struct common_opts {
    const char *checkpoint, *data, *split, *out, *matmul;
    int n, batch, raw, threads, zoom; /* zoom: 0 means 1 */
} common_opts;

/* Many processes (cli/mpi.c): under mpirun, the processes of one job; otherwise rank 0
 * of 1. cli_mpi_start starts MPI if a launcher started this process. */
void cli_mpi_start(int *argc, char ***argv);
void cli_mpi_end(void);
int cli_rank(void);
int cli_size(void);
const glow_comm *cli_comm(void);  /* NULL for one process */
/* The largest of every process's exit status, so that all stop where one fails (the others
 * would wait for it); rank 0 says which failed when it did not. */
int cli_agree(int status);
/* The largest value and the sum over the processes. */
double cli_max(double v);
double cli_sum(double v);
/* The threads of a process: `threads` if > 0, else its share of the machine's cores. */
int cli_threads(int threads);
/* "MPI on, 4 processes", "MPI off (built without mpicc)", ... */
const char *cli_mpi_info(void);

/* A command's own options: returns 0, or the exit status of a usage error. */
typedef int (*own_option_fn)(void *ctx, int c, const char *arg);
/* Parse argv: the shared options into `common` (keep its defaults where not given), the
 * command's own through `own`. Returns 0 to go on, -1 after printing --help (exit 0), or
 * a usage error's exit status. Positional arguments stay at argv[optind...]. */
int parse_command_line(int argc, char **argv, const struct option *opts, const char *help,
                       common_opts *common, own_option_fn own, void *ctx);
/* --matmul's value: 0 if fp32 or bf16x3, else the exit status of the usage error printed. */
int check_matmul_option(const char *arg);
/* A compute context with --threads and --matmul (NULL: fp32). Returns 0, or the exit
 * status of the error it printed (bf16x3 where the CPU has no AMX). */
int open_ctx(int threads, const char *matmul, glow_ctx **ctx);
/* The context, then the model of --checkpoint (its Polyak average unless --raw). Returns
 * 0, or the exit status of the error it printed. */
int open_model(const common_opts *common, glow_model **m, glow_ctx **ctx);

/* A training curve: rows of (step, train bits/dim, test bits/dim) as metrics.jsonl has them,
 * NaN where a line has no such value. */
typedef struct curve {
    double *step, *train, *test;
    int n, cap;
} curve;
/* -1 if out of memory (the curve is left as it was). */
int curve_add(curve *c, double step, double train, double test);
/* Append the lines of a metrics file with step <= upto; returns 0, or the exit status of
 * the error it printed when the file cannot be read and `required` is set. */
int curve_load(curve *c, const char *metrics, long long upto, const char *required);
void curve_free(curve *c);

/* Strict parsers: the whole string must be a number in range, else a usage error naming
 * the option. They return 0 on success. */
int parse_int(const char *option, const char *s, long lo, long hi, int *out);
int parse_i64(const char *option, const char *s, long long lo, long long hi, long long *out);
int parse_double(const char *option, const char *s, double lo, double hi, double *out);
/* A comma-separated list of doubles ("0.5,0.7,1"); at most max values. */
int parse_doubles(const char *option, const char *s, double lo, double hi, double *out, int max,
                  int *n);

/* Seconds since an arbitrary start (monotonic). */
double now_seconds(void);
/* "1h02m", "3m12s", "45s" */
void format_duration(char *buf, size_t size, double seconds);
/* Peak resident memory of this process, MiB. */
double peak_rss_mib(void);

/* Load a data set and check that its images fit the model. */
int load_data(glow_dataset *ds, const char *path, const char *split, int image_size);
int check_data_fits(const glow_dataset *ds, const glow_config *cfg, const char *path);


/* Write n images px (n, D) of the model's shape as a PNG grid of `cols` columns, each pixel
 * drawn as a zoom x zoom square (28x28 images are hard to see at 1). */
int write_grid(const char *path, const uint8_t *px, int n, const glow_config *cfg, int cols,
               int zoom);
/* write_grid of model outputs x (n, D). */
int write_sample_grid(const char *path, const glow_real *x, int n, const glow_config *cfg,
                      int cols, int zoom);

/* mkdir -p for the directory part of a path (or the path itself if dir is set). */
int make_dirs(const char *path, int is_dir);

/* Images named on the command line (files, or indices into a data set), or the first
 * `count` images of the data set when none is named. labels[i] is -1 where unknown. */
typedef struct inputs {
    int n;
    uint8_t *pixels; /* (n, D) */
    int *labels;
    int has_labels, n_classes, n_attrs;
    char (*class_names)[32];
    char (*attr_names)[64];
    int8_t *attrs;   /* (n, n_attrs) */
} inputs;
int load_inputs(inputs *in, char **args, int nargs, const char *data, const char *split,
                int count, const glow_config *cfg);
void free_inputs(inputs *in);
/* glow_encode_images and glow_decode_latents, with the error printed: 0 or EXIT_USER. */
int encode_images(glow_ctx *ctx, const glow_model *m, const uint8_t *pixels, const int *labels,
                  int n, int batch, glow_real *z, double *logdet);
int decode_latents(glow_ctx *ctx, const glow_model *m, const glow_real *z, const int *labels,
                   int n, int batch, glow_real *x, double *logdet);

int cmd_train(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_decode(int argc, char **argv);
int cmd_interpolate(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_attributes(int argc, char **argv);
int cmd_manipulate(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
