/*
 * test_optim.c — optimizers, clipping and schedules. The PA forms are
 * checked bit for bit against step-by-step definitions written with the
 * scalar functions; the float forms against float64 formulas (fairseq's
 * Adam, PyTorch's SGD); PA AdamW must also minimise a quadratic.
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

/* opt_functional_cfg: float, and PA without an offset */
static const nomul_op_cfg float_cfg = {NOMUL_OP_STANDARD, 0, 1.0f};
static const nomul_op_cfg pa_cfg = {NOMUL_OP_PAM, 0, 1.0f};

static float pm(float a, float b, float off)
{
    return off != 1.0f ? nomul_pa_mul_off(a, b, off) : nomul_pa_mul(a, b);
}

static void test_adamw_pa_matches_definition(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xA0};
    /* past one chunk of the array kernels and the size that takes threads
     * (optim_internal.h), with a partial last chunk; at 1, 2 and 3 threads */
    enum { N = 9001 };
    /* every instruction set: AVX2 and AVX-512 run the update as one fused
     * pass (nomul_pa_fused's adamw), the scalar set as array calls */
    nomul_op_counts counted[8];
    for (int vi = 0; vi < 8 * ((int)nomul_isa_max() + 1); vi++) {
        const int variant = vi % 8, isa = vi / 8;
        nomul_isa_set((nomul_isa)isa);
        nomul_set_num_threads(variant % 3 + 1);
        float off = variant & 1 ? 1.0552f : 1.0f, wd = variant & 2 ? 0.01f : 0.0f;
        int delta = variant & 4;
        static float p[N], m[N], v[N], g[N], rp[N], rm[N], rv[N];
        for (int i = 0; i < N; i++) { /* signed zeros among the weights (the decay's -0 - -0) */
            p[i] = rp[i] = i % 97 == 5 ? (i & 1 ? -0.0f : 0.0f) : tu_normal(&r, -4, 1, 1);
            m[i] = v[i] = rm[i] = rv[i] = 0.0f;
        }
        nomul_adamw o;
        nomul_adamw_init(&o, 1e-3f, wd, &(nomul_op_cfg){NOMUL_OP_PAM, 0, off});
        o.moments = delta ? NOMUL_ADAM_MOMENTS_DELTA : NOMUL_ADAM_MOMENTS_REFERENCE;
        float b1t = 1.0f, b2t = 1.0f;
        for (int step = 0; step < 5; step++) {
            for (int i = 0; i < N; i++) { /* zeros, subnormals and a wide range */
                uint32_t k = tu_u32(&r) % 16;
                g[i] = k < 2 ? 0.0f
                       : k == 2 ? tu_float(tu_u32(&r) & 0x807FFFFFu)
                       : k == 3 ? tu_normal(&r, -60, 40, 1)
                                : tu_normal(&r, -6, 2, 1);
            }
            nomul_adamw_begin_step(&o);
            nomul_op_counts cnt;
            nomul_counts_reset();
            nomul_counts_enable(1);
            nomul_adamw_update(&o, N, p, g, m, v);
            nomul_counts_enable(0);
            nomul_counts_get(&cnt);
            /* the audit counts the same operations on every instruction set */
            if (isa == 0)
                counted[variant] = cnt;
            else if (memcmp(&cnt, &counted[variant], sizeof cnt))
                FAIL_SEED("PA AdamW on %s, variant %d: the audit's counts differ from the "
                          "scalar set's (PAM %llu against %llu)",
                          nomul_isa_name((nomul_isa)isa), variant,
                          cnt.n[NOMUL_COUNT_PAM], counted[variant].n[NOMUL_COUNT_PAM]);
            /* the definition, one element at a time */
            b1t = nomul_pa_mul(b1t, 0.9f);
            b2t = nomul_pa_mul(b2t, 0.98f);
            float st = pm(1e-3f, nomul_pa_div(nomul_pa_sqrt(1.0f - b2t), 1.0f - b1t), off);
            float dec = pm(1e-3f, wd, off);
            for (int i = 0; i < N; i++) {
                if (wd != 0.0f)
                    rp[i] -= pm(rp[i], dec, off);
                if (delta) {
                    rm[i] += pm(g[i] - rm[i], 1.0f - 0.9f, off);
                    rv[i] += pm(pm(g[i], g[i], off) - rv[i], 1.0f - 0.98f, off);
                } else {
                    rm[i] = pm(rm[i], 0.9f, off) + pm(g[i], 1.0f - 0.9f, off);
                    rv[i] = pm(rv[i], 0.98f, off) + pm(pm(g[i], g[i], off), 1.0f - 0.98f, off);
                }
                rp[i] -= pm(nomul_pa_div(rm[i], nomul_pa_sqrt(rv[i]) + 1e-8f), st, off);
            }
            for (int i = 0; i < N; i++)
                if (tu_bits(p[i]) != tu_bits(rp[i]) || tu_bits(m[i]) != tu_bits(rm[i]) ||
                    tu_bits(v[i]) != tu_bits(rv[i]))
                    FAIL_SEED("PA AdamW on %s, variant %d step %d element %d: p %08x/%08x "
                              "m %08x/%08x v %08x/%08x", nomul_isa_name((nomul_isa)isa),
                              variant, step, i, tu_bits(p[i]), tu_bits(rp[i]),
                              tu_bits(m[i]), tu_bits(rm[i]), tu_bits(v[i]), tu_bits(rv[i]));
        }
    }
    nomul_isa_set(nomul_isa_max());
    nomul_set_num_threads(0);
}

