/*
 * vit.c — ViT / DeiT on the autodiff graph.
 *
 * x (b, c, H, W) → conv patch embedding (b, d, H/p, W/p) → tokens (b, T, d)
 * → [class token; tokens] + positions → depth × pre-norm blocks
 *   (x += proj(attention(q, k, v of LN(x))), x += fc2(GELU(fc1(LN(x)))))
 * → LN → the class token's row → head (b, classes).
 * Parameter names follow timm's VisionTransformer (patch_embed.proj.weight,
 * blocks.0.attn.qkv... except that q, k and v are three matrices here:
 * blocks.N.attn.q.weight etc., which a loader splits from timm's qkv).
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "models_internal.h"
#include "nomul/arith.h"
#include "nomul/conv.h"
#include "nomul/models.h"

/* One block's parameters (blocks.N.*), in checkpoint order. */
typedef struct vit_block {
    nomul_tensor *norm1_w, *norm1_b;
    nomul_tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *proj_w, *proj_b;
    nomul_tensor *norm2_w, *norm2_b;
    nomul_tensor *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} vit_block;

struct nomul_vit {
    nomul_vit_config c;
    model_params ps; /* every tensor below, in checkpoint order */
    nomul_tensor *patch_w, *patch_b, *cls_token, *pos_embed;
    vit_block *blocks; /* depth of them */
    nomul_tensor *norm_w, *norm_b, *head_w, *head_b;
};

static const struct {
    const char *name;
    nomul_vit_config c;
} named[] = {
    {"vit_fmnist", {28, 1, 7, 64, 4, 4, 128, 10}},
    {"vit_fmnist_p4", {28, 1, 4, 64, 4, 4, 128, 10}},
    {"vit_fmnist_tiny", {28, 1, 4, 32, 2, 2, 64, 10}},
    {"deit_tiny_patch16_224", {224, 3, 16, 192, 12, 3, 768, 1000}},
};

int nomul_vit_config_named(const char *name, nomul_vit_config *out)
{
    char names[256];
    size_t at = 0;
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        if (name && !strcmp(name, named[i].name)) {
            *out = named[i].c;
            return 1;
        }
        at += (size_t)snprintf(names + at, sizeof names - at, "%s%s", i ? ", " : "",
                               named[i].name);
    }
    nomul_report(NOMUL_EINVAL, "model '%s' is not one of %s", name ? name : "(none)", names);
    return 0;
}

/* ---- the parameters, declared once --------------------------------------------- */

/* Shapes, from the configuration: d the width, t the tokens, m the MLP. */
typedef enum {
    SH_PATCH, /* (d, channels, patch, patch) */
    SH_D,     /* (d) */
    SH_TOKEN, /* (1, 1, d) */
    SH_POS,   /* (1, t, d) */
    SH_DD,    /* (d, d) */
    SH_MD,    /* (m, d) */
    SH_DM,    /* (d, m) */
    SH_M,     /* (m) */
    SH_HEAD,  /* (classes, d) */
    SH_C      /* (classes) */
} vit_shape;

/* timm's initialisation: PyTorch's Conv2d default U(±1/√fan_in) for the
 * patch embedding, N(0, 0.02²) truncated to ±2σ for matrices, the class
 * token and the positions, zero biases, unit norm gains. */
typedef enum { INIT_ZERO, INIT_ONE, INIT_TRUNC_NORMAL, INIT_CONV_UNIFORM } vit_init;

typedef struct param_decl {
    const char *name;
    size_t field; /* offset of the nomul_tensor * it fills */
    vit_shape shape;
    int decay;
    vit_init init;
} param_decl;

