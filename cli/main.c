/* main.c: the `glow` command: dispatches to one file per subcommand. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli.h"

static const struct {
    const char *name;
    int (*run)(int, char **);
    const char *what;
} commands[] = {
    {"train", cmd_train, "train a model (default: Fashion-MNIST), with checkpoints"},
    {"eval", cmd_eval, "exact bits/dim of a checkpoint on a test set"},
    {"sample", cmd_sample, "a PNG grid of samples at one or more temperatures"},
    {"encode", cmd_encode, "images to latents (.npy), exactly"},
    {"decode", cmd_decode, "latents to images (PNG files or a grid)"},
    {"interpolate", cmd_interpolate, "a strip of images between two images' latents"},
    {"attributes", cmd_attributes, "attribute directions in latent space from labelled data"},
    {"manipulate", cmd_manipulate, "a strip of an image moved along an attribute direction"},
    {"check", cmd_check, "invertibility audit: encode then decode every image"},
    {"bench", cmd_bench, "images/s, GFLOP/s and peak memory of train, encode, sample"},
    {"plot", cmd_plot, "the bits/dim curves of training runs in one PNG"},
    {"serve", cmd_serve, "the interactive explorer of a model, in a web page"},
};

static void usage(FILE *f) {
    fprintf(f, "glow: Glow (Kingma & Dhariwal, 2018) in C: exact likelihood, exact inverse.\n\n"
               "Usage: glow COMMAND [OPTIONS]   (glow COMMAND --help for its options)\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].what);
}

/* The commands that run as many processes under mpirun. */
static int runs_distributed(const char *name) {
    return !strcmp(name, "train") || !strcmp(name, "eval") || !strcmp(name, "check");
}

static int run_command(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("glow %s (%s; %s)\n", glow_version(), glow_blas_info(), cli_mpi_info());
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            cli_command = commands[i].name;
            if (cli_size() > 1 && !runs_distributed(cli_command))
                return cli_rank() ? EXIT_USER
                                  : cli_error("runs as one process: of the commands, only train, "
                                              "eval and check run under mpirun");
            return commands[i].run(argc - 1, argv + 1);
        }
    fprintf(stderr, "glow: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}

int main(int argc, char **argv) {
    glow_tune_environment(argv); /* see glow.h */
    cli_mpi_start(&argc, &argv);
    int status = run_command(argc, argv);
    cli_mpi_end();
    return status;
}
