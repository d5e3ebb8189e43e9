/*
 * pam_gemm.c — the piecewise affine matrix engine: argument checks in
 * cblas_sgemm's conventions, reduction of every product (forward, exact
 * backward, batched) to the problem form of gemm_internal.h, BLIS-style
 * blocking and packing with per-panel range classification, the checked
 * path for tiles that need it, and OpenMP threads.
 */
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "../arith/bits.h"
#include "../core/internal.h"
#include "gemm_internal.h"
#include "nomul/arith.h"
#include "nomul/gemm.h"
#include "nomul/isa.h"

/* ---- the problem ----------------------------------------------------------- */

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

/* ---- blocking ----------------------------------------------------------------- */

#ifndef PG_KC
#define PG_KC 192
#endif
#ifndef PG_NC
#define PG_NC 1024
#endif
#ifndef PG_MC
#define PG_MC 96
#endif
enum { KC = PG_KC, MC = PG_MC, NC = PG_NC };

/* The packed form of one X or Y value, by role (see gemm_internal.h). */
typedef enum {
    ROLE_RAW,           /* forward X, gradient dC: the bits as they are */
    ROLE_SHIFTED,       /* forward Y: bits − 1.0 (+ the offset's bits − 1.0) */
    ROLE_SHIFTED_OFFSET /* gradient partner: bits of PAM(v, offset) − 1.0 */
} pg_role;

static pg_role x_role(const pg_problem *pr)
{
    if (pr->fold_y_adj) /* direct-Y plans: X carries Y's adjustment */
        return ROLE_SHIFTED;
    return pr->kind == PG_GRAD_B ? ROLE_SHIFTED_OFFSET : ROLE_RAW;
}
static pg_role y_role(pg_kind k)
{
    return k == PG_FWD ? ROLE_SHIFTED : k == PG_GRAD_A ? ROLE_SHIFTED_OFFSET : ROLE_RAW;
}

static pg_pack_fn pack_fn(void)
{
    nomul_isa isa = nomul_isa_active();
    return isa == NOMUL_ISA_AVX512 ? pg_pack_avx512
           : isa == NOMUL_ISA_AVX2 ? pg_pack_avx2
                                   : pg_pack_scalar;
}

static uint32_t role_adj(const pg_problem *pr, pg_role role)
{
    return role == ROLE_SHIFTED ? pr->off_adj - PG_ONE
           : role == ROLE_SHIFTED_OFFSET ? 0u - PG_ONE
                                         : 0u;
}

/* Packs M(row0 + r, col0 + p) for one micro-panel; the gradient partner
 * with an offset is first multiplied by it (PAM) into a scratch copy. */
static void pack_panel(const pg_problem *pr, pg_pack_fn fn, pg_role role, const pg_mat *M,
                       int row0, int nvalid, int R, int col0, int kc, uint32_t *d, int32_t *mask,
                       pg_stats *st)
{
    const float *base = M->p + (long)row0 * M->rs + (long)col0 * M->cs;
    if (role == ROLE_SHIFTED_OFFSET && pr->has_offset) {
        /* d doubles as the scratch: PAM(v, offset) laid out as the panel */
        float *scratch = (float *)d;
        for (int p = 0; p < kc; p++)
            for (int r = 0; r < nvalid; r++)
                scratch[(long)p * R + r] =
                    nomul_pam_mul(base[(long)r * M->rs + (long)p * M->cs], pr->offset);
        fn(scratch, 1, R, nvalid, R, kc, role_adj(pr, role), d, mask, st);
        return;
    }
    fn(base, M->rs, M->cs, nvalid, R, kc, role_adj(pr, role), d, mask, st);
}

/* X rows i0.. (mr valid of MR), reduction p0..p0+kc: xp[p * MR + r] */
static void pack_x(const pg_problem *pr, pg_pack_fn fn, int i0, int mr, int MR, int p0, int kc,
                   uint32_t *xp, int32_t *xm, pg_stats *s)
{
    pack_panel(pr, fn, x_role(pr), &pr->x, i0, mr, MR, p0, kc, xp, xm, s);
}

/* Y columns j0.. (nr valid of NR): yp[p * NR + c] */
static void pack_y(const pg_problem *pr, pg_pack_fn fn, int j0, int nr, int NR, int p0, int kc,
                   uint32_t *yp, int32_t *ym, pg_stats *s)
{
    pg_mat yt = {pr->y.p, pr->y.cs, pr->y.rs}; /* Yᵀ: rows are Y's columns */
    pack_panel(pr, fn, y_role(pr->kind), &yt, j0, nr, NR, p0, kc, yp, ym, s);
}

/* The mantissa fields of T, tile by tile (MR×NR, row-major within a tile),
 * for the whole output; nan[tile] is set where T holds a NaN. */
static void pack_t(const pg_problem *pr, int MR, int NR, uint32_t *tbuf, unsigned char *nan,
                   int nt)
{
    nomul_isa isa = nomul_isa_active();
    pg_pack_tile_fn fn = isa == NOMUL_ISA_AVX512 ? pg_pack_tile_avx512
                         : isa == NOMUL_ISA_AVX2 ? pg_pack_tile_avx2
                                                 : pg_pack_tile_scalar;
    int nti = (pr->m + MR - 1) / MR, ntj = (pr->n + NR - 1) / NR;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int ti = 0; ti < nti; ti++) {
        for (int tj = 0; tj < ntj; tj++) {
            int i0 = ti * MR, j0 = tj * NR;
            int mr = pr->m - i0 < MR ? pr->m - i0 : MR, nr = pr->n - j0 < NR ? pr->n - j0 : NR;
            nan[(long)ti * ntj + tj] = (unsigned char)fn(
                pr->t.p + (long)i0 * pr->t.rs + (long)j0 * pr->t.cs, pr->t.rs, pr->t.cs, mr, nr,
                MR, NR, tbuf + ((long)ti * ntj + tj) * MR * NR);
        }
    }
}