static void test_adamw_float_matches_fairseq(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xA1};
    enum { N = 100 };
    float p[N], m[N] = {0}, v[N] = {0}, g[N];
    double dp[N], dm[N] = {0}, dv[N] = {0};
    for (int i = 0; i < N; i++)
        dp[i] = p[i] = tu_normal(&r, -3, 1, 1);
    nomul_adamw o;
    nomul_adamw_init(&o, 3e-3f, 0.05f, &float_cfg);
    for (int t = 1; t <= 20; t++) {
        for (int i = 0; i < N; i++)
            g[i] = tu_normal(&r, -5, 0, 1);
        nomul_adamw_begin_step(&o);
        nomul_adamw_update(&o, N, p, g, m, v);
        double step = 3e-3 * sqrt(1 - pow(0.98, t)) / (1 - pow(0.9, t));
        for (int i = 0; i < N; i++) {
            dp[i] -= 3e-3 * 0.05 * dp[i];
            dm[i] = 0.9 * dm[i] + 0.1 * g[i];
            dv[i] = 0.98 * dv[i] + 0.02 * (double)g[i] * g[i];
            dp[i] -= step * dm[i] / (sqrt(dv[i]) + 1e-8);
        }
    }
    for (int i = 0; i < N; i++)
        if (fabs(p[i] - dp[i]) > 1e-5 * (fabs(dp[i]) + 1e-3))
            FAIL_SEED("float AdamW element %d: %g, fairseq %g", i, (double)p[i], dp[i]);
}

