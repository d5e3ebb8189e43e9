/*
 * gemm_float.c — every float product nomul computes goes through here, to
 * OpenBLAS on nomul's own threads.
 *
 * One thread pool. OpenBLAS (Debian's pthreads build) runs its own threads;
 * started beside nomul's OpenMP threads they compete for the same cores, both
 * spinning while they wait, and a small product gains nothing from a second
 * thread anyway (issue 14 measured the default float ViT at 0.4× of the same
 * run with OpenBLAS held to one thread). So OpenBLAS is held to one thread,
 * and nomul splits a product that is worth splitting into blocks of rows or
 * columns of C, computed in parallel by its OpenMP threads, each block one
 * single-threaded cblas_sgemm.
 *
 * Results that do not depend on the thread count. OpenBLAS's sums are not
 * invariant under splitting C (its small-matrix and edge kernels order them
 * differently), so the blocks are a function of the product's shape only:
 * the same calls are made, with the same operands, at 1 or 64 threads,
 * inside or outside a parallel region; threads only decide who runs which.
 */
#include <pthread.h>

#include <omp.h>

#include "../core/internal.h"
#include "gemm_internal.h"

/* Below this many multiply-adds a product is one call (a few µs). */
#define SPLIT_MIN_WORK (1L << 18)
/* At most this many blocks: enough to balance up to 16 threads. */
#define SPLIT_MAX_BLOCKS 16
/* Blocks are multiples of this many rows or columns (OpenBLAS's AVX-512
 * sgemm tiles are 16 or 32 wide), and at least two of them. */
#define SPLIT_ALIGN 16

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_one_thread(void) { openblas_set_num_threads(1); }

void nomul_blas_hold_one_thread(void)
{
    pthread_once(&blas_once, blas_one_thread);
    /* a caller of cblas beside nomul (a benchmark, a user's program) may
     * have changed it since */
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
}

long nomul_sgemm_block_size(int rows, int cols, int k, int *split_rows)
{
    int dim = rows >= cols ? rows : cols;
    *split_rows = rows >= cols;
    if ((long)rows * cols * k < SPLIT_MIN_WORK || dim < 4 * SPLIT_ALIGN)
        return dim;
    long bs = (dim + SPLIT_MAX_BLOCKS - 1) / SPLIT_MAX_BLOCKS;
    bs = (bs + SPLIT_ALIGN - 1) / SPLIT_ALIGN * SPLIT_ALIGN;
    return bs < 2 * SPLIT_ALIGN ? 2 * SPLIT_ALIGN : bs;
}

typedef struct {
    CBLAS_TRANSPOSE ta, tb;
    int ta_, tb_, rows_split, dim;
    long bs;
    int m, n, k;
    const float *a;
    int lda;
    const float *b;
    int ldb;
    float beta;
    float *c;
    int ldc;
} sgemm_blocks;

/* Block i: rows lo.. of op(A) and C, or columns lo.. of op(B) and C. */
static void sgemm_block(const sgemm_blocks *j, int i)
{
    long lo = (long)i * j->bs;
    int len = (int)(j->dim - lo < j->bs ? j->dim - lo : j->bs);
    if (j->rows_split)
        cblas_sgemm(CblasRowMajor, j->ta, j->tb, len, j->n, j->k, 1.0f,
                    j->ta_ ? j->a + lo : j->a + lo * j->lda, j->lda, j->b, j->ldb, j->beta,
                    j->c + lo * j->ldc, j->ldc);
    else
        cblas_sgemm(CblasRowMajor, j->ta, j->tb, j->m, len, j->k, 1.0f, j->a, j->lda,
                    j->tb_ ? j->b + lo * j->ldb : j->b + lo, j->ldb, j->beta, j->c + lo, j->ldc);
}

void nomul_sgemm(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n,
                 int k, const float *a, int lda, const float *b, int ldb, float beta, float *c,
                 int ldc)
{
    nomul_blas_hold_one_thread();
    /* In column-major terms C is the row-major C's transpose: Cᵀ = op(B)ᵀ op(A)ᵀ.
     * Work in row-major terms from here on. */
    if (layout == CblasColMajor) {
        const float *tp = a;
        a = b;
        b = tp;
        int ti = lda;
        lda = ldb;
        ldb = ti;
        CBLAS_TRANSPOSE tt = ta;
        ta = tb;
        tb = tt;
        ti = m;
        m = n;
        n = ti;
    }
    int rows_split;
    long bs = nomul_sgemm_block_size(m, n, k, &rows_split);
    int dim = rows_split ? m : n;
    int blocks = (int)((dim + bs - 1) / bs);
    if (blocks <= 1) {
        cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    int nt = omp_in_parallel() ? 1 : nomul_num_threads();
    int ta_ = ta == CblasTrans || ta == CblasConjTrans;
    int tb_ = tb == CblasTrans || tb == CblasConjTrans;
    sgemm_blocks job = {ta, tb, ta_, tb_, rows_split, dim, bs, m, n, k, a, lda, b, ldb, beta, c,
                        ldc};
    /* one thread: no OpenMP team (a team of one still makes a futex system
     * call at its barrier) */
    if (nt <= 1) {
        for (int i = 0; i < blocks; i++)
            sgemm_block(&job, i);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int i = 0; i < blocks; i++)
        sgemm_block(&job, i);
}
