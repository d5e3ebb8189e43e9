/*
 * trainer.c — a training run (nomul/train.h): data, model, optimizer and
 * schedule, the step loop with progress, metric lines, evaluation,
 * safetensors checkpoints and exact resume.
 *
 * Everything random derives from the seed and the step: the model's
 * initialisation, each epoch's shuffle and each image's augmentation (the
 * loader hashes seed, epoch and index), and each step's drop-path draws. A
 * checkpoint therefore only needs the parameters, the optimizer's moments,
 * the step and the running sums of the logged losses; resuming from it
 * replays the very batches an uninterrupted run would have seen.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "../core/internal.h"
#include "nomul/arith.h"
#include "nomul/autodiff.h"
#include "nomul/data.h"
#include "nomul/models.h"
#include "nomul/optim.h"
#include "nomul/progress.h"
#include "nomul/safetensors.h"
#include "nomul/train.h"
#include "nomul/version.h"
#include "trainer_internal.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- data ------------------------------------------------------------- */

static nomul_image_set *load_set(const nomul_train_config *c, int train)
{
    const char *images = train ? c->train_images : c->test_images;
    const char *labels = train ? c->train_labels : c->test_labels;
    const char *key = train ? "data.train" : "data.test";
    nomul_image_set *s = NULL;
    if (!strcmp(c->data_format, "idx")) {
        s = nomul_image_set_from_idx(images, labels, c->classes);
    } else if (!strcmp(c->data_format, "cifar")) {
        char *list = strdup(images);
        const char *paths[64];
        int n = 0;
        for (char *save = NULL, *p = list ? strtok_r(list, ",", &save) : NULL; p && n < 64;
             p = strtok_r(NULL, ",", &save))
            paths[n++] = p;
        if (n)
            s = nomul_image_set_from_cifar(paths, n, c->classes > 10 ? 2 : 1);
        else
            nomul_report(NOMUL_EINVAL, "%s: no CIFAR batch files given", key);
        free(list);
    } else {
        char **names = NULL;
        s = nomul_image_set_from_folder(images, c->image, c->image, c->channels, &names);
        if (s) {
            for (int i = 0; i < s->classes; i++)
                free(names[i]);
            free(names);
        }
    }
    if (!s)
        return NULL;
    if (s->h != c->image || s->w != c->image || s->c != c->channels) {
        nomul_report(NOMUL_EINVAL, "%s ('%s') holds %d×%d images of %d channels; the "
                     "configuration says data.image %d, data.channels %d", key, images, s->h,
                     s->w, s->c, c->image, c->channels);
        nomul_image_set_free(s);
        return NULL;
    }
    if (s->classes > c->classes) {
        nomul_report(NOMUL_EINVAL, "%s ('%s') has %d classes; the configuration says "
                     "data.classes %d", key, images, s->classes, c->classes);
        nomul_image_set_free(s);
        return NULL;
    }
    long limit = train ? c->train_limit : c->test_limit;
    if (limit > 0 && limit < s->n)
        s->n = limit;
    return s;
}

static nomul_augment augment_of(const nomul_train_config *c, int train)
{
    nomul_augment a;
    memset(&a, 0, sizeof a);
    a.crop_pad = train ? c->crop_pad : 0;
    a.hflip = train ? c->hflip : 0;
    memcpy(a.mean, c->mean, sizeof a.mean);
    memcpy(a.std, c->std, sizeof a.std);
    if (train) {
        a.randaugment_n = c->randaugment_n;
        a.randaugment_m = c->randaugment_m;
        a.randaugment_mstd = c->randaugment_mstd;
        a.erase_prob = c->erase_prob;
    }
    return a;
}

/* ---- evaluation ------------------------------------------------------- */

/* Mean cross-entropy (no smoothing) and accuracy over the set. The loss is a
 * report, computed in double from the logits; the model's forward pass runs
 * in the configured arithmetic. */
