/*
 * dist.c — the communication layer of data-parallel training: joining the
 * ranks, and the collectives the trainer needs (a reproducible sum of the
 * gradient buffer, broadcast, gathering evaluation sums, agreeing on a
 * step's outcome). Built with Open MPI when the Makefile finds it
 * (NOMUL_MPI); every function has its one-rank form, which is all a build
 * without MPI has and what a process started alone runs.
 *
 * MPI_Allreduce's summation order is the library's choice (it may depend on
 * the algorithm picked for the message size); the gradient sum here fixes it:
 * each element is summed in rank order, so two runs on the same ranks give
 * the same bits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "dist_internal.h"
#include "nomul/error.h"

#ifdef NOMUL_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_joined = 0, g_shared = 0;
static double g_bytes = 0.0;

int nomul_dist_has_mpi(void)
{
#ifdef NOMUL_MPI
    return 1;
#else
    return 0;
#endif
}

int nomul_dist_launched_size(void)
{
    const char *keys[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const char *v = getenv(keys[k]);
        if (v && *v) {
            int n = atoi(v);
            return n > 0 ? n : 1;
        }
    }
    return 1;
}

int nomul_dist_rank(void) { return g_rank; }
int nomul_dist_size(void) { return g_size; }
int nomul_dist_error_is_shared(void) { return g_shared; }
void dist_set_error_shared(int shared) { g_shared = shared; }
double dist_bytes_sent(void) { return g_bytes; }

#ifdef NOMUL_MPI
static int mpi_failed(int rc, const char *what)
{
    if (rc == MPI_SUCCESS)
        return 0;
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, s, &len);
    nomul_report(NOMUL_EIO, "rank %d of %d: %s failed: %s (a rank died, or the network "
                 "failed)", g_rank, g_size, what, s);
    return -1;
}
#endif

int nomul_dist_init(int *argc, char ***argv)
{
    if (g_joined)
        return 0;
    if (nomul_dist_launched_size() <= 1)
        return 0; /* alone: nothing to join */
#ifdef NOMUL_MPI
    int provided = 0;
    /* only the main thread calls MPI (OpenMP and the loader's thread never do) */
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        nomul_report(NOMUL_EIO, "MPI_Init_thread failed");
        return -1;
    }
    /* errors come back as codes, reported with the rank, never a silent hang */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_joined = 1;
    return 0;
#else
    (void)argc;
    (void)argv;
    nomul_report(NOMUL_EINVAL, "this nomul was built without MPI, yet it was started as one "
                 "of %d processes (mpirun): each would train alone. Install Open MPI "
                 "(apt-get install libopenmpi-dev openmpi-bin) and rebuild (make clean all), "
                 "or start it without mpirun", nomul_dist_launched_size());
    return -1;
#endif
}

void nomul_dist_finalize(void)
{
#ifdef NOMUL_MPI
    if (g_joined)
        MPI_Finalize();
#endif
    g_joined = 0;
    g_rank = 0;
    g_size = 1;
}

void nomul_dist_abort(int code)
{
#ifdef NOMUL_MPI
    if (g_joined && g_size > 1) {
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, code);
    }
#endif
    exit(code);
}

