/*
 * audit.c — one training step of the configured model under the operation
 * counters (nomul/train.h): what `nomul audit` reports.
 *
 * The step is the trainer's: the model from the registry (nomul/models.h),
 * a training-mode forward (dropout, drop-path), the label-smoothed
 * cross-entropy, backward, gradient clipping if configured, and the
 * configured optimizer with its decay split, on one batch of the configured
 * shape. The batch is random; what the counters see depends on the shapes
 * only, except for the choices the trainer draws per batch: mixup and
 * cutmix (whether and how a batch is mixed) are left out, and a translation
 * batch's lengths are fixed (nomul/train.h).
 */
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "nomul/audit.h"
#include "nomul/autodiff.h"
#include "nomul/models.h"
#include "nomul/optim.h"
#include "nomul/text.h"
#include "nomul/train.h"

/* The model's data sizes: the image configuration, or the vocabularies of
 * the configured dictionaries. */
static int model_data(const nomul_train_config *c, nomul_model_kind kind, nomul_model_data *d)
{
    memset(d, 0, sizeof *d);
    if (kind == NOMUL_MODEL_IMAGE_CLASSIFIER) {
        d->image = c->image;
        d->channels = c->channels;
        d->classes = c->classes;
        return 0;
    }
    nomul_vocab *sv = nomul_vocab_load(c->src_dict), *tv = sv ? nomul_vocab_load(c->tgt_dict) : NULL;
    if (tv) {
        d->vocab_src = nomul_vocab_size(sv);
        d->vocab_tgt = nomul_vocab_size(tv);
    }
    nomul_vocab_free(sv);
    nomul_vocab_free(tv);
    return tv ? 0 : -1;
}

/* The step's loss on a random batch, built on g. */
static nomul_tensor *audit_loss(const nomul_train_config *c, nomul_model *m, nomul_graph *g,
                                int *ids)
{
    uint64_t rng = nomul_mix64((uint64_t)c->seed ^ 0x41554449ull);
    nomul_forward_opts fo = {1, c->drop_path, nomul_mix64(rng), 0, 0};
    const nomul_op_cfg *lc = &c->ops.family[NOMUL_CFG_LOSS_FUNCTIONAL];
    nomul_seq2seq *s2s = nomul_model_seq2seq(m);
    if (!s2s) { /* images N(0, 1) (normalized pixels), labels 0, 1, ... */
        const int b = c->batch_size, xs[4] = {b, c->channels, c->image, c->image};
        nomul_tensor *x = nomul_graph_tensor(g, 4, xs, 0);
        if (!x)
            return NULL;
        for (long i = 0; i < x->n; i++)
            x->data[i] = (float)nomul_normal01(&rng);
        for (int i = 0; i < b; i++)
            ids[i] = i % c->classes;
        nomul_tensor *logits = nomul_model_forward(m, g, &c->ops, x, &fo);
        return nomul_cross_entropy(g, lc, logits, ids, -1, c->label_smoothing);
    }
    /* sources, target inputs (bos, then the targets shifted right) and
     * targets (ending with eos): ordinary tokens, no padding */
    const nomul_seq2seq_config *sc = nomul_seq2seq_get_config(s2s);
    const int t = NOMUL_AUDIT_PAIR_TOKENS, b = c->max_tokens / t > 1 ? (int)(c->max_tokens / t) : 1;
    int *src = ids, *tin = src + (size_t)b * t, *tout = tin + (size_t)b * t;
    for (int i = 0; i < b; i++)
        for (int j = 0; j < t; j++) {
            src[i * t + j] = 4 + (int)(nomul_splitmix64(&rng) % (uint64_t)(sc->vocab_src - 4));
            tout[i * t + j] = j == t - 1 ? sc->eos
                              : 4 + (int)(nomul_splitmix64(&rng) % (uint64_t)(sc->vocab_tgt - 4));
            tin[i * t + j] = j == 0 ? sc->bos : tout[i * t + j - 1];
        }
    nomul_tensor *logits = nomul_seq2seq_forward(s2s, g, &c->ops, src, b, t, tin, t, &fo);
    return nomul_cross_entropy(g, lc, logits, tout, NOMUL_PAD, c->label_smoothing);
}