/* Whether every product of these two panels is a normal number computed by
 * the integer add: no infinity or NaN, and the exponent sum (with the
 * mantissa carry, and the offset's own step) stays in [−126, 127]. */
static int panels_safe(const pg_problem *pr, const pg_stats *sx, const pg_stats *sy)
{
    if (sx->special || sy->special)
        return 0;
    if (sx->emax < sx->emin || sy->emax < sy->emin)
        return 1; /* a panel of zeros only */
    int lo = sx->emin + sy->emin, hi = sx->emax + sy->emax + 1;
    if (lo < -126 || hi > 127)
        return 0;
    if (pr->kind == PG_FWD && pr->has_offset)
        return lo + pr->off_e >= -126 && hi + pr->off_e + 1 <= 127;
    return 1;
}

/* The checked path: every product through the scalar functions. */
static void checked_tile(const pg_problem *pr, int i0, int mr, int j0, int nr, int NR, int p0,
                         int kc, float *ct)
{
    for (int r = 0; r < mr; r++) {
        for (int c = 0; c < nr; c++) {
            float acc = 0.0f, unused, g;
            for (int p = p0; p < p0 + kc; p++) {
                float x = mat_at(&pr->x, i0 + r, p), y = mat_at(&pr->y, p, j0 + c);
                switch (pr->kind) {
                case PG_FWD:
                    g = pr->has_offset ? nomul_pam_mul_off(x, y, pr->offset) : nomul_pam_mul(x, y);
                    break;
                case PG_GRAD_A: /* x = dC, y = b, t = a */
                    if (pr->has_offset)
                        y = nomul_pam_mul(y, pr->offset);
                    nomul_pam_mul_grad(mat_at(&pr->t, i0 + r, j0 + c), y, x, &g, &unused);
                    break;
                default: /* grad B: x = a, y = dC, t = b */
                    if (pr->has_offset)
                        x = nomul_pam_mul(x, pr->offset);
                    nomul_pam_mul_grad(x, mat_at(&pr->t, i0 + r, j0 + c), y, &unused, &g);
                    break;
                }
                acc += g;
            }
            ct[r * NR + c] = acc;
        }
    }
}

typedef struct {
    int mr, nr;
    pg_fwd_kernel fwd;
    pg_grad_kernel grad;
} pg_kernel;

static pg_kernel kernel_for(pg_kind kind, nomul_isa isa)
{
    const pg_fwd_ukr *f = isa == NOMUL_ISA_AVX512 ? &pg_fwd_avx512
                          : isa == NOMUL_ISA_AVX2 ? &pg_fwd_avx2
                                                  : &pg_fwd_scalar;
    const pg_grad_ukr *g = isa == NOMUL_ISA_AVX512 ? &pg_grad_avx512
                           : isa == NOMUL_ISA_AVX2 ? &pg_grad_avx2
                                                   : &pg_grad_scalar;
    pg_kernel k = {0, 0, NULL, NULL};
    if (kind == PG_FWD) {
        k.mr = f->mr;
        k.nr = f->nr;
        k.fwd = f->fwd;
    } else {
        k.mr = g->mr;
        k.nr = g->nr;
        k.grad = kind == PG_GRAD_A ? g->grad_a : g->grad_b;
    }
    return k;
}

static void write_tile(const pg_problem *pr, int i0, int mr, int j0, int nr, int NR,
                       const float *ct, int add)
{
    for (int r = 0; r < mr; r++) {
        float *row = pr->c + (long)(i0 + r) * pr->rs_c + (long)j0 * pr->cs_c;
        if (add)
            for (int c = 0; c < nr; c++)
                row[c * pr->cs_c] += ct[r * NR + c];
        else
            for (int c = 0; c < nr; c++)
                row[c * pr->cs_c] = ct[r * NR + c];
    }
}

static int ceil_div(int a, int b) { return (a + b - 1) / b; }

/* Packing buffers are kept per calling thread and reused, so that repeated
 * products (a convolution's per-image GEMMs, a training step's layers) do
 * not pay for fresh pages every call. */
enum { BUF_Y, BUF_YM, BUF_X, BUF_XM, BUF_T, BUF_YS, BUF_XS, BUF_TNAN, BUF_COUNT };
static _Thread_local struct {
    void *p;
    size_t cap;
} buf_cache[BUF_COUNT];

static void *buf_get(int slot, size_t bytes)
{
    if (buf_cache[slot].cap < bytes) {
        nomul_aligned_free(buf_cache[slot].p);
        buf_cache[slot].p = nomul_aligned_alloc(bytes);
        buf_cache[slot].cap = buf_cache[slot].p ? bytes : 0;
    }
    return buf_cache[slot].p;
}

void nomul_gemm_release_buffers(void)
{
    for (int i = 0; i < BUF_COUNT; i++) {
        nomul_aligned_free(buf_cache[i].p);
        buf_cache[i].p = NULL;
        buf_cache[i].cap = 0;
    }
}

/* X packed once for every K block and row panel, reused by many products
 * that share X (a convolution's weights over its images). Panel ip of K
 * block kb sits at (kb · npanels + ip) · MR · KC. */
struct pg_plan {
    pg_problem pr; /* the X part, kind and offset; Y, T and C are per run */
    nomul_isa isa;
    int MR, npanels, nkb;
    uint32_t *xp;
    int32_t *xm;
    pg_stats *xs;
    size_t cap_x, cap_s; /* elements the buffers hold (plans are recycled) */
};

/* A forward product with one or two rows (a depthwise convolution's
 * per-channel product) would fill a microkernel's rows with padding: each
 * row is instead a sum of scaled Y rows, c_i = Σ_p PAM(x_ip, Y_p,·), with
 * the elementwise broadcast kernels (every class handled, bit for bit the
 * scalar PAM). Needs unit-stride Y rows and C rows. */
