/*
 * bits.h — float32 bit-pattern helpers shared by the arithmetic sources
 * (private to src/arith).
 */
#ifndef NOMUL_ARITH_BITS_H
#define NOMUL_ARITH_BITS_H

#include <stdint.h>
#include <string.h>

#define PA_SIGN 0x80000000u
#define PA_ABS 0x7FFFFFFFu
#define PA_MANT 0x007FFFFFu
#define PA_MIN_NORMAL 0x00800000u
#define PA_INF 0x7F800000u
#define PA_ONE 0x3F800000u
#define PA_QNAN 0x7FC00000u
#define PA_LOG2E_BITS 0x3FB8AA3Bu
/* Exponent shifts are clamped to this: far past any float32's range, far
 * from int32 overflow. */
#define PA_SHIFT_CLAMP 400

static inline uint32_t pa_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float pa_float(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

#endif
