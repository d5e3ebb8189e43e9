/*
 * test_autodiff.c — the tape: gradients of a small MLP with cross-entropy
 * against central finite differences (float mode), and the same MLP
 * trained on a synthetic task in float, PAM (approximate backward) and
 * fully piecewise affine (exact backward, PA loss, PA AdamW) modes, each
 * required to bring its loss below a stated value. No-grad mode and arena
 * exhaustion. The op table: every operation named, with a backward, and
 * recorded under its own entry.
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

#include "autodiff/graph_internal.h" /* the op table and the tape */
#include "core/internal.h"           /* nomul_splitmix64: dropout's draws */
#include "nomul/nomul.h"
#include "testutil.h"

typedef struct {
    nomul_tensor *w1, *b1, *w2, *b2;
} mlp;

static mlp mlp_new(tu_rng *r, int in, int hidden, int out)
{
    int s1[2] = {hidden, in}, s2[2] = {out, hidden};
    mlp m = {nomul_tensor_alloc(2, s1, 1), nomul_tensor_alloc(1, &hidden, 1),
             nomul_tensor_alloc(2, s2, 1), nomul_tensor_alloc(1, &out, 1)};
    for (long i = 0; i < m.w1->n; i++)
        m.w1->data[i] = (float)((int)(tu_u32(r) % 2001) - 1000) / 1000.0f / sqrtf((float)in);
    for (long i = 0; i < m.w2->n; i++)
        m.w2->data[i] = (float)((int)(tu_u32(r) % 2001) - 1000) / 1000.0f / sqrtf((float)hidden);
    return m;
}

static void mlp_free(mlp *m)
{
    nomul_tensor_free(m->w1);
    nomul_tensor_free(m->b1);
    nomul_tensor_free(m->w2);
    nomul_tensor_free(m->b2);
}

static nomul_tensor *mlp_loss(nomul_graph *g, const nomul_op_cfgs *c, mlp *m, nomul_tensor *x,
                              const int *y)
{
    nomul_tensor *h = nomul_relu(g, nomul_linear(g, &c->family[NOMUL_CFG_LINEAR], x, m->w1, m->b1));
    nomul_tensor *logits = nomul_linear(g, &c->family[NOMUL_CFG_LINEAR], h, m->w2, m->b2);
    return nomul_cross_entropy(g, &c->family[NOMUL_CFG_LOSS_FUNCTIONAL], logits, y, -100, 0.0f);
}

static void test_gradients_match_finite_differences(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xAD};
    nomul_op_cfgs c;
    nomul_op_cfgs_default(&c);
    mlp m = mlp_new(&r, 5, 6, 3);
    for (long i = 0; i < m.b1->n; i++)
        m.b1->data[i] = 0.1f;
    int xs[2] = {4, 5};
    nomul_tensor *x = nomul_tensor_alloc(2, xs, 0);
    /* Inputs are redrawn until every hidden pre-activation is at least 0.05
     * from the ReLU kink: the largest step below (1e-2 on a weight, |x| <= 2)
     * moves a pre-activation by at most 0.02, so no difference quotient
     * straddles the kink and the comparison cannot fail by chance. */
    double margin = 0;
    for (int tries = 0; tries < 10000 && margin < 0.05; tries++) {
        for (long i = 0; i < x->n; i++)
            x->data[i] = (float)((int)(tu_u32(&r) % 2001) - 1000) / 500.0f;
        margin = INFINITY;
        for (int b = 0; b < 4; b++)
            for (int j = 0; j < 6; j++) {
                double z = m.b1->data[j];
                for (int q = 0; q < 5; q++)
                    z += (double)m.w1->data[j * 5 + q] * x->data[b * 5 + q];
                margin = fmin(margin, fabs(z));
            }
    }
    assert_true(margin >= 0.05);
    int y[4] = {0, 2, 1, -100};
    nomul_graph *g = nomul_graph_new(1 << 20);
    nomul_tensor *loss = mlp_loss(g, &c, &m, x, y);
    nomul_backward(g, loss);
    nomul_tensor *params[4] = {m.w1, m.b1, m.w2, m.b2};
    for (int k = 0; k < 4; k++) {
        nomul_tensor *p = params[k];
        for (long i = 0; i < p->n; i++) {
            /* two step sizes: rounding dominates the small one, curvature the large */
            double fds[2];
            for (int s = 0; s < 2; s++) {
                float keep = p->data[i], h = s ? 1e-3f : 1e-2f;
                p->data[i] = keep + h;
                nomul_graph_reset(g);
                double up = mlp_loss(g, &c, &m, x, y)->data[0];
                p->data[i] = keep - h;
                nomul_graph_reset(g);
                double dn = mlp_loss(g, &c, &m, x, y)->data[0];
                p->data[i] = keep;
                fds[s] = (up - dn) / (2.0 * h);
            }
            int ok = 0;
            for (int s = 0; s < 2; s++)
                ok |= fabs(fds[s] - p->grad[i]) <= 2e-2 * fabs(fds[s]) + 2e-3;
            if (!ok)
                FAIL_SEED("parameter %d element %ld: gradient %g, finite differences %g, %g", k,
                          i, (double)p->grad[i], fds[0], fds[1]);
        }
    }
    nomul_graph_free(g);
    nomul_tensor_free(x);
    mlp_free(&m);
}

/* 4 classes of Gaussian blobs in 8 dimensions */
static void blobs(tu_rng *r, int n, float *x, int *y)
{
    static const float centers[4][8] = {{2, 0, 0, 1, 0, 0, -1, 0},
                                        {0, 2, 0, 0, 1, 0, 0, -1},
                                        {-2, 0, 1, 0, 0, 1, 0, 0},
                                        {0, -2, 0, -1, 0, 0, 1, 1}};
    for (int i = 0; i < n; i++) {
        y[i] = (int)(tu_u32(r) % 4);
        for (int j = 0; j < 8; j++) {
            float u = 0;
            for (int k = 0; k < 4; k++) /* a sum of uniforms: bell-shaped noise */
                u += (float)(tu_u32(r) % 10001) / 10000.0f - 0.5f;
            x[i * 8 + j] = centers[y[i]][j] + 2.0f * u;
        }
    }
}

/* 300 steps; fewer with NOMUL_TEST_SCALE < 1 (valgrind), where only a
 * falling loss is required */
static int train_steps(void) { return tu_scale() < 1 ? 12 : 300; }

static int converged(double first, double last, double want)
{
    return train_steps() < 300 ? last < first : last < want;
}

static double train(int mode, double *first)
{
    tu_rng r = {tu_seed() ^ 0xAE};
    enum { N = 256 };
    nomul_op_cfgs c;
    int opt_pa = 0;
    if (mode == 0) {
        nomul_op_cfgs_default(&c);
    } else if (mode == 1) { /* PAM linears, approximate backward */
        nomul_op_cfgs_default(&c);
        c.family[NOMUL_CFG_LINEAR].subtype = NOMUL_OP_PAM;
        c.family[NOMUL_CFG_LINEAR].approx_bwd = 1;
    } else { /* everything PA, exact backward, PA optimizer */
        nomul_op_cfgs_all_pam(&c);
        opt_pa = 1;
    }
    mlp m = mlp_new(&r, 8, 32, 4);
    int xs[2] = {N, 8};
    nomul_tensor *x = nomul_tensor_alloc(2, xs, 0);
    int y[N];
    blobs(&r, N, x->data, y);
    nomul_tensor *params[4] = {m.w1, m.b1, m.w2, m.b2};
    float *mom[4], *vel[4];
    for (int k = 0; k < 4; k++) {
        mom[k] = calloc((size_t)params[k]->n, sizeof(float));
        vel[k] = calloc((size_t)params[k]->n, sizeof(float));
    }
    nomul_adamw opt;
    nomul_adamw_init(&opt, 0.01f, 0.0f,
                     &(nomul_op_cfg){opt_pa ? NOMUL_OP_PAM : NOMUL_OP_STANDARD, 0, 1.0f});
    nomul_graph *g = nomul_graph_new(1 << 22);
    double loss = 0;
    for (int step = 0; step < train_steps(); step++) {
        nomul_graph_reset(g);
        for (int k = 0; k < 4; k++)
            nomul_tensor_zero_grad(params[k]);
        nomul_tensor *l = mlp_loss(g, &c, &m, x, y);
        loss = l->data[0];
        if (step == 0)
            *first = loss;
        nomul_backward(g, l);
        nomul_adamw_begin_step(&opt);
        for (int k = 0; k < 4; k++)
            nomul_adamw_update(&opt, (size_t)params[k]->n, params[k]->data, params[k]->grad,
                               mom[k], vel[k]);
    }
    nomul_graph_free(g);
    for (int k = 0; k < 4; k++) {
        free(mom[k]);
        free(vel[k]);
    }
    nomul_tensor_free(x);
    mlp_free(&m);
    return loss;
}

static void test_mlp_trains_in_every_mode(void **state)
{
    (void)state;
    static const char *names[] = {"float", "PAM linears (approximate backward)",
                                  "fully piecewise affine (exact backward)"};
    for (int mode = 0; mode < 3; mode++) {
        double first = 0, last = train(mode, &first);
        printf("  %-42s loss %.4f -> %.4f\n", names[mode], first, last);
        if (!converged(first, last, 0.25))
            FAIL_SEED("%s: loss %g -> %g after 300 steps, want below 0.25", names[mode], first,
                      last);
    }
}

/* Every operation's backward against central differences (float mode):
 * loss = Σ op(inputs) ⊙ R for a fixed random R. */
static nomul_tensor *rand_tensor(tu_rng *r, int ndim, const int *shape, int grad)
{
    nomul_tensor *t = nomul_tensor_alloc(ndim, shape, grad);
    for (long i = 0; i < t->n; i++)
        t->data[i] = (float)((int)(tu_u32(r) % 2001) - 1000) / 700.0f;
    return t;
}

static nomul_tensor *apply_op(nomul_graph *g, const nomul_op_cfg *c, int op, nomul_tensor **in)
{
    switch (op) {
    case 0: return nomul_softmax(g, c, in[0]);
    case 1: return nomul_log_softmax(g, c, in[0]);
    case 2: return nomul_layer_norm(g, c, in[0], in[1], in[2], 1e-5f);
    case 3: return nomul_matmul(g, c, in[0], in[1], 0);
    case 4: return nomul_matmul(g, c, in[0], in[1], 1);
    case 5: return nomul_mul(g, c, in[0], in[1]);
    case 6: return nomul_scale(g, c, in[0], -1.75f);
    case 7: return nomul_mean(g, c, in[0]);
    case 8: return nomul_add(g, in[0], in[1]);
    case 9: {
        unsigned long long st = 99; /* the same mask every evaluation */
        return nomul_dropout(g, c, in[0], 0.3f, &st);
    }
    case 10: {
        static const int ids[6] = {4, 0, 2, 2, 1, 4};
        return nomul_embedding(g, in[0], ids, 6);
    }
    case 12: return nomul_gelu(g, c, in[0]);
    case 13: return nomul_add(g, in[0], in[1]);
    case 14: return nomul_sub(g, in[1], in[0]);
    case 15: return nomul_mul(g, c, in[0], in[1]);
    case 16: return nomul_div(g, c, in[0], in[1]);
    case 17: return nomul_transpose(g, in[0], 0, 2);
    case 20: return nomul_logsumexp(g, c, in[0]);
    case 21: return nomul_concat(g, in[0], in[1], 1);
    case 22: return nomul_narrow(g, in[0], 1, 1, 2);
    case 23: return nomul_max_pool2d(g, in[0], 2, 2);
    case 24: return nomul_avg_pool_global(g, c, in[0]);
    case 19: {
        float rm[3] = {0, 0, 0}, rv[3] = {1, 1, 1};
        return nomul_batch_norm(g, c, in[0], in[1], in[2], rm, rv, 1e-5f, 0.1f, 1);
    }
    case 18: {
        static float causal[9];
        static nomul_tensor mask = {causal, NULL, 2, {3, 3, 0, 0, 0}, 9};
        nomul_causal_mask(3, causal);
        nomul_op_cfgs cf;
        nomul_op_cfgs_default(&cf);
        return nomul_attention(g, &cf.family[NOMUL_CFG_BMM], &cf.family[NOMUL_CFG_FUNCTIONAL],
                               in[0], in[1], in[2], 2, &mask);
    }
    default: { /* 11 */
        static const nomul_conv2d_desc d = {2, 4, 5, 5, 6, 3, 3, 1, 2, 1, 0, 1, 1, 2};
        return nomul_conv2d(g, c, in[0], in[1], in[2], &d);
    }
    }
}

