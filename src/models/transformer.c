/*
 * transformer.c — fairseq's transformer encoder-decoder (post-norm, as
 * `transformer_iwslt_de_en`) on the autodiff graph, and greedy and beam
 * search on it (nomul/models.h).
 *
 * Embeddings are scaled by √d (a PAM when functional_cfg is piecewise
 * affine) and added to sinusoidal positions (fairseq's table, positions
 * counted from 0 here); each layer is x = LN(x + dropout(sublayer(x))) with
 * self-attention (key-padding mask in the encoder, causal mask in the
 * decoder), encoder-decoder attention (the source's key-padding mask) and an
 * FFN (ReLU, fairseq's default activation_fn, or GELU). The output projection is the decoder's embedding table when
 * shared. Parameter names are fairseq's (encoder.layers.0.self_attn.q_proj
 * .weight, decoder.layers.0.encoder_attn_layer_norm.bias, ...).
 *
 * Decoding runs the decoder over the whole prefix at every step (no cache):
 * quadratic in the output length, which sentence lengths keep cheap.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "models_internal.h"
#include "nomul/arith.h"
#include "nomul/models.h"

static const struct {
    const char *name;
    int dim, ffn, heads, enc, dec;
    float dropout;
} named[] = {
    {"transformer_iwslt_de_en", 512, 1024, 4, 6, 6, 0.3f},
    {"transformer_small", 256, 512, 4, 3, 3, 0.2f},
    {"transformer_mini", 128, 512, 4, 3, 3, 0.1f}, /* experiments/lohelp on 2 cores */
    {"transformer_tiny", 64, 128, 4, 2, 2, 0.1f},
};

/* An attention sublayer's projections (*_attn.{q,k,v,out}_proj.{weight,bias}). */
typedef struct attn_params {
    nomul_tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *out_w, *out_b;
} attn_params;

/* A layer norm's gain and shift (*_layer_norm.{weight,bias}). */
typedef struct norm_params {
    nomul_tensor *w, *b;
} norm_params;

/* The FFN (fc1.{weight,bias}, fc2.{weight,bias}). */
typedef struct ffn_params {
    nomul_tensor *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} ffn_params;

/* encoder.layers.N.*, in checkpoint order */
typedef struct enc_layer {
    attn_params self_attn;
    norm_params self_attn_ln;
    ffn_params ffn;
    norm_params final_ln;
} enc_layer;

/* decoder.layers.N.*, in checkpoint order */
typedef struct dec_layer {
    attn_params self_attn;
    norm_params self_attn_ln;
    attn_params encoder_attn;
    norm_params encoder_attn_ln;
    ffn_params ffn;
    norm_params final_ln;
} dec_layer;

struct nomul_seq2seq {
    nomul_seq2seq_config c;
    model_params ps; /* every tensor below, in checkpoint order */
    nomul_tensor *enc_embed, *dec_embed;
    enc_layer *enc; /* enc_layers of them */
    dec_layer *dec; /* dec_layers of them */
    nomul_tensor *out_proj; /* dec_embed when shared */
    float *pos;             /* (max_positions, dim) */
};

int nomul_seq2seq_config_named(const char *name, int vocab_src, int vocab_tgt,
                               nomul_seq2seq_config *c)
{
    const nomul_model_info *info = nomul_model_find(name);
    if (!info)
        return 0;
    if (info->kind != NOMUL_MODEL_SEQ2SEQ) {
        nomul_report(NOMUL_EINVAL, "model '%s' is an %s, not a seq2seq model (task image "
                     "trains it)", name, nomul_model_kind_name(info->kind));
        return 0;
    }
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (name && !strcmp(name, named[i].name)) {
            memset(c, 0, sizeof *c);
            c->vocab_src = vocab_src;
            c->vocab_tgt = vocab_tgt;
            c->dim = named[i].dim;
            c->ffn = named[i].ffn;
            c->heads = named[i].heads;
            c->enc_layers = named[i].enc;
            c->dec_layers = named[i].dec;
            c->dropout = named[i].dropout;
            c->share_dec_embed = 1;
            c->max_positions = 1024;
            c->pad = 1; /* fairseq's dictionary: <s>=0 <pad>=1 </s>=2 <unk>=3 */
            c->bos = 0;
            c->eos = 2;
            return 1;
        }
    nomul_report(NOMUL_EINVAL, "model '%s' has no transformer sizes", name);
    return 0;
}

