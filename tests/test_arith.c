/*
 * test_arith.c — the arithmetic core against its contract: the golden
 * vectors, the corner-case table of PAM_SPEC.md, the float64 reference twin
 * (random inputs and sweeps over float32), every SIMD kernel bit for bit
 * against the scalar functions, exact derivatives against finite
 * differences, and PAM's error bounds. Random inputs are fresh every run;
 * a failure prints the seed (NOMUL_TEST_SEED=S repeats it).
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

#include "arith/elt.h"
#include "core/internal.h"
#include "nomul/nomul.h"
#include "ref_pa.h"
#include "testutil.h"

/* ---- golden vectors ------------------------------------------------------ */

static void test_golden_vectors(void **state)
{
    (void)state;
    const char *path = getenv("NOMUL_GOLDEN");
    if (!path)
        path = "../shared/vectors/pam_golden.txt";
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open the golden vectors '%s' (set NOMUL_GOLDEN)", path);
    char *line = NULL;
    size_t cap = 0, n = 0, nfail = 0;
    long lineno = 0;
    enum { BATCH = 4096 };
    static nomul_vector_case cases[BATCH];
    static long lines[BATCH];
    size_t m = 0;
    int eof = 0;
    while (!eof) {
        eof = getline(&line, &cap, f) < 0;
        if (!eof) {
            lineno++;
            int r = nomul_vector_parse(line, &cases[m]);
            if (r < 0)
                fail_msg("%s:%ld: %s", path, lineno, nomul_last_error_message());
            if (r == 0)
                continue;
            lines[m++] = lineno;
            if (m < BATCH)
                continue;
        }
        /* check the batch: scalar functions, then each ISA's kernels */
        for (size_t i = 0; i < m; i++) {
            uint32_t got[2];
            nomul_vector_eval_scalar(cases[i].op, cases[i].in, got);
            for (int j = 0; j < nomul_vector_op_outputs(cases[i].op); j++)
                if (got[j] != cases[i].out[j]) {
                    if (nfail++ < 5)
                        print_error("line %ld scalar: output %d %08x, expected %08x\n", lines[i],
                                    j, got[j], cases[i].out[j]);
                }
        }
        for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
            for (size_t i = 0; i < m; i++) {
                float in[4], out[2] = {0, 0};
                const float *pin[4] = {&in[0], &in[1], &in[2], &in[3]};
                float *pout[2] = {&out[0], &out[1]};
                memcpy(in, cases[i].in, sizeof in);
                nomul_vector_eval_array((nomul_isa)isa, cases[i].op, 1, pin, pout);
                for (int j = 0; j < nomul_vector_op_outputs(cases[i].op); j++)
                    if (tu_bits(out[j]) != cases[i].out[j] && nfail++ < 5)
                        print_error("line %ld %s: output %d %08x, expected %08x\n", lines[i],
                                    nomul_isa_name((nomul_isa)isa), j, tu_bits(out[j]),
                                    cases[i].out[j]);
            }
        }
        n += m;
        m = 0;
    }
    free(line);
    fclose(f);
    assert_true(n > 0);
    if (nfail)
        fail_msg("%zu of %zu golden checks failed", nfail, n);
}

/* ---- the corner-case table ------------------------------------------------ */

typedef struct {
    const char *op;
    uint32_t in[4];
    uint32_t out[2];
} corner;

#define PZ 0x00000000u
#define NZ 0x80000000u
#define PINF 0x7F800000u
#define NINF 0xFF800000u
#define QN 0x7FC00000u
#define ONE 0x3F800000u
#define THREE 0x40400000u
#define MTHREE 0xC0400000u
#define SUB 0x00000123u  /* a subnormal */
#define MSUB 0x80400000u /* a negative subnormal */
#define SNAN 0x7F800001u /* a signalling NaN */
#define P2(e) ((uint32_t)((e) + 127) << 23)

