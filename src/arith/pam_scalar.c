/*
 * pam_scalar.c — the scalar piecewise affine arithmetic: the primitives, the
 * composite functions and their derivatives, one float at a time, written
 * plainly with a branch per corner case. The array kernels (pam_kernels.h)
 * are tested bit for bit against these; these are tested against a float64
 * evaluation of the definitions and the golden vectors.
 *
 * No float multiply or divide appears here: products of bit patterns are
 * integer additions, exact powers of two are exponent-field shifts, and the
 * only float arithmetic is addition (in paexp2) and int→float conversion
 * (in palog2), both rounded once to nearest-even by the hardware.
 */
#include "nomul/arith.h"

#include "bits.h"

/* The classes every rule of PAM_SPEC.md is written in. */
typedef enum { PA_ZERO, PA_NORMAL, PA_INFINITE, PA_NAN } pa_class;

static pa_class pa_classify(uint32_t u)
{
    uint32_t m = u & PA_ABS;
    if (m < PA_MIN_NORMAL)
        return PA_ZERO;
    if (m < PA_INF)
        return PA_NORMAL;
    if (m == PA_INF)
        return PA_INFINITE;
    return PA_NAN;
}

/* Unbiased exponent and mantissa field of a normal float. */
static int pa_exponent(uint32_t u) { return (int)((u & PA_ABS) >> 23) - 127; }
/* The mantissa field, with zeros (subnormals too) and infinities reading 0. */
static uint32_t pa_mantissa(uint32_t u)
{
    return pa_classify(u) == PA_NORMAL ? (u & PA_MANT) : 0;
}

float nomul_pa_mul(float a, float b)
{
    uint32_t ua = pa_bits(a), ub = pa_bits(b);
    uint32_t sign = (ua ^ ub) & PA_SIGN;
    pa_class ca = pa_classify(ua), cb = pa_classify(ub);
    if (ca == PA_NAN || cb == PA_NAN)
        return pa_float(PA_QNAN);
    if (ca == PA_INFINITE || cb == PA_INFINITE) {
        if (ca == PA_ZERO || cb == PA_ZERO)
            return pa_float(PA_QNAN);
        return pa_float(sign | PA_INF);
    }
    if (ca == PA_ZERO || cb == PA_ZERO)
        return pa_float(sign);
    /* log-domain sum of two biased exponents+mantissas, minus one bias */
    int64_t r = (int64_t)(ua & PA_ABS) + (int64_t)(ub & PA_ABS) - PA_ONE;
    if (r < (int64_t)PA_MIN_NORMAL)
        return pa_float(sign);
    if (r >= (int64_t)PA_INF)
        return pa_float(sign | PA_INF);
    return pa_float(sign | (uint32_t)r);
}

float nomul_pa_mul_off(float a, float b, float c)
{
    float r = nomul_pa_mul(nomul_pa_mul(a, b), c);
    if ((pa_bits(r) & PA_ABS) == 0)
        return 0.0f;
    return r;
}

float nomul_pa_div(float a, float b)
{
    uint32_t ua = pa_bits(a), ub = pa_bits(b);
    uint32_t sign = (ua ^ ub) & PA_SIGN;
    pa_class ca = pa_classify(ua), cb = pa_classify(ub);
    if (ca == PA_NAN || cb == PA_NAN)
        return pa_float(PA_QNAN);
    if ((ca == PA_ZERO && cb == PA_ZERO) || (ca == PA_INFINITE && cb == PA_INFINITE))
        return pa_float(PA_QNAN);
    if (ca == PA_INFINITE || cb == PA_ZERO)
        return pa_float(sign | PA_INF);
    if (ca == PA_ZERO || cb == PA_INFINITE)
        return pa_float(sign);
    int64_t r = (int64_t)(ua & PA_ABS) - (int64_t)(ub & PA_ABS) + PA_ONE;
    if (r < (int64_t)PA_MIN_NORMAL)
        return pa_float(sign);
    if (r >= (int64_t)PA_INF)
        return pa_float(sign | PA_INF);
    return pa_float(sign | (uint32_t)r);
}

float nomul_pa_log2(float x)
{
    uint32_t u = pa_bits(x) & PA_ABS;
    switch (pa_classify(u)) {
    case PA_NAN: return pa_float(PA_QNAN);
    case PA_INFINITE: return pa_float(PA_INF);
    case PA_ZERO: return pa_float(PA_SIGN | PA_INF);
    case PA_NORMAL: break;
    }
    /* E + M as a fixed-point number with 23 fraction bits */
    int32_t fixed = (int32_t)u - (int32_t)PA_ONE;
    if (fixed == 0)
        return 0.0f;
    /* one rounding (int→float), then an exact ÷2^23 by exponent shift */
    float f = (float)fixed;
    return pa_float(pa_bits(f) - (23u << 23));
}