/* ---- the parameters, declared once --------------------------------------------- */

/* Shapes, from the configuration: d the width, f the FFN's. */
typedef enum {
    SH_EMBED_SRC, /* (vocab_src, d) */
    SH_EMBED_TGT, /* (vocab_tgt, d) */
    SH_DD,        /* (d, d) */
    SH_FD,        /* (f, d) */
    SH_DF,        /* (d, f) */
    SH_D,         /* (d) */
    SH_F          /* (f) */
} s2s_shape;

/* fairseq's initialisation: zero biases, unit norm gains, Xavier-uniform
 * matrices, embeddings N(0, 1/d). */
typedef enum { INIT_ZERO, INIT_ONE, INIT_XAVIER, INIT_EMBED } s2s_init;

typedef struct param_decl {
    const char *name;
    size_t field; /* offset of the nomul_tensor * it fills */
    s2s_shape shape;
    int decay;
    s2s_init init;
} param_decl;

#define ATTN(T, f, part)                                                                         \
    {part ".q_proj.weight", offsetof(T, f.q_w), SH_DD, 1, INIT_XAVIER},                          \
    {part ".q_proj.bias", offsetof(T, f.q_b), SH_D, 0, INIT_ZERO},                               \
    {part ".k_proj.weight", offsetof(T, f.k_w), SH_DD, 1, INIT_XAVIER},                          \
    {part ".k_proj.bias", offsetof(T, f.k_b), SH_D, 0, INIT_ZERO},                               \
    {part ".v_proj.weight", offsetof(T, f.v_w), SH_DD, 1, INIT_XAVIER},                          \
    {part ".v_proj.bias", offsetof(T, f.v_b), SH_D, 0, INIT_ZERO},                               \
    {part ".out_proj.weight", offsetof(T, f.out_w), SH_DD, 1, INIT_XAVIER},                      \
    {part ".out_proj.bias", offsetof(T, f.out_b), SH_D, 0, INIT_ZERO}
#define NORM(T, f, part)                                                                         \
    {part ".weight", offsetof(T, f.w), SH_D, 0, INIT_ONE},                                       \
    {part ".bias", offsetof(T, f.b), SH_D, 0, INIT_ZERO}
#define FFN(T)                                                                                   \
    {"fc1.weight", offsetof(T, ffn.fc1_w), SH_FD, 1, INIT_XAVIER},                               \
    {"fc1.bias", offsetof(T, ffn.fc1_b), SH_F, 0, INIT_ZERO},                                    \
    {"fc2.weight", offsetof(T, ffn.fc2_w), SH_DF, 1, INIT_XAVIER},                               \
    {"fc2.bias", offsetof(T, ffn.fc2_b), SH_D, 0, INIT_ZERO}
static const param_decl embeds[] = {
    {"encoder.embed_tokens.weight", offsetof(nomul_seq2seq, enc_embed), SH_EMBED_SRC, 1,
     INIT_EMBED},
    {"decoder.embed_tokens.weight", offsetof(nomul_seq2seq, dec_embed), SH_EMBED_TGT, 1,
     INIT_EMBED},
};
static const param_decl enc_decl[] = { /* names after "encoder.layers.N." */
    ATTN(enc_layer, self_attn, "self_attn"),
    NORM(enc_layer, self_attn_ln, "self_attn_layer_norm"),
    FFN(enc_layer),
    NORM(enc_layer, final_ln, "final_layer_norm"),
};
static const param_decl dec_decl[] = { /* names after "decoder.layers.N." */
    ATTN(dec_layer, self_attn, "self_attn"),
    NORM(dec_layer, self_attn_ln, "self_attn_layer_norm"),
    ATTN(dec_layer, encoder_attn, "encoder_attn"),
    NORM(dec_layer, encoder_attn_ln, "encoder_attn_layer_norm"),
    FFN(dec_layer),
    NORM(dec_layer, final_ln, "final_layer_norm"),
};
static const param_decl out_decl[] = { /* only when not shared */
    {"decoder.output_projection.weight", offsetof(nomul_seq2seq, out_proj), SH_EMBED_TGT, 1,
     INIT_EMBED},
};
#undef ATTN
#undef NORM
#undef FFN
enum { NEMBED = sizeof embeds / sizeof embeds[0], NENC = sizeof enc_decl / sizeof enc_decl[0],
       NDEC = sizeof dec_decl / sizeof dec_decl[0] };

