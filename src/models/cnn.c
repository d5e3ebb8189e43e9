/*
 * cnn.c — the paper's CNNs on the autodiff graph, sized for small images
 * (CIFAR's 32×32, Fashion-MNIST's 28×28) and ending in global average
 * pooling, so any image size of at least 8 pixels works:
 *
 *   resnet20, resnet110   pre-activation ResNets (He et al. 2016, "Identity
 *                         mappings"): 3 stages of 16/32/64 channels, 3 or 18
 *                         blocks each, BN-ReLU-conv twice per block, a 1×1
 *                         projection where the shape changes
 *   resnext20_4x16        ResNeXt (Xie et al. 2017) for CIFAR: 3 stages of 2
 *                         bottleneck blocks, cardinality 4, width 16 (doubling
 *                         per stage), grouped 3×3 convs, expansion 2
 *   vgg13                 VGG13 without batch norm: 10 convs 3×3 (64 … 512),
 *                         max pooling (ceil mode) after each pair, a linear head
 *   convmixer_256_8       ConvMixer (Trockman & Kolter 2022): a 2×2 patch
 *                         embedding to 256 channels, 8 blocks of a residual
 *                         depthwise 5×5 conv and a pointwise conv, GELU and BN
 *
 * Each architecture is written once, as a walk over its layers that either
 * creates the parameters (build) or runs them in the same order (forward),
 * so the two cannot disagree. Names follow PyTorch's modules (conv1.weight,
 * layer1.0.bn1.running_mean, ...); initialisation is PyTorch's default,
 * U(±1/√fan_in), with unit BN scales and zero shifts.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "models_internal.h"
#include "nomul/conv.h"

typedef enum { RESNET, RESNEXT, VGG, CONVMIXER } cnn_kind;

static const struct {
    const char *name;
    cnn_kind kind;
    int depth; /* blocks per stage (ResNet, ResNeXt), blocks (ConvMixer) */
} named[] = {
    {"resnet20", RESNET, 3},        {"resnet110", RESNET, 18}, {"resnext20_4x16", RESNEXT, 2},
    {"vgg13", VGG, 0},              {"convmixer_256_8", CONVMIXER, 8},
};

typedef struct cnn {
    cnn_kind kind;
    int depth, channels, classes;
    model_params ps; /* grown by the build walk, in its order */
} cnn;

/* One walk over the layers: build creates parameters, forward uses them. */
typedef struct walk {
    cnn *m;
    int build, at;
    uint64_t rng;
    nomul_graph *g;
    const nomul_op_cfgs *cfgs;
    int train;
    int fail;
} walk;

/* Adds the next parameter (U(±bound) if bound > 0, else the constant fill),
 * drawing from the walk's stream in declaration order. */
static void new_param(walk *w, const char *name, int ndim, const int *shape, int decay,
                      int buffer, double bound, float fill)
{
    nomul_tensor *t = model_param_add(&w->m->ps, name, ndim, shape, decay, buffer);
    if (!t) {
        w->fail = 1;
        return;
    }
    if (bound > 0)
        model_fill_uniform(t, &w->rng, bound);
    else
        model_fill_const(t, fill);
}

/* The next parameter of a forward walk. */
static nomul_tensor *next(walk *w) { return w->m->ps.p[w->at++].t; }

static nomul_tensor *conv(walk *w, const char *name, nomul_tensor *x, int cin, int cout, int k,
                          int stride, int pad, int groups, int bias)
{
    char n[64];
    if (w->build) {
        int ws[4] = {cout, cin / groups, k, k}, bs[1] = {cout};
        double bound = 1.0 / sqrt((double)(cin / groups * k * k));
        snprintf(n, sizeof n, "%s.weight", name);
        new_param(w, n, 4, ws, 1, 0, bound, 0);
        if (bias) {
            snprintf(n, sizeof n, "%s.bias", name);
            new_param(w, n, 1, bs, 0, 0, bound, 0);
        }
        return NULL;
    }
    nomul_tensor *wt = next(w), *b = bias ? next(w) : NULL;
    if (!x)
        return NULL;
    nomul_conv2d_desc d = {x->shape[0], cin, x->shape[2], x->shape[3], cout, k, k, stride,
                           stride, pad, pad, 1, 1, groups};
    return nomul_conv2d(w->g, &w->cfgs->family[NOMUL_CFG_CONV], x, wt, b, &d);
}

/* batch norm, and with relu (nomul_batch_norm_relu: one pass, the same bits
 * as the two operations) */
static nomul_tensor *bn_act(walk *w, const char *name, nomul_tensor *x, int c, int with_relu)
{
    char n[64];
    if (w->build) {
        int s[1] = {c};
        static const char *const parts[4] = {"weight", "bias", "running_mean", "running_var"};
        for (int k = 0; k < 4; k++) {
            snprintf(n, sizeof n, "%s.%s", name, parts[k]);
            new_param(w, n, 1, s, 0, k >= 2, 0, k == 0 || k == 3 ? 1.0f : 0.0f);
        }
        return NULL;
    }
    nomul_tensor *gamma = next(w), *beta = next(w), *mean = next(w), *var = next(w);
    return (with_relu ? nomul_batch_norm_relu : nomul_batch_norm)(
        w->g, &w->cfgs->family[NOMUL_CFG_NORM], x, gamma, beta, mean->data, var->data, 1e-5f,
        0.1f, w->train);
}

