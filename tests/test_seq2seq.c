/*
 * test_seq2seq.c — the transformer encoder-decoder: fairseq's parameter
 * count for transformer_iwslt_de_en, gradients against central differences,
 * the masks (padding and causality change nothing they should not), a tiny
 * model learning to reverse sequences in float and fully piecewise affine
 * modes, and greedy and beam search decoding what it learned; the beam
 * search against plain twins (greedy, fairseq's rules, exhaustive search).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nomul/nomul.h"
#include "testutil.h"

static void test_sizes(void **state)
{
    (void)state;
    nomul_seq2seq_config c;
    /* fairseq's IWSLT14 de-en vocabularies (8,848 German, 6,632 English): fairseq reports
     * 39,469,056 parameters for transformer_iwslt_de_en. Shrunk runs (valgrind) count
     * transformer_small's instead, by the same formula */
    const int shrunk = tu_scale() < 1;
    assert_int_equal(nomul_seq2seq_config_named(shrunk ? "transformer_small"
                                                       : "transformer_iwslt_de_en",
                                                8848, 6632, &c),
                     1);
    nomul_seq2seq *m = nomul_seq2seq_new(&c, 1);
    assert_non_null(m);
    nomul_param *p;
    int n = nomul_seq2seq_params(m, &p);
    long total = 0;
    for (int i = 0; i < n; i++)
        total += p[i].t->n;
    /* per encoder layer 4(d² + d) + 2d + (2·d·f + f + d) + 2d, per decoder layer one more
     * attention and norm, and the two embedding tables */
    const long d = c.dim, f = c.ffn;
    const long enc = 4 * (d * d + d) + 2 * d + 2 * d * f + f + d + 2 * d;
    const long dec = enc + 4 * (d * d + d) + 2 * d;
    assert_int_equal(total, c.enc_layers * enc + c.dec_layers * dec + (8848 + 6632) * d);
    if (!shrunk)
        assert_int_equal(total, 39469056);
    assert_string_equal(p[0].name, "encoder.embed_tokens.weight");
    for (int k = 0; k < c.dim; k++)
        assert_true(p[0].t->data[1 * c.dim + k] == 0.0f); /* the padding row */
    nomul_seq2seq_free(m);
    nomul_set_error_handler(NULL);
    assert_int_equal(nomul_seq2seq_config_named("transformer_big", 10, 10, &c), 0);
    assert_non_null(strstr(nomul_last_error_message(), "transformer_tiny"));
    nomul_seq2seq_config_named("transformer_tiny", 10, 10, &c);
    c.heads = 3;
    assert_null(nomul_seq2seq_new(&c, 1));
    nomul_clear_error();
}

static double loss_of(nomul_seq2seq *m, nomul_graph *g, const nomul_op_cfgs *c, const int *src,
                      int b, int s, const int *tin, const int *tout, int t)
{
    nomul_graph_reset(g);
    nomul_tensor *z = nomul_seq2seq_forward(m, g, c, src, b, s, tin, t, NULL);
    nomul_tensor *l = nomul_cross_entropy(g, &c->family[NOMUL_CFG_LOSS_FUNCTIONAL], z, tout, 1,
                                          0.1f);
    assert_non_null(l);
    return l ? l->data[0] : NAN;
}

/* Autodiff against central differences, with ReLU FFNs (fairseq's default)
 * and with GELU ones (activation_fn gelu: smooth, so every gradient must
 * agree; the same seed gives the same parameters, and another loss). */
