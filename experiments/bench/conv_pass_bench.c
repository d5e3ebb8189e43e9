/*
 * conv_pass_bench.c — one pass of one convolution layer, timed on one
 * thread unless asked (batch 64, x half zeros as after a ReLU, weights and dy without
 * zeros), best of REPS calls: the harness behind the README's per-layer
 * A/B figures since the twenty-eighth round. Unlike `nomul bench conv`,
 * which compares PAM with float inside one binary, it is linked against a
 * library build, so that two builds can be timed in turn on a noisy
 * machine (experiments/bench/conv_ab.sh).
 *
 *   build/conv_pass_bench CIN COUT HW K STRIDE PASS MODE [REPS (50)] [PATHS]
 *
 * HW: the square input's side; K: the square kernel (padding K / 2); PASS:
 * 0 forward, 1 data gradient as the autodiff graph asks for it after a ReLU
 * (nomul_conv2d_backward_data_live), 2 weight gradient, 3 both in one call
 * (nomul_conv2d_backward_live, as the graph's backward runs them); MODE: 0 float, 1
 * PAM with exact derivatives, 2 PAM with the approximate backward. PATHS
 * forces the paths that skip x's zeros, for the README's comparisons of a
 * path against its dense twin: a comma list of dwplane (the weight
 * gradient by input), dxlive (the data gradient at live inputs), xsparse
 * (the weight gradient's per-tile lists), fsparse (the forward's lists),
 * clane (the products with lanes along channels), each =auto, =never or
 * =always (the library's test modes, declared weak: a build without one
 * says so and stops); threads=N (1 unless given); zeros=P, the percentage
 * of x's values that are zero (50 unless given); cold=1, x and dy out of
 * cache before each call (a 128 MB buffer written in between). Prints one line: the
 * layer, and the best time in ms.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nomul/nomul.h"

#include "bench_util.h"

/* the library's path modes (src/gemm/conv2d_internal.h: 0 auto, 1 never,
 * 2 always); weak, so that a revision without one still links */
extern int conv_dwplane_mode __attribute__((weak));
extern int conv_dxlive_mode __attribute__((weak));
extern int conv_xsparse_mode __attribute__((weak));
extern int conv_fsparse_mode __attribute__((weak));
extern int conv_clane_mode __attribute__((weak));

/* PATHS (above), threads=N, zeros=P and cold=0|1; 0 after a message */
static int threads = 1, zeros = 50, cold = 0;
static int force_paths(const char *prog, const char *arg)
{
    static const char *const modes[] = {"auto", "never", "always"};
    struct {
        const char *name;
        int *mode;
    } paths[] = {{"dwplane", &conv_dwplane_mode},
                 {"dxlive", &conv_dxlive_mode},
                 {"xsparse", &conv_xsparse_mode},
                 {"fsparse", &conv_fsparse_mode},
                 {"clane", &conv_clane_mode}};
    char buf[256];
    snprintf(buf, sizeof buf, "%s", arg);
    for (char *item = strtok(buf, ","); item; item = strtok(NULL, ",")) {
        const char *eq = strchr(item, '=');
        const size_t len = eq ? (size_t)(eq - item) : 0;
        if (eq && len == 7 && !strncmp(item, "threads", 7)) {
            char *end;
            long t = strtol(eq + 1, &end, 10);
            if (*end || t < 1 || t > 256) {
                fprintf(stderr, "%s: PATHS: '%s': threads wants 1 to 256\n", prog, item);
                return 0;
            }
            threads = (int)t;
            continue;
        }
        if (eq && len == 5 && !strncmp(item, "zeros", 5)) {
            char *end;
            long z = strtol(eq + 1, &end, 10);
            if (*end || z < 0 || z > 100) {
                fprintf(stderr, "%s: PATHS: '%s': zeros wants a percentage, 0 to 100\n", prog,
                        item);
                return 0;
            }
            zeros = (int)z;
            continue;
        }
        if (eq && len == 4 && !strncmp(item, "cold", 4) && (eq[1] == '0' || eq[1] == '1') &&
            !eq[2]) {
            cold = eq[1] == '1';
            continue;
        }
        int p = 0, m = 0;
        while (p < 5 && !(strlen(paths[p].name) == len && !strncmp(paths[p].name, item, len)))
            p++;
        while (eq && m < 3 && strcmp(modes[m], eq + 1) != 0)
            m++;
        if (!eq || p == 5 || m == 3) {
            fprintf(stderr,
                    "%s: PATHS: '%s' is not PATH=auto|never|always with PATH dwplane, dxlive, "
                    "xsparse, fsparse or clane, nor threads=N, zeros=P or cold=0|1\n",
                    prog, item);
            return 0;
        }
        if (!paths[p].mode) {
            fprintf(stderr, "%s: this library build has no %s mode\n", prog, paths[p].name);
            return 0;
        }
        *paths[p].mode = m;
    }
    return 1;
}