/* The configured optimizer's update of every trainable tensor, as the
 * trainer's first step (lr: the configured peak); 0, or -1 (reported). */
static int audit_optimizer(const nomul_train_config *c, nomul_param *p, int np, float **mom,
                            float **vel)
{
    const nomul_op_cfg *oc = &c->ops.family[NOMUL_CFG_OPT_FUNCTIONAL];
    if (c->optimizer == NOMUL_OPTIMIZER_ADAMW) {
        nomul_adamw o;
        nomul_adamw_init(&o, c->lr, c->weight_decay, oc);
        o.beta1 = c->beta1;
        o.beta2 = c->beta2;
        o.eps = c->eps;
        o.moments = c->adam_moments;
        nomul_adamw_begin_step(&o);
        return nomul_adamw_update_params(&o, np, p, mom, vel);
    }
    nomul_sgd o;
    nomul_sgd_init(&o, c->lr, c->momentum, c->weight_decay, oc);
    return nomul_sgd_update_params(&o, np, p, mom);
}

int nomul_audit_step(const nomul_train_config *c, nomul_op_counts *out)
{
    if (nomul_train_config_check(c))
        return -1;
    const nomul_model_info *info = nomul_model_find(c->model);
    if (!info)
        return -1;
    const int translation = c->task == NOMUL_TASK_TRANSLATION;
    if (translation != (info->kind == NOMUL_MODEL_SEQ2SEQ)) {
        nomul_report(NOMUL_EINVAL, "model '%s' is a %s; task %s trains %s", c->model,
                     nomul_model_kind_name(info->kind), nomul_train_task_name(c->task),
                     translation ? "seq2seq models" : "image classifiers");
        return -1;
    }
    nomul_model_data d;
    if (model_data(c, info->kind, &d))
        return -1;
    nomul_model *m = nomul_model_create(c->model, &d, (uint64_t)c->seed);
    if (!m)
        return -1;
    nomul_param *p;
    const int np = nomul_model_params(m, &p);
    float **mom = calloc((size_t)np, sizeof *mom), **vel = calloc((size_t)np, sizeof *vel);
    float **grads = calloc((size_t)np, sizeof *grads);
    size_t *sizes = calloc((size_t)np, sizeof *sizes);
    /* labels (images), or sources, target inputs and targets (translation) */
    int *ids = malloc(sizeof(int) * (translation ? 3 * (size_t)(c->max_tokens + NOMUL_AUDIT_PAIR_TOKENS)
                                                 : (size_t)c->batch_size));
    int ok = mom && vel && grads && sizes && ids, ntrain = 0;
    for (int i = 0; i < np && ok; i++) {
        if (!p[i].buffer) {
            sizes[ntrain] = (size_t)p[i].t->n;
            grads[ntrain++] = p[i].t->grad;
        }
        mom[i] = calloc((size_t)p[i].t->n, sizeof(float));
        vel[i] = calloc((size_t)p[i].t->n, sizeof(float));
        ok = mom[i] && vel[i];
    }
    nomul_graph *g = ok ? nomul_graph_new((size_t)c->arena_mb << 20) : NULL;
    int rc = -1;
    if (g) {
        nomul_counts_reset();
        nomul_counts_enable(1);
        nomul_tensor *loss = audit_loss(c, m, g, ids);
        if (loss && !nomul_backward(g, loss)) {
            if (c->clip_grad > 0.0f)
                nomul_clip_grad_norm((size_t)ntrain, grads, sizes, c->clip_grad,
                                     &c->ops.family[NOMUL_CFG_OPT_FUNCTIONAL]);
            rc = audit_optimizer(c, p, np, mom, vel);
        }
        nomul_counts_enable(0);
        nomul_counts_get(out);
    }
    nomul_graph_free(g);
    for (int i = 0; mom && vel && i < np; i++) {
        free(mom[i]);
        free(vel[i]);
    }
    free(mom);
    free(vel);
    free(grads);
    free(sizes);
    free(ids);
    nomul_model_free(m);
    if (rc != 0 && nomul_last_error() == NOMUL_OK)
        nomul_report(NOMUL_ENOMEM, "nomul_audit_step: out of memory");
    return rc;
}
