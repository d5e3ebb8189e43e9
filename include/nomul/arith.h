/*
 * nomul/arith.h — piecewise affine arithmetic: PAM, PAD, palog2, paexp2 and
 * the functions and derivatives built from them (see PAM_SPEC.md, the contract).
 *
 * Names: nomul_pa_ and the float operation it replaces (nomul_pa_mul is PAM,
 * nomul_pa_div PAD, nomul_pa_log2 and nomul_pa_exp2 the spec's palog2 and
 * paexp2), then _grad for the exact derivative, _grad_approx for the
 * approximate one, _v for arrays, _vs / _sv for an array and a scalar.
 *
 * Every function here is computed from the IEEE-754 bit patterns with integer
 * additions, shifts, comparisons, integer/float conversions and float
 * additions: the object code contains no float multiply, divide or FMA.
 *
 * Value classes, used by every function:
 *   zero      ±0 and every subnormal (a subnormal input is a zero of its sign)
 *   normal    2^-126 <= |x| < 2^128
 *   infinite  ±inf
 *   NaN       any NaN; every NaN result is the quiet NaN 0x7FC00000
 * Results whose exact value is below 2^-126 in magnitude are zeros of the
 * right sign; results at or above 2^128 are infinities of the right sign.
 */
#ifndef NOMUL_ARITH_H
#define NOMUL_ARITH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* float32 log2(e), 0x3FB8AA3B: the constant of pa_exp and pa_log. */
#define NOMUL_LOG2E_F32 1.44269502162933349609375f
/* The offset that cancels PAM's mean underestimate (PAM_SPEC.md). */
#define NOMUL_PAM_OFFSET_DEFAULT 1.0552f
/* The NaN every function returns. */
#define NOMUL_QNAN_BITS 0x7FC00000u

/* ---- scalar primitives ------------------------------------------------ */

/* PAM(a, b) ≈ a·b: bits(a) + bits(b) − 0x3F800000 on magnitudes, signs xor. */
float nomul_pa_mul(float a, float b);
/* PAM with offset: PAM(PAM(a, b), c). A zero result is +0 whatever the
 * signs (the reference's convention, pinned by the golden vectors). */
float nomul_pa_mul_off(float a, float b, float c);
/* PAD(a, b) ≈ a/b: bits(a) − bits(b) + 0x3F800000 on magnitudes. */
float nomul_pa_div(float a, float b);
/* palog2(x) = E + M for x = 2^E (1 + M); the sign of x is ignored. */
float nomul_pa_log2(float x);
/* paexp2(y) = 2^⌊y⌋ (1 + y − ⌊y⌋), rounded once to nearest-even. */
float nomul_pa_exp2(float y);
/* pa_exp(x) = paexp2(PAM(x, log2e)). */
float nomul_pa_exp(float x);
/* pa_log(x) = PAD(palog2 x, log2e). */
float nomul_pa_log(float x);
/* pa_pow(a, p) = paexp2(PAM(palog2 a, p)); a zero base gives +0, a
 * negative base NaN. */
float nomul_pa_pow(float a, float p);
/* pa_sqrt(a) = pa_pow(a, 0.5). */
float nomul_pa_sqrt(float a);

/* ---- scalar derivatives ----------------------------------------------
 * Each takes the upstream gradient (dc or dy) and returns the gradient of
 * the input(s). "Exact" derivatives are the true, piecewise constant
 * derivatives of the piecewise affine functions: signed powers of two,
 * applied to the upstream gradient by an exponent shift (a zero slope gives
 * a zero, an infinite slope an infinity, 0·∞ a NaN). "Approx" derivatives
 * are the derivatives of the exact functions evaluated with PA arithmetic.
 * A NaN in any input makes every output NaN. */

/* da = dc · sign(b) 2^(E_b + [M_a + M_b ≥ 1]), db symmetric. */
void nomul_pa_mul_grad(float a, float b, float dc, float *da, float *db);
/* The same for PAM(PAM(a, b), c): b is replaced by PAM(b, c) in da and a by
 * PAM(a, c) in db. */
void nomul_pa_mul_off_grad(float a, float b, float c, float dc, float *da, float *db);
/* da = PAM(dc, b), db = PAM(dc, a). */
void nomul_pa_mul_grad_approx(float a, float b, float dc, float *da, float *db);
/* da = dc · sign(b) 2^(⌊palog2 a − palog2 b⌋ − E_a);
 * db = dc · (−sign(r) sign(b)) 2^(E_r − E_b) with r = PAD(a, b). */