static int shape_of(const nomul_seq2seq_config *c, s2s_shape sh, int *shape)
{
    switch (sh) {
    case SH_EMBED_SRC: shape[0] = c->vocab_src, shape[1] = c->dim; return 2;
    case SH_EMBED_TGT: shape[0] = c->vocab_tgt, shape[1] = c->dim; return 2;
    case SH_DD: shape[0] = shape[1] = c->dim; return 2;
    case SH_FD: shape[0] = c->ffn, shape[1] = c->dim; return 2;
    case SH_DF: shape[0] = c->dim, shape[1] = c->ffn; return 2;
    case SH_D: shape[0] = c->dim; return 1;
    case SH_F: shape[0] = c->ffn; return 1;
    }
    return 0;
}

/* Adds and initialises the declared tensors in order, each into its field
 * of `into`, named prefix + name. 0, or -1 when out of memory. */
static int declare(nomul_seq2seq *m, void *into, const param_decl *decl, int n,
                   const char *prefix, uint64_t *rng)
{
    for (int i = 0; i < n; i++) {
        char name[64];
        int shape[2];
        snprintf(name, sizeof name, "%s%s", prefix, decl[i].name);
        nomul_tensor *t = model_param_add(&m->ps, name, shape_of(&m->c, decl[i].shape, shape),
                                          shape, decl[i].decay, 0);
        if (!t)
            return -1;
        *(nomul_tensor **)((char *)into + decl[i].field) = t;
        switch (decl[i].init) {
        case INIT_ZERO: model_fill_const(t, 0.0f); break;
        case INIT_ONE: model_fill_const(t, 1.0f); break;
        case INIT_XAVIER: model_fill_uniform(t, rng, sqrt(6.0 / (double)(shape[0] + shape[1])));
            break;
        case INIT_EMBED:
            for (long k = 0; k < t->n; k++)
                t->data[k] = (float)(nomul_normal01(rng) / sqrt((double)shape[1]));
        }
    }
    return 0;
}