static int small_m_forward(const pg_problem *pr)
{
    enum { CHUNK = 1024 };
    float tmp[CHUNK], acc[CHUNK];
    for (int i = 0; i < pr->m; i++) {
        for (int j0 = 0; j0 < pr->n; j0 += CHUNK) {
            int nj = pr->n - j0 < CHUNK ? pr->n - j0 : CHUNK;
            for (int p = 0; p < pr->kd; p++) {
                const float *yrow = pr->y.p + (long)p * pr->y.rs + j0;
                float x = mat_at(&pr->x, i, p);
                float *dst = p == 0 ? acc : tmp;
                if (pr->has_offset)
                    nomul_pam_mul_off_vs((size_t)nj, yrow, x, pr->offset, dst);
                else
                    nomul_pam_mul_vs((size_t)nj, yrow, x, dst);
                if (p > 0)
                    for (int j = 0; j < nj; j++)
                        acc[j] += tmp[j];
            }
            float *crow = pr->c + (long)i * pr->rs_c + j0;
            if (pr->accumulate)
                for (int j = 0; j < nj; j++)
                    crow[j] += acc[j];
            else
                memcpy(crow, acc, (size_t)nj * sizeof *crow);
        }
    }
    return 1;
}

/* Runs a problem on nt threads (X from plan when not NULL); returns 0 when
 * out of memory. */
static int pg_run_plan(const pg_problem *pr, int nt, const pg_plan *plan)
{
    int m = pr->m, n = pr->n, kd = pr->kd;
    if (m == 0 || n == 0)
        return 1;
    if (omp_in_parallel()) /* called from a thread of an outer parallel loop */
        nt = 1;
    if (kd == 0) {
        if (!pr->accumulate)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                    pr->c[(long)i * pr->rs_c + (long)j * pr->cs_c] = 0.0f;
        return 1;
    }
    if (pr->kind == PG_FWD && m <= 2 && pr->y.cs == 1 && pr->cs_c == 1) {
        NOMUL_COUNT(FADD, (long long)m * n * (kd > 0 ? kd - 1 : 0)); /* its PAMs count themselves */
        return small_m_forward(pr);
    }
    /* the audit: one PAM (two with an offset) or one exponent shift, and one
     * float add, per product */
    long long products = (long long)m * n * kd;
    if (pr->kind == PG_FWD)
        NOMUL_COUNT(PAM, products * (pr->has_offset ? 2 : 1));
    else
        NOMUL_COUNT(SHIFT, products);
    NOMUL_COUNT(FADD, products);
    pg_kernel K = kernel_for(pr->kind, plan ? plan->isa : nomul_isa_active());
    pg_pack_fn packer = pack_fn();
    const int MR = K.mr, NR = K.nr;
    int nc_max = n < NC ? n : NC;
    int kc_max = kd < KC ? kd : KC;
    int ny_panels = ceil_div(nc_max, NR);
    /* ic blocks of at most MC rows, as many as a multiple of the threads,
     * of whole micro-panels; of the first few such counts, the one whose
     * blocks divide the panels most evenly */
    int panels = ceil_div(m, MR), base = ceil_div(ceil_div(m, MC), nt) * nt, nblocks = base;
    int best_waste = ceil_div(panels, base) * base - panels;
    for (int nb = base + nt; nb <= base + 4 * nt && nb <= panels; nb += nt) {
        int waste = ceil_div(panels, nb) * nb - panels;
        if (waste < best_waste) {
            best_waste = waste;
            nblocks = nb;
        }
    }
    int mc = ceil_div(panels, nblocks) * MR;
    if (nt > ceil_div(m, mc))
        nt = ceil_div(m, mc);

    size_t ysize = (size_t)ny_panels * NR * kc_max;
    uint32_t *yp = buf_get(BUF_Y, ysize * sizeof *yp);
    int32_t *ym = buf_get(BUF_YM, ysize * sizeof *ym);
    pg_stats *ys = buf_get(BUF_YS, (size_t)ny_panels * sizeof *ys);
    size_t xsize = (size_t)mc * kc_max;
    int nx_panels = ceil_div(mc, MR);
    int ok = yp && ym && ys;
    uint32_t *xbuf = ok ? buf_get(BUF_X, (size_t)nt * xsize * sizeof *xbuf) : NULL;
    int32_t *xmbuf = ok ? buf_get(BUF_XM, (size_t)nt * xsize * sizeof *xmbuf) : NULL;
    pg_stats *xsbuf = ok ? buf_get(BUF_XS, (size_t)nt * nx_panels * sizeof *xsbuf) : NULL;
    ok = ok && xbuf && xmbuf && xsbuf;
    /* gradients: T's mantissas, packed once for the whole output */
    int nti = ceil_div(m, MR), ntj = ceil_div(n, NR);
    uint32_t *tbuf = NULL;
    unsigned char *tnan = NULL;
    if (ok && pr->kind != PG_FWD) {
        tbuf = buf_get(BUF_T, (size_t)nti * ntj * MR * NR * sizeof *tbuf);
        tnan = buf_get(BUF_TNAN, (size_t)nti * ntj);
        ok = tbuf && tnan;
        if (ok)
            pack_t(pr, MR, NR, tbuf, tnan, nt);
    }
    if (!ok)
        return 0;

#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int tid = omp_get_thread_num();
        uint32_t *xp = xbuf + (size_t)tid * xsize;
        int32_t *xm = xmbuf + (size_t)tid * xsize;
        pg_stats *xs = xsbuf + (size_t)tid * nx_panels;
        float ct[16 * 32] __attribute__((aligned(64)));
        for (int jc = 0; jc < n; jc += NC) {
            int nc = n - jc < NC ? n - jc : NC;
            int npan = ceil_div(nc, NR);
            for (int pc = 0; pc < kd; pc += KC) {
                int kc = kd - pc < KC ? kd - pc : KC;
#pragma omp for schedule(static)
                for (int jp = 0; jp < npan; jp++) {
                    int j0 = jc + jp * NR, nr = n - j0 < NR ? n - j0 : NR;
                    pack_y(pr, packer, j0, nr, NR, pc, kc, yp + (size_t)jp * NR * kc,
                           ym + (size_t)jp * NR * kc, &ys[jp]);
                }
                int add = pc > 0 || pr->accumulate;
#pragma omp for schedule(dynamic, 1)
                for (int ic = 0; ic < m; ic += mc) {
                    int mcb = m - ic < mc ? m - ic : mc;
                    int nxp = ceil_div(mcb, MR);
                    if (plan) { /* X was packed once: point into it */
                        size_t at = ((size_t)(pc / KC) * plan->npanels + ic / MR);
                        xp = plan->xp + at * MR * KC;
                        xm = plan->xm + at * MR * KC;
                        xs = plan->xs + at;
                    }
                    for (int ip = 0; ip < nxp && !plan; ip++) {
                        int i0 = ic + ip * MR, mr = m - i0 < MR ? m - i0 : MR;
                        pack_x(pr, packer, i0, mr, MR, pc, kc, xp + (size_t)ip * MR * kc,
                               xm + (size_t)ip * MR * kc, &xs[ip]);
                    }
                    for (int ip = 0; ip < nxp; ip++) {
                        int i0 = ic + ip * MR, mr = m - i0 < MR ? m - i0 : MR;
                        size_t xstride = plan ? (size_t)MR * KC : (size_t)MR * kc;
                        const uint32_t *xpp = xp + (size_t)ip * xstride;
                        const int32_t *xmp = xm + (size_t)ip * xstride;
                        for (int jp = 0; jp < npan; jp++) {
                            int j0 = jc + jp * NR, nr = n - j0 < NR ? n - j0 : NR;
                            const uint32_t *ypp = yp + (size_t)jp * NR * kc;
                            const int32_t *ymp = ym + (size_t)jp * NR * kc;
                            long tix = (long)(i0 / MR) * ntj + j0 / NR;
                            int safe = panels_safe(pr, &xs[ip], &ys[jp]) && !(tnan && tnan[tix]);
                            int masked = (xs[ip].zero ? PG_ZEROS_X : 0) | (ys[jp].zero ? PG_ZEROS_Y : 0);
                            /* full tiles of a unit-stride C are written in place */
                            int direct = mr == MR && nr == NR && pr->cs_c == 1;
                            float *cdst = direct ? pr->c + (long)i0 * pr->rs_c + j0 : ct;
                            long ldc = direct ? pr->rs_c : NR;
                            int kadd = direct ? add : 0;
                            if (!safe)
                                checked_tile(pr, i0, mr, j0, nr, NR, pc, kc, ct);
                            else if (pr->kind == PG_FWD)
                                K.fwd(kc, xpp, ypp, xmp, ymp, masked, cdst, ldc, kadd);
                            else
                                K.grad(kc, xpp, ypp, tbuf + tix * MR * NR, xmp, ymp, masked, cdst,
                                       ldc, kadd);
                            if (!safe || !direct)
                                write_tile(pr, i0, mr, j0, nr, NR, ct, add);
                        }
                    }
                }
            }
        }
    }
    return 1;
}

