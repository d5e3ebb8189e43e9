/*
 * transformer.c — fairseq's transformer encoder-decoder (post-norm, as
 * `transformer_iwslt_de_en`) on the autodiff graph, and greedy and beam
 * search on it (nomul/models.h).
 *
 * Embeddings are scaled by √d (a PAM when functional_cfg is piecewise
 * affine) and added to sinusoidal positions (fairseq's table, positions
 * counted from 0 here); each layer is x = LN(x + dropout(sublayer(x))) with
 * self-attention (key-padding mask in the encoder, causal mask in the
 * decoder), encoder-decoder attention (the source's key-padding mask) and a
 * ReLU FFN. The output projection is the decoder's embedding table when
 * shared. Parameter names are fairseq's (encoder.layers.0.self_attn.q_proj
 * .weight, decoder.layers.0.encoder_attn_layer_norm.bias, ...).
 *
 * Decoding runs the decoder over the whole prefix at every step (no cache):
 * quadratic in the output length, which sentence lengths keep cheap.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "nomul/arith.h"
#include "nomul/models.h"

static const struct {
    const char *name;
    int dim, ffn, heads, enc, dec;
    float dropout;
} named[] = {
    {"transformer_iwslt_de_en", 512, 1024, 4, 6, 6, 0.3f},
    {"transformer_small", 256, 512, 4, 3, 3, 0.2f},
    {"transformer_tiny", 64, 128, 4, 2, 2, 0.1f},
};

struct nomul_seq2seq {
    nomul_seq2seq_config c;
    int np;
    nomul_param *p;
    float *pos; /* (max_positions, dim) */
    int enc_embed, dec_embed, out_proj; /* parameter indices */
    int enc_layer0, dec_layer0, per_enc, per_dec;
};

int nomul_seq2seq_config_named(const char *name, int vocab_src, int vocab_tgt,
                               nomul_seq2seq_config *c)
{
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
    nomul_report(NOMUL_EINVAL, "model '%s' is not one of transformer_iwslt_de_en, "
                 "transformer_small, transformer_tiny", name ? name : "(none)");
    return 0;
}

static nomul_param *add(nomul_seq2seq *m, const char *name, int ndim, const int *shape,
                        int decay, int init, uint64_t *rng)
{
    nomul_param *p = &m->p[m->np];
    snprintf(p->name, sizeof p->name, "%s", name);
    if (!(p->t = nomul_tensor_alloc(ndim, shape, 1)))
        return NULL;
    p->decay = decay;
    m->np++;
    /* init: 0 zeros, 1 ones, 2 Xavier uniform, 3 N(0, d^−½) embedding */
    double bound = ndim == 2 ? sqrt(6.0 / (double)(shape[0] + shape[1])) : 0.0;
    for (long i = 0; i < p->t->n; i++) {
        if (init == 0 || init == 1)
            p->t->data[i] = (float)init;
        else if (init == 2)
            p->t->data[i] = (float)((2.0 * nomul_uniform01(rng) - 1.0) * bound);
        else
            p->t->data[i] = (float)(nomul_normal01(rng) / sqrt((double)shape[1]));
    }
    return p;
}