static void test_ops_match_finite_differences(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xB0};
    static const char *names[] = {"softmax", "log_softmax", "layer_norm", "matmul", "matmul bT",
                                  "mul", "scale", "mean", "add", "dropout", "embedding",
                                  "conv2d", "gelu", "add bcast", "sub bcast", "mul bcast",
                                  "div bcast", "transpose", "attention (causal)",
                                  "batch_norm", "logsumexp", "concat", "narrow",
                                  "max_pool2d (ceil mode)", "avg_pool_global"};
    nomul_op_cfg std = {NOMUL_OP_STANDARD, 0, 1.0f};
    nomul_graph *g = nomul_graph_new(1 << 20);
    for (int op = 0; op < 25; op++) {
        int s2[2] = {3, 7}, s7[1] = {7}, a3[3] = {2, 3, 4}, b3[3] = {2, 4, 5}, bt3[3] = {2, 5, 4};
        int emb[2] = {5, 4}, cx[4] = {2, 4, 5, 5}, cw[4] = {6, 2, 3, 3}, cb[1] = {6};
        nomul_tensor *in[3] = {NULL, NULL, NULL};
        int nin = 1;
        if (op == 2) {
            in[0] = rand_tensor(&r, 2, s2, 1);
            in[1] = rand_tensor(&r, 1, s7, 1);
            in[2] = rand_tensor(&r, 1, s7, 1);
            nin = 3;
        } else if (op == 3 || op == 4) {
            in[0] = rand_tensor(&r, 3, a3, 1);
            in[1] = rand_tensor(&r, 3, op == 3 ? b3 : bt3, 1);
            nin = 2;
        } else if (op == 19) { /* (2, 3, 2, 2) per channel */
            int t4[4] = {2, 3, 2, 2}, c1[1] = {3};
            in[0] = rand_tensor(&r, 4, t4, 1);
            in[1] = rand_tensor(&r, 1, c1, 1);
            in[2] = rand_tensor(&r, 1, c1, 1);
            nin = 3;
        } else if (op == 21) { /* (2, 3, 4) and (2, 2, 4) along dimension 1 */
            int t3[3] = {2, 3, 4}, u3[3] = {2, 2, 4};
            in[0] = rand_tensor(&r, 3, t3, 1);
            in[1] = rand_tensor(&r, 3, u3, 1);
            nin = 2;
        } else if (op == 23 || op == 24) { /* (2, 3, 5, 5): 5 = 2 + 2 + a partial window */
            int t4[4] = {2, 3, 5, 5};
            in[0] = rand_tensor(&r, 4, t4, 1);
            if (op == 23) { /* max: distinct values 0.05 apart in a random order, so that no
                             * two in a window come within a finite-difference step (a
                             * near tie has no derivative to compare) */
                long n = in[0]->n;
                for (long i = 0; i < n; i++)
                    in[0]->data[i] = -2.0f + 0.05f * (float)i;
                for (long i = n - 1; i > 0; i--) {
                    long j = (long)(tu_u32(&r) % (uint32_t)(i + 1));
                    float t = in[0]->data[i];
                    in[0]->data[i] = in[0]->data[j];
                    in[0]->data[j] = t;
                }
            }
        } else if (op == 17 || op == 22) {
            int t3[3] = {2, 3, 4};
            in[0] = rand_tensor(&r, 3, t3, 1);
        } else if (op == 18) { /* q, k, v: (2, 3, 4), 2 heads */
            int t3[3] = {2, 3, 4};
            for (int k = 0; k < 3; k++)
                in[k] = rand_tensor(&r, 3, t3, 1);
            nin = 3;
        } else if (op >= 13) { /* (2, 3, 4) with (3, 1) */
            int big[3] = {2, 3, 4}, small[2] = {3, 1};
            in[0] = rand_tensor(&r, 3, big, 1);
            in[1] = rand_tensor(&r, 2, small, 1);
            if (op == 16) /* divisors away from 0 */
                for (long i = 0; i < in[1]->n; i++)
                    in[1]->data[i] = 1.5f + fabsf(in[1]->data[i]);
            nin = 2;
        } else if (op == 10) {
            in[0] = rand_tensor(&r, 2, emb, 1);
        } else if (op == 11) {
            in[0] = rand_tensor(&r, 4, cx, 1);
            in[1] = rand_tensor(&r, 4, cw, 1);
            in[2] = rand_tensor(&r, 1, cb, 1);
            nin = 3;
        } else if (op == 5 || op == 8) {
            in[0] = rand_tensor(&r, 2, s2, 1);
            in[1] = rand_tensor(&r, 2, s2, 1);
            nin = 2;
        } else {
            in[0] = rand_tensor(&r, 2, s2, 1);
        }
        nomul_graph_reset(g);
        nomul_tensor *y = apply_op(g, &std, op, in);
        assert_non_null(y);
        nomul_tensor *R = rand_tensor(&r, y->ndim, y->shape, 0);
        nomul_tensor *loss = nomul_sum(g, nomul_mul(g, &std, y, R));
        nomul_backward(g, loss);
        for (int k = 0; k < nin; k++)
            for (long i = 0; i < in[k]->n; i++) {
                double fds[2];
                for (int s = 0; s < 2; s++) {
                    float keep = in[k]->data[i], h = s ? 1e-3f : 1e-2f;
                    in[k]->data[i] = keep + h;
                    nomul_graph_reset(g);
                    double up = nomul_sum(g, nomul_mul(g, &std, apply_op(g, &std, op, in), R))->data[0];
                    in[k]->data[i] = keep - h;
                    nomul_graph_reset(g);
                    double dn = nomul_sum(g, nomul_mul(g, &std, apply_op(g, &std, op, in), R))->data[0];
                    in[k]->data[i] = keep;
                    fds[s] = (up - dn) / (2.0 * h);
                }
                int ok = 0;
                for (int s = 0; s < 2; s++)
                    ok |= fabs(fds[s] - in[k]->grad[i]) <= 2e-2 * fabs(fds[s]) + 2e-3;
                if (!ok)
                    FAIL_SEED("%s input %d element %ld: gradient %g, finite differences %g, %g",
                              names[op], k, i, (double)in[k]->grad[i], fds[0], fds[1]);
            }
        for (int k = 0; k < nin; k++)
            nomul_tensor_free(in[k]);
        nomul_tensor_free(R);
    }
    nomul_graph_free(g);
}

/* PA operations are wired to the arithmetic: forward and backward bit for
 * bit against direct calls, with and without an offset. */
static void test_pa_ops_wiring(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xB1};
    nomul_graph *g = nomul_graph_new(1 << 23);
    for (int variant = 0; variant < 8; variant++) {
        /* 4 and 8: 300 × 301, the scale's chunks on the threads */
        int s2[2] = {variant & 4 ? 300 : 4, variant & 4 ? 301 : 6};
        int approx = variant & 1;
        float off = variant & 2 ? 1.0552f : 1.0f;
        nomul_op_cfg pa = {NOMUL_OP_PAM, approx, off};
        nomul_tensor *a = rand_tensor(&r, 2, s2, 1), *b = rand_tensor(&r, 2, s2, 1);
        nomul_graph_reset(g);
        nomul_tensor *y = nomul_mul(g, &pa, a, b);
        nomul_tensor *z = nomul_scale(g, &pa, y, 3.0f);
        nomul_tensor *loss = nomul_mean(g, &pa, z);
        nomul_backward(g, loss);
        float s = 0.0f;
#define PM(x, y) (off != 1.0f ? nomul_pa_mul_off(x, y, off) : nomul_pa_mul(x, y))
        for (long i = 0; i < a->n; i++)
            s += PM(PM(a->data[i], b->data[i]), 3.0f);
        assert_int_equal(tu_bits(loss->data[0]), tu_bits(nomul_pa_div(s, (float)a->n)));
        float gm, unused;
        if (approx)
            gm = nomul_pa_div(1.0f, (float)a->n);
        else
            nomul_pa_div_grad(s, (float)a->n, 1.0f, &gm, &unused);
        for (long i = 0; i < a->n; i++) {
            float p = PM(a->data[i], b->data[i]), dz, dy, da, db;
            if (approx) {
                dz = PM(gm, 3.0f);
                da = PM(dz, b->data[i]);
                db = PM(dz, a->data[i]);
            } else if (off != 1.0f) {
                nomul_pa_mul_grad(p, nomul_pa_mul(3.0f, off), gm, &dz, &unused);
                nomul_pa_mul_off_grad(a->data[i], b->data[i], off, dz, &da, &db);
            } else {
                nomul_pa_mul_grad(p, 3.0f, gm, &dz, &unused);
                nomul_pa_mul_grad(a->data[i], b->data[i], dz, &da, &db);
            }
            dy = dz;
            (void)dy;
            assert_int_equal(tu_bits(a->grad[i]), tu_bits(0.0f + da));
            assert_int_equal(tu_bits(b->grad[i]), tu_bits(0.0f + db));
        }
        nomul_tensor_free(a);
        nomul_tensor_free(b);
    }
    nomul_graph_free(g);
}

/* A single-head attention block must learn to copy a class marked at
 * position 0 of each sequence to every position (chance: ln 4 ≈ 1.39). */
