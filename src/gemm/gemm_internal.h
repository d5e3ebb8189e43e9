/*
 * gemm_internal.h — the matrix engine's one problem form and its
 * microkernels (private to src/gemm).
 *
 * Every PAM matrix product nomul computes is C (m×n) = Σ_p f(X_ip, Y_pj; T_ij):
 *   forward   X = op(A), Y = op(B):        f = PAM(x, y) [with offset]
 *   grad A    X = dC, Y = op(B)ᵀ, T = op(A): f = ∂PAM(t, y)/∂t · x
 *   grad B    X = op(A)ᵀ, Y = dC, T = op(B): f = ∂PAM(x, t)/∂t · y
 * Packing turns X into MR-row and Y into NR-column micro-panels of integer
 * bit patterns prepared so that, where every product is a normal number,
 * one product costs an integer add (forward) or add, and, add (gradients)
 * plus one float add; zeros are handled by masks, and tiles whose panels
 * hold infinities, NaNs or values that could leave the normal range go
 * through a checked path made of the scalar functions.
 */
#ifndef NOMUL_GEMM_INTERNAL_H
#define NOMUL_GEMM_INTERNAL_H

#include <stdint.h>

#include "nomul/isa.h"

typedef enum { PG_FWD = 0, PG_GRAD_A = 1, PG_GRAD_B = 2 } pg_kind;

/* The bit pattern helpers of the packed form. */
#define PG_ONE 0x3F800000u
#define PG_SIGN_EXP 0xFF800000u
#define PG_MANT 0x007FFFFFu

/*
 * Microkernels. Packed X micro-panel: xp[p * mr + r]; packed Y: yp[p * nr + c];
 * masks xm, ym alike (-1 where the value is nonzero, 0 where it is zero).
 * tile: mr×nr mantissa fields of T (gradients only), row-major.
 * The kernel writes the mr×nr sums to c (row r at c + r·ldc, unit stride
 * along a row), adding them to what is there when `add` is set.
 * `masked` says which panels hold zeros (PG_ZEROS_X, PG_ZEROS_Y, both or 0).
 */
#define PG_ZEROS_X 1
#define PG_ZEROS_Y 2
typedef void (*pg_fwd_kernel)(int kc, const uint32_t *xp, const uint32_t *yp, const int32_t *xm,
                              const int32_t *ym, int masked, float *c, long ldc, int add);
typedef void (*pg_grad_kernel)(int kc, const uint32_t *xp, const uint32_t *yp,
                               const uint32_t *tile, const int32_t *xm, const int32_t *ym,
                               int masked, float *c, long ldc, int add);

typedef struct {
    int mr, nr;
    pg_fwd_kernel fwd;
} pg_fwd_ukr;

typedef struct {
    int mr, nr;
    pg_grad_kernel grad_a, grad_b;
} pg_grad_ukr;

/* Exponent statistics of a packed micro-panel, over its nonzero normal values
 * (emin > emax when there are none). */
typedef struct {
    int emin, emax;
    int zero;    /* some value is zero (or subnormal) */
    int special; /* some value is infinite or NaN */
} pg_stats;

/*
 * Packs a micro-panel: element (r, p) = base[r·rs + p·cs] for r < nvalid,
 * p < kc, goes to d[p·R + r] as its bit pattern made canonical (subnormals
 * become zeros) plus adj, with mask −1 (0 for zeros); rows nvalid..R are
 * padding (1.0 + adj, never written back). Compiled per instruction set so
 * that it vectorizes for each.
 */
typedef void (*pg_pack_fn)(const float *base, long rs, long cs, int nvalid, int R, int kc,
                           uint32_t adj, uint32_t *d, int32_t *mask, pg_stats *st);

/* Packs one MR×NR tile of T's mantissa fields (gradients); returns 1 if T
 * holds a NaN there. */
typedef int (*pg_pack_tile_fn)(const float *base, long rs, long cs, int mr, int nr, int MR,
                               int NR, uint32_t *tile);

/* The depthwise convolution's row kernels (pack.inc), over rows rows of n
 * values at the given strides: fwd adds PAM products into acc (every product
 * known to be normal), dx adds exact data-gradient terms into acc, dw
 * returns the sum of exact weight-gradient terms; with them, stats, which
 * convolution uses to classify whole tensors. */
typedef struct {
    void (*fwd)(int rows, int n, const float *x, long xs, uint32_t wadj, float *acc, long as);
    void (*dx)(int rows, int n, const uint32_t *xm, long xs, uint32_t wadj, const float *dy,
               long ys, float *acc, long as, int zeros);
    float (*dw)(int rows, int n, const float *x, long xs, uint32_t wq, const float *dy, long ys,
                int zeros);
    /* Σ PAM(x, dy) (approximate weight gradient), adj = offset's bits − 2.0's */
    float (*dot)(int rows, int n, const float *x, long xs, uint32_t adj, const float *dy, long ys,
                 int zeros);
    /* the statistics of n values (as a pack would find them) */
    void (*stats)(const float *v, long n, pg_stats *st);
} pg_dw_rows;
/* Whether every PAM (with offset, 1 for none) of a value bounded by a with
 * one bounded by b is a normal number (no NaN/∞ either side). */