static nomul_tensor *bn(walk *w, const char *name, nomul_tensor *x, int c)
{
    return bn_act(w, name, x, c, 0);
}

static nomul_tensor *bn_relu(walk *w, const char *name, nomul_tensor *x, int c)
{
    return bn_act(w, name, x, c, 1);
}

static nomul_tensor *linear(walk *w, const char *name, nomul_tensor *x, int in, int out)
{
    char n[64];
    if (w->build) {
        int ws[2] = {out, in}, bs[1] = {out};
        double bound = 1.0 / sqrt((double)in);
        snprintf(n, sizeof n, "%s.weight", name);
        new_param(w, n, 2, ws, 1, 0, bound, 0);
        snprintf(n, sizeof n, "%s.bias", name);
        new_param(w, n, 1, bs, 0, 0, bound, 0);
        return NULL;
    }
    nomul_tensor *wt = next(w), *b = next(w);
    return nomul_linear(w->g, &w->cfgs->family[NOMUL_CFG_LINEAR], x, wt, b);
}

static nomul_tensor *relu(walk *w, nomul_tensor *x) { return w->build ? NULL : nomul_relu(w->g, x); }
static nomul_tensor *gelu(walk *w, nomul_tensor *x)
{
    return w->build ? NULL : nomul_gelu(w->g, &w->cfgs->family[NOMUL_CFG_FUNCTIONAL], x);
}
static nomul_tensor *add(walk *w, nomul_tensor *a, nomul_tensor *b)
{
    return w->build ? NULL : nomul_add(w->g, a, b);
}
static nomul_tensor *pool_head(walk *w, nomul_tensor *x, int c, int classes)
{
    nomul_tensor *h =
        w->build ? NULL : nomul_avg_pool_global(w->g, &w->cfgs->family[NOMUL_CFG_FUNCTIONAL], x);
    return linear(w, w->m->kind == VGG ? "classifier" : "linear", h, c, classes);
}

/* ---- the architectures ---------------------------------------------------------- */

static nomul_tensor *resnet(walk *w, nomul_tensor *x)
{
    cnn *m = w->m;
    char n[64], pre[32];
    int c = 16;
    nomul_tensor *h = conv(w, "conv1", x, m->channels, 16, 3, 1, 1, 1, 0);
    for (int s = 0; s < 3; s++) {
        const int out = 16 << s;
        for (int b = 0; b < m->depth; b++) {
            const int stride = s > 0 && b == 0 ? 2 : 1;
            snprintf(pre, sizeof pre, "layer%d.%d", s + 1, b);
            /* pre-activation: the projection sees BN-ReLU of the input */
            nomul_tensor *a = bn_relu(w, (snprintf(n, sizeof n, "%s.bn1", pre), n), h, c);
            nomul_tensor *r = conv(w, (snprintf(n, sizeof n, "%s.conv1", pre), n), a, c, out, 3,
                                   stride, 1, 1, 0);
            r = bn_relu(w, (snprintf(n, sizeof n, "%s.bn2", pre), n), r, out);
            r = conv(w, (snprintf(n, sizeof n, "%s.conv2", pre), n), r, out, out, 3, 1, 1, 1, 0);
            nomul_tensor *sc = h;
            if (stride != 1 || c != out)
                sc = conv(w, (snprintf(n, sizeof n, "%s.shortcut.0", pre), n), a, c, out, 1,
                          stride, 0, 1, 0);
            h = add(w, r, sc);
            c = out;
        }
    }
    h = bn_relu(w, "bn", h, c);
    return pool_head(w, h, c, m->classes);
}

static nomul_tensor *resnext(walk *w, nomul_tensor *x)
{
    cnn *m = w->m;
    enum { CARD = 4, WIDTH = 16 };
    char n[64], pre[32];
    nomul_tensor *h = bn_relu(w, "bn1", conv(w, "conv1", x, m->channels, 64, 3, 1, 1, 1, 0), 64);
    int c = 64;
    for (int s = 0; s < 3; s++) {
        const int gw = CARD * (WIDTH << s), out = 2 * gw;
        for (int b = 0; b < m->depth; b++) {
            const int stride = s > 0 && b == 0 ? 2 : 1;
            snprintf(pre, sizeof pre, "layer%d.%d", s + 1, b);
#define N(suffix) (snprintf(n, sizeof n, "%s.%s", pre, suffix), n)
            /* one N() per statement: N writes one buffer, and the order in
             * which a call's arguments are evaluated is the compiler's */
            nomul_tensor *r = conv(w, N("conv1"), h, c, gw, 1, 1, 0, 1, 0);
            r = bn_relu(w, N("bn1"), r, gw);
            r = conv(w, N("conv2"), r, gw, gw, 3, stride, 1, CARD, 0);
            r = bn_relu(w, N("bn2"), r, gw);
            r = conv(w, N("conv3"), r, gw, out, 1, 1, 0, 1, 0);
            r = bn(w, N("bn3"), r, out);
            nomul_tensor *sc = h;
            if (stride != 1 || c != out) {
                sc = conv(w, N("shortcut.0"), h, c, out, 1, stride, 0, 1, 0);
                sc = bn(w, N("shortcut.1"), sc, out);
            }
#undef N
            h = relu(w, add(w, r, sc));
            c = out;
        }
    }
    return pool_head(w, h, c, m->classes);
}