static int evaluate(nomul_model *m, nomul_graph *g, const nomul_train_config *c,
                    const nomul_image_set *s, double *loss, double *acc)
{
    nomul_augment a = augment_of(c, 0);
    nomul_loader *l = nomul_loader_new(s, c->eval_batch_size, 0, 0, &a, (uint64_t)c->seed);
    if (!l)
        return -1;
    nomul_loader_start(l, 0, 0);
    nomul_graph_set_grad(g, 0);
    double total = 0.0;
    long right = 0, seen = 0;
    const float *x;
    const int32_t *y;
    int b, rc = 0;
    while ((b = nomul_loader_next(l, &x, &y)) > 0) {
        nomul_graph_reset(g);
        int xs[4] = {b, c->channels, c->image, c->image};
        nomul_tensor *xt = nomul_graph_tensor(g, 4, xs, 0);
        if (!xt) {
            rc = -1;
            break;
        }
        memcpy(xt->data, x, sizeof(float) * (size_t)xt->n);
        nomul_tensor *logits = nomul_model_forward(m, g, &c->ops, xt, NULL);
        if (!logits) {
            rc = -1;
            break;
        }
        const int k = logits->shape[1];
        for (int i = 0; i < b; i++) {
            int best;
            total += train_row_nll(logits->data + (size_t)i * k, k, y[i], &best);
            right += best == y[i];
        }
        seen += b;
    }
    nomul_loader_free(l);
    nomul_graph_set_grad(g, 1);
    nomul_graph_reset(g);
    if (rc)
        return -1;
    *loss = seen ? total / (double)seen : NAN;
    *acc = seen ? (double)right / (double)seen : NAN;
    return 0;
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

/* ---- files -------------------------------------------------------------- */

static int make_dirs(const char *path)
{
    char buf[NOMUL_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char keep = *p;
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST) {
                nomul_report(NOMUL_EIO, "out_dir: cannot create '%s': %s", buf, strerror(errno));
                return -1;
            }
            *p = keep;
            if (!keep)
                break;
        }
    }
    return 0;
}

int train_write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) {
        nomul_report(NOMUL_EIO, "cannot write '%s': %s", path, strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    return 0;
}

/* Keeps the metric lines of steps up to `step` (a resumed run rewrites what
 * the interrupted one logged after its checkpoint). */
static int truncate_metrics(const char *path, long step)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0; /* nothing logged yet */
    size_t cap = 0, len = 0;
    char *kept = NULL, *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    while ((n = getline(&line, &lcap, f)) > 0) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *s = o ? cJSON_GetObjectItemCaseSensitive(o, "step") : NULL;
        int keep = s && cJSON_IsNumber(s) && s->valuedouble <= (double)step;
        cJSON_Delete(o);
        if (!keep)
            continue;
        if (len + (size_t)n + 1 > cap) {
            char *k = realloc(kept, cap = 2 * (len + (size_t)n + 1));
            if (!k) {
                free(kept);
                free(line);
                fclose(f);
                nomul_report(NOMUL_ENOMEM, "out of memory reading '%s'", path);
                return -1;
            }
            kept = k;
        }
        memcpy(kept + len, line, (size_t)n);
        len += (size_t)n;
    }
    free(line);
    fclose(f);
    if (kept)
        kept[len] = 0;
    int r = train_write_text(path, kept ? kept : "");
    free(kept);
    return r;
}

/* ---- checkpoints ---------------------------------------------------------- */

static void fmt_hex(char *buf, size_t len, double v) { snprintf(buf, len, "%a", v); }

static int save_checkpoint(const char *path, const nomul_train_config *c, nomul_param *p, int np,
                           float *const *mom, float *const *vel, const run_state *st)
{
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
    const int adam = !strcmp(c->optimizer, "adamw");
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
    char err[512];
    if (!json)
        nomul_report(NOMUL_EFORMAT, "'%s' is not a nomul checkpoint (no nomul.config metadata)",
                     path);
    else {
        nomul_train_config_default(c);
        if (nomul_train_config_parse_json(c, json, err, sizeof err))
            nomul_report(NOMUL_EFORMAT, "checkpoint '%s': its configuration: %s", path, err);
        else
            rc = 0;
    }
    nomul_safetensors_free(f);
    return rc;
}