int pg_range_safe(const pg_stats *a, const pg_stats *b, float offset);

/* Where the direct products' and fd_plan_run's columns land: every column j
 * of C at j (wp 0), or (the convolutions' implicit feed) the n columns are
 * output positions computed in rows wp wide of which the first ow of each
 * are kept, column j at j − (j / wp)·(wp − ow), the rest dropped: the output
 * written narrow by the kernels, without a wide copy to narrow. A kernel
 * given one (not NULL) stores its tile's columns j0 .. j0 + NR − 1 that way,
 * c being its first row's start in C; with add, each sum continues from the
 * wide tile at src (row r at src + NR·r: the earlier K blocks' sums, kept
 * wide), not from C. */
typedef struct {
    int wp, ow;
    long j0;
    const float *src;
} pg_narrow;

/* Segment d of a narrow tile of nvalid lanes (lane l: the wide product's
 * column nw->j0 + l): its lanes [*lo, *hi) are wide row j0 / wp + d's kept
 * columns, lane l's place in C's row being *at + l (l ≥ *lo; below it *at + l
 * may lie outside the row: a store masks those lanes off). Returns 0 when the
 * tile has no segment d, nor any after; *hi ≤ *lo when segment d keeps
 * nothing. The narrow stores: the kernels' (tile_avx512.h, fkernel_avx2.c)
 * and pg_write_tile_narrow's. */
static inline int pg_narrow_segment(const pg_narrow *nw, int nvalid, int d, int *lo, int *hi,
                                    long *at)
{
    const long q0 = nw->j0 / nw->wp;
    const int ph = (int)(nw->j0 - q0 * nw->wp), l0 = d * nw->wp - ph;
    if (l0 >= nvalid)
        return 0;
    *lo = l0 > 0 ? l0 : 0;
    *hi = l0 + nw->ow < nvalid ? l0 + nw->ow : nvalid;
    *at = (q0 + d) * nw->ow + ph - (long)d * nw->wp;
    return 1;
}

/* Forward with Y read in place (the forward kernels' tile: AVX-512 8×32,
 * AVX2 6×16): see ukernel_avx512.c, ukernel_avx2.c. nw: NULL, or the
 * tile's narrow place. */
typedef void (*pg_fwd_direct_kernel)(int kc, const uint32_t *xp, const float *y, const long *yoff,
                                     const int32_t *xm, int xzeros, float *c, long ldc, int add,
                                     const pg_narrow *nw);

/* The exact grad-B product with Y read in place (the gradient kernels'
 * tile: AVX-512 6×32, AVX2 4×8): see ukernel_avx512.c, ukernel_avx2.c.
 * tile: the MR×NR mantissa fields of T, as pack_tile writes them. */
typedef void (*pg_grad_direct_kernel)(int kc, const uint32_t *xp, const float *y,
                                      const long *yoff, const uint32_t *tile, const int32_t *xm,
                                      int xzeros, float *c, long ldc, int add,
                                      const pg_narrow *nw);

/* Float products with B read in place (src/gemm/float, convolution's float
 * path): one MR×NR tile of C = A · B over a reduction of k. Two forms:
 *   A packed (aoff NULL): an MR-row panel, a[p·MR + r], rows past the
 *     matrix zeros; row p of B at b + boff[p] (a column matrix, or the
 *     shifted views of a padded image that stand for one);
 *   A in place: row r at a + aoff[r] (only rows r < mvalid read), its
 *     reduction index p at position (p / seg)·sstride + p % seg along the
 *     row (k a multiple of seg: an image's output rows, seg pixels each);
 *     row p of B at b + p·ldb.
 * Each sum is the fused multiply-adds of its k terms in order, from zero,
 * or from what C holds when add:
 *   c_ij = fma(a_i,k−1, b_k−1,j, … fma(a_i1, b_1j, fma(a_i0, b_0j, c0)) …),
 * c0 = 0 or c_ij, the same on every instruction set that has the kernel.
 * Only rows r < mvalid and columns j < nvalid of the tile are read from B
 * and C and written to C (row r at c + r·ldc; or, nw not NULL, narrow as
 * pg_narrow says, c the row's start, C not read: add 0). */
typedef struct {
    const float *a;
    const long *aoff;
    int seg;
    long sstride;
    const float *b;
    const long *boff;
    long ldb;
    const pg_narrow *nw;
} fd_operands;
typedef void (*fd_kernel)(int k, const fd_operands *o, int mvalid, int nvalid, float *c, long ldc,
                          int add);
typedef struct {
    int mr, nr;
    fd_kernel run;    /* NULL where there is none (then OpenBLAS serves) */
    fd_kernel narrow; /* the same on tiles nr/2 wide, or NULL */
} fd_ukr;
/* src/gemm/float: float arithmetic, kept out of the PAM engine's objects */
void fd_8x32_avx512(int k, const fd_operands *o, int mvalid, int nvalid, float *c, long ldc,
                    int add);
void fd_8x16_avx512(int k, const fd_operands *o, int mvalid, int nvalid, float *c, long ldc,
                    int add);
