/*
 * trainer.c — a training run (nomul/train.h): the optimizer's state and the
 * learning-rate table, one optimizer step, and the loop over epochs with
 * progress, metric lines, evaluations and checkpoints. The tasks supply data,
 * model and loss (task_image.c, task_translation.c); the run folder is
 * rundir.c's, checkpoints and resume checkpoint.c's.
 *
 * Everything random derives from the seed and the step: the model's
 * initialisation, each epoch's shuffle and each image's augmentation (the
 * loader hashes seed, epoch and index), and each step's drop-path draws. A
 * checkpoint therefore only needs the parameters, the optimizer's moments,
 * the step and the running sums of the logged losses; resuming from it
 * replays the very batches an uninterrupted run would have seen.
 *
 * Under mpirun (src/dist/) every rank runs this loop on its rows of each
 * global batch, with the draws of those rows; the gradients (and the loss)
 * are summed over the ranks in rank order before clipping and the update, so
 * every rank takes the same step. Rank 0 alone writes the run folder and the
 * progress. A failure before the first step is agreed by all ranks (each
 * knows which rank failed and why); one during the loop ends the job
 * (nomul_dist_abort in the command line).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/resource.h>

#include "../core/internal.h"
#include "../dist/dist_internal.h"
#include "nomul/autodiff.h"
#include "nomul/functional.h"
#include "nomul/models.h"
#include "nomul/optim.h"
#include "nomul/progress.h"
#include "nomul/train.h"
#include "trainer_internal.h"

static const double MB = 1024.0 * 1024.0;

double train_peak_rss_mb(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) ? 0.0 : (double)ru.ru_maxrss / 1024.0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double train_row_nll(const float *z, int n, int target, int *argmax)
{
    int best = 0;
    for (int j = 1; j < n; j++)
        if (z[j] > z[best])
            best = j;
    const double mx = z[best];
    double se = 0.0;
    for (int j = 0; j < n; j++)
        se += exp((double)z[j] - mx);
    if (argmax)
        *argmax = best;
    return mx + log(se) - (double)z[target];
}

int train_sync_buffers(const trainer *t)
{
    for (int i = 0; t->nranks > 1 && i < t->np; i++)
        if (t->p[i].buffer &&
            dist_bcast(t->p[i].t->data, sizeof(float) * (size_t)t->p[i].t->n, 0))
            return -1;
    return 0;
}

void train_shard(const trainer *t, long b, long *lo, long *hi)
{
    *lo = b * t->rank / t->nranks;
    *hi = b * (t->rank + 1) / t->nranks;
}

/* the used rows' losses of the whole batch in its row order (the ranks hold
 * consecutive rows), summed as one process sums them */
static int sum_over_ranks(void *ctx, const float *row_losses, int used, nomul_ce_global *glob)
{
    (void)ctx;
    float *all;
    long total_used;
    if (dist_allgather_f32(row_losses, used, &all, &total_used))
        return -1;
    glob->total = 0.0f;
    glob->used = (int)total_used;
    for (long i = 0; i < total_used; i++)
        glob->total += all[i];
    NOMUL_COUNT(FADD, total_used);
    free(all);
    return 0;
}

nomul_tensor *train_cross_entropy_no_rows(const trainer *t, nomul_graph *g,
                                         const nomul_op_cfg *cfg)
{
    (void)t;
    nomul_ce_global glob;
    int one = 1;
    nomul_tensor *l = nomul_graph_tensor(g, 1, &one, 1);
    if (!l || sum_over_ranks(NULL, NULL, 0, &glob))
        return NULL;
    l->data[0] = nomul_cross_entropy_forward_global(cfg, &glob);
    return l;
}

nomul_tensor *train_cross_entropy(const trainer *t, nomul_graph *g, const nomul_op_cfg *cfg,
                                  nomul_tensor *logits, const int *targets, int ignore_index,
                                  float smoothing)
{
    if (t->nranks == 1)
        return nomul_cross_entropy(g, cfg, logits, targets, ignore_index, smoothing);
    return nomul_cross_entropy_global(g, cfg, logits, targets, ignore_index, smoothing,
                                      sum_over_ranks, NULL);
}