static void test_sgd_both_modes(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xA2};
    enum { N = 9001 }; /* threaded, as in test_adamw_pa_matches_definition */
    static float p[N], b[N], g[N], rp[N], rb[N];
    for (int pa = 0; pa <= 1; pa++)
        for (int nest = 0; nest <= 1; nest++) {
            nomul_set_num_threads(2 * pa + nest + 1);
            for (int i = 0; i < N; i++) {
                p[i] = rp[i] = tu_normal(&r, -3, 1, 1);
                b[i] = rb[i] = 0.0f;
            }
            nomul_sgd o;
            nomul_sgd_init(&o, 0.1f, 0.9f, 5e-4f, pa ? &pa_cfg : &float_cfg);
            o.nesterov = nest;
            for (int step = 0; step < 4; step++) {
                for (int i = 0; i < N; i++)
                    g[i] = tu_normal(&r, -4, 1, 1);
                nomul_sgd_update(&o, N, p, g, b);
                for (int i = 0; i < N; i++) {
                    if (pa) {
                        float d = g[i] + nomul_pa_mul(rp[i], 5e-4f);
                        rb[i] = nomul_pa_mul(rb[i], 0.9f) + d;
                        d = nest ? d + nomul_pa_mul(rb[i], 0.9f) : rb[i];
                        rp[i] -= nomul_pa_mul(d, 0.1f);
                        if (tu_bits(p[i]) != tu_bits(rp[i]) || tu_bits(b[i]) != tu_bits(rb[i]))
                            FAIL_SEED("PA SGD nesterov %d step %d element %d", nest, step, i);
                    } else {
                        float d = g[i] + 5e-4f * rp[i];
                        rb[i] = 0.9f * rb[i] + d;
                        d = nest ? d + 0.9f * rb[i] : rb[i];
                        rp[i] -= 0.1f * d;
                        if (fabsf(p[i] - rp[i]) > 1e-6f * (fabsf(rp[i]) + 1.0f))
                            FAIL_SEED("float SGD nesterov %d step %d element %d", nest, step, i);
                    }
                }
            }
        }
    nomul_set_num_threads(0);
}

/* A step over a model's tensors at once (nomul_*_update_params: one
 * parallel region for all) gives the bits of one update call per tensor,
 * buffers untouched and weight decay only where a tensor asks for it, float
 * and PA, at 1 to 3 threads; tensor sizes from 1 to 9,001 values, so that
 * the threads' shares cut tensors and chunks anywhere. */
static void test_update_params_matches_per_tensor(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xA8};
    enum { NT = 9 };
    static const int sizes[NT] = {64, 1, 9001, 1023, 1025, 4096, 300, 2048, 17};
    nomul_param ps[2][NT];
    float *m[2][NT], *v[2][NT];
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < NT; i++) {
            int shape[1] = {sizes[i]};
            ps[c][i].t = nomul_tensor_alloc(1, shape, 1);
            assert_non_null(ps[c][i].t);
            snprintf(ps[c][i].name, sizeof ps[c][i].name, "t%d", i);
            ps[c][i].decay = i % 2;
            ps[c][i].buffer = i == 4;
            m[c][i] = calloc((size_t)sizes[i], sizeof(float));
            v[c][i] = calloc((size_t)sizes[i], sizeof(float));
            assert_true(m[c][i] && v[c][i]);
        }
    for (int variant = 0; variant < 12; variant++) {
        const int pa = variant & 1, adam = (variant >> 1) & 1, threads = variant / 4 + 1;
        const nomul_op_cfg *cfg = pa ? &pa_cfg : &float_cfg;
        for (int i = 0; i < NT; i++)
            for (int j = 0; j < sizes[i]; j++) {
                float p0 = tu_normal(&r, -3, 1, 1), g0 = tu_normal(&r, -6, 2, 1);
                for (int c = 0; c < 2; c++) {
                    ps[c][i].t->data[j] = p0;
                    ps[c][i].t->grad[j] = g0;
                    m[c][i][j] = v[c][i][j] = 0.0f;
                }
            }
        nomul_set_num_threads(threads);
        for (int step = 0; step < 2; step++) {
            if (adam) {
                nomul_adamw o;
                nomul_adamw_init(&o, 1e-3f, 0.05f, cfg);
                for (int k = 0; k <= step; k++)
                    nomul_adamw_begin_step(&o);
                assert_int_equal(nomul_adamw_update_params(&o, NT, ps[0], m[0], v[0]), 0);
                nomul_adamw nodecay = o;
                nodecay.weight_decay = 0.0f;
                for (int i = 0; i < NT; i++)
                    if (!ps[1][i].buffer)
                        nomul_adamw_update(ps[1][i].decay ? &o : &nodecay, (size_t)sizes[i],
                                           ps[1][i].t->data, ps[1][i].t->grad, m[1][i], v[1][i]);
            } else {
                nomul_sgd o;
                nomul_sgd_init(&o, 0.1f, 0.9f, 5e-4f, cfg);
                assert_int_equal(nomul_sgd_update_params(&o, NT, ps[0], m[0]), 0);
                nomul_sgd nodecay = o;
                nodecay.weight_decay = 0.0f;
                for (int i = 0; i < NT; i++)
                    if (!ps[1][i].buffer)
                        nomul_sgd_update(ps[1][i].decay ? &o : &nodecay, (size_t)sizes[i],
                                         ps[1][i].t->data, ps[1][i].t->grad, m[1][i]);
            }
        }
        nomul_set_num_threads(0);
        for (int i = 0; i < NT; i++)
            for (int j = 0; j < sizes[i]; j++)
                if (tu_bits(ps[0][i].t->data[j]) != tu_bits(ps[1][i].t->data[j]) ||
                    tu_bits(m[0][i][j]) != tu_bits(m[1][i][j]) ||
                    tu_bits(v[0][i][j]) != tu_bits(v[1][i][j]))
                    FAIL_SEED("%s %s, %d threads: tensor %d element %d: p %08x/%08x m %08x/%08x "
                              "(all at once / per tensor)", adam ? "AdamW" : "SGD",
                              pa ? "PA" : "float", threads, i, j, tu_bits(ps[0][i].t->data[j]),
                              tu_bits(ps[1][i].t->data[j]), tu_bits(m[0][i][j]),
                              tu_bits(m[1][i][j]));
        /* the buffer is skipped: its values are the step's starting ones */
        for (int j = 0; j < sizes[4]; j++)
            if (m[0][4][j] != 0.0f)
                FAIL_SEED("the buffer tensor's state was updated (element %d)", j);
    }
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < NT; i++) {
            nomul_tensor_free(ps[c][i].t);
            free(m[c][i]);
            free(v[c][i]);
        }
}