void fd_6x16_avx2(int k, const fd_operands *o, int mvalid, int nvalid, float *c, long ldc,
                  int add);

/* Forward with X read in place, raw, and Y packed (AVX-512 and AVX2; a
 * convolution's approximate weight gradient): see ukernel_avx512.c,
 * ukernel_avx2.c. X's row r at x + xoff[r], its reduction index p at
 * (p / seg)·sstride + p % seg; Y's masks ym NULL when its panel holds no
 * zero; an MR × nr tile (the ukr's nr wide, or nr / 2 narrow), columns past
 * nvalid untouched; add: each sum continues from C's value. */
typedef void (*pg_xdirect_kernel)(int k, const float *x, const long *xoff, int seg, long sstride,
                                  int mvalid, const uint32_t *yp, const int32_t *ym, int nvalid,
                                  float *c, long ldc, int add);
typedef struct {
    int mr, nr;
    pg_xdirect_kernel wide, narrow; /* NULL where there are none */
} pg_xdirect_ukr;
/* The exact weight gradient's form of it (AVX-512 6×32, AVX2 2×16): C (+)= Σ_p
 * ((x + t) & sign|exp) + y, with tile the MR×nr T values (the weights'
 * mantissa fields plus the partner's adjustment), fixed over the reduction,
 * and Y packed raw. */
typedef void (*pg_grad_xdirect_kernel)(int k, const float *x, const long *xoff, int seg,
                                       long sstride, int mvalid, const uint32_t *yp,
                                       const int32_t *ym, const uint32_t *tile, int nvalid,
                                       float *c, long ldc, int add);
typedef struct {
    int mr, nr;
    pg_grad_xdirect_kernel wide, narrow; /* NULL where there are none */
} pg_grad_xdirect_ukr;

/* The same two weight gradients with X's zeros skipped outright (AVX-512
 * and AVX2; a ReLU'd input is half zeros, and the kernels above spend a
 * test and a masked add, or an and, on each). The reduction runs in chunks of at most 256 lanes of
 * the layout the in-place kernels read; row r of the X tile is then a list
 * of its nonzero values in reduction order, lists[r·PG_XL_CAP + s], each
 * entry two byte offsets from the chunk's start: the value's in X's row
 * (x + xoff[r]), high 16 bits, and its partner row's in the packed Y panel,
 * low 16 bits; len[r] entries, rows past mvalid none. A zero X adds nothing
 * in the in-place kernels (a merge-masked add), so the sums are theirs bit
 * for bit (Y panels without zeros only: a zero Y lane's term is +0.0
 * there). build writes the list of one row over nlanes lanes (lane w
 * counts where bit w % 16 of wmask[w / 16] is set, its entry went[w]),
 * returns its length, and writes up to 15 entries past it. Zero and
 * subnormal values (exponent field 0) are left out, as the in-place
 * kernels' tests leave them out. */
enum { PG_XL_CAP = 272 }; /* a list's room: 256 lanes and a vector's overrun */
/* The list kernels' lockstep (ukernel_avx512.c's xsparse_body and
 * xrow_grad_body, ukernel_avx2.c's xsparse_body): entry s of every row
 * while all R lists run (lo: the shortest), then each row to its own end
 * (hi: the longest); TERM(r, s) adds one entry's terms */
#define LISTS_LOCKSTEP(R, TERM)                                                                 \
    do {                                                                                        \
        int s_ = 0;                                                                             \
        for (; s_ < lo; s_++) {                                                                 \
            _Pragma("GCC unroll 8") for (int r_ = 0; r_ < (R); r_++) TERM(r_, s_);              \
        }                                                                                       \
        for (; s_ < hi; s_++) {                                                                 \
            _Pragma("GCC unroll 8") for (int r_ = 0; r_ < (R); r_++) if (s_ < len[r_])          \
                TERM(r_, s_);                                                                   \
        }                                                                                       \
    } while (0)

typedef int (*pg_xlist_build_fn)(const float *x, int nlanes, const uint16_t *wmask,
                                 const uint32_t *went, uint32_t *list);
typedef void (*pg_xsparse_kernel)(const uint32_t *lists, const int *len, const float *x,
                                  const long *xoff, const uint32_t *yp, const uint32_t *tile,
                                  int mvalid, int nvalid, float *c, long ldc, int add);
/* The lists of X's nonzeros (gemm_driver.c's xlists_panel): build lists
 * the nonzero values among X(r, p) = x[r·rs + p·cs] of rows r < mr ≤ 8, p <
 * n ≤ PG_XL_CAP − 16 (rows contiguous, cs = 1, or columns, rs = 1): row
 * r's list at r·PG_XL_CAP, its length in len[r], the values' bits (plus
 * adj: the pack's adjustment of X's role) in vals,
 * the byte offset of each one's partner row of the packed Y panel (p·ybytes
 * for value p) in offs, up to 15 entries written past a list's end; the
 * statistics of the mr·n values as the pack would make them (pg_stats, no
 * padding rows). The kernel sums a tile
 * (MR = fwd.mr rows, nvalid ≤ 16·nh columns) from +0 over n entries of each
 * row's list (a shorter list padded with entries that add −0.0: the value
 * 0x80000000 against a row of zeros) against Y's packed panel yp, each term
 * the bits of the value plus those of its partner (Y with its adjustment),
 * and stores the first mvalid rows to c (row r at c + r·ldc), added to what
 * is there if add. */