nomul_seq2seq *nomul_seq2seq_new(const nomul_seq2seq_config *c, uint64_t seed)
{
    if (!c || c->vocab_src < 4 || c->vocab_tgt < 4 || c->dim < 2 || c->dim % 2 ||
        c->heads < 1 || c->dim % c->heads || c->ffn < 1 || c->enc_layers < 1 ||
        c->dec_layers < 1 || c->max_positions < 2 || !(c->dropout >= 0 && c->dropout < 1) ||
        c->pad < 0 || c->pad >= c->vocab_tgt || c->eos < 0 || c->eos >= c->vocab_tgt ||
        c->bos < 0 || c->bos >= c->vocab_tgt || c->pad >= c->vocab_src ||
        (c->activation != NOMUL_ACT_RELU && c->activation != NOMUL_ACT_GELU)) {
        nomul_report(NOMUL_EINVAL, "nomul_seq2seq_new: want vocabularies of at least 4 holding "
                     "pad/bos/eos, an even width divisible by the heads, layers, a dropout "
                     "in [0, 1) and a ReLU or GELU activation");
        return NULL;
    }
    nomul_seq2seq *m = calloc(1, sizeof *m);
    if (!m || model_params_init(&m->ps, NEMBED + NENC * c->enc_layers + NDEC * c->dec_layers + 1) ||
        !(m->enc = calloc((size_t)c->enc_layers, sizeof *m->enc)) ||
        !(m->dec = calloc((size_t)c->dec_layers, sizeof *m->dec)) ||
        !(m->pos = malloc(sizeof(float) * (size_t)c->max_positions * (size_t)c->dim))) {
        nomul_seq2seq_free(m);
        nomul_report(NOMUL_ENOMEM, "nomul_seq2seq_new: out of memory");
        return NULL;
    }
    m->c = *c;
    nomul_sinusoidal_positions(c->max_positions, c->dim, m->pos);
    uint64_t rng = seed;
    int ok = !declare(m, m, embeds, NEMBED, "", &rng);
    if (ok) /* the padding rows are zero, as fairseq's */
        for (int k = 0; k < c->dim; k++) {
            m->enc_embed->data[(size_t)c->pad * c->dim + k] = 0.0f;
            m->dec_embed->data[(size_t)c->pad * c->dim + k] = 0.0f;
        }
    char prefix[32];
    for (int l = 0; l < c->enc_layers && ok; l++) {
        snprintf(prefix, sizeof prefix, "encoder.layers.%d.", l);
        ok = !declare(m, &m->enc[l], enc_decl, NENC, prefix, &rng);
    }
    for (int l = 0; l < c->dec_layers && ok; l++) {
        snprintf(prefix, sizeof prefix, "decoder.layers.%d.", l);
        ok = !declare(m, &m->dec[l], dec_decl, NDEC, prefix, &rng);
    }
    m->out_proj = m->dec_embed;
    if (ok && !c->share_dec_embed)
        ok = !declare(m, m, out_decl, 1, "", &rng);
    if (!ok) {
        nomul_seq2seq_free(m);
        nomul_report(NOMUL_ENOMEM, "nomul_seq2seq_new: out of memory");
        return NULL;
    }
    return m;
}

void nomul_seq2seq_free(nomul_seq2seq *m)
{
    if (!m)
        return;
    model_params_free(&m->ps);
    free(m->enc);
    free(m->dec);
    free(m->pos);
    free(m);
}

int nomul_seq2seq_params(nomul_seq2seq *m, nomul_param **p)
{
    *p = m->ps.p;
    return m->ps.n;
}

const nomul_seq2seq_config *nomul_seq2seq_get_config(const nomul_seq2seq *m) { return &m->c; }

/* ---- the registry's view (model.c) ------------------------------------- */

static void vt_free(void *impl) { nomul_seq2seq_free(impl); }
static int vt_params(void *impl, nomul_param **p) { return nomul_seq2seq_params(impl, p); }
static const model_vtable seq2seq_vt = {vt_free, vt_params, NULL};

int seq2seq_model_new(const char *name, const nomul_model_data *d, uint64_t seed, void **impl,
                      const model_vtable **vt)
{
    nomul_seq2seq_config c;
    if (!nomul_seq2seq_config_named(name, d->vocab_src, d->vocab_tgt, &c) ||
        !(*impl = nomul_seq2seq_new(&c, seed)))
        return -1;
    *vt = &seq2seq_vt;
    return 0;
}

/* ---- the forward pass ---------------------------------------------------------- */

typedef struct {
    nomul_graph *g;
    const nomul_op_cfgs *cfgs;
    int train;
    float dropout;
    uint64_t rng;
    int offset, total; /* the batch's sentences within a global batch (0: the whole) */
} ctx;

/* Each element draws once from the stream, sentence-major (every tensor
 * here has the batch outermost); rows [offset, offset + b) of a global
 * batch of total draw what they draw in it: a splitmix64 stream is a
 * counter, so skipping k draws adds k increments. */