int dist_allreduce_sum_f32(float *buf, size_t n)
{
    if (g_size == 1 || n == 0)
        return 0;
#ifdef NOMUL_MPI
    const int N = g_size, r = g_rank;
    if (n > (size_t)0x7fffffff) {
        nomul_report(NOMUL_EINVAL, "a gradient of %zu floats exceeds MPI's int counts", n);
        return -1;
    }
    /* rank k owns elements [n·k/N, n·(k+1)/N) */
    int *cnt = malloc(sizeof(int) * 2 * (size_t)N), *dsp = cnt ? cnt + N : NULL;
    int *rcnt = malloc(sizeof(int) * 2 * (size_t)N), *rdsp = rcnt ? rcnt + N : NULL;
    const size_t mine_lo = n * (size_t)r / (size_t)N, mine_hi = n * (size_t)(r + 1) / (size_t)N;
    const size_t mine = mine_hi - mine_lo;
    float *in = malloc(sizeof(float) * (mine * (size_t)N + 1));
    if (!cnt || !rcnt || !in) {
        free(cnt);
        free(rcnt);
        free(in);
        nomul_report(NOMUL_ENOMEM, "out of memory for the gradient exchange");
        return -1;
    }
    for (int k = 0; k < N; k++) {
        size_t lo = n * (size_t)k / (size_t)N, hi = n * (size_t)(k + 1) / (size_t)N;
        cnt[k] = (int)(hi - lo);
        dsp[k] = (int)lo;
        rcnt[k] = (int)mine;
        rdsp[k] = (int)(mine * (size_t)k);
    }
    int rc = mpi_failed(MPI_Alltoallv(buf, cnt, dsp, MPI_FLOAT, in, rcnt, rdsp, MPI_FLOAT,
                                      MPI_COMM_WORLD), "the gradient exchange (MPI_Alltoallv)");
    if (!rc) {
        /* in[k·mine + i]: rank k's element mine_lo + i; summed 0, 1, …, N−1 */
        float *out = buf + mine_lo;
        for (size_t i = 0; i < mine; i++) {
            float s = in[i];
            for (int k = 1; k < N; k++)
                s += in[(size_t)k * mine + i];
            out[i] = s;
        }
        NOMUL_COUNT(FADD, mine * (size_t)(N - 1));
        rc = mpi_failed(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, cnt, dsp,
                                       MPI_FLOAT, MPI_COMM_WORLD),
                        "the gradient exchange (MPI_Allgatherv)");
        g_bytes += 2.0 * (double)sizeof(float) * (double)(n - mine);
    }
    free(cnt);
    free(rcnt);
    free(in);
    return rc;
#else
    return 0;
#endif
}

int dist_allreduce_sum_f32_native(float *buf, size_t n)
{
    if (g_size == 1 || n == 0)
        return 0;
#ifdef NOMUL_MPI
    return mpi_failed(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM,
                                    MPI_COMM_WORLD), "MPI_Allreduce");
#else
    return 0;
#endif
}

int dist_allreduce_sum_f64(double *buf, int n)
{
    if (g_size == 1 || n <= 0)
        return 0;
#ifdef NOMUL_MPI
    double *all = malloc(sizeof(double) * (size_t)n * (size_t)g_size);
    if (!all) {
        nomul_report(NOMUL_ENOMEM, "out of memory");
        return -1;
    }
    int rc = mpi_failed(MPI_Allgather(buf, n, MPI_DOUBLE, all, n, MPI_DOUBLE, MPI_COMM_WORLD),
                        "gathering the ranks' sums (MPI_Allgather)");
    if (!rc)
        for (int i = 0; i < n; i++) {
            double s = all[i];
            for (int k = 1; k < g_size; k++)
                s += all[(size_t)k * (size_t)n + (size_t)i];
            buf[i] = s;
        }
    free(all);
    return rc;
#else
    return 0;
#endif
}

/* Every rank's n elements (floats, elem 4, or bytes, elem 1), concatenated in
 * rank order into *all (malloc'd, one spare element), their count in *total.
 * The counts and offsets are MPI's ints, so the whole must stay under 2^31
 * elements. */
static int allgather_v(const void *mine, int n, size_t elem, void **all, long *total)
{
    *all = NULL;
    *total = 0;
#ifdef NOMUL_MPI
    if (g_size > 1) {
        MPI_Datatype type = elem == 1 ? MPI_BYTE : MPI_FLOAT;
        int *cnt = malloc(sizeof(int) * 2 * (size_t)g_size);
        if (!cnt) {
            nomul_report(NOMUL_ENOMEM, "out of memory");
            return -1;
        }
        int *dsp = cnt + g_size;
        if (mpi_failed(MPI_Allgather(&n, 1, MPI_INT, cnt, 1, MPI_INT, MPI_COMM_WORLD),
                       "gathering the ranks' counts (MPI_Allgather)")) {
            free(cnt);
            return -1;
        }
        long sum = 0;
        for (int k = 0; k < g_size; k++) {
            dsp[k] = (int)sum;
            sum += cnt[k];
        }
        if (sum > 0x7fffffffL || !(*all = malloc(elem * ((size_t)sum + 1)))) {
            free(cnt);
            nomul_report(NOMUL_ENOMEM, "out of memory gathering %ld values", sum);
            return -1;
        }
        int rc = mpi_failed(MPI_Allgatherv(mine, n, type, *all, cnt, dsp, type, MPI_COMM_WORLD),
                            "gathering the ranks' values (MPI_Allgatherv)");
        free(cnt);
        *total = sum;
        return rc;
    }
#endif
    if (!(*all = malloc(elem * ((size_t)n + 1)))) {
        nomul_report(NOMUL_ENOMEM, "out of memory");
        return -1;
    }
    memcpy(*all, mine, elem * (size_t)n);
    *total = n;
    return 0;
}