typedef void (*pg_xrow_build_fn)(const float *x, long rs, long cs, int mr, int n, uint32_t adj,
                                 uint32_t ybytes, uint32_t *vals, uint32_t *offs, int *len,
                                 pg_stats *st);
typedef void (*pg_xrow_kernel)(const uint32_t *vals, const uint32_t *offs, int n,
                               const uint32_t *yp, int mvalid, int nvalid, float *c, long ldc,
                               int add);
/* The exact gradients' forms (MR = grad.mr): the T tile's mantissas (tile,
 * as the packed kernels') in registers, a term ((y + t) & sign|exp) + x
 * (grad A) or ((x + t) & sign|exp) + y (grad B); each row's list to its own
 * length len[r] (no padding: no partner row makes every lane's term vanish) */
typedef void (*pg_xrow_grad_kernel)(const uint32_t *vals, const uint32_t *offs, const int *len,
                                    const uint32_t *yp, const uint32_t *tile, int mvalid,
                                    int nvalid, float *c, long ldc, int add);
typedef struct {
    pg_xrow_build_fn build; /* NULL where there are none */
    pg_xrow_kernel wide, narrow; /* NR = fwd.nr, fwd_narrow.nr */
    pg_xrow_grad_kernel gwide_a, gnarrow_a, gwide_b, gnarrow_b; /* NR = grad.nr, grad_narrow.nr */
} pg_xrows_ukr;

/* A forward product's (or an exact grad A's) X panel read in place instead
 * of packed (AVX-512; X raw with its rows contiguous: gemm_driver.c's
 * xin_panel). stats makes the statistics of rows r < mr of X(r, p) =
 * x[r·rs + p], p < kc, as the pack would for the values that count
 * (pg_stats, no padding rows), and
 * the rows that hold a nonzero value in keep (bit r); it returns 0 where
 * the panel must be packed instead: an infinity or a NaN, or a row holding
 * both zeros (or subnormals) and nonzero values. The kernel then sums an
 * MR × 16·nh tile (MR = fwd.mr) from +0 as the packed forward kernel does:
 * each term X's bits plus those of Y's packed panel yp (with its masks ym,
 * NULL when it holds no zero), a row outside keep adding nothing (a
 * gradient's padding tokens); its first mvalid rows and nvalid columns
 * stored to c (row r at c + r·ldc), added to what is there if add (rows
 * past mvalid read row 0's values, never stored). */
typedef int (*pg_xin_stats_fn)(const float *x, long rs, int mr, int kc, pg_stats *st,
                               unsigned *keep);
typedef void (*pg_xin_kernel)(int kc, const float *x, long rs, unsigned keep, int mvalid,
                              const uint32_t *yp, const int32_t *ym, int nvalid, float *c,
                              long ldc, int add);
/* The exact gradient's grad-A form of it (X = dC, raw): the packed grad A's
 * terms, ((y + t) & sign|exp) + x with tile the MR × 16·nh T values (MR =
 * grad.mr) */
typedef void (*pg_xin_grad_kernel)(int kc, const float *x, long rs, unsigned keep, int mvalid,
                                   const uint32_t *yp, const int32_t *ym, const uint32_t *tile,
                                   int nvalid, float *c, long ldc, int add);
typedef struct {
    pg_xin_stats_fn stats;       /* NULL where there are none */
    pg_xin_kernel wide, narrow; /* NR = fwd.nr, fwd_narrow.nr */
    pg_xin_grad_kernel gwide_a, gnarrow_a; /* NR = grad.nr, grad_narrow.nr */
} pg_xin_ukr;

typedef struct {
    pg_xlist_build_fn build;        /* NULL where there are none */
    pg_xsparse_kernel wide, narrow; /* the forward form, MR = fwd_xdirect.mr */
    pg_xsparse_kernel gwide, gnarrow; /* the exact form, MR = grad_xdirect.mr */
} pg_xsparse_ukr;

/* The lists of X's nonzeros (gemm_driver.c's xlists_panel): a K block of
 * a row panel runs on them where its longest row list holds at most
 * PG_XSPARSE_NUM / PG_XSPARSE_DEN of the block's values. The mode is for the tests, which
 * check the paths against each other bit for bit: auto (the default), never,
 * always (every product the lists can serve, whatever its density). */
enum { PG_XSPARSE_NUM = 13, PG_XSPARSE_DEN = 16 };
enum { PG_XSPARSE_AUTO, PG_XSPARSE_NEVER, PG_XSPARSE_ALWAYS };
extern int pg_xsparse_mode;
extern long pg_xsparse_runs; /* the products that took them, for the tests */
/* X read in place (xin_panel): on (the default) or off, for the tests; the
 * tiles that took it */
extern int pg_xin_mode;
extern long pg_xin_runs;

/* Cache blocking: KC values of the reduction per packed panel, MC rows of X
 * and NC columns of Y per block. KC fixes the order of the float sums, so it
 * is the same on every instruction set (results do not depend on the ISA). */