float nomul_pa_exp2(float y)
{
    uint32_t u = pa_bits(y);
    uint32_t mag = u & PA_ABS;
    int negative = (u & PA_SIGN) != 0;
    switch (pa_classify(u)) {
    case PA_NAN: return pa_float(PA_QNAN);
    case PA_INFINITE: return negative ? 0.0f : pa_float(PA_INF);
    case PA_ZERO: return 1.0f;
    case PA_NORMAL: break;
    }
    int e = pa_exponent(u);
    if (e < 0) {
        /* |y| < 1: ⌊y⌋ is 0 or −1, so the result is 1 + y or (2 + y)/2;
         * one float addition rounds the exact value once, and halving
         * [1, 2] is an exact exponent decrement. */
        if (!negative)
            return 1.0f + y;
        return pa_float(pa_bits(2.0f + y) - (1u << 23));
    }
    if (e >= 8)
        return negative ? 0.0f : pa_float(PA_INF);
    /* 1 <= |y| < 256: y in fixed point with 23 fraction bits is exact */
    int32_t fixed = (int32_t)(((mag & PA_MANT) | PA_MIN_NORMAL) << e);
    if (negative)
        fixed = -fixed;
    int32_t floor_y = fixed >> 23; /* arithmetic shift: ⌊y⌋ */
    uint32_t frac = (uint32_t)fixed & PA_MANT;
    if (floor_y < -126)
        return 0.0f;
    if (floor_y > 127)
        return pa_float(PA_INF);
    return pa_float(((uint32_t)(floor_y + 127) << 23) | frac);
}

float nomul_pa_exp(float x)
{
    return nomul_pa_exp2(nomul_pa_mul(x, pa_float(PA_LOG2E_BITS)));
}

float nomul_pa_log(float x)
{
    return nomul_pa_div(nomul_pa_log2(x), pa_float(PA_LOG2E_BITS));
}

float nomul_pa_pow(float a, float p)
{
    uint32_t ua = pa_bits(a);
    pa_class ca = pa_classify(ua);
    if (ca == PA_NAN || pa_classify(pa_bits(p)) == PA_NAN)
        return pa_float(PA_QNAN);
    if (ca == PA_ZERO)
        return 0.0f;
    if (ua & PA_SIGN)
        return pa_float(PA_QNAN);
    return nomul_pa_exp2(nomul_pa_mul(nomul_pa_log2(a), p));
}

float nomul_pa_sqrt(float a) { return nomul_pa_pow(a, 0.5f); }

/* ---- derivatives ------------------------------------------------------ */

/* A slope of an exact derivative: ±2^k, or ±0, ±inf, NaN. */
typedef struct {
    pa_class cls;
    uint32_t sign;
    int k;
} pa_slope;

static inline __attribute__((always_inline)) pa_slope slope_pow2(uint32_t sign, int k)
{
    pa_slope s = {PA_NORMAL, sign & PA_SIGN, k};
    if (s.k > PA_SHIFT_CLAMP)
        s.k = PA_SHIFT_CLAMP;
    if (s.k < -PA_SHIFT_CLAMP)
        s.k = -PA_SHIFT_CLAMP;
    return s;
}

static inline __attribute__((always_inline)) pa_slope slope_of_class(pa_class cls, uint32_t sign)
{
    pa_slope s = {cls, sign & PA_SIGN, 0};
    return s;
}

/* slope · g: a product with a power of two is an exponent shift. */
static inline __attribute__((always_inline)) float slope_apply(pa_slope s, float g)
{
    uint32_t ug = pa_bits(g);
    pa_class cg = pa_classify(ug);
    uint32_t sign = (ug ^ s.sign) & PA_SIGN;
    if (s.cls == PA_NAN || cg == PA_NAN)
        return pa_float(PA_QNAN);
    if ((s.cls == PA_ZERO && cg == PA_INFINITE) || (s.cls == PA_INFINITE && cg == PA_ZERO))
        return pa_float(PA_QNAN);
    if (s.cls == PA_INFINITE || cg == PA_INFINITE)
        return pa_float(sign | PA_INF);
    if (s.cls == PA_ZERO || cg == PA_ZERO)
        return pa_float(sign);
    int e = (int)((ug & PA_ABS) >> 23) + s.k;
    if (e <= 0)
        return pa_float(sign);
    if (e >= 255)
        return pa_float(sign | PA_INF);
    return pa_float(sign | ((uint32_t)e << 23) | (ug & PA_MANT));
}