int nomul_evaluate_checkpoint(const char *path, const nomul_train_config *c, double *loss,
                              double *acc)
{
    char err[512];
    if (nomul_train_config_check(c, err, sizeof err)) {
        nomul_report(NOMUL_EINVAL, "%s", err);
        return -1;
    }
    if (!strcmp(c->task, "translation")) {
        nomul_report(NOMUL_EINVAL, "'%s' is a translation checkpoint: its training ends with "
                     "the test BLEU; nomul translate --checkpoint translates with it", path);
        return -1;
    }
    nomul_safetensors *f = nomul_safetensors_read(path);
    nomul_image_set *test = f ? load_set(c, 0) : NULL;
    nomul_model *m = test ? nomul_model_new(c->model, c->image, c->channels, c->classes, 0)
                          : NULL;
    nomul_graph *g = m ? nomul_graph_new((size_t)c->arena_mb << 20) : NULL;
    int rc = -1;
    if (g) {
        nomul_param *p;
        int np = nomul_model_params(m, &p);
        if (!train_load_params(f, path, p, np))
            rc = evaluate(m, g, c, test, loss, acc);
    }
    nomul_graph_free(g);
    nomul_model_free(m);
    nomul_image_set_free(test);
    nomul_safetensors_free(f);
    return rc;
}

/* ---- the run -------------------------------------------------------------- */

/* The image-classification task (the translation task is in task_translation.c). */
typedef struct img_task {
    nomul_image_set *train, *test;
    nomul_model *model;
    nomul_loader *loader;
    int32_t *yrev; /* a batch's labels reversed (mixup, cutmix) */
} img_task;

static void trainer_free(trainer *t)
{
    for (int i = 0; t->mom && i < t->np; i++) {
        free(t->mom[i]);
        if (t->vel)
            free(t->vel[i]);
    }
    free(t->mom);
    free(t->vel);
    free(t->grads);
    free(t->sizes);
    free(t->lr);
    nomul_graph_free(t->g);
    if (t->task && t->td)
        t->task->free(t);
}

static int checkpoint(trainer *t, const run_state *st)
{
    char path[NOMUL_PATH_MAX + 64];
    if (t->c->checkpoint_keep) {
        snprintf(path, sizeof path, "%s/checkpoint_%ld.safetensors", t->dir, st->step);
        if (save_checkpoint(path, t->c, t->p, t->np, t->mom, t->vel, st))
            return -1;
    }
    snprintf(path, sizeof path, "%s/checkpoint_last.safetensors", t->dir);
    return save_checkpoint(path, t->c, t->p, t->np, t->mom, t->vel, st);
}

static int resume(trainer *t, const char *path, run_state *st)
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
    st->adam.beta1_t = (float)b1;
    st->adam.beta2_t = (float)b2;
    if (st->step < 0 || st->step > t->total) {
        nomul_report(NOMUL_EINVAL, "checkpoint '%s' is at step %ld, beyond this run's %ld steps",
                     path, st->step, t->total);
        goto out;
    }
    if (train_load_params(f, path, t->p, t->np))
        goto out;
    const int adam = !strcmp(t->c->optimizer, "adamw");
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

static int img_setup(trainer *t)
{
    const nomul_train_config *c = t->c;
    img_task *it = calloc(1, sizeof *it);
    if (!(t->td = it)) {
        nomul_report(NOMUL_ENOMEM, "out of memory");
        return -1;
    }
    if (!(it->train = load_set(c, 1)) || !(it->test = load_set(c, 0)))
        return -1;
    if (it->train->n < c->batch_size) {
        nomul_report(NOMUL_EINVAL, "data.train holds %ld images, fewer than batch_size %d",
                     it->train->n, c->batch_size);
        return -1;
    }
    if (!(it->model = nomul_model_new(c->model, c->image, c->channels, c->classes,
                                      (uint64_t)c->seed)))
        return -1;
    t->np = nomul_model_params(it->model, &t->p);
    if (!(it->yrev = malloc(sizeof(int32_t) * (size_t)c->batch_size))) {
        nomul_report(NOMUL_ENOMEM, "out of memory");
        return -1;
    }
    nomul_augment a = augment_of(c, 1);
    if (!(it->loader = nomul_loader_new(it->train, c->batch_size, 1, 1, &a, (uint64_t)c->seed)))
        return -1;
    t->per_epoch = nomul_loader_batches(it->loader);
    snprintf(t->describe, sizeof t->describe, "%ld images (%ld test)", it->train->n,
             it->test->n);
    return 0;
}