static const corner corners[] = {
    /* a zero operand (either sign) in PAM: zero with sign(a) xor sign(b) */
    {"mul", {PZ, THREE}, {PZ}},
    {"mul", {NZ, THREE}, {NZ}},
    {"mul", {PZ, MTHREE}, {NZ}},
    {"mul", {NZ, MTHREE}, {PZ}},
    {"mul", {NZ, PZ}, {NZ}},
    /* subnormal input: a zero of the same sign */
    {"mul", {SUB, THREE}, {PZ}},
    {"mul", {MSUB, THREE}, {NZ}},
    {"div", {MSUB, THREE}, {NZ}},
    {"div", {THREE, SUB}, {PINF}},
    {"div", {THREE, MSUB}, {NINF}},
    {"log2", {SUB}, {NINF}},
    {"exp2", {MSUB}, {ONE}},
    /* exact result below 2^-126: zero; 2^-126 itself is normal */
    {"mul", {P2(-63), P2(-63)}, {P2(-126)}},
    {"mul", {P2(-63), P2(-64) | 0x7FFFFFu}, {PZ}},
    {"mul", {P2(-70) | NZ, P2(-70)}, {NZ}},
    {"div", {P2(-100), P2(30)}, {PZ}},
    {"mul_off", {P2(-63), P2(-63), 0x3F000000u}, {PZ}},
    {"exp2", {0xC2FC0000u}, {P2(-126)}},  /* -126 */
    {"exp2", {0xC2FD0000u}, {PZ}},        /* -126.5 */
    {"exp2", {0xC3960000u}, {PZ}},        /* -300 */
    /* exact result at or above 2^128: infinity */
    {"mul", {P2(64), P2(64)}, {PINF}},
    {"mul", {P2(64) | NZ, P2(64)}, {NINF}},
    {"mul", {P2(64), P2(63) | 0x7FFFFFu}, {P2(127) | 0x7FFFFFu}},
    {"div", {P2(100), P2(-30)}, {PINF}},
    {"exp2", {0x43000000u}, {PINF}},                      /* 128 */
    {"exp2", {0x42FFFFFEu}, {P2(127) | 0x7FFF80u}},       /* 127.99998 = 128 - 2^-16 */
    {"exp2", {0x43960000u}, {PINF}},                      /* 300 */
    /* NaN inputs, ∞·0, 0/0, ∞/∞: the quiet NaN */
    {"mul", {SNAN, ONE}, {QN}},
    {"mul", {ONE, 0xFFC00000u}, {QN}},
    {"mul", {PINF, PZ}, {QN}},
    {"mul", {NZ, NINF}, {QN}},
    {"mul", {PINF, SUB}, {QN}},
    {"div", {PZ, NZ}, {QN}},
    {"div", {PINF, NINF}, {QN}},
    {"div", {SNAN, ONE}, {QN}},
    {"log2", {SNAN}, {QN}},
    {"exp2", {0xFFC00000u}, {QN}},
    {"exp", {SNAN}, {QN}},
    {"log", {SNAN}, {QN}},
    {"sqrt", {SNAN}, {QN}},
    {"pow", {ONE, SNAN}, {QN}},
    {"mul_grad", {SNAN, ONE, ONE}, {QN, QN}},
    {"div_grad", {ONE, ONE, SNAN}, {QN, QN}},
    /* ∞ times a nonzero finite number: ∞ of the right sign */
    {"mul", {PINF, MTHREE}, {NINF}},
    {"mul", {P2(-120), NINF}, {NINF}},
    /* x / 0 for x ≠ 0: ∞ of the right sign; 0 / x and x / ∞ are zeros */
    {"div", {MTHREE, PZ}, {NINF}},
    {"div", {THREE, NZ}, {NINF}},
    {"div", {NZ, THREE}, {NZ}},
    {"div", {THREE, NINF}, {NZ}},
    {"div", {NINF, THREE}, {NINF}},
    /* palog2 */
    {"log2", {PZ}, {NINF}},
    {"log2", {NZ}, {NINF}},
    {"log2", {PINF}, {PINF}},
    {"log2", {NINF}, {PINF}},
    {"log2", {0xC1000000u}, {0x40400000u}}, /* palog2(-8) = 3 */
    {"log2", {ONE}, {PZ}},
    {"log2", {0x3F000000u}, {0xBF800000u}}, /* palog2(0.5) = -1 */
    /* paexp2 */
    {"exp2", {NINF}, {PZ}},
    {"exp2", {PINF}, {PINF}},
    {"exp2", {PZ}, {ONE}},
    {"exp2", {0xBF800000u}, {0x3F000000u}}, /* 2^-1 */
    /* pa_pow / pa_sqrt: negative base NaN, zero base 0 */
    {"pow", {MTHREE, ONE}, {QN}},
    {"pow", {NINF, ONE}, {QN}},
    {"sqrt", {MTHREE}, {QN}},
    {"sqrt", {NZ}, {PZ}},
    {"pow", {PZ, 0xBF800000u}, {PZ}},
    {"pow", {MSUB, ONE}, {PZ}},
    {"sqrt", {0x40800000u}, {0x40000000u}}, /* sqrt(4) = 2 */
    /* PAM with offset: a zero result is +0 */
    {"mul_off", {PZ, MTHREE, 0x3F8710CBu}, {PZ}},
    {"mul_off", {NZ, THREE, 0x3F8710CBu}, {PZ}},
    /* exact derivatives at the corners */
    {"mul_grad", {PZ, MTHREE, ONE}, {0xC0000000u, PZ}},   /* da = -2, db = +0 */
    {"mul_grad", {THREE, PINF, ONE}, {PINF, 0x40000000u}},
    {"mul_grad", {THREE, PINF, PZ}, {QN, PZ}},
    {"div_grad", {ONE, PZ, ONE}, {PINF, NINF}},
    {"div_grad", {ONE, PINF, ONE}, {PZ, NZ}},
    {"exp2_grad", {NINF, ONE}, {PZ}},
    {"exp2_grad", {PINF, ONE}, {PINF}},
    {"exp2_grad", {PINF, PZ}, {QN}},
    {"exp2_grad", {0xBF000000u, ONE}, {0x3F000000u}},     /* ⌊-0.5⌋ = -1 */
    {"log2_grad", {PZ, ONE}, {PINF}},
    {"log2_grad", {NINF, ONE}, {NZ}},
    {"log2_grad", {0xC1000000u, ONE}, {0xBE000000u}},     /* -2^-3 */
    {"pow_grad", {PZ, ONE, ONE}, {PZ, PZ}},
    {"pow_grad", {MTHREE, ONE, ONE}, {QN, QN}},
    {"sqrt_grad_approx", {PZ, ONE}, {PZ}},
    {"sqrt_grad_approx", {0x40800000u, ONE}, {0x3E800000u}}, /* 1/(2·2) */
};

