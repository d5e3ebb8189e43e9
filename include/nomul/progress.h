/*
 * nomul/progress.h — what a training run shows and keeps: a progress bar
 * with rate and ETA, and metric logs as JSON lines.
 *
 * On a terminal the bar redraws one line in place (carriage return); when
 * the output is a file or a pipe (CI, nohup, SLURM logs) it writes plain
 * lines, at most one per interval, so logs stay readable.
 */
#ifndef NOMUL_PROGRESS_H
#define NOMUL_PROGRESS_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nomul_progress nomul_progress;

/* A bar over `total` steps, labelled (e.g. "epoch 3/10"), written to out.
 * tty: 1 redraw in place, 0 plain lines, -1 decide from out (isatty).
 * interval: seconds between plain lines (0: 10). */
nomul_progress *nomul_progress_new(FILE *out, const char *label, long total, int tty,
                                   double interval);
/* `done` steps of `total` are finished and `items` items (images,
 * sentences) processed since the bar began; extra (may be NULL) is shown
 * after the rate, e.g. "loss 0.412". */
void nomul_progress_update(nomul_progress *p, long done, long items, const char *extra);
/* The same with the time (seconds since the bar began) given, for tests. */
void nomul_progress_update_at(nomul_progress *p, long done, long items, const char *extra,
                              double now);
/* Ends the bar with a final line (always written) and frees it. */
void nomul_progress_finish(nomul_progress *p, const char *extra);

/* Appends one JSON object of n numeric fields to a JSON-lines file (a
 * non-finite value is written as null) and flushes it; 0 on success. */
int nomul_metrics_append(const char *path, int n, const char *const *keys, const double *values);

/* "1:02:03" or "02:03" for a duration in seconds ("--:--" if unknown). */
void nomul_format_duration(double seconds, char *buf, int size);

#ifdef __cplusplus
}
#endif
#endif