static int pg_run(const pg_problem *pr, int nt) { return pg_run_plan(pr, nt, NULL); }

/* Freed plans are kept per thread and handed out again, best fit first, so
 * a training step's convolutions, which make and free the same plans every
 * step, allocate nothing once their buffers have grown to the largest layer. */
enum { PLAN_POOL = 1024 };
static _Thread_local pg_plan *plan_pool[PLAN_POOL];
static _Thread_local int plan_pool_n;

static void plan_buffers_free(pg_plan *pl)
{
    nomul_aligned_free(pl->xp);
    nomul_aligned_free(pl->xm);
    free(pl->xs);
}

/* A plan whose buffers hold n packed elements and ns panel statistics. */
static pg_plan *plan_take(size_t n, size_t ns)
{
    int best = -1, largest = -1;
    for (int i = 0; i < plan_pool_n; i++) {
        const pg_plan *q = plan_pool[i];
        if (q->cap_x >= n && q->cap_s >= ns && (best < 0 || q->cap_x < plan_pool[best]->cap_x))
            best = i;
        if (largest < 0 || q->cap_x > plan_pool[largest]->cap_x)
            largest = i;
    }
    int pick = best >= 0 ? best : largest;
    pg_plan *pl;
    if (pick >= 0) {
        pl = plan_pool[pick];
        plan_pool[pick] = plan_pool[--plan_pool_n];
    } else if (!(pl = calloc(1, sizeof *pl)))
        return NULL;
    if (pl->cap_x < n) {
        nomul_aligned_free(pl->xp);
        nomul_aligned_free(pl->xm);
        pl->xp = nomul_aligned_alloc(n * sizeof *pl->xp);
        pl->xm = nomul_aligned_alloc(n * sizeof *pl->xm);
        pl->cap_x = pl->xp && pl->xm ? n : 0;
    }
    if (pl->cap_s < ns) {
        free(pl->xs);
        pl->xs = malloc(ns * sizeof *pl->xs);
        pl->cap_s = pl->xs ? ns : 0;
    }
    if (pl->cap_x < n || pl->cap_s < ns) {
        plan_buffers_free(pl);
        free(pl);
        return NULL;
    }
    return pl;
}