static void test_corner_table(void **state)
{
    (void)state;
    int nfail = 0;
    for (size_t i = 0; i < sizeof corners / sizeof corners[0]; i++) {
        const corner *c = &corners[i];
        int op = nomul_vector_op_find(c->op);
        assert_true(op >= 0);
        uint32_t got[2] = {0, 0};
        nomul_vector_eval_scalar(op, c->in, got);
        for (int j = 0; j < nomul_vector_op_outputs(op); j++)
            if (got[j] != c->out[j] && nfail++ < 20)
                print_error("corner %zu %s(%08x %08x %08x) scalar: output %d %08x, want %08x\n",
                            i, c->op, c->in[0], c->in[1], c->in[2], j, got[j], c->out[j]);
        for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
            float in[4], out[2] = {0, 0};
            const float *pin[4] = {&in[0], &in[1], &in[2], &in[3]};
            float *pout[2] = {&out[0], &out[1]};
            memcpy(in, c->in, sizeof in);
            nomul_vector_eval_array((nomul_isa)isa, op, 1, pin, pout);
            for (int j = 0; j < nomul_vector_op_outputs(op); j++)
                if (tu_bits(out[j]) != c->out[j] && nfail++ < 20)
                    print_error("corner %zu %s %s: output %d %08x, want %08x\n", i, c->op,
                                nomul_isa_name((nomul_isa)isa), j, tu_bits(out[j]), c->out[j]);
        }
    }
    assert_int_equal(nfail, 0);
}

/* ---- scalar functions against the float64 reference twin -------------------- */

typedef struct {
    const char *name;
    int nin, nout;
    void (*nomul)(const float *in, float *out);
    void (*ref)(const float *in, float *out);
} twin;

#define UN(nm, f, r)                                                                     \
    static void n_##nm(const float *i, float *o) { o[0] = f(i[0]); }                     \
    static void r_##nm(const float *i, float *o) { o[0] = r(i[0]); }
#define BIN(nm, f, r)                                                                    \
    static void n_##nm(const float *i, float *o) { o[0] = f(i[0], i[1]); }               \
    static void r_##nm(const float *i, float *o) { o[0] = r(i[0], i[1]); }
#define GRAD2(nm, f, r)                                                                  \
    static void n_##nm(const float *i, float *o) { f(i[0], i[1], i[2], &o[0], &o[1]); }  \
    static void r_##nm(const float *i, float *o) { r(i[0], i[1], i[2], &o[0], &o[1]); }
#define GRADAP(nm, f, r, ap)                                                             \
    static void n_##nm(const float *i, float *o) { o[0] = f(i[0], i[1], ap); }           \
    static void r_##nm(const float *i, float *o) { o[0] = r(i[0], i[1], ap); }

UN(log2, nomul_pa_log2, ref_log2)
UN(exp2, nomul_pa_exp2, ref_exp2)
UN(exp, nomul_pa_exp, ref_exp)
UN(log, nomul_pa_log, ref_log)
UN(sqrt, nomul_pa_sqrt, ref_sqrt)
BIN(mul, nomul_pa_mul, ref_mul)
BIN(div, nomul_pa_div, ref_div)
BIN(pow, nomul_pa_pow, ref_pow)
BIN(exp2_grad, nomul_pa_exp2_grad, ref_exp2_grad)
BIN(log2_grad, nomul_pa_log2_grad, ref_log2_grad)
GRAD2(mul_grad, nomul_pa_mul_grad, ref_mul_grad)
GRAD2(mul_grad_approx, nomul_pa_mul_grad_approx, ref_mul_grad_approx)
GRAD2(div_grad, nomul_pa_div_grad, ref_div_grad)
GRAD2(div_grad_approx, nomul_pa_div_grad_approx, ref_div_grad_approx)
GRADAP(exp_grad, nomul_pa_exp_grad, ref_exp_grad, 0)
GRADAP(exp_grad_approx, nomul_pa_exp_grad, ref_exp_grad, 1)
GRADAP(log_grad, nomul_pa_log_grad, ref_log_grad, 0)
GRADAP(log_grad_approx, nomul_pa_log_grad, ref_log_grad, 1)
GRADAP(sqrt_grad, nomul_pa_sqrt_grad, ref_sqrt_grad, 0)
GRADAP(sqrt_grad_approx, nomul_pa_sqrt_grad, ref_sqrt_grad, 1)
static void n_mul_off(const float *i, float *o) { o[0] = nomul_pa_mul_off(i[0], i[1], i[2]); }
static void r_mul_off(const float *i, float *o) { o[0] = ref_mul_off(i[0], i[1], i[2]); }
static void n_mul_off_grad(const float *i, float *o)
{
    nomul_pa_mul_off_grad(i[0], i[1], i[2], i[3], &o[0], &o[1]);
}
static void r_mul_off_grad(const float *i, float *o)
{
    ref_mul_off_grad(i[0], i[1], i[2], i[3], &o[0], &o[1]);
}
static void n_pow_grad(const float *i, float *o) { nomul_pa_pow_grad(i[0], i[1], i[2], 0, &o[0], &o[1]); }
static void r_pow_grad(const float *i, float *o) { ref_pow_grad(i[0], i[1], i[2], 0, &o[0], &o[1]); }
static void n_pow_grad_ap(const float *i, float *o) { nomul_pa_pow_grad(i[0], i[1], i[2], 1, &o[0], &o[1]); }
static void r_pow_grad_ap(const float *i, float *o) { ref_pow_grad(i[0], i[1], i[2], 1, &o[0], &o[1]); }

#define T(nm, ni, no) {#nm, ni, no, n_##nm, r_##nm}
static const twin twins[] = {
    T(log2, 1, 1), T(exp2, 1, 1), T(exp, 1, 1), T(log, 1, 1), T(sqrt, 1, 1),
    T(mul, 2, 1), T(div, 2, 1), T(pow, 2, 1), T(exp2_grad, 2, 1), T(log2_grad, 2, 1),
    T(mul_grad, 3, 2), T(mul_grad_approx, 3, 2), T(div_grad, 3, 2), T(div_grad_approx, 3, 2),
    T(exp_grad, 2, 1), T(exp_grad_approx, 2, 1), T(log_grad, 2, 1), T(log_grad_approx, 2, 1),
    T(sqrt_grad, 2, 1), T(sqrt_grad_approx, 2, 1), T(mul_off, 3, 1), T(mul_off_grad, 4, 2),
    {"pow_grad", 3, 2, n_pow_grad, r_pow_grad}, {"pow_grad_approx", 3, 2, n_pow_grad_ap, r_pow_grad_ap},
};