static void test_gradients(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x55};
    uint64_t seed = tu_next(&r);
    double loss[2];
    for (int act = 0; act < 2; act++) {
        nomul_seq2seq_config cfg;
        nomul_seq2seq_config_named("transformer_tiny", 9, 11, &cfg);
        assert_int_equal(cfg.activation, NOMUL_ACT_RELU);
        cfg.dim = 16;
        cfg.ffn = 24;
        cfg.enc_layers = cfg.dec_layers = 1;
        cfg.activation = act ? NOMUL_ACT_GELU : NOMUL_ACT_RELU;
        nomul_seq2seq *m = nomul_seq2seq_new(&cfg, seed);
        nomul_op_cfgs c;
        nomul_op_cfgs_default(&c);
        nomul_graph *g = nomul_graph_new((size_t)1 << 24);
        /* two sources, the second padded; targets with padding ignored */
        const int src[2 * 4] = {5, 6, 7, 8, 4, 3, 1, 1};
        const int tin[2 * 3] = {0, 4, 5, 0, 6, 1}, tout[2 * 3] = {4, 5, 2, 6, 2, 1};
        nomul_param *p;
        int n = nomul_seq2seq_params(m, &p);
        for (int i = 0; i < n; i++)
            nomul_tensor_zero_grad(p[i].t);
        nomul_graph_reset(g);
        nomul_tensor *z = nomul_seq2seq_forward(m, g, &c, src, 2, 4, tin, 3, NULL);
        nomul_tensor *l = nomul_cross_entropy(g, &c.family[NOMUL_CFG_LOSS_FUNCTIONAL], z, tout, 1, 0.1f);
        loss[act] = l->data[0];
        nomul_backward(g, l);
        int bad = 0;
        for (int trial = 0; trial < 24; trial++) {
            nomul_param *q = &p[tu_next(&r) % (unsigned)n];
            long i = (long)(tu_next(&r) % (unsigned long)q->t->n);
            float keep = q->t->data[i];
            const double mid = loss_of(m, g, &c, src, 2, 4, tin, tout, 3);
            /* two steps, and for each the central difference and both
             * one-sided ones: a ReLU's kink within a step spoils the central
             * difference, not the one-sided one on its other side */
            double fd[2][3];
            for (int k = 0; k < 2; k++) {
                const float h = k ? 3e-4f : 2e-3f;
                q->t->data[i] = keep + h;
                double up = loss_of(m, g, &c, src, 2, 4, tin, tout, 3);
                q->t->data[i] = keep - h;
                double dn = loss_of(m, g, &c, src, 2, 4, tin, tout, 3);
                q->t->data[i] = keep;
                fd[k][0] = (up - dn) / (2.0 * h);
                fd[k][1] = (up - mid) / h;
                fd[k][2] = (mid - dn) / h;
            }
            int ok = 0;
            for (int k = 0; k < 2; k++)
                for (int w = 0; w < (act ? 1 : 3); w++) /* GELU: central only */
                    ok |= fabs(fd[k][w] - q->t->grad[i]) <= 3e-2 * fabs(fd[k][w]) + 2e-3;
            if (!ok) {
                bad++;
                printf("  %s[%ld]: autodiff %g, differences %g / %g\n", q->name, i, q->t->grad[i],
                       fd[0][0], fd[1][0]);
            }
        }
        if (bad > (act ? 0 : 1)) /* a ReLU switching inside the step may fool one */
            FAIL_SEED("%s FFNs: %d of 24 gradients disagree with central differences",
                      act ? "GELU" : "ReLU", bad);
        nomul_graph_free(g);
        nomul_seq2seq_free(m);
    }
    if (loss[0] == loss[1])
        FAIL_SEED("the GELU model's loss %.9g is the ReLU model's", loss[1]);
    /* an activation that is neither is refused, with a message */
    nomul_seq2seq_config bad;
    nomul_seq2seq_config_named("transformer_tiny", 9, 11, &bad);
    bad.activation = (nomul_activation)7;
    nomul_set_error_handler(NULL);
    assert_null(nomul_seq2seq_new(&bad, 1));
    assert_non_null(strstr(nomul_last_error_message(), "ReLU or GELU"));
    nomul_clear_error();
}

