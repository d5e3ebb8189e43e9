/*
 * pam_array.c — the array versions of the arithmetic: the scalar kernel
 * table (a loop over the functions of pam_scalar.c, the plain twin of the
 * SIMD kernels), dispatch to the active instruction set, and the public
 * nomul_*_v / _vs / _sv entry points.
 */
#include "nomul/arith.h"

#include "../core/internal.h"
#include "elt.h"

const nomul_elt_info nomul_elt_info_table[NOMUL_ELT_COUNT] = {
#define X(E, name, nin, nout) [NOMUL_ELT_##E] = {#name, nin, nout},
    NOMUL_ELT_OPS(X)
#undef X
};

/* ---- the scalar twin: one element at a time through pam_scalar.c ------ */

typedef void (*elt_scalar_fn)(const float *in, float *out, int approx);

static void s_mul(const float *in, float *out, int ap) { (void)ap; out[0] = nomul_pa_mul(in[0], in[1]); }
static void s_mul_off(const float *in, float *out, int ap) { (void)ap; out[0] = nomul_pa_mul_off(in[0], in[1], in[2]); }
static void s_div(const float *in, float *out, int ap) { (void)ap; out[0] = nomul_pa_div(in[0], in[1]); }
static void s_log2(const float *in, float *out, int ap) { (void)ap; out[0] = nomul_pa_log2(in[0]); }
static void s_exp2(const float *in, float *out, int ap) { (void)ap; out[0] = nomul_pa_exp2(in[0]); }
static void s_exp(const float *in, float *out, int ap) { (void)ap; out[0] = nomul_pa_exp(in[0]); }
static void s_log(const float *in, float *out, int ap) { (void)ap; out[0] = nomul_pa_log(in[0]); }
static void s_pow(const float *in, float *out, int ap) { (void)ap; out[0] = nomul_pa_pow(in[0], in[1]); }
static void s_sqrt(const float *in, float *out, int ap) { (void)ap; out[0] = nomul_pa_sqrt(in[0]); }
static void s_mul_grad(const float *in, float *out, int ap) { (void)ap; nomul_pa_mul_grad(in[0], in[1], in[2], &out[0], &out[1]); }
static void s_mul_off_grad(const float *in, float *out, int ap) { (void)ap; nomul_pa_mul_off_grad(in[0], in[1], in[2], in[3], &out[0], &out[1]); }
static void s_mul_grad_approx(const float *in, float *out, int ap) { (void)ap; nomul_pa_mul_grad_approx(in[0], in[1], in[2], &out[0], &out[1]); }
static void s_div_grad(const float *in, float *out, int ap) { (void)ap; nomul_pa_div_grad(in[0], in[1], in[2], &out[0], &out[1]); }
static void s_div_grad_approx(const float *in, float *out, int ap) { (void)ap; nomul_pa_div_grad_approx(in[0], in[1], in[2], &out[0], &out[1]); }
static void s_exp2_grad(const float *in, float *out, int ap) { (void)ap; out[0] = nomul_pa_exp2_grad(in[0], in[1]); }
static void s_log2_grad(const float *in, float *out, int ap) { (void)ap; out[0] = nomul_pa_log2_grad(in[0], in[1]); }
static void s_exp_grad(const float *in, float *out, int ap) { out[0] = nomul_pa_exp_grad(in[0], in[1], ap); }
static void s_log_grad(const float *in, float *out, int ap) { out[0] = nomul_pa_log_grad(in[0], in[1], ap); }
static void s_pow_grad(const float *in, float *out, int ap) { nomul_pa_pow_grad(in[0], in[1], in[2], ap, &out[0], &out[1]); }
static void s_sqrt_grad(const float *in, float *out, int ap) { out[0] = nomul_pa_sqrt_grad(in[0], in[1], ap); }

static void scalar_loop(elt_scalar_fn fn, int nin, int nout, size_t n, const nomul_elt_args *g)
{
    for (size_t i = 0; i < n; i++) {
        float in[4] = {0}, out[2];
        for (int j = 0; j < nin; j++)
            in[j] = g->in[j][g->bcast[j] ? 0 : i];
        fn(in, out, g->approx);
        for (int j = 0; j < nout; j++)
            if (g->out[j])
                g->out[j][i] = out[j];
    }
}