static nomul_tensor *drop(ctx *x, nomul_tensor *t)
{
    if (!x->train || x->dropout <= 0.0f || !t)
        return t;
    const uint64_t per = (uint64_t)(t->n / t->shape[0]); /* draws per sentence */
    unsigned long long r = x->rng + NOMUL_SPLITMIX_GAMMA * per * (uint64_t)x->offset;
    t = nomul_dropout(x->g, &x->cfgs->family[NOMUL_CFG_FUNCTIONAL], t, x->dropout, &r);
    x->rng = x->total > 0 ? x->rng + NOMUL_SPLITMIX_GAMMA * per * (uint64_t)x->total : r;
    return t;
}

/* (b, t, in) · Wᵀ + bias as (b·t, in), with the relu after it when asked
 * (nomul_linear_relu: one op) */
static nomul_tensor *lin3_act(ctx *x, nomul_tensor *h, nomul_tensor *w, nomul_tensor *b, int relu)
{
    if (!h)
        return NULL;
    int bt = h->shape[0], t = h->shape[1], s2[2] = {bt * t, h->shape[2]};
    nomul_tensor *h2 = nomul_reshape(x->g, h, 2, s2);
    const nomul_op_cfg *lc = &x->cfgs->family[NOMUL_CFG_LINEAR];
    nomul_tensor *y =
        relu ? nomul_linear_relu(x->g, lc, h2, w, b) : nomul_linear(x->g, lc, h2, w, b);
    int s3[3] = {bt, t, w->shape[0]};
    return y ? nomul_reshape(x->g, y, 3, s3) : NULL;
}

static nomul_tensor *lin3(ctx *x, nomul_tensor *h, nomul_tensor *w, nomul_tensor *b)
{
    return lin3_act(x, h, w, b, 0);
}

static nomul_tensor *ln(ctx *x, nomul_tensor *h, const norm_params *p)
{
    return nomul_layer_norm(x->g, &x->cfgs->family[NOMUL_CFG_NORM], h, p->w, p->b, 1e-5f);
}

/* out_proj(attention(q_proj(q_in), k_proj(kv_in), v_proj(kv_in))) */
static nomul_tensor *attend(ctx *x, const nomul_seq2seq *m, nomul_tensor *q_in,
                            nomul_tensor *kv_in, const attn_params *p, nomul_tensor *mask)
{
    /* v, k, then q, as vit.c: the inputs' gradients sum theirs in the reverse
     * order, which as nomul_attention's arguments was the compiler's */
    nomul_tensor *v = lin3(x, kv_in, p->v_w, p->v_b);
    nomul_tensor *k = lin3(x, kv_in, p->k_w, p->k_b);
    nomul_tensor *q = lin3(x, q_in, p->q_w, p->q_b);
    nomul_tensor *a = nomul_attention(x->g, &x->cfgs->family[NOMUL_CFG_BMM],
                                      &x->cfgs->family[NOMUL_CFG_FUNCTIONAL], q, k, v,
                                      m->c.heads, mask);
    return lin3(x, a, p->out_w, p->out_b);
}

static nomul_tensor *ffn(ctx *x, const nomul_seq2seq *m, nomul_tensor *h, const ffn_params *p)
{
    /* relu: in the first layer's op (nomul_linear_relu: the same bits) */
    const int gelu = m->c.activation == NOMUL_ACT_GELU;
    nomul_tensor *a = lin3_act(x, h, p->fc1_w, p->fc1_b, !gelu);
    if (gelu)
        a = nomul_gelu(x->g, &x->cfgs->family[NOMUL_CFG_FUNCTIONAL], a);
    return lin3(x, a, p->fc2_w, p->fc2_b);
}

