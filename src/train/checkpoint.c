/*
 * checkpoint.c — the training state in safetensors files: writing a
 * checkpoint (parameters under their names, the optimizer's moments under
 * optimizer.*, the configuration, step and running sums in the metadata) and
 * resuming from one, exactly; a checkpoint's configuration and parameters
 * for evaluation and translation.
 *
 * Everything random derives from the seed and the step (trainer.c), so the
 * parameters, the moments, the step, AdamW's running β^t (as exact hex) and
 * the running sums of the logged losses are the whole state.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/internal.h"
#include "nomul/safetensors.h"
#include "nomul/version.h"
#include "trainer_internal.h"

static void fmt_hex(char *buf, size_t len, double v) { snprintf(buf, len, "%a", v); }

/* The index of the first value of x[0..n) that is NaN or infinite, or -1. */
static long first_nonfinite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return (long)i;
    return -1;
}

static int save_checkpoint(const char *path, const nomul_train_config *c, nomul_param *p, int np,
                           float *const *mom, float *const *vel, const run_state *st)
{
    /* a checkpoint never holds NaN or Inf: refused before the file (and the
     * last good checkpoint it would replace) is touched */
    for (int i = 0; i < np; i++) {
        const size_t n = (size_t)p[i].t->n;
        const struct {
            const char *prefix;
            const float *x;
        } part[3] = {{"", p[i].t->data},
                     {vel ? "optimizer.exp_avg." : "optimizer.momentum_buffer.",
                      p[i].buffer || !mom ? NULL : mom[i]},
                     {"optimizer.exp_avg_sq.", p[i].buffer || !vel ? NULL : vel[i]}};
        for (int k = 0; k < 3; k++) {
            long at = part[k].x ? first_nonfinite(part[k].x, n) : -1;
            if (at >= 0) {
                nomul_report(NOMUL_EINVAL, "not writing '%s': tensor '%s%s' holds %g at index "
                             "%ld after step %ld (training diverged: lower lr, or set "
                             "clip_grad)", path, part[k].prefix, p[i].name,
                             (double)part[k].x[at], at, st->step);
                return -1;
            }
        }
    }
    int per = vel ? 3 : mom ? 2 : 1, n = per * np, rc = -1, used = 0;
    nomul_st_tensor *t = calloc((size_t)n, sizeof *t);
    int64_t *shapes = calloc((size_t)n * NOMUL_MAX_DIMS, sizeof *shapes);
    char *names = calloc((size_t)n, 128);
    size_t clen = (size_t)nomul_train_config_format(c, NULL, 0) + 1;
    char *cjson = malloc(clen);
    if (!t || !shapes || !names || !cjson) {
        nomul_report(NOMUL_ENOMEM, "out of memory writing '%s'", path);
        goto out;
    }
    nomul_train_config_format(c, cjson, clen);
    const int adam = c->optimizer == NOMUL_OPTIMIZER_ADAMW;
    for (int k = 0; k < per; k++)
        for (int i = 0; i < np; i++) {
            if (k > 0 && p[i].buffer) /* no optimizer state */
                continue;
            int j = used++;
            char *name = names + (size_t)j * 128;
            static const char *const prefix[2][3] = {
                {"", "optimizer.momentum_buffer.", ""},
                {"", "optimizer.exp_avg.", "optimizer.exp_avg_sq."}};
            snprintf(name, 128, "%s%s", prefix[adam][k], p[i].name);
            for (int d = 0; d < p[i].t->ndim; d++)
                shapes[(size_t)j * NOMUL_MAX_DIMS + (size_t)d] = p[i].t->shape[d];
            t[j].name = name;
            t[j].ndim = p[i].t->ndim;
            t[j].shape = shapes + (size_t)j * NOMUL_MAX_DIMS;
            t[j].data = k == 0 ? p[i].t->data : k == 1 ? mom[i] : vel[i];
        }
    char step[32], el[64], en[32], wl[64], wn[32], b1[64], b2[64], as[32];
    snprintf(step, sizeof step, "%ld", st->step);
    fmt_hex(el, sizeof el, st->epoch_loss);
    snprintf(en, sizeof en, "%ld", st->epoch_n);
    fmt_hex(wl, sizeof wl, st->window_loss);
    snprintf(wn, sizeof wn, "%ld", st->window_n);
    fmt_hex(b1, sizeof b1, st->adam.beta1_t);
    fmt_hex(b2, sizeof b2, st->adam.beta2_t);
    snprintf(as, sizeof as, "%ld", st->adam.step);
    const char *meta[] = {"format", "pt",
                          "nomul.version", nomul_version(),
                          "nomul.model", c->model,
                          "nomul.config", cjson,
                          "nomul.step", step,
                          "nomul.epoch_loss_sum", el,
                          "nomul.epoch_loss_n", en,
                          "nomul.window_loss_sum", wl,
                          "nomul.window_loss_n", wn,
                          "nomul.adam_step", as,
                          "nomul.adam_beta1_t", b1,
                          "nomul.adam_beta2_t", b2};
    rc = nomul_safetensors_write(path, t, used, meta, (int)(sizeof meta / sizeof meta[0] / 2));
out:
    free(t);
    free(shapes);
    free(names);
    free(cjson);
    return rc;
}

