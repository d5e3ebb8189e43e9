/*
 * test_killresume.c — a training run killed with SIGKILL and resumed, again
 * and again, ends as an uninterrupted one (issue 17): a byte-identical final
 * checkpoint (tensors and metadata), the same metric lines (the timing left
 * out) and no temporary files left in the run folder. The kills land at
 * random times and, through the trainer's test hook
 * NOMUL_TEST_KILL_CHECKPOINT=STEP:POINT (src/train/checkpoint.c), at chosen
 * points of checkpoint writes: before one, inside the safetensors writer
 * (half the tensors in its temporary file, which must be left partly
 * written), and after one but before the epoch's line. Runs build/nomul
 * ($BUILD/nomul) on a small IDX set written here.
 */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "nomul/nomul.h"
#include "testutil.h"
#include "tu_files.h"

static char nomul[512];
static uint64_t seed;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* tu_files.h's image set, as plain IDX files */
static void write_set(const char *images, const char *labels, long n, uint64_t s0)
{
    assert_int_equal(tu_write_quadrant_set(images, labels, n, s0, 0), 0);
}

/* Starts `nomul train` on the run folder "run" (resuming from its
 * checkpoint_last if there is one) with the hook (NULL: none); kills it
 * after delay seconds (< 0: never). Returns the exit status, or -SIGKILL if
 * killed. */