static uint64_t rng = 7;
static uint32_t rnd16(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 40) & 0xFFFF;
}

int main(int argc, char **argv)
{
    const char *prog = "conv_pass_bench";
    if (argc < 8) {
        fprintf(stderr, "usage: %s CIN COUT HW K STRIDE PASS MODE [REPS] [PATHS]\n", prog);
        return 2;
    }
    const int cin = (int)bench_arg(prog, argc, argv, 1, 16, 1, 1024, "CIN");
    const int cout = (int)bench_arg(prog, argc, argv, 2, 16, 1, 1024, "COUT");
    const int hw = (int)bench_arg(prog, argc, argv, 3, 28, 1, 512, "HW");
    const int k = (int)bench_arg(prog, argc, argv, 4, 3, 1, 7, "K");
    const int stride = (int)bench_arg(prog, argc, argv, 5, 1, 1, 4, "STRIDE");
    const int pass = (int)bench_arg(prog, argc, argv, 6, 0, 0, 3, "PASS");
    const int mode = (int)bench_arg(prog, argc, argv, 7, 0, 0, 2, "MODE");
    const int reps = (int)bench_arg(prog, argc, argv, 8, 50, 1, 100000, "REPS");
    if (argc > 9 && !force_paths(prog, argv[9]))
        return 2;
    nomul_set_num_threads(threads);
    nomul_conv2d_desc d = {64, cin, hw, hw, cout, k, k, stride, stride, k / 2, k / 2, 1, 1, 1};
    int oh, ow;
    if (!nomul_conv2d_output_size(&d, &oh, &ow))
        return 2; /* reported */
    const size_t nx = (size_t)d.n * cin * hw * hw, nw = (size_t)cout * cin * k * k,
                 ny = (size_t)d.n * cout * oh * ow;
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *y = malloc(ny * 4), *dy = malloc(ny * 4),
          *dx = malloc(nx * 4), *dw = malloc(nw * 4);
    if (!x || !w || !y || !dy || !dx || !dw) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }
    for (size_t i = 0; i < nx; i++) /* positive, zeros% of them zero (half: a ReLU's) */
        x[i] = rnd16() < zeros * 65536u / 100 ? 0.0f : (float)rnd16() / 65536.0f + 0.01f;
    for (size_t i = 0; i < nw; i++)
        w[i] = (float)rnd16() / 32768.0f - 0.999f;
    for (size_t i = 0; i < ny; i++)
        dy[i] = (float)rnd16() / 32768.0f - 0.999f;
    const nomul_op_cfg cfg = {mode ? NOMUL_OP_PAM : NOMUL_OP_STANDARD, mode == 2, 1.0f};
    /* cold=1: a 128 MB buffer written between calls, so that x and dy come
     * from memory as in a training step (the layer's input was written long
     * before its backward) */
    const size_t nev = cold ? (size_t)32 << 20 : 0;
    float *ev = cold ? malloc(nev * 4) : NULL;
    if (cold && !ev) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        for (size_t i = 0; i < nev; i += 16)
            ev[i] = (float)r;
        double t0 = bench_now();
        if (pass == 0)
            nomul_conv2d_forward(&d, &cfg, x, w, NULL, y);
        else if (pass == 1)
            nomul_conv2d_backward_data_live(&d, &cfg, x, w, dy, dx);
        else if (pass == 2)
            nomul_conv2d_backward_weight(&d, &cfg, x, w, dy, dw, NULL);
        else
            nomul_conv2d_backward_live(&d, &cfg, x, w, dy, dx, dw, NULL);
        double t = bench_now() - t0;
        best = t < best ? t : best;
    }
    static const char *passes[] = {"forward", "dX (live)", "dW", "dX (live) and dW"};
    static const char *modes[] = {"float", "PAM exact", "PAM approximate"};
    printf("%d -> %d %dx%d k%d s%d %s %s: %.3f ms\n", cin, cout, hw, hw, k, stride,
           passes[pass], modes[mode], 1e3 * best);
    free(x); free(w); free(y); free(dy); free(dx); free(dw); free(ev);
    return 0;
}
