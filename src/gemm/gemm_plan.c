/*
 * gemm_plan.c — plans (gemm_internal.h): X packed once for every K block and
 * reused by many products that share it (a convolution's weights over its
 * images), their runs through the driver, the forward that reads Y in place
 * where the context has a kernel for it. A plan lives in a per-thread
 * scratch buffer (core/internal.h) and needs no freeing.
 */
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "../core/internal.h"
#include "gemm_problem.h"

/* Packs pr's X for every K block: the plan for products sharing it, in
 * this thread's keyed scratch buffer `key` (one allocation holding the plan
 * and its panels, reused by the next plan of that key; a training step's
 * convolutions, which make the same plans every step, allocate nothing once
 * the buffers have grown to the largest layer). */
static pg_plan *plan_create(int key, const pg_problem *pr)
{
    const pg_cntx *cx = pg_cntx_active();
    const int MR = pr->kind == PG_FWD ? cx->fwd.mr : cx->grad.mr, KC = cx->kc;
    int npanels = ceil_div(pr->m, MR), nkb = ceil_div(pr->kd, KC);
    size_t n = (size_t)nkb * npanels * MR * KC, ns = (size_t)nkb * npanels + 1;
    if (n == 0)
        n = 1;
    /* [plan | xp: n | xm: n | xs: ns], each part 64-byte aligned */
    size_t head = (sizeof(pg_plan) + 63) & ~(size_t)63, panel = (n * 4 + 63) & ~(size_t)63;
    char *mem = nomul_scratch_bytes(NOMUL_SCRATCH_KEYED + key,
                                    head + 2 * panel + ns * sizeof(pg_stats));
    if (!mem)
        return NULL;
    pg_plan *pl = (pg_plan *)mem;
    pl->pr = *pr;
    pl->cx = cx;
    pl->MR = MR;
    pl->npanels = npanels;
    pl->nkb = nkb;
    pl->xp = (uint32_t *)(mem + head);
    pl->xm = (int32_t *)(mem + head + panel);
    pl->xs = (pg_stats *)(mem + head + 2 * panel);
    for (int kb = 0; kb < pl->nkb; kb++) {
        int pc = kb * KC, kc = pr->kd - pc < KC ? pr->kd - pc : KC;
        for (int ip = 0; ip < pl->npanels; ip++) {
            int i0 = ip * MR, mr = pr->m - i0 < MR ? pr->m - i0 : MR;
            size_t at = (size_t)kb * pl->npanels + ip;
            pg_pack_x(pr, cx->pack, i0, mr, MR, pc, kc, pl->xp + at * MR * KC,
                      pl->xm + at * MR * KC, &pl->xs[at]);
        }
    }
    return pl;
}

/* ---- plans: a fixed X over many products (gemm_internal.h) ---------------------- */

pg_plan *pg_plan_forward(int key, CBLAS_TRANSPOSE ta, int m, int k, const float *a, int lda,
                         float offset)
{
    pg_problem pr;
    memset(&pr, 0, sizeof pr);
    pr.kind = PG_FWD;
    pr.m = m;
    pr.kd = k;
    pr.x = stored(CblasRowMajor, a, lda);
    if (is_trans(ta))
        pr.x = transposed(pr.x);
    set_offset(&pr, offset);
    return plan_create(key, &pr);
}

void pg_plan_run_forward(const pg_plan *pl, int n, const float *b, int ldb, float beta, float *c,
                         int ldc)
{
    pg_problem pr = pl->pr;
    pr.n = n;
    pr.y = stored(CblasRowMajor, b, ldb);
    pr.c = c;
    pr.rs_c = ldc;
    pr.cs_c = 1;
    pr.accumulate = beta == 1.0f;
    if (!pg_run(&pr, nomul_num_threads(), pl))
        nomul_report(NOMUL_ENOMEM, "pam gemm plan: out of memory for packed panels");
}

pg_plan *pg_plan_grad_b(int key, int m, int k, const float *a, int lda, float offset)
{
    pg_problem pr;
    memset(&pr, 0, sizeof pr);
    pr.kind = PG_GRAD_B;
    pr.m = k;
    pr.kd = m;
    pr.x = transposed(stored(CblasRowMajor, a, lda));
    set_offset(&pr, offset);
    return plan_create(key, &pr);
}