static int meta_long(const nomul_safetensors *f, const char *path, const char *key, long *out)
{
    const char *v = nomul_safetensors_meta(f, key);
    char *end;
    if (!v || (errno = 0, *out = strtol(v, &end, 10), errno || *end || end == v)) {
        nomul_report(NOMUL_EFORMAT, "checkpoint '%s': metadata '%s' is missing or not a number",
                     path, key);
        return -1;
    }
    return 0;
}

static int meta_double(const nomul_safetensors *f, const char *path, const char *key,
                       double *out)
{
    const char *v = nomul_safetensors_meta(f, key);
    char *end;
    if (!v || (*out = strtod(v, &end), *end || end == v)) {
        nomul_report(NOMUL_EFORMAT, "checkpoint '%s': metadata '%s' is missing or not a number",
                     path, key);
        return -1;
    }
    return 0;
}

/* Copies a named tensor of the checkpoint into dst after checking its shape. */
static int load_tensor(const nomul_safetensors *f, const char *path, const char *name,
                       const nomul_tensor *like, float *dst)
{
    int ndim;
    const int64_t *shape;
    const float *src = nomul_safetensors_get(f, name, &ndim, &shape);
    if (!src) {
        nomul_report(NOMUL_EFORMAT, "checkpoint '%s' has no tensor '%s'", path, name);
        return -1;
    }
    int same = ndim == like->ndim;
    for (int d = 0; same && d < ndim; d++)
        same = shape[d] == like->shape[d];
    if (!same) {
        nomul_report(NOMUL_EFORMAT, "checkpoint '%s': tensor '%s' has another shape than the "
                     "model's (different data.image, data.channels or data.classes?)", path, name);
        return -1;
    }
    long at = first_nonfinite(src, (size_t)like->n);
    if (at >= 0) {
        nomul_report(NOMUL_EFORMAT, "checkpoint '%s': tensor '%s' holds %g at index %ld",
                     path, name, (double)src[at], at);
        return -1;
    }
    memcpy(dst, src, sizeof(float) * (size_t)like->n);
    return 0;
}

int train_load_params(const nomul_safetensors *f, const char *path, nomul_param *p, int np)
{
    for (int i = 0; i < np; i++)
        if (load_tensor(f, path, p[i].name, p[i].t, p[i].t->data))
            return -1;
    return 0;
}

int nomul_checkpoint_config(const char *path, nomul_train_config *c)
{
    nomul_safetensors *f = nomul_safetensors_read(path);
    if (!f)
        return -1;
    const char *json = nomul_safetensors_meta(f, "nomul.config");
    int rc = -1;
    if (!json)
        nomul_report(NOMUL_EFORMAT, "'%s' is not a nomul checkpoint (no nomul.config metadata)",
                     path);
    else {
        nomul_train_config_default(c);
        if (nomul_train_config_parse_json(c, json)) {
            char err[512]; /* the message, prefixed */
            snprintf(err, sizeof err, "%s", nomul_last_error_message());
            nomul_report(NOMUL_EFORMAT, "checkpoint '%s': its configuration: %s", path, err);
        } else
            rc = 0;
    }
    nomul_safetensors_free(f);
    return rc;
}

/* The test hook of the kill-and-resume test (tests/test_killresume.c):
 * NOMUL_TEST_KILL_CHECKPOINT=STEP:POINT makes the run kill itself with
 * SIGKILL when it writes the checkpoint of step STEP, at POINT: "before"
 * (nothing written), "partial" (inside the writer of checkpoint_last, once
 * half its tensors are in the temporary file: safetensors.c's write hook),
 * "between" (after checkpoint_STEP, before checkpoint_last) or "after" (both
 * written, nothing logged after them). Not set: no effect. */
static void kill_mid_write(int written, int n)
{
    if (2 * written >= n) {
        fflush(NULL);
        raise(SIGKILL);
    }
}

static void test_kill_hook(const run_state *st, const char *point)
{
    const char *v = getenv("NOMUL_TEST_KILL_CHECKPOINT");
    char *end;
    if (!v || strtol(v, &end, 10) != st->step || *end != ':' || strcmp(end + 1, point))
        return;
    if (!strcmp(point, "partial")) { /* the next write is checkpoint_last's */
        nomul_st_write_hook = kill_mid_write;
        return;
    }
    fflush(NULL);
    raise(SIGKILL);
}

