/*
 * sparse_linear_bench.c — what skipping a ReLU's zeros is worth in a
 * transformer's feed-forward block (the eighteenth round): fc1 (D → F,
 * followed by the ReLU: its output gradient dy masked, a share of zeros) and
 * fc2 (F → D: its input x the ReLU's output, the same share), each layer's
 * three products as training makes them (nomul_gemm and nomul_gemm_backward,
 * the calls of nomul_linear; bench linear's form): forward y = x·Wᵀ, dx =
 * dy·W, dW = dyᵀ·x. PAM with the approximate backward and with the exact
 * one, each with the matrix engine's lists of X's nonzeros off
 * (pg_xsparse_mode never: the packed kernels, which mask a zero's terms) and
 * on (auto, the default), and float (OpenBLAS SGEMM) for scale; each pair of
 * PAM results is checked bit for bit. Prints ms per product (best of 3
 * interleaved rounds), never / auto, and PAM / float speed both ways.
 *
 *   make build/sparse_linear_bench && build/sparse_linear_bench [NONZERO% (50)] [T (4096)]
 *        [D (128)] [F (512)]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "gemm/gemm_internal.h"
#include "nomul/nomul.h"

enum { FWD, DX, DW, NPASS };
static const char *const pass_name[NPASS] = {"forward", "dx", "dW"};

typedef struct {
    int t, in, out;
    const float *x, *w, *dy;
    float *y, *dx, *dw;
} layer;

static void run(const layer *L, const nomul_op_cfg *cfg, int pass)
{
    if (pass == FWD)
        nomul_gemm(cfg, CblasRowMajor, CblasNoTrans, CblasTrans, L->t, L->out, L->in, L->x, L->in,
                   L->w, L->in, 0.0f, L->y, L->out);
    else
        nomul_gemm_backward(cfg, CblasRowMajor, CblasNoTrans, CblasTrans, L->t, L->out, L->in,
                            L->x, L->in, L->w, L->in, L->dy, L->out, 0.0f,
                            pass == DX ? L->dx : NULL, L->in, pass == DW ? L->dw : NULL, L->in);
}

static double best_of(const layer *L, const nomul_op_cfg *cfg, int pass, double min_time)
{
    run(L, cfg, pass);
    double best = 1e30, t0 = bench_now();
    do {
        double t1 = bench_now();
        run(L, cfg, pass);
        double t = bench_now() - t1;
        best = t < best ? t : best;
    } while (bench_now() - t0 < min_time);
    return best;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float draw(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    float u = (float)((rng >> 40) & 0xFFFFFF) / 16777216.0f;
    return u + u - 1.0f + 0x1p-20f;
}

/* a share of zeros at random places, as a ReLU (or its mask) leaves */
static void fill(float *p, size_t n, int nonzero_pct)
{
    for (size_t i = 0; i < n; i++) {
        float v = draw();
        p[i] = (rng >> 16) % 100 < (uint64_t)nonzero_pct ? v : 0.0f;
    }
}