static void test_masks(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x56};
    nomul_seq2seq_config cfg;
    nomul_seq2seq_config_named("transformer_tiny", 12, 12, &cfg);
    nomul_seq2seq *m = nomul_seq2seq_new(&cfg, tu_next(&r));
    nomul_op_cfgs c;
    nomul_op_cfgs_all_pam(&c);
    nomul_graph *g = nomul_graph_new((size_t)1 << 24);
    const int tin[4] = {0, 5, 6, 7};
    float first[4 * 12];
    /* a padded source gives the logits of the unpadded one */
    const int s3[3] = {4, 9, 10}, s5[5] = {4, 9, 10, 1, 1};
    nomul_graph_reset(g);
    nomul_tensor *a = nomul_seq2seq_forward(m, g, &c, s3, 1, 3, tin, 4, NULL);
    memcpy(first, a->data, sizeof first);
    nomul_graph_reset(g);
    nomul_tensor *b = nomul_seq2seq_forward(m, g, &c, s5, 1, 5, tin, 4, NULL);
    assert_memory_equal(first, b->data, sizeof first);
    /* later target tokens do not change earlier positions' logits */
    const int tin2[4] = {0, 5, 11, 3};
    nomul_graph_reset(g);
    nomul_tensor *d = nomul_seq2seq_forward(m, g, &c, s3, 1, 3, tin2, 4, NULL);
    assert_memory_equal(first, d->data, 2 * 12 * sizeof(float));
    assert_true(memcmp(first + 2 * 12, d->data + 2 * 12, 2 * 12 * sizeof(float)) != 0);
    nomul_graph_free(g);
    nomul_seq2seq_free(m);
}

/* Sequences of 3..6 tokens from 4..11, and their reverses. */
enum { B = 32, S = 6, V = 12 };
static void batch(tu_rng *r, int *src, int *tin, int *tout, int *len)
{
    for (int i = 0; i < B; i++) {
        int n = 3 + (int)(tu_next(r) % 4);
        len[i] = n;
        for (int j = 0; j < S; j++)
            src[i * S + j] = j < n ? 4 + (int)(tu_next(r) % (V - 4)) : 1;
        tin[i * (S + 1)] = 0;
        for (int j = 0; j < S + 1; j++) {
            int tok = j < n ? src[i * S + n - 1 - j] : j == n ? 2 : 1;
            tout[i * (S + 1) + j] = tok;
            if (j + 1 < S + 1)
                tin[i * (S + 1) + j + 1] = j < n ? tok : 1;
        }
    }
}

static double train_reverse(int pa, nomul_seq2seq **out_model, uint64_t seed)
{
    tu_rng r = {seed};
    nomul_seq2seq_config cfg;
    nomul_seq2seq_config_named("transformer_tiny", V, V, &cfg);
    cfg.dim = 32;
    cfg.ffn = 64;
    cfg.dropout = 0.0f;
    nomul_seq2seq *m = nomul_seq2seq_new(&cfg, tu_next(&r));
    nomul_op_cfgs c;
    if (pa)
        nomul_op_cfgs_all_pam(&c);
    else
        nomul_op_cfgs_default(&c);
    nomul_param *p;
    int n = nomul_seq2seq_params(m, &p);
    float **mo = calloc((size_t)n, sizeof *mo), **ve = calloc((size_t)n, sizeof *ve);
    for (int i = 0; i < n; i++) {
        mo[i] = calloc((size_t)p[i].t->n, sizeof(float));
        ve[i] = calloc((size_t)p[i].t->n, sizeof(float));
    }
    nomul_adamw opt;
    nomul_adamw_init(&opt, 3e-3f, 0.0f, &c.family[NOMUL_CFG_OPT_FUNCTIONAL]);
    nomul_graph *g = nomul_graph_new((size_t)1 << 26);
    int src[B * S], tin[B * (S + 1)], tout[B * (S + 1)], len[B];
    /* the PA model trains more slowly: at 300 steps its loss ranged up to
     * 0.41 over 16 seeds and one decoded only 3 of 8 */
    const int steps = tu_scale() < 1 ? 10 : pa ? 500 : 300;
    double tail = 0.0;
    for (int step = 0; step < steps; step++) {
        batch(&r, src, tin, tout, len);
        for (int i = 0; i < n; i++)
            nomul_tensor_zero_grad(p[i].t);
        nomul_graph_reset(g);
        nomul_tensor *z = nomul_seq2seq_forward(m, g, &c, src, B, S, tin, S + 1, NULL);
        nomul_tensor *l = nomul_cross_entropy(g, &c.family[NOMUL_CFG_LOSS_FUNCTIONAL], z, tout,
                                              1, 0.0f);
        assert_non_null(l);
        if (step >= steps - 10)
            tail += l->data[0] / 10.0;
        nomul_backward(g, l);
        /* the rate decays linearly to a tenth: at a constant 3e-3 a step now
         * and then spikes the loss, and a model taken right after one (seed
         * 3: 0.006 before the last step, 0.33 after it) decodes badly */
        opt.lr = 3e-3f * (1.0f - 0.9f * (float)step / (float)steps);
        nomul_adamw_begin_step(&opt);
        for (int i = 0; i < n; i++)
            nomul_adamw_update(&opt, (size_t)p[i].t->n, p[i].t->data, p[i].t->grad, mo[i], ve[i]);
    }
    for (int i = 0; i < n; i++) {
        free(mo[i]);
        free(ve[i]);
    }
    free(mo);
    free(ve);
    nomul_graph_free(g);
    *out_model = m;
    return tail;
}

