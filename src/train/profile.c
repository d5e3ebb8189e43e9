/*
 * profile.c — `nomul train --profile`: where a training step's time goes.
 * The trainer times each step's phases (the task's forward, which includes
 * fetching the batch, the backward pass, the optimizer); the graph times
 * each recorded operation's forward and backward (nomul_graph_profile). The
 * table printed at the end gives milliseconds per step by operation and
 * variant, the phases, and what no operation accounts for.
 */
#include <stdio.h>

#include "nomul/autodiff.h"
#include "trainer_internal.h"

void train_profile_print(FILE *out, const train_profile *p, const nomul_graph *g)
{
    if (p->steps < 1)
        return;
    enum { MAXROWS = 64 };
    nomul_op_time rows[MAXROWS];
    int n = nomul_graph_profile_rows(g, rows, MAXROWS);
    if (n > MAXROWS)
        n = MAXROWS;
    const double per = 1e3 / (double)p->steps; /* seconds in total → ms per step */
    const double step = p->step_s * per;
    double ops_fwd = 0.0;
    for (int i = 0; i < n; i++)
        ops_fwd += rows[i].forward_s;
    fprintf(out, "profile: %ld training steps, %.2f ms per step: forward %.2f (with the batch), "
                 "backward %.2f, optimizer %.2f\n", p->steps, step, p->forward_s * per,
            p->backward_s * per, p->optimizer_s * per);
    fprintf(out, "  %-28s %10s %12s %12s %10s %7s\n", "operation", "calls/step", "forward ms",
            "backward ms", "total ms", "share");
    for (int i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s (%s)", rows[i].op, rows[i].variant);
        double f = rows[i].forward_s * per, b = rows[i].backward_s * per;
        fprintf(out, "  %-28s %10.1f %12.3f %12.3f %10.3f %6.1f%%\n", name,
                (double)rows[i].calls / (double)p->steps, f, b, f + b,
                step > 0 ? 100.0 * (f + b) / step : 0.0);
    }
    /* the forward phase's time that no recorded operation took: the batch
     * (loader, augmentation, mixup), the model's code between operations */
    double rest = (p->forward_s - ops_fwd) * per;
    fprintf(out, "  %-28s %10s %12.3f %12s %10.3f %6.1f%%\n", "(batch, between operations)", "",
            rest, "", rest, step > 0 ? 100.0 * rest / step : 0.0);
    double opt = p->optimizer_s * per;
    fprintf(out, "  %-28s %10s %12s %12.3f %10.3f %6.1f%%\n", "(optimizer, clipping)", "", "",
            opt, opt, step > 0 ? 100.0 * opt / step : 0.0);
}