/* Packs pr's X for every K block: the plan for products sharing it. */
static pg_plan *plan_create(const pg_problem *pr)
{
    nomul_isa isa = nomul_isa_active();
    pg_kernel K = kernel_for(pr->kind, isa);
    int npanels = ceil_div(pr->m, K.mr), nkb = ceil_div(pr->kd, KC);
    size_t n = (size_t)nkb * npanels * K.mr * KC;
    pg_plan *pl = plan_take(n ? n : 1, (size_t)nkb * npanels + 1);
    if (!pl)
        return NULL;
    pl->pr = *pr;
    pl->isa = isa;
    pl->MR = K.mr;
    pl->npanels = npanels;
    pl->nkb = nkb;
    pg_pack_fn packer = pack_fn();
    for (int kb = 0; kb < pl->nkb; kb++) {
        int pc = kb * KC, kc = pr->kd - pc < KC ? pr->kd - pc : KC;
        for (int ip = 0; ip < pl->npanels; ip++) {
            int i0 = ip * K.mr, mr = pr->m - i0 < K.mr ? pr->m - i0 : K.mr;
            size_t at = (size_t)kb * pl->npanels + ip;
            pack_x(pr, packer, i0, mr, K.mr, pc, kc, pl->xp + at * K.mr * KC,
                   pl->xm + at * K.mr * KC, &pl->xs[at]);
        }
    }
    return pl;
}

void pg_plan_free(pg_plan *pl)
{
    if (!pl)
        return;
    if (plan_pool_n < PLAN_POOL) {
        plan_pool[plan_pool_n++] = pl;
        return;
    }
    plan_buffers_free(pl);
    free(pl);
}

/* ---- argument checks and the cblas conventions ---------------------------------- */

/* Strides of a stored rows×cols matrix with leading dimension ld. */
static pg_mat stored(CBLAS_LAYOUT layout, const float *p, int ld)
{
    pg_mat a = {p, layout == CblasRowMajor ? ld : 1, layout == CblasRowMajor ? 1 : ld};
    return a;
}

static pg_mat transposed(pg_mat a)
{
    long t = a.rs;
    a.rs = a.cs;
    a.cs = t;
    return a;
}

static int is_trans(CBLAS_TRANSPOSE t) { return t == CblasTrans || t == CblasConjTrans; }

/* Checks the leading dimension of a stored rows×cols matrix. */
static int check_ld(const char *fn, const char *what, CBLAS_LAYOUT layout, int rows, int cols,
                    int ld)
{
    int need = layout == CblasRowMajor ? cols : rows;
    if (need < 1)
        need = 1;
    if (ld < need) {
        nomul_report(NOMUL_EINVAL, "%s: %s = %d must be at least %d (%s, %d x %d)", fn, what, ld,
                     need, layout == CblasRowMajor ? "row-major" : "column-major", rows, cols);
        return 0;
    }
    return 1;
}

static int check_common(const char *fn, CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta,
                        CBLAS_TRANSPOSE tb, int m, int n, int k, float beta, float offset)
{
    if (layout != CblasRowMajor && layout != CblasColMajor) {
        nomul_report(NOMUL_EINVAL, "%s: layout %d is neither CblasRowMajor nor CblasColMajor",
                     fn, (int)layout);
        return 0;
    }
    if ((ta != CblasNoTrans && !is_trans(ta)) || (tb != CblasNoTrans && !is_trans(tb))) {
        nomul_report(NOMUL_EINVAL, "%s: transpose flag %d is not CblasNoTrans or CblasTrans", fn,
                     ta != CblasNoTrans && !is_trans(ta) ? (int)ta : (int)tb);
        return 0;
    }
    if (m < 0 || n < 0 || k < 0) {
        nomul_report(NOMUL_EINVAL, "%s: sizes must not be negative (m = %d, n = %d, k = %d)", fn,
                     m, n, k);
        return 0;
    }
    if (!(beta == 0.0f || beta == 1.0f)) {
        nomul_report(NOMUL_EINVAL, "%s: beta = %g; only 0 (write) and 1 (accumulate) are "
                     "supported, since scaling C would be a multiplication", fn, (double)beta);
        return 0;
    }
    uint32_t e = (pa_bits(offset) >> 23) & 0xFF;
    if (e == 0 || e == 0xFF) {
        nomul_report(NOMUL_EINVAL, "%s: offset %g must be a normal float (1 for none)", fn,
                     (double)offset);
        return 0;
    }
    return 1;
}

static int check_ptr(const char *fn, const char *what, const void *p, long elements)
{
    if (elements > 0 && !p) {
        nomul_report(NOMUL_EINVAL, "%s: %s is NULL", fn, what);
        return 0;
    }
    return 1;
}

static void set_offset(pg_problem *pr, float offset)
{
    pr->has_offset = offset != 1.0f;
    pr->offset = offset;
    pr->off_adj = pr->has_offset ? pa_bits(offset) - PG_ONE : 0;
    pr->off_e = (int)((pa_bits(offset) >> 23) & 0xFF) - 127;
}

static void run_or_report(const char *fn, const pg_problem *pr, int nt)
{
    if (!pg_run(pr, nt))
        nomul_report(NOMUL_ENOMEM, "%s: out of memory for packed panels", fn);
}

/* op(A) is m×k, stored k×m when transposed; likewise op(B) k×n. */
static int check_ab(const char *fn, CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb,
                    int m, int n, int k, const float *a, int lda, const float *b, int ldb)
{
    int ar = is_trans(ta) ? k : m, ac = is_trans(ta) ? m : k;
    int br = is_trans(tb) ? n : k, bc = is_trans(tb) ? k : n;
    return check_ld(fn, "lda", layout, ar, ac, lda) && check_ld(fn, "ldb", layout, br, bc, ldb) &&
           check_ptr(fn, "A", a, (long)m * k) && check_ptr(fn, "B", b, (long)k * n);
}