static void trainer_free(trainer *t)
{
    free(t->flat);
    if (t->quiet)
        fclose(t->quiet);
    for (int i = 0; t->mom && i < t->np; i++) {
        free(t->mom[i]);
        if (t->vel)
            free(t->vel[i]);
    }
    free(t->mom);
    free(t->vel);
    free(t->grads);
    free(t->sizes);
    free(t->gnorm);
    for (int i = 0; t->gnorm_keys && i <= t->ntrain; i++)
        free(t->gnorm_keys[i]);
    free(t->gnorm_keys);
    free(t->lr);
    nomul_graph_free(t->g);
    if (t->task && t->td)
        t->task->free(t);
}

static int setup(trainer *t, const nomul_train_config *c, run_state *st)
{
    t->c = c;
    snprintf(t->dir, sizeof t->dir, "%s", c->out_dir);
    snprintf(t->metrics, sizeof t->metrics, "%s/metrics.jsonl", t->dir);
    t->task = c->task == NOMUL_TASK_TRANSLATION ? &translation_task : &image_task;
    if (t->task->setup(t))
        return -1;
    if (t->nranks > 1) {
        for (int i = 0; i < t->np; i++)
            t->nflat += t->p[i].buffer ? 0 : (size_t)t->p[i].t->n;
        if (!(t->flat = malloc(sizeof(float) * t->nflat)))
            goto oom;
    }
    const int adam = c->optimizer == NOMUL_OPTIMIZER_ADAMW;
    t->mom = calloc((size_t)t->np, sizeof *t->mom);
    t->vel = adam ? calloc((size_t)t->np, sizeof *t->vel) : NULL;
    t->grads = calloc((size_t)t->np, sizeof *t->grads);
    t->sizes = calloc((size_t)t->np, sizeof *t->sizes);
    if (!t->mom || (adam && !t->vel) || !t->grads || !t->sizes)
        goto oom;
    for (int i = 0; i < t->np; i++) {
        if (!t->p[i].buffer) { /* the trainable tensors, for clipping */
            t->sizes[t->ntrain] = (size_t)t->p[i].t->n;
            t->grads[t->ntrain++] = t->p[i].t->grad;
        }
        const size_t n = (size_t)t->p[i].t->n;
        if (!(t->mom[i] = calloc(n, sizeof(float))) ||
            (adam && !(t->vel[i] = calloc(n, sizeof(float)))))
            goto oom;
    }
    if (c->grad_norms != NOMUL_GRAD_NORMS_OFF) {
        t->gnorm = calloc((size_t)t->ntrain + 1, sizeof *t->gnorm);
        t->gnorm_keys = calloc((size_t)t->ntrain + 1, sizeof *t->gnorm_keys);
        if (!t->gnorm || !t->gnorm_keys || !(t->gnorm_keys[0] = strdup("grad_norm")))
            goto oom;
        for (int i = 0, k = 1; i < t->np; i++)
            if (!t->p[i].buffer) {
                size_t len = strlen("grad_norm/") + strlen(t->p[i].name) + 1;
                if (!(t->gnorm_keys[k] = malloc(len)))
                    goto oom;
                snprintf(t->gnorm_keys[k++], len, "grad_norm/%s", t->p[i].name);
            }
    }
    t->total = c->steps > 0 ? c->steps : c->epochs * t->per_epoch;
    nomul_schedule s = {NOMUL_SCHED_WARMUP_COSINE, c->lr, c->min_lr, c->warmup_steps, t->total};
    if (c->schedule == NOMUL_LR_CONSTANT) {
        s.kind = c->warmup_steps ? NOMUL_SCHED_WARMUP_COSINE : NOMUL_SCHED_CONSTANT;
        s.min_lr = c->lr; /* a cosine from lr to lr: warmup, then constant */
    } else if (c->schedule == NOMUL_LR_INVERSE_SQRT)
        s.kind = NOMUL_SCHED_INVERSE_SQRT;
    if (c->warmup_steps > t->total) {
        nomul_report(NOMUL_EINVAL, "warmup_steps %ld exceeds the run's %ld steps",
                     c->warmup_steps, t->total);
        return -1;
    }
    if (!(t->lr = malloc(sizeof(float) * (size_t)t->total)))
        goto oom;
    if (nomul_schedule_table(&s, t->lr)) {
        nomul_report(NOMUL_EINVAL, "the learning-rate schedule's settings are invalid");
        return -1;
    }
    if (!(t->g = nomul_graph_new((size_t)c->arena_mb << 20)))
        return -1;
    memset(st, 0, sizeof *st);
    nomul_adamw_init(&st->adam, c->lr, c->weight_decay, &c->ops.family[NOMUL_CFG_OPT_FUNCTIONAL]);
    st->adam.beta1 = c->beta1;
    st->adam.beta2 = c->beta2;
    st->adam.eps = c->eps;
    st->adam.moments = c->adam_moments;
    return 0;
oom:
    nomul_report(NOMUL_ENOMEM, "out of memory for the optimizer's state");
    return -1;
}