#define TOP(f) offsetof(struct nomul_vit, f)
#define BLK(f) offsetof(vit_block, f)
static const param_decl stem[] = {
    {"patch_embed.proj.weight", TOP(patch_w), SH_PATCH, 1, INIT_CONV_UNIFORM},
    {"patch_embed.proj.bias", TOP(patch_b), SH_D, 0, INIT_ZERO},
    {"cls_token", TOP(cls_token), SH_TOKEN, 0, INIT_TRUNC_NORMAL},
    {"pos_embed", TOP(pos_embed), SH_POS, 0, INIT_TRUNC_NORMAL},
};
static const param_decl block[] = { /* names after "blocks.N." */
    {"norm1.weight", BLK(norm1_w), SH_D, 0, INIT_ONE},
    {"norm1.bias", BLK(norm1_b), SH_D, 0, INIT_ZERO},
    {"attn.q.weight", BLK(q_w), SH_DD, 1, INIT_TRUNC_NORMAL},
    {"attn.q.bias", BLK(q_b), SH_D, 0, INIT_ZERO},
    {"attn.k.weight", BLK(k_w), SH_DD, 1, INIT_TRUNC_NORMAL},
    {"attn.k.bias", BLK(k_b), SH_D, 0, INIT_ZERO},
    {"attn.v.weight", BLK(v_w), SH_DD, 1, INIT_TRUNC_NORMAL},
    {"attn.v.bias", BLK(v_b), SH_D, 0, INIT_ZERO},
    {"attn.proj.weight", BLK(proj_w), SH_DD, 1, INIT_TRUNC_NORMAL},
    {"attn.proj.bias", BLK(proj_b), SH_D, 0, INIT_ZERO},
    {"norm2.weight", BLK(norm2_w), SH_D, 0, INIT_ONE},
    {"norm2.bias", BLK(norm2_b), SH_D, 0, INIT_ZERO},
    {"mlp.fc1.weight", BLK(fc1_w), SH_MD, 1, INIT_TRUNC_NORMAL},
    {"mlp.fc1.bias", BLK(fc1_b), SH_M, 0, INIT_ZERO},
    {"mlp.fc2.weight", BLK(fc2_w), SH_DM, 1, INIT_TRUNC_NORMAL},
    {"mlp.fc2.bias", BLK(fc2_b), SH_D, 0, INIT_ZERO},
};
static const param_decl final[] = {
    {"norm.weight", TOP(norm_w), SH_D, 0, INIT_ONE},
    {"norm.bias", TOP(norm_b), SH_D, 0, INIT_ZERO},
    {"head.weight", TOP(head_w), SH_HEAD, 1, INIT_TRUNC_NORMAL},
    {"head.bias", TOP(head_b), SH_C, 0, INIT_ZERO},
};
#undef TOP
#undef BLK
enum { NSTEM = sizeof stem / sizeof stem[0], NBLOCK = sizeof block / sizeof block[0],
       NFINAL = sizeof final / sizeof final[0] };

/* N(0, σ²) truncated to ±2σ, as timm's trunc_normal_(std=σ) with a = −2σ, b = 2σ. */
static float trunc_normal(uint64_t *s, double sigma)
{
    for (;;) {
        double z = nomul_normal01(s);
        if (fabs(z) <= 2.0)
            return (float)(z * sigma);
    }
}

static int shape_of(const nomul_vit_config *c, vit_shape sh, int *shape)
{
    const int d = c->dim, t = (c->image / c->patch) * (c->image / c->patch) + 1;
    switch (sh) {
    case SH_PATCH: shape[0] = d, shape[1] = c->channels, shape[2] = shape[3] = c->patch; return 4;
    case SH_D: shape[0] = d; return 1;
    case SH_TOKEN: shape[0] = shape[1] = 1, shape[2] = d; return 3;
    case SH_POS: shape[0] = 1, shape[1] = t, shape[2] = d; return 3;
    case SH_DD: shape[0] = shape[1] = d; return 2;
    case SH_MD: shape[0] = c->mlp, shape[1] = d; return 2;
    case SH_DM: shape[0] = d, shape[1] = c->mlp; return 2;
    case SH_M: shape[0] = c->mlp; return 1;
    case SH_HEAD: shape[0] = c->classes, shape[1] = d; return 2;
    case SH_C: shape[0] = c->classes; return 1;
    }
    return 0;
}

/* Adds and initialises the declared tensors in order, each into its field
 * of `into`, named prefix + name. 0, or -1 when out of memory. */
static int declare(nomul_vit *m, void *into, const param_decl *decl, int n, const char *prefix,
                   uint64_t *rng)
{
    for (int i = 0; i < n; i++) {
        char name[64];
        int shape[4];
        snprintf(name, sizeof name, "%s%s", prefix, decl[i].name);
        nomul_tensor *t = model_param_add(&m->ps, name, shape_of(&m->c, decl[i].shape, shape),
                                          shape, decl[i].decay, 0);
        if (!t)
            return -1;
        *(nomul_tensor **)((char *)into + decl[i].field) = t;
        switch (decl[i].init) {
        case INIT_ZERO: model_fill_const(t, 0.0f); break;
        case INIT_ONE: model_fill_const(t, 1.0f); break;
        case INIT_TRUNC_NORMAL:
            for (long k = 0; k < t->n; k++)
                t->data[k] = trunc_normal(rng, 0.02);
            break;
        case INIT_CONV_UNIFORM: model_fill_uniform(t, rng, 1.0 / sqrt((double)(t->n / shape[0])));
        }
    }
    return 0;
}