#ifndef PG_KC
#define PG_KC 192
#endif
#ifndef PG_NC
#define PG_NC 1024
#endif
#ifndef PG_MC
#define PG_MC 96
#endif
/* The largest microkernel tile (MR × NR) of any context: the driver's tile
 * buffer on the stack. */
enum { PG_TILE_MAX = 16 * 32 };

/* Small products with both operands read in place (AVX-512; gemm_driver.c's
 * pg_small_batch, for batches of products whose every term it has proven
 * normal): one tile of mr rows and nvalid ≤ nr columns of C = Σ_p f(X_rp,
 * Y_pj; T_rj), each sum from +0 over p < kd in order, X(r, p) = x[r·xrs +
 * p·xcs], Y(p, j) = y[p·yrs + j] (rows contiguous), T(r, j) = t[r·trs +
 * j·tcs] (gradients; NULL for the forward), the terms the packed kernels'
 * with offset 1 (Y's or the partner's −1.0 applied in registers), a zero or
 * subnormal X or Y adding nothing (xzeros 0: X holds none, its tests
 * left out); its first mvalid rows and nvalid columns written to c (row r
 * at c + r·ldc), added to what is there if add. No infinity or NaN may
 * reach it. */
typedef void (*pg_small_kernel)(pg_kind kind, int kd, const float *x, long xrs, long xcs,
                                const float *y, long yrs, const float *t, long trs, long tcs,
                                int mvalid, int nvalid, float *c, long ldc, int add, int xzeros);
typedef struct {
    int mr, nr;
    pg_small_kernel tile; /* NULL where there is none */
} pg_small_ukr;
/* The small products' path: auto (the default: where it applies) or never,
 * for the tests; the products that took it */
enum { PG_SMALL_AUTO, PG_SMALL_NEVER };
extern int pg_small_mode;
extern long pg_small_runs;

/* A convolution's forward on lists of each output pixel's nonzero inputs
 * (conv2d_sparse.c decides where; csparse.inc): one image and group
 * of a stride-1 layer in implicit form. Row k of the column matrix starts
 * at buf + off[k] (the zero-padded planes, read nwide = oh·wp wide pixels,
 * pixel j output (j / wp)·ow + j % wp where j % wp < ow). table holds K + 1
 * rows of 16·nh values (nh = 1..4 or a multiple of 4): row k the weights of
 * tap k for every output channel (PAM: their bits with −1.0 folded in;
 * float: as they are),
 * row K zeros (the lists' padding, against a −0.0 value: a −0.0 term, an
 * exact identity of the sums). The sums are the dense kernels' chains with
 * the zero inputs' terms left out, which add nothing there: PAM, each
 * block of kc taps from +0, the blocks added in order (gemm_plan.c's
 * direct_strip, kc = PG_KC); float, one chain over every tap
 * (float/fdirect.c). A zero is, for PAM, a zero exponent field (zero or
 * subnormal: PAM's zero); for float, ±0. Float also needs every nonzero x
 * to have an exponent field of at least xmin (so that no term can round a
 * sum to −0, conv2d_sparse.c): where one has not, the routine returns 0
 * having written nothing to y, and the dense path runs the image. part
 * (P × 16·nh floats) and lists (PG_CS_LISTS uint32) are scratch; y gets
 * the 16·nh output planes, P apart. */
enum { PG_CS_CAP = PG_KC + 16, PG_CS_LISTS = 2 * 16 * PG_CS_CAP };
typedef struct {
    const float *buf;
    const long *off;
    int K, kc, nwide, wp, ow, P, nh;
    uint32_t xmin;
    const uint32_t *table;
    float *part;
    uint32_t *lists;
    float *y;
} pg_csparse_job;
typedef int (*pg_csparse_fn)(const pg_csparse_job *job);
typedef struct {
    pg_csparse_fn pam, fp; /* NULL where there are none */
} pg_csparse_ukr;
int csparse_pam_avx512(const pg_csparse_job *job);   /* csparse_avx512.c */
int csparse_float_avx512(const pg_csparse_job *job); /* float/csparse_float_avx512.c */

/* A 3×3, padding-1 convolution product with its lanes along the output
 * channels (clane.inc; conv2d_clane.c decides where): one image and group.
 * The source's planes are padded by one on every side (rows wp wide); tap
 * k (the reduction's order) of output pixel (oy, ox) is buf[off[k] +
 * stride·(oy·wp + ox)] (stride 2: float's only). table holds K rows of
 * 16·nh values, row k the weights of tap k for every output channel (PAM:
 * their bits with −1.0 folded in, none zero or subnormal; float: as they
 * are). y gets the 16·nh output planes (oh × ow), ys apart, stored. Output
 * rows are cut into segments of seg pixels (7, 8 or 14, dividing ow); a
 * tile is one segment, or two rows where seg = ow = 7, × 32 channels (nh
 * even), or two segments of a row × 16 (nh 1, PAM), its sums in registers.
 * The sums: PAM, each block of kc taps from +0, the blocks added in order,
 * the terms of the padding left out (the dense direct kernels' masks: the
 * same bits as gemm_plan.c's direct_strip; the source must hold no zero or
 * subnormal value but its padding, and every term be normal); float, one
 * fma chain over every tap, the padding's included (float/fdirect.c's).
 * PAM's first and last rows run on klist[0] and klist[1] (klist[2] where
 * oh = 1), the taps in order that do not read the padding's row above,
 * below (both), klen[] long: the others' terms all masked, left out.
 * PAM's forward (pix set; nh a multiple of 4): output pixel p reads tap k
 * at buf[off[k] + pix[p]], any stride; tiles of 6 or 5 pixels in order
 * (rows crossed) × 64 channels, every broadcast tested: a ReLU's zeros,
 * subnormals and the padding are the terms left out, as the dense kernels
 * mask them. */