static double train_attention(int pa, double *first)
{
    tu_rng r = {tu_seed() ^ 0xB2};
    enum { B = 32, T = 8, D = 16, C = 4 };
    nomul_op_cfgs c;
    if (pa)
        nomul_op_cfgs_all_pam(&c);
    else
        nomul_op_cfgs_default(&c);
    int sw[2] = {D, D}, so[2] = {C, D}, sc = C, sx[2] = {B * T, D};
    nomul_tensor *wq = rand_tensor(&r, 2, sw, 1), *wk = rand_tensor(&r, 2, sw, 1);
    nomul_tensor *wv = rand_tensor(&r, 2, sw, 1), *wo = rand_tensor(&r, 2, so, 1);
    nomul_tensor *bo = nomul_tensor_alloc(1, &sc, 1), *x = nomul_tensor_alloc(2, sx, 0);
    nomul_tensor *params[5] = {wq, wk, wv, wo, bo};
    for (int k = 0; k < 4; k++)
        for (long i = 0; i < params[k]->n; i++)
            params[k]->data[i] *= 0.25f;
    int y[B * T];
    for (int b = 0; b < B; b++) {
        int cls = (int)(tu_u32(&r) % C);
        for (int t = 0; t < T; t++) {
            float *v = x->data + ((long)b * T + t) * D;
            for (int j = 0; j < D; j++)
                v[j] = (float)((int)(tu_u32(&r) % 2001) - 1000) / 2000.0f;
            v[4] = t == 0 ? 2.0f : 0.0f;
            if (t == 0)
                for (int j = 0; j < C; j++)
                    v[j] = j == cls ? 2.0f : 0.0f;
            y[b * T + t] = cls;
        }
    }
    float *mo[5], *ve[5];
    for (int k = 0; k < 5; k++) {
        mo[k] = calloc((size_t)params[k]->n, sizeof(float));
        ve[k] = calloc((size_t)params[k]->n, sizeof(float));
    }
    nomul_adamw opt;
    nomul_adamw_init(&opt, 0.01f, 0.0f, &c.family[NOMUL_CFG_OPT_FUNCTIONAL]);
    nomul_graph *g = nomul_graph_new(1 << 23);
    const nomul_op_cfg *lin = &c.family[NOMUL_CFG_LINEAR], *bmm = &c.family[NOMUL_CFG_BMM];
    const nomul_op_cfg *fun = &c.family[NOMUL_CFG_FUNCTIONAL];
    int s3[3] = {B, T, D};
    double loss = 0;
    for (int step = 0; step < train_steps(); step++) {
        nomul_graph_reset(g);
        for (int k = 0; k < 5; k++)
            nomul_tensor_zero_grad(params[k]);
        nomul_tensor *q = nomul_reshape(g, nomul_linear(g, lin, x, wq, NULL), 3, s3);
        nomul_tensor *k = nomul_reshape(g, nomul_linear(g, lin, x, wk, NULL), 3, s3);
        nomul_tensor *v = nomul_reshape(g, nomul_linear(g, lin, x, wv, NULL), 3, s3);
        nomul_tensor *att = nomul_softmax(g, fun, nomul_scale(g, fun, nomul_matmul(g, bmm, q, k, 1), 0.25f));
        nomul_tensor *o = nomul_reshape(g, nomul_matmul(g, bmm, att, v, 0), 2, sx);
        nomul_tensor *l = nomul_cross_entropy(g, &c.family[NOMUL_CFG_LOSS_FUNCTIONAL],
                                              nomul_linear(g, lin, o, wo, bo), y, -100, 0.0f);
        assert_non_null(l);
        loss = l->data[0];
        if (step == 0)
            *first = loss;
        nomul_backward(g, l);
        nomul_adamw_begin_step(&opt);
        for (int kk = 0; kk < 5; kk++)
            nomul_adamw_update(&opt, (size_t)params[kk]->n, params[kk]->data, params[kk]->grad,
                               mo[kk], ve[kk]);
    }
    nomul_graph_free(g);
    for (int k = 0; k < 5; k++) {
        free(mo[k]);
        free(ve[k]);
        nomul_tensor_free(params[k]);
    }
    nomul_tensor_free(x);
    return loss;
}

static void test_attention_block_trains(void **state)
{
    (void)state;
    for (int pa = 0; pa <= 1; pa++) {
        double first = 0, last = train_attention(pa, &first);
        printf("  attention, %-36s loss %.4f -> %.4f\n",
               pa ? "fully piecewise affine (exact bwd)" : "float", first, last);
        if (!converged(first, last, 0.3))
            FAIL_SEED("attention (%s): loss %g -> %g after 300 steps, want below 0.3",
                      pa ? "PA" : "float", first, last);
    }
}

static void test_op_errors(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xB3};
    nomul_graph *g = nomul_graph_new(1 << 16);
    int emb[2] = {5, 4}, s2[2] = {3, 7}, s3[2] = {7, 3};
    nomul_tensor *t = rand_tensor(&r, 2, emb, 1), *a = rand_tensor(&r, 2, s2, 1);
    nomul_tensor *b = rand_tensor(&r, 2, s2, 1), *c = rand_tensor(&r, 2, s3, 1);
    nomul_op_cfg std = {NOMUL_OP_STANDARD, 0, 1.0f};
    int bad_ids[2] = {1, 5};
    unsigned long long st = 1;
    nomul_set_error_handler(NULL);
    nomul_clear_error();
    assert_null(nomul_embedding(g, t, bad_ids, 2));
    assert_non_null(strstr(nomul_last_error_message(), "id 5 at position 1"));
    nomul_clear_error();
    assert_null(nomul_dropout(g, &std, a, 1.0f, &st));
    assert_non_null(strstr(nomul_last_error_message(), "p = 1"));
    nomul_clear_error();
    assert_null(nomul_matmul(g, &std, a, b, 0));
    assert_non_null(strstr(nomul_last_error_message(), "do not multiply"));
    nomul_clear_error();
    assert_null(nomul_mul(g, &std, a, c));
    assert_non_null(strstr(nomul_last_error_message(), "do not broadcast"));
    nomul_clear_error();
    int s5[2] = {5, 5};
    assert_null(nomul_reshape(g, a, 2, s5));
    assert_non_null(strstr(nomul_last_error_message(), "21 elements"));
    nomul_clear_error();
    assert_null(nomul_concat(g, a, c, 0)); /* (3, 7) and (7, 3) */
    assert_non_null(strstr(nomul_last_error_message(), "every other dimension must agree"));
    nomul_clear_error();
    assert_non_null(nomul_concat(g, a, b, 0));
    assert_null(nomul_narrow(g, a, 1, 5, 3));
    assert_non_null(strstr(nomul_last_error_message(), "entries 5..7 of dimension 1"));
    /* a NULL input passes the first error on */
    nomul_clear_error();
    assert_null(nomul_relu(g, nomul_matmul(g, &std, a, b, 0)));
    assert_non_null(strstr(nomul_last_error_message(), "do not multiply"));
    nomul_graph_free(g);
    nomul_tensor_free(t);
    nomul_tensor_free(a);
    nomul_tensor_free(b);
    nomul_tensor_free(c);
}

/* relu's backward (a bit-mask select, vectorized) against its definition,
 * the branch "where x > 0, add dy", bit for bit on every class of float:
 * where x ≤ 0 or NaN the gradient keeps its bits, −0 included (a NaN stays
 * a NaN: a signalling one comes out quiet). */
static void test_relu_backward_matches_branch(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xB3};
    enum { N = 4099 };
    int sh[1] = {N};
    nomul_tensor *x = nomul_tensor_alloc(1, sh, 1), *y = nomul_tensor_alloc(1, sh, 1);
    float *want = malloc(N * sizeof *want);
    assert_non_null(want);
    for (long i = 0; i < N; i++) {
        x->data[i] = i % 7 == 0 ? (i % 2 ? -0.0f : 0.0f) : tu_any_float(&r);
        x->grad[i] = i % 5 == 0 ? -0.0f : tu_any_float(&r);
        y->grad[i] = tu_any_float(&r);
        want[i] = x->grad[i];
        if (x->data[i] > 0.0f)
            want[i] += y->grad[i];
    }
    node nd = {.op = AD_OP_RELU, .in = {x, NULL, NULL}, .out = y};
    ad_relu_backward(&nd);
    for (long i = 0; i < N; i++)
        if (memcmp(&x->grad[i], &want[i], sizeof want[i]) != 0 &&
            !(isnan(x->grad[i]) && isnan(want[i])))
            FAIL_SEED("element %ld: x %a, relu backward gave %a, the branch %a", i, x->data[i],
                      x->grad[i], want[i]);
    free(want);
    nomul_tensor_free(x);
    nomul_tensor_free(y);
}

/* nomul_batch_norm_relu against nomul_relu(nomul_batch_norm(...)), bit for
 * bit: the output, dx, dγ, dβ and the running statistics, in float and in
 * PA form (exact and approximate backward, with an offset), on planes that
 * fill whole 16-lane groups and on gathered ones (S = 9), in training and in
 * evaluation, on every instruction set. Channel 0 has γ = β = 0 (every output exactly 0, so no
 * gradient passes the relu); the upstream gradient has +0 and −0 entries. */
static void test_batch_norm_relu_is_the_pair(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xB6};
    static const int shapes[][4] = {{3, 4, 4, 4}, {3, 4, 3, 3}, {8, 5, 8, 8}};
    const nomul_op_cfg cfgs[] = {{NOMUL_OP_STANDARD, 0, 1.0f},
                                 {NOMUL_OP_PAM, 0, 1.0f},
                                 {NOMUL_OP_PAM, 1, 1.0f},
                                 {NOMUL_OP_PAM, 0, 1.0552f}};
    nomul_graph *g = nomul_graph_new(1 << 22);
    for (int it = 0; it < 24 * ((int)nomul_isa_max() + 1); it++) {
        /* every instruction set's passes; the pair's relu is the same everywhere */
        nomul_isa_set((nomul_isa)(it / 24));
        const int si = it % 3, ci = it / 3 % 4, training = it / 12 % 2;
        const int *sh = shapes[si], C = sh[1];
        nomul_tensor *x[2], *gm[2], *bt[2];
        float rm[2][8], rv[2][8];
        x[0] = rand_tensor(&r, 4, sh, 1);
        gm[0] = rand_tensor(&r, 1, &sh[1], 1);
        bt[0] = rand_tensor(&r, 1, &sh[1], 1);
        gm[0]->data[0] = bt[0]->data[0] = 0.0f;
        for (int k = 0; k < C; k++) {
            rm[0][k] = (float)(tu_u32(&r) % 100) / 50.0f - 1.0f;
            rv[0][k] = 0.25f + (float)(tu_u32(&r) % 100) / 40.0f;
        }
        x[1] = nomul_tensor_alloc(4, sh, 1);
        gm[1] = nomul_tensor_alloc(1, &sh[1], 1);
        bt[1] = nomul_tensor_alloc(1, &sh[1], 1);
        memcpy(x[1]->data, x[0]->data, (size_t)x[0]->n * sizeof(float));
        memcpy(gm[1]->data, gm[0]->data, (size_t)C * sizeof(float));
        memcpy(bt[1]->data, bt[0]->data, (size_t)C * sizeof(float));
        memcpy(rm[1], rm[0], sizeof rm[0]);
        memcpy(rv[1], rv[0], sizeof rv[0]);
        nomul_tensor *R = rand_tensor(&r, 4, sh, 0);
        for (long i = 0; i < R->n; i += 5)
            R->data[i] = i % 10 ? -0.0f : 0.0f;
        const nomul_op_cfg *c = &cfgs[ci];
        nomul_op_cfg std = {NOMUL_OP_STANDARD, 0, 1.0f};
        float *ys[2];
        for (int fused = 0; fused < 2; fused++) {
            nomul_graph_reset(g);
            nomul_tensor *y =
                fused ? nomul_batch_norm_relu(g, c, x[1], gm[1], bt[1], rm[1], rv[1],
                                              1e-5f, 0.1f, training)
                      : nomul_relu(g, nomul_batch_norm(g, c, x[0], gm[0], bt[0], rm[0],
                                                       rv[0], 1e-5f, 0.1f, training));
            assert_non_null(y);
            ys[fused] = malloc((size_t)y->n * sizeof(float));
            memcpy(ys[fused], y->data, (size_t)y->n * sizeof(float));
            if (training)
                nomul_backward(g, nomul_sum(g, nomul_mul(g, &std, y, R)));
        }
        const char *what = training ? "training" : "evaluation";
#define SAME_BITS(name, a, b, n)                                                                   \
    for (long i_ = 0; i_ < (long)(n); i_++)                                                        \
        if (memcmp(&(a)[i_], &(b)[i_], sizeof(float)))                                             \
            FAIL_SEED("%s, shape %d, %s: batch_norm_relu, cfg %d: %s[%ld] fused %a, the pair %a",  \
                      what, si, nomul_isa_name(nomul_isa_active()), ci, name, i_,                  \
                      (double)(b)[i_], (double)(a)[i_]);
        SAME_BITS("y", ys[0], ys[1], x[0]->n);
        SAME_BITS("running_mean", rm[0], rm[1], C);
        SAME_BITS("running_var", rv[0], rv[1], C);
        if (training) {
            SAME_BITS("dx", x[0]->grad, x[1]->grad, x[0]->n);
            SAME_BITS("dgamma", gm[0]->grad, gm[1]->grad, C);
            SAME_BITS("dbeta", bt[0]->grad, bt[1]->grad, C);
        }
#undef SAME_BITS
        for (int k = 0; k < 2; k++) {
            free(ys[k]);
            nomul_tensor_free(x[k]);
            nomul_tensor_free(gm[k]);
            nomul_tensor_free(bt[k]);
        }
        nomul_tensor_free(R);
    }
    nomul_isa_set(nomul_isa_max());
    nomul_graph_free(g);
}