nomul_vit *nomul_vit_new(const nomul_vit_config *c, uint64_t seed)
{
    if (!c || c->image < 1 || c->channels < 1 || c->patch < 1 || c->image % c->patch ||
        c->dim < 1 || c->depth < 0 || c->heads < 1 || c->dim % c->heads || c->mlp < 1 ||
        c->classes < 2) {
        nomul_report(NOMUL_EINVAL, "nomul_vit_new: want an image size divisible by the patch, "
                     "a width divisible by the heads, an MLP width and at least 2 classes");
        return NULL;
    }
    nomul_vit *m = calloc(1, sizeof *m);
    if (!m || model_params_init(&m->ps, NSTEM + NBLOCK * c->depth + NFINAL) ||
        !(m->blocks = calloc((size_t)(c->depth > 0 ? c->depth : 1), sizeof *m->blocks))) {
        nomul_vit_free(m);
        nomul_report(NOMUL_ENOMEM, "nomul_vit_new: out of memory");
        return NULL;
    }
    m->c = *c;
    uint64_t s = seed;
    int ok = !declare(m, m, stem, NSTEM, "", &s);
    for (int b = 0; b < c->depth && ok; b++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "blocks.%d.", b);
        ok = !declare(m, &m->blocks[b], block, NBLOCK, prefix, &s);
    }
    ok = ok && !declare(m, m, final, NFINAL, "", &s);
    if (!ok) {
        nomul_vit_free(m);
        nomul_report(NOMUL_ENOMEM, "nomul_vit_new: out of memory");
        return NULL;
    }
    return m;
}

void nomul_vit_free(nomul_vit *m)
{
    if (!m)
        return;
    model_params_free(&m->ps);
    free(m->blocks);
    free(m);
}

int nomul_vit_params(nomul_vit *m, nomul_param **params)
{
    *params = m->ps.p;
    return m->ps.n;
}

/* A linear layer on (b, t, in) as (b·t, in) → (b, t, out). */
static nomul_tensor *linear3(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                             nomul_tensor *w, nomul_tensor *bias)
{
    if (!x)
        return NULL;
    int b = x->shape[0], t = x->shape[1], s2[2] = {b * t, x->shape[2]};
    nomul_tensor *y = nomul_linear(g, cfg, nomul_reshape(g, x, 2, s2), w, bias);
    int s3[3] = {b, t, w->shape[0]};
    return y ? nomul_reshape(g, y, 3, s3) : NULL;
}

/* Stochastic depth (timm's DropPath): during training each image's residual
 * branch is dropped with probability rate, kept ones scaled by 1/(1 − rate)
 * (a PAD and PAMs when functional_cfg is piecewise affine). */
static nomul_tensor *drop_path(nomul_graph *g, const nomul_op_cfg *fun, nomul_tensor *branch,
                               float rate, uint64_t *rng, const nomul_forward_opts *o)
{
    if (!branch || rate <= 0.0f)
        return branch;
    int b = branch->shape[0], ms[3] = {b, 1, 1};
    /* row i draws the global batch's row offset + i: a splitmix64 stream is a
     * counter, so skipping k draws adds k of its increments */
    const int offset = o->batch_total > 0 ? o->batch_offset : 0;
    const int total = o->batch_total > 0 ? o->batch_total : b;
    uint64_t state = *rng + NOMUL_SPLITMIX_GAMMA * (uint64_t)offset;
    *rng += NOMUL_SPLITMIX_GAMMA * (uint64_t)total;
    nomul_tensor *mask = nomul_graph_tensor(g, 3, ms, 0);
    if (!mask)
        return NULL;
    float s = nomul_op_is_pa(fun) ? nomul_pa_div(1.0f, 1.0f - rate)
                                                : 1.0f / (1.0f - rate);
    for (int i = 0; i < b; i++) {
        /* keep with probability 1 − rate: a uniform in [0, 1) against rate */
        double u = (double)(nomul_splitmix64(&state) >> 11) / 9007199254740992.0;
        mask->data[i] = u >= rate ? s : 0.0f;
    }
    return nomul_mul(g, fun, branch, mask);
}

nomul_tensor *nomul_vit_forward(nomul_vit *m, nomul_graph *g, const nomul_op_cfgs *cfgs,
                                nomul_tensor *x)
{
    nomul_forward_opts eval = {0, 0.0f, 0, 0, 0};
    return nomul_vit_forward_opts(m, g, cfgs, x, &eval);
}