/* Step s (counted from 1) writes a metric line. */
static int logged_step(const trainer *t, long s)
{
    return s % t->c->log_every == 0 || s == t->total;
}

/* grad_norms: the L2 norms of the gradient (the whole one's and each
 * trainable tensor's), in double, for the metric line. A diagnostic that
 * changes nothing, but float arithmetic all the same: the audit counts it. */
static void grad_norms(trainer *t)
{
    double all = 0.0;
    for (int k = 0; k < t->ntrain; k++) {
        double s = 0.0;
        const float *gk = t->grads[k];
        for (size_t i = 0; i < t->sizes[k]; i++)
            s += (double)gk[i] * gk[i];
        NOMUL_COUNT(FMUL, (long)t->sizes[k]);
        NOMUL_COUNT(FADD, (long)t->sizes[k]);
        t->gnorm[k + 1] = sqrt(s);
        all += s;
    }
    NOMUL_COUNT(FTRANS, t->ntrain + 1L);
    t->gnorm[0] = sqrt(all);
}

/* One optimizer step on the task's next batch; the loss in *loss. */
static int train_step(trainer *t, run_state *st, double *loss, long *items)
{
    const nomul_train_config *c = t->c;
    nomul_graph *g = t->g;
    double t0 = t->prof ? now_s() : 0.0, t1 = 0.0, t2 = 0.0;
    nomul_graph_reset(g);
    if (train_sync_buffers(t))
        return -1;
    nomul_tensor *l = t->task->loss(t, st, items);
    if (!l)
        return -1;
    if (t->prof)
        t1 = now_s();
    /* several ranks: the global batch's loss (train_cross_entropy), the same
     * on every rank, so they stop together */
    *loss = l->data[0];
    if (!isfinite(*loss)) {
        dist_set_error_shared(t->nranks > 1);
        goto diverged;
    }
    for (int i = 0; i < t->np; i++)
        if (!t->p[i].buffer)
            nomul_tensor_zero_grad(t->p[i].t);
    if (nomul_backward(g, l))
        return -1;
    if (t->prof)
        t2 = now_s();
    if (t->nranks > 1) {
        /* each rank's gradient is its rows' part of the global batch's: their
         * sum is the global batch's */
        size_t at = 0;
        for (int i = 0; i < t->np; i++)
            if (!t->p[i].buffer) {
                memcpy(t->flat + at, t->p[i].t->grad, sizeof(float) * (size_t)t->p[i].t->n);
                at += (size_t)t->p[i].t->n;
            }
        const double c0 = now_s();
        if (getenv("NOMUL_BENCH_NATIVE_ALLREDUCE") ? dist_allreduce_sum_f32_native(t->flat, t->nflat)
                                                   : dist_allreduce_sum_f32(t->flat, t->nflat))
            return -1;
        t->comm_s += now_s() - c0;
        t->comm_steps++;
        at = 0;
        for (int i = 0; i < t->np; i++)
            if (!t->p[i].buffer) {
                memcpy(t->p[i].t->grad, t->flat + at, sizeof(float) * (size_t)t->p[i].t->n);
                at += (size_t)t->p[i].t->n;
            }
        double n = (double)*items; /* the global batch's images or tokens */
        if (dist_allreduce_sum_f64(&n, 1))
            return -1;
        *items = (long)n;
    }
    if (t->gnorm && logged_step(t, st->step + 1))
        grad_norms(t);
    const nomul_op_cfg *opt = &c->ops.family[NOMUL_CFG_OPT_FUNCTIONAL];
    if (c->clip_grad > 0.0f)
        nomul_clip_grad_norm((size_t)t->ntrain, t->grads, t->sizes, c->clip_grad, opt);
    const float lr = t->lr[st->step];
    if (t->vel) {
        st->adam.lr = lr;
        nomul_adamw_begin_step(&st->adam);
        if (nomul_adamw_update_params(&st->adam, t->np, t->p, t->mom, t->vel))
            return -1;
    } else {
        nomul_sgd o;
        nomul_sgd_init(&o, lr, c->momentum, c->weight_decay, opt);
        if (nomul_sgd_update_params(&o, t->np, t->p, t->mom))
            return -1;
    }
    st->step++;
    if (t->prof) {
        double t3 = now_s();
        t->prof->steps++;
        t->prof->step_s += t3 - t0;
        t->prof->forward_s += t1 - t0;
        t->prof->backward_s += t2 - t1;
        t->prof->optimizer_s += t3 - t2;
    }
    return 0;
diverged:
    nomul_report(NOMUL_EINVAL, "training diverged: the loss is %g at step %ld (lower lr, "
                 "or set clip_grad); no checkpoint was written for this step", *loss,
                 st->step + 1);
    return -1;
}

