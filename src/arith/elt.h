/*
 * elt.h — the elementwise operations of the arithmetic as one table, so that
 * every instruction set provides the same set of kernels under one calling
 * convention (private to libnomul).
 *
 * An operation reads up to 4 input arrays and writes up to 2 outputs. An
 * input marked broadcast is one float used for every element. Outputs may be
 * NULL (not wanted) and may alias an input exactly.
 */
#ifndef NOMUL_ARITH_ELT_H
#define NOMUL_ARITH_ELT_H

#include <stddef.h>

#include "nomul/isa.h"

/* X(ENUM, name, inputs, outputs) */
#define NOMUL_ELT_OPS(X)                         \
    X(MUL, mul, 2, 1)                            \
    X(MUL_OFF, mul_off, 3, 1)                    \
    X(DIV, div, 2, 1)                            \
    X(LOG2, log2, 1, 1)                          \
    X(EXP2, exp2, 1, 1)                          \
    X(EXP, exp, 1, 1)                            \
    X(LOG, log, 1, 1)                            \
    X(POW, pow, 2, 1)                            \
    X(SQRT, sqrt, 1, 1)                          \
    X(MUL_GRAD, mul_grad, 3, 2)                  \
    X(MUL_OFF_GRAD, mul_off_grad, 4, 2)          \
    X(MUL_GRAD_APPROX, mul_grad_approx, 3, 2)    \
    X(DIV_GRAD, div_grad, 3, 2)                  \
    X(DIV_GRAD_APPROX, div_grad_approx, 3, 2)    \
    X(EXP2_GRAD, exp2_grad, 2, 1)                \
    X(LOG2_GRAD, log2_grad, 2, 1)                \
    X(EXP_GRAD, exp_grad, 2, 1)                  \
    X(LOG_GRAD, log_grad, 2, 1)                  \
    X(POW_GRAD, pow_grad, 3, 2)                  \
    X(SQRT_GRAD, sqrt_grad, 2, 1)

typedef enum nomul_elt_op {
#define X(E, name, nin, nout) NOMUL_ELT_##E,
    NOMUL_ELT_OPS(X)
#undef X
    NOMUL_ELT_COUNT
} nomul_elt_op;

typedef struct nomul_elt_args {
    const float *in[4];
    int bcast[4];   /* nonzero: in[j][0] is used for every element */
    float *out[2];  /* NULL: not computed into memory */
    int approx;     /* the composite derivatives: approximate backward */
} nomul_elt_args;

typedef void (*nomul_elt_kernel)(size_t n, const nomul_elt_args *args);

typedef struct nomul_elt_info {
    const char *name;
    int n_in, n_out;
} nomul_elt_info;

extern const nomul_elt_info nomul_elt_info_table[NOMUL_ELT_COUNT];

/* The kernel table of each instruction set (NULL where not compiled in). */
extern const nomul_elt_kernel nomul_elt_kernels_scalar[NOMUL_ELT_COUNT];
extern const nomul_elt_kernel nomul_elt_kernels_avx2[NOMUL_ELT_COUNT];
extern const nomul_elt_kernel nomul_elt_kernels_avx512[NOMUL_ELT_COUNT];

/* Runs `op` on the kernels of `isa` (which the CPU must support). */
void nomul_elt_run_isa(nomul_isa isa, nomul_elt_op op, size_t n, const nomul_elt_args *args);
/* Runs `op` on the active instruction set. */
void nomul_elt_run(nomul_elt_op op, size_t n, const nomul_elt_args *args);

/* Fused passes of PA composite operations (pam_kernels.inc): layer norm's
 * over one row of n (d =
 * x − μ, off the PAM offset, 1 for none): the operations that
 * functional_pa.c otherwise runs as one array-kernel call each, element by
 * element in one pass, so the same bits. squares: t = PAM(d, d); output: y =
 * PAM(PAD(d, r), γ) + β; backward1: xh = PAD(d, r), (u, e) = mul_grads(xh,
 * γ, dy), dγ += e, dβ += dy, (dd, dr) = div_grads(d, r, u); backward2: dd +=
 * a + b for (a, b) = mul_grads(d, d, dq); backward_approx1: xh = PAD(d, r),
 * u = PAM(γ, dy), v = PAM(u, xh); backward_approx2: dγ += PAM(xh, dy), dβ +=
 * dy, dx += PAD(u − m1 − PAM(xh, m2), r) (batch norm's: bn_backward_approx1
 * and 2, the same operations). With bn (batch norm's rows), γ and β are one
 * value each, and dγ, dβ and backward1's dr are 16 lane accumulators (element i into lane i mod 16: functional_internal.h's lane
 * sums, continued from what they hold). */
