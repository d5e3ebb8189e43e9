/*
 * testutil.h — what the unit tests share: a seeded random source that is
 * fresh every run (NOMUL_TEST_SEED=S repeats a run), float bit helpers, and
 * NOMUL_TEST_SCALE to shrink the sweeps (valgrind runs use it).
 */
#ifndef NOMUL_TESTUTIL_H
#define NOMUL_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline uint32_t tu_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static inline float tu_float(uint32_t u)
{
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* The seed of this run: NOMUL_TEST_SEED, or the clock and pid. */
static inline uint64_t tu_seed(void)
{
    static uint64_t seed;
    static int done;
    if (!done) {
        const char *s = getenv("NOMUL_TEST_SEED");
        seed = s && *s ? strtoull(s, NULL, 0)
                       : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ (uint64_t)clock();
        done = 1;
    }
    return seed;
}

typedef struct {
    uint64_t s;
} tu_rng;

static inline uint64_t tu_next(tu_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint32_t tu_u32(tu_rng *r) { return (uint32_t)(tu_next(r) >> 32); }

/* A float bit pattern that hits every class: a third anything at all, a
 * third exponents near 1 (where exp2 and log2 are interesting), the rest the
 * edges (zeros, subnormals, near overflow and underflow, inf, NaN, powers of
 * two, mantissa 0.5). */
static inline float tu_any_float(tu_rng *r)
{
    uint32_t u = tu_u32(r), k = tu_u32(r) % 12, sign = u & 0x80000000u;
    uint32_t mant = tu_u32(r) & 0x7FFFFFu;
    switch (k) {
    case 0: case 1: case 2: case 3: return tu_float(u);
    case 4: case 5: case 6: return tu_float(sign | ((117u + tu_u32(r) % 20) << 23) | mant);
    case 7: return tu_float(sign | ((tu_u32(r) % 4) << 23) | mant);            /* sub/near min */
    case 8: return tu_float(sign | ((252u + tu_u32(r) % 4) << 23) | mant);     /* near max, inf, NaN */
    case 9: return tu_float(sign | ((60u + tu_u32(r) % 135) << 23));            /* powers of two */
    case 10: return tu_float(sign | ((100u + tu_u32(r) % 55) << 23) | 0x400000u);
    default: return tu_float(sign | (tu_u32(r) % 3 == 0 ? 0 : (tu_u32(r) & 0x7FFFFFu)));
    }
}

/* A normal float with exponent in [elo, ehi], random sign if `sign`. */
static inline float tu_normal(tu_rng *r, int elo, int ehi, int sign)
{
    uint32_t e = (uint32_t)(elo + (int)(tu_u32(r) % (uint32_t)(ehi - elo + 1)) + 127);
    uint32_t s = sign && (tu_u32(r) & 1) ? 0x80000000u : 0;
    return tu_float(s | (e << 23) | (tu_u32(r) & 0x7FFFFFu));
}

/* A second operand for a whose PAM or PAD with a lands within a few ulps of
 * the underflow (2^-126) or overflow (2^128) edge, where off-by-one errors
 * in range checks hide. */
static inline float tu_edge_partner(tu_rng *r, float a)
{
    uint32_t ua = tu_bits(a) & 0x7FFFFFFFu, k = tu_u32(r) % 4;
    int32_t delta = (int32_t)(tu_u32(r) % 5) - 2;
    int64_t ub;
    switch (k) {
    case 0: ub = (int64_t)0x00800000 + 0x3F800000 - ua; break;  /* PAM at 2^-126 */
    case 1: ub = (int64_t)0x7F800000 + 0x3F800000 - ua; break;  /* PAM at 2^128 */
    case 2: ub = (int64_t)ua + 0x3F800000 - 0x00800000; break;  /* PAD at 2^-126 */
    default: ub = (int64_t)ua + 0x3F800000 - 0x7F800000; break; /* PAD at 2^128 */
    }
    ub += delta;
    if (ub < 0x00800000 || ub >= 0x7F800000)
        return tu_any_float(r);
    return tu_float((uint32_t)ub | (tu_u32(r) & 0x80000000u));
}

/* fail_msg with the run's seed and how to repeat it (cmocka.h must come first) */
#define FAIL_SEED(...)                                                                    \
    do {                                                                                  \
        char msg_[768];                                                                   \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                                         \
        fail_msg("%s (seed %llu; rerun with NOMUL_TEST_SEED=%llu)", msg_,                 \
                 (unsigned long long)tu_seed(), (unsigned long long)tu_seed());           \
    } while (0)

/* How much of the long sweeps to run: NOMUL_TEST_SCALE (default 1; 0.01 is
 * a hundredth). */
static inline double tu_scale(void)
{
    const char *s = getenv("NOMUL_TEST_SCALE");
    double v = s && *s ? atof(s) : 1.0;
    return v > 0 ? v : 1.0;
}

#endif