/* Attention against loops, and key padding: masked keys' values do not
 * matter. */
static void test_attention_definition(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xB4};
    enum { Bn = 2, T = 4, H = 2, DH = 3, D = H * DH };
    int s3[3] = {Bn, T, D}, sm[4] = {Bn, 1, 1, T};
    nomul_tensor *q = rand_tensor(&r, 3, s3, 0), *k = rand_tensor(&r, 3, s3, 0);
    nomul_tensor *v = rand_tensor(&r, 3, s3, 0), *pad = nomul_tensor_alloc(4, sm, 0);
    pad->data[3] = -INFINITY; /* batch 0: the last key is padding */
    nomul_op_cfgs cf;
    nomul_op_cfgs_default(&cf);
    nomul_graph *g = nomul_graph_new(1 << 20);
    nomul_tensor *o = nomul_attention(g, &cf.family[NOMUL_CFG_BMM],
                                      &cf.family[NOMUL_CFG_FUNCTIONAL], q, k, v, H, pad);
    for (int b = 0; b < Bn; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                double sc[T], mx = -INFINITY, sum = 0;
                for (int j = 0; j < T; j++) {
                    double d = 0;
                    for (int e = 0; e < DH; e++)
                        d += (double)q->data[(b * T + i) * D + h * DH + e] *
                             k->data[(b * T + j) * D + h * DH + e];
                    sc[j] = d / sqrt((double)DH) + pad->data[b * T + j];
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                for (int j = 0; j < T; j++)
                    sum += (sc[j] = exp(sc[j] - mx));
                for (int e = 0; e < DH; e++) {
                    double want = 0;
                    for (int j = 0; j < T; j++)
                        want += sc[j] / sum * v->data[(b * T + j) * D + h * DH + e];
                    float got = o->data[(b * T + i) * D + h * DH + e];
                    if (fabs(got - want) > 1e-5 * (fabs(want) + 1))
                        FAIL_SEED("attention (%d,%d,%d,%d): %g, want %g", b, h, i, e,
                                  (double)got, want);
                }
            }
    /* the padded key's value does not matter, in float and PA modes */
    for (int pa = 0; pa <= 1; pa++) {
        if (pa)
            nomul_op_cfgs_all_pam(&cf);
        nomul_graph_reset(g);
        float before[Bn * T * D];
        memcpy(before, nomul_attention(g, &cf.family[NOMUL_CFG_BMM],
                                       &cf.family[NOMUL_CFG_FUNCTIONAL], q, k, v, H, pad)->data,
               sizeof before);
        for (int e = 0; e < D; e++)
            v->data[(0 * T + 3) * D + e] += 100.0f;
        nomul_graph_reset(g);
        nomul_tensor *o2 = nomul_attention(g, &cf.family[NOMUL_CFG_BMM],
                                           &cf.family[NOMUL_CFG_FUNCTIONAL], q, k, v, H, pad);
        for (int i = 0; i < T * D; i++) /* batch 0 only */
            assert_int_equal(tu_bits(o2->data[i]), tu_bits(before[i]));
    }
    nomul_graph_free(g);
    nomul_tensor_free(q);
    nomul_tensor_free(k);
    nomul_tensor_free(v);
    nomul_tensor_free(pad);
}

static void test_sinusoidal_positions(void **state)
{
    (void)state;
    float t[10 * 8];
    nomul_sinusoidal_positions(10, 8, t);
    for (int p = 0; p < 10; p++)
        for (int i = 0; i < 4; i++) {
            double a = p * pow(10000.0, -(double)i / 3.0);
            assert_true(fabs(t[p * 8 + i] - sin(a)) < 1e-6);
            assert_true(fabs(t[p * 8 + 4 + i] - cos(a)) < 1e-6);
        }
}

/* The audit: counts come from the paths that run. A PAM linear counts one
 * PAM per product; the float one one multiply; a fully PA training step
 * executes no float multiply, divide or transcendental at all. */
static void test_audit_counts(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xB5};
    int sx[2] = {5, 7}, sw[2] = {3, 7};
    nomul_tensor *x = rand_tensor(&r, 2, sx, 0), *w = rand_tensor(&r, 2, sw, 0);
    nomul_graph *g = nomul_graph_new(1 << 16);
    nomul_op_cfg pam = {NOMUL_OP_PAM, 0, 1.0f}, std = {NOMUL_OP_STANDARD, 0, 1.0f};
    nomul_op_counts c;
    nomul_counts_reset();
    nomul_counts_enable(1);
    nomul_linear(g, &pam, x, w, NULL);
    nomul_counts_get(&c);
    assert_int_equal(c.n[NOMUL_COUNT_PAM], 5 * 3 * 7);
    assert_int_equal(c.n[NOMUL_COUNT_FMUL], 0);
    nomul_counts_reset();
    nomul_linear(g, &std, x, w, NULL);
    nomul_counts_get(&c);
    assert_int_equal(c.n[NOMUL_COUNT_FMUL], 5 * 3 * 7);
    assert_int_equal(c.n[NOMUL_COUNT_PAM], 0);
    nomul_counts_enable(0);
    nomul_counts_reset();
    nomul_linear(g, &pam, x, w, NULL); /* counting off: nothing */
    nomul_counts_get(&c);
    assert_int_equal(c.n[NOMUL_COUNT_PAM], 0);
    nomul_graph_free(g);
    nomul_tensor_free(x);
    nomul_tensor_free(w);

    /* one training step of a small ViT (train's default, shrunk) */
    nomul_train_config all;
    nomul_train_config_default(&all);
    snprintf(all.model, sizeof all.model, "vit_fmnist_tiny");
    all.batch_size = 2;
    /* the default: fully PA with the approximate backward (PAMs, no shifts
     * of exact derivatives) */
    assert_int_equal(nomul_audit_step(&all, &c), 0);
    assert_int_equal(c.n[NOMUL_COUNT_FMUL], 0);
    assert_int_equal(c.n[NOMUL_COUNT_FDIV], 0);
    assert_int_equal(c.n[NOMUL_COUNT_FTRANS], 0);
    assert_true(c.n[NOMUL_COUNT_PAM] > 100000);
    /* with exact derivatives: their exponent shifts too */
    for (int f = 0; f < NOMUL_CFG_COUNT; f++)
        all.ops.family[f].approx_bwd = 0;
    assert_int_equal(nomul_audit_step(&all, &c), 0);
    assert_int_equal(c.n[NOMUL_COUNT_FMUL], 0);
    assert_int_equal(c.n[NOMUL_COUNT_FDIV], 0);
    assert_int_equal(c.n[NOMUL_COUNT_FTRANS], 0);
    assert_true(c.n[NOMUL_COUNT_PAM] > 100000 && c.n[NOMUL_COUNT_SHIFT] > 100000);
    nomul_train_config none = all;
    nomul_op_cfgs_default(&none.ops);
    assert_int_equal(nomul_audit_step(&none, &c), 0);
    assert_true(c.n[NOMUL_COUNT_FMUL] > 100000);
    assert_int_equal(c.n[NOMUL_COUNT_PAM], 0);
    /* one family left in float shows up */
    all.ops.family[NOMUL_CFG_OPT_FUNCTIONAL].subtype = NOMUL_OP_STANDARD;
    assert_int_equal(nomul_audit_step(&all, &c), 0);
    assert_true(c.n[NOMUL_COUNT_FMUL] > 0 && c.n[NOMUL_COUNT_FTRANS] > 0);
}

static void test_no_grad_and_arena_limits(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xAF};
    nomul_op_cfgs c;
    nomul_op_cfgs_default(&c);
    mlp m = mlp_new(&r, 5, 6, 3);
    int xs[2] = {4, 5}, y[4] = {0, 1, 2, 0};
    nomul_tensor *x = nomul_tensor_alloc(2, xs, 0);
    nomul_graph *g = nomul_graph_new(1 << 16);
    nomul_graph_set_grad(g, 0);
    nomul_tensor *l = mlp_loss(g, &c, &m, x, y);
    assert_non_null(l);
    assert_null(l->grad); /* nothing recorded: the loss has no gradient */
    nomul_clear_error();
    nomul_backward(g, l);
    assert_int_equal(nomul_last_error(), NOMUL_EINVAL);
    nomul_graph_free(g);
    /* an arena too small is a reported error, not a crash */
    nomul_set_error_handler(NULL);
    g = nomul_graph_new(256);
    nomul_clear_error();
    assert_null(mlp_loss(g, &c, &m, x, y));
    assert_int_equal(nomul_last_error(), NOMUL_ENOMEM);
    nomul_graph_free(g);
    nomul_tensor_free(x);
    mlp_free(&m);
}

/* Every entry of the op table is filled (a forgotten row would be NULL) and
 * named once; a forward records its own entry with its inputs. */
/* nomul_transpose (a blocked copy) against the plain index map, on random
 * shapes of 1 to 5 dimensions and every pair of dimensions; its backward
 * (the copy back, accumulated) against the same map. */
/* The backward makes the gradients of operation outputs and reuses their
 * memory: a chain of L layers needs a few layers' gradients beyond its
 * activations, not L; intermediate gradients are NULL afterwards; the
 * leaves' are right (against the chain's plain derivative); and an arena
 * that holds the forward but not the backward's gradients is reported. */