int dist_allgather_f32(const float *mine, int n, float **all, long *total)
{
    void *p = NULL;
    int rc = allgather_v(mine, n, sizeof(float), &p, total);
    *all = p;
    return rc;
}

int dist_allgather_bytes(const char *mine, size_t n, char **all, long *total)
{
    *all = NULL;
    *total = 0;
    if (n > (size_t)0x7fffffff) {
        nomul_report(NOMUL_EINVAL, "rank %d: %zu bytes to gather exceed MPI's int counts",
                     g_rank, n);
        return -1;
    }
    void *p = NULL;
    int rc = allgather_v(mine, (int)n, 1, &p, total);
    *all = p;
    return rc;
}

int dist_barrier(void)
{
#ifdef NOMUL_MPI
    if (g_size > 1)
        return mpi_failed(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
#endif
    return 0;
}

int dist_bcast(void *buf, size_t bytes, int root)
{
    if (g_size == 1 || bytes == 0)
        return 0;
#ifdef NOMUL_MPI
    char *p = buf;
    while (bytes > 0) { /* int counts: in pieces of at most 1 GiB */
        int part = bytes > ((size_t)1 << 30) ? 1 << 30 : (int)bytes;
        if (mpi_failed(MPI_Bcast(p, part, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast"))
            return -1;
        p += part;
        bytes -= (size_t)part;
    }
    return 0;
#else
    return 0;
#endif
}

enum { AGREE_MSG = 1000 };
typedef struct agree_entry {
    int failed, status;
    char msg[AGREE_MSG];
} agree_entry;

int dist_agree(int failed)
{
    if (g_size == 1)
        return failed ? -1 : 0;
#ifdef NOMUL_MPI
    agree_entry mine, *all = malloc(sizeof(agree_entry) * (size_t)g_size);
    memset(&mine, 0, sizeof mine);
    mine.failed = failed != 0;
    mine.status = failed ? (int)nomul_last_error() : 0;
    if (failed)
        snprintf(mine.msg, sizeof mine.msg, "%s", nomul_last_error_message());
    if (!all) {
        nomul_report(NOMUL_ENOMEM, "out of memory");
        return -1;
    }
    if (mpi_failed(MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine,
                                 MPI_BYTE, MPI_COMM_WORLD), "agreeing on the ranks' status")) {
        free(all);
        return -1;
    }
    int first = -1, nfailed = 0;
    for (int k = 0; k < g_size; k++)
        if (all[k].failed) {
            nfailed++;
            if (first < 0)
                first = k;
        }
    int rc = 0;
    if (first >= 0) {
        const nomul_status st = all[first].status ? (nomul_status)all[first].status
                                                  : NOMUL_EINVAL;
        if (nfailed == g_size) /* the same cause everywhere, as a rule: the configuration */
            nomul_report(st, "every rank (rank 0 of %d): %s", g_size, all[first].msg);
        else if (nfailed > 1)
            nomul_report(st, "rank %d of %d (and %d more): %s", first, g_size, nfailed - 1,
                         all[first].msg);
        else
            nomul_report(st, "rank %d of %d: %s", first, g_size, all[first].msg);
        g_shared = 1;
        rc = -1;
    }
    free(all);
    return rc;
#else
    return failed ? -1 : 0;
#endif
}
