/* skip_one.c: a step that is not finite on one process only is skipped on every process.
 * Run as `mpirun -np 2 build/test_mpi_skip`: the library's trainer on MPI_Allreduce (as the
 * glow command gives it), with a weight of process 1 made NaN before one step. Prints
 * "ok" and exits 0, or says what went wrong and exits 1. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "glow.h"

static void allreduce(void *data, size_t n, int is_real, glow_reduce_op op, void *user) {
    MPI_Datatype type = !is_real || sizeof(glow_real) == 8 ? MPI_DOUBLE : MPI_FLOAT;
    MPI_Allreduce(MPI_IN_PLACE, data, (int)n, type, op == GLOW_REDUCE_SUM ? MPI_SUM : MPI_MAX,
                  MPI_COMM_WORLD);
}

static int skips;
static void on_event(const glow_train_event *e, void *user) {
    if (e->kind == GLOW_EVENT_SKIP) skips++;
}

static int fail(int rank, const char *what) {
    fprintf(stderr, "process %d: %s\n", rank, what);
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    glow_comm comm = {0, 1, allreduce, NULL};
    MPI_Comm_rank(MPI_COMM_WORLD, &comm.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &comm.size);
    int rank = comm.rank;
    glow_dataset ds = {0}, train = {0};
    if (glow_dataset_load(&ds, "/usr/share/datasets/fashion-mnist", "test", 0) != GLOW_OK ||
        glow_dataset_subset(&train, &ds, 0, 256) != GLOW_OK)
        return fail(rank, glow_last_error());
    glow_config cfg;
    glow_config_default(&cfg);
    cfg.depth = 2, cfg.width = 16;
    glow_train_options o;
    glow_train_options_default(&o);
    o.batch = 16, o.init_batch = 32, o.steps = 3, o.threads = 1, o.eval_every = 0, o.eval_n = 16;
    o.n_samples = 0, o.callback = on_event, o.comm = &comm;
    glow_trainer *t = glow_trainer_create(&cfg, &train, NULL, &o);
    if (!t) return fail(rank, glow_last_error());
    glow_model *m = glow_trainer_model(t);
    size_t n = glow_model_n_params(m);
    if (glow_trainer_step(t) != GLOW_OK) return fail(rank, glow_trainer_error(t));
    /* One weight of process 1 only becomes NaN: its loss is not finite, process 0's is. */
    glow_real *p = glow_model_params(m), *before = malloc(sizeof(glow_real) * n);
    memcpy(before, p, sizeof(glow_real) * n);
    int i = glow_model_find_tensor(m, "level0.step0.actnorm.bias");
    if (i < 0) return fail(rank, "no tensor level0.step0.actnorm.bias");
    size_t at = glow_model_tensor(m, i)->offset;
    if (rank == 1) p[at] = NAN;
    if (glow_trainer_step(t) != GLOW_OK) return fail(rank, glow_trainer_error(t));
    if (rank == 1) p[at] = before[at];
    if (skips != 1 || glow_trainer_state(t)->skipped != 1 || glow_trainer_state(t)->step != 1)
        return fail(rank, "the step was not skipped here");
    if (memcmp(before, p, sizeof(glow_real) * n))
        return fail(rank, "a skipped step changed the weights");
    /* And the run goes on, together. */
    if (glow_trainer_step(t) != GLOW_OK || glow_trainer_state(t)->step != 2)
        return fail(rank, "the step after the skip did not run");
    double sum = 0;
    for (size_t j = 0; j < n; j++) sum += p[j];
    double lo = -sum, hi = sum;
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (hi != -lo) return fail(rank, "the processes' weights differ after the skip");
    if (rank == 0) printf("ok\n");
    free(before);
    glow_trainer_free(t);
    glow_dataset_free(&train), glow_dataset_free(&ds);
    MPI_Finalize();
    return 0;
}