/* Draws operands: anything at all half the time, else in the ranges where
 * each function has work to do. */
static void draw_inputs(tu_rng *r, const char *name, float *in, int nin)
{
    int any = tu_u32(r) & 1;
    for (int j = 0; j < nin; j++)
        in[j] = any ? tu_any_float(r) : tu_normal(r, -40, 40, 1);
    if (!any) {
        if (!strncmp(name, "exp", 3))
            in[0] = tu_normal(r, -10, 7, 1);
        if (!strncmp(name, "pow", 3) || !strncmp(name, "sqrt", 4) || !strncmp(name, "log", 3))
            in[0] = tu_normal(r, -126, 127, 0);
        if (!strncmp(name, "pow", 3))
            in[1] = tu_normal(r, -4, 2, 1);
    }
    if (nin >= 2 && tu_u32(r) % 4 == 0) {
        in[0] = tu_normal(r, -126, 127, 1);
        in[1] = tu_edge_partner(r, in[0]);
    }
    if (!strncmp(name, "mul_off", 7) && (tu_u32(r) & 1))
        in[2] = 1.0552f;
}

static void test_scalar_matches_float64_twin(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x1111};
    long n = (long)(200000 * tu_scale());
    for (size_t t = 0; t < sizeof twins / sizeof twins[0]; t++) {
        const twin *w = &twins[t];
        for (long k = 0; k < n; k++) {
            float in[4] = {0, 0, 0, 0}, got[2] = {0, 0}, want[2] = {0, 0};
            draw_inputs(&r, w->name, in, w->nin);
            w->nomul(in, got);
            w->ref(in, want);
            for (int j = 0; j < w->nout; j++)
                if (tu_bits(got[j]) != tu_bits(want[j]))
                    FAIL_SEED("%s(%08x %08x %08x %08x) output %d: nomul %08x, float64 twin %08x",
                              w->name, tu_bits(in[0]), tu_bits(in[1]), tu_bits(in[2]),
                              tu_bits(in[3]), j, tu_bits(got[j]), tu_bits(want[j]));
        }
    }
}

/* Every float32 bit pattern at a stride (all of them with NOMUL_TEST_SCALE
 * large enough): palog2 and paexp2 against the twin and every kernel. */
static void test_sweep_log2_exp2(void **state)
{
    (void)state;
    uint64_t stride = (uint64_t)(97 / tu_scale());
    if (stride < 1)
        stride = 1;
    enum { CHUNK = 4096 };
    static float x[CHUNK], y_log[CHUNK], y_exp[CHUNK], k_out[CHUNK];
    uint64_t offset = tu_seed() % stride;
    size_t m = 0;
    for (uint64_t u = offset; u <= 0xFFFFFFFFull + 1; u += stride) {
        int last = u > 0xFFFFFFFFull;
        if (!last) {
            float v = tu_float((uint32_t)u);
            x[m] = v;
            y_log[m] = nomul_pa_log2(v);
            y_exp[m] = nomul_pa_exp2(v);
            if (tu_bits(y_log[m]) != tu_bits(ref_log2(v)))
                FAIL_SEED("palog2(%08x) = %08x, twin %08x", (uint32_t)u, tu_bits(y_log[m]),
                          tu_bits(ref_log2(v)));
            if (tu_bits(y_exp[m]) != tu_bits(ref_exp2(v)))
                FAIL_SEED("paexp2(%08x) = %08x, twin %08x", (uint32_t)u, tu_bits(y_exp[m]),
                          tu_bits(ref_exp2(v)));
            m++;
        }
        if (m == CHUNK || (last && m)) {
            for (int isa = 1; isa <= (int)nomul_isa_max(); isa++) {
                nomul_isa_set((nomul_isa)isa);
                nomul_pa_log2_v(m, x, k_out);
                for (size_t i = 0; i < m; i++)
                    if (tu_bits(k_out[i]) != tu_bits(y_log[i]))
                        FAIL_SEED("palog2 %s(%08x) = %08x, scalar %08x",
                                  nomul_isa_name((nomul_isa)isa), tu_bits(x[i]),
                                  tu_bits(k_out[i]), tu_bits(y_log[i]));
                nomul_pa_exp2_v(m, x, k_out);
                for (size_t i = 0; i < m; i++)
                    if (tu_bits(k_out[i]) != tu_bits(y_exp[i]))
                        FAIL_SEED("paexp2 %s(%08x) = %08x, scalar %08x",
                                  nomul_isa_name((nomul_isa)isa), tu_bits(x[i]),
                                  tu_bits(k_out[i]), tu_bits(y_exp[i]));
            }
            nomul_isa_set(nomul_isa_max());
            m = 0;
        }
        if (last)
            break;
    }
}

/* ---- every kernel of every ISA against the scalar functions ------------------ */

