/* mpi.c: glow under mpirun, the processes of a data-parallel run (docs/DISTRIBUTED.md).
 * The Makefile builds this file with MPI (GLOW_MPI) when it finds mpicc. MPI starts only
 * when a launcher started the process (mpirun sets OMPI_COMM_WORLD_SIZE, MPICH's
 * PMI_SIZE); run plainly, or built without MPI, glow is one process and this is trivial. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <omp.h>
#include "cli.h"
#ifdef GLOW_MPI
#include <mpi.h>
#endif

static int rank, size = 1, started;
static glow_comm comm;

#ifdef GLOW_MPI
/* The library's allreduce: MPI_Allreduce in place, in pieces of at most 2^30 values (its
 * count is an int). MPI's default error handler ends the job on a failure. */
static void mpi_allreduce(void *data, size_t n, int is_real, glow_reduce_op op, void *user) {
    MPI_Datatype type = !is_real || sizeof(glow_real) == 8 ? MPI_DOUBLE : MPI_FLOAT;
    size_t elem = is_real ? sizeof(glow_real) : sizeof(double);
    for (size_t done = 0; done < n;) {
        size_t k = n - done < (1u << 30) ? n - done : (1u << 30);
        MPI_Allreduce(MPI_IN_PLACE, (char *)data + done * elem, (int)k, type,
                      op == GLOW_REDUCE_SUM ? MPI_SUM : MPI_MAX, MPI_COMM_WORLD);
        done += k;
    }
}
#endif

static int launched_by_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

void cli_mpi_start(int *argc, char ***argv) {
#ifdef GLOW_MPI
    if (!launched_by_mpirun()) return;
    int provided; /* only the main thread calls MPI */
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    started = 1;
    comm = (glow_comm){rank, size, mpi_allreduce, NULL};
    atexit(cli_mpi_end); /* for the commands' exit() after --help */
#else
    (void)argc, (void)argv;
#endif
}

void cli_mpi_end(void) {
#ifdef GLOW_MPI
    if (started) MPI_Finalize();
    started = 0;
#endif
}

int cli_rank(void) { return rank; }
int cli_size(void) { return size; }
const glow_comm *cli_comm(void) { return size > 1 ? &comm : NULL; }

int cli_agree(int status) {
    if (size == 1) return status;
    double v[2] = {status, status ? rank + 1 : 0};
    comm.allreduce(v, 2, 0, GLOW_REDUCE_MAX, NULL);
    if (!status && v[0] && rank == 0)
        cli_error("stopped: process %d of %d failed (its message says why)", (int)v[1] - 1, size);
    return (int)v[0];
}

double cli_max(double v) {
    if (size > 1) comm.allreduce(&v, 1, 0, GLOW_REDUCE_MAX, NULL);
    return v;
}

double cli_sum(double v) {
    if (size > 1) comm.allreduce(&v, 1, 0, GLOW_REDUCE_SUM, NULL);
    return v;
}

int cli_threads(int threads) {
    if (threads > 0 || size == 1) return threads;
    /* A process bound to some cores (mpirun's --bind-to) uses those; unbound, the
     * processes on one machine share its cores. */
    int mine = omp_get_num_procs(), cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (mine < cores) return mine;
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    int on_node = local && atoi(local) > 0 ? atoi(local) : 1;
    return cores / on_node > 0 ? cores / on_node : 1;
}

const char *cli_mpi_info(void) {
#ifdef GLOW_MPI
    static char info[128];
    if (!started) return "MPI on, one process (not under mpirun)";
    snprintf(info, sizeof info, "MPI on, %d processes", size);
    return info;
#else
    return "MPI off (built without mpicc)";
#endif
}