#define X(E, name, nin, nout)                                                   \
    static void scalar_kernel_##name(size_t n, const nomul_elt_args *g)         \
    {                                                                           \
        scalar_loop(s_##name, nin, nout, n, g);                                 \
    }
NOMUL_ELT_OPS(X)
#undef X

const nomul_elt_kernel nomul_elt_kernels_scalar[NOMUL_ELT_COUNT] = {
#define X(E, name, nin, nout) [NOMUL_ELT_##E] = scalar_kernel_##name,
    NOMUL_ELT_OPS(X)
#undef X
};

/* ---- dispatch ---------------------------------------------------------- */

static const nomul_elt_kernel *kernels_of(nomul_isa isa)
{
    switch (isa) {
    case NOMUL_ISA_AVX512: return nomul_elt_kernels_avx512;
    case NOMUL_ISA_AVX2: return nomul_elt_kernels_avx2;
    default: return nomul_elt_kernels_scalar;
    }
}

void nomul_elt_run_isa(nomul_isa isa, nomul_elt_op op, size_t n, const nomul_elt_args *args)
{
    if (n == 0)
        return;
    kernels_of(isa)[op](n, args);
}

void nomul_elt_run(nomul_elt_op op, size_t n, const nomul_elt_args *args)
{
    nomul_elt_run_isa(nomul_isa_active(), op, n, args);
}

const nomul_pa_fused *nomul_pa_fused_active(void)
{
    switch (nomul_isa_active()) {
    case NOMUL_ISA_AVX512: return &nomul_pa_fused_avx512;
    case NOMUL_ISA_AVX2: return &nomul_pa_fused_avx2;
    default: return NULL;
    }
}

/* ---- public array entry points ----------------------------------------- */

/* The audit's count of one element of each operation (PA primitives, and
 * exponent shifts for exact derivatives). */
static void count_elt(nomul_elt_op op, size_t n, int approx)
{
    switch (op) {
    case NOMUL_ELT_MUL: NOMUL_COUNT(PAM, n); break;
    case NOMUL_ELT_MUL_OFF: NOMUL_COUNT(PAM, 2 * n); break;
    case NOMUL_ELT_DIV: NOMUL_COUNT(PAD, n); break;
    case NOMUL_ELT_LOG2: NOMUL_COUNT(PALOG2, n); break;
    case NOMUL_ELT_EXP2: NOMUL_COUNT(PAEXP2, n); break;
    case NOMUL_ELT_EXP: NOMUL_COUNT(PAM, n); NOMUL_COUNT(PAEXP2, n); break;
    case NOMUL_ELT_LOG: NOMUL_COUNT(PALOG2, n); NOMUL_COUNT(PAD, n); break;
    case NOMUL_ELT_POW:
    case NOMUL_ELT_SQRT:
        NOMUL_COUNT(PALOG2, n);
        NOMUL_COUNT(PAM, n);
        NOMUL_COUNT(PAEXP2, n);
        break;
    case NOMUL_ELT_MUL_GRAD:
    case NOMUL_ELT_DIV_GRAD: NOMUL_COUNT(SHIFT, 2 * n); break;
    case NOMUL_ELT_MUL_OFF_GRAD: NOMUL_COUNT(SHIFT, 2 * n); NOMUL_COUNT(PAM, 2 * n); break;
    case NOMUL_ELT_MUL_GRAD_APPROX: NOMUL_COUNT(PAM, 2 * n); break;
    case NOMUL_ELT_DIV_GRAD_APPROX: NOMUL_COUNT(PAD, 2 * n); NOMUL_COUNT(PAM, 3 * n); break;
    case NOMUL_ELT_EXP2_GRAD:
    case NOMUL_ELT_LOG2_GRAD: NOMUL_COUNT(SHIFT, n); break;
    default: /* the composite derivatives: their primitives, or their slopes */
        if (approx) {
            NOMUL_COUNT(PAM, 3 * n);
            NOMUL_COUNT(PAD, n);
            NOMUL_COUNT(PAEXP2, n);
            NOMUL_COUNT(PALOG2, n);
        } else {
            NOMUL_COUNT(SHIFT, 3 * n);
            NOMUL_COUNT(PAM, n);
            NOMUL_COUNT(PALOG2, n);
        }
        break;
    }
}

/* Up to four inputs: a pointer each, and whether it is a broadcast scalar. */
static void run(nomul_elt_op op, size_t n, const float *i0, int b0, const float *i1, int b1,
                const float *i2, int b2, const float *i3, int b3, float *o0, float *o1,
                int approx)
{
    nomul_elt_args g = {{i0, i1, i2, i3}, {b0, b1, b2, b3}, {o0, o1}, approx};
    count_elt(op, n, approx);
    nomul_elt_run(op, n, &g);
}

#define V 0 /* an array operand */
#define S 1 /* a broadcast scalar operand */

void nomul_pa_mul_v(size_t n, const float *a, const float *b, float *out)
{
    run(NOMUL_ELT_MUL, n, a, V, b, V, 0, 0, 0, 0, out, 0, 0);
}
void nomul_pa_mul_vs(size_t n, const float *a, float b, float *out)
{
    run(NOMUL_ELT_MUL, n, a, V, &b, S, 0, 0, 0, 0, out, 0, 0);
}
void nomul_pa_mul_off_v(size_t n, const float *a, const float *b, float c, float *out)
{
    run(NOMUL_ELT_MUL_OFF, n, a, V, b, V, &c, S, 0, 0, out, 0, 0);
}
void nomul_pa_mul_off_vs(size_t n, const float *a, float b, float c, float *out)
{
    run(NOMUL_ELT_MUL_OFF, n, a, V, &b, S, &c, S, 0, 0, out, 0, 0);
}
void nomul_pa_div_v(size_t n, const float *a, const float *b, float *out)
{
    run(NOMUL_ELT_DIV, n, a, V, b, V, 0, 0, 0, 0, out, 0, 0);
}
void nomul_pa_div_vs(size_t n, const float *a, float b, float *out)
{
    run(NOMUL_ELT_DIV, n, a, V, &b, S, 0, 0, 0, 0, out, 0, 0);
}
void nomul_pa_div_sv(size_t n, float a, const float *b, float *out)
{
    run(NOMUL_ELT_DIV, n, &a, S, b, V, 0, 0, 0, 0, out, 0, 0);
}
void nomul_pa_log2_v(size_t n, const float *x, float *out)
{
    run(NOMUL_ELT_LOG2, n, x, V, 0, 0, 0, 0, 0, 0, out, 0, 0);
}
void nomul_pa_exp2_v(size_t n, const float *y, float *out)
{
    run(NOMUL_ELT_EXP2, n, y, V, 0, 0, 0, 0, 0, 0, out, 0, 0);
}
void nomul_pa_exp_v(size_t n, const float *x, float *out)
{
    run(NOMUL_ELT_EXP, n, x, V, 0, 0, 0, 0, 0, 0, out, 0, 0);
}
void nomul_pa_log_v(size_t n, const float *x, float *out)
{
    run(NOMUL_ELT_LOG, n, x, V, 0, 0, 0, 0, 0, 0, out, 0, 0);
}
void nomul_pa_pow_v(size_t n, const float *a, const float *p, float *out)
{
    run(NOMUL_ELT_POW, n, a, V, p, V, 0, 0, 0, 0, out, 0, 0);
}
void nomul_pa_pow_vs(size_t n, const float *a, float p, float *out)
{
    run(NOMUL_ELT_POW, n, a, V, &p, S, 0, 0, 0, 0, out, 0, 0);
}
void nomul_pa_sqrt_v(size_t n, const float *a, float *out)
{
    run(NOMUL_ELT_SQRT, n, a, V, 0, 0, 0, 0, 0, 0, out, 0, 0);
}

void nomul_pa_mul_grad_v(size_t n, const float *a, const float *b, const float *dc,
                          float *da, float *db)
{
    run(NOMUL_ELT_MUL_GRAD, n, a, V, b, V, dc, V, 0, 0, da, db, 0);
}
void nomul_pa_mul_grad_vs(size_t n, const float *a, float b, const float *dc, float *da)
{
    run(NOMUL_ELT_MUL_GRAD, n, a, V, &b, S, dc, V, 0, 0, da, 0, 0);
}
void nomul_pa_mul_off_grad_v(size_t n, const float *a, const float *b, float c,
                              const float *dc, float *da, float *db)
{
    run(NOMUL_ELT_MUL_OFF_GRAD, n, a, V, b, V, &c, S, dc, V, da, db, 0);
}
void nomul_pa_mul_grad_approx_v(size_t n, const float *a, const float *b, const float *dc,
                                 float *da, float *db)
{
    run(NOMUL_ELT_MUL_GRAD_APPROX, n, a, V, b, V, dc, V, 0, 0, da, db, 0);
}
void nomul_pa_mul_grad_approx_vs(size_t n, const float *a, float b, const float *dc,
                                  float *da)
{
    run(NOMUL_ELT_MUL_GRAD_APPROX, n, a, V, &b, S, dc, V, 0, 0, da, 0, 0);
}
void nomul_pa_div_grad_v(size_t n, const float *a, const float *b, const float *dc,
                          float *da, float *db)
{
    run(NOMUL_ELT_DIV_GRAD, n, a, V, b, V, dc, V, 0, 0, da, db, 0);
}
void nomul_pa_div_grad_vs(size_t n, const float *a, float b, const float *dc, float *da)
{
    run(NOMUL_ELT_DIV_GRAD, n, a, V, &b, S, dc, V, 0, 0, da, 0, 0);
}
void nomul_pa_div_grad_approx_v(size_t n, const float *a, const float *b, const float *dc,
                                 float *da, float *db)
{
    run(NOMUL_ELT_DIV_GRAD_APPROX, n, a, V, b, V, dc, V, 0, 0, da, db, 0);
}
void nomul_pa_div_grad_approx_vs(size_t n, const float *a, float b, const float *dc,
                                  float *da)
{
    run(NOMUL_ELT_DIV_GRAD_APPROX, n, a, V, &b, S, dc, V, 0, 0, da, 0, 0);
}
void nomul_pa_exp2_grad_v(size_t n, const float *y, const float *dy, float *dx)
{
    run(NOMUL_ELT_EXP2_GRAD, n, y, V, dy, V, 0, 0, 0, 0, dx, 0, 0);
}
void nomul_pa_log2_grad_v(size_t n, const float *x, const float *dy, float *dx)
{
    run(NOMUL_ELT_LOG2_GRAD, n, x, V, dy, V, 0, 0, 0, 0, dx, 0, 0);
}
void nomul_pa_exp_grad_v(size_t n, const float *x, const float *dy, int approx, float *dx)
{
    run(NOMUL_ELT_EXP_GRAD, n, x, V, dy, V, 0, 0, 0, 0, dx, 0, approx);
}
void nomul_pa_log_grad_v(size_t n, const float *x, const float *dy, int approx, float *dx)
{
    run(NOMUL_ELT_LOG_GRAD, n, x, V, dy, V, 0, 0, 0, 0, dx, 0, approx);
}
void nomul_pa_pow_grad_v(size_t n, const float *a, const float *p, const float *dy, int approx,
                         float *da, float *dp)
{
    run(NOMUL_ELT_POW_GRAD, n, a, V, p, V, dy, V, 0, 0, da, dp, approx);
}
void nomul_pa_pow_grad_vs(size_t n, const float *a, float p, const float *dy, int approx,
                          float *da)
{
    run(NOMUL_ELT_POW_GRAD, n, a, V, &p, S, dy, V, 0, 0, da, 0, approx);
}
void nomul_pa_sqrt_grad_v(size_t n, const float *a, const float *dy, int approx, float *dx)
{
    run(NOMUL_ELT_SQRT_GRAD, n, a, V, dy, V, 0, 0, 0, 0, dx, 0, approx);
}