static void test_kernels_match_scalar(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x2222};
    enum { MAXN = 1000 };
    static float in[4][MAXN], want[2][MAXN], got[2][MAXN], alias[MAXN];
    int rounds = (int)(60 * tu_scale()) + 4;
    for (int op = 0; op < NOMUL_ELT_COUNT; op++) {
        const nomul_elt_info *info = &nomul_elt_info_table[op];
        for (int round = 0; round < rounds; round++) {
            size_t n = round < 40 ? (size_t)round : 1 + tu_u32(&r) % MAXN;
            nomul_elt_args g = {{in[0], in[1], in[2], in[3]}, {0}, {want[0], want[1]}, round & 1};
            /* a third of the rounds: normal values with zeros and subnormals among
             * them, and nothing else (a model's masks, ReLUs and padding rows: the
             * kernels' second tier), else every class */
            const int zeros = round % 3 == 1;
            for (int j = 0; j < info->n_in; j++) {
                g.bcast[j] = round > 3 && tu_u32(&r) % 4 == 0;
                for (size_t i = 0; i < MAXN; i++)
                    in[j][i] = zeros ? ((tu_u32(&r) & 7) ? tu_normal(&r, -20, 20, 1)
                                        : tu_u32(&r) & 1 ? tu_float(tu_u32(&r) & 0x807FFFFFu)
                                                         : tu_float(tu_u32(&r) & 0x80000000u))
                           : (tu_u32(&r) & 3) ? tu_any_float(&r)
                                              : tu_normal(&r, -20, 20, 1);
            }
            /* half the rounds: second operands at the range edges of the first */
            if (info->n_in >= 2 && (round & 2) && !g.bcast[0] && !g.bcast[1])
                for (size_t i = 0; i < MAXN; i++)
                    in[1][i] = tu_edge_partner(&r, in[0][i]);
            nomul_elt_run_isa(NOMUL_ISA_SCALAR, (nomul_elt_op)op, n, &g);
            for (int isa = 1; isa <= (int)nomul_isa_max(); isa++) {
                nomul_elt_args k = g;
                k.out[0] = got[0];
                k.out[1] = info->n_out > 1 && (round % 3) ? got[1] : NULL;
                /* in place: the first output overwrites the first input */
                int in_place = round % 5 == 2 && !g.bcast[0];
                if (in_place) {
                    memcpy(alias, in[0], sizeof alias);
                    k.in[0] = alias;
                    k.out[0] = alias;
                }
                memset(got, 0xA5, sizeof got);
                nomul_elt_run_isa((nomul_isa)isa, (nomul_elt_op)op, n, &k);
                for (int j = 0; j < info->n_out; j++) {
                    if (!k.out[j])
                        continue;
                    for (size_t i = 0; i < n; i++)
                        if (tu_bits(k.out[j][i]) != tu_bits(want[j][i]))
                            FAIL_SEED("%s on %s, n=%zu%s, element %zu, output %d: %08x, scalar "
                                      "%08x (inputs %08x %08x %08x %08x)",
                                      info->name, nomul_isa_name((nomul_isa)isa), n,
                                      in_place ? " in place" : "", i, j, tu_bits(k.out[j][i]),
                                      tu_bits(want[j][i]), tu_bits(in[0][g.bcast[0] ? 0 : i]),
                                      tu_bits(in[1][g.bcast[1] ? 0 : i]),
                                      tu_bits(in[2][g.bcast[2] ? 0 : i]),
                                      tu_bits(in[3][g.bcast[3] ? 0 : i]));
                    /* nothing written past n */
                    if (!in_place && n < MAXN && tu_bits(k.out[j][n]) != 0xA5A5A5A5u)
                        FAIL_SEED("%s on %s wrote past n=%zu", info->name,
                                  nomul_isa_name((nomul_isa)isa), n);
                }
            }
        }
    }
}

/* ---- the public array entry points are wired to the right operation --------- */

static void test_array_api(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x3333};
    enum { N = 77 };
    float a[N], b[N], d[N], o1[N], o2[N];
    for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
        nomul_isa_set((nomul_isa)isa);
        assert_int_equal(nomul_isa_active(), isa);
        for (int i = 0; i < N; i++) {
            a[i] = tu_any_float(&r);
            b[i] = tu_any_float(&r);
            d[i] = tu_any_float(&r);
        }
        float s = tu_normal(&r, -3, 3, 1);
#define CHECK1(call, expr)                                                                 \
    do {                                                                                   \
        call;                                                                              \
        for (int i = 0; i < N; i++)                                                        \
            if (tu_bits(o1[i]) != tu_bits(expr))                                           \
                FAIL_SEED("%s on %s, element %d: %08x vs %08x", #call,                     \
                          nomul_isa_name((nomul_isa)isa), i, tu_bits(o1[i]), tu_bits(expr)); \
    } while (0)
        CHECK1(nomul_pa_mul_v(N, a, b, o1), nomul_pa_mul(a[i], b[i]));
        CHECK1(nomul_pa_mul_vs(N, a, s, o1), nomul_pa_mul(a[i], s));
        CHECK1(nomul_pa_mul_off_v(N, a, b, 1.0552f, o1), nomul_pa_mul_off(a[i], b[i], 1.0552f));
        CHECK1(nomul_pa_mul_off_vs(N, a, s, 1.0552f, o1), nomul_pa_mul_off(a[i], s, 1.0552f));
        CHECK1(nomul_pa_div_v(N, a, b, o1), nomul_pa_div(a[i], b[i]));
        CHECK1(nomul_pa_div_vs(N, a, s, o1), nomul_pa_div(a[i], s));
        CHECK1(nomul_pa_div_sv(N, s, b, o1), nomul_pa_div(s, b[i]));
        CHECK1(nomul_pa_log2_v(N, a, o1), nomul_pa_log2(a[i]));
        CHECK1(nomul_pa_exp2_v(N, a, o1), nomul_pa_exp2(a[i]));
        CHECK1(nomul_pa_exp_v(N, a, o1), nomul_pa_exp(a[i]));
        CHECK1(nomul_pa_log_v(N, a, o1), nomul_pa_log(a[i]));
        CHECK1(nomul_pa_pow_v(N, a, b, o1), nomul_pa_pow(a[i], b[i]));
        CHECK1(nomul_pa_pow_vs(N, a, s, o1), nomul_pa_pow(a[i], s));
        CHECK1(nomul_pa_sqrt_v(N, a, o1), nomul_pa_sqrt(a[i]));
        CHECK1(nomul_pa_exp2_grad_v(N, a, d, o1), nomul_pa_exp2_grad(a[i], d[i]));
        CHECK1(nomul_pa_log2_grad_v(N, a, d, o1), nomul_pa_log2_grad(a[i], d[i]));
        for (int ap = 0; ap < 2; ap++) {
            CHECK1(nomul_pa_exp_grad_v(N, a, d, ap, o1), nomul_pa_exp_grad(a[i], d[i], ap));
            CHECK1(nomul_pa_log_grad_v(N, a, d, ap, o1), nomul_pa_log_grad(a[i], d[i], ap));
            CHECK1(nomul_pa_sqrt_grad_v(N, a, d, ap, o1), nomul_pa_sqrt_grad(a[i], d[i], ap));
        }