/* A step's metric line: keys k, values v, then the gradient norms when
 * grad_norms asks for them; 0 or -1 after a report. */
static int log_line(const trainer *t, int n, const char *const *k, const double *v)
{
    const nomul_grad_norms gn = t->gnorm ? t->c->grad_norms : NOMUL_GRAD_NORMS_OFF;
    if (gn == NOMUL_GRAD_NORMS_OFF)
        return nomul_metrics_append(t->metrics, n, k, v);
    const int m = n + (gn == NOMUL_GRAD_NORMS_PER_TENSOR ? t->ntrain + 1 : 1);
    const char **keys = malloc(sizeof *keys * (size_t)m);
    double *vals = malloc(sizeof *vals * (size_t)m);
    int rc = -1;
    if (!keys || !vals) {
        nomul_report(NOMUL_ENOMEM, "out of memory for a metric line of %d values", m);
    } else {
        for (int i = 0; i < m; i++) {
            keys[i] = i < n ? k[i] : t->gnorm_keys[i - n];
            vals[i] = i < n ? v[i] : t->gnorm[i - n];
        }
        rc = nomul_metrics_append(t->metrics, m, keys, vals);
    }
    free(keys);
    free(vals);
    return rc;
}

static void print_audit(FILE *out, const nomul_train_result *r)
{
    if (r->counted_steps < 1)
        return;
    fprintf(out, "audit: arithmetic of %ld training steps (forward, backward, loss, optimizer), "
                 "per step:\n", r->counted_steps);
    double pj = 0.0;
    for (int k = 0; k < NOMUL_COUNT_CLASSES; k++) {
        double per = (double)r->counts.n[k] / (double)r->counted_steps;
        pj += per * nomul_op_class_energy_pj((nomul_op_class)k);
        if (r->counts.n[k])
            fprintf(out, "  %-20s %16.0f\n", nomul_op_class_name((nomul_op_class)k), per);
    }
    fprintf(out, "  energy at 45 nm      %16.3f uJ\n", pj * 1e-6);
    fprintf(out, "audit: %.0f float multiplications per training step\n",
            (double)r->counts.n[NOMUL_COUNT_FMUL] / (double)r->counted_steps);
}