typedef struct {
    const float *buf;
    const long *off;
    const int *pix;
    const int *klist[3];
    int klen[3];
    int K, kc, oh, ow, wp, stride, seg, nh;
    const uint32_t *table;
    float *y;
    long ys;
} pg_clane_job;
typedef void (*pg_clane_fn)(const pg_clane_job *job);
typedef struct {
    pg_clane_fn pam, fp; /* NULL where there are none */
} pg_clane_ukr;
void clane_pam_avx512(const pg_clane_job *job);   /* clane_avx512.c */
void clane_float_avx512(const pg_clane_job *job); /* float/clane_float_avx512.c */

/* The weight gradient of a stride-1 3×3 convolution input by input, on
 * up to 32 output channels (dwplane.inc; conv2d.c's dw_block decides where
 * for PAM's forms, float/conv_float.c for float): one image's
 * group, x its cig planes (h × w, unpadded), yp dy pixel-major (row p =
 * oy·ow + ox at yp + p·ys, its nvalid ≤ 32 channels first; PAM: packed as
 * the in-place kernels read it, the adjustment folded in; float: dy
 * transposed), c the transposed dW's rows (row ci·9 + 3i + j, nvalid
 * columns, ldc apart), continued where add, else from +0. The sums are the
 * in-place kernels' chains (each tap's terms in pixel order) less the zero
 * inputs' terms (PAM: a zero exponent field; float: ±0, where
 * dwplane_float_guard_avx512 has passed the image, which also wants x at
 * most 9/16 nonzero): the same bits. Rows
 * are read 16 or 32 values wide (nvalid ≤ 16 or not). list: scratch of
 * PG_PLANE_LIST(h, w) uint32 (planelist.h's lists of a plane's nonzero
 * inputs: values, codes and positions, each with a store's slack of 16,
 * and w + 16 columns' codes; dxlive.inc's too). conv_plane_codes_fit: where
 * the codes' byte offsets fit their 32 bits. */
#define PG_PLANE_LIST(h, w) (3 * ((size_t)(h) * (w) + 16) + (size_t)(w) + 16)
typedef struct {
    const float *x;
    int cig, h, w, oh, ow, pad_h, pad_w, dil_h, dil_w;
    const uint32_t *yp;
    long ys;
    float *c;
    long ldc;
    int nvalid, add;
    uint32_t *list;
    /* PAM's exact form (NULL: approximate, and float): the weights' tiles
     * as the in-place exact kernels read them (conv2d.c's dw_tiles, the
     * partner's adjustment in them), row k of this panel at t + k / t_mr ·
     * t_step + k % t_mr · ys; dy raw */
    const uint32_t *t;
    int t_mr;
    long t_step;
} pg_dwplane_job;
typedef void (*pg_dwplane_fn)(const pg_dwplane_job *job);
typedef struct {
    pg_dwplane_fn pam, fp;                                      /* NULL where none */
    int (*fp_guard)(const float *x, long nx, const float *dy, long ny);
} pg_dwplane_ukr;
void dwplane_pam_avx512(const pg_dwplane_job *job);   /* dwplane_avx512.c */
void dwplane_float_avx512(const pg_dwplane_job *job); /* float/dwplane_float_avx512.c */
int dwplane_float_guard_avx512(const float *x, long nx, const float *dy, long ny);

/* The data gradient of a 3×3 convolution of stride 1, or 2 undilated, at
 * the live inputs only (dxlive.inc; conv2d.c's data_live for PAM,
 * float/conv_float.c for float decide where): one image's group, x its cig
 * planes (h × w), whose
 * zeros' gradients are not wanted (a ReLU's output: its backward drops
 * them); dx written, +0 at x's zeros. wp the weights as [ci][3i + j][co]
 * (cog = 16, 32 or 64 columns; PAM: each weight's bits less 1.0's, every
 * weight normal and nonzero; float: the weights, finite), yp dy
 * pixel-major (row oy·ow + ox, cog values; PAM: every value normal and
 * nonzero, the terms' range proven safe by the caller as for the dense
 * kernels). Each output's
 * sum: per row i of taps, lane l (of 16) adds, from +0, the terms of output
 * channels l, l + 16, ... for the taps (i, j) that reach dy (stride 2: at
 * a whole output pixel, (y + pad_h − i) / 2 and (x + pad_w − j) / 2) in
 * order of j, each
 * tap's channels in order; the rows' sums (0 + 1) + 2; then the lanes
 * pairwise, l + 8 into l, l + 4, l + 2, l + 1 (as tests/test_conv.c's
 * dxlive_twin). exact: PAM's exact derivative, else
 * its approximate one (PAM) or float. list: scratch of PG_PLANE_LIST(h, w)
 * uint32. */