/* √d · embed(tokens) + positions, dropped out: (b, t, d) */
static nomul_tensor *embed(ctx *x, const nomul_seq2seq *m, nomul_tensor *table, const int *ids,
                           int b, int t)
{
    const int d = m->c.dim;
    if (t > m->c.max_positions) {
        nomul_report(NOMUL_EINVAL, "a sequence of %d tokens is longer than the model's %d "
                     "positions", t, m->c.max_positions);
        return NULL;
    }
    nomul_tensor *e = nomul_embedding(x->g, table, ids, b * t);
    const nomul_op_cfg *fun = &x->cfgs->family[NOMUL_CFG_FUNCTIONAL];
    e = nomul_scale(x->g, fun, e, sqrtf((float)d));
    int s3[3] = {b, t, d}, p3[3] = {1, t, d};
    nomul_tensor *pos = nomul_graph_tensor(x->g, 3, p3, 0);
    if (!e || !pos)
        return NULL;
    memcpy(pos->data, m->pos, sizeof(float) * (size_t)t * d);
    return drop(x, nomul_add(x->g, nomul_reshape(x->g, e, 3, s3), pos));
}

/* −∞ at the source's padding, (b, 1, 1, s) */
static nomul_tensor *pad_mask(ctx *x, const int *src, int b, int s, int pad)
{
    int ms[4] = {b, 1, 1, s};
    nomul_tensor *mk = nomul_graph_tensor(x->g, 4, ms, 0);
    if (!mk)
        return NULL;
    for (long i = 0; i < (long)b * s; i++)
        mk->data[i] = src[i] == pad ? -INFINITY : 0.0f;
    return mk;
}

static nomul_tensor *encode(ctx *x, const nomul_seq2seq *m, const int *src, int b, int s,
                            nomul_tensor **mask)
{
    nomul_tensor *h = embed(x, m, m->enc_embed, src, b, s);
    *mask = pad_mask(x, src, b, s, m->c.pad);
    for (int l = 0; l < m->c.enc_layers; l++) {
        const enc_layer *q = &m->enc[l];
        h = ln(x, nomul_add(x->g, h, drop(x, attend(x, m, h, h, &q->self_attn, *mask))),
               &q->self_attn_ln);
        h = ln(x, nomul_add(x->g, h, drop(x, ffn(x, m, h, &q->ffn))), &q->final_ln);
    }
    return h;
}

static nomul_tensor *decode(ctx *x, const nomul_seq2seq *m, nomul_tensor *enc,
                            nomul_tensor *src_mask, const int *tgt_in, int b, int t)
{
    nomul_tensor *h = embed(x, m, m->dec_embed, tgt_in, b, t);
    int cs[2] = {t, t};
    nomul_tensor *causal = nomul_graph_tensor(x->g, 2, cs, 0);
    if (!causal)
        return NULL;
    nomul_causal_mask(t, causal->data);
    for (int l = 0; l < m->c.dec_layers; l++) {
        const dec_layer *q = &m->dec[l];
        h = ln(x, nomul_add(x->g, h, drop(x, attend(x, m, h, h, &q->self_attn, causal))),
               &q->self_attn_ln);
        h = ln(x, nomul_add(x->g, h, drop(x, attend(x, m, h, enc, &q->encoder_attn, src_mask))),
               &q->encoder_attn_ln);
        h = ln(x, nomul_add(x->g, h, drop(x, ffn(x, m, h, &q->ffn))), &q->final_ln);
    }
    if (!h)
        return NULL;
    int s2[2] = {b * t, m->c.dim};
    return nomul_linear(x->g, &x->cfgs->family[NOMUL_CFG_LINEAR], nomul_reshape(x->g, h, 2, s2),
                        m->out_proj, NULL);
}

nomul_tensor *nomul_seq2seq_forward(nomul_seq2seq *m, nomul_graph *g, const nomul_op_cfgs *cfgs,
                                    const int *src, int b, int s, const int *tgt_in, int t,
                                    const nomul_forward_opts *o)
{
    if (!m || b < 1 || s < 1 || t < 1) {
        nomul_report(NOMUL_EINVAL, "nomul_seq2seq_forward: want a batch, source and target "
                     "lengths of at least 1");
        return NULL;
    }
    ctx x = {g, cfgs, o && o->train, m->c.dropout, o ? o->seed : 0,
             o && o->batch_total > 0 ? o->batch_offset : 0, o ? o->batch_total : 0};
    nomul_tensor *mask, *enc = encode(&x, m, src, b, s, &mask);
    return decode(&x, m, enc, mask, tgt_in, b, t);
}

