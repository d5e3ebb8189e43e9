/*
 * gemm.c — the matrix products' entry points (nomul/gemm.h): argument checks
 * in cblas_sgemm's conventions, dispatch on the operation configuration
 * (float through OpenBLAS, or the PAM engine), and the reduction of every PA
 * product (forward, exact backward, batched) to the problem form of
 * gemm_problem.h. The approximate PA backward and the float backward are
 * the same two products on transposed operands.
 */
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "../core/internal.h"
#include "gemm_problem.h"
#include "nomul/arith.h"
#include "nomul/gemm.h"

/* ---- argument checks and the cblas conventions ---------------------------------- */

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

/* ---- the configuration and batches -------------------------------------------------- */

static int check_cfg(const char *fn, const nomul_op_cfg *cfg)
{
    if (!cfg) {
        nomul_report(NOMUL_EINVAL, "%s: the operation configuration (cfg) is NULL", fn);
        return 0;
    }
    return 1;
}


/* The offset a product is checked and computed with: PA's own, none in
 * float. */
static float cfg_offset(const nomul_op_cfg *cfg) { return nomul_op_is_pa(cfg) ? cfg->offset : 1.0f; }

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

/* Small products run one per thread, each thread a contiguous share of the
 * batch (static: with products handed out one at a time, 256 of attention's
 * 17×16 by 16×17 took 0.48 µs each on two threads, 0.32 with contiguous
 * shares, 0.66 on one); large ones (and a single one) one after the other,
 * each on every thread. */
static void run_batch(const char *fn, const pg_problem *base, int batch, long sx, long sy,
                      long st, long sc)
{
    int nt = nomul_num_threads();
    long long work = (long long)base->m * base->n * (base->kd ? base->kd : 1);
    int failed = 0;
    if (pg_small_batch(base, batch, sx, sy, st, sc, nt))
        return;
    if (batch > 1 && nt > 1 && work < 4000000) {
#pragma omp parallel for num_threads(nt) schedule(static) reduction(| : failed)
        for (int i = 0; i < batch; i++) {
            pg_problem pr;
            shift_problem(&pr, base, i, sx, sy, st, sc);
            failed |= !pg_run(&pr, 1, NULL);
        }
    } else {
        for (int i = 0; i < batch; i++) {
            pg_problem pr;
            shift_problem(&pr, base, i, sx, sy, st, sc);
            failed |= !pg_run(&pr, nt, NULL);
        }
    }
    if (failed)
        nomul_report(NOMUL_ENOMEM, "%s: out of memory for packed panels", fn);
}

/* Float batches: products too small to split (nomul_sgemm would not) one
 * per thread, each thread a contiguous share; the smallest of them, and
 * products large enough to split, one after the other on the calling
 * thread. Debian's OpenBLAS (its pthreads build) takes a mutex around its
 * buffer allocation in every call, which two threads calling at once pay
 * for: 256 products of 17×16 by 16×17 took 95 µs on two threads and 77 on
 * one, 30×30 by 30×32 211 and 249, 64³ 799 and 1,884 (so the ViT's float
 * attention products ran 5.8 ms per step on two threads where one thread
 * took 3.0): below FLOAT_BATCH_SPLIT_MIN multiply-adds a product is not
 * worth a thread. Either way each product is the same calls at any thread
 * count. */
#define FLOAT_BATCH_SPLIT_MIN 16384
static void float_batch(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m,
                        int n, int k, const float *a, int lda, long sa, const float *b, int ldb,
                        long sb, float beta, float *c, int ldc, long sc, int batch)
{
    int nt = omp_in_parallel() ? 1 : nomul_num_threads();
    int split_rows;
    int dim = m >= n ? m : n;
    int small = nomul_sgemm_block_size(m, n, k, &split_rows) >= dim;
    if (batch <= 1 || !small || (long)m * n * k < FLOAT_BATCH_SPLIT_MIN)
        nt = 1;
    if (nt <= 1) { /* no OpenMP team for one thread: see gemm_float.c */
        for (int i = 0; i < batch; i++)
            nomul_sgemm(layout, ta, tb, m, n, k, a + i * sa, lda, b + i * sb, ldb, beta,
                        c + i * sc, ldc);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int i = 0; i < batch; i++)
        nomul_sgemm(layout, ta, tb, m, n, k, a + i * sa, lda, b + i * sb, ldb, beta, c + i * sc,
                    ldc);
}

/* ---- forward ------------------------------------------------------------------------ */

/* The checked forward products of nomul_gemm_batched (reported as fn). */
static void forward(const char *fn, const nomul_op_cfg *cfg, CBLAS_LAYOUT layout,
                    CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, const float *a,
                    int lda, long stride_a, const float *b, int ldb, long stride_b, float beta,
                    float *c, int ldc, long stride_c, int batch)
{
    pg_problem pr;
    if (!check_cfg(fn, cfg) || !check_batch(fn, batch, stride_a, stride_b, stride_c, 0))
        return;
    if (nomul_op_is_pa(cfg)) {
        if (batch > 0 && setup_forward(fn, &pr, layout, ta, tb, m, n, k, a, lda, b, ldb, beta, c,
                                       ldc, cfg->offset))
            run_batch(fn, &pr, batch, stride_a, stride_b, 0, stride_c);
        return;
    }
    if (!check_common(fn, layout, ta, tb, m, n, k, beta, 1.0f) ||
        !check_ab(fn, layout, ta, tb, m, n, k, a, lda, b, ldb) ||
        !check_ld(fn, "ldc", layout, m, n, ldc) || !check_ptr(fn, "C", c, (long)m * n))
        return;
    NOMUL_COUNT(FMUL, (long long)batch * m * n * k);
    NOMUL_COUNT(FADD, (long long)batch * m * n * k);
    float_batch(layout, ta, tb, m, n, k, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc,
                stride_c, batch);
}