void pg_plan_run_grad_b(const pg_plan *pl, int n, const float *b, int ldb, const float *dc,
                        int lddc, float beta, float *db, int lddb)
{
    pg_problem pr = pl->pr;
    pr.n = n;
    pr.y = stored(CblasRowMajor, dc, lddc);
    pr.t = stored(CblasRowMajor, b, ldb);
    pr.c = db;
    pr.rs_c = lddb;
    pr.cs_c = 1;
    pr.accumulate = beta == 1.0f;
    if (!pg_run(&pr, nomul_num_threads(), pl))
        nomul_report(NOMUL_ENOMEM, "pam gemm plan: out of memory for packed panels");
}

/* Whether every product of every X panel with Y values bounded by ys is a
 * normal number computed by the integer add. */
static int pg_plan_all_safe(const pg_plan *pl, const pg_stats *ys)
{
    for (int i = 0; i < pl->nkb * pl->npanels; i++)
        if (!pg_panels_safe(&pl->pr, &pl->xs[i], ys))
            return 0;
    return 1;
}

pg_plan *pg_plan_forward_direct(int key, int m, int k, const float *a, int lda, float offset)
{
    if (!pg_cntx_active()->fwd_direct)
        return NULL;
    pg_problem pr;
    memset(&pr, 0, sizeof pr);
    pr.kind = PG_FWD;
    pr.m = m;
    pr.kd = k;
    pr.x = stored(CblasRowMajor, a, lda);
    pr.fold_y_adj = 1;
    set_offset(&pr, offset);
    return plan_create(key, &pr);
}

pg_plan *pg_plan_grad_t_direct(int key, int m, int k, const float *a, int lda, float offset)
{
    if (!pg_cntx_active()->grad_b_direct)
        return NULL;
    pg_problem pr;
    memset(&pr, 0, sizeof pr);
    pr.kind = PG_GRAD_B; /* X = A as is: each row one output row's partners */
    pr.m = m;
    pr.kd = k;
    pr.x = stored(CblasRowMajor, a, lda);
    set_offset(&pr, offset);
    return plan_create(key, &pr);
}

int pg_plan_direct_safe(const pg_plan *pl, const pg_stats *ys)
{
    int kernel = pl->pr.kind == PG_FWD ? pl->cx->fwd_direct && pl->pr.fold_y_adj
                                       : pl->cx->grad_b_direct != NULL;
    return kernel && pl->cx == pg_cntx_active() && pg_plan_all_safe(pl, ys);
}

/* Column strip jp of a direct product: K block by K block, every row panel
 * of the block (so that the strip's rows of Y, read in place and scattered,
 * are loaded once per block and stay in L1 while the packed X streams; a
 * gradient's T tiles, the strip's, are packed in the first block into tiles,
 * npanels of them, and read again by the others). Each sum is its blocks'
 * partial sums added in order to C, whatever the loop order. Narrow (nw.wp),
 * the full tiles' sums stay in a wide strip buffer until the last block,
 * whose kernels add them and store the tile narrow (no masked loads of C);
 * the strip's partial tiles go through ct to C every block. */