static void test_backward_reuses_gradient_memory(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x6e3};
    enum { L = 12 };
    int s2[2] = {64, 256}; /* 64 KB per activation */
    const size_t act = 64 * 256 * sizeof(float);
    nomul_tensor *x = rand_tensor(&r, 2, s2, 1), *b[L];
    for (int l = 0; l < L; l++)
        b[l] = rand_tensor(&r, 2, s2, 1);
    for (int small = 0; small < 2; small++) {
        /* first a roomy arena; then one a block short of the backward's need */
        static size_t need;
        nomul_graph *g = nomul_graph_new(small ? need : (size_t)64 << 20);
        assert_non_null(g);
        nomul_tensor *h[L + 1];
        h[0] = x;
        for (int l = 0; l < L; l++)
            h[l + 1] = nomul_relu(g, nomul_add(g, h[l], b[l]));
        nomul_tensor *loss = nomul_sum(g, h[L]);
        assert_non_null(loss);
        const size_t fwd = nomul_graph_arena_use(g).used;
        for (int l = 0; l < L; l++)
            nomul_tensor_zero_grad(b[l]);
        nomul_tensor_zero_grad(x);
        nomul_clear_error();
        int rc = nomul_backward(g, loss);
        const size_t peak = nomul_graph_arena_use(g).peak;
        if (!small) {
            assert_int_equal(rc, 0);
            /* the add's and the relu's output gradients of the layer the
             * backward is in, and one reused block: at most 3, not 2·L */
            if (peak - fwd > 3 * act + 4096 || peak > (size_t)(2 * L + 3) * act + 16384)
                FAIL_SEED("the step peaked at %zu bytes (forward %zu), want at most its %d "
                          "activations and 3 more of %zu bytes", peak, fwd, 2 * L, act);
            for (int l = 1; l <= L; l++)
                assert_null(h[l]->grad);
            /* d sum / d b_l = Π_{k ≥ l} [pre-activation k > 0], elementwise */
            for (int l = 0; l < L; l++)
                for (long i = 0; i < x->n; i++) {
                    float want = 1.0f;
                    for (int k = l; k < L; k++)
                        want = h[k + 1]->data[i] > 0.0f ? want : 0.0f;
                    if (b[l]->grad[i] != want)
                        FAIL_SEED("layer %d element %ld: gradient %g, want %g", l, i,
                                  (double)b[l]->grad[i], (double)want);
                }
            need = peak - act / 2; /* enough for the forward, not for the backward */
        } else {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(nomul_last_error_message(), "arena is full"));
            nomul_clear_error();
        }
        nomul_graph_free(g);
    }
    nomul_tensor_free(x);
    for (int l = 0; l < L; l++)
        nomul_tensor_free(b[l]);
}

static void test_transpose_matches_index_map(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x7a11};
    nomul_graph *g = nomul_graph_new(1 << 22);
    for (int rep = 0; rep < 64; rep++) {
        int nd = 1 + (int)(tu_u32(&r) % 5), shape[NOMUL_MAX_DIMS];
        for (int d = 0; d < nd; d++)
            shape[d] = 1 + (int)(tu_u32(&r) % 6);
        if (rep >= 60) { /* 83,250 elements: the threaded copy (2^16 and more) */
            static const int big[4] = {3, 37, 5, 150};
            nd = 4;
            memcpy(shape, big, sizeof big);
        }
        int d0 = (int)(tu_u32(&r) % (unsigned)nd), d1 = (int)(tu_u32(&r) % (unsigned)nd);
        nomul_tensor *x = nomul_tensor_alloc(nd, shape, 1);
        for (long i = 0; i < x->n; i++) {
            x->data[i] = (float)(tu_u32(&r) % 1000);
            x->grad[i] = (float)(tu_u32(&r) % 7);
        }
        float *g0 = malloc((size_t)x->n * sizeof *g0);
        memcpy(g0, x->grad, (size_t)x->n * sizeof *g0);
        nomul_graph_reset(g);
        nomul_tensor *y = nomul_transpose(g, x, d0, d1);
        assert_non_null(y);
        /* nomul_backward would make y's gradient; this test runs the op's
         * backward itself, so it gives y one */
        float *gy = malloc((size_t)y->n * sizeof *gy);
        assert_non_null(gy);
        y->grad = gy;
        for (long i = 0; i < y->n; i++)
            y->grad[i] = (float)(tu_u32(&r) % 1000);
        nomul_tensor *l = nomul_sum(g, y);
        (void)l;
        ad_op_table[AD_OP_TRANSPOSE].backward(&g->tape[0]);
        /* walk x's indices; y's index is x's with d0, d1 swapped */
        int idx[NOMUL_MAX_DIMS] = {0};
        for (long i = 0; i < x->n; i++) {
            int yi[NOMUL_MAX_DIMS];
            memcpy(yi, idx, sizeof yi);
            yi[d0] = idx[d1];
            yi[d1] = idx[d0];
            long yo = 0;
            for (int d = 0; d < nd; d++)
                yo = yo * y->shape[d] + yi[d];
            if (y->data[yo] != x->data[i] || x->grad[i] != g0[i] + y->grad[yo]) {
                fprintf(stderr, "transpose of %d-D (%d, %d), element %ld differs; "
                        "NOMUL_TEST_SEED=%llu\n", nd, d0, d1, i, (unsigned long long)tu_seed());
                fail();
            }
            for (int d = nd - 1; d >= 0 && ++idx[d] == shape[d]; d--)
                idx[d] = 0;
        }
        free(g0);
        free(gy);
        nomul_tensor_free(x);
    }
    nomul_graph_free(g);
}

/* a uniform value in [0, 1) */
static float unit01(tu_rng *r) { return (float)(tu_u32(r) >> 8) * 0x1p-24f; }

/* The linear layer's bias, forward (y += b on every row) and backward (db
 * += each column's sum of dy, in row order), on the threads from 2^16
 * elements on: bit for bit the plain loops, y's product being nomul_gemm's
 * own, for float and PA products, on sizes around the threaded path's
 * threshold and its column blocks (one per thread, a multiple of 16). */
static void test_linear_bias_matches_plain_loops(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xb1a5};
    static const int sizes[][3] = {{5, 7, 3}, {300, 9, 230}, {1030, 4, 97}, {64, 3, 1024}};
    nomul_graph *g = nomul_graph_new(1 << 24);
    for (int pa = 0; pa < 2; pa++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            int rows = sizes[s][0], in = sizes[s][1], out = sizes[s][2];
            nomul_op_cfg cfg = {pa ? NOMUL_OP_PAM : NOMUL_OP_STANDARD, 1, 1.0f};
            int xs[2] = {rows, in}, ws[2] = {out, in}, bs[1] = {out};
            nomul_tensor *x = nomul_tensor_alloc(2, xs, 1), *w = nomul_tensor_alloc(2, ws, 1),
                         *b = nomul_tensor_alloc(1, bs, 1);
            assert_true(x && w && b);
            for (long i = 0; i < x->n; i++)
                x->data[i] = unit01(&r) - 0.5f, x->grad[i] = 0.0f;
            for (long i = 0; i < w->n; i++)
                w->data[i] = unit01(&r) - 0.5f, w->grad[i] = 0.0f;
            float *b0 = malloc((size_t)out * sizeof *b0), *want = malloc((size_t)rows * out * 4);
            float *dy = malloc((size_t)rows * out * sizeof *dy);
            assert_true(b0 && want && dy);
            for (int j = 0; j < out; j++)
                b->data[j] = unit01(&r) - 0.5f,
                b->grad[j] = b0[j] = unit01(&r);
            nomul_graph_reset(g);
            nomul_tensor *y = nomul_linear(g, &cfg, x, w, b);
            assert_non_null(y);
            nomul_gemm(&cfg, CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, x->data, in,
                       w->data, in, 0.0f, want, out);
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < out; j++)
                    want[(long)i * out + j] += b->data[j];
            for (long i = 0; i < y->n; i++)
                if (memcmp(&y->data[i], &want[i], 4)) {
                    fprintf(stderr, "linear %dx%d->%d (%s): y[%ld] = %a, want %a; "
                            "NOMUL_TEST_SEED=%llu\n", rows, in, out, pa ? "pa" : "float", i,
                            (double)y->data[i], (double)want[i], (unsigned long long)tu_seed());
                    fail();
                }
            y->grad = dy;
            for (long i = 0; i < y->n; i++)
                dy[i] = unit01(&r) - 0.5f;
            ad_op_table[AD_OP_LINEAR].backward(&g->tape[0]);
            for (int j = 0; j < out; j++) {
                float sum = b0[j];
                for (int i = 0; i < rows; i++)
                    sum += dy[(long)i * out + j];
                if (memcmp(&sum, &b->grad[j], 4)) {
                    fprintf(stderr, "linear %dx%d->%d (%s): db[%d] = %a, want %a; "
                            "NOMUL_TEST_SEED=%llu\n", rows, in, out, pa ? "pa" : "float", j,
                            (double)b->grad[j], (double)sum, (unsigned long long)tu_seed());
                    fail();
                }
            }
            free(b0);
            free(want);
            free(dy);
            nomul_tensor_free(x);
            nomul_tensor_free(w);
            nomul_tensor_free(b);
        }
    nomul_graph_free(g);
}

/* Dropout draws its mask and scales on the array kernels; its plain twin is
 * the element-by-element definition: splitmix64's draws from the generator
 * in order (kept when the upper 32 bits are at least p·2^32), kept elements
 * scaled by s (PAM in PA mode), and the backward's term per kept element
 * (s·dy, PAM(dy, s) or the exact ∂PAM(x, s)/∂x · dy) added to the
 * gradient, a dropped element's gradient left as it was (−0 too). Bit for
 * bit, over sizes around the backward's chunk, with zeros and −0. */
static void test_dropout_matches_definition(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xB7};
    static const int sizes[] = {1, 7, 2047, 2048, 2049, 5000, 70001}; /* 70001: threaded */
    nomul_graph *g = nomul_graph_new(1 << 22);
    for (int rep = 0; rep < 28; rep++) {
        int n = sizes[rep % 7];
        nomul_op_cfg c = {rep % 3 ? NOMUL_OP_PAM : NOMUL_OP_STANDARD, rep % 3 == 2, 1.0f};
        float p = (float)(tu_next(&r) % 900) / 1000.0f + 0.05f;
        nomul_tensor *x = nomul_tensor_alloc(1, &n, 1), *w = nomul_tensor_alloc(1, &n, 0);
        for (int i = 0; i < n; i++) {
            x->data[i] = (float)((int)(tu_next(&r) % 2001) - 1000) / 37.0f;
            x->grad[i] = i % 5 == 0 ? -0.0f : (float)(i % 7) - 3.0f;
        }
        float *grad0 = malloc((size_t)n * sizeof *grad0);
        memcpy(grad0, x->grad, (size_t)n * sizeof *grad0);
        unsigned long long st = tu_next(&r), st0 = st;
        nomul_graph_reset(g);
        for (int i = 0; i < n; i++) /* dy: Σ y·w's gradient, w exactly (float) */
            w->data[i] = (float)((int)(tu_next(&r) % 2001) - 1000) / 91.0f;
        nomul_tensor *y = nomul_dropout(g, &c, x, p, &st);
        assert_non_null(y);
        nomul_op_cfg std = {NOMUL_OP_STANDARD, 0, 1.0f};
        nomul_backward(g, nomul_sum(g, nomul_mul(g, &std, y, w)));
        int pa = c.subtype != NOMUL_OP_STANDARD;
        float s = pa ? nomul_pa_div(1.0f, 1.0f - p) : 1.0f / (1.0f - p);
        uint64_t th = (uint64_t)ldexp((double)p, 32), q = st0;
        for (int i = 0; i < n; i++) {
            int kept = (nomul_splitmix64(&q) >> 32) >= th;
            float want = !kept ? 0.0f : pa ? nomul_pa_mul(x->data[i], s) : s * x->data[i];
            float term = 0.0f, unused, dy = w->data[i];
            if (!pa)
                term = s * dy;
            else if (c.approx_bwd)
                term = nomul_pa_mul(dy, s);
            else
                nomul_pa_mul_grad(x->data[i], s, dy, &term, &unused);
            float gwant = kept ? grad0[i] + term : grad0[i];
            if (tu_bits(y->data[i]) != tu_bits(want) || tu_bits(x->grad[i]) != tu_bits(gwant))
                FAIL_SEED("dropout n %d p %g %s: [%d] y %a (want %a), dx %a (want %a)", n,
                          (double)p, pa ? (c.approx_bwd ? "pa approx" : "pa exact") : "float",
                          i, (double)y->data[i], (double)want, (double)x->grad[i],
                          (double)gwant);
        }
        if (st != q)
            FAIL_SEED("dropout n %d: the generator ends at %llx, %llx after n draws", n,
                      (unsigned long long)st, (unsigned long long)q);
        free(grad0);
        nomul_tensor_free(x);
        nomul_tensor_free(w);
    }
    nomul_graph_free(g);
}