static void test_learns_to_reverse_and_decodes(void **state)
{
    (void)state;
    const uint64_t seed = tu_seed() ^ 0x57;
    for (int pa = 0; pa < 2; pa++) {
        nomul_seq2seq *m;
        double loss = train_reverse(pa, &m, seed);
        printf("  reverse task, %s: loss %.4f (mean of the last 10 steps)\n",
               pa ? "fully piecewise affine" : "float", loss);
        if (tu_scale() >= 1 && !(loss < 0.5))
            FAIL_SEED("%s: loss %g at the end of training, want below 0.5", pa ? "PA" : "float",
                      loss);
        if (tu_scale() < 1) {
            nomul_seq2seq_free(m);
            continue;
        }
        /* decode fresh sequences: greedy and beam 4 reproduce the reverses */
        nomul_op_cfgs c;
        if (pa)
            nomul_op_cfgs_all_pam(&c);
        else
            nomul_op_cfgs_default(&c);
        tu_rng r = {seed ^ 0xDEC0DE};
        int src[B * S], tin[B * (S + 1)], tout[B * (S + 1)], len[B];
        batch(&r, src, tin, tout, len);
        nomul_graph *g = nomul_graph_new((size_t)1 << 26);
        for (int beam = 1; beam <= 4; beam += 3) {
            nomul_search_opts so = {beam, 1.0, 1.0, 2.0};
            int *out[B], olen[B], right = 0;
            assert_int_equal(nomul_seq2seq_translate(m, g, &c, src, B, S, &so, out, olen), 0);
            for (int i = 0; i < B; i++) {
                int ok = olen[i] == len[i];
                for (int j = 0; ok && j < len[i]; j++)
                    ok = out[i][j] == tout[i * (S + 1) + j];
                right += ok;
                free(out[i]);
            }
            printf("  %s, beam %d: %d of %d reversed exactly\n", pa ? "PA" : "float", beam, right, B);
            /* chance is about 8^-4 per sequence, so 12 of 32 right shows the decoder
             * works. Out of 8 sequences the count was too noisy: a float model that
             * reverses 23 of these 32 (seed 1883729845843128) got 3 of its first 8. */
            if (right < 12)
                FAIL_SEED("%s beam %d: only %d of %d sequences reversed", pa ? "PA" : "float",
                          beam, right, B);
        }
        nomul_graph_free(g);
        nomul_seq2seq_free(m);
    }
}

/* ---- the search against plain twins on a tiny random model ------------------------- */