/* ---- search ------------------------------------------------------------------------- */

/* log-softmax of one row in double (a ranking, not training arithmetic) */
static void log_probs(const float *z, int v, double *out)
{
    double mx = z[0], se = 0.0;
    for (int j = 1; j < v; j++)
        mx = z[j] > mx ? z[j] : mx;
    for (int j = 0; j < v; j++)
        se += exp((double)z[j] - mx);
    double lse = mx + log(se);
    for (int j = 0; j < v; j++)
        out[j] = (double)z[j] - lse;
}

typedef struct {
    int *tok; /* bos, then the tokens */
    int len;  /* tokens after bos (eos included once finished) */
    double score; /* Σ log p; once finished, divided by len^lenpen */
} hyp;

typedef struct {
    int from, tok; /* the live hypothesis it extends, the token */
    double score;  /* Σ log p of the extended prefix */
} cand;

/* Inserts c into the list l of the best n candidates (at most cap), best
 * first; on a tie the earlier candidate stays ahead (as a stable top-k). */
static void keep_best(cand *l, int *n, int cap, cand c)
{
    int i = *n < cap ? (*n)++ : cap;
    if (i == cap && !(c.score > l[cap - 1].score))
        return;
    if (i == cap)
        i = cap - 1;
    while (i > 0 && c.score > l[i - 1].score) {
        l[i] = l[i - 1];
        i--;
    }
    l[i] = c;
}

static void free_hyps(hyp *h, int n)
{
    for (int k = 0; h && k < n; k++)
        free(h[k].tok);
    free(h);
}

static hyp *new_hyps(int n, int maxlen, int bos)
{
    hyp *h = calloc((size_t)n, sizeof *h);
    for (int k = 0; h && k < n; k++) {
        /* zeroed: a dead row still feeds the batch valid ids (<s>) */
        if (!(h[k].tok = calloc((size_t)(maxlen + 2), sizeof(int)))) {
            free_hyps(h, n);
            return NULL;
        }
        h[k].tok[0] = bos; /* fairseq starts the decoder with eos; nomul with bos */
    }
    return h;
}

/* Beam search as fairseq's sequence_generator with search.BeamSearch: each
 * step ranks every continuation of every live hypothesis by Σ log p and
 * takes the best 2·beam; an eos among the first beam of them finishes that
 * hypothesis (scored Σ log p / len^lenpen, eos counted in len), the best
 * beam that do not end in eos are the next live ones. The search stops when
 * beam hypotheses have finished or none is live; at the last step only eos
 * may follow. With beam 1 this is greedy decoding; with a beam at least the
 * number of possible outputs it is exhaustive. */