static int train(const char *hook, double delay)
{
    char ck[600], cmd[8192], dir[600], log[600], data[4][600];
    snprintf(ck, sizeof ck, "%s", tu_path("run/checkpoint_last.safetensors"));
    snprintf(dir, sizeof dir, "%s", tu_path("run"));
    snprintf(log, sizeof log, "%s", tu_path("log"));
    const char *names[4] = {"train-images", "train-labels", "test-images", "test-labels"};
    for (int i = 0; i < 4; i++) /* tu_path keeps four results at a time */
        snprintf(data[i], sizeof data[i], "%s", tu_path(names[i]));
    const int resume = access(ck, F_OK) == 0;
    snprintf(cmd, sizeof cmd,
             "exec %s train --set model=vit_fmnist_tiny --set data.train=%s --set "
             "data.train_labels=%s --set data.test=%s --set data.test_labels=%s "
             "--set data.image=8 --set data.classes=4 --set batch_size=8 --set "
             "eval_batch_size=16 --set epochs=2 --set warmup_steps=2 --set log_every=1 "
             "--set checkpoint_every=3 --set arena_mb=32 --set audit=false --set seed=%ld "
             "--set out_dir=%s %s%s >>%s 2>&1",
             nomul, data[0], data[1], data[2], data[3], (long)(seed % 1000000), dir,
             resume ? "--resume " : "", resume ? ck : "", log);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (hook)
            setenv("NOMUL_TEST_KILL_CHECKPOINT", hook, 1);
        else
            unsetenv("NOMUL_TEST_KILL_CHECKPOINT");
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int st;
    if (delay >= 0) {
        const double end = now_s() + delay;
        while (now_s() < end) {
            if (waitpid(pid, &st, WNOHANG) == pid)
                goto done;
            nanosleep(&(struct timespec){0, 2000000}, NULL);
        }
        kill(pid, SIGKILL);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
done:
    if (WIFSIGNALED(st))
        return -WTERMSIG(st);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The metric log without its timing values (images_per_s, epoch_seconds). */
static char *metric_lines(const char *path)
{
    char *text = tu_slurp(path, NULL);
    static const char *const timing[] = {"\"images_per_s\": ", "\"epoch_seconds\": "};
    for (int k = 0; k < 2; k++)
        for (char *p = strstr(text, timing[k]); p; p = strstr(p, timing[k])) {
            char *v = p + strlen(timing[k]), *e = v;
            while (*e && *e != ',' && *e != '}')
                e++;
            memmove(v, e, strlen(e) + 1);
            p = v;
        }
    return text;
}

static void no_temporary_files(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    const struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp"))
            fail_msg("seed %llu: '%s' left in the run folder", (unsigned long long)seed,
                     e->d_name);
    closedir(d);
}

/* A kill inside the checkpoint writer leaves its temporary file partly
 * written, as the writer stopped: the header and whole tensors, from one
 * up to all but the last (their data_offsets say where each ends). */
static void partial_file_left(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    const struct dirent *e;
    char path[1500] = "";
    while ((e = readdir(d)))
        if (strstr(e->d_name, "checkpoint_last.safetensors.tmp."))
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    closedir(d);
    if (!*path)
        fail_msg("seed %llu: a kill inside the writer left no temporary file",
                 (unsigned long long)seed);
    size_t n;
    char *b = tu_slurp(path, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0 && n >= 8; i--)
        hl = hl << 8 | (unsigned char)b[i];
    assert_true(n >= 8 && hl <= n - 8);
    char *header = strndup(b + 8, (size_t)hl);
    assert_non_null(header);
    long data = (long)(n - 8 - hl), last = 0;
    int ends_a_tensor = 0;
    for (const char *q = header; (q = strstr(q, "\"data_offsets\":[")); q++) {
        long lo, hi;
        assert_int_equal(sscanf(q, "\"data_offsets\":[%ld,%ld]", &lo, &hi), 2);
        ends_a_tensor |= hi == data;
        last = hi > last ? hi : last;
    }
    if (!ends_a_tensor || data <= 0 || data >= last)
        fail_msg("seed %llu: %s holds %ld bytes of tensors, not whole tensors short of the %ld "
                 "of the checkpoint", (unsigned long long)seed, path, data, last);
    free(header);
    free(b);
}

static void test_killed_and_resumed_runs_end_as_uninterrupted(void **state)
{
    (void)state;
    /* the uninterrupted run, in "run", kept as "ref" (the configuration in
     * the checkpoint's metadata names the folder) */
    const double t0 = now_s();
    if (train(NULL, -1.0) != 0)
        fail_msg("seed %llu: the uninterrupted run failed:\n%s", (unsigned long long)seed,
                 tu_slurp(tu_path("log"), NULL));
    const double took = now_s() - t0;
    char run[1200], ref[1200];
    snprintf(run, sizeof run, "%s", tu_path("run"));
    snprintf(ref, sizeof ref, "%s", tu_path("ref"));
    assert_int_equal(rename(run, ref), 0);
    /* 12 steps, 6 per epoch, checkpoints at 3, 6 (an epoch's end), 9 and 12.
     * Each hook fires: the ones at 3 and 6 in runs started afresh, the ones
     * at 9 in runs resumed from 6, and the ones at 12 also in a run resumed
     * from 12, which evaluates, checkpoints and logs the last epoch again.
     * The random kills (NULL) land anywhere. */
    const char *hooks[] = {"3:partial", "6:after", "9:before", "9:partial", NULL,
                           "12:partial", "12:after", NULL};
    tu_rng r = {seed ^ 0x6b696c6cull};
    int kills = 0;
    for (size_t i = 0; i < sizeof hooks / sizeof hooks[0]; i++) {
        const double delay = hooks[i] ? -1.0 : 0.3 * took * (double)(tu_next(&r) % 1000) / 1000.0;
        int rc = train(hooks[i], delay);
        printf("  attempt %zu (%s): %s\n", i, hooks[i] ? hooks[i] : "random kill",
               rc == -SIGKILL ? "killed" : "finished");
        if (rc == -SIGKILL && strstr(hooks[i] ? hooks[i] : "", "partial"))
            partial_file_left(run);
        if (rc == -SIGKILL)
            kills++;
        else if (rc != 0)
            fail_msg("seed %llu: attempt %zu (%s) exited %d:\n%s", (unsigned long long)seed, i,
                     hooks[i] ? hooks[i] : "random kill", rc, tu_slurp(tu_path("log"), NULL));
    }
    if (kills < 6)
        fail_msg("seed %llu: only %d of the hooks' kills happened", (unsigned long long)seed,
                 kills);
    /* to the end, if the last attempt did not finish */
    char ck_run[1300], ck_ref[1300], m_run[1300], m_ref[1300];
    snprintf(ck_run, sizeof ck_run, "%s/checkpoint_last.safetensors", run);
    snprintf(ck_ref, sizeof ck_ref, "%s/checkpoint_last.safetensors", ref);
    snprintf(m_run, sizeof m_run, "%s/metrics.jsonl", run);
    snprintf(m_ref, sizeof m_ref, "%s/metrics.jsonl", ref);
    if (train(NULL, -1.0) != 0)
        fail_msg("seed %llu: the last resume failed:\n%s", (unsigned long long)seed,
                 tu_slurp(tu_path("log"), NULL));
    size_t na, nb;
    char *a = tu_slurp(ck_ref, &na), *b = tu_slurp(ck_run, &nb);
    if (na != nb || memcmp(a, b, na))
        fail_msg("seed %llu: the final checkpoints differ (%zu and %zu bytes)",
                 (unsigned long long)seed, na, nb);
    free(a);
    free(b);
    a = metric_lines(m_ref);
    b = metric_lines(m_run);
    if (strcmp(a, b))
        fail_msg("seed %llu: metric lines uninterrupted:\n%s\nkilled and resumed:\n%s",
                 (unsigned long long)seed, a, b);
    free(a);
    free(b);
    no_temporary_files(run);
    printf("  %d kills, the uninterrupted run took %.1f s\n", kills, took);
}

static int setup(void **state)
{
    (void)state;
    const char *build = getenv("BUILD");
    snprintf(nomul, sizeof nomul, "%s/nomul", build && *build ? build : "build");
    if (access(nomul, X_OK) != 0) {
        fprintf(stderr, "no executable at %s (build it first)\n", nomul);
        return -1;
    }
    if (tu_tmpdir_setup("killresume"))
        return -1;
    seed = tu_seed();
    write_set(tu_path("train-images"), tu_path("train-labels"), 48, seed);
    write_set(tu_path("test-images"), tu_path("test-labels"), 16, seed + 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return tu_tmpdir_teardown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_killed_and_resumed_runs_end_as_uninterrupted),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
