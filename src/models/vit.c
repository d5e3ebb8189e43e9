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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "models_internal.h"
#include "nomul/arith.h"
#include "nomul/conv.h"
#include "nomul/models.h"

enum { PER_BLOCK = 16 };

struct nomul_vit {
    nomul_vit_config c;
    int np;
    nomul_param *p;
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
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (name && !strcmp(name, named[i].name)) {
            *out = named[i].c;
            return 1;
        }
    nomul_report(NOMUL_EINVAL, "model '%s' is not one of %s", name ? name : "(none)",
                 vit_model_names);
    return 0;
}

/* N(0, σ²) truncated to ±2σ, as timm's trunc_normal_(std=σ) with a = −2σ, b = 2σ. */
static float trunc_normal(uint64_t *s, double sigma)
{
    for (;;) {
        double z = nomul_normal01(s);
        if (fabs(z) <= 2.0)
            return (float)(z * sigma);
    }
}

static nomul_param *add(nomul_vit *m, const char *name, int ndim, const int *shape, int decay)
{
    nomul_param *p = &m->p[m->np];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->t = nomul_tensor_alloc(ndim, shape, 1);
    p->decay = decay;
    if (!p->t)
        return NULL;
    m->np++;
    return p;
}

static int fill(nomul_param *p, uint64_t *s, int kind)
{
    if (!p)
        return 0;
    for (long i = 0; i < p->t->n; i++)
        p->t->data[i] = kind == 0 ? 0.0f : kind == 1 ? 1.0f : trunc_normal(s, 0.02);
    return 1;
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
    if (!m || !(m->p = calloc((size_t)(8 + PER_BLOCK * c->depth), sizeof *m->p))) {
        free(m);
        nomul_report(NOMUL_ENOMEM, "nomul_vit_new: out of memory");
        return NULL;
    }
    m->c = *c;
    uint64_t s = seed;
    const int d = c->dim, t = (c->image / c->patch) * (c->image / c->patch) + 1;
    int pw[4] = {d, c->channels, c->patch, c->patch}, vd[1] = {d}, tok[3] = {1, 1, d},
        pos[3] = {1, t, d}, dd[2] = {d, d}, md[2] = {c->mlp, d}, dm[2] = {d, c->mlp},
        vm[1] = {c->mlp}, hd[2] = {c->classes, d}, vc[1] = {c->classes};
    int ok = 1;
    /* the patch embedding as PyTorch's Conv2d default: U(±1/√fan_in) */
    nomul_param *pe = add(m, "patch_embed.proj.weight", 4, pw, 1);
    if ((ok = pe != NULL)) {
        double bound = 1.0 / sqrt((double)(c->channels * c->patch * c->patch));
        for (long i = 0; i < pe->t->n; i++)
            pe->t->data[i] = (float)((2.0 * nomul_uniform01(&s) - 1.0) * bound);
    }
    ok = ok && fill(add(m, "patch_embed.proj.bias", 1, vd, 0), &s, 0);
    ok = ok && fill(add(m, "cls_token", 3, tok, 0), &s, 2);
    ok = ok && fill(add(m, "pos_embed", 3, pos, 0), &s, 2);
    char name[64];
    for (int b = 0; b < c->depth && ok; b++) {
        static const char *mats[] = {"attn.q", "attn.k", "attn.v", "attn.proj"};
#define NAME(suffix) (snprintf(name, sizeof name, "blocks.%d.%s", b, suffix), name)
        ok = ok && fill(add(m, NAME("norm1.weight"), 1, vd, 0), &s, 1);
        ok = ok && fill(add(m, NAME("norm1.bias"), 1, vd, 0), &s, 0);
        for (int k = 0; k < 4 && ok; k++) {
            char w[24], bb[24];
            snprintf(w, sizeof w, "%s.weight", mats[k]);
            snprintf(bb, sizeof bb, "%s.bias", mats[k]);
            ok = ok && fill(add(m, NAME(w), 2, dd, 1), &s, 2);
            ok = ok && fill(add(m, NAME(bb), 1, vd, 0), &s, 0);
        }
        ok = ok && fill(add(m, NAME("norm2.weight"), 1, vd, 0), &s, 1);
        ok = ok && fill(add(m, NAME("norm2.bias"), 1, vd, 0), &s, 0);
        ok = ok && fill(add(m, NAME("mlp.fc1.weight"), 2, md, 1), &s, 2);
        ok = ok && fill(add(m, NAME("mlp.fc1.bias"), 1, vm, 0), &s, 0);
        ok = ok && fill(add(m, NAME("mlp.fc2.weight"), 2, dm, 1), &s, 2);
        ok = ok && fill(add(m, NAME("mlp.fc2.bias"), 1, vd, 0), &s, 0);
#undef NAME
    }
    ok = ok && fill(add(m, "norm.weight", 1, vd, 0), &s, 1);
    ok = ok && fill(add(m, "norm.bias", 1, vd, 0), &s, 0);
    ok = ok && fill(add(m, "head.weight", 2, hd, 1), &s, 2);
    ok = ok && fill(add(m, "head.bias", 1, vc, 0), &s, 0);
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
    for (int i = 0; i < m->np; i++)
        nomul_tensor_free(m->p[i].t);
    free(m->p);
    free(m);
}