/* Broadcasting add and sub (row loops) against the plain element-by-element
 * walk of numpy's rule, bit for bit, forward and both gradients (which sum
 * over broadcast dimensions in output order). */
static void test_broadcast_add_sub_match_plain_walk(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xadd5};
    nomul_graph *g = nomul_graph_new(1 << 22);
    for (int rep = 0; rep < 80; rep++) {
        int nd = 1 + (int)(tu_u32(&r) % 4), ys[NOMUL_MAX_DIMS], as[NOMUL_MAX_DIMS],
            bs[NOMUL_MAX_DIMS];
        for (int d = 0; d < nd; d++) {
            ys[d] = 1 + (int)(tu_u32(&r) % 5);
            as[d] = tu_u32(&r) % 3 ? ys[d] : 1;
            bs[d] = tu_u32(&r) % 3 ? ys[d] : 1;
        }
        int bd = nd - (int)(tu_u32(&r) % (unsigned)nd); /* b may have fewer dimensions */
        nomul_tensor *a = nomul_tensor_alloc(nd, as, 1), *b = nomul_tensor_alloc(bd, bs + nd - bd, 1);
        for (long i = 0; i < a->n; i++)
            a->data[i] = tu_normal(&r, -4, 4, 1);
        for (long i = 0; i < b->n; i++)
            b->data[i] = tu_normal(&r, -4, 4, 1);
        int sub = (int)(tu_u32(&r) & 1);
        nomul_graph_reset(g);
        nomul_tensor *y = sub ? nomul_sub(g, a, b) : nomul_add(g, a, b);
        assert_non_null(y);
        long n = y->n;
        assert_int_equal(y->ndim, nd);
        float *gy = malloc((size_t)n * sizeof *gy); /* the op's backward is run directly */
        assert_non_null(gy);
        y->grad = gy;
        for (long i = 0; i < n; i++)
            y->grad[i] = tu_normal(&r, -4, 4, 1);
        ad_op_table[g->tape[0].op].backward(&g->tape[0]);
        float *ga = calloc((size_t)a->n, sizeof *ga), *gb = calloc((size_t)b->n, sizeof *gb);
        int idx[NOMUL_MAX_DIMS] = {0};
        for (long i = 0; i < n; i++) {
            long ia = 0, ib = 0;
            for (int d = 0; d < nd; d++) {
                ia = ia * as[d] + (as[d] == 1 ? 0 : idx[d]);
                if (d >= nd - bd)
                    ib = ib * bs[d] + (bs[d] == 1 ? 0 : idx[d]);
            }
            float want = sub ? a->data[ia] - b->data[ib] : a->data[ia] + b->data[ib];
            ga[ia] += y->grad[i];
            gb[ib] += sub ? -y->grad[i] : y->grad[i];
            if (tu_bits(want) != tu_bits(y->data[i])) {
                fprintf(stderr, "%s element %ld: %g, plain %g; NOMUL_TEST_SEED=%llu\n",
                        sub ? "sub" : "add", i, y->data[i], want, (unsigned long long)tu_seed());
                fail();
            }
            for (int d = nd - 1; d >= 0 && ++idx[d] == y->shape[d]; d--)
                idx[d] = 0;
        }
        if (memcmp(ga, a->grad, (size_t)a->n * 4) || memcmp(gb, b->grad, (size_t)b->n * 4)) {
            fprintf(stderr, "%s gradients differ from the plain walk; NOMUL_TEST_SEED=%llu\n",
                    sub ? "sub" : "add", (unsigned long long)tu_seed());
            fail();
        }
        free(ga);
        free(gb);
        free(gy);
        nomul_tensor_free(a);
        nomul_tensor_free(b);
    }
    nomul_graph_free(g);
}

/* The op table's first-writer stores (ad_op_def.stores): a backward told
 * that an input's gradient is fresh (nd->store[k], the buffer left
 * unfilled) writes the bits that += into a zero-filled one gives. Each op
 * with a `stores` bit runs twice, into zeros with store 0 and into a
 * buffer of NaN garbage with store 1, on inputs where a −0 could leak: x
 * and dy half zeros of both signs, a whole image's dy zero (all −0, with
 * positive weights, every other case: a sum that began with its first
 * product instead of +0 would be −0 there); every configuration family, every instruction set, the conv
 * paths (implicit, strided, 1×1, grouped, depthwise, small planes). */
static void fill_signed_zeros(tu_rng *r, float *v, long n, unsigned zero_pct)
{
    for (long i = 0; i < n; i++)
        if (tu_u32(r) % 100 < zero_pct)
            v[i] = tu_u32(r) & 1 ? -0.0f : 0.0f;
        else
            v[i] = (float)((int)(tu_u32(r) % 2001) - 1000) / 700.0f;
}

static void store_twice(const node *nd, nomul_tensor *const *ins, int nin, const char *what)
{
    float *keep[3] = {0};
    for (int pass = 0; pass < 2; pass++) {
        node n2 = *nd;
        for (int k = 0; k < nin; k++) {
            nomul_tensor *t = ins[k];
            if (!t->grad)
                continue;
            n2.store[k] = (unsigned char)(pass && (ad_op_table[nd->op].stores >> k & 1));
            for (long i = 0; i < t->n; i++) /* a NaN with a payload, or zeros */
                t->grad[i] = n2.store[k] ? tu_float(0x7fc0beefu) : 0.0f;
        }
        ad_op_table[nd->op].backward(&n2);
        for (int k = 0; k < nin; k++) {
            nomul_tensor *t = ins[k];
            if (!t->grad)
                continue;
            if (!pass) {
                keep[k] = malloc((size_t)t->n * sizeof(float));
                memcpy(keep[k], t->grad, (size_t)t->n * sizeof(float));
                continue;
            }
            for (long i = 0; i < t->n; i++)
                if (tu_bits(keep[k][i]) != tu_bits(t->grad[i]))
                    FAIL_SEED("%s, %s: input %d's gradient [%ld] stored %a, added into zeros %a",
                              what, nomul_isa_name(nomul_isa_active()), k, i,
                              (double)t->grad[i], (double)keep[k][i]);
        }
    }
    for (int k = 0; k < 3; k++)
        free(keep[k]);
}

/* store_twice on the tape's first node with y's gradient gy (taken: freed
 * after), then the nin input tensors freed */
static void stores_checked(nomul_graph *g, nomul_tensor *y, float *gy, nomul_tensor **ins,
                           int nin, const char *what)
{
    y->grad = gy;
    store_twice(&g->tape[0], ins, nin, what);
    y->grad = NULL;
    free(gy);
    for (int k = 0; k < nin; k++)
        nomul_tensor_free(ins[k]);
}

/* A convolution's backward sums dy for a bias only where the layer has one
 * (ResNet's have none; the sum had run for every layer): with a bias the
 * audit counts one addition per value of dy more than without, on every
 * configuration */
static void test_conv_backward_sums_bias_only_with_one(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xB1A5};
    const nomul_conv2d_desc d = {2, 4, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1};
    const nomul_op_cfg cfgs[] = {{NOMUL_OP_STANDARD, 0, 1.0f},
                                 {NOMUL_OP_PAM, 0, 1.0f},
                                 {NOMUL_OP_PAM, 1, 1.0f}};
    int xs[4] = {d.n, d.c_in, d.h, d.w}, ws[4] = {d.c_out, d.c_in, d.kh, d.kw};
    nomul_tensor *x = nomul_tensor_alloc(4, xs, 1), *w = nomul_tensor_alloc(4, ws, 1);
    nomul_tensor *b = nomul_tensor_alloc(1, &d.c_out, 1);
    fill_signed_zeros(&r, x->data, x->n, 0);
    fill_signed_zeros(&r, w->data, w->n, 0);
    fill_signed_zeros(&r, b->data, b->n, 0);
    nomul_graph *g = nomul_graph_new(1 << 20);
    for (int ci = 0; ci < 3; ci++) {
        unsigned long long fadd[2];
        long ny = 0;
        for (int withb = 0; withb < 2; withb++) {
            nomul_graph_reset(g);
            nomul_tensor *y = nomul_conv2d(g, &cfgs[ci], x, w, withb ? b : NULL, &d);
            assert_non_null(y);
            ny = y->n;
            float *gy = malloc((size_t)y->n * sizeof *gy);
            assert_non_null(gy);
            fill_signed_zeros(&r, gy, y->n, 0);
            y->grad = gy;
            memset(x->grad, 0, (size_t)x->n * sizeof(float));
            memset(w->grad, 0, (size_t)w->n * sizeof(float));
            memset(b->grad, 0, (size_t)b->n * sizeof(float));
            nomul_op_counts c;
            nomul_counts_reset();
            nomul_counts_enable(1);
            ad_op_table[g->tape[0].op].backward(&g->tape[0]);
            nomul_counts_enable(0);
            nomul_counts_get(&c);
            fadd[withb] = c.n[NOMUL_COUNT_FADD];
            y->grad = NULL;
            free(gy);
        }
        if (fadd[1] - fadd[0] != (unsigned long long)ny)
            FAIL_SEED("conv2d cfg %d: backward with a bias counts %llu additions, without %llu: "
                      "a difference of %llu, not dy's %ld values",
                      ci, fadd[1], fadd[0], fadd[1] - fadd[0], ny);
    }
    nomul_counts_reset();
    nomul_graph_free(g);
    nomul_tensor_free(x);
    nomul_tensor_free(w);
    nomul_tensor_free(b);
}