enum { SV = 7, SMAX = 3, SS = 3 }; /* vocabulary (tokens 3..6 and eos), length, source */

typedef struct {
    nomul_seq2seq *m;
    nomul_graph *g;
    nomul_op_cfgs c;
    int src[SS];
    double lenpen;
} tiny;

/* log p of every next token after the prefix (bos, then t−1 tokens), with
 * pad and bos banned as the search bans them (not renormalized) */
static void next_log_probs(tiny *x, const int *prefix, int t, double *lp)
{
    nomul_graph_reset(x->g);
    nomul_tensor *z = nomul_seq2seq_forward(x->m, x->g, &x->c, x->src, 1, SS, prefix, t, NULL);
    assert_non_null(z);
    const float *row = z->data + (size_t)(t - 1) * SV;
    double mx = row[0], se = 0.0;
    for (int j = 1; j < SV; j++)
        mx = row[j] > mx ? row[j] : mx;
    for (int j = 0; j < SV; j++)
        se += exp((double)row[j] - mx);
    for (int j = 0; j < SV; j++)
        lp[j] = (double)row[j] - mx - log(se);
    lp[1] = lp[0] = -INFINITY;
}

typedef struct {
    int tok[SMAX + 1]; /* bos, then the tokens */
    int len;
    double score;
} seq;

/* every output (tokens, then eos, at most SMAX tokens with eos): the best by
 * Σ log p / len^lenpen */
static void exhaustive(tiny *x, seq *p, seq *best)
{
    double lp[SV];
    next_log_probs(x, p->tok, p->len + 1, lp);
    double f = (p->score + lp[2]) / pow((double)(p->len + 1), x->lenpen);
    if (best->len < 0 || f > best->score) {
        *best = *p;
        best->score = f;
    }
    if (p->len + 1 == SMAX)
        return;
    for (int j = 3; j < SV; j++) {
        seq q = *p;
        q.tok[++q.len] = j;
        q.score += lp[j];
        exhaustive(x, &q, best);
    }
}

/* fairseq's rules, written plainly: all continuations sorted (stable) by Σ log p */
static seq reference_beam(tiny *x, int beam)
{
    seq live[64], next[64], fin[64] = {{{0}, 0, -INFINITY}}, cand[64 * SV];
    int from[64 * SV], tokof[64 * SV], nlive = 1, nfin = 0;
    memset(&live[0], 0, sizeof live[0]);
    for (int step = 0; step < SMAX && nlive > 0 && nfin < beam; step++) {
        int nc = 0;
        for (int k = 0; k < nlive; k++) {
            double lp[SV];
            next_log_probs(x, live[k].tok, step + 1, lp);
            for (int j = 0; j < SV; j++) {
                if (!isfinite(lp[j]) || (step + 1 == SMAX && j != 2))
                    continue;
                cand[nc] = live[k];
                cand[nc].score += lp[j];
                from[nc] = k;
                tokof[nc++] = j;
            }
        }
        for (int i = 1; i < nc; i++) /* insertion sort, best first, stable */
            for (int q = i; q > 0 && cand[q].score > cand[q - 1].score; q--) {
                seq ts = cand[q];
                cand[q] = cand[q - 1];
                cand[q - 1] = ts;
                int tf = from[q], tt = tokof[q];
                from[q] = from[q - 1], tokof[q] = tokof[q - 1];
                from[q - 1] = tf, tokof[q - 1] = tt;
            }
        int nnext = 0;
        for (int r = 0; r < nc && r < 2 * beam; r++) {
            if (tokof[r] == 2) {
                if (r < beam && nfin < beam) {
                    fin[nfin] = cand[r];
                    fin[nfin].score /= pow((double)(cand[r].len + 1), x->lenpen);
                    nfin++;
                }
            } else if (nnext < beam) {
                next[nnext] = cand[r];
                next[nnext].tok[++next[nnext].len] = tokof[r];
                nnext++;
            }
        }
        memcpy(live, next, sizeof(seq) * (size_t)nnext);
        nlive = nnext;
    }
    seq best = fin[0];
    for (int k = 1; k < nfin; k++)
        if (fin[k].score > best.score)
            best = fin[k];
    return best;
}