nomul_seq2seq *nomul_seq2seq_new(const nomul_seq2seq_config *c, uint64_t seed)
{
    if (!c || c->vocab_src < 4 || c->vocab_tgt < 4 || c->dim < 2 || c->dim % 2 ||
        c->heads < 1 || c->dim % c->heads || c->ffn < 1 || c->enc_layers < 1 ||
        c->dec_layers < 1 || c->max_positions < 2 || !(c->dropout >= 0 && c->dropout < 1) ||
        c->pad < 0 || c->pad >= c->vocab_tgt || c->eos < 0 || c->eos >= c->vocab_tgt ||
        c->bos < 0 || c->bos >= c->vocab_tgt || c->pad >= c->vocab_src) {
        nomul_report(NOMUL_EINVAL, "nomul_seq2seq_new: want vocabularies of at least 4 holding "
                     "pad/bos/eos, an even width divisible by the heads, layers and a dropout "
                     "in [0, 1)");
        return NULL;
    }
    nomul_seq2seq *m = calloc(1, sizeof *m);
    const int per_enc = 16, per_dec = 26;
    if (!m || !(m->p = calloc((size_t)(3 + per_enc * c->enc_layers + per_dec * c->dec_layers),
                              sizeof *m->p)) ||
        !(m->pos = malloc(sizeof(float) * (size_t)c->max_positions * (size_t)c->dim))) {
        nomul_seq2seq_free(m);
        nomul_report(NOMUL_ENOMEM, "nomul_seq2seq_new: out of memory");
        return NULL;
    }
    m->c = *c;
    m->per_enc = per_enc;
    m->per_dec = per_dec;
    nomul_sinusoidal_positions(c->max_positions, c->dim, m->pos);
    uint64_t rng = seed;
    const int d = c->dim;
    int es[2] = {c->vocab_src, d}, ds[2] = {c->vocab_tgt, d}, dd[2] = {d, d}, fd[2] = {c->ffn, d},
        df[2] = {d, c->ffn}, vd[1] = {d}, vf[1] = {c->ffn};
    int ok = 1;
    char n[192];
    m->enc_embed = m->np;
    ok = ok && add(m, "encoder.embed_tokens.weight", 2, es, 1, 3, &rng);
    m->dec_embed = m->np;
    ok = ok && add(m, "decoder.embed_tokens.weight", 2, ds, 1, 3, &rng);
    if (ok) /* the padding rows are zero, as fairseq's */
        for (int k = 0; k < d; k++) {
            m->p[m->enc_embed].t->data[(size_t)c->pad * d + k] = 0.0f;
            m->p[m->dec_embed].t->data[(size_t)c->pad * d + k] = 0.0f;
        }
    static const char *const proj[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
#define ATT(prefix, part)                                                                        \
    for (int k = 0; k < 4 && ok; k++) {                                                          \
        snprintf(n, sizeof n, "%s.%s.%s.weight", prefix, part, proj[k]);                         \
        ok = ok && add(m, n, 2, dd, 1, 2, &rng);                                                 \
        snprintf(n, sizeof n, "%s.%s.%s.bias", prefix, part, proj[k]);                           \
        ok = ok && add(m, n, 1, vd, 0, 0, &rng);                                                 \
    }
#define LN(prefix, part)                                                                         \
    do {                                                                                         \
        snprintf(n, sizeof n, "%s.%s.weight", prefix, part);                                     \
        ok = ok && add(m, n, 1, vd, 0, 1, &rng);                                                 \
        snprintf(n, sizeof n, "%s.%s.bias", prefix, part);                                       \
        ok = ok && add(m, n, 1, vd, 0, 0, &rng);                                                 \
    } while (0)
#define FFN(prefix)                                                                              \
    do {                                                                                         \
        snprintf(n, sizeof n, "%s.fc1.weight", prefix);                                          \
        ok = ok && add(m, n, 2, fd, 1, 2, &rng);                                                 \
        snprintf(n, sizeof n, "%s.fc1.bias", prefix);                                            \
        ok = ok && add(m, n, 1, vf, 0, 0, &rng);                                                 \
        snprintf(n, sizeof n, "%s.fc2.weight", prefix);                                          \
        ok = ok && add(m, n, 2, df, 1, 2, &rng);                                                 \
        snprintf(n, sizeof n, "%s.fc2.bias", prefix);                                            \
        ok = ok && add(m, n, 1, vd, 0, 0, &rng);                                                 \
    } while (0)
    char pre[32];
    m->enc_layer0 = m->np;
    for (int l = 0; l < c->enc_layers && ok; l++) {
        snprintf(pre, sizeof pre, "encoder.layers.%d", l);
        ATT(pre, "self_attn");
        LN(pre, "self_attn_layer_norm");
        FFN(pre);
        LN(pre, "final_layer_norm");
    }
    m->dec_layer0 = m->np;
    for (int l = 0; l < c->dec_layers && ok; l++) {
        snprintf(pre, sizeof pre, "decoder.layers.%d", l);
        ATT(pre, "self_attn");
        LN(pre, "self_attn_layer_norm");
        ATT(pre, "encoder_attn");
        LN(pre, "encoder_attn_layer_norm");
        FFN(pre);
        LN(pre, "final_layer_norm");
    }
#undef ATT
#undef LN
#undef FFN
    m->out_proj = m->dec_embed;
    if (ok && !c->share_dec_embed) {
        m->out_proj = m->np;
        ok = ok && add(m, "decoder.output_projection.weight", 2, ds, 1, 3, &rng);
    }
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
    for (int i = 0; i < m->np; i++)
        nomul_tensor_free(m->p[i].t);
    free(m->p);
    free(m->pos);
    free(m);
}

int nomul_seq2seq_params(nomul_seq2seq *m, nomul_param **p)
{
    *p = m->p;
    return m->np;
}

const nomul_seq2seq_config *nomul_seq2seq_get_config(const nomul_seq2seq *m) { return &m->c; }

/* ---- the forward pass ---------------------------------------------------------- */

typedef struct {
    nomul_graph *g;
    const nomul_op_cfgs *cfgs;
    int train;
    float dropout;
    uint64_t rng;
} ctx;

static nomul_tensor *drop(ctx *x, nomul_tensor *t)
{
    if (!x->train || x->dropout <= 0.0f)
        return t;
    unsigned long long r = x->rng;
    t = nomul_dropout(x->g, &x->cfgs->family[NOMUL_CFG_FUNCTIONAL], t, x->dropout, &r);
    x->rng = r;
    return t;
}

/* (b, t, in) · Wᵀ + bias as (b·t, in) */
static nomul_tensor *lin3(ctx *x, nomul_tensor *h, nomul_tensor *w, nomul_tensor *b)
{
    if (!h)
        return NULL;
    int bt = h->shape[0], t = h->shape[1], s2[2] = {bt * t, h->shape[2]};
    nomul_tensor *y = nomul_linear(x->g, &x->cfgs->family[NOMUL_CFG_LINEAR],
                                   nomul_reshape(x->g, h, 2, s2), w, b);
    int s3[3] = {bt, t, w->shape[0]};
    return y ? nomul_reshape(x->g, y, 3, s3) : NULL;
}

static nomul_tensor *ln(ctx *x, nomul_tensor *h, nomul_param *p)
{
    return nomul_layer_norm(x->g, &x->cfgs->family[NOMUL_CFG_NORM], h, p[0].t, p[1].t, 1e-5f);
}

/* attention block: p = q,k,v,out weights and biases (8 parameters) */
static nomul_tensor *attend(ctx *x, const nomul_seq2seq *m, nomul_tensor *q_in,
                            nomul_tensor *kv_in, nomul_param *p, nomul_tensor *mask)
{
    nomul_tensor *a = nomul_attention(x->g, x->cfgs, lin3(x, q_in, p[0].t, p[1].t),
                                      lin3(x, kv_in, p[2].t, p[3].t),
                                      lin3(x, kv_in, p[4].t, p[5].t), m->c.heads, mask);
    return lin3(x, a, p[6].t, p[7].t);
}

static nomul_tensor *ffn(ctx *x, nomul_tensor *h, nomul_param *p)
{
    return lin3(x, nomul_relu(x->g, lin3(x, h, p[0].t, p[1].t)), p[2].t, p[3].t);
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
    nomul_tensor *h = embed(x, m, m->p[m->enc_embed].t, src, b, s);
    *mask = pad_mask(x, src, b, s, m->c.pad);
    for (int l = 0; l < m->c.enc_layers; l++) {
        nomul_param *q = m->p + m->enc_layer0 + l * m->per_enc;
        h = ln(x, nomul_add(x->g, h, drop(x, attend(x, m, h, h, q, *mask))), q + 8);
        h = ln(x, nomul_add(x->g, h, drop(x, ffn(x, h, q + 10))), q + 14);
    }
    return h;
}

static nomul_tensor *decode(ctx *x, const nomul_seq2seq *m, nomul_tensor *enc,
                            nomul_tensor *src_mask, const int *tgt_in, int b, int t)
{
    nomul_tensor *h = embed(x, m, m->p[m->dec_embed].t, tgt_in, b, t);
    int cs[2] = {t, t};
    nomul_tensor *causal = nomul_graph_tensor(x->g, 2, cs, 0);
    if (!causal)
        return NULL;
    nomul_causal_mask(t, causal->data);
    for (int l = 0; l < m->c.dec_layers; l++) {
        nomul_param *q = m->p + m->dec_layer0 + l * m->per_dec;
        h = ln(x, nomul_add(x->g, h, drop(x, attend(x, m, h, h, q, causal))), q + 8);
        h = ln(x, nomul_add(x->g, h, drop(x, attend(x, m, h, enc, q + 10, src_mask))), q + 18);
        h = ln(x, nomul_add(x->g, h, drop(x, ffn(x, h, q + 20))), q + 24);
    }
    if (!h)
        return NULL;
    int s2[2] = {b * t, m->c.dim};
    return nomul_linear(x->g, &x->cfgs->family[NOMUL_CFG_LINEAR], nomul_reshape(x->g, h, 2, s2),
                        m->p[m->out_proj].t, NULL);
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
    ctx x = {g, cfgs, o && o->train, m->c.dropout, o ? o->seed : 0};
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
    int len;  /* tokens after bos */
    double score;
    int done;
} hyp;

int nomul_seq2seq_translate(nomul_seq2seq *m, nomul_graph *g, const nomul_op_cfgs *cfgs,
                            const int *src, int b, int s, const nomul_search_opts *so,
                            int **out, int *out_len)
{
    const nomul_seq2seq_config *c = &m->c;
    const int beam = so && so->beam > 0 ? so->beam : 1, v = c->vocab_tgt;
    const double lenpen = so ? so->len_penalty : 1.0;
    int rc = -1;
    nomul_graph_set_grad(g, 0);
    hyp *h = NULL, *cand = NULL;
    double *lp = malloc(sizeof(double) * (size_t)v);
    for (int k = 0; k < b; k++)
        out[k] = NULL;
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
        h = calloc((size_t)beam, sizeof *h);
        cand = calloc((size_t)beam * 2, sizeof *cand);
        if (!h || !cand || !lp)
            goto oom;
        for (int k = 0; k < beam; k++) {
            /* zeroed: a dead hypothesis still feeds the batch valid ids (<s>) */
            h[k].tok = calloc((size_t)(maxlen + 2), sizeof(int));
            if (!h[k].tok)
                goto oom;
            h[k].tok[0] = c->bos; /* fairseq starts the decoder with eos; nomul with bos */
            h[k].len = 0;
            h[k].score = k == 0 ? 0.0 : -INFINITY; /* one live hypothesis at first */
        }
        for (int k = 0; k < 2 * beam; k++)
            if (!(cand[k].tok = calloc((size_t)(maxlen + 2), sizeof(int))))
                goto oom;
        for (int step = 0; step < maxlen; step++) {
            int alive = 0;
            for (int k = 0; k < beam; k++)
                alive += !h[k].done && isfinite(h[k].score);
            if (!alive)
                break;
            /* the decoder over every live prefix, the source repeated */
            nomul_graph_reset(g);
            const int t = step + 1;
            int *srcs = malloc(sizeof(int) * (size_t)beam * s), *tin = malloc(sizeof(int) * (size_t)beam * t);
            if (!srcs || !tin) {
                free(srcs);
                free(tin);
                goto oom;
            }
            for (int k = 0; k < beam; k++) {
                memcpy(srcs + (size_t)k * s, sr, sizeof(int) * (size_t)s);
                memcpy(tin + (size_t)k * t, h[k].tok, sizeof(int) * (size_t)t);
            }
            nomul_tensor *logits = nomul_seq2seq_forward(m, g, cfgs, srcs, beam, s, tin, t, NULL);
            free(srcs);
            free(tin);
            if (!logits)
                goto fail;
            int nc = 0;
            for (int k = 0; k < beam; k++) {
                if (!isfinite(h[k].score))
                    continue;
                if (h[k].done) { /* a finished hypothesis competes as it is */
                    hyp *x = &cand[nc++];
                    memcpy(x->tok, h[k].tok, sizeof(int) * (size_t)(h[k].len + 1));
                    x->len = h[k].len;
                    x->score = h[k].score;
                    x->done = 1;
                    continue;
                }
                log_probs(logits->data + ((size_t)k * t + (size_t)step) * v, v, lp);
                lp[c->pad] = -INFINITY;
                lp[c->bos] = -INFINITY;
                if (step + 1 == maxlen) /* the last step: only eos */
                    for (int j = 0; j < v; j++)
                        if (j != c->eos)
                            lp[j] = -INFINITY;
                /* this hypothesis's best `beam` continuations */
                for (int r = 0; r < beam; r++) {
                    int bj = -1;
                    for (int j = 0; j < v; j++) {
                        if (!isfinite(lp[j]))
                            continue;
                        if (bj < 0 || lp[j] > lp[bj])
                            bj = j;
                    }
                    if (bj < 0)
                        break;
                    hyp *x = &cand[nc++];
                    memcpy(x->tok, h[k].tok, sizeof(int) * (size_t)(h[k].len + 1));
                    x->tok[h[k].len + 1] = bj;
                    x->len = h[k].len + 1;
                    x->score = h[k].score + lp[bj];
                    x->done = bj == c->eos;
                    lp[bj] = -INFINITY;
                    if (nc == 2 * beam)
                        break;
                }
                if (nc == 2 * beam)
                    break;
            }
            /* keep the best `beam` by length-normalized score (finished ones by
             * their final normalization) */
            for (int k = 0; k < beam; k++) {
                int bi2 = -1;
                double bs = -INFINITY;
                for (int q = 0; q < nc; q++) {
                    if (cand[q].len < 0)
                        continue;
                    double sc = cand[q].score / pow((double)(cand[q].len > 0 ? cand[q].len : 1), lenpen);
                    if (bi2 < 0 || sc > bs) {
                        bi2 = q;
                        bs = sc;
                    }
                }
                if (bi2 < 0) {
                    h[k].score = -INFINITY;
                    continue;
                }
                memcpy(h[k].tok, cand[bi2].tok, sizeof(int) * (size_t)(cand[bi2].len + 1));
                h[k].len = cand[bi2].len;
                h[k].score = cand[bi2].score;
                h[k].done = cand[bi2].done;
                cand[bi2].len = -1; /* taken */
            }
        }
        /* the best hypothesis, without bos and eos */
        int best = 0;
        double bs = -INFINITY;
        for (int k = 0; k < beam; k++) {
            if (!isfinite(h[k].score))
                continue;
            double sc = h[k].score / pow((double)(h[k].len > 0 ? h[k].len : 1), lenpen);
            if (sc > bs) {
                bs = sc;
                best = k;
            }
        }
        int n = h[best].len - (h[best].len > 0 && h[best].tok[h[best].len] == c->eos);
        out[bi] = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
        if (!out[bi])
            goto oom;
        memcpy(out[bi], h[best].tok + 1, sizeof(int) * (size_t)n);
        out_len[bi] = n;
        for (int k = 0; k < beam; k++)
            free(h[k].tok);
        for (int k = 0; k < 2 * beam; k++)
            free(cand[k].tok);
        free(h);
        free(cand);
        h = cand = NULL;
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
    for (int k = 0; h && k < beam; k++)
        free(h[k].tok);
    for (int k = 0; cand && k < 2 * beam; k++)
        free(cand[k].tok);
    free(h);
    free(cand);
done:
    free(lp);
    nomul_graph_set_grad(g, 1);
    nomul_graph_reset(g);
    return rc;
}
