/*
 * nomul/gemm.h — the matrix products of one operation family, as its
 * configuration (nomul/opcfg.h) says: float through OpenBLAS, or piecewise
 * affine, C = Σ_k PAM(a_ik, b_kj); their backward (float, exact or
 * approximate PA) and strided batched versions, with cblas_sgemm's
 * conventions (layout and transpose flags from OpenBLAS's cblas.h).
 *
 * Every PA product is exactly the scalar nomul_pa_mul (or nomul_pa_mul_off
 * when the offset is not 1); sums are float32, in an order that may differ
 * from a plain loop. Bad arguments (a NULL cfg, a negative size, a leading
 * dimension too small, beta other than 0 or 1, a PA offset that is not a
 * normal float) are reported through nomul/error.h and leave the outputs
 * untouched.
 *
 * Threads: NOMUL_NUM_THREADS (nomul/threads.h), default every core; a call
 * made from inside an OpenMP parallel region runs on its calling thread.
 */
#ifndef NOMUL_GEMM_H
#define NOMUL_GEMM_H

#include <cblas.h>

#include "nomul/opcfg.h"

#ifdef __cplusplus
extern "C" {
#endif

/* C (m×n) = [C +] op(A) · op(B), beta 0 (write) or 1 (accumulate), as
 * cfg says: standard, cblas_sgemm (alpha 1); piecewise affine,
 * Σ_k PAM(op(A)_ik, op(B)_kj) (with cfg->offset when it is not 1). */
void nomul_gemm(const nomul_op_cfg *cfg, CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta,
                CBLAS_TRANSPOSE tb, int m, int n, int k, const float *a, int lda, const float *b,
                int ldb, float beta, float *c, int ldc);

/* The gradients of C = nomul_gemm(cfg, op(A), op(B)) given dC (m×n, in the
 * same layout, leading dimension lddc), written (beta 0) or added (beta 1)
 * to da and db (either may be NULL). They are laid out like A and B
 * themselves: with ta = Trans the gradient of A is written transposed back
 * into A's shape (lda-style indexing of da with ldda).
 *   standard, or piecewise affine with cfg->approx_bwd: the two products
 *     dop(A) = dC · op(B)ᵀ and dop(B) = op(A)ᵀ · dC by nomul_gemm with cfg
 *     (float, or PAM with the same offset);
 *   piecewise affine, exact (approx_bwd 0): the derivative of every PAM,
 *     dop(A)_ik = Σ_j ∂PAM(a_ik, b_kj)/∂a · dC_ij,
 *     dop(B)_kj = Σ_i ∂PAM(a_ik, b_kj)/∂b · dC_ij.
 * Every argument is checked before either gradient is written. */
void nomul_gemm_backward(const nomul_op_cfg *cfg, CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta,
                         CBLAS_TRANSPOSE tb, int m, int n, int k, const float *a, int lda,
                         const float *b, int ldb, const float *dc, int lddc, float beta, float *da,
                         int ldda, float *db, int lddb);

/* Strided batched versions: batch products, operand i at base + i·stride
 * (strides not negative). */
void nomul_gemm_batched(const nomul_op_cfg *cfg, CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta,
                        CBLAS_TRANSPOSE tb, int m, int n, int k, const float *a, int lda,
                        long stride_a, const float *b, int ldb, long stride_b, float beta,
                        float *c, int ldc, long stride_c, int batch);
void nomul_gemm_backward_batched(const nomul_op_cfg *cfg, CBLAS_LAYOUT layout,
                                 CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
                                 const float *a, int lda, long stride_a, const float *b, int ldb,
                                 long stride_b, const float *dc, int lddc, long stride_dc,
                                 float beta, float *da, int ldda, long stride_da, float *db,
                                 int lddb, long stride_db, int batch);

/* The packing buffers are kept per calling thread between calls; this frees
 * the calling thread's (they are also reused, never leaked, if not called). */
void nomul_gemm_release_buffers(void);

#ifdef __cplusplus
}
#endif
#endif