static void direct_strip(const pg_plan *pl, const pg_problem *out, int jp, int n,
                         const float *t, int ldt, uint32_t *tiles, const float *y,
                         const long *yoff, float beta, float *c, int ldc, pg_narrow nw)
{
    const pg_cntx *cx = pl->cx;
    const int fwd = pl->pr.kind == PG_FWD;
    const int MR = pl->MR, NR = fwd ? cx->fwd.nr : cx->grad.nr, KC = cx->kc;
    int m = pl->pr.m, kd = pl->pr.kd;
    float ct[PG_TILE_MAX] __attribute__((aligned(64)));
    int j0 = jp * NR, nr = n - j0 < NR ? n - j0 : NR;
    /* narrow: C's earlier sums are read only through ct (beta 1) */
    const int narrow = nw.wp > 0, nfull = narrow && beta == 1.0f ? 0 : 1;
    float *cs = narrow && pl->nkb > 1 && nfull
                    ? nomul_scratch(NOMUL_SCRATCH_GEMM_STRIP, (size_t)pl->npanels * MR * NR)
                    : NULL;
    if (narrow && pl->nkb > 1 && nfull && !cs)
        return; /* reported */
    for (int kb = 0; kb < pl->nkb; kb++) {
        int pc = kb * KC, kc = kd - pc < KC ? kd - pc : KC;
        int add = kb > 0 || beta == 1.0f, last = kb == pl->nkb - 1;
        for (int ip = 0; ip < pl->npanels; ip++) {
            int i0 = ip * MR, mr = m - i0 < MR ? m - i0 : MR;
            /* a full tile straight to C, else through ct; narrow, to the
             * strip buffer until the last block, which places it */
            int direct = mr == MR && nr == NR && nfull;
            size_t at = (size_t)kb * pl->npanels + ip;
            float *dst = !direct               ? ct
                         : narrow && !last     ? cs + (long)i0 * NR
                         : narrow              ? c + (long)i0 * ldc
                                               : c + (long)i0 * ldc + j0;
            long ld = !direct || (narrow && !last) ? NR : ldc;
            int kadd = direct && add;
            const pg_narrow tnw = {nw.wp, nw.ow, j0, cs ? cs + (long)i0 * NR : NULL};
            const pg_narrow *knw = direct && narrow && last ? &tnw : NULL;
            if (fwd) {
                cx->fwd_direct(kc, pl->xp + at * MR * KC, y + j0, yoff + pc,
                               pl->xm + at * MR * KC, pl->xs[at].zero, dst, ld, kadd, knw);
            } else {
                uint32_t *tile = tiles + (size_t)ip * MR * NR;
                if (kb == 0)
                    cx->pack_tile(t + (long)i0 * ldt + j0, ldt, 1, mr, nr, MR, NR, tile);
                cx->grad_b_direct(kc, pl->xp + at * MR * KC, y + j0, yoff + pc, tile,
                                  pl->xm + at * MR * KC, pl->xs[at].zero, dst, ld, kadd, knw);
            }
            if (!direct && nw.wp)
                pg_write_tile_narrow(ct, NR, mr, j0, nr, nw, c + (long)i0 * ldc, ldc, add);
            else if (!direct)
                pg_write_tile(out, i0, mr, j0, nr, NR, ct, add);
        }
    }
}

static void run_direct(const pg_plan *pl, int n, const float *t, int ldt, const float *y,
                       const long *yoff, float beta, float *c, int ldc, pg_narrow nw)
{
    const int fwd = pl->pr.kind == PG_FWD, NR = fwd ? pl->cx->fwd.nr : pl->cx->grad.nr;
    int npj = ceil_div(n, NR);
    /* a gradient's T tiles, npanels per strip, each strip's its thread's */
    const size_t per = (size_t)pl->npanels * pl->MR * NR;
    uint32_t *tiles = fwd ? NULL
                          : nomul_scratch_bytes(NOMUL_SCRATCH_GEMM_T,
                                                (size_t)npj * per * sizeof *tiles);
    if (!fwd && !tiles)
        return; /* reported */
    int nt = omp_in_parallel() || npj < 2 ? 1 : nomul_num_threads();
    pg_problem out = pl->pr; /* for write_tile */
    out.n = n;
    out.c = c;
    out.rs_c = ldc;
    out.cs_c = 1;
    /* one thread: no OpenMP team (a team of one still makes a futex system
     * call at its barrier; this runs once per image of a convolution) */
    if (nt <= 1) {
        for (int jp = 0; jp < npj; jp++)
            direct_strip(pl, &out, jp, n, t, ldt, tiles ? tiles + jp * per : NULL, y, yoff,
                         beta, c, ldc, nw);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int jp = 0; jp < npj; jp++)
        direct_strip(pl, &out, jp, n, t, ldt, tiles ? tiles + jp * per : NULL, y, yoff, beta,
                     c, ldc, nw);
}

void pg_plan_run_forward_direct(const pg_plan *pl, int n, const float *y, const long *yoff,
                                float beta, float *c, int ldc, pg_narrow nw)
{
    run_direct(pl, n, NULL, 0, y, yoff, beta, c, ldc, nw);
}

void pg_plan_run_grad_t_direct(const pg_plan *pl, int n, const float *t, int ldt, const float *y,
                               const long *yoff, float beta, float *c, int ldc, pg_narrow nw)
{
    run_direct(pl, n, t, ldt, y, yoff, beta, c, ldc, nw);
}

int pg_range_safe(const pg_stats *a, const pg_stats *b, float offset)
{
    pg_problem pr;
    memset(&pr, 0, sizeof pr);
    pr.kind = PG_FWD;
    set_offset(&pr, offset);
    return pg_panels_safe(&pr, a, b);
}