#define CHECK2(call, fn, A, B)                                                             \
    do {                                                                                   \
        call;                                                                              \
        for (int i = 0; i < N; i++) {                                                      \
            float x1, x2;                                                                  \
            fn(A, B, d[i], &x1, &x2);                                                      \
            if (tu_bits(o1[i]) != tu_bits(x1) || tu_bits(o2[i]) != tu_bits(x2))            \
                FAIL_SEED("%s on %s, element %d", #call, nomul_isa_name((nomul_isa)isa), i); \
        }                                                                                  \
    } while (0)
        CHECK2(nomul_pa_mul_grad_v(N, a, b, d, o1, o2), nomul_pa_mul_grad, a[i], b[i]);
        CHECK2(nomul_pa_mul_grad_approx_v(N, a, b, d, o1, o2), nomul_pa_mul_grad_approx, a[i],
               b[i]);
        CHECK2(nomul_pa_div_grad_v(N, a, b, d, o1, o2), nomul_pa_div_grad, a[i], b[i]);
        CHECK2(nomul_pa_div_grad_approx_v(N, a, b, d, o1, o2), nomul_pa_div_grad_approx, a[i],
               b[i]);
#undef CHECK1
#undef CHECK2
        /* broadcast forms write only the array operand's gradient */
        float v1[N], v2[N], v3[N], v4[N], p1[2][N], p2[2][N], p3[2][N];
        nomul_pa_mul_grad_vs(N, a, s, d, o1);
        nomul_pa_div_grad_vs(N, a, s, d, o2);
        nomul_pa_mul_grad_approx_vs(N, a, s, d, v1);
        nomul_pa_div_grad_approx_vs(N, a, s, d, v2);
        nomul_pa_mul_off_grad_v(N, a, b, 1.0552f, d, v3, v4);
        for (int ap = 0; ap < 2; ap++) {
            nomul_pa_pow_grad_v(N, a, b, d, ap, p1[ap], p2[ap]);
            nomul_pa_pow_grad_vs(N, a, s, d, ap, p3[ap]);
        }
        for (int i = 0; i < N; i++) {
            float x1, x2;
            nomul_pa_mul_grad(a[i], s, d[i], &x1, &x2);
            assert_int_equal(tu_bits(o1[i]), tu_bits(x1));
            nomul_pa_div_grad(a[i], s, d[i], &x1, &x2);
            assert_int_equal(tu_bits(o2[i]), tu_bits(x1));
            nomul_pa_mul_grad_approx(a[i], s, d[i], &x1, &x2);
            assert_int_equal(tu_bits(v1[i]), tu_bits(x1));
            nomul_pa_div_grad_approx(a[i], s, d[i], &x1, &x2);
            assert_int_equal(tu_bits(v2[i]), tu_bits(x1));
            nomul_pa_mul_off_grad(a[i], b[i], 1.0552f, d[i], &x1, &x2);
            assert_int_equal(tu_bits(v3[i]), tu_bits(x1));
            assert_int_equal(tu_bits(v4[i]), tu_bits(x2));
            for (int ap = 0; ap < 2; ap++) {
                nomul_pa_pow_grad(a[i], b[i], d[i], ap, &x1, &x2);
                assert_int_equal(tu_bits(p1[ap][i]), tu_bits(x1));
                assert_int_equal(tu_bits(p2[ap][i]), tu_bits(x2));
                nomul_pa_pow_grad(a[i], s, d[i], ap, &x1, &x2);
                assert_int_equal(tu_bits(p3[ap][i]), tu_bits(x1));
            }
        }
    }
    nomul_isa_set(nomul_isa_max());
}

/* ---- exact derivatives are the slopes of the functions -------------------------- */

typedef float (*fn1)(float);
static float mul_by_b;
static float f_mul_a(float a) { return nomul_pa_mul(a, mul_by_b); }
static float f_mul_b(float b) { return nomul_pa_mul(mul_by_b, b); }
static float f_div_a(float a) { return nomul_pa_div(a, mul_by_b); }
static float f_div_b(float b) { return nomul_pa_div(mul_by_b, b); }
static float f_pow_a(float a) { return nomul_pa_pow(a, mul_by_b); }