typedef struct nomul_pa_fused {
    /* acc (batch norm): the squares added into 16 lanes instead of stored */
    void (*squares)(int n, const float *x, float mu, float off, float *t, float *acc);
    /* relu: y = nomul_relu1 of the output (batch_norm_relu's forward); over
     * np planes of S values, x's plane b at b·xs, y's at b·ys (batch norm's
     * planes, from the channel's planes or its gathered row) */
    void (*output)(int np, int S, const float *x, long xs, float mu, float r,
                   const float *gamma, const float *beta, float off, float *y, long ys, int bn,
                   int relu);
    /* ry (batch_norm_relu): the ReLU's output, dy taken through its
     * derivative (nomul_relu_grad1's bits) as it is read; NULL for none */
    void (*backward1)(int n, const float *x, float mu, float r, const float *gamma,
                      const float *dy, const float *ry, float off, float *dgamma,
                      float *dbeta, float *dd, float *dr, int bn);
    /* acc (batch norm): the updated dd also added into 16 lanes */
    void (*backward2)(int n, const float *x, float mu, float dq, float off, float *dd,
                      float *acc);
    void (*backward_approx1)(int n, const float *x, float mu, float r, const float *gamma,
                             const float *dy, float off, float *u, float *v);
    void (*backward_approx2)(int n, const float *x, float mu, float r, const float *dy,
                             float m1, float m2, float off, const float *u, float *dgamma,
                             float *dbeta, float *dx);
    /* batch norm's approximate backward: the first pass stores xh and u and
     * adds Σu, Σv, dγ's and dβ's sums into 16 lanes each (ry as backward1's);
     * the second, dx, over np planes of S values (xh's plane b at b·S, u's
     * at b·us, dx's at b·ds: a gathered row's result added straight into the
     * planes; store: dx's values written, the bits of adding into +0, and u
     * may then be dx itself). xh NULL in the first: not stored; in the
     * second: formed again as the first forms it, PAD(x − μ, r), from x
     * (plane b at b·xs) */
    void (*bn_backward_approx1)(int n, const float *x, float mu, float r, float gamma,
                                const float *dy, const float *ry, float off, float *xh,
                                float *u, float *su, float *sv, float *sdg, float *sdb);
    void (*bn_backward_approx2)(int np, int S, const float *xh, const float *x, long xs,
                                float mu, const float *u, long us, float r, float m1, float m2,
                                float off, float *dx, long ds, int store);
    /* GELU x·σ(k x) (functional_pa.c's chain, the same operations in its
     * order): forward, z = PAM(k, x), q = 1 + pa_exp(−z), s = PAD(1, q),
     * y = PAM(x, s), each of y, s and q where not NULL; backward (dx +=), from x,
     * the kept s and q and dy: exact, (a, b) = mul_grads(x, s, dy), b =
     * ∂PAD(1, q)/∂q · b, b = pa_exp'(−z) · b, b = ∂PAM(k, x)/∂x · (−b),
     * dx += a + b; approximate, dx += PAM(dy, s + PAM(z, PAM(s, 1 − s))) */
    void (*gelu_forward)(int n, const float *x, float k, float off, float *y, float *s,
                         float *q);
    void (*gelu_backward)(int n, const float *x, const float *s, const float *q,
                          const float *dy, float k, float off, int approx, float *dx);
    /* log_softmax's approximate backward over one row (functional_pa.c's
     * lse_backward_body): w = PAD(e, S) (0 where S is not positive), w =
     * PAM(w, g), dx = (store ? +0 : dx) + (dy − w) */
    void (*lsm_backward_approx)(int n, const float *e, float S, float g, const float *dy,
                                float off, int store, float *dx);
    /* log_softmax's exact backward over one row (lse_backward_body's array
     * steps, no offset): u = PAM(x, log2e) − s, w = ∂PAM(x, log2e)/∂x ·
     * (paexp2'(u) · dS), dx = (store ? +0 : dx) + (dy + w) */
    void (*lsm_backward_exact)(int n, const float *x, float s, float dS, const float *dy,
                               int store, float *dx);
    /* softmax's exact backward, its last steps over n values of a group of
     * rows (softmax_backward_body's array steps, no offset), each row's shift
     * s and dS spread over its values in sz and dz: u = PAM(x, log2e) − s,
     * dx += ∂PAM(x, log2e)/∂x · (paexp2'(u) · (de + dS)) */
    void (*softmax_backward_exact)(int n, const float *x, const float *sz, const float *de,
                                   const float *dz, float *dx);
    /* the row pipeline's exponentials over one row: u −= s (s an integer:
     * exact), e = paexp2(u) */
    void (*exp2_shifted)(int n, float *u, float s, float *e);
    /* AdamW's PA update of n elements (optim_pa.c's adamw_chunk, its
     * operations in its order, every PAM with the offset k[7] (1: none)):
     * with wd (a weight decay), p −= PAM(p, k[0]), k[0] = lr·λ; then the moments, delta
     * form m += PAM(g − m, k[2]), v += PAM(PAM(g, g) − v, k[4]), else m =
     * PAM(m, k[1]) + PAM(g, k[2]), v = PAM(v, k[3]) + PAM(PAM(g, g), k[4]);
     * then p −= PAM(PAD(m, pa_sqrt(v) + k[5]), k[6]) */
    void (*adamw)(int n, float *p, const float *g, float *m, float *v, const float *k,
                  int delta, int wd);
    /* batch norm's exact backward, its last pass over np planes of S: dx =
     * +0 + (e + dsum) where store, else dx += +0 + (e + dsum) (e's plane b
     * at b·es, dx's at b·ds; e may be dx) */
    void (*bn_dx_finish)(int np, int S, const float *e, long es, float dsum, float *dx, long ds,
                         int store);
} nomul_pa_fused;

extern const nomul_pa_fused nomul_pa_fused_avx2;
extern const nomul_pa_fused nomul_pa_fused_avx512;

/* The fused passes of the active instruction set; NULL on the scalar one
 * (there functional_pa.c calls the kernels one operation at a time). */
const nomul_pa_fused *nomul_pa_fused_active(void);

/* nomul_elt_run with its arguments spelled out: up to four inputs, each an
 * array or (its flag nonzero) a broadcast scalar, and up to two outputs.
 * Not counted for the audit: the callers inside the library count their
 * operations themselves (the public nomul_pa_*_v functions count). */
static inline void nomul_elt(nomul_elt_op op, size_t n, const float *a, int ba, const float *b,
                             int bb, const float *c, int bc, const float *d, int bd, float *o0,
                             float *o1)
{
    nomul_elt_args g = {{a, b, c, d}, {ba, bb, bc, bd}, {o0, o1}, 0};
    nomul_elt_run(op, n, &g);
}

#endif
