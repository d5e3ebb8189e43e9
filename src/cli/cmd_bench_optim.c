/*
 * cmd_bench_optim.c — `nomul bench optim`: one optimizer step over a model's
 * trainable tensors (as the trainer makes it: nomul_adamw_update_params), AdamW
 * and SGD with momentum, float and piecewise affine, on one thread and on
 * all of them, measured in one run.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nomul/nomul.h"

static const char optim_usage[] =
    "usage: nomul bench optim [--model NAME] [--min-time SECONDS]\n"
    "\n"
    "Times one optimizer step over the trainable tensors of model NAME (default\n"
    "vit_fmnist; image models sized for 28x28 grey images and 10 classes, seq2seq\n"
    "models for vocabularies of 2,860 words), one update of all the tensors as the\n"
    "trainer makes it (nomul_adamw_update_params): AdamW (weight decay 0.05 on the\n"
    "tensors the model decays) and SGD (momentum 0.9), with float and with piecewise\n"
    "affine arithmetic (opt_functional_cfg), on one thread and on every thread\n"
    "(NOMUL_NUM_THREADS or the cores). Each is repeated for at least SECONDS\n"
    "(default 0.3) and its best step kept; prints ms per step, ns per parameter and\n"
    "the threads' speed-up.\n";

typedef struct {
    int np;
    nomul_param *p;
    float **m, **v; /* AdamW's moments; m is SGD's momentum buffer */
} optim_state;

/* One step of optimizer `adam` (else SGD) with arithmetic cfg, as the
 * trainer makes it */
static void step(const optim_state *s, int adam, const nomul_op_cfg *cfg, nomul_adamw *aw)
{
    if (adam) {
        nomul_adamw_begin_step(aw);
        nomul_adamw_update_params(aw, s->np, s->p, s->m, s->v);
        return;
    }
    nomul_sgd o;
    nomul_sgd_init(&o, 0.01f, 0.9f, 5e-4f, cfg);
    nomul_sgd_update_params(&o, s->np, s->p, s->m);
}

/* best seconds per step over at least min_time */
static double time_step(const optim_state *s, int adam, const nomul_op_cfg *cfg, double min_time)
{
    nomul_adamw aw;
    nomul_adamw_init(&aw, 1e-3f, 0.05f, cfg);
    step(s, adam, cfg, &aw); /* warm up */
    double best = 1e30, t0 = cli_now_s();
    do {
        double t1 = cli_now_s();
        step(s, adam, cfg, &aw);
        double t = cli_now_s() - t1;
        best = t < best ? t : best;
    } while (cli_now_s() - t0 < min_time);
    return best;
}

int bench_optim(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv, "bench optim");
    const char *arg, *v, *model = "vit_fmnist";
    double min_time = 0.3;
    while ((arg = cli_next(&a))) {
        if (cli_is_help(arg)) {
            fputs(optim_usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, arg, "model")) {
            if (!(model = cli_value(&a, "model")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "min-time")) {
            if (!(v = cli_value(&a, "min-time")) || !cli_parse_double("min-time", v, &min_time))
                return CLI_USAGE;
            if (min_time <= 0 || min_time > 60) {
                cli_error("bench optim: --min-time must be in (0, 60] seconds");
                return CLI_USAGE;
            }
        } else {
            cli_unknown(&a, arg);
            return CLI_USAGE;
        }
    }
    nomul_model_data d = {28, 1, 10, 2860, 2860};
    nomul_model *m = nomul_model_create(model, &d, 1);
    if (!m) /* reported, with the names */
        return CLI_USAGE;
    optim_state s = {0};
    s.np = nomul_model_params(m, &s.p);
    s.m = calloc((size_t)s.np, sizeof *s.m);
    s.v = calloc((size_t)s.np, sizeof *s.v);
    int ok = s.np > 0 && s.m && s.v;
    long total = 0, ntrain = 0;
    uint64_t r = 12345;
    for (int i = 0; ok && i < s.np; i++) {
        nomul_tensor *t = s.p[i].t;
        if (s.p[i].buffer)
            continue;
        if (!t->grad)
            t->grad = calloc((size_t)t->n, sizeof *t->grad);
        s.m[i] = calloc((size_t)t->n, sizeof(float));
        s.v[i] = calloc((size_t)t->n, sizeof(float));
        ok = t->grad && s.m[i] && s.v[i];
        for (long j = 0; ok && j < t->n; j++) { /* gradients of a few 1e-3 */
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            t->grad[j] = ((float)((r >> 40) & 0xFFFF) / 65536.0f - 0.5f) * 0.004f;
        }
        total += t->n;
        ntrain++;
    }
    int rc = CLI_OK;
    if (!ok) {
        cli_error("bench optim: out of memory");
        rc = CLI_USAGE;
        goto done;
    }
    const int all = nomul_get_num_threads();
    printf("optimizer step over %s's %ld trainable tensors (%ld parameters); 1 and %d threads\n",
           model, ntrain, total, all);
    printf("%-10s %-6s %10s %10s %10s %10s %8s\n", "optimizer", "arith", "1 thr ms", "ns/param",
           "all ms", "ns/param", "speedup");
    for (int adam = 1; adam >= 0; adam--)
        for (int pa = 0; pa <= 1; pa++) {
            nomul_op_cfg cfg = {pa ? NOMUL_OP_PAM : NOMUL_OP_STANDARD, 0, 1.0f};
            double t[2];
            for (int k = 0; k < 2; k++) {
                nomul_set_num_threads(k ? all : 1);
                t[k] = time_step(&s, adam, &cfg, min_time);
            }
            nomul_set_num_threads(0);
            printf("%-10s %-6s %10.3f %10.2f %10.3f %10.2f %7.2fx\n", adam ? "adamw" : "sgd",
                   pa ? "pa" : "float", 1e3 * t[0], 1e9 * t[0] / (double)total, 1e3 * t[1],
                   1e9 * t[1] / (double)total, t[0] / t[1]);
            fflush(stdout);
        }
done:
    for (int i = 0; i < s.np; i++) {
        free(s.m ? s.m[i] : NULL);
        free(s.v ? s.v[i] : NULL);
    }
    free(s.m);
    free(s.v); /* s.p is the model's */
    nomul_model_free(m);
    return rc;
}