int nomul_seq2seq_translate(nomul_seq2seq *m, nomul_graph *g, const nomul_op_cfgs *cfgs,
                            const int *src, int b, int s, const nomul_search_opts *so,
                            int **out, int *out_len)
{
    const nomul_seq2seq_config *c = &m->c;
    const int beam = so && so->beam > 0 ? so->beam : 1, v = c->vocab_tgt;
    const double lenpen = so ? so->len_penalty : 1.0;
    int rc = -1;
    nomul_graph_set_grad(g, 0);
    hyp *h = NULL, *next = NULL, *fin = NULL;
    double *lp = malloc(sizeof(double) * (size_t)v);
    cand *top = malloc(sizeof(cand) * 2 * (size_t)beam);
    for (int k = 0; k < b; k++)
        out[k] = NULL;
    if (!lp || !top)
        goto oom;
    for (int bi = 0; bi < b; bi++) {
        const int *sr = src + (size_t)bi * s;
        int slen = s;
        while (slen > 1 && sr[slen - 1] == c->pad)
            slen--;
        int maxlen = so ? (int)(so->max_len_a * slen + so->max_len_b) : 2 * slen + 10;
        if (maxlen < 1)
            maxlen = 1;
        if (maxlen + 1 > c->max_positions)
            maxlen = c->max_positions - 1;
        h = new_hyps(beam, maxlen, c->bos);
        next = new_hyps(beam, maxlen, c->bos);
        fin = new_hyps(beam, maxlen, c->bos);
        if (!h || !next || !fin)
            goto oom;
        int nlive = 1, nfin = 0; /* one live hypothesis at first: bos */
        for (int step = 0; step < maxlen && nlive > 0 && nfin < beam; step++) {
            /* the decoder over every live prefix, the source repeated */
            nomul_graph_reset(g);
            const int t = step + 1;
            int *srcs = malloc(sizeof(int) * (size_t)nlive * s),
                *tin = malloc(sizeof(int) * (size_t)nlive * t);
            if (!srcs || !tin) {
                free(srcs);
                free(tin);
                goto oom;
            }
            for (int k = 0; k < nlive; k++) {
                memcpy(srcs + (size_t)k * s, sr, sizeof(int) * (size_t)s);
                memcpy(tin + (size_t)k * t, h[k].tok, sizeof(int) * (size_t)t);
            }
            nomul_tensor *logits = nomul_seq2seq_forward(m, g, cfgs, srcs, nlive, s, tin, t, NULL);
            free(srcs);
            free(tin);
            if (!logits)
                goto fail;
            /* the best 2·beam continuations over live × vocabulary */
            int nc = 0;
            for (int k = 0; k < nlive; k++) {
                log_probs(logits->data + ((size_t)k * t + (size_t)step) * v, v, lp);
                lp[c->pad] = -INFINITY;
                lp[c->bos] = -INFINITY;
                for (int j = 0; j < v; j++) {
                    if (step + 1 == maxlen && j != c->eos) /* the last step: only eos */
                        continue;
                    if (isfinite(lp[j]))
                        keep_best(top, &nc, 2 * beam, (cand){k, j, h[k].score + lp[j]});
                }
            }
            int nnext = 0;
            for (int r = 0; r < nc; r++) {
                const cand *x = &top[r];
                const hyp *p = &h[x->from];
                if (x->tok == c->eos) {
                    if (r >= beam || nfin == beam)
                        continue;
                    hyp *f = &fin[nfin++];
                    memcpy(f->tok, p->tok, sizeof(int) * (size_t)(p->len + 1));
                    f->tok[p->len + 1] = c->eos;
                    f->len = p->len + 1;
                    f->score = x->score / pow((double)f->len, lenpen);
                } else if (nnext < beam) {
                    hyp *q = &next[nnext++];
                    memcpy(q->tok, p->tok, sizeof(int) * (size_t)(p->len + 1));
                    q->tok[p->len + 1] = x->tok;
                    q->len = p->len + 1;
                    q->score = x->score;
                }
            }
            hyp *sw = h;
            h = next;
            next = sw;
            nlive = nnext;
        }
        /* the best finished hypothesis, without bos and eos */
        int best = -1;
        for (int k = 0; k < nfin; k++)
            if (best < 0 || fin[k].score > fin[best].score)
                best = k;
        int n = best < 0 ? 0 : fin[best].len - 1;
        out[bi] = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
        if (!out[bi])
            goto oom;
        if (n > 0)
            memcpy(out[bi], fin[best].tok + 1, sizeof(int) * (size_t)n);
        out_len[bi] = n;
        free_hyps(h, beam);
        free_hyps(next, beam);
        free_hyps(fin, beam);
        h = next = fin = NULL;
    }
    rc = 0;
    goto done;
oom:
    nomul_report(NOMUL_ENOMEM, "nomul_seq2seq_translate: out of memory");
fail:
    for (int k = 0; k < b; k++) { /* nothing half-done is handed back */
        free(out[k]);
        out[k] = NULL;
    }
    free_hyps(h, beam);
    free_hyps(next, beam);
    free_hyps(fin, beam);
done:
    free(lp);
    free(top);
    nomul_graph_set_grad(g, 1);
    nomul_graph_reset(g);
    return rc;
}
