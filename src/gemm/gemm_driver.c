/*
 * gemm_driver.c — the PAM matrix engine's driver: BLIS-style blocking of a
 * problem (gemm_problem.h) into micro-panels, packing by role with
 * per-panel range classification, the microkernels of the context taken
 * once per call, the checked path for tiles that need it, the one- and
 * two-row forward on the elementwise kernels, and OpenMP threads.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "../core/internal.h"
#include "gemm_problem.h"
#include "nomul/arith.h"
#include "nomul/gemm.h"
#include "nomul/isa.h"

const pg_cntx *pg_cntx_active(void)
{
    static const pg_cntx *const by_isa[NOMUL_ISA_COUNT] = {&pg_cntx_scalar, &pg_cntx_avx2,
                                                           &pg_cntx_avx512};
    return by_isa[nomul_isa_active()];
}

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
                    nomul_pa_mul(base[(long)r * M->rs + (long)p * M->cs], pr->offset);
        fn(scratch, 1, R, nvalid, R, kc, role_adj(pr, role), d, mask, st);
        return;
    }
    fn(base, M->rs, M->cs, nvalid, R, kc, role_adj(pr, role), d, mask, st);
}

void pg_pack_x(const pg_problem *pr, pg_pack_fn fn, int i0, int mr, int MR, int p0, int kc,
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

/* The mantissa fields of T's tile (ti, tj) (MR×NR, row-major), into its
 * place in tbuf; tnan[tile] is set where it holds a NaN. */
static void pack_t_tile(const pg_problem *pr, pg_pack_tile_fn fn, int MR, int NR, int ntj,
                        uint32_t *tbuf, unsigned char *tnan, int ti, int tj)
{
    int i0 = ti * MR, j0 = tj * NR;
    int mr = pr->m - i0 < MR ? pr->m - i0 : MR, nr = pr->n - j0 < NR ? pr->n - j0 : NR;
    long tix = (long)ti * ntj + tj;
    tnan[tix] = (unsigned char)fn(pr->t.p + (long)i0 * pr->t.rs + (long)j0 * pr->t.cs, pr->t.rs,
                                  pr->t.cs, mr, nr, MR, NR, tbuf + tix * MR * NR);
}

/* No infinity or NaN, and the exponent sum (with the mantissa carry, and the
 * offset's own step) stays in [−126, 127]. */
int pg_panels_safe(const pg_problem *pr, const pg_stats *sx, const pg_stats *sy)
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
                    g = pr->has_offset ? nomul_pa_mul_off(x, y, pr->offset) : nomul_pa_mul(x, y);
                    break;
                case PG_GRAD_A: /* x = dC, y = b, t = a */
                    if (pr->has_offset)
                        y = nomul_pa_mul(y, pr->offset);
                    nomul_pa_mul_grad(mat_at(&pr->t, i0 + r, j0 + c), y, x, &g, &unused);
                    break;
                default: /* grad B: x = a, y = dC, t = b */
                    if (pr->has_offset)
                        x = nomul_pa_mul(x, pr->offset);
                    nomul_pa_mul_grad(x, mat_at(&pr->t, i0 + r, j0 + c), y, &unused, &g);
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

/* Whether n columns fill panels of width nn better than of width nw, by
 * enough to matter: below 128 columns (attention's 16- and 17-wide heads
 * pad a 32-wide panel to half or a third; above, the padding is at most
 * an eighth, and the wide tile's two halves per broadcast win). */
static int narrow_fits(int n, int nw, int nn)
{
    return nn > 0 && n < 128 && ceil_div(n, nn) * nn < ceil_div(n, nw) * nw;
}

/* The microkernel of a kind of problem in a context, for n columns (a
 * narrow one only of the wide one's MR: a plan's X is packed for that) */
static pg_kernel kernel_for(pg_kind kind, const pg_cntx *cx, int n)
{
    pg_kernel k = {0, 0, NULL, NULL};
    if (kind == PG_FWD) {
        const pg_fwd_ukr *f =
            cx->fwd_narrow.fwd && cx->fwd_narrow.mr == cx->fwd.mr &&
                    narrow_fits(n, cx->fwd.nr, cx->fwd_narrow.nr)
                ? &cx->fwd_narrow
                : &cx->fwd;
        k.mr = f->mr;
        k.nr = f->nr;
        k.fwd = f->fwd;
    } else {
        const pg_grad_ukr *g = cx->grad_narrow.grad_a && cx->grad_narrow.mr == cx->grad.mr &&
                                       narrow_fits(n, cx->grad.nr, cx->grad_narrow.nr)
                                   ? &cx->grad_narrow
                                   : &cx->grad;
        k.mr = g->mr;
        k.nr = g->nr;
        k.grad = kind == PG_GRAD_A ? g->grad_a : g->grad_b;
    }
    return k;
}

