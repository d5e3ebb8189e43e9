/*
 * task_image.c — the trainer's image-classification task: image sets from
 * IDX, CIFAR or folders, augmentation, the model by name, label-smoothed
 * cross-entropy on mixed batches (mixup.c), test loss and accuracy; and
 * evaluating a checkpoint on a test set.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../dist/dist_internal.h"
#include "nomul/data.h"
#include "nomul/models.h"
#include "nomul/safetensors.h"
#include "trainer_internal.h"

/* The image-classification task (the translation task is in task_translation.c). */
typedef struct img_task {
    nomul_image_set *train, *test;
    nomul_model *model;
    nomul_loader *loader;
    int32_t *yrev; /* a batch's labels reversed (mixup, cutmix) */
    float *xfull;  /* ranks > 1: the global batch, mixed, before this rank's rows are taken */
} img_task;

static nomul_image_set *load_set(const nomul_train_config *c, int train)
{
    const char *images = train ? c->train_images : c->test_images;
    const char *labels = train ? c->train_labels : c->test_labels;
    const char *key = train ? "data.train" : "data.test";
    nomul_image_set *s = NULL;
    if (c->data_format == NOMUL_DATA_FORMAT_IDX) {
        s = nomul_image_set_from_idx(images, labels, c->classes);
    } else if (c->data_format == NOMUL_DATA_FORMAT_CIFAR) {
        char *list = strdup(images);
        const char *paths[64];
        int n = 0;
        char *save = NULL, *p = list ? strtok_r(list, ",", &save) : NULL;
        for (; p && n < 64; p = strtok_r(NULL, ",", &save))
            paths[n++] = p;
        if (p) /* refused rather than dropped */
            nomul_report(NOMUL_EINVAL, "%s: more than 64 CIFAR batch files given", key);
        else if (n)
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
    if (s->n < 1) {
        nomul_report(NOMUL_EINVAL, "%s ('%s') holds no images", key, images);
        nomul_image_set_free(s);
        return NULL;
    }
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

/* Mean cross-entropy (no smoothing) and accuracy over the set. The loss is a
 * report, computed in double from the logits; the model's forward pass runs
 * in the configured arithmetic. probe: the first batch only (the memory
 * check before a run's first step), nothing computed. t (not NULL when
 * training under several ranks): each rank evaluates a contiguous run of the
 * set's batches, and the sums are gathered (in rank order: the loss may
 * differ from one rank's in its last double bits, the accuracy not). */
static int evaluate(nomul_model *m, nomul_graph *g, const nomul_train_config *c,
                    const nomul_image_set *set, double *loss, double *acc, int probe,
                    const trainer *t)
{
    nomul_augment a = augment_of(c, 0);
    /* a batch larger than the set is the set: the same batches, buffers of its size */
    const int batch = (long)c->eval_batch_size < set->n ? c->eval_batch_size : (int)set->n;
    nomul_image_set part = *set;
    const nomul_image_set *s = set;
    if (t && t->nranks > 1 && !probe) {
        long nb = (set->n + batch - 1) / batch, b0, b1;
        train_shard(t, nb, &b0, &b1);
        long lo = b0 * batch, hi = b1 * batch < set->n ? b1 * batch : set->n;
        part.pixels += (size_t)lo * (size_t)set->h * (size_t)set->w * (size_t)set->c;
        part.labels += lo;
        part.n = hi - lo;
        s = &part;
    }
    double sums[3] = {0.0, 0.0, 0.0}; /* loss, right, seen */
    nomul_loader *l = s->n > 0 ? nomul_loader_new(s, batch, 0, 0, &a, (uint64_t)c->seed) : NULL;
    if (s->n > 0 && !l)
        return -1;
    if (!l) { /* more ranks than batches: this one has none */
        if (dist_allreduce_sum_f64(sums, 3))
            return -1;
        *loss = sums[2] > 0 ? sums[0] / sums[2] : NAN;
        *acc = sums[2] > 0 ? sums[1] / sums[2] : NAN;
        return 0;
    }
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
        if (probe)
            break;
    }
    nomul_loader_free(l);
    nomul_graph_set_grad(g, 1);
    nomul_graph_reset(g);
    if (rc)
        return -1;
    if (t && t->nranks > 1 && !probe) {
        sums[0] = total;
        sums[1] = (double)right;
        sums[2] = (double)seen;
        if (dist_allreduce_sum_f64(sums, 3))
            return -1;
        total = sums[0];
        right = (long)sums[1];
        seen = (long)sums[2];
    }
    *loss = seen ? total / (double)seen : NAN;
    *acc = seen ? (double)right / (double)seen : NAN;
    return 0;
}

/* evalmem.c's dry run: a forward of b images of the configured size */
typedef struct {
    nomul_model *m;
    const nomul_train_config *c;
} img_dry;

static int img_dry_forward(void *ctx, nomul_graph *g, int b, int s, int t)
{
    (void)s;
    (void)t;
    const img_dry *d = ctx;
    int xs[4] = {b, d->c->channels, d->c->image, d->c->image};
    nomul_tensor *xt = nomul_graph_tensor(g, 4, xs, 0);
    return xt && nomul_model_forward(d->m, g, &d->c->ops, xt, NULL) ? 0 : -1;
}

/* Whether g's arena holds the evaluation of a test set of n images in
 * batches of eval_batch_size (the set, if smaller): refused naming the keys
 * and the figures otherwise. *need: the bound of the bytes it needs. */
static int eval_fits(nomul_model *m, nomul_graph *g, const nomul_train_config *c, long n,
                     double *need)
{
    img_dry d = {m, c};
    evalmem_fit fit;
    const long batch = (long)c->eval_batch_size < n ? c->eval_batch_size : n;
    if (evalmem_fit_new(g, 0, img_dry_forward, &d, &fit)) {
        char err[512];
        snprintf(err, sizeof err, "%s", nomul_last_error_message());
        nomul_report(NOMUL_EINVAL, "eval_batch_size %d: cannot measure what evaluating a batch "
                     "needs of the graph's arena (arena_mb %ld): %s", c->eval_batch_size,
                     c->arena_mb, err);
        return -1;
    }
    *need = evalmem_bytes(&fit, batch, 1, 1);
    const double have = (double)nomul_graph_arena_use(g).size, mb = 1024.0 * 1024.0;
    if (*need <= have)
        return 0;
    const double one = evalmem_bytes(&fit, 1, 1, 1), per = evalmem_bytes(&fit, 2, 1, 1) - one;
    const long fits = have < one ? 0 : 1 + (long)floor((have - one) / per);
    nomul_report(NOMUL_EINVAL, "eval_batch_size %d: evaluating a batch of %ld test images needs "
                 "%.1f MB of the graph's arena, and arena_mb is %ld: raise arena_mb to %.0f or "
                 "lower eval_batch_size (%ld images fit)", c->eval_batch_size, batch, *need / mb,
                 c->arena_mb, ceil(*need / mb), fits);
    return -1;
}

int nomul_evaluate_checkpoint(const char *path, const nomul_train_config *c, double *loss,
                              double *acc)
{
    if (nomul_train_config_check(c))
        return -1;
    if (c->task == NOMUL_TASK_TRANSLATION) {
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
        double need;
        if (!train_load_params(f, path, p, np) && !eval_fits(m, g, c, test->n, &need))
            rc = evaluate(m, g, c, test, loss, acc, 0, NULL);
        if (!rc && !isfinite(*loss)) {
            nomul_report(NOMUL_EINVAL, "evaluating '%s' gives a test loss of %g: its weights "
                         "overflow in this arithmetic", path, *loss);
            rc = -1;
        }
    }
    nomul_graph_free(g);
    nomul_model_free(m);
    nomul_image_set_free(test);
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
    if (c->batch_size < t->nranks) {
        nomul_report(NOMUL_EINVAL, "batch_size %d (the global batch) is smaller than the %d "
                     "ranks: each rank needs at least one image of every batch",
                     c->batch_size, t->nranks);
        return -1;
    }
    if (t->nranks > 1 &&
        !(it->xfull = malloc(sizeof(float) * (size_t)c->batch_size * (size_t)c->channels *
                             (size_t)c->image * (size_t)c->image))) {
        nomul_report(NOMUL_ENOMEM, "out of memory");
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
    free(it->xfull);
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
    if (train_sync_buffers(t)) /* the checkpoint's, rank 0's */
        return -1;
    return evaluate(it->model, t->g, t->c, it->test, loss, metric, 0, t);
}

/* Before the first step: the evaluation's batches fit the arena (by the
 * bound from the model's shapes, then by evaluating the first batch). */
static int img_check(trainer *t)
{
    img_task *it = t->td;
    double loss, acc;
    if (eval_fits(it->model, t->g, t->c, it->test->n, &t->eval_need))
        return -1;
    if (evaluate(it->model, t->g, t->c, it->test, &loss, &acc, 1, t) == 0)
        return 0;
    char err[512];
    snprintf(err, sizeof err, "%s", nomul_last_error_message());
    nomul_report(NOMUL_EINVAL, "eval_batch_size %d: evaluating a batch of the test set fails "
                 "(lower eval_batch_size or raise arena_mb %ld): %s", t->c->eval_batch_size,
                 t->c->arena_mb, err);
    return -1;
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
    /* this rank's rows [lo, hi) of the global batch (all of it for one rank) */
    long lo, hi;
    train_shard(t, b, &lo, &hi);
    *items = hi - lo;
    const size_t img = (size_t)c->channels * (size_t)c->image * (size_t)c->image;
    int xs[4] = {(int)(hi - lo), c->channels, c->image, c->image};
    nomul_tensor *xt = nomul_graph_tensor(g, 4, xs, 0);
    if (!xt)
        return NULL;
    /* the global batch is mixed whole (an image's partner may be another
     * rank's), then this rank takes its rows */
    float *xb = t->nranks > 1 ? it->xfull : xt->data;
    memcpy(xb, x, sizeof(float) * img * (size_t)b);
    /* this step's random choices: drop-path and mixing */
    uint64_t rng = nomul_mix64((uint64_t)c->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(st->step + 1)));
    nomul_forward_opts fo = {1, c->drop_path, nomul_mix64(rng), (int)lo, t->nranks > 1 ? b : 0};
    uint64_t mix_rng = nomul_mix64(rng ^ 0x4d4958ull);
    const double lam = train_mix_batch(c, xb, b, &mix_rng);
    if (t->nranks > 1)
        memcpy(xt->data, xb + (size_t)lo * img, sizeof(float) * img * (size_t)(hi - lo));
    nomul_tensor *logits = nomul_model_forward(it->model, g, &c->ops, xt, &fo);
    const nomul_op_cfg *lc = &c->ops.family[NOMUL_CFG_LOSS_FUNCTIONAL];
    /* the global batch's loss, and these rows' part of its gradient */
    nomul_tensor *l = train_cross_entropy(t, g, lc, logits, y + lo, -1, c->label_smoothing);
    if (lam < 1.0) { /* λ·CE(y) + (1 − λ)·CE(y reversed) */
        for (long i = lo; i < hi; i++)
            it->yrev[i - lo] = y[b - 1 - i];
        nomul_tensor *l2 = train_cross_entropy(t, g, lc, logits, it->yrev, -1, c->label_smoothing);
        l = nomul_add(g, nomul_scale(g, lc, l, (float)lam),
                      nomul_scale(g, lc, l2, (float)(1.0 - lam)));
    }
    return l;
}

const train_task image_task = {"images", "test_loss", "test_acc", "test acc", 100.0, 1.0, 4,
                               img_setup, img_start, img_loss, img_evaluate, img_free,
                               img_check};