void nomul_pa_div_grad(float a, float b, float dc, float *da, float *db);
/* da = PAD(dc, b), db = −PAD(PAM(a, dc), PAM(b, b)). */
void nomul_pa_div_grad_approx(float a, float b, float dc, float *da, float *db);
/* paexp2'(y) dy = 2^⌊y⌋ dy. */
float nomul_pa_exp2_grad(float y, float dy);
/* palog2'(x) dy = sign(x) 2^(−E_x) dy. */
float nomul_pa_log2_grad(float x, float dy);
/* Exact: the chain of the exact derivatives above. Approx: PAM(pa_exp x, dy). */
float nomul_pa_exp_grad(float x, float dy, int approx);
/* Exact: the chain. Approx: PAD(dy, x). */
float nomul_pa_log_grad(float x, float dy, int approx);
/* Exact: the chain. Approx: da = PAM(PAM(p, PAD(y, a)), dy) and
 * dp = PAM(PAM(y, pa_log a), dy), y = pa_pow(a, p). At a zero base (where
 * pa_pow is the constant 0) both are +0; a negative base gives NaN.
 * dp may be NULL. */
void nomul_pa_pow_grad(float a, float p, float dy, int approx, float *da, float *dp);
/* Exact: the chain of pa_pow with p = 0.5. Approx: PAD(dy, PAM(y, 2)).
 * A zero base gives +0, as for pa_pow. */
float nomul_pa_sqrt_grad(float a, float dy, int approx);

/* ---- array versions ---------------------------------------------------
 * Elementwise over n floats; `_vs` takes its second operand as a broadcast
 * scalar and `_sv` its first. Outputs may alias inputs exactly (in place)
 * but must not otherwise overlap them. Each call runs the kernel of the
 * instruction set chosen by nomul_isa_active() (scalar, AVX2 or AVX-512),
 * all bit-identical to the scalar functions above. */

void nomul_pa_mul_v(size_t n, const float *a, const float *b, float *out);
void nomul_pa_mul_vs(size_t n, const float *a, float b, float *out);
void nomul_pa_mul_off_v(size_t n, const float *a, const float *b, float c, float *out);
void nomul_pa_mul_off_vs(size_t n, const float *a, float b, float c, float *out);
void nomul_pa_div_v(size_t n, const float *a, const float *b, float *out);
void nomul_pa_div_vs(size_t n, const float *a, float b, float *out);
void nomul_pa_div_sv(size_t n, float a, const float *b, float *out);
void nomul_pa_log2_v(size_t n, const float *x, float *out);
void nomul_pa_exp2_v(size_t n, const float *y, float *out);
void nomul_pa_exp_v(size_t n, const float *x, float *out);
void nomul_pa_log_v(size_t n, const float *x, float *out);
void nomul_pa_pow_v(size_t n, const float *a, const float *p, float *out);
void nomul_pa_pow_vs(size_t n, const float *a, float p, float *out);
void nomul_pa_sqrt_v(size_t n, const float *a, float *out);

/* Derivative arrays: da and db may be NULL when not wanted. */
void nomul_pa_mul_grad_v(size_t n, const float *a, const float *b, const float *dc,
                          float *da, float *db);
void nomul_pa_mul_grad_vs(size_t n, const float *a, float b, const float *dc, float *da);
void nomul_pa_mul_off_grad_v(size_t n, const float *a, const float *b, float c,
                              const float *dc, float *da, float *db);
void nomul_pa_mul_grad_approx_v(size_t n, const float *a, const float *b, const float *dc,
                                 float *da, float *db);
void nomul_pa_mul_grad_approx_vs(size_t n, const float *a, float b, const float *dc,
                                  float *da);
void nomul_pa_div_grad_v(size_t n, const float *a, const float *b, const float *dc,
                          float *da, float *db);
void nomul_pa_div_grad_vs(size_t n, const float *a, float b, const float *dc, float *da);
void nomul_pa_div_grad_approx_v(size_t n, const float *a, const float *b, const float *dc,
                                 float *da, float *db);
void nomul_pa_div_grad_approx_vs(size_t n, const float *a, float b, const float *dc,
                                  float *da);
void nomul_pa_exp2_grad_v(size_t n, const float *y, const float *dy, float *dx);
void nomul_pa_log2_grad_v(size_t n, const float *x, const float *dy, float *dx);
void nomul_pa_exp_grad_v(size_t n, const float *x, const float *dy, int approx, float *dx);
void nomul_pa_log_grad_v(size_t n, const float *x, const float *dy, int approx, float *dx);
void nomul_pa_pow_grad_v(size_t n, const float *a, const float *p, const float *dy, int approx,
                         float *da, float *dp);
void nomul_pa_pow_grad_vs(size_t n, const float *a, float p, const float *dy, int approx,
                          float *da);
void nomul_pa_sqrt_grad_v(size_t n, const float *a, const float *dy, int approx, float *dx);

#ifdef __cplusplus
}
#endif
#endif