void nomul_gemm(const nomul_op_cfg *cfg, CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta,
                CBLAS_TRANSPOSE tb, int m, int n, int k, const float *a, int lda, const float *b,
                int ldb, float beta, float *c, int ldc)
{
    forward("nomul_gemm", cfg, layout, ta, tb, m, n, k, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
}

void nomul_gemm_batched(const nomul_op_cfg *cfg, CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta,
                        CBLAS_TRANSPOSE tb, int m, int n, int k, const float *a, int lda,
                        long stride_a, const float *b, int ldb, long stride_b, float beta,
                        float *c, int ldc, long stride_c, int batch)
{
    forward("nomul_gemm_batched", cfg, layout, ta, tb, m, n, k, a, lda, stride_a, b, ldb,
            stride_b, beta, c, ldc, stride_c, batch);
}

/* ---- backward ----------------------------------------------------------------------- */

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

/* dop(A) and dop(B) as forward products (float, or approximate PA):
 * dop(A) (m×k) = dC (m×n) · op(B)ᵀ, written in A's storage: when A is stored
 * transposed, its transpose op(B) · dCᵀ instead; likewise dop(B) (k×n) =
 * op(A)ᵀ · dC in B's storage. */
static void backward_products(const char *fn, const nomul_op_cfg *cfg, CBLAS_LAYOUT layout,
                              CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
                              const float *a, int lda, long sa, const float *b, int ldb, long sb,
                              const float *dc, int lddc, long sdc, float beta, float *da,
                              int ldda, long sda, float *db, int lddb, long sdb, int batch)
{
    CBLAS_TRANSPOSE nt_ = CblasNoTrans, tr = CblasTrans;
    if (da) {
        if (!is_trans(ta))
            forward(fn, cfg, layout, nt_, is_trans(tb) ? nt_ : tr, m, k, n, dc, lddc, sdc, b, ldb,
                    sb, beta, da, ldda, sda, batch);
        else
            forward(fn, cfg, layout, tb, tr, k, m, n, b, ldb, sb, dc, lddc, sdc, beta, da, ldda,
                    sda, batch);
    }
    if (db) {
        if (!is_trans(tb))
            forward(fn, cfg, layout, is_trans(ta) ? nt_ : tr, nt_, k, n, m, a, lda, sa, dc, lddc,
                    sdc, beta, db, lddb, sdb, batch);
        else
            forward(fn, cfg, layout, tr, ta, n, k, m, dc, lddc, sdc, a, lda, sa, beta, db, lddb,
                    sdb, batch);
    }
}

/* Both gradients, every argument checked before either is written. */
static void backward(const char *fn, const nomul_op_cfg *cfg, CBLAS_LAYOUT layout,
                     CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, const float *a,
                     int lda, long sa, const float *b, int ldb, long sb, const float *dc,
                     int lddc, long sdc, float beta, float *da, int ldda, long sda, float *db,
                     int lddb, long sdb, int batch)
{
    pg_problem pra, prb;
    if (!check_cfg(fn, cfg) || !check_batch(fn, batch, sa, sb, sdc, da ? sda : 0) ||
        !check_batch(fn, batch, 0, 0, 0, db ? sdb : 0) || batch == 0)
        return;
    float offset = cfg_offset(cfg);
    if ((da && !setup_grad(fn, &pra, PG_GRAD_A, layout, ta, tb, m, n, k, a, lda, b, ldb, dc,
                           lddc, beta, da, ldda, offset)) ||
        (db && !setup_grad(fn, &prb, PG_GRAD_B, layout, ta, tb, m, n, k, a, lda, b, ldb, dc,
                           lddc, beta, db, lddb, offset)))
        return;
    if (!nomul_op_is_pa(cfg) || cfg->approx_bwd) {
        backward_products(fn, cfg, layout, ta, tb, m, n, k, a, lda, sa, b, ldb, sb, dc, lddc, sdc,
                          beta, da, ldda, sda, db, lddb, sdb, batch);
        return;
    }
    if (da) /* x = dC, y = B, t = A */
        run_batch(fn, &pra, batch, sdc, sb, sa, sda);
    if (db) /* x = A, y = dC, t = B */
        run_batch(fn, &prb, batch, sa, sdc, sb, sdb);
}

void nomul_gemm_backward(const nomul_op_cfg *cfg, CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta,
                         CBLAS_TRANSPOSE tb, int m, int n, int k, const float *a, int lda,
                         const float *b, int ldb, const float *dc, int lddc, float beta, float *da,
                         int ldda, float *db, int lddb)
{
    backward("nomul_gemm_backward", cfg, layout, ta, tb, m, n, k, a, lda, 0, b, ldb, 0, dc, lddc,
             0, beta, da, ldda, 0, db, lddb, 0, 1);
}

void nomul_gemm_backward_batched(const nomul_op_cfg *cfg, CBLAS_LAYOUT layout,
                                 CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
                                 const float *a, int lda, long stride_a, const float *b, int ldb,
                                 long stride_b, const float *dc, int lddc, long stride_dc,
                                 float beta, float *da, int ldda, long stride_da, float *db,
                                 int lddb, long stride_db, int batch)
{
    backward("nomul_gemm_backward_batched", cfg, layout, ta, tb, m, n, k, a, lda, stride_a, b,
             ldb, stride_b, dc, lddc, stride_dc, beta, da, ldda, stride_da, db, lddb, stride_db,
             batch);
}