typedef struct {
    const float *x;
    int cig, h, w, oh, ow, pad_h, pad_w, dil_h, dil_w, stride;
    const uint32_t *wp, *yp;
    int cog, exact;
    float *dx;
    uint32_t *list;
    long terms, outputs; /* written: the terms added, the live inputs summed */
} pg_dxlive_job;
typedef void (*pg_dxlive_fn)(pg_dxlive_job *job);
typedef struct {
    pg_dxlive_fn pam, fp; /* NULL where none */
} pg_dxlive_ukr;
void dxlive_pam_avx512(pg_dxlive_job *job);   /* dxlive_avx512.c */
void dxlive_pam_avx2(pg_dxlive_job *job);     /* dxlive_avx2.c */
void dxlive_float_avx512(pg_dxlive_job *job); /* float/dxlive_float_avx512.c */

/*
 * One instruction set's context (as BLIS's cntx): its microkernels with
 * their tile sizes, its packing routines, the depthwise row kernels and the
 * block sizes, registered together in its ukernel_*.c. The driver takes the
 * context once per call (or from its plan) and never tests the ISA itself.
 */
typedef struct pg_cntx {
    nomul_isa isa;
    pg_fwd_ukr fwd;
    pg_grad_ukr grad;
    /* The same products on narrower tiles (the same MR, a smaller NR), for
     * problems whose columns fill the wide NR badly; zeroed where there are
     * none. Tile shapes never change the sums or their order. */
    pg_fwd_ukr fwd_narrow;
    pg_grad_ukr grad_narrow;
    pg_fwd_direct_kernel fwd_direct; /* NULL where there is none */
    pg_grad_direct_kernel grad_b_direct; /* NULL where there is none */
    pg_xdirect_ukr fwd_xdirect;      /* X in place; zeroed where there is none */
    pg_grad_xdirect_ukr grad_xdirect; /* the same for exact weight gradients */
    pg_xsparse_ukr xsparse;           /* both, X's zeros skipped; zeroed where none */
    pg_xrows_ukr xrows;               /* forward, X's zeros skipped; zeroed where none */
    pg_xin_ukr xin;                   /* forward and grad A, X in place; zeroed where none */
    pg_small_ukr small;               /* small products in place; zeroed where none */
    pg_csparse_ukr csparse;           /* conv forward on nonzero lists; zeroed where none */
    pg_clane_ukr clane;               /* conv products, lanes along channels; zeroed where none */
    pg_dwplane_ukr dwplane;           /* 16-channel dW by input; zeroed where none */
    pg_dxlive_ukr dxlive;             /* dX at live inputs; zeroed where none */
    fd_ukr fdirect;                  /* float, B in place */
    pg_pack_fn pack;
    pg_pack_tile_fn pack_tile;
    pg_dw_rows dw_rows;
    /* conv_transpose's form (conv2d_internal.h); NULL: its plain one */
    void (*transpose)(int rows, int cols, const float *m, long ldm, float *t);
    /* col2im's rows at stride 2 (conv2d.c's conv_col2im_add): out[r·os +
     * 2k] += in[r·is + k] for r < nr, k < n, −0 added between; NULL: the
     * plain rows */
    void (*add_rows_s2)(int nr, int n, const float *in, long is, float *out, long os);
    /* conv_pad_planes's form (conv2d_internal.h): its own, or the plain
     * rows, conv_pad_planes_plain */
    void (*pad_planes)(int c, int h, int w, int ph, int pw, const float *src, float *dst,
                       int slack);
    /* conv_split_planes's form (conv2d_internal.h): its own, or the plain
     * rows, conv_split_planes_plain */
    void (*split_planes)(int c, int h, int w, int ph, int pw, const float *src, float *dst,
                         int slack);
    int kc, mc, nc;
} pg_cntx;
extern const pg_cntx pg_cntx_scalar, pg_cntx_avx2, pg_cntx_avx512;
void conv_pad_planes_plain(int c, int h, int w, int ph, int pw, const float *src, float *dst,
                           int slack);
/* a split plane's rows (columns): ⌈(n + 2·pad) / 2⌉ of the padded side */
static inline int conv_split_side(int n, int pad) { return (n + 2 * pad + 1) / 2; }
void conv_split_planes_plain(int c, int h, int w, int ph, int pw, const float *src, float *dst,
                             int slack);
/* The context of the active instruction set (nomul_isa_active: the CPU's
 * best, capped by NOMUL_ISA and nomul_isa_set). */
const pg_cntx *pg_cntx_active(void);

/*
 * Plans (used by conv2d): products that share their first operand A
 * (row-major) pack it once. Arguments are trusted (checked by the caller).
 * A plan lives in this thread's keyed scratch buffer `key` (core/internal.h:
 * NOMUL_SCRATCH_KEYED + key) until the next plan of the same key: plans
 * alive at once need distinct keys, and nothing frees them.
 *   forward: C (m×n, ldc) [+]= PAM-GEMM(op(A) (m×k), B (k×n, ldb))
 *   grad_b:  dB (k×n, lddb) [+]= exact ∂/∂B of PAM-GEMM(A (m×k), B) given dC (m×n)
 */
