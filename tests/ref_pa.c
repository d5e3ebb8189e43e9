/*
 * ref_pa.c — the plain twin of the arithmetic for tests: every definition of
 * PAM_SPEC.md evaluated in float64 exactly as written (frexp, floor, ldexp,
 * real multiplications) and rounded to float32 once per primitive, the way
 * the golden vectors were made. Nothing here shares code with src/arith.
 */
#include "ref_pa.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define QNAN_BITS 0x7FC00000u

static float float_of(uint32_t u)
{
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static float qnan(void) { return float_of(QNAN_BITS); }
static int is_nan(float x) { return isnan(x); }
/* subnormals count as zeros */
static int is_zero(float x) { return fabsf(x) < 0x1p-126f; }
static int is_inf(float x) { return isinf(x); }
static float signed_zero(int neg) { return neg ? -0.0f : 0.0f; }
static float signed_inf(int neg) { return neg ? -INFINITY : INFINITY; }
static int neg_of(float x) { return signbit(x) != 0; }

/* E and M of a normal float: |x| = 2^E (1 + M) */
static void e_and_m(float x, int *e, double *m)
{
    int fe;
    double fm = frexp(fabs((double)x), &fe); /* fm in [0.5, 1) */
    *e = fe - 1;
    *m = 2.0 * fm - 1.0;
}

static double palog2_d(float x)
{
    int e;
    double m;
    e_and_m(x, &e, &m);
    return (double)e + m;
}

static double paexp2_d(double y)
{
    double fl = floor(y);
    return ldexp(1.0 + (y - fl), (int)fl);
}

/* One rounding to float32 with the flush rules of PAM_SPEC.md. */
static float round_flush(double v)
{
    if (fabs(v) < 0x1p-126)
        return signed_zero(v < 0 || (v == 0 && signbit(v)));
    if (fabs(v) >= 0x1p128)
        return signed_inf(v < 0);
    return (float)v;
}

float ref_mul(float a, float b)
{
    int neg = neg_of(a) != neg_of(b);
    if (is_nan(a) || is_nan(b))
        return qnan();
    if ((is_inf(a) && is_zero(b)) || (is_zero(a) && is_inf(b)))
        return qnan();
    if (is_inf(a) || is_inf(b))
        return signed_inf(neg);
    if (is_zero(a) || is_zero(b))
        return signed_zero(neg);
    double v = paexp2_d(palog2_d(a) + palog2_d(b));
    return round_flush(neg ? -v : v);
}

float ref_mul_off(float a, float b, float c)
{
    float r = ref_mul(ref_mul(a, b), c);
    return r == 0.0f ? 0.0f : r;
}

float ref_div(float a, float b)
{
    int neg = neg_of(a) != neg_of(b);
    if (is_nan(a) || is_nan(b) || (is_zero(a) && is_zero(b)) || (is_inf(a) && is_inf(b)))
        return qnan();
    if (is_inf(a) || is_zero(b))
        return signed_inf(neg);
    if (is_zero(a) || is_inf(b))
        return signed_zero(neg);
    double v = paexp2_d(palog2_d(a) - palog2_d(b));
    return round_flush(neg ? -v : v);
}

float ref_log2(float x)
{
    if (is_nan(x))
        return qnan();
    if (is_inf(x))
        return INFINITY;
    if (is_zero(x))
        return -INFINITY;
    return (float)palog2_d(x); /* exact in float64, rounded once */
}

float ref_exp2(float y)
{
    if (is_nan(y))
        return qnan();
    if (is_inf(y))
        return y > 0 ? INFINITY : 0.0f;
    if (is_zero(y))
        return 1.0f;
    if (fabsf(y) >= 1024.0f)
        return y > 0 ? INFINITY : 0.0f;
    return round_flush(paexp2_d((double)y));
}

static const float log2e = 1.44269502162933349609375f;

float ref_exp(float x) { return ref_exp2(ref_mul(x, log2e)); }
float ref_log(float x) { return ref_div(ref_log2(x), log2e); }

float ref_pow(float a, float p)
{
    if (is_nan(a) || is_nan(p))
        return qnan();
    if (is_zero(a))
        return 0.0f;
    if (a < 0)
        return qnan();
    return ref_exp2(ref_mul(ref_log2(a), p));
}

float ref_sqrt(float a) { return ref_pow(a, 0.5f); }

/* ---- derivatives: slopes as doubles (±2^k, 0, ±inf, NaN) ---------------- */

/* slope · g with the flush rules */
static float apply(double slope, float g)
{
    if (isnan(slope) || is_nan(g))
        return qnan();
    int neg = (signbit(slope) != 0) != neg_of(g);
    if ((slope == 0 && is_inf(g)) || (isinf(slope) && is_zero(g)))
        return qnan();
    if (isinf(slope) || is_inf(g))
        return signed_inf(neg);
    if (slope == 0 || is_zero(g))
        return signed_zero(neg);
    double v = slope * (double)g; /* a power of two times a float: exact */
    if (v == 0 || isinf(v)) /* beyond double's range: only the flush matters */
        return v == 0 ? signed_zero(neg) : signed_inf(neg);
    return round_flush(v);
}

static double pow2_signed(int neg, int k)
{
    if (k > 400)
        k = 400;
    if (k < -400)
        k = -400;
    return neg ? -ldexp(1.0, k) : ldexp(1.0, k);
}

static double mant_or_zero(float x)
{
    if (is_zero(x) || is_inf(x))
        return 0.0;
    int e;
    double m;
    e_and_m(x, &e, &m);
    return m;
}

static double slope_mul_a(float a, float b)
{
    if (is_nan(a) || is_nan(b))
        return NAN;
    if (is_zero(b))
        return neg_of(b) ? -0.0 : 0.0;
    if (is_inf(b))
        return b;
    int eb;
    double mb;
    e_and_m(b, &eb, &mb);
    return pow2_signed(neg_of(b), eb + (mant_or_zero(a) + mb >= 1.0));
}

static double slope_div_a(float a, float b)
{
    if (is_nan(a) || is_nan(b))
        return NAN;
    if (is_zero(b))
        return neg_of(b) ? -INFINITY : INFINITY;
    if (is_inf(b))
        return neg_of(b) ? -0.0 : 0.0;
    /* ⌊palog2 a − palog2 b⌋ − E_a, with palog2 of a zero a read as E_a + 0 */
    int eb;
    double mb;
    e_and_m(b, &eb, &mb);
    double ma = mant_or_zero(a);
    return pow2_signed(neg_of(b), (int)floor(ma - mb) - eb);
}

static double slope_div_b(float a, float b)
{
    if (is_nan(a) || is_nan(b))
        return NAN;
    float r = ref_div(a, b);
    int neg = !(neg_of(r) != neg_of(b));
    if (is_nan(r))
        return NAN;
    if (is_zero(r))
        return neg ? -0.0 : 0.0;
    if (is_inf(r))
        return neg ? -INFINITY : INFINITY;
    int er, eb;
    double mr, mb;
    e_and_m(r, &er, &mr);
    e_and_m(b, &eb, &mb);
    return pow2_signed(neg, er - eb);
}

static double slope_exp2(float y)
{
    if (is_nan(y))
        return NAN;
    if (is_inf(y))
        return y > 0 ? INFINITY : 0.0;
    if (is_zero(y))
        return 1.0;
    double fl = floor((double)y);
    if (fl > 400)
        fl = 400;
    if (fl < -400)
        fl = -400;
    return ldexp(1.0, (int)fl);
}

static double slope_log2(float x)
{
    if (is_nan(x))
        return NAN;
    if (is_inf(x))
        return neg_of(x) ? -0.0 : 0.0;
    if (is_zero(x))
        return neg_of(x) ? -INFINITY : INFINITY;
    int e;
    double m;
    e_and_m(x, &e, &m);
    return pow2_signed(neg_of(x), -e);
}

static int any_nan(float a, float b, float c) { return is_nan(a) || is_nan(b) || is_nan(c); }

void ref_mul_grad(float a, float b, float dc, float *da, float *db)
{
    *da = apply(slope_mul_a(a, b), dc);
    *db = apply(slope_mul_a(b, a), dc);
}

void ref_mul_off_grad(float a, float b, float c, float dc, float *da, float *db)
{
    if (any_nan(a, b, c)) {
        *da = *db = qnan();
        return;
    }
    *da = apply(slope_mul_a(a, ref_mul(b, c)), dc);
    *db = apply(slope_mul_a(b, ref_mul(a, c)), dc);
}

void ref_mul_grad_approx(float a, float b, float dc, float *da, float *db)
{
    if (any_nan(a, b, dc)) {
        *da = *db = qnan();
        return;
    }
    *da = ref_mul(dc, b);
    *db = ref_mul(dc, a);
}

void ref_div_grad(float a, float b, float dc, float *da, float *db)
{
    *da = apply(slope_div_a(a, b), dc);
    *db = apply(slope_div_b(a, b), dc);
}

void ref_div_grad_approx(float a, float b, float dc, float *da, float *db)
{
    if (any_nan(a, b, dc)) {
        *da = *db = qnan();
        return;
    }
    *da = ref_div(dc, b);
    float q = ref_div(ref_mul(a, dc), ref_mul(b, b));
    *db = is_nan(q) ? q : -q;
}

float ref_exp2_grad(float y, float dy) { return apply(slope_exp2(y), dy); }
float ref_log2_grad(float x, float dy) { return apply(slope_log2(x), dy); }

float ref_exp_grad(float x, float dy, int approx)
{
    if (approx)
        return any_nan(x, dy, 0) ? qnan() : ref_mul(ref_exp(x), dy);
    float dt = apply(slope_exp2(ref_mul(x, log2e)), dy);
    return apply(slope_mul_a(x, log2e), dt);
}

float ref_log_grad(float x, float dy, int approx)
{
    if (approx)
        return any_nan(x, dy, 0) ? qnan() : ref_div(dy, x);
    float dl = apply(slope_div_a(ref_log2(x), log2e), dy);
    return apply(slope_log2(x), dl);
}

void ref_pow_grad(float a, float p, float dy, int approx, float *da, float *dp)
{
    if (any_nan(a, p, dy) || (!is_zero(a) && a < 0)) {
        *da = *dp = qnan();
    } else if (is_zero(a)) {
        *da = *dp = 0.0f;
    } else if (approx) {
        float y = ref_pow(a, p);
        *da = ref_mul(ref_mul(p, ref_div(y, a)), dy);
        *dp = ref_mul(ref_mul(y, ref_log(a)), dy);
    } else {
        float l = ref_log2(a);
        float dt = apply(slope_exp2(ref_mul(l, p)), dy);
        *da = apply(slope_log2(a), apply(slope_mul_a(l, p), dt));
        *dp = apply(slope_mul_a(p, l), dt);
    }
}

float ref_sqrt_grad(float a, float dy, int approx)
{
    float da, dp;
    if (!approx) {
        ref_pow_grad(a, 0.5f, dy, 0, &da, &dp);
        return da;
    }
    if (any_nan(a, dy, 0) || (!is_zero(a) && a < 0))
        return qnan();
    if (is_zero(a))
        return 0.0f;
    return ref_div(dy, ref_mul(ref_sqrt(a), 2.0f));
}
