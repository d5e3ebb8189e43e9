/*
 * ukernel_scalar.c — the microkernels in plain C (4×4): the scalar path of
 * the matrix engine and the readable statement of what the SIMD kernels do.
 */
#include <string.h>

#include "gemm_internal.h"

#define PG_PACK_NAME pack_panel
#define PG_PACK_T_NAME pack_tile
#define PG_FWD_ROW_NAME dw_fwd_row
#define PG_STATS_NAME value_stats
#define PG_DOT_ROW_NAME dw_dot_row
#define PG_DX_ROW_NAME dw_dx_row
#define PG_DW_ROW_NAME dw_dw_row
#define PG_PACK_VB 16
#include "pack.inc"

#define MR 4
#define NR 4

static void store(float acc[MR][NR], float *c, long ldc, int add)
{
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++)
            c[r * ldc + j] = add ? c[r * ldc + j] + acc[r][j] : acc[r][j];
}

/* whether a product counts: masks are valid only for the panels flagged */
static int keep(int masked, int32_t xm, int32_t ym) /* ym: -1 when Y has no zeros */
{
    return (!(masked & PG_ZEROS_X) || xm) && (!(masked & PG_ZEROS_Y) || ym);
}

static float as_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ct[r][c] = Σ_p float(xp[p][r] + yp[p][c]), skipping zero operands */
static void fwd_4x4(int kc, const uint32_t *xp, const uint32_t *yp, const int32_t *xm,
                    const int32_t *ym, int masked, float *ct, long ldc, int add)
{
    float acc[MR][NR] = {{0}};
    for (int p = 0; p < kc; p++)
        for (int r = 0; r < MR; r++)
            for (int c = 0; c < NR; c++)
                if (keep(masked, xm[p * MR + r], (masked & PG_ZEROS_Y) ? ym[p * NR + c] : -1))
                    acc[r][c] += as_float(xp[p * MR + r] + yp[p * NR + c]);
    store(acc, ct, ldc, add);
}

/* grad A (ga): ct[r][c] = Σ_p float(((yp[p][c] + tile[r][c]) & sign|exp) + xp[p][r]);
 * grad B: ct[r][c] = Σ_p float(((xp[p][r] + tile[r][c]) & sign|exp) + yp[p][c]) */
static void grad_4x4(int ga, int kc, const uint32_t *xp, const uint32_t *yp, const uint32_t *tile,
                     const int32_t *xm, const int32_t *ym, int masked, float *ct, long ldc,
                     int add)
{
    float acc[MR][NR] = {{0}};
    for (int p = 0; p < kc; p++)
        for (int r = 0; r < MR; r++)
            for (int c = 0; c < NR; c++) {
                if (!keep(masked, xm[p * MR + r], (masked & PG_ZEROS_Y) ? ym[p * NR + c] : -1))
                    continue;
                uint32_t x = xp[p * MR + r], y = yp[p * NR + c], t = tile[r * NR + c];
                acc[r][c] += ga ? as_float(((y + t) & PG_SIGN_EXP) + x)
                                : as_float(((x + t) & PG_SIGN_EXP) + y);
            }
    store(acc, ct, ldc, add);
}

static void grad_a_4x4(int kc, const uint32_t *xp, const uint32_t *yp, const uint32_t *tile,
                       const int32_t *xm, const int32_t *ym, int masked, float *ct, long ldc,
                       int add)
{
    grad_4x4(1, kc, xp, yp, tile, xm, ym, masked, ct, ldc, add);
}

static void grad_b_4x4(int kc, const uint32_t *xp, const uint32_t *yp, const uint32_t *tile,
                       const int32_t *xm, const int32_t *ym, int masked, float *ct, long ldc,
                       int add)
{
    grad_4x4(0, kc, xp, yp, tile, xm, ym, masked, ct, ldc, add);
}

/* This instruction set's context: its kernels, packing and block sizes,
 * registered together (gemm_internal.h). */
const pg_cntx pg_cntx_scalar = {
    .isa = NOMUL_ISA_SCALAR,
    .fwd = {MR, NR, fwd_4x4},
    .grad = {MR, NR, grad_a_4x4, grad_b_4x4},
    .fwd_direct = NULL,
    .pack = pack_panel,
    .pack_tile = pack_tile,
    .dw_rows = {dw_fwd_row, dw_dx_row, dw_dw_row, dw_dot_row, value_stats},
    .pad_planes = conv_pad_planes_plain,
    .split_planes = conv_split_planes_plain,
    .kc = PG_KC,
    .mc = PG_MC,
    .nc = PG_NC,
};
