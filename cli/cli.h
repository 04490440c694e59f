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

/* Load a checkpoint for use (not training): with its Polyak average unless raw is set. */
glow_model *load_model(const char *path, int raw);

/* Load a data set and check that its images fit the model. */
int load_data(glow_dataset *ds, const char *path, const char *split, int image_size);
int check_data_fits(const glow_dataset *ds, const glow_config *cfg, const char *path);

/* Encode/decode helpers over many images in batches (log p, latents). */
int cli_log_prob(glow_model *m, const glow_dataset *ds, int count, int batch, uint64_t seed,
                 double *bpd);

/* Write a grid of model outputs x (n, D) as a PNG. */
int write_sample_grid(const char *path, const glow_real *x, int n, const glow_config *cfg,
                      int cols);

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
/* Encode images from the centre of their bins / decode latents, in batches. */
int encode_images(glow_model *m, const uint8_t *pixels, const int *labels, int n, int batch,
                  glow_real *z, double *logdet);
int decode_latents(glow_model *m, const glow_real *z, const int *labels, int n, int batch,
                   glow_real *x, double *logdet);

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

#endif
