/*
 * fdirect.c — float products with the first operand packed once and the
 * second read in place (gemm_internal.h: fd_plan), for convolution's float
 * path: y = W · col forward and dcol = Wᵀ · dy backward, per image.
 *
 * Why not OpenBLAS there: a convolution's per-image products are short and
 * wide (16 to 64 rows of W against a column matrix of hundreds of columns),
 * and SGEMM packs the whole column matrix, a pass over memory shared by only
 * those few rows, on every call. Here W is packed once per call for all the
 * images, and the kernel reads the column matrix where im2col wrote it, as
 * the PAM engine's direct forward does (gemm_plan.c).
 */
#include <string.h>

#include <omp.h>

#include "../../core/internal.h"
#include "../gemm_internal.h"

struct fd_plan {
    const pg_cntx *cx;
    int m, k, npanels;
    float *ap; /* npanels panels of k × MR */
};

static int cdiv(int a, int b) { return (a + b - 1) / b; }

int fd_available(void) { return pg_cntx_active()->fdirect.run != NULL; }

fd_plan *fd_plan_make(int key, CBLAS_TRANSPOSE ta, int m, int k, const float *a, int lda)
{
    const pg_cntx *cx = pg_cntx_active();
    if (!cx->fdirect.run)
        return NULL;
    const int MR = cx->fdirect.mr;
    int npanels = cdiv(m, MR);
    size_t head = (sizeof(fd_plan) + 63) & ~(size_t)63;
    size_t n = (size_t)npanels * MR * (k > 0 ? k : 1);
    char *mem = nomul_scratch_bytes(NOMUL_SCRATCH_KEYED + key, head + n * sizeof(float));
    if (!mem) {
        nomul_report(NOMUL_ENOMEM, "float conv: out of memory for %d x %d packed weights", m, k);
        return NULL;
    }
    fd_plan *pl = (fd_plan *)mem;
    pl->cx = cx;
    pl->m = m;
    pl->k = k;
    pl->npanels = npanels;
    pl->ap = (float *)(mem + head);
    int t = ta == CblasTrans || ta == CblasConjTrans;
    /* element (i, p) of op(A): a[i·lda + p], or a[p·lda + i] transposed */
    for (int ip = 0; ip < npanels; ip++) {
        float *d = pl->ap + (size_t)ip * MR * k;
        int i0 = ip * MR, mr = m - i0 < MR ? m - i0 : MR;
        for (int p = 0; p < k; p++)
            for (int r = 0; r < MR; r++)
                d[(size_t)p * MR + r] = r >= mr ? 0.0f
                                        : t     ? a[(size_t)p * lda + i0 + r]
                                                : a[(size_t)(i0 + r) * lda + p];
    }
    return pl;
}

/* column tile jp: every row panel against B's strip, the strip kept in
 * cache; narrow (nw.wp), the kernels store each tile to its narrow places */
static void run_tile(const fd_plan *pl, int jp, int n, const float *b, const long *boff,
                     float *c, int ldc, pg_narrow nw)
{
    const int MR = pl->cx->fdirect.mr, NR = pl->cx->fdirect.nr;
    int j0 = jp * NR, nr = n - j0 < NR ? n - j0 : NR;
    pg_narrow at = {.wp = nw.wp, .ow = nw.ow, .j0 = j0};
    fd_operands o = {.b = b + j0, .boff = boff, .nw = nw.wp ? &at : NULL};
    for (int ip = 0; ip < pl->npanels; ip++) {
        int i0 = ip * MR, mr = pl->m - i0 < MR ? pl->m - i0 : MR;
        o.a = pl->ap + (size_t)ip * MR * pl->k;
        pl->cx->fdirect.run(pl->k, &o, mr, nr, c + (long)i0 * ldc + (nw.wp ? 0 : j0), ldc, 0);
    }
}

void fd_plan_run(const fd_plan *pl, int n, const float *b, const long *boff, float *c, int ldc,
                 pg_narrow nw)
{
    int npj = cdiv(n, pl->cx->fdirect.nr);
    int nt = omp_in_parallel() || npj < 2 ? 1 : nomul_num_threads();
    if (nt <= 1) { /* no OpenMP team: this runs once per image */
        for (int jp = 0; jp < npj; jp++)
            run_tile(pl, jp, n, b, boff, c, ldc, nw);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int jp = 0; jp < npj; jp++)
        run_tile(pl, jp, n, b, boff, c, ldc, nw);
}

/* Both operands in place. The reduction runs in chunks of whole segments,
 * about KC rows of B (the B strip of a chunk, KC × NR, stays in L1 across
 * the row panels); a chunk continues the previous one's chains from C, so
 * the sums do not depend on it. Narrow tiles where the columns would fill
 * wide ones by half or less. */
void fd_gemm_inplace(int m, int n, int k, const float *a, const long *aoff, int seg, long sstride,
                     const float *b, int ldb, float *c, int ldc, int add)
{
    enum { KC = 256 };
    const fd_ukr *u = &pg_cntx_active()->fdirect;
    const int MR = u->mr;
    fd_kernel run = u->run;
    int NR = u->nr;
    if (u->narrow && n <= NR / 2) {
        run = u->narrow;
        NR /= 2;
    }
    int per = seg >= KC ? 1 : KC / seg; /* segments per chunk */
    for (int s0 = 0; s0 * seg < k; s0 += per) {
        int p0 = s0 * seg, kc = k - p0 < per * seg ? k - p0 : per * seg, acc = add || p0 > 0;
        for (int j0 = 0; j0 < n; j0 += NR) {
            int nr = n - j0 < NR ? n - j0 : NR;
            for (int i0 = 0; i0 < m; i0 += MR) {
                int mr = m - i0 < MR ? m - i0 : MR;
                fd_operands o = {a + (long)s0 * sstride, aoff + i0, seg, sstride,
                                 b + (long)p0 * ldb + j0, NULL, ldb, NULL};
                run(kc, &o, mr, nr, c + (long)i0 * ldc + j0, ldc, acc);
            }
        }
    }
}