static void test_first_writer_stores(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xF125};
    /* every op that may store is checked here: a new `stores` bit needs a case */
    for (int op = 0; op < AD_OP_COUNT; op++)
        if (ad_op_table[op].stores)
            assert_true(op == AD_OP_CONV2D || op == AD_OP_ADD || op == AD_OP_SUB ||
                        op == AD_OP_CROSS_ENTROPY || op == AD_OP_BATCH_NORM ||
                        op == AD_OP_BATCH_NORM_RELU);
    static const nomul_conv2d_desc descs[] = {
        /* n, c_in, h, w, c_out, kh, kw, stride, pad, dil, groups */
        {3, 8, 9, 9, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* implicit */
        {3, 8, 7, 7, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1},  /* small planes */
        {2, 8, 9, 9, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1},   /* strided */
        {2, 8, 8, 8, 16, 1, 1, 2, 2, 0, 0, 1, 1, 1},  /* 1×1 projection */
        {2, 8, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1, 2},   /* grouped */
        {2, 8, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1, 8},   /* depthwise */
        {2, 1, 9, 9, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1},  /* one input channel */
    };
    const int nd = (int)(sizeof descs / sizeof descs[0]);
    const nomul_op_cfg cfgs[] = {{NOMUL_OP_STANDARD, 0, 1.0f},
                                 {NOMUL_OP_PAM, 0, 1.0f},
                                 {NOMUL_OP_PAM, 1, 1.0f}};
    nomul_graph *g = nomul_graph_new(1 << 22);
    for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
        nomul_isa_set((nomul_isa)isa);
        for (int di = 0; di < nd; di++)
            for (int ci = 0; ci < 3; ci++) {
                const nomul_conv2d_desc *d = &descs[di];
                int xs[4] = {d->n, d->c_in, d->h, d->w};
                int ws[4] = {d->c_out, d->c_in / d->groups, d->kh, d->kw};
                nomul_tensor *x = nomul_tensor_alloc(4, xs, 1), *w = nomul_tensor_alloc(4, ws, 1);
                nomul_tensor *b = nomul_tensor_alloc(1, &d->c_out, 1);
                fill_signed_zeros(&r, x->data, x->n, 50);
                fill_signed_zeros(&r, w->data, w->n, 10);
                fill_signed_zeros(&r, b->data, b->n, 0);
                const int pos = (di + ci) & 1; /* then every product with dy = −0 is −0 */
                for (long i = 0; pos && i < w->n; i++)
                    w->data[i] = fabsf(w->data[i]);
                nomul_graph_reset(g);
                nomul_tensor *y = nomul_conv2d(g, &cfgs[ci], x, w, b, d);
                assert_non_null(y);
                float *gy = malloc((size_t)y->n * sizeof *gy);
                fill_signed_zeros(&r, gy, y->n, 50);
                for (long i = 0; i < y->n / d->n; i++) /* the first image's dy all zeros */
                    gy[i] = pos || i % 3 ? -0.0f : 0.0f;
                char what[64];
                snprintf(what, sizeof what, "conv2d desc %d cfg %d", di, ci);
                nomul_tensor *ins[3] = {x, w, b};
                stores_checked(g, y, gy, ins, 3, what);
            }
    }
    nomul_isa_set(nomul_isa_max());
    for (int rep = 0; rep < 8; rep++) { /* add and sub, flat and broadcast */
        int sub = rep & 1, bcast = rep >> 1 & 1, sh[2] = {5, 37}, bsh[2] = {1, 37};
        nomul_tensor *a = nomul_tensor_alloc(2, sh, 1);
        nomul_tensor *b = nomul_tensor_alloc(2, bcast ? bsh : sh, 1);
        fill_signed_zeros(&r, a->data, a->n, 0);
        fill_signed_zeros(&r, b->data, b->n, 0);
        nomul_graph_reset(g);
        nomul_tensor *y = sub ? nomul_sub(g, a, b) : nomul_add(g, a, b);
        assert_non_null(y);
        float *gy = malloc((size_t)y->n * sizeof *gy);
        fill_signed_zeros(&r, gy, y->n, 50);
        y->grad = gy;
        nomul_tensor *ins[2] = {a, b};
        store_twice(&g->tape[0], ins, 2, sub ? "sub" : "add");
        y->grad = NULL;
        free(gy);
        nomul_tensor_free(a);
        nomul_tensor_free(b);
    }
    for (int rep = 0; rep < 6; rep++) { /* cross-entropy: float, PA approximate and exact */
        int sh[2] = {rep < 3 ? 9 : 33, rep < 3 ? 13 : 300}, tg[33];
        const nomul_op_cfg *cfg = &cfgs[rep % 3];
        nomul_tensor *x = nomul_tensor_alloc(2, sh, 1);
        for (long i = 0; i < x->n; i++)
            x->data[i] = tu_normal(&r, -4, 3, 1);
        for (int i = 0; i < sh[0]; i++)
            tg[i] = i % 4 == 2 ? -1 : (int)(tu_u32(&r) % (unsigned)sh[1]);
        nomul_graph_reset(g);
        nomul_tensor *l = nomul_cross_entropy(g, cfg, x, tg, -1, rep & 1 ? 0.1f : 0.0f);
        assert_non_null(l);
        float gl = 0.75f;
        l->grad = &gl;
        nomul_tensor *ins[1] = {x};
        char what[48];
        snprintf(what, sizeof what, "cross_entropy cfg %d", rep % 3);
        store_twice(&g->tape[0], ins, 1, what);
        l->grad = NULL;
        nomul_tensor_free(x);
    }
    /* batch norm and batch_norm_relu: every instruction set, float and both PA
     * backwards, planes of 16 (the plane passes), 49 and 5 (the gathered
     * channel), exact PA with and without the forward's kept sums */
    for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
        nomul_isa_set((nomul_isa)isa);
        for (int rep = 0; rep < 3 * 3 * 2; rep++) {
            static const int sides[] = {4, 7, 1};
            const int ci = rep % 3, side = sides[rep / 3 % 3], relu = rep / 9;
            int xs[4] = {3, 4, side, side == 1 ? 5 : side}, cs[1] = {4};
            nomul_tensor *x = nomul_tensor_alloc(4, xs, 1), *gm = nomul_tensor_alloc(1, cs, 1);
            nomul_tensor *bt = nomul_tensor_alloc(1, cs, 1);
            fill_signed_zeros(&r, x->data, x->n, 10);
            fill_signed_zeros(&r, gm->data, 4, 0);
            fill_signed_zeros(&r, bt->data, 4, 0);
            float rm[4] = {0}, rv[4] = {1, 1, 1, 1};
            nomul_graph_reset(g);
            nomul_tensor *y = (relu ? nomul_batch_norm_relu : nomul_batch_norm)(
                g, &cfgs[ci], x, gm, bt, rm, rv, 1e-5f, 0.1f, 1);
            assert_non_null(y);
            float *gy = malloc((size_t)y->n * sizeof *gy);
            fill_signed_zeros(&r, gy, y->n, 30);
            char what[64];
            snprintf(what, sizeof what, "batch_norm%s cfg %d, %d x %d planes",
                     relu ? "_relu" : "", ci, xs[2], xs[3]);
            nomul_tensor *ins[3] = {x, gm, bt};
            stores_checked(g, y, gy, ins, 3, what);
        }
    }
    nomul_isa_set(nomul_isa_max());
    nomul_graph_free(g);
}

/* The output's gradient taken by add's and sub's first input
 * (ad_op_def.takes). The node run directly with store[0] = AD_TAKEN (a's
 * gradient the output's own buffer): a gets the bits of +0 + g, b those of
 * the stored or added pass on the output's gradient as it was (or b has no
 * gradient), on dy and b with zeros of both signs, sizes across the
 * 2048-value runs and the threaded passes. Then random residual graphs (adds and subs of relu and
 * mul outputs, reshaped views, a sum feeding two consumers, the loss's dy
 * with signed zeros): every leaf's gradient the same bits with and without
 * takes (the graph's twin switch), some taken, the backward's peak no
 * higher; adds of a broadcast row among them, which take nothing. */
static void test_add_takes_output_gradient(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x7A4E};
    for (int op = 0; op < AD_OP_COUNT; op++) /* a new `takes` bit needs a case */
        if (ad_op_table[op].takes)
            assert_true((op == AD_OP_ADD || op == AD_OP_SUB) && ad_op_table[op].takes == 1);
    nomul_graph *g = nomul_graph_new(1 << 24);
    static const int sizes[] = {5 * 37, 2048, 3 * 70001};
    for (int rep = 0; rep < 18; rep++) {
        /* b's gradient added into, stored, or none */
        const int sub = rep & 1, bmode = rep / 2 % 3, bstore = bmode == 1, n = sizes[rep / 6];
        nomul_tensor *a = nomul_tensor_alloc(1, &n, 1), *b = nomul_tensor_alloc(1, &n, bmode < 2);
        fill_signed_zeros(&r, a->data, n, 0);
        fill_signed_zeros(&r, b->data, n, 0);
        nomul_graph_reset(g);
        nomul_tensor *y = sub ? nomul_sub(g, a, b) : nomul_add(g, a, b);
        assert_non_null(y);
        float *gy = malloc((size_t)n * sizeof *gy), *g0 = malloc((size_t)n * sizeof *g0);
        float *b0 = malloc((size_t)n * sizeof *b0), *agrad = a->grad;
        fill_signed_zeros(&r, gy, n, 50);
        memcpy(g0, gy, (size_t)n * sizeof *g0);
        fill_signed_zeros(&r, b0, n, 30);
        for (long i = 0; b->grad && i < n; i++)
            b->grad[i] = bstore ? tu_float(0x7fc0beefu) : b0[i];
        node nd = g->tape[0];
        y->grad = gy;
        a->grad = gy;
        nd.store[0] = AD_TAKEN;
        nd.store[1] = (unsigned char)bstore;
        ad_op_table[nd.op].backward(&nd);
        for (long i = 0; i < n; i++) {
            const float wa = 0.0f + g0[i];
            const float wb = bstore ? (sub ? 0.0f - g0[i] : 0.0f + g0[i])
                                    : (sub ? b0[i] - g0[i] : b0[i] + g0[i]);
            const float gb = b->grad ? b->grad[i] : wb;
            if (tu_bits(a->grad[i]) != tu_bits(wa) || tu_bits(gb) != tu_bits(wb))
                FAIL_SEED("%s n %d b %s [%ld]: dy %a, b before %a: a's %a (want %a), b's %a "
                          "(want %a)", sub ? "sub" : "add", n,
                          bmode == 2 ? "without" : bstore ? "stored" : "added", i,
                          (double)g0[i], (double)b0[i], (double)a->grad[i], (double)wa,
                          (double)gb, (double)wb);
        }
        a->grad = agrad;
        y->grad = NULL;
        free(gy);
        free(g0);
        free(b0);
        nomul_tensor_free(a);
        nomul_tensor_free(b);
    }
    enum { L = 6, NP = 3 * L };
    int sh[2] = {24, 40}, sh3[3] = {6, 4, 40}, row[2] = {1, 40};
    const nomul_op_cfg cfg = {NOMUL_OP_STANDARD, 0, 1.0f};
    for (int rep = 0; rep < 4; rep++) {
        nomul_tensor *x = nomul_tensor_alloc(2, sh, 1), *p[NP], *c = nomul_tensor_alloc(2, sh, 0);
        nomul_tensor *q = nomul_tensor_alloc(2, row, 1);
        fill_signed_zeros(&r, q->data, q->n, 20);
        fill_signed_zeros(&r, x->data, x->n, 20);
        fill_signed_zeros(&r, c->data, c->n, 40);
        for (int i = 0; i < NP; i++) {
            p[i] = nomul_tensor_alloc(2, sh, 1);
            fill_signed_zeros(&r, p[i]->data, p[i]->n, 20);
        }
        uint32_t shape_draws = tu_u32(&r);
        float *keep[NP + 2];
        size_t peak[2];
        long taken[2];
        for (int off = 0; off < 2; off++) {
            nomul_tensor_zero_grad(x);
            nomul_tensor_zero_grad(q);
            for (int i = 0; i < NP; i++)
                nomul_tensor_zero_grad(p[i]);
            nomul_graph_reset(g);
            g->takes_off = off;
            uint32_t d = shape_draws;
            nomul_tensor *h = x;
            for (int l = 0; l < L; l++, d >>= 4) {
                nomul_tensor *u = nomul_relu(g, nomul_mul(g, &cfg, h, p[3 * l]));
                if (d & 1) /* through a view and back */
                    u = nomul_reshape(g, nomul_reshape(g, u, 3, sh3), 2, sh);
                nomul_tensor *v = nomul_mul(g, &cfg, h, p[3 * l + 1]);
                if (l % 2) /* a broadcast row added */
                    v = nomul_add(g, v, q);
                nomul_tensor *s = d & 2 ? nomul_sub(g, u, v) : nomul_add(g, u, v);
                if (d & 4) /* s feeds two consumers */
                    s = nomul_add(g, s, nomul_mul(g, &cfg, s, p[3 * l + 2]));
                h = d & 8 ? nomul_add(g, h, s) : nomul_add(g, s, h);
            }
            nomul_tensor *loss = nomul_sum(g, nomul_mul(g, &cfg, h, c));
            assert_non_null(loss);
            assert_int_equal(nomul_backward(g, loss), 0);
            peak[off] = nomul_graph_arena_use(g).peak;
            taken[off] = g->taken;
            for (int i = 0; i <= NP + 1; i++) {
                const nomul_tensor *t = i < NP ? p[i] : i == NP ? x : q;
                if (!off) {
                    keep[i] = malloc((size_t)t->n * sizeof(float));
                    memcpy(keep[i], t->grad, (size_t)t->n * sizeof(float));
                    continue;
                }
                for (long j = 0; j < t->n; j++)
                    if (tu_bits(keep[i][j]) != tu_bits(t->grad[j]))
                        FAIL_SEED("graph %d, leaf %d [%ld]: %a taken, %a not", rep, i, j,
                                  (double)keep[i][j], (double)t->grad[j]);
                free(keep[i]);
            }
        }
        g->takes_off = 0;
        if (taken[0] < L || taken[1] != 0 || peak[0] > peak[1])
            FAIL_SEED("graph %d: %ld and %ld gradients taken (want at least %d, then 0), peaks "
                      "%zu and %zu bytes", rep, taken[0], taken[1], L, peak[0], peak[1]);
        nomul_tensor_free(x);
        nomul_tensor_free(c);
        nomul_tensor_free(q);
        for (int i = 0; i < NP; i++)
            nomul_tensor_free(p[i]);
    }
    nomul_graph_free(g);
}