/* argmax at every step until eos */
static seq greedy(tiny *x)
{
    seq p;
    memset(&p, 0, sizeof p);
    for (;;) {
        double lp[SV];
        next_log_probs(x, p.tok, p.len + 1, lp);
        int bj = 2;
        if (p.len + 1 < SMAX)
            for (int j = 0; j < SV; j++)
                bj = lp[j] > lp[bj] ? j : bj;
        if (bj == 2)
            return p;
        p.tok[++p.len] = bj;
    }
}

static int same_output(const seq *want, const int *got, int got_len)
{
    if (got_len != want->len)
        return 0;
    for (int i = 0; i < got_len; i++)
        if (got[i] != want->tok[i + 1])
            return 0;
    return 1;
}

static void test_beam_search_is_fairseqs(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xBEA5};
    /* 1 + 4 + 16 = 21 possible outputs: a beam of 21 keeps every prefix */
    const int beams[] = {1, 2, 3, 4, 5, 21}, full = 21;
    for (int trial = 0; trial < 6; trial++) {
        tiny x;
        nomul_seq2seq_config cfg;
        nomul_seq2seq_config_named("transformer_tiny", SV, SV, &cfg);
        cfg.dim = 16;
        cfg.ffn = 32;
        cfg.dropout = 0.0f;
        x.m = nomul_seq2seq_new(&cfg, tu_next(&r));
        /* random weights give near-uniform outputs: sharpen them so that
         * the beam's choices matter */
        nomul_param *p;
        int np = nomul_seq2seq_params(x.m, &p);
        for (int i = 0; i < np; i++)
            for (size_t k = 0; k < (size_t)p[i].t->n; k++)
                p[i].t->data[k] *= 3.0f;
        nomul_op_cfgs_default(&x.c);
        x.g = nomul_graph_new((size_t)1 << 22);
        for (int i = 0; i < SS; i++)
            x.src[i] = 3 + (int)(tu_next(&r) % (SV - 3));
        x.lenpen = 0.5 * (double)(tu_next(&r) % 4); /* 0, 0.5, 1, 1.5 */
        seq best = {{0}, -1, 0.0}, root;
        memset(&root, 0, sizeof root);
        exhaustive(&x, &root, &best);
        for (size_t bi = 0; bi < sizeof beams / sizeof *beams; bi++) {
            const int beam = beams[bi];
            nomul_search_opts so = {beam, x.lenpen, 0.0, SMAX};
            int *out, olen;
            assert_int_equal(nomul_seq2seq_translate(x.m, x.g, &x.c, x.src, 1, SS, &so, &out, &olen),
                             0);
            seq want = beam == 1 ? greedy(&x) : reference_beam(&x, beam);
            if (!same_output(&want, out, olen))
                FAIL_SEED("trial %d, lenpen %.1f, beam %d: %d tokens (first %d), the plain "
                          "twin %d tokens (first %d)", trial, x.lenpen, beam, olen,
                          olen ? out[0] : -1, want.len, want.len ? want.tok[1] : -1);
            if (beam == full && !same_output(&best, out, olen))
                FAIL_SEED("trial %d, lenpen %.1f: a full beam is not the exhaustive best "
                          "(%d tokens, the best %d tokens, score %g)", trial, x.lenpen, olen,
                          best.len, best.score);
            free(out);
        }
        nomul_graph_free(x.g);
        nomul_seq2seq_free(x.m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_masks),
        cmocka_unit_test(test_learns_to_reverse_and_decodes),
        cmocka_unit_test(test_beam_search_is_fairseqs),
    };
    printf("test_seq2seq: seed %llu\n", (unsigned long long)tu_seed());
    return cmocka_run_group_tests_name("seq2seq", tests, NULL, NULL);
}