#include <cblas.h>
typedef struct pg_plan pg_plan;
pg_plan *pg_plan_forward(int key, CBLAS_TRANSPOSE ta, int m, int k, const float *a, int lda,
                         float offset);
void pg_plan_run_forward(const pg_plan *pl, int n, const float *b, int ldb, float beta, float *c,
                         int ldc);
pg_plan *pg_plan_grad_b(int key, int m, int k, const float *a, int lda, float offset);
void pg_plan_run_grad_b(const pg_plan *pl, int n, const float *b, int ldb, const float *dc,
                        int lddc, float beta, float *db, int lddb);

/* Forward products whose Y is read in place, unpacked (where the context
 * has such a kernel, AVX-512 and AVX2; NULL elsewhere): the plan packs A with Y's
 * adjustment folded in; Y's row p (of k) starts at y + yoff[p] (a column
 * matrix, or the shifted views of a padded image that stand for one). A
 * run needs stats bounding all of Y with pg_plan_direct_safe() true, and
 * each row readable for 32 floats past its n. It does not count its
 * operations: its caller (conv2d.c) counts the useful ones, not the wide
 * rows' dropped columns. */
pg_plan *pg_plan_forward_direct(int key, int m, int k, const float *a, int lda, float offset);
int pg_plan_direct_safe(const pg_plan *pl, const pg_stats *ys);
/* rows mr of a tile ct (row stride NR), columns j0 .. j0 + nr − 1 of a
 * narrow product (pg_narrow), to their places in C (row i at c + i·ldc),
 * written or added */
void pg_write_tile_narrow(const float *ct, int NR, int mr, long j0, int nr, pg_narrow nw,
                          float *c, long ldc, int add);
void pg_plan_run_forward_direct(const pg_plan *pl, int n, const float *y, const long *yoff,
                                float beta, float *c, int ldc, pg_narrow nw);

/* Exact-gradient products with Y read in place, the grad-B form with T
 * given per output (a convolution's exact data gradient as the convolution
 * of its padded dy: each output's T is its own input value):
 *   C (m×n, ldc) [+]= Σ_p ∂PAM(A_ip, T_ij)/∂T · Y_pj   (∂PAM_off with an offset)
 * with A (m×k, row-major) packed once, T (m×n, row-major, ldt) and Y's rows
 * as for pg_plan_run_forward_direct. NULL where the context has no such
 * kernel (AVX-512 and AVX2 have). A run needs pg_plan_direct_safe() true for stats
 * bounding all of Y, and no NaN in T; it does not count its operations. */
pg_plan *pg_plan_grad_t_direct(int key, int m, int k, const float *a, int lda, float offset);
void pg_plan_run_grad_t_direct(const pg_plan *pl, int n, const float *t, int ldt, const float *y,
                               const long *yoff, float beta, float *c, int ldc, pg_narrow nw);

/* Float products C (m×n) = op(A) (m×k) · B (k×n) with op(A) packed once
 * into the active context's fd panels and B read in place (row p at b +
 * boff[p]), each sum as fd_kernel says (src/gemm/float/fdirect.c).
 * fd_plan_make returns NULL, with no report, where the context has no such
 * kernel, and after a report when out of memory; a plan lives in this
 * thread's keyed scratch buffer `key`, like pg_plan. fd_plan_run splits C's
 * column tiles over the threads when called outside a parallel region (the
 * sums do not depend on the split). */
typedef struct fd_plan fd_plan;
int fd_available(void);
fd_plan *fd_plan_make(int key, CBLAS_TRANSPOSE ta, int m, int k, const float *a, int lda);
void fd_plan_run(const fd_plan *pl, int n, const float *b, const long *boff, float *c, int ldc,
                 pg_narrow nw);
/* C (m×n, ldc) (+)= A (m×k) · B (k×n, ldb), both read in place as
 * fd_operands says (A's rows at a + aoff[i], i < m; k = segments of seg),
 * on this thread (callers run it per image in parallel): each sum the fma
 * chain of fd_kernel, continued from C's value when add. Only where
 * fd_available(). */
void fd_gemm_inplace(int m, int n, int k, const float *a, const long *aoff, int seg, long sstride,
                     const float *b, int ldb, float *c, int ldc, int add);

/* Float products (gemm_float.c): OpenBLAS held to one thread, and C split
 * into blocks of rows or columns that depend on the shape only (never on the
 * thread count), run on nomul's threads. Same arguments as cblas_sgemm with
 * alpha = 1. */
#include <cblas.h>
void nomul_blas_hold_one_thread(void);
/* The block size along the split dimension (rows of C when *split_rows),
 * the whole dimension when the product is not split. */
long nomul_sgemm_block_size(int rows, int cols, int k, int *split_rows);
void nomul_sgemm(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n,
                 int k, const float *a, int lda, const float *b, int ldb, float beta, float *c,
                 int ldc);

#endif