nomul_tensor *nomul_vit_forward_opts(nomul_vit *m, nomul_graph *g, const nomul_op_cfgs *cfgs,
                                     nomul_tensor *x, const nomul_forward_opts *o)
{
    const nomul_vit_config *c = &m->c;
    if (!x || x->ndim != 4 || x->shape[1] != c->channels || x->shape[2] != c->image ||
        x->shape[3] != c->image) {
        nomul_report(NOMUL_EINVAL, "nomul_vit_forward: images must be (batch, %d, %d, %d)",
                     c->channels, c->image, c->image);
        return NULL;
    }
    const nomul_op_cfg *lin = &cfgs->family[NOMUL_CFG_LINEAR];
    const nomul_op_cfg *conv = &cfgs->family[NOMUL_CFG_CONV];
    const nomul_op_cfg *norm = &cfgs->family[NOMUL_CFG_NORM];
    const nomul_op_cfg *bmm = &cfgs->family[NOMUL_CFG_BMM];
    const nomul_op_cfg *fun = &cfgs->family[NOMUL_CFG_FUNCTIONAL];
    const int b = x->shape[0], d = c->dim, side = c->image / c->patch, t = side * side;
    nomul_conv2d_desc cd = {b, c->channels, c->image, c->image, d, c->patch, c->patch,
                            c->patch, c->patch, 0, 0, 1, 1, 1};
    nomul_tensor *h = nomul_conv2d(g, conv, x, m->patch_w, m->patch_b, &cd);
    int s3[3] = {b, d, t};
    h = nomul_transpose(g, nomul_reshape(g, h, 3, s3), 1, 2); /* (b, t, d) */
    int cs[3] = {b, 1, d};
    nomul_tensor *zeros = nomul_graph_tensor(g, 3, cs, 0);
    if (!zeros)
        return NULL;
    memset(zeros->data, 0, sizeof(float) * (size_t)zeros->n);
    nomul_tensor *cls = nomul_add(g, zeros, m->cls_token); /* the token for every image */
    h = nomul_add(g, nomul_concat(g, cls, h, 1), m->pos_embed);
    uint64_t rng = o->seed;
    for (int k = 0; k < c->depth; k++) {
        const vit_block *q = &m->blocks[k];
        /* timm: rates linear from 0 (first block) to drop_path (last) */
        float rate = o->train && c->depth > 1 ? o->drop_path * (float)k / (float)(c->depth - 1)
                     : o->train ? o->drop_path : 0.0f;
        nomul_tensor *a = nomul_layer_norm(g, norm, h, q->norm1_w, q->norm1_b, 1e-6f);
        /* v, k, then q: a's gradient sums theirs in the reverse order, and a
         * float sum depends on its order (as arguments of nomul_attention the
         * order was the compiler's: GCC's v, k, q, clang's q, k, v) */
        nomul_tensor *vt = linear3(g, lin, a, q->v_w, q->v_b);
        nomul_tensor *kt = linear3(g, lin, a, q->k_w, q->k_b);
        nomul_tensor *qt = linear3(g, lin, a, q->q_w, q->q_b);
        nomul_tensor *att = nomul_attention(g, bmm, fun, qt, kt, vt, c->heads, NULL);
        h = nomul_add(g, h, drop_path(g, fun, linear3(g, lin, att, q->proj_w, q->proj_b), rate,
                                      &rng, o));
        a = nomul_layer_norm(g, norm, h, q->norm2_w, q->norm2_b, 1e-6f);
        a = nomul_gelu(g, fun, linear3(g, lin, a, q->fc1_w, q->fc1_b));
        h = nomul_add(g, h, drop_path(g, fun, linear3(g, lin, a, q->fc2_w, q->fc2_b), rate, &rng, o));
    }
    h = nomul_layer_norm(g, norm, h, m->norm_w, m->norm_b, 1e-6f);
    int s2[2] = {b, d};
    h = nomul_reshape(g, nomul_narrow(g, h, 1, 0, 1), 2, s2);
    return nomul_linear(g, lin, h, m->head_w, m->head_b);
}

/* ---- the registry's view (model.c) ------------------------------------- */

static void vt_free(void *impl) { nomul_vit_free(impl); }
static int vt_params(void *impl, nomul_param **p) { return nomul_vit_params(impl, p); }
static nomul_tensor *vt_forward(void *impl, nomul_graph *g, const nomul_op_cfgs *cfgs,
                                nomul_tensor *x, const nomul_forward_opts *o)
{
    return nomul_vit_forward_opts(impl, g, cfgs, x, o);
}
static const model_vtable vit_vt = {vt_free, vt_params, vt_forward};

int vit_model_new(const char *name, const nomul_model_data *d, uint64_t seed, void **impl,
                  const model_vtable **vt)
{
    nomul_vit_config c;
    if (!nomul_vit_config_named(name, &c))
        return -1;
    if (d->image < 1 || d->channels < 1 || d->classes < 2 || d->image % c.patch) {
        nomul_report(NOMUL_EINVAL, "model %s: the image size %d is not a multiple of its "
                     "patch size %d", name, d->image, c.patch);
        return -1;
    }
    c.image = d->image;
    c.channels = d->channels;
    c.classes = d->classes;
    if (!(*impl = nomul_vit_new(&c, seed)))
        return -1;
    *vt = &vit_vt;
    return 0;
}
