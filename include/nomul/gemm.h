/*
 * nomul/gemm.h — the piecewise affine matrix products: C = Σ_k PAM(a_ik, b_kj),
 * their exact backward, and strided batched versions, with cblas_sgemm's
 * conventions (layout and transpose flags from OpenBLAS's cblas.h).
 *
 * Every product is exactly the scalar nomul_pam_mul (or nomul_pam_mul_off
 * when offset != 1); sums are float32, in an order that may differ from a
 * plain loop. Bad arguments (a negative size, a leading dimension too small,
 * beta other than 0 or 1, an offset that is not a normal float) are
 * reported through nomul/error.h and leave the outputs untouched.
 *
 * Threads: NOMUL_NUM_THREADS (nomul/threads.h), default every core; a call
 * made from inside an OpenMP parallel region runs on its calling thread.
 */
#ifndef NOMUL_GEMM_H
#define NOMUL_GEMM_H

#include <cblas.h>

#ifdef __cplusplus
extern "C" {
#endif

/* C (m×n) = [C +] Σ_k PAM(op(A)_ik, op(B)_kj) (PAM with offset if offset != 1);
 * beta is 0 (write) or 1 (accumulate). */
void nomul_pam_sgemm(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n,
                     int k, const float *a, int lda, const float *b, int ldb, float beta, float *c,
                     int ldc, float offset);

/* The exact backward of C = PAM-GEMM(op(A), op(B)) given dC (m×n, in the same
 * layout, leading dimension lddc):
 *   grad_a: dop(A)_ik = Σ_j ∂PAM(a_ik, b_kj)/∂a · dC_ij   → da (m×k as op(A), ldda)
 *   grad_b: dop(B)_kj = Σ_i ∂PAM(a_ik, b_kj)/∂b · dC_ij   → db (k×n as op(B), lddb)
 * The outputs are laid out like op(A) and op(B) themselves: with ta = Trans
 * the gradient of A is written transposed back into A's shape (lda-style
 * indexing of da with ldda). beta 0 writes, 1 accumulates. */
void nomul_pam_sgemm_grad_a(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m,
                            int n, int k, const float *a, int lda, const float *b, int ldb,
                            const float *dc, int lddc, float beta, float *da, int ldda,
                            float offset);
void nomul_pam_sgemm_grad_b(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m,
                            int n, int k, const float *a, int lda, const float *b, int ldb,
                            const float *dc, int lddc, float beta, float *db, int lddb,
                            float offset);

/* Both gradients of C = PAM-GEMM(op(A), op(B)) in one call (da or db may be
 * NULL): approx = 0 is the exact backward above; approx = 1 the approximate
 * one, two PAM GEMMs on transposed operands, dop(A) = PAM-GEMM(dC, op(B)ᵀ)
 * and dop(B) = PAM-GEMM(op(A)ᵀ, dC), with the same offset. */
void nomul_pam_sgemm_backward(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m,
                              int n, int k, const float *a, int lda, const float *b, int ldb,
                              const float *dc, int lddc, float beta, float *da, int ldda,
                              float *db, int lddb, float offset, int approx);

/* Strided batched versions: batch products, operand i at base + i·stride. */
void nomul_pam_sgemm_batched(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m,
                             int n, int k, const float *a, int lda, long stride_a,
                             const float *b, int ldb, long stride_b, float beta, float *c,
                             int ldc, long stride_c, int batch, float offset);
void nomul_pam_sgemm_grad_a_batched(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta,
                                    CBLAS_TRANSPOSE tb, int m, int n, int k, const float *a,
                                    int lda, long stride_a, const float *b, int ldb,
                                    long stride_b, const float *dc, int lddc, long stride_dc,
                                    float beta, float *da, int ldda, long stride_da, int batch,
                                    float offset);
void nomul_pam_sgemm_grad_b_batched(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta,
                                    CBLAS_TRANSPOSE tb, int m, int n, int k, const float *a,
                                    int lda, long stride_a, const float *b, int ldb,
                                    long stride_b, const float *dc, int lddc, long stride_dc,
                                    float beta, float *db, int lddb, long stride_db, int batch,
                                    float offset);

/* The packing buffers are kept per calling thread between calls; this frees
 * the calling thread's (they are also reused, never leaked, if not called). */
void nomul_gemm_release_buffers(void);

/* Float baseline with the same batched layout, through OpenBLAS (alpha 1). */
void nomul_sgemm_batched(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m,
                         int n, int k, const float *a, int lda, long stride_a, const float *b,
                         int ldb, long stride_b, float beta, float *c, int ldc, long stride_c,
                         int batch);

#ifdef __cplusplus
}
#endif
#endif