int train_checkpoint(const trainer *t, const run_state *st)
{
    char path[NOMUL_PATH_MAX + 64];
    test_kill_hook(st, "before");
    if (t->c->checkpoint_keep) {
        snprintf(path, sizeof path, "%s/checkpoint_%ld.safetensors", t->dir, st->step);
        if (save_checkpoint(path, t->c, t->p, t->np, t->mom, t->vel, st))
            return -1;
    }
    test_kill_hook(st, "between");
    test_kill_hook(st, "partial");
    snprintf(path, sizeof path, "%s/checkpoint_last.safetensors", t->dir);
    if (save_checkpoint(path, t->c, t->p, t->np, t->mom, t->vel, st))
        return -1;
    test_kill_hook(st, "after");
    return 0;
}

int train_resume(trainer *t, const char *path, run_state *st)
{
    nomul_safetensors *f = nomul_safetensors_read(path);
    if (!f)
        return -1;
    int rc = -1;
    const char *model = nomul_safetensors_meta(f, "nomul.model");
    double b1, b2;
    if (!model || strcmp(model, t->c->model)) {
        nomul_report(NOMUL_EINVAL, "checkpoint '%s' holds model '%s', the configuration says "
                     "'%s'", path, model ? model : "(none)", t->c->model);
        goto out;
    }
    if (meta_long(f, path, "nomul.step", &st->step) ||
        meta_double(f, path, "nomul.epoch_loss_sum", &st->epoch_loss) ||
        meta_long(f, path, "nomul.epoch_loss_n", &st->epoch_n) ||
        meta_double(f, path, "nomul.window_loss_sum", &st->window_loss) ||
        meta_long(f, path, "nomul.window_loss_n", &st->window_n) ||
        meta_long(f, path, "nomul.adam_step", &st->adam.step) ||
        meta_double(f, path, "nomul.adam_beta1_t", &b1) ||
        meta_double(f, path, "nomul.adam_beta2_t", &b2))
        goto out;
    /* every value read back is checked, naming the key */
    const char *badkey = NULL, *why = "";
    const int adamw = t->c->optimizer == NOMUL_OPTIMIZER_ADAMW;
    /* β^t in float reaches 0 after enough steps (0.9^t near t = 1000) */
    if (!(b1 >= 0.0 && b1 <= 1.0))
        badkey = "nomul.adam_beta1_t", why = "is not in [0, 1]";
    else if (!(b2 >= 0.0 && b2 <= 1.0))
        badkey = "nomul.adam_beta2_t", why = "is not in [0, 1]";
    else if (st->step < 0)
        badkey = "nomul.step", why = "is negative";
    else if (st->adam.step < 0)
        badkey = "nomul.adam_step", why = "is negative";
    else if (adamw && st->adam.step != st->step)
        badkey = "nomul.adam_step", why = "differs from nomul.step";
    else if (st->epoch_n < 0 || st->epoch_n > st->step)
        badkey = "nomul.epoch_loss_n", why = "is negative or beyond nomul.step";
    else if (st->window_n < 0 || st->window_n > st->step)
        badkey = "nomul.window_loss_n", why = "is negative or beyond nomul.step";
    else if (!isfinite(st->epoch_loss))
        badkey = "nomul.epoch_loss_sum", why = "is not a finite loss sum";
    else if (!isfinite(st->window_loss))
        badkey = "nomul.window_loss_sum", why = "is not a finite loss sum";
    if (badkey) {
        nomul_report(NOMUL_EFORMAT, "checkpoint '%s': metadata '%s' (%s) %s", path, badkey,
                     nomul_safetensors_meta(f, badkey), why);
        goto out;
    }
    st->adam.beta1_t = (float)b1;
    st->adam.beta2_t = (float)b2;
    if (st->step < 0 || st->step > t->total) {
        nomul_report(NOMUL_EINVAL, "checkpoint '%s' is at step %ld, beyond this run's %ld steps",
                     path, st->step, t->total);
        goto out;
    }
    if (train_load_params(f, path, t->p, t->np))
        goto out;
    const int adam = t->c->optimizer == NOMUL_OPTIMIZER_ADAMW;
    char name[160];
    for (int i = 0; i < t->np; i++) {
        if (t->p[i].buffer)
            continue;
        snprintf(name, sizeof name, "optimizer.%s.%s", adam ? "exp_avg" : "momentum_buffer",
                 t->p[i].name);
        if (load_tensor(f, path, name, t->p[i].t, t->mom[i]))
            goto out;
        if (adam) {
            snprintf(name, sizeof name, "optimizer.exp_avg_sq.%s", t->p[i].name);
            if (load_tensor(f, path, name, t->p[i].t, t->vel[i]))
                goto out;
        }
    }
    rc = 0;
out:
    nomul_safetensors_free(f);
    return rc;
}