static void img_free(trainer *t)
{
    img_task *it = t->td;
    nomul_loader_free(it->loader);
    nomul_model_free(it->model);
    nomul_image_set_free(it->train);
    nomul_image_set_free(it->test);
    free(it->yrev);
    free(it);
    t->td = NULL;
}

static void img_start(trainer *t, long epoch, long first)
{
    nomul_loader_start(((img_task *)t->td)->loader, epoch, first);
}

static int img_evaluate(trainer *t, int final, double *loss, double *metric)
{
    (void)final;
    img_task *it = t->td;
    return evaluate(it->model, t->g, t->c, it->test, loss, metric);
}

static nomul_tensor *img_loss(trainer *t, const run_state *st, long *items);

static const train_task image_task = {"images", "test_loss", "test_acc", "test acc", 100.0,
                                      img_setup, img_start, img_loss, img_evaluate, img_free};

static int setup(trainer *t, const nomul_train_config *c, run_state *st)
{
    t->c = c;
    snprintf(t->dir, sizeof t->dir, "%s", c->out_dir);
    snprintf(t->metrics, sizeof t->metrics, "%s/metrics.jsonl", t->dir);
    t->task = !strcmp(c->task, "translation") ? &translation_task : &image_task;
    if (t->task->setup(t))
        return -1;
    const int adam = !strcmp(c->optimizer, "adamw");
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
    t->total = c->steps > 0 ? c->steps : c->epochs * t->per_epoch;
    nomul_schedule s = {NOMUL_SCHED_WARMUP_COSINE, c->lr, c->min_lr, c->warmup_steps, t->total};
    if (!strcmp(c->schedule, "constant")) {
        s.kind = c->warmup_steps ? NOMUL_SCHED_WARMUP_COSINE : NOMUL_SCHED_CONSTANT;
        s.min_lr = c->lr; /* a cosine from lr to lr: warmup, then constant */
    } else if (!strcmp(c->schedule, "inverse_sqrt"))
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
    st->adam.moments = !strcmp(c->adam_moments, "delta") ? NOMUL_ADAM_MOMENTS_DELTA
                                                         : NOMUL_ADAM_MOMENTS_REFERENCE;
    return 0;
oom:
    nomul_report(NOMUL_ENOMEM, "out of memory for the optimizer's state");
    return -1;
}

/* ---- mixup and cutmix ----------------------------------------------------- */

/* Gamma(a, 1) (Marsaglia and Tsang; a < 1 through Gamma(a + 1)·U^(1/a)). */
static double gamma_sample(uint64_t *r, double a)
{
    if (a < 1.0)
        return gamma_sample(r, a + 1.0) * pow(nomul_uniform01(r), 1.0 / a);
    const double d = a - 1.0 / 3.0, k = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double z = nomul_normal01(r);
        double v = 1.0 + k * z;
        if (v <= 0)
            continue;
        v = v * v * v;
        if (log(nomul_uniform01(r)) < 0.5 * z * z + d - d * v + d * log(v))
            return d * v;
    }
}

/* Mixes the batch with itself reversed, as timm's Mixup (mode "batch"):
 * mixup blends images i and b−1−i by λ ~ Beta(α, α) (PAMs when the
 * functional family is piecewise affine), cutmix pastes a box of the partner
 * and sets λ to the area kept. The mixing draws (λ, the box) are sampled in
 * double from the step's stream, like initialisation; returns λ (1: not
 * mixed). */