static float g_mul_a(float a) { float x, y; nomul_pa_mul_grad(a, mul_by_b, 1.0f, &x, &y); return x; }
static float g_mul_b(float b) { float x, y; nomul_pa_mul_grad(mul_by_b, b, 1.0f, &x, &y); return y; }
static float g_div_a(float a) { float x, y; nomul_pa_div_grad(a, mul_by_b, 1.0f, &x, &y); return x; }
static float g_div_b(float b) { float x, y; nomul_pa_div_grad(mul_by_b, b, 1.0f, &x, &y); return y; }
static float g_exp2(float y) { return nomul_pa_exp2_grad(y, 1.0f); }
static float g_log2(float x) { return nomul_pa_log2_grad(x, 1.0f); }
static float g_exp(float x) { return nomul_pa_exp_grad(x, 1.0f, 0); }
static float g_log(float x) { return nomul_pa_log_grad(x, 1.0f, 0); }
static float g_pow_a(float a) { float x, y; nomul_pa_pow_grad(a, mul_by_b, 1.0f, 0, &x, &y); return x; }
static float g_sqrt(float a) { return nomul_pa_sqrt_grad(a, 1.0f, 0); }

/* Where the slope is the same at x and at x + h, the function's rise over
 * [x, x + h] must match it (up to the rounding of the values). */
static void check_slopes(const char *name, fn1 f, fn1 g, tu_rng *r, int elo, int ehi, int sign,
                         int *checked)
{
    for (int k = 0; k < 400; k++) {
        float x = tu_normal(r, elo, ehi, sign);
        uint32_t ux = tu_bits(x);
        uint32_t steps = 1u << (8 + tu_u32(r) % 8);
        if ((ux & 0x7FFFFFu) + steps > 0x7FFFFFu)
            continue; /* stay in x's binade */
        float x2 = tu_float(ux + steps);
        float s1 = g(x), s2 = g(x2), s_mid = g(tu_float(ux + steps / 2));
        if (tu_bits(s1) != tu_bits(s2) || tu_bits(s1) != tu_bits(s_mid) || !isfinite(s1) ||
            s1 == 0)
            continue; /* a breakpoint lies between */
        double fx = f(x), fx2 = f(x2);
        if (!isfinite(fx) || !isfinite(fx2) || fx == 0 || fx2 == 0)
            continue;
        double fd = (fx2 - fx) / ((double)x2 - (double)x);
        double rel = fabs(fd / (double)s1 - 1.0);
        /* values rounded to 24 bits over a span of 2^8.. ulps */
        double tol = 4.0 * ldexp(1.0, -24) * (fabs(fx) + fabs(fx2)) /
                     fabs((fx2 - fx) == 0 ? 1e-300 : (fx2 - fx));
        if (rel > 1e-6 + tol)
            FAIL_SEED("%s at %08x..%08x (b=%08x): slope %g, rise/run %g", name, ux, tu_bits(x2),
                      tu_bits(mul_by_b), (double)s1, fd);
        /* exact derivatives are signed powers of two */
        if ((tu_bits(s1) & 0x7FFFFFu) != 0)
            FAIL_SEED("%s at %08x: slope %g is not a power of two", name, ux, (double)s1);
        (*checked)++;
    }
}

static void test_exact_derivatives_are_slopes(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x4444};
    int checked = 0;
    for (int rep = 0; rep < 20; rep++) {
        mul_by_b = tu_normal(&r, -10, 10, 1);
        check_slopes("dPAM/da", f_mul_a, g_mul_a, &r, -20, 20, 1, &checked);
        check_slopes("dPAM/db", f_mul_b, g_mul_b, &r, -20, 20, 1, &checked);
        check_slopes("dPAD/da", f_div_a, g_div_a, &r, -20, 20, 1, &checked);
        check_slopes("dPAD/db", f_div_b, g_div_b, &r, -20, 20, 1, &checked);
        check_slopes("paexp2'", nomul_pa_exp2, g_exp2, &r, 0, 6, 1, &checked);
        check_slopes("palog2'", nomul_pa_log2, g_log2, &r, 0, 0, 0, &checked);
        check_slopes("pa_exp'", nomul_pa_exp, g_exp, &r, 0, 5, 1, &checked);
        /* x in [2, 16): palog2 x stays in one binade, where PAD's slope is one */
        check_slopes("pa_log'", nomul_pa_log, g_log, &r, 1, 3, 0, &checked);
        mul_by_b = tu_normal(&r, -2, 1, 1);
        /* a in [2, 4): palog2 a in one binade, as for pa_log */
        check_slopes("d pa_pow/da", f_pow_a, g_pow_a, &r, 1, 1, 0, &checked);
        check_slopes("pa_sqrt'", nomul_pa_sqrt, g_sqrt, &r, 1, 1, 0, &checked);
    }
    if (checked < 20000)
        FAIL_SEED("only %d slope checks were away from breakpoints", checked);
}

/* ---- PAM's error ----------------------------------------------------------------- */

static void test_pam_error_bounds(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x5555};
    double worst = 0;
    for (int k = 0; k < (int)(200000 * tu_scale()) + 1000; k++) {
        float a = tu_normal(&r, -30, 30, 1), b = tu_normal(&r, -30, 30, 1);
        double rel = (double)nomul_pa_mul(a, b) / ((double)a * (double)b) - 1.0;
        if (!(rel <= 0 && rel > -0.112))
            FAIL_SEED("PAM(%08x, %08x) relative error %g outside (-11.2%%, 0]", tu_bits(a),
                      tu_bits(b), rel);
        if (rel < worst)
            worst = rel;
        /* a power-of-two operand makes PAM exact */
        float p = tu_float(tu_bits(b) & 0xFF800000u);
        if (nomul_pa_mul(a, p) != a * p)
            FAIL_SEED("PAM(%08x, %08x) is not exact", tu_bits(a), tu_bits(p));
    }
    /* the worst case is at mantissas 0.5, 0.5: 1.5 * 1.5 = 2.25 vs 2 */
    assert_true(nomul_pa_mul(1.5f, 1.5f) == 2.0f);
    assert_true(worst > -1.0 / 9.0 - 1e-12);
}

/* ---- instruction set choice ------------------------------------------------------- */