void pg_write_tile(const pg_problem *pr, int i0, int mr, int j0, int nr, int NR, const float *ct,
                   int add)
{
    if (pr->rs_c == 1 && pr->cs_c != 1) { /* C's columns contiguous: column by column */
        for (int c = 0; c < nr; c++) {
            float *col = pr->c + i0 + (long)(j0 + c) * pr->cs_c;
            if (add)
                for (int r = 0; r < mr; r++)
                    col[r] += ct[r * NR + c];
            else
                for (int r = 0; r < mr; r++)
                    col[r] = ct[r * NR + c];
        }
        return;
    }
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

void pg_write_tile_narrow(const float *ct, int NR, int mr, long j0, int nr, pg_narrow nw,
                          float *c, long ldc, int add)
{
    /* the tile's lanes wide row by wide row, as the kernels' narrow stores */
    nw.j0 = j0;
    int lo, hi;
    long at;
    for (int d = 0; pg_narrow_segment(&nw, nr, d, &lo, &hi, &at); d++)
        for (int r = 0; r < mr; r++) {
            const float *src = ct + r * NR;
            float *row = c + r * ldc; /* lane l at row[at + l], in the row for l ≥ lo */
            if (add)
                for (int l = lo; l < hi; l++)
                    row[at + l] += src[l];
            else
                for (int l = lo; l < hi; l++)
                    row[at + l] = src[l];
        }
}

void nomul_gemm_release_buffers(void)
{
    nomul_scratch_release(NOMUL_SCRATCH_GEMM_Y, NOMUL_SCRATCH_SLOTS - NOMUL_SCRATCH_GEMM_Y);
    nomul_scratch_release(NOMUL_SCRATCH_KEYED, INT_MAX);
}

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
                    nomul_pa_mul_off_vs((size_t)nj, yrow, x, pr->offset, dst);
                else
                    nomul_pa_mul_vs((size_t)nj, yrow, x, dst);
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

/* What the threads of one pg_run share. */
typedef struct {
    const pg_problem *pr;
    const pg_plan *plan;
    pg_kernel K;
    pg_pack_fn packer;
    int MR, NR, KC, NC, mc;
    uint32_t *yp;
    int32_t *ym;
    pg_stats *ys;
    uint32_t *xbuf;
    int32_t *xmbuf;
    pg_stats *xsbuf;
    float *xstage; /* per thread xsize floats, or NULL: see pack_x_block */
    size_t xsize;
    int nx_panels;
    uint32_t *tbuf;
    unsigned char *tnan;
    pg_pack_tile_fn pack_tile;
    const pg_cntx *cx;
    int ntj;
    int col; /* split by Y's panels rather than by X's row blocks */
    int sparse;             /* X's zeros skipped (xlists_panel) */
    int xin;                /* X read in place (xin_panel) where it can be */
    struct xlists *xlists; /* then one per thread */
} pg_team;

/* How the threads share a product. By rows (the default): each thread packs
 * a share of Y's panels, all wait, and each computes its row blocks of X
 * against all of them, twice a barrier per K block. By columns: each thread
 * computes every row block against the Y panels it packed itself, so no
 * thread waits for another until the end, at the price of packing all of X
 * on every thread. Columns serve products with few row panels and several
 * K blocks, such as a linear layer's weight gradient (64 × 192 summed over
 * 1,088 tokens: 11 row panels of 6 shared 6 : 5 and 12 barriers, or 6
 * column panels shared 3 : 3 and none). The cost model, in eighths of a
 * tile: by rows, the most row panels any thread gets times the column
 * panels, plus a tile per K block for its two barriers; by columns, the most
 * column panels any thread gets times the row panels, plus each row panel
 * packed again: a quarter of a forward tile when X fits in cache (m · kd at
 * most X_CACHED values), three quarters when it is read from memory (a
 * pack's 1.4 cycles a value against a tile's 2 per value of X), half that
 * for the exact gradients' tiles (four operations a term, not two). Fitted
 * on `nomul bench gemm`-style products (2 threads): 2,860 × 64 summed over
 * 4,096 (a 64 → 2,860 layer's weight gradient, X from memory) by columns
 * took 15.3 ms, by rows 11.6, which the old model (an eighth of a tile per
 * panel, two tiles per K block) got wrong; 64 × 192 over 1,088 (X cached):
 * columns 0.18 ms, rows 0.27, which both models get right. Products with a
 * plan (X packed once, a convolution's weights) keep the old weights: they
 * pack nothing again, and were not refitted. Either way every tile is the
 * same sums in the same order. */
enum { X_CACHED = 1 << 18 };
static int split_columns(const pg_problem *pr, int planned, int NC, int mc, int MR, int panels,
                         int ny_panels, int nkb, int nt)
{
    const int m = pr->m, n = pr->n;
    /* one NC block of columns only: a thread's panels are then the same
     * ones in every K block (the shares of blocks of other widths would
     * overlap) */
    if (ny_panels < nt || n > NC)
        return 0;
    int nblk = ceil_div(m, mc), most = 0;
    for (int t = 0; t < nt; t++) {
        int rows = 0;
        for (int blk = t; blk < nblk; blk += nt)
            rows += m - blk * mc < mc ? m - blk * mc : mc;
        int p = ceil_div(rows, MR);
        most = p > most ? p : most;
    }
    int cached = (long)m * pr->kd <= X_CACHED;
    long repack = planned ? 1 : pr->kind == PG_FWD ? (cached ? 2 : 6) : (cached ? 1 : 3);
    long by_rows = 8L * most * ny_panels + (planned ? 16L : 8L) * nkb;
    long by_cols = 8L * ceil_div(ny_panels, nt) * panels + repack * panels * (nt - 1);
    return by_cols < by_rows;
}

/* X's rows far apart with its columns contiguous (rs 1: a transposed
 * operand, the weight gradient dCᵀ · X's dCᵀ): packing panel by panel
 * reads each of the block's kc rows once per panel, MR values at a time,
 * cs floats apart, a stride the hardware prefetchers do not follow (a cache
 * and TLB miss per read). Such a block is first staged, row by row (mcb
 * contiguous values each), then packed from the copy: `build/nomul bench
 * linear`, the weight gradient of a 128 → 2,860 layer on 4,096 tokens,
 * 33.8 → 25.0 ms (2 threads). Below STAGE_MIN_CS (2 KiB strides) the copy
 * costs about what it saves. */
enum { STAGE_MIN_CS = 512 };
static int x_staged(const pg_problem *pr, int mc)
{
    return pr->x.rs == 1 && pr->x.cs >= STAGE_MIN_CS && pr->x.cs > mc;
}

/* X's panels of row block ic (mcb rows) for K block pc (kc) */
static void pack_x_block(const pg_team *tm, int ic, int mcb, int pc, int kc, uint32_t *xp,
                         int32_t *xm, pg_stats *xs, float *stage)
{
    const pg_problem *pr = tm->pr;
    const int MR = tm->MR, m = pr->m;
    int nxp = ceil_div(mcb, MR);
    if (stage) {
        for (int p = 0; p < kc; p++)
            memcpy(stage + (size_t)p * mcb, pr->x.p + (long)(pc + p) * pr->x.cs + ic,
                   (size_t)mcb * sizeof *stage);
        const pg_mat sm = {stage, 1, mcb};
        for (int ip = 0; ip < nxp; ip++) {
            int i0 = ic + ip * MR, mr = m - i0 < MR ? m - i0 : MR;
            pack_panel(pr, tm->packer, x_role(pr), &sm, ip * MR, mr, MR, 0, kc,
                       xp + (size_t)ip * MR * kc, xm + (size_t)ip * MR * kc, &xs[ip]);
        }
        return;
    }
    for (int ip = 0; ip < nxp; ip++) {
        int i0 = ic + ip * MR, mr = m - i0 < MR ? m - i0 : MR;
        pg_pack_x(pr, tm->packer, i0, mr, MR, pc, kc, xp + (size_t)ip * MR * kc,
                  xm + (size_t)ip * MR * kc, &xs[ip]);
    }
}

/* One tile of C, rows i0.. and columns j0.., K block pc (kc values), from
 * its packed X panel (xp, xm, xs) and Y panel (yp, ym, ys): the kernel
 * where every product is safe (the zero-aware form where a panel holds
 * zeros; a gradient's with its T tile), else the checked path; full tiles
 * of a unit-stride C written in place, the others through ct. add: C's
 * value so far is added to (every K block after the first, or beta 1). */
static void run_tile(const pg_team *tm, int i0, int j0, int pc, int kc, int add,
                     const uint32_t *xp, const int32_t *xm, const pg_stats *xs,
                     const uint32_t *yp, const int32_t *ym, const pg_stats *ys, float *ct)
{
    const pg_problem *pr = tm->pr;
    const int MR = tm->MR, NR = tm->NR;
    const int mr = pr->m - i0 < MR ? pr->m - i0 : MR, nr = pr->n - j0 < NR ? pr->n - j0 : NR;
    long tix = (long)(i0 / MR) * tm->ntj + j0 / NR;
    int safe = pg_panels_safe(pr, xs, ys) && !(tm->tnan && tm->tnan[tix]);
    int masked = (xs->zero ? PG_ZEROS_X : 0) | (ys->zero ? PG_ZEROS_Y : 0);
    int direct = mr == MR && nr == NR && pr->cs_c == 1;
    float *cdst = direct ? pr->c + (long)i0 * pr->rs_c + j0 : ct;
    long ldc = direct ? pr->rs_c : NR;
    int kadd = direct ? add : 0;
    if (!safe)
        checked_tile(pr, i0, mr, j0, nr, NR, pc, kc, ct);
    else if (pr->kind == PG_FWD)
        tm->K.fwd(kc, xp, yp, xm, ym, masked, cdst, ldc, kadd);
    else
        tm->K.grad(kc, xp, yp, tm->tbuf + tix * MR * NR, xm, ym, masked, cdst, ldc, kadd);
    if (!safe || !direct)
        pg_write_tile(pr, i0, mr, j0, nr, NR, ct, add);
}

/* A thread's lists for the sparse loops (xlists_panel) */
typedef struct xlists {
    uint32_t vals[8 * PG_XL_CAP] __attribute__((aligned(64)));
    uint32_t offs[8 * PG_XL_CAP] __attribute__((aligned(64)));
    int len[8];
} xlists;

/* Row panel i0's K block pc (kc values) listed into xl, with the statistics
 * of the panel the pack would make (its padding rows hold 1.0: run_tile's
 * range check, the same decisions): whether the lists pay (the kernel runs
 * every row for the longest list, *most entries, the forward's shorter
 * lists padded against the zero row that ends each Y panel of ypan values) */
static int xlists_make(const pg_team *tm, xlists *xl, int i0, int pc, int kc, size_t ypan,
                       pg_stats *st, int *most)
{
    const pg_problem *pr = tm->pr;
    const int MR = tm->MR, NR = tm->NR;
    const int mr = pr->m - i0 < MR ? pr->m - i0 : MR;
    tm->cx->xrows.build(pr->x.p + (long)i0 * pr->x.rs + (long)pc * pr->x.cs, pr->x.rs, pr->x.cs,
                        mr, kc, role_adj(pr, x_role(pr)), (uint32_t)NR * 4, xl->vals, xl->offs,
                        xl->len, st);
    if (mr < MR) {
        st->emin = st->emin < 0 ? st->emin : 0;
        st->emax = st->emax > 0 ? st->emax : 0;
    }
    *most = 0;
    for (int r = 0; r < MR; r++) {
        xl->len[r] = r < mr ? xl->len[r] : 0;
        *most = xl->len[r] > *most ? xl->len[r] : *most;
    }
    int use = pg_xsparse_mode == PG_XSPARSE_ALWAYS ||
              (long)*most * PG_XSPARSE_DEN <= (long)PG_XSPARSE_NUM * kc;
    if (use && pr->kind == PG_FWD) { /* every list as long as the longest, rows past mr too */
        const uint32_t pad_off = (uint32_t)((ypan / NR - 1) * NR * 4);
        for (int r = 0; r < MR; r++)
            for (int s = xl->len[r]; s < *most; s++) {
                xl->vals[r * PG_XL_CAP + s] = 0x80000000u;
                xl->offs[r * PG_XL_CAP + s] = pad_off;
            }
    }
    return use;
}

/* Row panel i0's K block pc (kc values) against the Y panels jp0 .. jp1 − 1
 * of column block jc (panel jp at yp + jp · ypan, with ym and ys[jp]; its
 * last row, past every K block's kc, one of zeros), X's zeros skipped: its
 * rows listed (pg_xrows_ukr) in place of packing the panel, each tile from
 * the lists where they pay, its Y panel holds no zero (whose lanes' terms
 * are +0.0 in the packed kernels) and the range is safe (an exact
 * gradient's T tile, packed by team_run, without NaN); any other tile from
 * the panel packed into xp as team_run's. A zero X term adds nothing in
 * either (the packed kernels' merge-masked add), so each tile is the same
 * sums in the same order: its K block's terms from +0, then added to C in
 * block order. Forward products and the exact gradients (X = dC, raw, in
 * grad A; X = A less 1.0 in grad B, without an offset: with one, the pack
 * takes PAM(x, offset) first, and its statistics are of those). */
static void xlists_panel(const pg_team *tm, xlists *xl, int i0, int pc, int kc, int add, int jc,
                         int jp0, int jp1, const uint32_t *yp, const int32_t *ym,
                         const pg_stats *ys, size_t ypan, uint32_t *xp, int32_t *xm,
                         pg_stats *xs, float *ct)
{
    const pg_problem *pr = tm->pr;
    const pg_xrows_ukr *xr = &tm->cx->xrows;
    const int MR = tm->MR, NR = tm->NR;
    const int mr = pr->m - i0 < MR ? pr->m - i0 : MR;
    /* no lists where every Y panel holds a zero (padding tokens in a
     * gradient): none of the tiles could take them */
    int some = 0;
    for (int jp = jp0; jp < jp1 && !some; jp++)
        some = !ys[jp].zero;
    pg_stats st;
    int most = 0;
    const int use = some && xlists_make(tm, xl, i0, pc, kc, ypan, &st, &most);
    const int grad = pr->kind != PG_FWD;
    const int wide = NR == (grad ? tm->cx->grad.nr : tm->cx->fwd.nr);
    pg_xrow_kernel kern = wide ? xr->wide : xr->narrow;
    pg_xrow_grad_kernel gkern = pr->kind == PG_GRAD_A ? (wide ? xr->gwide_a : xr->gnarrow_a)
                                                      : (wide ? xr->gwide_b : xr->gnarrow_b);
    int packed = 0;
    for (int jp = jp0; jp < jp1; jp++) {
        int j0 = jc + jp * NR, nr = pr->n - j0 < NR ? pr->n - j0 : NR;
        const uint32_t *ypj = yp + (size_t)jp * ypan;
        long tix = (long)(i0 / MR) * tm->ntj + j0 / NR;
        if (use && !ys[jp].zero && pg_panels_safe(pr, &st, &ys[jp]) &&
            !(tm->tnan && tm->tnan[tix])) {
            int direct = pr->cs_c == 1;
            float *c = direct ? pr->c + (long)i0 * pr->rs_c + j0 : ct;
            long ldc = direct ? pr->rs_c : NR;
            if (grad)
                gkern(xl->vals, xl->offs, xl->len, ypj, tm->tbuf + tix * MR * NR, mr, nr, c, ldc,
                      direct && add);
            else
                kern(xl->vals, xl->offs, most, ypj, mr, nr, c, ldc, direct && add);
            if (!direct)
                pg_write_tile(pr, i0, mr, j0, nr, NR, ct, add);
            continue;
        }
        if (!packed) {
            pg_pack_x(pr, tm->packer, i0, mr, MR, pc, kc, xp, xm, xs);
            packed = 1;
        }
        run_tile(tm, i0, j0, pc, kc, add, xp, xm, xs, ypj, ym + (size_t)jp * ypan, &ys[jp], ct);
    }
}

int pg_xin_mode = 1;
long pg_xin_runs;

/* Row panel i0's K block pc (kc values) against the Y panels jp0 .. jp1 − 1
 * of column block jc (panel jp at yp + jp · ypan, with ym and ys[jp]), X
 * read in place where the context can (pg_xin_ukr: a forward product or an
 * exact gradient's grad A, X raw with its rows contiguous; the gradient's
 * T tiles packed by team_run as for run_tile): no packing, only the
 * statistics, X's rows then streamed by the kernel as the pack would have
 * read them. A tile whose range is not safe (or whose T holds a NaN) takes
 * the checked path. Returns 0, having done nothing, where the panel must be
 * packed (an infinity or a NaN, zeros among nonzero values in a row: the
 * kernels' masks). Each tile is the same sums in the same order as
 * run_tile's: from +0 over the block, then added to C. */
static int xin_panel(const pg_team *tm, int i0, int pc, int kc, int add, int jc, int jp0,
                     int jp1, const uint32_t *yp, const int32_t *ym, const pg_stats *ys,
                     size_t ypan, float *ct, long *runs)
{
    const pg_problem *pr = tm->pr;
    const pg_xin_ukr *xi = &tm->cx->xin;
    const int MR = tm->MR, NR = tm->NR;
    const int mr = pr->m - i0 < MR ? pr->m - i0 : MR;
    const float *x = pr->x.p + (long)i0 * pr->x.rs + pc;
    pg_stats st;
    unsigned keep;
    if (!xi->stats(x, pr->x.rs, mr, kc, &st, &keep))
        return 0;
    const int grad = pr->kind == PG_GRAD_A;
    const int wide = NR == (grad ? tm->cx->grad.nr : tm->cx->fwd.nr);
    pg_xin_kernel kern = wide ? xi->wide : xi->narrow;
    pg_xin_grad_kernel gkern = wide ? xi->gwide_a : xi->gnarrow_a;
    for (int jp = jp0; jp < jp1; jp++) {
        int j0 = jc + jp * NR, nr = pr->n - j0 < NR ? pr->n - j0 : NR;
        size_t at = (size_t)jp * ypan;
        long tix = (long)(i0 / MR) * tm->ntj + j0 / NR;
        if (!pg_panels_safe(pr, &st, &ys[jp]) || (tm->tnan && tm->tnan[tix])) {
            checked_tile(pr, i0, mr, j0, nr, NR, pc, kc, ct);
            pg_write_tile(pr, i0, mr, j0, nr, NR, ct, add);
            continue;
        }
        int direct = pr->cs_c == 1;
        float *c = direct ? pr->c + (long)i0 * pr->rs_c + j0 : ct;
        const int32_t *yma = ys[jp].zero ? ym + at : NULL;
        if (grad)
            gkern(kc, x, pr->x.rs, keep, mr, yp + at, yma, tm->tbuf + tix * MR * NR, nr, c,
                  direct ? pr->rs_c : NR, direct && add);
        else
            kern(kc, x, pr->x.rs, keep, mr, yp + at, yma, nr, c, direct ? pr->rs_c : NR,
                 direct && add);
        if (!direct)
            pg_write_tile(pr, i0, mr, j0, nr, NR, ct, add);
        ++*runs;
    }
    return 1;
}

/* a thread's count of the tiles xin_panel ran into pg_xin_runs, once (an
 * atomic add per panel, on a line both threads write, cost 1% of a
 * translation step) */
static void xin_count(long runs)
{
    if (runs) {
#pragma omp atomic
        pg_xin_runs += runs;
    }
}

/* Packs Y's panel for the sparse loops: with its row of zeros at the end */
static void pack_y_sparse(const pg_problem *pr, pg_pack_fn fn, int j0, int nr, int NR, int p0,
                          int kc, size_t ypan, uint32_t *yp, int32_t *ym, pg_stats *s)
{
    pack_y(pr, fn, j0, nr, NR, p0, kc, yp, ym, s);
    memset(yp + ypan - NR, 0, (size_t)NR * sizeof *yp);
}

/* Thread tid of nt: packs its share of each Y block, then computes its ic
 * blocks (every nt-th) against it. The loops are split by hand, with a
 * barrier only where the shared Y panels change hands, so that one thread
 * runs it outside any OpenMP construct. Who computes a tile never changes
 * its bits: every tile is the same sums in the same order. */
static void team_run(const pg_team *tm, int tid, int nt)
{
    const pg_problem *pr = tm->pr;
    const pg_plan *plan = tm->plan;
    const int MR = tm->MR, NR = tm->NR, KC = tm->KC, NC = tm->NC, mc = tm->mc;
    const int m = pr->m, n = pr->n, kd = pr->kd, ntj = tm->ntj;
    uint32_t *yp = tm->yp;
    int32_t *ym = tm->ym;
    pg_stats *ys = tm->ys;
    uint32_t *xp = tm->xbuf + (size_t)tid * tm->xsize;
    int32_t *xm = tm->xmbuf + (size_t)tid * tm->xsize;
    pg_stats *xs = tm->xsbuf + (size_t)tid * tm->nx_panels;
    float *xstage = tm->xstage ? tm->xstage + (size_t)tid * tm->xsize : NULL;
    uint32_t *tbuf = tm->tbuf;
    unsigned char *tnan = tm->tnan;
    float ct[PG_TILE_MAX] __attribute__((aligned(64)));
    /* Y panel jp at jp · ypan, the same place for every K block (split by
     * columns, threads are in different K blocks at once, and a short last
     * block's panels must not reach into another thread's) */
    const size_t ypan = (size_t)NR * ((kd < KC ? kd : KC) + tm->sparse);
    xlists *xl = tm->sparse ? tm->xlists + tid : NULL;
    long xin_runs = 0;
    for (int jc = 0; jc < n; jc += NC) {
        int nc = n - jc < NC ? n - jc : NC;
        int npan = ceil_div(nc, NR);
        for (int pc = 0; pc < kd; pc += KC) {
            int kc = kd - pc < KC ? kd - pc : KC;
            /* Y's panels: a contiguous share each */
            int per = ceil_div(npan, nt), jlo = tid * per, jhi = jlo + per < npan ? jlo + per : npan;
            for (int jp = jlo; jp < jhi; jp++) {
                int j0 = jc + jp * NR, nr = n - j0 < NR ? n - j0 : NR;
                if (tm->sparse)
                    pack_y_sparse(pr, tm->packer, j0, nr, NR, pc, kc, ypan, yp + (size_t)jp * ypan,
                                  ym + (size_t)jp * ypan, &ys[jp]);
                else
                    pack_y(pr, tm->packer, j0, nr, NR, pc, kc, yp + (size_t)jp * ypan,
                           ym + (size_t)jp * ypan, &ys[jp]);
            }
            if (nt > 1 && !tm->col) {
#pragma omp barrier
            }
            int add = pc > 0 || pr->accumulate;
            int nblk = ceil_div(m, mc);
            /* by rows: this thread's row blocks, every Y panel; by columns:
             * every row block, this thread's Y panels */
            int jp0 = tm->col ? (jlo < npan ? jlo : npan) : 0, jp1 = tm->col ? jhi : npan;
            if (jp1 < jp0)
                jp1 = jp0;
            for (int blk = tm->col ? 0 : tid; blk < nblk && jp0 < jp1; blk += tm->col ? 1 : nt) {
                int ic = blk * mc;
                int mcb = m - ic < mc ? m - ic : mc;
                int nxp = ceil_div(mcb, MR);
                if (plan) { /* X was packed once: point into it */
                    size_t at = ((size_t)(pc / KC) * plan->npanels + ic / MR);
                    xp = plan->xp + at * MR * KC;
                    xm = plan->xm + at * MR * KC;
                    xs = plan->xs + at;
                }
                if (!plan && !tm->sparse && !tm->xin)
                    pack_x_block(tm, ic, mcb, pc, kc, xp, xm, xs, xstage);
                /* a gradient's T tiles: packed by the thread that
                 * computes them, before their first K block, the block's
                 * all at once (each just before its tile measured 3–7%
                 * slower for the exact dA on two threads, `bench gemm`) */
                if (tbuf && pc == 0)
                    for (int ip = 0; ip < nxp; ip++)
                        for (int jp = jp0; jp < jp1; jp++)
                            pack_t_tile(pr, tm->pack_tile, MR, NR, ntj, tbuf, tnan,
                                        (ic + ip * MR) / MR, (jc + jp * NR) / NR);
                if (tm->sparse) { /* X's zeros skipped: its rows listed */
                    for (int ip = 0; ip < nxp; ip++)
                        xlists_panel(tm, xl, ic + ip * MR, pc, kc, add, jc, jp0, jp1, yp, ym, ys,
                                     ypan, xp, xm, xs, ct);
                    continue;
                }
                for (int ip = 0; ip < nxp; ip++) {
                    int i0 = ic + ip * MR;
                    size_t xstride = plan ? (size_t)MR * KC : (size_t)MR * kc;
                    uint32_t *xpp = xp + (size_t)ip * xstride;
                    int32_t *xmp = xm + (size_t)ip * xstride;
                    if (tm->xin) { /* X in place, or this panel packed */
                        if (xin_panel(tm, i0, pc, kc, add, jc, jp0, jp1, yp, ym, ys, ypan, ct,
                                      &xin_runs))
                            continue;
                        pg_pack_x(pr, tm->packer, i0, m - i0 < MR ? m - i0 : MR, MR, pc, kc, xpp,
                                  xmp, &xs[ip]);
                    }
                    for (int jp = jp0; jp < jp1; jp++)
                        run_tile(tm, i0, jc + jp * NR, pc, kc, add, xpp, xmp, &xs[ip],
                                 yp + (size_t)jp * ypan, ym + (size_t)jp * ypan, &ys[jp], ct);
                }
            }
            /* the Y panels are repacked next (by columns, each thread's
             * own: no wait); after the last K block of the last column
             * block nothing is repacked, and the region's end waits */
            if (nt > 1 && !tm->col && (pc + KC < kd || jc + NC < n)) {
#pragma omp barrier
            }
        }
    }
    xin_count(xin_runs);
}

/* A forward product whose Y is narrow (a few column panels: a linear
 * layer's d_model columns) and whose X rows are contiguous (cs = 1: dy in a
 * data gradient, x in a forward): Y is packed whole, all its K blocks, by
 * the team at once (one barrier), then each thread takes a contiguous range
 * of X's row panels and runs each through every K block in order, packing
 * the panel's next kc values of its MR rows and computing its tiles against
 * that block's Y panels. X's rows are so read along their length, MR
 * streams that the hardware prefetchers follow, where the blocked loop read
 * 768-byte pieces of 96 rows, one K block at a time. Each tile is the same
 * sums in the same order: its K blocks' partial sums added to C in block
 * order, as team_run does. */
static void team_run_narrow(const pg_team *tm, int tid, int nt)
{
    const pg_problem *pr = tm->pr;
    const int MR = tm->MR, NR = tm->NR, KC = tm->KC;
    const int m = pr->m, n = pr->n, kd = pr->kd;
    const int npan = ceil_div(n, NR), nkb = ceil_div(kd, KC), ntot = npan * nkb;
    const size_t ypan = (size_t)NR * (KC + tm->sparse);
    uint32_t *xp = tm->xbuf + (size_t)tid * tm->xsize;
    int32_t *xm = tm->xmbuf + (size_t)tid * tm->xsize;
    pg_stats *xs = tm->xsbuf + (size_t)tid * tm->nx_panels;
    float ct[PG_TILE_MAX] __attribute__((aligned(64)));
    xlists *xl = tm->sparse ? tm->xlists + tid : NULL;
    long xin_runs = 0;
    /* Y's panels (K block kb, column panel jp) at (kb · npan + jp) · ypan:
     * a contiguous share each */
    int per = ceil_div(ntot, nt), lo = tid * per, hi = lo + per < ntot ? lo + per : ntot;
    for (int q = lo; q < hi; q++) {
        int kb = q / npan, jp = q % npan, pc = kb * KC, j0 = jp * NR;
        int kc = kd - pc < KC ? kd - pc : KC, nr = n - j0 < NR ? n - j0 : NR;
        if (tm->sparse)
            pack_y_sparse(pr, tm->packer, j0, nr, NR, pc, kc, ypan, tm->yp + (size_t)q * ypan,
                          tm->ym + (size_t)q * ypan, &tm->ys[q]);
        else
            pack_y(pr, tm->packer, j0, nr, NR, pc, kc, tm->yp + (size_t)q * ypan,
                   tm->ym + (size_t)q * ypan, &tm->ys[q]);
    }
    if (nt > 1) {
#pragma omp barrier
    }
    int panels = ceil_div(m, MR), pper = ceil_div(panels, nt);
    int p0 = tid * pper, p1 = p0 + pper < panels ? p0 + pper : panels;
    for (int ip = p0; ip < p1; ip++) {
        int i0 = ip * MR, mr = m - i0 < MR ? m - i0 : MR;
        for (int kb = 0; kb < nkb; kb++) {
            int pc = kb * KC, kc = kd - pc < KC ? kd - pc : KC;
            int add = pc > 0 || pr->accumulate;
            size_t at = (size_t)kb * npan; /* this K block's Y panels */
            if (xl) { /* X's zeros skipped: the panel's rows listed */
                xlists_panel(tm, xl, i0, pc, kc, add, 0, 0, npan, tm->yp + at * ypan,
                             tm->ym + at * ypan, tm->ys + at, ypan, xp, xm, xs, ct);
                continue;
            }
            if (tm->xin && xin_panel(tm, i0, pc, kc, add, 0, 0, npan, tm->yp + at * ypan,
                                     tm->ym + at * ypan, tm->ys + at, ypan, ct, &xin_runs))
                continue;
            pg_pack_x(pr, tm->packer, i0, mr, MR, pc, kc, xp, xm, xs);
            for (int jp = 0; jp < npan; jp++) {
                size_t q = at + (size_t)jp;
                run_tile(tm, i0, jp * NR, pc, kc, add, xp, xm, xs, tm->yp + q * ypan,
                         tm->ym + q * ypan, &tm->ys[q], ct);
            }
        }
    }
    xin_count(xin_runs);
}

/* Whether a problem takes team_run_narrow: a forward product without a
 * plan, X's rows contiguous, Y at most NARROW_PANELS column panels and
 * NARROW_Y_MAX values packed (2 MiB: a 128 → 2,860 layer's weight, whose
 * data gradient gains 10% from it even so), over two or more K blocks.
 * `nomul bench gemm`-style products on 2 threads, blocked → narrow:
 * 4,096 × 64 × 2,860 127 → 149 GFLOP/s, 4,096 × 64 × 512 158 → 174,
 * 4,096 × 128 × 512 176 → 188, 4,096 × 128 × 2,860 152 → 167. */
enum { NARROW_PANELS = 4, NARROW_Y_MAX = 1 << 19 };
static int narrow_y(const pg_problem *pr, const pg_plan *plan, int NR, int KC)
{
    long npan = ceil_div(pr->n, NR);
    return pr->kind == PG_FWD && !plan && pr->x.cs == 1 && npan <= NARROW_PANELS &&
           pr->kd > KC && npan * NR * ceil_div(pr->kd, KC) * KC <= NARROW_Y_MAX;
}

int pg_xsparse_mode = PG_XSPARSE_AUTO;
long pg_xsparse_runs;

/* Whether a product skips X's zeros (xlists_panel): the context has the
 * lists for its tile (AVX-512), X is raw (no plan, no folded adjustment) or
 * less 1.0 (the grad-B form without an offset), with its rows or its
 * columns contiguous, it has
 * SPARSE_MIN_TERMS terms or more, and the lists would pay on a corner of X:
 * its first (up to) 8 row panels' first 64 columns, each panel costing what
 * its densest row does (the kernel runs every row for the longest list),
 * counted over the columns and panels that hold a nonzero. Zeros that fill
 * whole rows or columns (a batch's padding tokens in the gradients) so do
 * not count, only zeros among the values (a ReLU's): in transformer_tiny
 * the padding-only products ran slower on the lists (the weight gradients'
 * 64 × 64 over 4,066 tokens, 80% padding: 5.6 → 5.7 ms a step), and
 * attention's products per head too (fewer terms: its matmul 10.1 → 15.0
 * ms a step). */
enum { SPARSE_PROBE = 64, SPARSE_MIN_TERMS = 1 << 20 };
/* whether X(i, p) is of the zero class (exponent field 0: zero or
 * subnormal), as the pack and the lists count it */
static int zero_at(const pg_mat *x, int i, int p)
{
    float v = mat_at(x, i, p);
    uint32_t u;
    memcpy(&u, &v, 4);
    return (u & 0x7F800000u) == 0;
}
static int sparse_x(const pg_problem *pr, const pg_plan *plan, const pg_cntx *cx)
{
    const int fwd = pr->kind == PG_FWD, MR = fwd ? cx->fwd.mr : cx->grad.mr, KC = cx->kc;
    if (pg_xsparse_mode == PG_XSPARSE_NEVER || plan || pr->fold_y_adj ||
        (pr->kind == PG_GRAD_B && pr->has_offset) || !cx->xrows.build ||
        (fwd ? !cx->xrows.wide : !cx->xrows.gwide_a) || MR > 8 ||
        KC > PG_XL_CAP - 16 || (pr->x.cs != 1 && pr->x.rs != 1))
        return 0;
    if (pg_xsparse_mode == PG_XSPARSE_ALWAYS)
        return 1;
    if ((long)pr->m * pr->n * pr->kd < SPARSE_MIN_TERMS)
        return 0;
    int mi = pr->m < 8 * MR ? pr->m : 8 * MR;
    int mp = pr->kd < SPARSE_PROBE ? pr->kd : SPARSE_PROBE;
    unsigned char col[SPARSE_PROBE] = {0};
    long work = 0;
    int panels = 0;
    for (int i0 = 0; i0 < mi; i0 += MR) {
        int most = 0;
        for (int i = i0; i < i0 + MR && i < mi; i++) {
            int nz = 0;
            for (int p = 0; p < mp; p++) {
                int z = !zero_at(&pr->x, i, p);
                nz += z;
                col[p] |= (unsigned char)z;
            }
            most = nz > most ? nz : most;
        }
        work += most;
        panels += most > 0;
    }
    int cols = 0;
    for (int p = 0; p < mp; p++)
        cols += col[p];
    return panels > 0 && work * PG_XSPARSE_DEN <= (long)PG_XSPARSE_NUM * panels * cols;
}

/* Whether a matrix's corner (sparse_x's probe: up to 64 × 64 values of its
 * first rows and columns) holds a zero: the transposed forward's new Y,
 * whose panels with zeros the lists cannot serve (a gradient's padding
 * tokens) */
static int corner_zero(const pg_mat *x, int rows, int cols)
{
    for (int i = 0; i < rows && i < SPARSE_PROBE; i++)
        for (int p = 0; p < cols && p < SPARSE_PROBE; p++)
            if (zero_at(x, i, p))
                return 1;
    return 0;
}

/* The tiles' area (padding included) of an m×n output in a context */
static long tile_area(pg_kind kind, const pg_cntx *cx, int m, int n)
{
    pg_kernel k = kernel_for(kind, cx, n);
    return (long)ceil_div(m, k.mr) * k.mr * ceil_div(n, k.nr) * k.nr;
}

/* A gradient problem's cost in tiles' area, a sixteenth more where its
 * output's rows are not contiguous (cs_c ≠ 1: every tile then goes through
 * the tile buffer and is written back element by element) */
static long grad_cost(pg_kind kind, const pg_cntx *cx, int m, int n, long cs_c)
{
    long a = tile_area(kind, cx, m, n);
    return cs_c == 1 ? 16 * a : 17 * a;
}

/* A gradient problem as its transpose: Cᵀ (n×m) = Σ_p f'(Yᵀ, Xᵀ; Tᵀ) with
 * grad A and grad B exchanged (grad A's term ∂PAM(t, y)/∂t · x is grad B's
 * ∂PAM(y, t)/∂t · x with the operands' places swapped, PAM being
 * symmetric), each output the same sum in the same order. */
static pg_problem transposed_grad(const pg_problem *pr)
{
    pg_problem t = *pr;
    t.kind = pr->kind == PG_GRAD_A ? PG_GRAD_B : PG_GRAD_A;
    t.m = pr->n;
    t.n = pr->m;
    t.x = transposed(pr->y);
    t.y = transposed(pr->x);
    t.t = transposed(pr->t);
    t.rs_c = pr->cs_c;
    t.cs_c = pr->rs_c;
    return t;
}

/* A forward problem as its transpose: Cᵀ (n×m) = Σ_p PAM(Yᵀ, Xᵀ), Y's
 * adjustment moving with the packing roles to the new Y (the term is the
 * sum of the two operands' bits and one constant, PAM being symmetric),
 * each output the same sum in the same order. */
static pg_problem transposed_fwd(const pg_problem *pr)
{
    pg_problem t = *pr;
    t.m = pr->n;
    t.n = pr->m;
    t.x = transposed(pr->y);
    t.y = transposed(pr->x);
    t.rs_c = pr->cs_c;
    t.cs_c = pr->rs_c;
    return t;
}

int pg_small_mode = PG_SMALL_AUTO;
long pg_small_runs;

/* The memory a batch of one operand spans: rows × cols values at (rs, cs),
 * batch of them stride apart (every stride ≥ 0), as one count of floats
 * from the first; 0 where it would be more than four times the values
 * themselves (a view into a larger tensor: not worth scanning) */
static long small_span(const pg_mat *a, int rows, int cols, int batch, long stride)
{
    long n = (long)(rows - 1) * a->rs + (long)(cols - 1) * a->cs + (long)(batch - 1) * stride + 1;
    long values = (long)rows * cols * batch;
    return n <= 4 * values + 64 ? n : 0;
}

/* The whole batch's statistics of one operand (a superset's: gaps
 * included), as one pass over the memory it spans; 0 where not taken */
static int small_stats(const pg_cntx *cx, const pg_mat *a, int rows, int cols, int batch,
                       long stride, pg_stats *st)
{
    long n = small_span(a, rows, cols, batch, stride);
    if (!n)
        return 0;
    cx->dw_rows.stats(a->p, n, st);
    return 1;
}

/* One small product (pr's, its operands advanced by ox, oy, ot and C by
 * oc): Y's rows copied contiguous first where they are not (attention's
 * Q·Kᵀ and dO·Vᵀ read K and V along their rows in both orientations); a C
 * whose rows are not contiguous written through the tile buffer
 * (pg_write_tile); 0 after a report */
static int small_product(const pg_cntx *cx, const pg_problem *pr, int xzeros, long ox, long oy,
                         long ot, long oc)
{
    const int MR = cx->small.mr, NR = cx->small.nr;
    const float *x = pr->x.p + ox, *y = pr->y.p + oy;
    const float *t = pr->kind == PG_FWD ? NULL : pr->t.p + ot;
    pg_problem out = *pr; /* for pg_write_tile */
    out.c = pr->c + oc;
    float ct[PG_TILE_MAX] __attribute__((aligned(64)));
    long yrs = pr->y.rs;
    if (pr->y.cs != 1) {
        float *yb = nomul_scratch_bytes(NOMUL_SCRATCH_GEMM_SMALLY,
                                        (size_t)pr->kd * pr->n * sizeof *yb);
        if (!yb)
            return 0;
        for (int j = 0; j < pr->n; j++)
            for (int p = 0; p < pr->kd; p++)
                yb[(long)p * pr->n + j] = y[(long)p * pr->y.rs + (long)j * pr->y.cs];
        y = yb;
        yrs = pr->n;
    }
    const int direct = pr->cs_c == 1;
    for (int i0 = 0; i0 < pr->m; i0 += MR)
        for (int j0 = 0; j0 < pr->n; j0 += NR) {
            int mr = pr->m - i0 < MR ? pr->m - i0 : MR, nr = pr->n - j0 < NR ? pr->n - j0 : NR;
            cx->small.tile(pr->kind, pr->kd, x + i0 * pr->x.rs, pr->x.rs, pr->x.cs, y + j0, yrs,
                           t ? t + i0 * pr->t.rs + j0 * pr->t.cs : NULL, pr->t.rs, pr->t.cs, mr,
                           nr, direct ? out.c + i0 * pr->rs_c + j0 : ct, direct ? pr->rs_c : NR,
                           direct && pr->accumulate, xzeros);
            if (!direct)
                pg_write_tile(&out, i0, mr, j0, nr, NR, ct, pr->accumulate);
        }
    return 1;
}

/* Small products (attention's, per head and sentence: m, n ≤ SMALL_MAX,
 * one K block) with both operands read in place (pg_small_ukr), the batch's
 * range proven once from each operand's statistics over the whole batch,
 * so that nothing is packed: at these sizes packing each product's panels
 * and T tiles, and their statistics, cost more than the terms (perf, 18 ×
 * 16 × 18: pack_panel 12% of the samples, xin_stats 9%, pack_tile 7%, the
 * kernels 22%). Each output is the same sum in the same order as pg_run's
 * (one K block from +0, then added to C where it accumulates), a zero
 * operand adding nothing as there. Returns 0, having written nothing,
 * where it does not apply: no such kernel, an offset, a K block too long,
 * products too large, an operand that spans much more memory than its values, an
 * infinity or a NaN anywhere, or a range not proven safe; also a forward
 * with at most two rows or columns, which pg_run gives to small_m_forward
 * (whose zeros keep their signs). */
enum { SMALL_MAX = 64 };
int pg_small_batch(const pg_problem *base, int batch, long sx, long sy, long st, long sc, int nt)
{
    const pg_cntx *cx = pg_cntx_active();
    if (pg_small_mode == PG_SMALL_NEVER || !cx->small.tile || base->has_offset ||
        base->fold_y_adj || batch < 1 || base->kd < 1 || base->kd > cx->kc || base->m < 1 ||
        base->n < 1 || base->m > SMALL_MAX || base->n > SMALL_MAX ||
        (base->kind == PG_FWD && (base->m <= 2 || base->n <= 2)))
        return 0;
    pg_problem pr = *base;
    long bx = sx, by = sy;
    if (pr.y.cs != 1 && pr.x.rs == 1) { /* Y's rows contiguous in the transpose */
        pr = pr.kind == PG_FWD ? transposed_fwd(base) : transposed_grad(base);
        bx = sy;
        by = sx;
    }
    pg_stats xs, ys, ts;
    if (!small_stats(cx, &pr.x, pr.m, pr.kd, batch, bx, &xs) ||
        !small_stats(cx, &pr.y, pr.kd, pr.n, batch, by, &ys) || !pg_panels_safe(&pr, &xs, &ys))
        return 0;
    if (pr.kind != PG_FWD && (!small_stats(cx, &pr.t, pr.m, pr.n, batch, st, &ts) || ts.special))
        return 0;
    long long products = (long long)batch * pr.m * pr.n * pr.kd;
    NOMUL_COUNT(FADD, products);
    if (pr.kind == PG_FWD)
        NOMUL_COUNT(PAM, products);
    else
        NOMUL_COUNT(SHIFT, products);
    if (omp_in_parallel() || batch < 2)
        nt = 1;
    int failed = 0;
    if (nt <= 1) { /* no OpenMP team for one thread (its barrier's futex) */
        for (int b = 0; b < batch && !failed; b++)
            failed = !small_product(cx, &pr, xs.zero, b * bx, b * by, b * st, b * sc);
    } else {
#pragma omp parallel for num_threads(nt) schedule(static) reduction(| : failed)
        for (int b = 0; b < batch; b++)
            failed |= !small_product(cx, &pr, xs.zero, b * bx, b * by, b * st, b * sc);
    }
    if (failed)
        return 1; /* reported; C may be partly written, as pg_run's would */
#pragma omp atomic
    pg_small_runs += batch;
    return 1;
}

int pg_run(const pg_problem *pr, int nt, const pg_plan *plan)
{
    pg_problem swapped;
    /* whether X's zeros are skipped (sparse_x, no plan): decided once, for
     * the problem as run */
    int sparse = plan ? 0 : sparse_x(pr, NULL, pg_cntx_active());
    if (pr->kind == PG_FWD && !plan && !pr->fold_y_adj && !sparse) {
        /* a forward whose Y, not X, holds many zeros (a ReLU layer's
         * output in the next layer's weight gradient, dy^T · h): as its
         * transpose, where the lists skip them (written back through the
         * tile buffer, C's rows then not contiguous) */
        pg_problem t = transposed_fwd(pr);
        if (sparse_x(&t, NULL, pg_cntx_active()) && !corner_zero(&pr->x, pr->m, pr->kd)) {
            swapped = t;
            pr = &swapped;
            sparse = 1;
        }
    } else if (pr->kind != PG_FWD && !plan) {
        /* a gradient whose transpose pads less (attention's 16 × 17 key
         * gradient is 17 × 16 on the narrow tiles) or writes its rows
         * contiguously (a linear layer's weight gradient, in W's order);
         * but first the form whose X's zeros the lists skip (grad A, or
         * grad B without an offset: a ReLU layer's masked gradient dC, or the
         * ReLU's output as the next layer's A) */
        const pg_cntx *cx = pg_cntx_active();
        pg_problem t = transposed_grad(pr);
        int there = sparse_x(&t, NULL, cx);
        if (sparse != there ? there
                            : grad_cost(pr->kind, cx, pr->n, pr->m, pr->rs_c) <
                                  grad_cost(pr->kind, cx, pr->m, pr->n, pr->cs_c)) {
            swapped = t;
            pr = &swapped;
            sparse = there;
        }
    }
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
    const pg_cntx *cx = plan ? plan->cx : pg_cntx_active();
    pg_kernel K = kernel_for(pr->kind, cx, n);
    pg_pack_fn packer = cx->pack;
    const int MR = K.mr, NR = K.nr, KC = cx->kc, MC = cx->mc, NC = cx->nc;
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
    int col = nt > 1 && split_columns(pr, plan != NULL, NC, mc, MR, panels, ny_panels,
                                      ceil_div(kd, KC), nt);
    /* one block: no team (unless the columns are split); else the whole
     * team, even for fewer blocks than threads (a smaller team would end
     * OpenMP threads, and their scratch buffers, for the next product to
     * remake) */
    if (ceil_div(m, mc) == 1 && !col)
        nt = 1;

    /* X's zeros skipped (sparse, decided above): in team_run_narrow's order
     * where X's rows are contiguous and Y (a row of zeros added to each
     * panel) fits its limit, else in team_run's */
    const int narrow = sparse ? pr->kind == PG_FWD && pr->x.cs == 1 &&
                                    (long)ceil_div(n, NR) * NR * (KC + 1) * ceil_div(kd, KC) <=
                                        NARROW_Y_MAX
                              : narrow_y(pr, plan, NR, KC);
    size_t ysize = narrow ? (size_t)ny_panels * NR * (KC + sparse) * ceil_div(kd, KC)
                          : (size_t)ny_panels * NR * (kc_max + sparse);
    uint32_t *yp = nomul_scratch_bytes(NOMUL_SCRATCH_GEMM_Y, ysize * sizeof *yp);
    int32_t *ym = nomul_scratch_bytes(NOMUL_SCRATCH_GEMM_YM, ysize * sizeof *ym);
    pg_stats *ys = nomul_scratch_bytes(NOMUL_SCRATCH_GEMM_YS,
                                       (size_t)ny_panels *
                                           (narrow ? ceil_div(kd, KC) : 1) *
                                           sizeof *ys);
    size_t xsize = (size_t)mc * kc_max;
    int nx_panels = ceil_div(mc, MR);
    int ok = yp && ym && ys;
    /* X panels, one set per thread */
    uint32_t *xbuf = NULL;
    int32_t *xmbuf = NULL;
    pg_stats *xsbuf = NULL;
    if (ok) {
        xbuf = nomul_scratch_bytes(NOMUL_SCRATCH_GEMM_X, (size_t)nt * xsize * sizeof *xbuf);
        xmbuf = nomul_scratch_bytes(NOMUL_SCRATCH_GEMM_XM, (size_t)nt * xsize * sizeof *xmbuf);
        xsbuf = nomul_scratch_bytes(NOMUL_SCRATCH_GEMM_XS,
                                    (size_t)nt * nx_panels * sizeof *xsbuf);
    }
    ok = ok && xbuf && xmbuf && xsbuf;
    float *xstage = NULL;
    if (ok && !plan && !sparse && x_staged(pr, mc)) {
        xstage = nomul_scratch_bytes(NOMUL_SCRATCH_GEMM_XSTAGE,
                                     (size_t)nt * xsize * sizeof *xstage);
        ok = xstage != NULL;
    }
    /* gradients: room for T's mantissas, tile by tile (team_run packs them) */
    int nti = ceil_div(m, MR), ntj = ceil_div(n, NR);
    uint32_t *tbuf = NULL;
    unsigned char *tnan = NULL;
    if (ok && pr->kind != PG_FWD) {
        tbuf = nomul_scratch_bytes(NOMUL_SCRATCH_GEMM_T,
                                   (size_t)nti * ntj * MR * NR * sizeof *tbuf);
        tnan = nomul_scratch_bytes(NOMUL_SCRATCH_GEMM_TNAN, (size_t)nti * ntj);
        ok = tbuf && tnan;
    }
    xlists *xl = NULL;
    if (ok && sparse) {
        xl = nomul_scratch_bytes(NOMUL_SCRATCH_GEMM_XLISTS, (size_t)nt * sizeof *xl);
        ok = xl != NULL;
    }
    if (!ok)
        return 0;

    pg_team tm = {.pr = pr, .plan = plan, .K = K, .packer = packer, .MR = MR, .NR = NR,
                  .KC = KC, .NC = NC, .mc = mc, .yp = yp, .ym = ym, .ys = ys, .xbuf = xbuf,
                  .xmbuf = xmbuf, .xsbuf = xsbuf, .xstage = xstage, .xsize = xsize,
                  .nx_panels = nx_panels, .tbuf = tbuf, .tnan = tnan, .pack_tile = cx->pack_tile,
                  .ntj = ntj, .col = col, .cx = cx, .sparse = sparse,
                  .xin = pg_xin_mode && cx->xin.stats && !plan && !sparse &&
                         x_role(pr) == ROLE_RAW && pr->x.cs == 1 &&
                         ((pr->kind == PG_FWD && MR == cx->fwd.mr) ||
                          (pr->kind == PG_GRAD_A && MR == cx->grad.mr)),
                  .xlists = xl};
    /* one thread: no team at all (a team of one still pays a futex system
     * call at each of its barriers, thousands per training step) */
    if (sparse) {
#pragma omp atomic
        pg_xsparse_runs++;
    }
    if (nt <= 1)
        (narrow ? team_run_narrow : team_run)(&tm, 0, 1);
    else {
#pragma omp parallel num_threads(nt)
        (narrow ? team_run_narrow : team_run)(&tm, omp_get_thread_num(), omp_get_num_threads());
    }
    return 1;
}