/* ∂PAM(a, b)/∂a = sign(b) 2^(E_b + [M_a + M_b ≥ 1]) */
static inline __attribute__((always_inline)) pa_slope slope_mul_a(float a, float b)
{
    uint32_t ua = pa_bits(a), ub = pa_bits(b);
    pa_class ca = pa_classify(ua), cb = pa_classify(ub);
    if (ca == PA_NAN || cb == PA_NAN)
        return slope_of_class(PA_NAN, 0);
    if (cb != PA_NORMAL)
        return slope_of_class(cb, ub);
    int carry = (pa_mantissa(ua) + pa_mantissa(ub)) >> 23;
    return slope_pow2(ub, pa_exponent(ub) + carry);
}

/* ∂PAD(a, b)/∂a = sign(b) 2^(⌊palog2 a − palog2 b⌋ − E_a) = sign(b) 2^(−E_b − [M_a < M_b]) */
static inline __attribute__((always_inline)) pa_slope slope_div_a(float a, float b)
{
    uint32_t ua = pa_bits(a), ub = pa_bits(b);
    pa_class ca = pa_classify(ua), cb = pa_classify(ub);
    if (ca == PA_NAN || cb == PA_NAN)
        return slope_of_class(PA_NAN, 0);
    if (cb == PA_ZERO)
        return slope_of_class(PA_INFINITE, ub);
    if (cb == PA_INFINITE)
        return slope_of_class(PA_ZERO, ub);
    int borrow = pa_mantissa(ua) < pa_mantissa(ub);
    return slope_pow2(ub, -pa_exponent(ub) - borrow);
}

/* ∂PAD(a, b)/∂b = −sign(r) sign(b) 2^(E_r − E_b), r = PAD(a, b) */
static inline __attribute__((always_inline)) pa_slope slope_div_b(float a, float b)
{
    uint32_t ua = pa_bits(a), ub = pa_bits(b);
    if (pa_classify(ua) == PA_NAN || pa_classify(ub) == PA_NAN)
        return slope_of_class(PA_NAN, 0);
    uint32_t ur = pa_bits(nomul_pa_div(a, b));
    pa_class cr = pa_classify(ur);
    uint32_t sign = (ur ^ ub ^ PA_SIGN) & PA_SIGN;
    if (cr != PA_NORMAL)
        return slope_of_class(cr, sign);
    return slope_pow2(sign, pa_exponent(ur) - pa_exponent(ub));
}

/* paexp2'(y) = 2^⌊y⌋ */
static inline __attribute__((always_inline)) pa_slope slope_exp2(float y)
{
    uint32_t u = pa_bits(y);
    int negative = (u & PA_SIGN) != 0;
    switch (pa_classify(u)) {
    case PA_NAN: return slope_of_class(PA_NAN, 0);
    case PA_INFINITE: return slope_of_class(negative ? PA_ZERO : PA_INFINITE, 0);
    case PA_ZERO: return slope_pow2(0, 0);
    case PA_NORMAL: break;
    }
    int e = pa_exponent(u);
    if (e < 0)
        return slope_pow2(0, negative ? -1 : 0);
    if (e >= 8)
        return slope_pow2(0, negative ? -PA_SHIFT_CLAMP : PA_SHIFT_CLAMP);
    int32_t fixed = (int32_t)((((u & PA_MANT) | PA_MIN_NORMAL)) << e);
    if (negative)
        fixed = -fixed;
    return slope_pow2(0, fixed >> 23);
}

/* palog2'(x) = sign(x) 2^(−E_x) */
static inline __attribute__((always_inline)) pa_slope slope_log2(float x)
{
    uint32_t u = pa_bits(x);
    switch (pa_classify(u)) {
    case PA_NAN: return slope_of_class(PA_NAN, 0);
    case PA_INFINITE: return slope_of_class(PA_ZERO, u);
    case PA_ZERO: return slope_of_class(PA_INFINITE, u);
    case PA_NORMAL: break;
    }
    return slope_pow2(u, -pa_exponent(u));
}

/* Outputs are NaN when any input is: a slope may not see the NaN (dc). */
static int any_nan3(float a, float b, float c)
{
    return pa_classify(pa_bits(a)) == PA_NAN || pa_classify(pa_bits(b)) == PA_NAN ||
           pa_classify(pa_bits(c)) == PA_NAN;
}

void nomul_pa_mul_grad(float a, float b, float dc, float *da, float *db)
{
    *da = slope_apply(slope_mul_a(a, b), dc);
    *db = slope_apply(slope_mul_a(b, a), dc);
}