/* nomul_linear_relu against its pair, nomul_linear then nomul_relu (their
 * backwards run in turn, the relu's into the linear output's zeroed
 * gradient): y, dx, dw and db bit for bit, float and PA (exact and
 * approximate backward), with and without a bias, on sizes around the
 * threaded passes (2^16) and db's column blocks; x's and dy's zeros of
 * both signs, and outputs that land on zero. */
static void test_linear_relu_is_the_pair(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x1e1u};
    static const int sizes[][3] = {{5, 7, 3}, {300, 9, 230}, {64, 3, 1030}};
    static const nomul_op_cfg cfgs[] = {
        {NOMUL_OP_STANDARD, 0, 1.0f}, {NOMUL_OP_PAM, 0, 1.0f}, {NOMUL_OP_PAM, 1, 1.0f}};
    nomul_graph *g = nomul_graph_new(1 << 25);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (int ci = 0; ci < 3; ci++)
            for (int bias = 0; bias < 2; bias++) {
                int rows = sizes[si][0], in = sizes[si][1], out = sizes[si][2];
                int xs[2] = {rows, in}, ws[2] = {out, in}, bs[1] = {out};
                nomul_tensor *t[2][3]; /* the pair's inputs, then the fused op's */
                for (int k = 0; k < 2; k++) {
                    t[k][0] = nomul_tensor_alloc(2, xs, 1);
                    t[k][1] = nomul_tensor_alloc(2, ws, 1);
                    t[k][2] = bias ? nomul_tensor_alloc(1, bs, 1) : NULL;
                }
                fill_signed_zeros(&r, t[0][0]->data, t[0][0]->n, 20);
                fill_signed_zeros(&r, t[0][1]->data, t[0][1]->n, 0);
                if (bias)
                    fill_signed_zeros(&r, t[0][2]->data, out, 10);
                for (int q = 0; q < 3; q++)
                    if (t[0][q]) {
                        for (long i = 0; i < t[0][q]->n; i++)
                            t[0][q]->grad[i] = unit01(&r) - 0.5f;
                        memcpy(t[1][q]->data, t[0][q]->data, (size_t)t[0][q]->n * 4);
                        memcpy(t[1][q]->grad, t[0][q]->grad, (size_t)t[0][q]->n * 4);
                    }
                long n = (long)rows * out;
                float *dy = malloc((size_t)n * sizeof *dy), *dy2 = malloc((size_t)n * 4);
                float *dh = calloc((size_t)n, sizeof *dh), *y0 = malloc((size_t)n * 4);
                assert_true(dy && dy2 && dh && y0);
                fill_signed_zeros(&r, dy, n, 20);
                memcpy(dy2, dy, (size_t)n * 4);
                /* the pair */
                nomul_graph_reset(g);
                nomul_tensor *h = nomul_linear(g, &cfgs[ci], t[0][0], t[0][1], t[0][2]);
                nomul_tensor *y = nomul_relu(g, h);
                assert_true(h && y);
                memcpy(y0, y->data, (size_t)n * 4);
                y->grad = dy;
                h->grad = dh;
                ad_op_table[AD_OP_RELU].backward(&g->tape[1]);
                ad_op_table[AD_OP_LINEAR].backward(&g->tape[0]);
                /* the fused op */
                nomul_graph_reset(g);
                nomul_tensor *y2 = nomul_linear_relu(g, &cfgs[ci], t[1][0], t[1][1], t[1][2]);
                assert_non_null(y2);
                assert_int_equal(g->ntape, 1);
                y2->grad = dy2;
                ad_op_table[AD_OP_LINEAR_RELU].backward(&g->tape[0]);
                char what[64];
                snprintf(what, sizeof what, "%dx%d->%d cfg %d bias %d", rows, in, out, ci, bias);
                for (long i = 0; i < n; i++)
                    if (tu_bits(y0[i]) != tu_bits(y2->data[i]))
                        FAIL_SEED("linear_relu %s: y[%ld] = %a, the pair's %a", what, i,
                                  (double)y2->data[i], (double)y0[i]);
                for (int q = 0; q < 3; q++)
                    for (long i = 0; t[0][q] && i < t[0][q]->n; i++)
                        if (tu_bits(t[0][q]->grad[i]) != tu_bits(t[1][q]->grad[i]))
                            FAIL_SEED("linear_relu %s: input %d's gradient [%ld] = %a, the "
                                      "pair's %a", what, q, i, (double)t[1][q]->grad[i],
                                      (double)t[0][q]->grad[i]);
                free(dy);
                free(dy2);
                free(dh);
                free(y0);
                for (int k = 0; k < 2; k++)
                    for (int q = 0; q < 3; q++)
                        nomul_tensor_free(t[k][q]);
            }
    nomul_graph_free(g);
}

static void test_op_table(void **state)
{
    (void)state;
    for (int i = 0; i < AD_OP_COUNT; i++) {
        assert_non_null(ad_op_table[i].name);
        assert_non_null(ad_op_table[i].backward);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(ad_op_table[i].name, ad_op_table[j].name);
    }
    tu_rng r = {tu_seed() ^ 0xB5};
    nomul_op_cfgs c;
    nomul_op_cfgs_default(&c);
    mlp m = mlp_new(&r, 5, 6, 3);
    int xs[2] = {4, 5}, y[4] = {0, 1, 2, 0};
    nomul_tensor *x = nomul_tensor_alloc(2, xs, 0);
    nomul_graph *g = nomul_graph_new(1 << 16);
    nomul_tensor *l = mlp_loss(g, &c, &m, x, y);
    assert_non_null(l);
    static const char *want[] = {"linear", "relu", "linear", "cross_entropy"};
    assert_int_equal(g->ntape, 4);
    for (int i = 0; i < 4; i++)
        assert_string_equal(ad_op_table[g->tape[i].op].name, want[i]);
    assert_ptr_equal(g->tape[0].in[0], x);
    assert_ptr_equal(g->tape[0].in[1], m.w1);
    assert_int_equal(g->tape[0].cfg.subtype, c.family[NOMUL_CFG_LINEAR].subtype);
    assert_ptr_equal(g->tape[3].out, l);
    assert_ptr_equal(g->tape[3].p.cross_entropy.targets, y);
    nomul_graph_free(g);
    nomul_tensor_free(x);
    mlp_free(&m);
}

/* nomul_graph_arena_use: the bytes asked for and allocations since the
 * reset, the aligned use they bound, and the peak across resets. */
static void test_arena_use(void **state)
{
    (void)state;
    nomul_graph *g = nomul_graph_new(1 << 20);
    assert_non_null(g);
    const int sizes[3] = {1, 17, 100};
    size_t asked = 0;
    for (int i = 0; i < 3; i++) {
        assert_non_null(nomul_graph_tensor(g, 1, &sizes[i], i == 2));
        asked += sizeof(nomul_tensor) + (size_t)sizes[i] * sizeof(float) * (i == 2 ? 2 : 1);
    }
    nomul_arena_use u = nomul_graph_arena_use(g);
    assert_int_equal(u.size, 1 << 20);
    assert_int_equal(u.asked, asked);
    assert_int_equal(u.allocs, 7);
    assert_true(u.used >= asked && u.used <= asked + 63 * u.allocs);
    assert_int_equal(u.peak, u.used);
    const size_t first = u.used;
    nomul_graph_reset(g);
    assert_non_null(nomul_graph_tensor(g, 1, &sizes[0], 0));
    u = nomul_graph_arena_use(g);
    assert_int_equal(u.allocs, 2);
    assert_int_equal(u.asked, sizeof(nomul_tensor) + sizeof(float));
    assert_int_equal(u.peak, first); /* the peak outlives the reset */
    nomul_graph_reset_peak(g);
    assert_int_equal(nomul_graph_arena_use(g).peak, u.used);
    nomul_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena_use),
        cmocka_unit_test(test_add_takes_output_gradient),
        cmocka_unit_test(test_gradients_match_finite_differences),
        cmocka_unit_test(test_mlp_trains_in_every_mode),
        cmocka_unit_test(test_ops_match_finite_differences),
        cmocka_unit_test(test_relu_backward_matches_branch),
        cmocka_unit_test(test_batch_norm_relu_is_the_pair),
        cmocka_unit_test(test_pa_ops_wiring),
        cmocka_unit_test(test_attention_block_trains),
        cmocka_unit_test(test_attention_definition),
        cmocka_unit_test(test_sinusoidal_positions),
        cmocka_unit_test(test_op_errors),
        cmocka_unit_test(test_audit_counts),
        cmocka_unit_test(test_conv_backward_sums_bias_only_with_one),
        cmocka_unit_test(test_no_grad_and_arena_limits),
        cmocka_unit_test(test_op_table),
        cmocka_unit_test(test_backward_reuses_gradient_memory),
        cmocka_unit_test(test_transpose_matches_index_map),
        cmocka_unit_test(test_broadcast_add_sub_match_plain_walk),
        cmocka_unit_test(test_first_writer_stores),
        cmocka_unit_test(test_linear_bias_matches_plain_loops),
        cmocka_unit_test(test_linear_relu_is_the_pair),
        cmocka_unit_test(test_dropout_matches_definition),
    };
    printf("test_autodiff: seed %llu\n", (unsigned long long)tu_seed());
    return cmocka_run_group_tests_name("autodiff", tests, NULL, NULL);
}