/* The float AdamW, threaded past 4,096 values, gives the same bits at any
 * thread count (each element's arithmetic is its own). */
static void test_adamw_float_any_thread_count(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xA7};
    enum { N = 9001 };
    static float p[3][N], m[3][N], v[3][N], g[N];
    for (int i = 0; i < N; i++)
        p[0][i] = p[1][i] = p[2][i] = tu_normal(&r, -3, 1, 1);
    memset(m, 0, sizeof m);
    memset(v, 0, sizeof v);
    nomul_adamw o[3];
    for (int t = 0; t < 3; t++)
        nomul_adamw_init(&o[t], 3e-3f, 0.05f, &float_cfg);
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < N; i++)
            g[i] = tu_normal(&r, -5, 0, 1);
        for (int t = 0; t < 3; t++) {
            nomul_set_num_threads(t + 1);
            nomul_adamw_begin_step(&o[t]);
            nomul_adamw_update(&o[t], N, p[t], g, m[t], v[t]);
        }
    }
    nomul_set_num_threads(0);
    for (int t = 1; t < 3; t++)
        for (int i = 0; i < N; i++)
            if (tu_bits(p[t][i]) != tu_bits(p[0][i]) || tu_bits(m[t][i]) != tu_bits(m[0][i]) ||
                tu_bits(v[t][i]) != tu_bits(v[0][i]))
                FAIL_SEED("float AdamW element %d differs between 1 and %d threads", i, t + 1);
}