int nomul_train(const nomul_train_config *c, const nomul_train_options *o,
                nomul_train_result *result)
{
    if (nomul_train_config_check(c))
        return -1;
    nomul_train_options defaults = {NULL, NULL, -1, 10.0, 0, 0};
    if (!o)
        o = &defaults;
    trainer t;
    memset(&t, 0, sizeof t);
    t.out = o->out ? o->out : stderr;
    t.rank = nomul_dist_rank();
    t.nranks = nomul_dist_size();
    const int writer = t.rank == 0; /* the rank that writes the run folder */
    dist_set_error_shared(0);
    if (!writer && !(t.out = t.quiet = fopen("/dev/null", "w"))) {
        nomul_report(NOMUL_EIO, "rank %d: cannot open /dev/null: %s", t.rank, strerror(errno));
        return -1;
    }
    nomul_train_result r;
    memset(&r, 0, sizeof r);
    r.train_loss = NAN;
    double eval_loss = NAN, metric = NAN; /* the last evaluation, as the task logs it */
    double rate_s = 0.0, rate_items = 0.0; /* the steady rate's steps */
    run_state st;
    int rc = -1;
    const double t0 = now_s();
    /* every rank reads its data (and the checkpoint it resumes from); rank 0
     * prepares the run folder; then all agree, so that a file missing on one
     * node ends the job with its rank and cause before the first step */
    int failed = setup(&t, c, &st) || (t.task->check && t.task->check(&t)) ||
              (writer && (train_make_dirs(t.dir) || train_remove_partial_checkpoints(t.dir)));
    if (!failed && o->resume) {
        failed = train_resume(&t, o->resume, &st) ||
              (writer && train_truncate_metrics(t.metrics, st.step));
    } else if (!failed && writer && remove(t.metrics) && errno != ENOENT) {
        nomul_report(NOMUL_EIO, "cannot replace '%s': %s", t.metrics, strerror(errno));
        failed = 1;
    }
    failed = failed || (writer && train_write_config(&t));
    if (dist_agree(failed))
        goto out;
    train_profile prof = {0};
    if (o->profile) {
        t.prof = &prof;
        nomul_graph_profile(t.g, 1);
    }
    long nparams = 0;
    char at[32];
    for (int i = 0; i < t.np; i++)
        nparams += t.p[i].buffer ? 0 : t.p[i].t->n;
    r.params = nparams;
    fprintf(t.out, "nomul train: %s (%ld parameters) on %s, %ld steps (%ld per epoch)%s%s\n",
            c->model, nparams, t.describe, t.total, t.per_epoch,
            o->resume ? ", resuming at step " : "",
            o->resume ? (snprintf(at, sizeof at, "%ld", st.step), at) : "");
    if (t.nranks > 1)
        fprintf(t.out, "nomul train: %d ranks, each computing 1/%d of every batch; %.1f MB of "
                "gradients summed per step\n", t.nranks, t.nranks,
                4e-6 * (double)t.nflat);
    if (c->audit) {
        nomul_counts_reset();
        nomul_counts_enable(0);
    }
    long epochs = (t.total + t.per_epoch - 1) / t.per_epoch;
    /* the steady rate: steps after the first few (arena and buffers grow,
     * pages fault in), evaluations and checkpoints excluded */
    const long left = t.total - st.step;
    const long warm = st.step + (left >= 8 ? 3 : left >= 2 ? 1 : 0);
    int saved_last = 0; /* the run's last checkpoint is written */
    for (;;) {
        long epoch = st.step / t.per_epoch, first = st.step % t.per_epoch;
        /* resumed from a checkpoint at an epoch's end (or the run's): that
         * epoch's evaluation and line come first, as they came after the
         * checkpoint in the interrupted run */
        const int epoch_open = st.epoch_n > 0 && (first == 0 || st.step == t.total);
        if (st.step >= t.total && !epoch_open)
            break;
        if (first == 0 && epoch_open) {
            epoch--;
            first = t.per_epoch;
        }
        const long last = t.total - epoch * t.per_epoch < t.per_epoch ? t.total - epoch * t.per_epoch
                                                                      : t.per_epoch;
        char label[64], extra[128];
        snprintf(label, sizeof label, "epoch %ld/%ld", epoch + 1, epochs);
        nomul_progress *bar = nomul_progress_new(t.out, label, last - first, o->tty,
                                                 o->progress_interval);
        t.task->start(&t, epoch, first);
        const double e0 = now_s();
        long images = 0;
        for (long b = first; b < last; b++) {
            double loss = 0.0;
            long n = 0;
            if (c->audit)
                nomul_counts_enable(1);
            const double s0 = now_s();
            int bad = train_step(&t, &st, &loss, &n);
            if (st.step > warm) {
                rate_s += now_s() - s0;
                rate_items += (double)n;
            }
            t.step_s += now_s() - s0;
            if (c->audit) {
                nomul_counts_enable(0);
                r.counted_steps += !bad;
            }
            if (bad) {
                nomul_progress_finish(bar, "stopped");
                goto out;
            }
            images += n;
            st.epoch_loss += loss;
            st.epoch_n++;
            st.window_loss += loss;
            st.window_n++;
            snprintf(extra, sizeof extra, "loss %.4f lr %.2e", st.epoch_loss / (double)st.epoch_n,
                     (double)t.lr[st.step - 1]);
            nomul_progress_update(bar, b + 1 - first, images, extra);
            if (logged_step(&t, st.step)) {
                char rate[32];
                snprintf(rate, sizeof rate, "%s_per_s", t.task->items);
                const char *k0[] = {"step", "epoch", "loss", "lr", rate};
                double v0[] = {(double)st.step, (double)st.step / (double)t.per_epoch,
                               st.window_loss / (double)st.window_n, (double)t.lr[st.step - 1],
                               (double)images / (now_s() - e0)};
                if (writer && log_line(&t, 5, k0, v0)) {
                    nomul_progress_finish(bar, "stopped");
                    goto out;
                }
                st.window_loss = 0.0;
                st.window_n = 0;
            }
            if (c->checkpoint_every > 0 && st.step % c->checkpoint_every == 0 &&
                st.step < t.total && writer && train_checkpoint(&t, &st)) {
                nomul_progress_finish(bar, "stopped");
                goto out;
            }
        }
        const double secs = now_s() - e0;
        r.train_loss = st.epoch_loss / (double)st.epoch_n;
        int end_of_epoch = last == t.per_epoch, done = st.step == t.total;
        int eval = !o->no_eval &&
                   (done || (end_of_epoch && c->eval_every > 0 && (epoch + 1) % c->eval_every == 0));
        /* the last checkpoint before the final evaluation, which may fail */
        if (done && writer && train_checkpoint(&t, &st)) {
            nomul_progress_finish(bar, "stopped");
            goto out;
        }
        saved_last |= done;
        if ((double)nomul_graph_arena_use(t.g).peak / MB > r.train_arena_mb)
            r.train_arena_mb = (double)nomul_graph_arena_use(t.g).peak / MB;
        if (eval) { /* the evaluation's own use of the arena, against the bound */
            nomul_graph_reset(t.g);
            nomul_graph_reset_peak(t.g);
        }
        if (eval && t.task->evaluate(&t, done, &eval_loss, &metric)) {
            nomul_progress_finish(bar, "stopped");
            goto out;
        }
        if (eval && (double)nomul_graph_arena_use(t.g).peak / MB > r.eval_arena_mb)
            r.eval_arena_mb = (double)nomul_graph_arena_use(t.g).peak / MB;
        if (eval) /* the next epoch's training peak is its own */
            nomul_graph_reset_peak(t.g);
        if (eval && !isnan(metric))
            snprintf(extra, sizeof extra, "loss %.4f, %s %.4f, %s %.2f", r.train_loss,
                     t.task->eval_loss, eval_loss, t.task->metric_label,
                     t.task->metric_scale * metric);
        else if (eval) /* translation: BLEU only at the end */
            snprintf(extra, sizeof extra, "loss %.4f, %s %.4f", r.train_loss, t.task->eval_loss,
                     eval_loss);
        else
            snprintf(extra, sizeof extra, "loss %.4f", r.train_loss);
        nomul_progress_finish(bar, extra);
        const char *k[] = {"step", "epoch", "train_loss", t.task->eval_loss, t.task->metric,
                           "epoch_seconds"};
        double v[] = {(double)st.step, (double)st.step / (double)t.per_epoch, r.train_loss,
                      eval ? eval_loss : NAN, eval ? metric : NAN, secs};
        if (writer && nomul_metrics_append(t.metrics, 6, k, v))
            goto out;
        if (end_of_epoch) {
            st.epoch_loss = 0.0;
            st.epoch_n = 0;
        }
        if (done)
            break;
    }
    if (!saved_last && writer && train_checkpoint(&t, &st))
        goto out;
    r.steps = st.step;
    rc = 0;
out:
    if (c->audit)
        nomul_counts_get(&r.counts);
    r.seconds = now_s() - t0;
    r.items_per_s = rate_s > 0.0 ? rate_items / rate_s : 0.0;
    r.peak_rss_mb = train_peak_rss_mb();
    r.eval_arena_bound_mb = t.eval_need / MB;
    if (t.task) {
        r.eval_loss = (nomul_train_metric){t.task->eval_loss, eval_loss, 4};
        r.metric = (nomul_train_metric){t.task->metric, t.task->result_scale * metric,
                                        t.task->result_digits};
    }
    if (rc == 0) {
        fprintf(t.out, "nomul train: %ld steps in %.1f s; %s %.2f, %s %.4f; "
                "checkpoint %s/checkpoint_last.safetensors\n", r.steps, r.seconds,
                t.task->metric_label, t.task->metric_scale * metric, t.task->eval_loss,
                eval_loss, t.dir);
        if (r.items_per_s > 0.0)
            fprintf(t.out, "nomul train: %.1f %s/s in the training steps; peak memory %.0f MB, "
                    "of which a training step's graph %.1f MB\n", r.items_per_s, t.task->items,
                    r.peak_rss_mb, r.train_arena_mb);
        if (r.eval_arena_mb > 0.0 && r.eval_arena_bound_mb > 0.0)
            fprintf(t.out, "nomul train: evaluation used %.1f MB of the graph's arena, %.1f MB "
                    "at most by the check before the first step (arena_mb %ld)\n",
                    r.eval_arena_mb, r.eval_arena_bound_mb, c->arena_mb);
        print_audit(t.out, &r);
        if (t.prof)
            train_profile_print(t.out, t.prof, t.g);
        if (t.nranks > 1 && t.comm_steps > 0)
            fprintf(t.out, "nomul train: %d ranks; per step %.3f MB of gradients summed "
                    "(%.3f MB sent by each rank), %.2f ms of %.2f ms in the exchange\n",
                    t.nranks, 4e-6 * (double)t.nflat, 1e-6 * dist_bytes_sent() /
                    (double)t.comm_steps, 1e3 * t.comm_s / (double)t.comm_steps,
                    1e3 * t.step_s / (double)t.comm_steps);
    }
    if (result)
        *result = r;
    trainer_free(&t);
    return rc;
}