static double mix_batch(const nomul_train_config *c, float *x, int b, uint64_t *r)
{
    if ((c->mixup <= 0 && c->cutmix <= 0) || !(nomul_uniform01(r) < c->mix_prob))
        return 1.0;
    const int cut = c->cutmix > 0 && (c->mixup <= 0 || nomul_uniform01(r) < c->mix_switch_prob);
    double g1 = gamma_sample(r, cut ? c->cutmix : c->mixup);
    double g2 = gamma_sample(r, cut ? c->cutmix : c->mixup);
    double lam = g1 / (g1 + g2);
    const int side = c->image, ch = c->channels;
    const size_t plane = (size_t)side * side, img = plane * (size_t)ch;
    if (cut) {
        const double ratio = sqrt(1.0 - lam);
        const int ch_ = (int)(side * ratio), cw = (int)(side * ratio);
        const int cy = (int)(nomul_uniform01(r) * side), cx = (int)(nomul_uniform01(r) * side);
        const int y0 = cy - ch_ / 2 < 0 ? 0 : cy - ch_ / 2, y1 = cy + ch_ / 2 > side ? side : cy + ch_ / 2;
        const int x0 = cx - cw / 2 < 0 ? 0 : cx - cw / 2, x1 = cx + cw / 2 > side ? side : cx + cw / 2;
        for (int i = 0; i < b / 2; i++) { /* the box swaps between partners */
            float *a = x + (size_t)i * img, *p = x + (size_t)(b - 1 - i) * img;
            for (int k = 0; k < ch; k++)
                for (int y = y0; y < y1; y++)
                    for (int xx = x0; xx < x1; xx++) {
                        size_t at = (size_t)k * plane + (size_t)y * side + (size_t)xx;
                        float tmp = a[at];
                        a[at] = p[at];
                        p[at] = tmp;
                    }
        }
        lam = 1.0 - (double)(y1 - y0) * (x1 - x0) / (double)plane;
    } else {
        const int pa = c->ops.family[NOMUL_CFG_FUNCTIONAL].subtype != NOMUL_OP_STANDARD;
        const float l = (float)lam, m = 1.0f - l;
        for (int i = 0; i < b / 2; i++) {
            float *a = x + (size_t)i * img, *p = x + (size_t)(b - 1 - i) * img;
            for (size_t k = 0; k < img; k++) {
                float u = a[k], v = p[k];
                a[k] = pa ? nomul_pam_mul(l, u) + nomul_pam_mul(m, v) : l * u + m * v;
                p[k] = pa ? nomul_pam_mul(l, v) + nomul_pam_mul(m, u) : l * v + m * u;
            }
        }
        if (pa)
            NOMUL_COUNT(PAM, 2 * img * (size_t)(b / 2 * 2));
        else
            NOMUL_COUNT(FMUL, 2 * img * (size_t)(b / 2 * 2));
        NOMUL_COUNT(FADD, img * (size_t)(b / 2 * 2));
    }
    return lam;
}

/* The image task's loss on the loader's next batch (mixup/cutmix applied). */
static nomul_tensor *img_loss(trainer *t, const run_state *st, long *items)
{
    img_task *it = t->td;
    const nomul_train_config *c = t->c;
    nomul_graph *g = t->g;
    const float *x;
    const int32_t *y;
    int b = nomul_loader_next(it->loader, &x, &y);
    if (b < 1) {
        nomul_report(NOMUL_EINVAL, "the loader ran out of batches");
        return NULL;
    }
    *items = b;
    int xs[4] = {b, c->channels, c->image, c->image};
    nomul_tensor *xt = nomul_graph_tensor(g, 4, xs, 0);
    if (!xt)
        return NULL;
    memcpy(xt->data, x, sizeof(float) * (size_t)xt->n);
    /* this step's random choices: drop-path and mixing */
    uint64_t rng = nomul_mix64((uint64_t)c->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(st->step + 1)));
    nomul_forward_opts fo = {1, c->drop_path, nomul_mix64(rng)};
    uint64_t mix_rng = nomul_mix64(rng ^ 0x4d4958ull);
    const double lam = mix_batch(c, xt->data, b, &mix_rng);
    nomul_tensor *logits = nomul_model_forward(it->model, g, &c->ops, xt, &fo);
    const nomul_op_cfg *lc = &c->ops.family[NOMUL_CFG_LOSS_FUNCTIONAL];
    nomul_tensor *l = nomul_cross_entropy(g, lc, logits, y, -1, c->label_smoothing);
    if (lam < 1.0) { /* λ·CE(y) + (1 − λ)·CE(y reversed) */
        for (int i = 0; i < b; i++)
            it->yrev[i] = y[b - 1 - i];
        nomul_tensor *l2 = nomul_cross_entropy(g, lc, logits, it->yrev, -1, c->label_smoothing);
        l = nomul_add(g, nomul_scale(g, lc, l, (float)lam),
                      nomul_scale(g, lc, l2, (float)(1.0 - lam)));
    }
    return l;
}

