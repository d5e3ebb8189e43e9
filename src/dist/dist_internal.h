/* dist_internal.h — the collectives the trainer calls (dist.c). Every rank
 * calls the same ones in the same order; with one rank each is a no-op (or a
 * copy). Each returns 0, or -1 after a report naming the MPI error. */
#ifndef NOMUL_DIST_INTERNAL_H
#define NOMUL_DIST_INTERNAL_H

#include <stddef.h>

#include "nomul/dist.h"

/* buf[0..n) ← Σ over ranks of buf, summed in rank order (0, 1, …, N−1) for
 * every element, whatever the timing: reproducible runs. Each rank sums the
 * N pieces of its own 1/N of the buffer (an all-to-all), then all gather the
 * sums: 2·(N−1)/N·n floats sent per rank, as a ring allreduce. Counts its
 * float additions (FADD) for the audit. */
int dist_allreduce_sum_f32(float *buf, size_t n);
/* The same for a few doubles (losses, evaluation sums): gathers all, sums in
 * rank order. */
int dist_allreduce_sum_f64(double *buf, int n);
/* Every rank's n floats, concatenated in rank order, into *all (malloc'd,
 * the caller frees it), their count in *total. */
int dist_allgather_f32(const float *mine, int n, float **all, long *total);
/* The same for bytes (each rank's under 2 GiB). */
int dist_allgather_bytes(const char *mine, size_t n, char **all, long *total);
/* MPI_Allreduce(MPI_SUM) itself, whose summation order is Open MPI's choice:
 * for the benchmark's comparison only. */
int dist_allreduce_sum_f32_native(float *buf, size_t n);
/* Waits for every rank (MPI_Barrier). */
int dist_barrier(void);
/* Rank root's bytes to every rank. */
int dist_bcast(void *buf, size_t bytes, int root);
/* The ranks agree on a step's outcome: failed (this rank's, its message the
 * last error) → 0 when no rank failed; otherwise every rank reports the
 * first failing rank's message, prefixed with "rank R of N: ", marks the
 * error shared (nomul_dist_error_is_shared) and returns -1. */
int dist_agree(int failed);
/* Marks the last error as one every rank returned from the same step. */
void dist_set_error_shared(int shared);
/* Bytes this rank sent through dist_allreduce_sum_f32 since the start. */
double dist_bytes_sent(void);

#endif
