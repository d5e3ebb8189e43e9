/*
 * bench_util.h — what the experiments' benchmark programs share: a monotonic
 * clock in seconds, and a bounded integer argument read from the command
 * line (a clear message naming the program and the argument, exit 2, for
 * anything else).
 */
#ifndef NOMUL_BENCH_UTIL_H
#define NOMUL_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* argv[i] as an integer in [lo, hi] (dflt when absent); prog and name for
 * the message */
static inline long bench_arg(const char *prog, int argc, char **argv, int i, long dflt, long lo,
                             long hi, const char *name)
{
    if (argc <= i)
        return dflt;
    char *end;
    long v = strtol(argv[i], &end, 10);
    if (*end || v < lo || v > hi) {
        fprintf(stderr, "%s: %s must be an integer in [%ld, %ld], not '%s'\n", prog, name, lo,
                hi, argv[i]);
        exit(2);
    }
    return v;
}

#endif