static void test_isa_names_and_caps(void **state)
{
    (void)state;
    for (int i = 0; i < NOMUL_ISA_COUNT; i++)
        assert_int_equal(nomul_isa_parse(nomul_isa_name((nomul_isa)i)), i);
    assert_int_equal(nomul_isa_parse("sse9"), -1);
    assert_int_equal(nomul_isa_parse(NULL), -1);
    assert_true(nomul_isa_max() <= nomul_isa_detect());
    assert_int_equal(nomul_isa_set(NOMUL_ISA_SCALAR), NOMUL_ISA_SCALAR);
    assert_int_equal(nomul_isa_active(), NOMUL_ISA_SCALAR);
    /* a request above what is allowed gets the best allowed */
    assert_int_equal(nomul_isa_set(NOMUL_ISA_AVX512), nomul_isa_max());
    const char *cap = getenv("NOMUL_ISA");
    if (cap && nomul_isa_parse(cap) >= 0)
        assert_true((int)nomul_isa_max() <= nomul_isa_parse(cap));
}

/* Which CPUs run 512-bit FMAs at full width (isa.c's rule, on cpuid's
 * vendor, family and model): Zen 5's desktop and server parts, not Zen 4
 * nor Zen 5's mobile Strix and Krackan Point, nor Intel's (cpuid cannot
 * tell one 512-bit FMA unit from two there); this CPU's answer needs
 * AVX-512. */
static void test_cpu_fma512_rule(void **state)
{
    (void)state;
    static const struct {
        int amd;
        unsigned family, model;
        int full;
    } cpus[] = {
        {1, 0x19, 0x11, 0}, /* Zen 4 Genoa */
        {1, 0x19, 0x61, 0}, /* Zen 4 Raphael */
        {1, 0x17, 0x31, 0}, /* Zen 2 */
        {1, 0x1A, 0x02, 1}, /* Zen 5 Turin */
        {1, 0x1A, 0x11, 1}, /* Zen 5c Turin Dense */
        {1, 0x1A, 0x24, 0}, /* Strix Point */
        {1, 0x1A, 0x2F, 0},
        {1, 0x1A, 0x30, 1},
        {1, 0x1A, 0x44, 1}, /* Granite Ridge */
        {1, 0x1A, 0x5F, 1},
        {1, 0x1A, 0x60, 0}, /* Krackan Point */
        {1, 0x1A, 0x70, 1}, /* Strix Halo */
        {1, 0x1B, 0x00, 1}, /* a later family */
        {0, 0x06, 0x55, 0}, /* Intel Skylake-SP */
        {0, 0x06, 0xCF, 0}, /* Intel Emerald Rapids */
        {0, 0x1A, 0x02, 0}, /* not AMD's */
    };
    for (size_t i = 0; i < sizeof cpus / sizeof cpus[0]; i++)
        if (nomul_cpu_fma512_full_of(cpus[i].amd, cpus[i].family, cpus[i].model) !=
            cpus[i].full)
            fail_msg("amd %d family %#x model %#x: want %d", cpus[i].amd, cpus[i].family,
                     cpus[i].model, cpus[i].full);
    int full = nomul_cpu_fma512_full();
    printf("# this CPU: 512-bit FMA at full width: %s\n", full ? "yes" : "no");
    assert_true(full == 0 || full == 1);
    if (full)
        assert_int_equal(nomul_isa_detect(), NOMUL_ISA_AVX512);
    assert_int_equal(nomul_cpu_fma512_full(), full); /* cached */
}

/* The audit's counters: every thread counts into its own block and a read
 * sums them, so counts made on four threads at once add up exactly, a reset
 * clears every thread's, and nothing is counted while counting is off. */
static void test_counts_sum_over_threads(void **state)
{
    (void)state;
    enum { N = 37, REPS = 200, THREADS = 4 };
    nomul_counts_reset();
    nomul_counts_enable(1);
#pragma omp parallel num_threads(THREADS)
    {
        float a[N], b[N], o[N];
        for (int i = 0; i < N; i++) {
            a[i] = 1.5f + (float)i;
            b[i] = 0.75f;
        }
        for (int r = 0; r < REPS; r++)
            nomul_pa_mul_v(N, a, b, o);
    }
    nomul_counts_enable(0);
    nomul_op_counts c;
    nomul_counts_get(&c);
    assert_int_equal(c.n[NOMUL_COUNT_PAM], (unsigned long long)N * REPS * THREADS);
    float a[N] = {0}, o[N];
    nomul_pa_mul_v(N, a, a, o); /* counting off */
    nomul_counts_get(&c);
    assert_int_equal(c.n[NOMUL_COUNT_PAM], (unsigned long long)N * REPS * THREADS);
    nomul_counts_reset();
    nomul_counts_get(&c);
    for (int i = 0; i < NOMUL_COUNT_CLASSES; i++)
        assert_int_equal(c.n[i], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_vectors),
        cmocka_unit_test(test_corner_table),
        cmocka_unit_test(test_scalar_matches_float64_twin),
        cmocka_unit_test(test_sweep_log2_exp2),
        cmocka_unit_test(test_kernels_match_scalar),
        cmocka_unit_test(test_array_api),
        cmocka_unit_test(test_exact_derivatives_are_slopes),
        cmocka_unit_test(test_pam_error_bounds),
        cmocka_unit_test(test_isa_names_and_caps),
        cmocka_unit_test(test_cpu_fma512_rule),
        cmocka_unit_test(test_counts_sum_over_threads),
    };
    printf("test_arith: seed %llu, instruction sets up to %s\n",
           (unsigned long long)tu_seed(), nomul_isa_name(nomul_isa_max()));
    return cmocka_run_group_tests_name("arith", tests, NULL, NULL);
}
