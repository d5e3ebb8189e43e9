/*
 * gemm_problem.h — the PAM matrix engine's problem form (gemm_internal.h's
 * C = Σ_p f(X_ip, Y_pj; T_ij) with strides, offset and beta), the driver
 * that runs it (gemm_driver.c) and the plan it can take X from
 * (gemm_plan.c). Private to src/gemm.
 */
#ifndef NOMUL_GEMM_PROBLEM_H
#define NOMUL_GEMM_PROBLEM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cblas.h>

#include "../arith/bits.h"
#include "gemm_internal.h"

typedef struct {
    const float *p;
    long rs, cs; /* element (i, j) at p[i * rs + j * cs] */
} pg_mat;

typedef struct {
    pg_kind kind;
    int m, n, kd; /* output m×n, reduction over kd */
    pg_mat x, y, t;
    float *c;
    long rs_c, cs_c;
    int accumulate; /* beta = 1 */
    int has_offset;
    float offset;
    uint32_t off_adj; /* bits(offset) − bits(1) */
    int off_e;        /* the offset's exponent */
    int fold_y_adj;   /* direct-Y plans: X is packed with Y's adjustment */
} pg_problem;

static inline float mat_at(const pg_mat *a, long i, long j) { return a->p[i * a->rs + j * a->cs]; }

static inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

/* Strides of a stored rows×cols matrix with leading dimension ld. */
static inline pg_mat stored(CBLAS_LAYOUT layout, const float *p, int ld)
{
    pg_mat a = {p, layout == CblasRowMajor ? ld : 1, layout == CblasRowMajor ? 1 : ld};
    return a;
}

static inline pg_mat transposed(pg_mat a)
{
    long t = a.rs;
    a.rs = a.cs;
    a.cs = t;
    return a;
}

static inline int is_trans(CBLAS_TRANSPOSE t) { return t == CblasTrans || t == CblasConjTrans; }

static inline void set_offset(pg_problem *pr, float offset)
{
    pr->has_offset = offset != 1.0f;
    pr->offset = offset;
    pr->off_adj = pr->has_offset ? pa_bits(offset) - PG_ONE : 0;
    pr->off_e = (int)((pa_bits(offset) >> 23) & 0xFF) - 127;
}

/* X packed once for every K block and row panel, reused by many products
 * that share X (a convolution's weights over its images). Panel ip of K
 * block kb sits at (kb · npanels + ip) · MR · KC, KC = cx->kc. */
struct pg_plan {
    pg_problem pr; /* the X part, kind and offset; Y, T and C are per run */
    const pg_cntx *cx;
    int MR, npanels, nkb;
    uint32_t *xp;
    int32_t *xm;
    pg_stats *xs;
};

/* Runs a problem on nt threads with X from plan when not NULL (else packed
 * as it goes, with the active context); returns 0 when out of memory. */
int pg_run(const pg_problem *pr, int nt, const pg_plan *plan);

/* A batch of small products (product i: X, Y, T and C advanced by i·sx,
 * sy, st, sc) on the in-place kernels, on up to nt threads; 0, having
 * written nothing, where that path does not apply (gemm_driver.c). */
int pg_small_batch(const pg_problem *base, int batch, long sx, long sy, long st, long sc,
                   int nt);

/* X rows i0.. (mr valid of MR), reduction p0..p0+kc: xp[p * MR + r] */
void pg_pack_x(const pg_problem *pr, pg_pack_fn fn, int i0, int mr, int MR, int p0, int kc,
               uint32_t *xp, int32_t *xm, pg_stats *s);

/* Whether every product of two panels with these statistics is a normal
 * number computed by the integer add. */
int pg_panels_safe(const pg_problem *pr, const pg_stats *sx, const pg_stats *sy);

/* C's rows i0.. (mr) and columns j0.. (nr) from a tile ct (row stride NR),
 * written or added. */
void pg_write_tile(const pg_problem *pr, int i0, int mr, int j0, int nr, int NR, const float *ct,
                   int add);

#endif