static nomul_tensor *vgg(walk *w, nomul_tensor *x)
{
    static const int widths[10] = {64, 64, 128, 128, 256, 256, 512, 512, 512, 512};
    char n[64];
    nomul_tensor *h = x;
    int c = w->m->channels;
    for (int i = 0; i < 10; i++) {
        /* PyTorch's features.N numbering: conv, ReLU, (pool after each pair) */
        snprintf(n, sizeof n, "features.%d", i * 2 + i / 2);
        h = relu(w, conv(w, n, h, c, widths[i], 3, 1, 1, 1, 1));
        c = widths[i];
        if (i % 2 == 1 && !w->build)
            h = nomul_max_pool2d(w->g, h, 2, 2);
    }
    return pool_head(w, h, c, w->m->classes);
}

static nomul_tensor *convmixer(walk *w, nomul_tensor *x)
{
    enum { DIM = 256, K = 5, P = 2 };
    char n[64];
    /* timm's ConvMixer: stem (conv, GELU, BN), blocks of
     * Residual(dwconv, GELU, BN) then pwconv, GELU, BN */
    nomul_tensor *h = bn(w, "stem.2", gelu(w, conv(w, "stem.0", x, w->m->channels, DIM, P, P, 0, 1, 1)), DIM);
    for (int b = 0; b < w->m->depth; b++) {
#define N(suffix) (snprintf(n, sizeof n, "blocks.%d.%s", b, suffix), n)
        nomul_tensor *r = conv(w, N("0.fn.0"), h, DIM, DIM, K, 1, K / 2, DIM, 1);
        r = bn(w, N("0.fn.2"), gelu(w, r), DIM);
        h = add(w, h, r);
        h = conv(w, N("1"), h, DIM, DIM, 1, 1, 0, 1, 1); /* one N() per statement */
        h = bn(w, N("3"), gelu(w, h), DIM);
#undef N
    }
    return pool_head(w, h, DIM, w->m->classes);
}

static nomul_tensor *run(walk *w, nomul_tensor *x)
{
    switch (w->m->kind) {
    case RESNET: return resnet(w, x);
    case RESNEXT: return resnext(w, x);
    case VGG: return vgg(w, x);
    case CONVMIXER: return convmixer(w, x);
    }
    return NULL;
}

/* ---- the registry's view (model.c) ------------------------------------- */

static void cnn_free(void *impl)
{
    cnn *m = impl;
    if (!m)
        return;
    model_params_free(&m->ps);
    free(m);
}

static int cnn_params(void *impl, nomul_param **p)
{
    cnn *m = impl;
    *p = m->ps.p;
    return m->ps.n;
}

static nomul_tensor *cnn_forward(void *impl, nomul_graph *g, const nomul_op_cfgs *cfgs,
                                 nomul_tensor *x, const nomul_forward_opts *o)
{
    cnn *m = impl;
    if (!x || x->ndim != 4 || x->shape[1] != m->channels) {
        nomul_report(NOMUL_EINVAL, "cnn forward: images must be (batch, %d, h, w)", m->channels);
        return NULL;
    }
    walk w = {m, 0, 0, 0, g, cfgs, o->train, 0};
    return run(&w, x);
}

static const model_vtable cnn_vt = {cnn_free, cnn_params, cnn_forward};

int cnn_model_new(const char *name, const nomul_model_data *d, uint64_t seed, void **impl,
                  const model_vtable **vt)
{
    size_t i;
    for (i = 0; i < sizeof named / sizeof named[0]; i++)
        if (!strcmp(name, named[i].name))
            break;
    if (i == sizeof named / sizeof named[0]) {
        nomul_report(NOMUL_EINVAL, "model '%s' is not a CNN", name);
        return -1;
    }
    if (d->image < 8 || d->channels < 1 || d->classes < 2) {
        nomul_report(NOMUL_EINVAL, "model %s wants images of at least 8×8 pixels, not %d×%d",
                     name, d->image, d->image);
        return -1;
    }
    cnn *m = calloc(1, sizeof *m);
    if (!m) {
        nomul_report(NOMUL_ENOMEM, "model %s: out of memory", name);
        return -1;
    }
    m->kind = named[i].kind;
    m->depth = named[i].depth;
    m->channels = d->channels;
    m->classes = d->classes;
    walk w = {m, 1, 0, seed, NULL, NULL, 0, 0};
    run(&w, NULL);
    if (w.fail) {
        cnn_free(m);
        nomul_report(NOMUL_ENOMEM, "model %s: out of memory", name);
        return -1;
    }
    *impl = m;
    *vt = &cnn_vt;
    return 0;
}