static void test_clip_grad_norm(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xA3};
    float a[700], b[1300], ra[700], rb[1300];
    float *grads[2] = {a, b};
    size_t sizes[2] = {700, 1300};
    for (int pa = 0; pa <= 1; pa++) {
        for (int i = 0; i < 700; i++)
            a[i] = ra[i] = tu_normal(&r, -2, 1, 1);
        for (int i = 0; i < 1300; i++)
            b[i] = rb[i] = tu_normal(&r, -2, 1, 1);
        float norm = nomul_clip_grad_norm(2, grads, sizes, 1.0f, pa ? &pa_cfg : &float_cfg);
        if (pa) {
            float s = 0.0f;
            for (int i = 0; i < 700; i++)
                s += nomul_pa_mul(ra[i], ra[i]);
            for (int i = 0; i < 1300; i++)
                s += nomul_pa_mul(rb[i], rb[i]);
            float want = nomul_pa_sqrt(s);
            assert_int_equal(tu_bits(norm), tu_bits(want));
            float scale = nomul_pa_div(1.0f, want + 1e-6f);
            for (int i = 0; i < 700; i++)
                assert_int_equal(tu_bits(a[i]), tu_bits(nomul_pa_mul(ra[i], scale)));
        } else {
            double s = 0;
            for (int i = 0; i < 700; i++)
                s += (double)ra[i] * ra[i];
            for (int i = 0; i < 1300; i++)
                s += (double)rb[i] * rb[i];
            assert_true(fabs(norm - sqrt(s)) < 1e-5 * sqrt(s));
            double after = 0;
            for (int i = 0; i < 700; i++)
                after += (double)a[i] * a[i];
            for (int i = 0; i < 1300; i++)
                after += (double)b[i] * b[i];
            assert_true(fabs(sqrt(after) - 1.0) < 1e-4);
        }
    }
    /* below the limit nothing changes */
    float small[3] = {0.1f, 0.2f, 0.2f}, *gs[1] = {small};
    size_t n3[1] = {3};
    nomul_clip_grad_norm(1, gs, n3, 1.0f, &pa_cfg);
    assert_true(small[0] == 0.1f && small[2] == 0.2f);
}

static void test_schedules(void **state)
{
    (void)state;
    float table[1000];
    nomul_schedule c = {NOMUL_SCHED_WARMUP_COSINE, 1.0f, 0.1f, 100, 1000};
    assert_int_equal(nomul_schedule_table(&c, table), 0);
    assert_true(fabsf(table[0] - 0.01f) < 1e-7f);
    assert_true(fabsf(table[99] - 1.0f) < 1e-6f);
    assert_true(fabsf(table[100] - 1.0f) < 1e-6f);
    assert_true(fabsf(table[999] - 0.1f) < 1e-6f);
    assert_true(fabsf(table[550] - 0.55f) < 2e-3f); /* halfway down the cosine */
    for (int t = 101; t < 1000; t++)
        assert_true(table[t] <= table[t - 1]);
    nomul_schedule inv = {NOMUL_SCHED_INVERSE_SQRT, 2.0f, 0.0f, 50, 1000};
    assert_int_equal(nomul_schedule_table(&inv, table), 0);
    assert_true(fabsf(table[49] - 2.0f) < 1e-6f);
    assert_true(fabsf(table[199] - 1.0f) < 1e-6f); /* 2·√(50/200) */
    nomul_schedule k = {NOMUL_SCHED_CONSTANT, 0.5f, 0.0f, 0, 10};
    assert_int_equal(nomul_schedule_table(&k, table), 0);
    assert_true(table[0] == 0.5f && table[9] == 0.5f);
    nomul_schedule bad1 = {NOMUL_SCHED_WARMUP_COSINE, 1.0f, 0.1f, 200, 100};
    nomul_schedule bad2 = {NOMUL_SCHED_WARMUP_COSINE, 1.0f, 2.0f, 0, 100};
    nomul_schedule bad3 = {(nomul_schedule_kind)9, 1.0f, 0.0f, 0, 100};
    assert_int_equal(nomul_schedule_table(&bad1, table), -1);
    assert_int_equal(nomul_schedule_table(&bad2, table), -1);
    assert_int_equal(nomul_schedule_table(&bad3, table), -1);
}