static int setup_forward(const char *fn, pg_problem *pr, CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta,
                         CBLAS_TRANSPOSE tb, int m, int n, int k, const float *a, int lda,
                         const float *b, int ldb, float beta, float *c, int ldc, float offset)
{
    if (!check_common(fn, layout, ta, tb, m, n, k, beta, offset) ||
        !check_ab(fn, layout, ta, tb, m, n, k, a, lda, b, ldb) ||
        !check_ld(fn, "ldc", layout, m, n, ldc) || !check_ptr(fn, "C", c, (long)m * n))
        return 0;
    memset(pr, 0, sizeof *pr);
    pr->kind = PG_FWD;
    pr->m = m;
    pr->n = n;
    pr->kd = k;
    pr->x = stored(layout, a, lda);
    if (is_trans(ta))
        pr->x = transposed(pr->x);
    pr->y = stored(layout, b, ldb);
    if (is_trans(tb))
        pr->y = transposed(pr->y);
    pg_mat cm = stored(layout, c, ldc);
    pr->c = c;
    pr->rs_c = cm.rs;
    pr->cs_c = cm.cs;
    pr->accumulate = beta == 1.0f;
    set_offset(pr, offset);
    return 1;
}

void nomul_pam_sgemm(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n,
                     int k, const float *a, int lda, const float *b, int ldb, float beta, float *c,
                     int ldc, float offset)
{
    pg_problem pr;
    if (setup_forward("nomul_pam_sgemm", &pr, layout, ta, tb, m, n, k, a, lda, b, ldb, beta, c,
                      ldc, offset))
        run_or_report("nomul_pam_sgemm", &pr, nomul_num_threads());
}

/* Gradient problems: dop(A) (m×k) or dop(B) (k×n), written in A's or B's
 * storage with ldd. */
static int setup_grad(const char *fn, pg_problem *pr, pg_kind kind, CBLAS_LAYOUT layout,
                      CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, const float *a,
                      int lda, const float *b, int ldb, const float *dc, int lddc, float beta,
                      float *d, int ldd, float offset)
{
    if (!check_common(fn, layout, ta, tb, m, n, k, beta, offset) ||
        !check_ab(fn, layout, ta, tb, m, n, k, a, lda, b, ldb) ||
        !check_ld(fn, "lddc", layout, m, n, lddc) || !check_ptr(fn, "dC", dc, (long)m * n))
        return 0;
    int dr, dcol;
    CBLAS_TRANSPOSE td = kind == PG_GRAD_A ? ta : tb;
    if (kind == PG_GRAD_A) {
        dr = is_trans(ta) ? k : m;
        dcol = is_trans(ta) ? m : k;
    } else {
        dr = is_trans(tb) ? n : k;
        dcol = is_trans(tb) ? k : n;
    }
    if (!check_ld(fn, kind == PG_GRAD_A ? "ldda" : "lddb", layout, dr, dcol, ldd) ||
        !check_ptr(fn, kind == PG_GRAD_A ? "dA" : "dB", d, (long)dr * dcol))
        return 0;
    memset(pr, 0, sizeof *pr);
    pr->kind = kind;
    pg_mat opa = stored(layout, a, lda), opb = stored(layout, b, ldb);
    if (is_trans(ta))
        opa = transposed(opa);
    if (is_trans(tb))
        opb = transposed(opb);
    pg_mat dcm = stored(layout, dc, lddc);
    pg_mat out = stored(layout, d, ldd);
    if (is_trans(td))
        out = transposed(out);
    if (kind == PG_GRAD_A) { /* dop(A) (m×k) = Σ_j over n */
        pr->m = m;
        pr->n = k;
        pr->kd = n;
        pr->x = dcm;
        pr->y = transposed(opb);
        pr->t = opa;
    } else { /* dop(B) (k×n) = Σ_i over m */
        pr->m = k;
        pr->n = n;
        pr->kd = m;
        pr->x = transposed(opa);
        pr->y = dcm;
        pr->t = opb;
    }
    pr->c = d;
    pr->rs_c = out.rs;
    pr->cs_c = out.cs;
    pr->accumulate = beta == 1.0f;
    set_offset(pr, offset);
    return 1;
}

void nomul_pam_sgemm_grad_a(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m,
                            int n, int k, const float *a, int lda, const float *b, int ldb,
                            const float *dc, int lddc, float beta, float *da, int ldda,
                            float offset)
{
    pg_problem pr;
    if (setup_grad("nomul_pam_sgemm_grad_a", &pr, PG_GRAD_A, layout, ta, tb, m, n, k, a, lda, b,
                   ldb, dc, lddc, beta, da, ldda, offset))
        run_or_report("nomul_pam_sgemm_grad_a", &pr, nomul_num_threads());
}

void nomul_pam_sgemm_grad_b(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m,
                            int n, int k, const float *a, int lda, const float *b, int ldb,
                            const float *dc, int lddc, float beta, float *db, int lddb,
                            float offset)
{
    pg_problem pr;
    if (setup_grad("nomul_pam_sgemm_grad_b", &pr, PG_GRAD_B, layout, ta, tb, m, n, k, a, lda, b,
                   ldb, dc, lddc, beta, db, lddb, offset))
        run_or_report("nomul_pam_sgemm_grad_b", &pr, nomul_num_threads());
}

/* ---- plans: a fixed X over many products (gemm_internal.h) ---------------------- */

pg_plan *pg_plan_forward(CBLAS_TRANSPOSE ta, int m, int k, const float *a, int lda, float offset)
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
    return plan_create(&pr);
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
    if (!pg_run_plan(&pr, nomul_num_threads(), pl))
        nomul_report(NOMUL_ENOMEM, "pam gemm plan: out of memory for packed panels");
}