/* One optimizer step on the task's next batch; the loss in *loss. */
static int train_step(trainer *t, run_state *st, double *loss, long *items)
{
    const nomul_train_config *c = t->c;
    nomul_graph *g = t->g;
    nomul_graph_reset(g);
    nomul_tensor *l = t->task->loss(t, st, items);
    if (!l)
        return -1;
    *loss = l->data[0];
    if (!isfinite(*loss)) {
        nomul_report(NOMUL_EINVAL, "training diverged: the loss is %g at step %ld (lower lr, "
                     "or set clip_grad); no checkpoint was written for this step", *loss,
                     st->step + 1);
        return -1;
    }
    for (int i = 0; i < t->np; i++)
        if (!t->p[i].buffer)
            nomul_tensor_zero_grad(t->p[i].t);
    nomul_backward(g, l);
    const nomul_op_cfg *opt = &c->ops.family[NOMUL_CFG_OPT_FUNCTIONAL];
    if (c->clip_grad > 0.0f)
        nomul_clip_grad_norm((size_t)t->ntrain, t->grads, t->sizes, c->clip_grad, opt);
    const float lr = t->lr[st->step];
    if (t->vel) {
        st->adam.lr = lr;
        nomul_adamw_begin_step(&st->adam);
        nomul_adamw nodecay = st->adam;
        nodecay.weight_decay = 0.0f;
        for (int i = 0; i < t->np; i++)
            if (!t->p[i].buffer)
                nomul_adamw_update(t->p[i].decay ? &st->adam : &nodecay, (size_t)t->p[i].t->n,
                                   t->p[i].t->data, t->p[i].t->grad, t->mom[i], t->vel[i]);
    } else {
        nomul_sgd o;
        nomul_sgd_init(&o, lr, c->momentum, c->weight_decay, opt);
        nomul_sgd nodecay = o;
        nodecay.weight_decay = 0.0f;
        for (int i = 0; i < t->np; i++)
            if (!t->p[i].buffer)
                nomul_sgd_update(t->p[i].decay ? &o : &nodecay, (size_t)t->p[i].t->n,
                                 t->p[i].t->data, t->p[i].t->grad, t->mom[i]);
    }
    st->step++;
    return 0;
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
    char err[512];
    if (nomul_train_config_check(c, err, sizeof err)) {
        nomul_report(NOMUL_EINVAL, "%s", err);
        return -1;
    }
    nomul_train_options defaults = {NULL, NULL, -1, 10.0};
    if (!o)
        o = &defaults;
    trainer t;
    memset(&t, 0, sizeof t);
    t.out = o->out ? o->out : stderr;
    nomul_train_result r;
    memset(&r, 0, sizeof r);
    r.test_loss = r.test_acc = r.train_loss = NAN;
    run_state st;
    int rc = -1;
    const double t0 = now_s();
    if (setup(&t, c, &st) || make_dirs(t.dir))
        goto out;
    if (o->resume) {
        if (resume(&t, o->resume, &st) || truncate_metrics(t.metrics, st.step))
            goto out;
    } else if (remove(t.metrics) && errno != ENOENT) {
        nomul_report(NOMUL_EIO, "cannot replace '%s': %s", t.metrics, strerror(errno));
        goto out;
    }
    {
        size_t len = (size_t)nomul_train_config_format(c, NULL, 0) + 1;
        char *json = malloc(len), path[NOMUL_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/config.json", t.dir);
        int bad = !json || (nomul_train_config_format(c, json, len), train_write_text(path, json));
        free(json);
        if (bad)
            goto out;
    }
    long nparams = 0;
    for (int i = 0; i < t.np; i++)
        nparams += t.p[i].buffer ? 0 : t.p[i].t->n;
    fprintf(t.out, "nomul train: %s (%ld parameters) on %s, %ld steps (%ld per epoch)%s%s\n",
            c->model, nparams, t.describe, t.total, t.per_epoch,
            o->resume ? ", resuming at step " : "",
            o->resume ? (snprintf(err, sizeof err, "%ld", st.step), err) : "");
    if (c->audit) {
        nomul_counts_reset();
        nomul_counts_enable(0);
    }
    long epochs = (t.total + t.per_epoch - 1) / t.per_epoch;
    while (st.step < t.total) {
        const long epoch = st.step / t.per_epoch, first = st.step % t.per_epoch;
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
            double loss;
            long n = 0;
            if (c->audit)
                nomul_counts_enable(1);
            int bad = train_step(&t, &st, &loss, &n);
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
            if (st.step % c->log_every == 0 || st.step == t.total) {
                char rate[32];
                snprintf(rate, sizeof rate, "%s_per_s", t.task->items);
                const char *k[] = {"step", "epoch", "loss", "lr", rate};
                double v[] = {(double)st.step, (double)st.step / (double)t.per_epoch,
                              st.window_loss / (double)st.window_n, (double)t.lr[st.step - 1],
                              (double)images / (now_s() - e0)};
                if (nomul_metrics_append(t.metrics, 5, k, v)) {
                    nomul_progress_finish(bar, "stopped");
                    goto out;
                }
                st.window_loss = 0.0;
                st.window_n = 0;
            }
            if (c->checkpoint_every > 0 && st.step % c->checkpoint_every == 0 &&
                st.step < t.total && checkpoint(&t, &st)) {
                nomul_progress_finish(bar, "stopped");
                goto out;
            }
        }
        const double secs = now_s() - e0;
        r.train_loss = st.epoch_loss / (double)st.epoch_n;
        int end_of_epoch = last == t.per_epoch, done = st.step == t.total;
        int eval = done || (end_of_epoch && c->eval_every > 0 && (epoch + 1) % c->eval_every == 0);
        if (eval && t.task->evaluate(&t, done, &r.test_loss, &r.test_acc)) {
            nomul_progress_finish(bar, "stopped");
            goto out;
        }
        if (eval && !isnan(r.test_acc))
            snprintf(extra, sizeof extra, "loss %.4f, %s %.4f, %s %.2f", r.train_loss,
                     t.task->eval_loss, r.test_loss, t.task->metric_label,
                     t.task->metric_scale * r.test_acc);
        else if (eval) /* translation: BLEU only at the end */
            snprintf(extra, sizeof extra, "loss %.4f, %s %.4f", r.train_loss, t.task->eval_loss,
                     r.test_loss);
        else
            snprintf(extra, sizeof extra, "loss %.4f", r.train_loss);
        nomul_progress_finish(bar, extra);
        const char *k[] = {"step", "epoch", "train_loss", t.task->eval_loss, t.task->metric,
                           "epoch_seconds"};
        double v[] = {(double)st.step, (double)st.step / (double)t.per_epoch, r.train_loss,
                      eval ? r.test_loss : NAN, eval ? r.test_acc : NAN, secs};
        if (nomul_metrics_append(t.metrics, 6, k, v))
            goto out;
        if (end_of_epoch) {
            st.epoch_loss = 0.0;
            st.epoch_n = 0;
        }
    }
    if (checkpoint(&t, &st))
        goto out;
    r.steps = st.step;
    rc = 0;
out:
    if (c->audit)
        nomul_counts_get(&r.counts);
    r.seconds = now_s() - t0;
    if (rc == 0) {
        fprintf(t.out, "nomul train: %ld steps in %.1f s; %s %.2f, %s %.4f; "
                "checkpoint %s/checkpoint_last.safetensors\n", r.steps, r.seconds,
                t.task->metric_label, t.task->metric_scale * r.test_acc, t.task->eval_loss,
                r.test_loss, t.dir);
        print_audit(t.out, &r);
    }
    if (result)
        *result = r;
    trainer_free(&t);
    return rc;
}
