/*
 * test_autodiff.c — the tape: gradients of a small MLP with cross-entropy
 * against central finite differences (float mode), and the same MLP
 * trained on a synthetic task in float, PAM (approximate backward) and
 * fully piecewise affine (exact backward, PA loss, PA AdamW) modes, each
 * required to bring its loss below a stated value. No-grad mode and arena
 * exhaustion.
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

#define FAIL_SEED(...)                                                                    \
    do {                                                                                  \
        char msg_[512];                                                                   \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                                         \
        fail_msg("%s (seed %llu; rerun with NOMUL_TEST_SEED=%llu)", msg_,                 \
                 (unsigned long long)tu_seed(), (unsigned long long)tu_seed());           \
    } while (0)

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
    for (long i = 0; i < x->n; i++)
        x->data[i] = (float)((int)(tu_u32(&r) % 2001) - 1000) / 500.0f;
    int y[4] = {0, 2, 1, -100};
    nomul_graph *g = nomul_graph_new(1 << 20);
    nomul_tensor *loss = mlp_loss(g, &c, &m, x, y);
    nomul_backward(g, loss);
    nomul_tensor *params[4] = {m.w1, m.b1, m.w2, m.b2};
    for (int k = 0; k < 4; k++) {
        nomul_tensor *p = params[k];
        for (long i = 0; i < p->n; i++) {
            /* two step sizes: a step may carry a ReLU input across its kink */
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
    nomul_adamw_init(&opt, 0.01f, 0.0f, opt_pa);
    nomul_graph *g = nomul_graph_new(1 << 22);
    double loss = 0;
    for (int step = 0; step < 300; step++) {
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
        double first, last = train(mode, &first);
        printf("  %-42s loss %.4f -> %.4f\n", names[mode], first, last);
        if (!(last < 0.25))
            FAIL_SEED("%s: loss %g -> %g after 300 steps, want below 0.25", names[mode], first,
                      last);
    }
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients_match_finite_differences),
        cmocka_unit_test(test_mlp_trains_in_every_mode),
        cmocka_unit_test(test_no_grad_and_arena_limits),
    };
    printf("test_autodiff: seed %llu\n", (unsigned long long)tu_seed());
    return cmocka_run_group_tests_name("autodiff", tests, NULL, NULL);
}
