/*
 * cmd_bench_allreduce.c — `nomul bench allreduce`: under mpirun, the time
 * of the trainer's gradient sum (rank-ordered: an all-to-all, each rank
 * summing its slice in rank order, then an all-gather; src/dist/dist.c)
 * against MPI_Allreduce itself, for gradient sizes of nomul's models.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../dist/dist_internal.h"
#include "cli.h"
#include "nomul/nomul.h"

static const char allreduce_usage[] =
    "usage: mpirun -np N nomul bench allreduce [--floats LIST] [--reps N]\n"
    "\n"
    "Times the sum of a float buffer over the ranks, as the trainer sums the gradients\n"
    "every step (each element summed in rank order: reproducible), against\n"
    "MPI_Allreduce (MPI_SUM, whose order Open MPI chooses), each after a barrier;\n"
    "prints rank 0's mean per call, the bytes each rank sends and the ratio.\n"
    "\n"
    "  --floats LIST  comma-separated buffer sizes in floats (default: the gradients of\n"
    "                 vit_fmnist, resnet20, deit_tiny-like 5.7M and transformer_iwslt's\n"
    "                 36.7M: 139018,272474,5717416,36741120)\n"
    "  --reps N       calls timed per size (default 10)\n";

/* rank 0's mean seconds per call of one of the sums over reps calls */
static int time_sum(float *buf, size_t n, int reps, int native, double *secs)
{
    double total = 0.0;
    for (int r = -1; r < reps; r++) { /* r = -1: the warm-up */
        for (size_t i = 0; i < n; i++)
            buf[i] = (float)((i + (size_t)nomul_dist_rank()) % 7) - 3.0f;
        if (dist_barrier())
            return -1;
        const double t0 = cli_now_s();
        if (native ? dist_allreduce_sum_f32_native(buf, n) : dist_allreduce_sum_f32(buf, n))
            return -1;
        if (r >= 0)
            total += cli_now_s() - t0;
    }
    *secs = total / reps;
    return 0;
}

int bench_allreduce(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv, "bench allreduce");
    const char *arg, *v, *list = "139018,272474,5717416,36741120";
    uint64_t reps = 10;
    while ((arg = cli_next(&a))) {
        if (cli_is_help(arg)) {
            fputs(allreduce_usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, arg, "floats")) {
            if (!(list = cli_value(&a, "floats")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "reps")) {
            if (!(v = cli_value(&a, "reps")) || !cli_parse_u64("reps", v, 1, 100000, &reps))
                return CLI_USAGE;
        } else {
            cli_unknown(&a, arg);
            return CLI_USAGE;
        }
    }
    size_t sizes[32];
    int ns = 0;
    for (const char *p = list; *p && ns < 32;) {
        uint64_t n;
        char item[32];
        size_t len = strcspn(p, ",");
        snprintf(item, sizeof item, "%.*s", (int)(len < 31 ? len : 31), p);
        if (!cli_parse_u64("floats", item, 1, 0x7fffffff, &n))
            return CLI_USAGE;
        sizes[ns++] = (size_t)n;
        p += len + (p[len] == ',');
    }
    if (nomul_dist_init(&argc, &argv)) {
        cli_error("bench allreduce: %s", nomul_last_error_message());
        return CLI_USAGE;
    }
    const int rank = nomul_dist_rank(), size = nomul_dist_size();
    if (size == 1) {
        cli_error("bench allreduce: one rank has nothing to exchange: start it under "
                  "mpirun -np N (N ≥ 2)");
        nomul_dist_finalize();
        return CLI_USAGE;
    }
    if (rank == 0)
        printf("%d ranks; per call, rank 0's mean of %d after a barrier\n"
               "%12s %10s %12s %14s %16s %8s\n", size, (int)reps, "floats", "MB",
               "sent MB/rank", "rank-order ms", "MPI_Allreduce ms", "ratio");
    int rc = CLI_OK;
    for (int k = 0; k < ns && rc == CLI_OK; k++) {
        float *buf = malloc(sizeof(float) * sizes[k]);
        double ours = 0.0, native = 0.0;
        if (!buf) {
            cli_error("bench allreduce: out of memory for %zu floats", sizes[k]);
            nomul_dist_abort(CLI_FAILED);
        }
        if (time_sum(buf, sizes[k], (int)reps, 0, &ours) ||
            time_sum(buf, sizes[k], (int)reps, 1, &native)) {
            cli_error("bench allreduce: %s", nomul_last_error_message());
            nomul_dist_abort(CLI_FAILED);
        }
        if (rank == 0)
            printf("%12zu %10.2f %12.2f %14.3f %16.3f %8.2f\n", sizes[k], 4e-6 * (double)sizes[k],
                   8e-6 * (double)sizes[k] * (size - 1) / size, 1e3 * ours, 1e3 * native,
                   ours / native);
        free(buf);
    }
    nomul_dist_finalize();
    return rc;
}