pg_plan *pg_plan_grad_b(int m, int k, const float *a, int lda, float offset)
{
    pg_problem pr;
    memset(&pr, 0, sizeof pr);
    pr.kind = PG_GRAD_B;
    pr.m = k;
    pr.kd = m;
    pr.x = transposed(stored(CblasRowMajor, a, lda));
    set_offset(&pr, offset);
    return plan_create(&pr);
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
    if (!pg_run_plan(&pr, nomul_num_threads(), pl))
        nomul_report(NOMUL_ENOMEM, "pam gemm plan: out of memory for packed panels");
}

void nomul_pam_sgemm_backward(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m,
                              int n, int k, const float *a, int lda, const float *b, int ldb,
                              const float *dc, int lddc, float beta, float *da, int ldda,
                              float *db, int lddb, float offset, int approx)
{
    const char *fn = "nomul_pam_sgemm_backward";
    pg_problem pr;
    /* validate everything before writing anything */
    if ((da && !setup_grad(fn, &pr, PG_GRAD_A, layout, ta, tb, m, n, k, a, lda, b, ldb, dc, lddc,
                           beta, da, ldda, offset)) ||
        (db && !setup_grad(fn, &pr, PG_GRAD_B, layout, ta, tb, m, n, k, a, lda, b, ldb, dc, lddc,
                           beta, db, lddb, offset)))
        return;
    CBLAS_TRANSPOSE nt_ = CblasNoTrans, tr = CblasTrans;
    if (!approx) {
        if (da)
            nomul_pam_sgemm_grad_a(layout, ta, tb, m, n, k, a, lda, b, ldb, dc, lddc, beta, da,
                                   ldda, offset);
        if (db)
            nomul_pam_sgemm_grad_b(layout, ta, tb, m, n, k, a, lda, b, ldb, dc, lddc, beta, db,
                                   lddb, offset);
        return;
    }
    /* dop(A) (m×k) = dC (m×n) · op(B)ᵀ, written in A's storage: when A is
     * stored transposed, compute its transpose op(B) · dCᵀ instead */
    if (da) {
        if (!is_trans(ta))
            nomul_pam_sgemm(layout, nt_, is_trans(tb) ? nt_ : tr, m, k, n, dc, lddc, b, ldb, beta,
                            da, ldda, offset);
        else
            nomul_pam_sgemm(layout, tb, tr, k, m, n, b, ldb, dc, lddc, beta, da, ldda, offset);
    }
    /* dop(B) (k×n) = op(A)ᵀ · dC, likewise in B's storage */
    if (db) {
        if (!is_trans(tb))
            nomul_pam_sgemm(layout, is_trans(ta) ? nt_ : tr, nt_, k, n, m, a, lda, dc, lddc, beta,
                            db, lddb, offset);
        else
            nomul_pam_sgemm(layout, tr, ta, n, k, m, dc, lddc, a, lda, beta, db, lddb, offset);
    }
}

/* Whether every product of every X panel with Y values bounded by ys is a
 * normal number computed by the integer add. */
static int pg_plan_all_safe(const pg_plan *pl, const pg_stats *ys)
{
    for (int i = 0; i < pl->nkb * pl->npanels; i++)
        if (!panels_safe(&pl->pr, &pl->xs[i], ys))
            return 0;
    return 1;
}

pg_plan *pg_plan_forward_direct(int m, int k, const float *a, int lda, float offset)
{
    if (nomul_isa_active() != NOMUL_ISA_AVX512)
        return NULL;
    pg_problem pr;
    memset(&pr, 0, sizeof pr);
    pr.kind = PG_FWD;
    pr.m = m;
    pr.kd = k;
    pr.x = stored(CblasRowMajor, a, lda);
    pr.fold_y_adj = 1;
    set_offset(&pr, offset);
    return plan_create(&pr);
}

int pg_plan_direct_safe(const pg_plan *pl, const pg_stats *ys)
{
    return pl->isa == NOMUL_ISA_AVX512 && nomul_isa_active() == NOMUL_ISA_AVX512 &&
           pl->pr.fold_y_adj && pg_plan_all_safe(pl, ys);
}

void pg_plan_run_forward_direct(const pg_plan *pl, int n, const float *y, int ldy, float beta,
                                float *c, int ldc)
{
    const int MR = pl->MR, NR = pg_fwd_avx512.nr;
    int m = pl->pr.m, kd = pl->pr.kd, npj = ceil_div(n, NR);
    NOMUL_COUNT(PAM, (long long)m * n * kd * (pl->pr.has_offset ? 2 : 1));
    NOMUL_COUNT(FADD, (long long)m * n * kd);
    int nt = omp_in_parallel() ? 1 : nomul_num_threads();
    pg_problem out = pl->pr; /* for write_tile */
    out.n = n;
    out.c = c;
    out.rs_c = ldc;
    out.cs_c = 1;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int ip = 0; ip < pl->npanels; ip++) {
        float ct[16 * 32] __attribute__((aligned(64)));
        int i0 = ip * MR, mr = m - i0 < MR ? m - i0 : MR;
        for (int jp = 0; jp < npj; jp++) {
            int j0 = jp * NR, nr = n - j0 < NR ? n - j0 : NR;
            int direct = mr == MR && nr == NR;
            for (int kb = 0; kb < pl->nkb; kb++) {
                int pc = kb * KC, kc = kd - pc < KC ? kd - pc : KC;
                size_t at = (size_t)kb * pl->npanels + ip;
                int add = direct ? (kb > 0 || beta == 1.0f) : kb > 0;
                pg_fwd_direct_avx512(kc, pl->xp + at * MR * KC, y + (long)pc * ldy + j0, ldy,
                                     pl->xm + at * MR * KC, pl->xs[at].zero,
                                     direct ? c + (long)i0 * ldc + j0 : ct, direct ? ldc : NR,
                                     add);
            }
            if (!direct)
                write_tile(&out, i0, mr, j0, nr, NR, ct, beta == 1.0f);
        }
    }
}