/* PA AdamW minimises Σ (p − target)² with PA gradients 2(p − target). */
static void test_pa_adamw_converges(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xA4};
    enum { N = 64 };
    float p[N], m[N] = {0}, v[N] = {0}, g[N], target[N];
    for (int i = 0; i < N; i++) {
        p[i] = tu_normal(&r, -1, 1, 1);
        target[i] = tu_normal(&r, -2, 0, 1);
    }
    nomul_adamw o;
    nomul_adamw_init(&o, 0.05f, 0.0f, &pa_cfg);
    double first = 0, last = 0;
    for (int step = 0; step < 400; step++) {
        double loss = 0;
        for (int i = 0; i < N; i++) {
            float d = p[i] - target[i];
            g[i] = nomul_pa_mul(d, 2.0f);
            loss += (double)d * d;
        }
        if (step == 0)
            first = loss;
        last = loss;
        nomul_adamw_begin_step(&o);
        nomul_adamw_update(&o, N, p, g, m, v);
    }
    if (!(last < 1e-3 * first))
        FAIL_SEED("PA AdamW: loss %g -> %g after 400 steps", first, last);
}

/* The moment averages of a gradient with a fixed distribution: the delta
 * form settles on its mean (within the noise of the average), the
 * reference form well below it (PAM rounds products down); the figures
 * nomul/optim.h quotes. */
static void test_pa_adamw_moment_fixed_points(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xA5};
    enum { N = 4096, STEPS = 600 };
    static float p[2][N], m[2][N], v[2][N], g[N];
    memset(m, 0, sizeof m);
    memset(v, 0, sizeof v);
    nomul_adamw o[2];
    double sm[2] = {0, 0}, sv[2] = {0, 0}, sg = 0, sg2 = 0;
    for (int f = 0; f < 2; f++) {
        nomul_adamw_init(&o[f], 1e-3f, 0.0f, &pa_cfg);
        o[f].moments = f ? NOMUL_ADAM_MOMENTS_DELTA : NOMUL_ADAM_MOMENTS_REFERENCE;
    }
    for (int step = 0; step < STEPS; step++) {
        for (int i = 0; i < N; i++) /* mean 1, some spread */
            g[i] = 1.0f + 0.5f * ((float)(tu_u32(&r) >> 8) / 16777216.0f - 0.5f);
        for (int f = 0; f < 2; f++) {
            nomul_adamw_begin_step(&o[f]);
            nomul_adamw_update(&o[f], N, p[f], g, m[f], v[f]);
        }
        if (step >= STEPS / 2) {
            for (int i = 0; i < N; i++) {
                sg += g[i];
                sg2 += (double)g[i] * g[i];
                for (int f = 0; f < 2; f++) {
                    sm[f] += m[f][i];
                    sv[f] += v[f][i];
                }
            }
        }
    }
    double rm_ref = sm[0] / sg, rv_ref = sv[0] / sg2, rm_d = sm[1] / sg, rv_d = sv[1] / sg2;
    if (fabs(rm_d - 1) > 0.03 || fabs(rv_d - 1) > 0.08)
        FAIL_SEED("delta moments: m/E[g] %.3f, v/E[g^2] %.3f (want ~1)", rm_d, rv_d);
    if (!(rm_ref < 0.9 && rv_ref < 0.9))
        FAIL_SEED("reference moments: m/E[g] %.3f, v/E[g^2] %.3f (PAM's bias should show)",
                  rm_ref, rv_ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_pa_matches_definition),
        cmocka_unit_test(test_adamw_float_matches_fairseq),
        cmocka_unit_test(test_adamw_float_any_thread_count),
        cmocka_unit_test(test_update_params_matches_per_tensor),
        cmocka_unit_test(test_sgd_both_modes),
        cmocka_unit_test(test_clip_grad_norm),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_pa_adamw_converges),
        cmocka_unit_test(test_pa_adamw_moment_fixed_points),
    };
    printf("test_optim: seed %llu\n", (unsigned long long)tu_seed());
    return cmocka_run_group_tests_name("optim", tests, NULL, NULL);
}