int main(int argc, char **argv)
{
    const char *prog = "sparse_linear_bench";
    int nz = (int)bench_arg(prog, argc, argv, 1, 50, 0, 100, "NONZERO%");
    int T = (int)bench_arg(prog, argc, argv, 2, 4096, 8, 65536, "T");
    int D = (int)bench_arg(prog, argc, argv, 3, 128, 8, 8192, "D");
    int F = (int)bench_arg(prog, argc, argv, 4, 512, 8, 8192, "F");
    size_t big = (size_t)T * (D > F ? D : F), wn = (size_t)D * F;
    float *x1 = malloc(big * 4), *dy1 = malloc(big * 4), *x2 = malloc(big * 4);
    float *dy2 = malloc(big * 4), *w1 = malloc(wn * 4), *w2 = malloc(wn * 4);
    float *y = malloc(big * 4), *dx = malloc(big * 4), *dw = malloc(wn * 4);
    float *ref = malloc(big * 4);
    if (!x1 || !dy1 || !x2 || !dy2 || !w1 || !w2 || !y || !dx || !dw || !ref) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }
    fill(x1, (size_t)T * D, 100);  /* fc1's input: a layer norm's output */
    fill(dy1, (size_t)T * F, nz);  /* fc1's output gradient, the ReLU's mask applied */
    fill(x2, (size_t)T * F, nz);   /* fc2's input: the ReLU's output */
    fill(dy2, (size_t)T * D, 100); /* fc2's output gradient */
    fill(w1, wn, 100);
    fill(w2, wn, 100);
    layer L[2] = {{T, D, F, x1, w1, dy1, y, dx, dw}, {T, F, D, x2, w2, dy2, y, dx, dw}};
    const char *lname[2] = {"fc1 (dy masked)", "fc2 (x ReLU'd)"};
    static const nomul_op_cfg flt = {NOMUL_OP_STANDARD, 0, 1.0f};
    static const nomul_op_cfg pams[2] = {{NOMUL_OP_PAM, 1, 1.0f}, {NOMUL_OP_PAM, 0, 1.0f}};
    static const char *const pam_name[2] = {"approximate backward", "exact backward"};
    printf("%s: %d threads, ISA %s; T %d, D %d, F %d, %d%% of the ReLU side nonzero; best of 3 "
           "interleaved rounds\n",
           prog, nomul_get_num_threads(), nomul_isa_name(nomul_isa_active()), T, D, F, nz);
    for (int e = 0; e < 2; e++) {
        printf("\nPAM with the %s\n", pam_name[e]);
        printf("%-16s %-8s %9s %9s %9s %7s %7s %7s\n", "layer", "product", "float ms",
               "never ms", "auto ms", "speedup", "ratio", "ratio");
        printf("%-16s %-8s %9s %9s %9s %7s %7s %7s\n", "", "", "", "", "", "", "never", "auto");
        double tot[3] = {0, 0, 0};
        for (int l = 0; l < 2; l++)
            for (int p = 0; p < NPASS; p++) {
                double b[3] = {1e30, 1e30, 1e30};
                for (int round = 0; round < 3; round++)
                    for (int c = 0; c < 3; c++) {
                        pg_xsparse_mode = c == 1 ? PG_XSPARSE_NEVER : PG_XSPARSE_AUTO;
                        double t = best_of(&L[l], c == 0 ? &flt : &pams[e], p, 0.1);
                        b[c] = t < b[c] ? t : b[c];
                    }
                /* the two PAM forms' bits */
                float *out = p == FWD ? y : p == DX ? dx : dw;
                size_t n = p == FWD ? (size_t)T * L[l].out : p == DX ? (size_t)T * L[l].in : wn;
                pg_xsparse_mode = PG_XSPARSE_NEVER;
                run(&L[l], &pams[e], p);
                memcpy(ref, out, n * 4);
                pg_xsparse_mode = PG_XSPARSE_AUTO;
                run(&L[l], &pams[e], p);
                if (memcmp(ref, out, n * 4) != 0) {
                    fprintf(stderr, "%s: %s %s (%s): the lists' result differs from the packed "
                            "one\n", prog, lname[l], pass_name[p], pam_name[e]);
                    return 1;
                }
                printf("%-16s %-8s %9.3f %9.3f %9.3f %6.2fx %7.2f %7.2f\n",
                       p == 0 ? lname[l] : "", pass_name[p], 1e3 * b[0], 1e3 * b[1], 1e3 * b[2],
                       b[1] / b[2], b[0] / b[1], b[0] / b[2]);
                for (int c = 0; c < 3; c++)
                    tot[c] += b[c];
            }
        printf("the block's six products: never / auto %.2fx; PAM / float %.2f (never), %.2f "
               "(auto)\n",
               tot[1] / tot[2], tot[0] / tot[1], tot[0] / tot[2]);
    }
    free(x1), free(dy1), free(x2), free(dy2), free(w1), free(w2);
    free(y), free(dx), free(dw), free(ref);
    return 0;
}