const pg_dw_rows *pg_dw_rows_active(void)
{
    nomul_isa isa = nomul_isa_active();
    return isa == NOMUL_ISA_AVX512 ? &pg_dw_rows_avx512
           : isa == NOMUL_ISA_AVX2 ? &pg_dw_rows_avx2
                                   : &pg_dw_rows_scalar;
}

int pg_range_safe(const pg_stats *a, const pg_stats *b, float offset)
{
    pg_problem pr;
    memset(&pr, 0, sizeof pr);
    pr.kind = PG_FWD;
    set_offset(&pr, offset);
    return panels_safe(&pr, a, b);
}

/* ---- batched ------------------------------------------------------------------------ */

static int check_batch(const char *fn, int batch, long sa, long sb, long sc, long sd)
{
    if (batch < 0 || sa < 0 || sb < 0 || sc < 0 || sd < 0) {
        nomul_report(NOMUL_EINVAL, "%s: batch (%d) and strides must not be negative", fn, batch);
        return 0;
    }
    return 1;
}

static void shift_problem(pg_problem *pr, const pg_problem *base, long i, long sx, long sy,
                          long st, long sc)
{
    *pr = *base;
    pr->x.p = base->x.p ? base->x.p + i * sx : NULL;
    pr->y.p = base->y.p ? base->y.p + i * sy : NULL;
    pr->t.p = base->t.p ? base->t.p + i * st : NULL;
    pr->c = base->c + i * sc;
}

/* Small products run one per thread; large ones one after the other, each
 * on every thread. */
static void run_batch(const char *fn, const pg_problem *base, int batch, long sx, long sy,
                      long st, long sc)
{
    int nt = nomul_num_threads();
    long long work = (long long)base->m * base->n * (base->kd ? base->kd : 1);
    int failed = 0;
    if (batch > 1 && nt > 1 && work < 4000000) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) reduction(| : failed)
        for (int i = 0; i < batch; i++) {
            pg_problem pr;
            shift_problem(&pr, base, i, sx, sy, st, sc);
            failed |= !pg_run(&pr, 1);
        }
    } else {
        for (int i = 0; i < batch; i++) {
            pg_problem pr;
            shift_problem(&pr, base, i, sx, sy, st, sc);
            failed |= !pg_run(&pr, nt);
        }
    }
    if (failed)
        nomul_report(NOMUL_ENOMEM, "%s: out of memory for packed panels", fn);
}

void nomul_pam_sgemm_batched(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m,
                             int n, int k, const float *a, int lda, long stride_a,
                             const float *b, int ldb, long stride_b, float beta, float *c,
                             int ldc, long stride_c, int batch, float offset)
{
    const char *fn = "nomul_pam_sgemm_batched";
    pg_problem pr;
    if (!check_batch(fn, batch, stride_a, stride_b, stride_c, 0) || batch == 0 ||
        !setup_forward(fn, &pr, layout, ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc, offset))
        return;
    run_batch(fn, &pr, batch, stride_a, stride_b, 0, stride_c);
}

void nomul_pam_sgemm_grad_a_batched(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta,
                                    CBLAS_TRANSPOSE tb, int m, int n, int k, const float *a,
                                    int lda, long stride_a, const float *b, int ldb,
                                    long stride_b, const float *dc, int lddc, long stride_dc,
                                    float beta, float *da, int ldda, long stride_da, int batch,
                                    float offset)
{
    const char *fn = "nomul_pam_sgemm_grad_a_batched";
    pg_problem pr;
    if (!check_batch(fn, batch, stride_a, stride_b, stride_dc, stride_da) || batch == 0 ||
        !setup_grad(fn, &pr, PG_GRAD_A, layout, ta, tb, m, n, k, a, lda, b, ldb, dc, lddc, beta,
                    da, ldda, offset))
        return;
    /* x = dC, y = B, t = A */
    run_batch(fn, &pr, batch, stride_dc, stride_b, stride_a, stride_da);
}

void nomul_pam_sgemm_grad_b_batched(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta,
                                    CBLAS_TRANSPOSE tb, int m, int n, int k, const float *a,
                                    int lda, long stride_a, const float *b, int ldb,
                                    long stride_b, const float *dc, int lddc, long stride_dc,
                                    float beta, float *db, int lddb, long stride_db, int batch,
                                    float offset)
{
    const char *fn = "nomul_pam_sgemm_grad_b_batched";
    pg_problem pr;
    if (!check_batch(fn, batch, stride_a, stride_b, stride_dc, stride_db) || batch == 0 ||
        !setup_grad(fn, &pr, PG_GRAD_B, layout, ta, tb, m, n, k, a, lda, b, ldb, dc, lddc, beta,
                    db, lddb, offset))
        return;
    /* x = A, y = dC, t = B */
    run_batch(fn, &pr, batch, stride_a, stride_dc, stride_b, stride_db);
}

void nomul_sgemm_batched(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m,
                         int n, int k, const float *a, int lda, long stride_a, const float *b,
                         int ldb, long stride_b, float beta, float *c, int ldc, long stride_c,
                         int batch)
{
    const char *fn = "nomul_sgemm_batched";
    if (!check_batch(fn, batch, stride_a, stride_b, stride_c, 0) ||
        !check_common(fn, layout, ta, tb, m, n, k, beta, 1.0f) ||
        !check_ab(fn, layout, ta, tb, m, n, k, a, lda, b, ldb) ||
        !check_ld(fn, "ldc", layout, m, n, ldc) || !check_ptr(fn, "C", c, (long)m * n))
        return;
    NOMUL_COUNT(FMUL, (long long)batch * m * n * k);
    NOMUL_COUNT(FADD, (long long)batch * m * n * k);
    for (int i = 0; i < batch; i++)
        cblas_sgemm(layout, ta, tb, m, n, k, 1.0f, a + i * stride_a, lda, b + i * stride_b, ldb,
                    beta, c + i * stride_c, ldc);
}