void nomul_pa_mul_off_grad(float a, float b, float c, float dc, float *da, float *db)
{
    if (any_nan3(a, b, c)) {
        *da = *db = pa_float(PA_QNAN);
        return;
    }
    *da = slope_apply(slope_mul_a(a, nomul_pa_mul(b, c)), dc);
    *db = slope_apply(slope_mul_a(b, nomul_pa_mul(a, c)), dc);
}

void nomul_pa_mul_grad_approx(float a, float b, float dc, float *da, float *db)
{
    if (any_nan3(a, b, dc)) {
        *da = *db = pa_float(PA_QNAN);
        return;
    }
    *da = nomul_pa_mul(dc, b);
    *db = nomul_pa_mul(dc, a);
}

void nomul_pa_div_grad(float a, float b, float dc, float *da, float *db)
{
    *da = slope_apply(slope_div_a(a, b), dc);
    *db = slope_apply(slope_div_b(a, b), dc);
}

static float pa_neg(float x)
{
    uint32_t u = pa_bits(x);
    return pa_classify(u) == PA_NAN ? x : pa_float(u ^ PA_SIGN);
}

void nomul_pa_div_grad_approx(float a, float b, float dc, float *da, float *db)
{
    if (any_nan3(a, b, dc)) {
        *da = *db = pa_float(PA_QNAN);
        return;
    }
    *da = nomul_pa_div(dc, b);
    *db = pa_neg(nomul_pa_div(nomul_pa_mul(a, dc), nomul_pa_mul(b, b)));
}

float nomul_pa_exp2_grad(float y, float dy) { return slope_apply(slope_exp2(y), dy); }

float nomul_pa_log2_grad(float x, float dy) { return slope_apply(slope_log2(x), dy); }

float nomul_pa_exp_grad(float x, float dy, int approx)
{
    float log2e = pa_float(PA_LOG2E_BITS);
    if (approx) {
        if (any_nan3(x, dy, 0.0f))
            return pa_float(PA_QNAN);
        return nomul_pa_mul(nomul_pa_exp(x), dy);
    }
    float t = nomul_pa_mul(x, log2e);
    float dt = nomul_pa_exp2_grad(t, dy);
    return slope_apply(slope_mul_a(x, log2e), dt);
}

float nomul_pa_log_grad(float x, float dy, int approx)
{
    if (approx) {
        if (any_nan3(x, dy, 0.0f))
            return pa_float(PA_QNAN);
        return nomul_pa_div(dy, x);
    }
    float l = nomul_pa_log2(x);
    float dl = slope_apply(slope_div_a(l, pa_float(PA_LOG2E_BITS)), dy);
    return nomul_pa_log2_grad(x, dl);
}

void nomul_pa_pow_grad(float a, float p, float dy, int approx, float *da, float *dp)
{
    float ga, gp;
    uint32_t ua = pa_bits(a);
    pa_class ca = pa_classify(ua);
    if (any_nan3(a, p, dy) || (ca != PA_ZERO && (ua & PA_SIGN))) {
        ga = gp = pa_float(PA_QNAN);
    } else if (ca == PA_ZERO) {
        ga = gp = 0.0f;
    } else if (approx) {
        float y = nomul_pa_pow(a, p);
        ga = nomul_pa_mul(nomul_pa_mul(p, nomul_pa_div(y, a)), dy);
        gp = nomul_pa_mul(nomul_pa_mul(y, nomul_pa_log(a)), dy);
    } else {
        float l = nomul_pa_log2(a);
        float t = nomul_pa_mul(l, p);
        float dt = nomul_pa_exp2_grad(t, dy);
        ga = nomul_pa_log2_grad(a, slope_apply(slope_mul_a(l, p), dt));
        gp = slope_apply(slope_mul_a(p, l), dt);
    }
    *da = ga;
    if (dp)
        *dp = gp;
}

float nomul_pa_sqrt_grad(float a, float dy, int approx)
{
    float da;
    uint32_t ua = pa_bits(a);
    pa_class ca = pa_classify(ua);
    if (!approx) {
        nomul_pa_pow_grad(a, 0.5f, dy, 0, &da, NULL);
        return da;
    }
    if (any_nan3(a, dy, 0.0f) || (ca != PA_ZERO && (ua & PA_SIGN)))
        return pa_float(PA_QNAN);
    if (ca == PA_ZERO)
        return 0.0f;
    return nomul_pa_div(dy, nomul_pa_mul(nomul_pa_sqrt(a), 2.0f));
}