int nomul_vit_params(nomul_vit *m, nomul_param **params)
{
    *params = m->p;
    return m->np;
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
                               float rate, uint64_t *rng)
{
    if (!branch || rate <= 0.0f)
        return branch;
    int b = branch->shape[0], ms[3] = {b, 1, 1};
    nomul_tensor *mask = nomul_graph_tensor(g, 3, ms, 0);
    if (!mask)
        return NULL;
    float s = fun->subtype != NOMUL_OP_STANDARD ? nomul_pam_div(1.0f, 1.0f - rate)
                                                : 1.0f / (1.0f - rate);
    for (int i = 0; i < b; i++) {
        /* keep with probability 1 − rate: a uniform in [0, 1) against rate */
        double u = (double)(nomul_splitmix64(rng) >> 11) / 9007199254740992.0;
        mask->data[i] = u >= rate ? s : 0.0f;
    }
    return nomul_mul(g, fun, branch, mask);
}

nomul_tensor *nomul_vit_forward(nomul_vit *m, nomul_graph *g, const nomul_op_cfgs *cfgs,
                                nomul_tensor *x)
{
    nomul_forward_opts eval = {0, 0.0f, 0};
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
    const nomul_op_cfg *fun = &cfgs->family[NOMUL_CFG_FUNCTIONAL];
    const int b = x->shape[0], d = c->dim, side = c->image / c->patch, t = side * side;
    nomul_param *p = m->p;
    nomul_conv2d_desc cd = {b, c->channels, c->image, c->image, d, c->patch, c->patch,
                            c->patch, c->patch, 0, 0, 1, 1, 1};
    nomul_tensor *h = nomul_conv2d(g, conv, x, p[0].t, p[1].t, &cd);
    int s3[3] = {b, d, t};
    h = nomul_transpose(g, nomul_reshape(g, h, 3, s3), 1, 2); /* (b, t, d) */
    int cs[3] = {b, 1, d};
    nomul_tensor *zeros = nomul_graph_tensor(g, 3, cs, 0);
    if (!zeros)
        return NULL;
    memset(zeros->data, 0, sizeof(float) * (size_t)zeros->n);
    nomul_tensor *cls = nomul_add(g, zeros, p[2].t); /* the token for every image */
    h = nomul_add(g, nomul_concat(g, cls, h, 1), p[3].t);
    uint64_t rng = o->seed;
    for (int k = 0; k < c->depth; k++) {
        nomul_param *q = p + 4 + PER_BLOCK * k;
        /* timm: rates linear from 0 (first block) to drop_path (last) */
        float rate = o->train && c->depth > 1 ? o->drop_path * (float)k / (float)(c->depth - 1)
                     : o->train ? o->drop_path : 0.0f;
        nomul_tensor *a = nomul_layer_norm(g, norm, h, q[0].t, q[1].t, 1e-6f);
        nomul_tensor *att =
            nomul_attention(g, cfgs, linear3(g, lin, a, q[2].t, q[3].t),
                            linear3(g, lin, a, q[4].t, q[5].t), linear3(g, lin, a, q[6].t, q[7].t),
                            c->heads, NULL);
        h = nomul_add(g, h, drop_path(g, fun, linear3(g, lin, att, q[8].t, q[9].t), rate, &rng));
        a = nomul_layer_norm(g, norm, h, q[10].t, q[11].t, 1e-6f);
        a = nomul_gelu(g, fun, linear3(g, lin, a, q[12].t, q[13].t));
        h = nomul_add(g, h, drop_path(g, fun, linear3(g, lin, a, q[14].t, q[15].t), rate, &rng));
    }
    nomul_param *f = p + 4 + PER_BLOCK * c->depth;
    h = nomul_layer_norm(g, norm, h, f[0].t, f[1].t, 1e-6f);
    int s2[2] = {b, d};
    h = nomul_reshape(g, nomul_narrow(g, h, 1, 0, 1), 2, s2);
    return nomul_linear(g, lin, h, f[2].t, f[3].t);
}

/* ---- the registry's view (model.c) ------------------------------------- */

const char vit_model_names[] = "vit_fmnist, vit_fmnist_p4, vit_fmnist_tiny, deit_tiny_patch16_224";

static void vt_free(void *impl) { nomul_vit_free(impl); }
static int vt_params(void *impl, nomul_param **p) { return nomul_vit_params(impl, p); }
static nomul_tensor *vt_forward(void *impl, nomul_graph *g, const nomul_op_cfgs *cfgs,
                                nomul_tensor *x, const nomul_forward_opts *o)
{
    return nomul_vit_forward_opts(impl, g, cfgs, x, o);
}
static const model_vtable vit_vt = {vt_free, vt_params, vt_forward};

int vit_model_new(const char *name, int image, int channels, int classes, uint64_t seed,
                  void **impl, const model_vtable **vt)
{
    nomul_vit_config c;
    size_t i;
    for (i = 0; i < sizeof named / sizeof named[0]; i++)
        if (!strcmp(name, named[i].name))
            break;
    if (i == sizeof named / sizeof named[0])
        return 0;
    c = named[i].c;
    if (image % c.patch) {
        nomul_report(NOMUL_EINVAL, "model %s: the image size %d is not a multiple of its "
                     "patch size %d", name, image, c.patch);
        return -1;
    }
    c.image = image;
    c.channels = channels;
    c.classes = classes;
    if (!(*impl = nomul_vit_new(&c, seed)))
        return -1;
    *vt = &vit_vt;
    return 1;
}
