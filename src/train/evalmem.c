/*
 * evalmem.c — what a forward pass without gradients (an image evaluation,
 * the validation loss, a step of beam search) needs of the graph's arena,
 * known before a run's first step from dry runs at tiny shapes.
 *
 * Every arena allocation of such a forward is a tensor (or its header) whose
 * size its shapes fix: for a batch of b, and for the transformer s source
 * and t target tokens, the bytes asked for are A(s, t) + b·B(s, t) with A
 * and B quadratic in (s, t) (attention's scores are b·heads·t·s, the causal
 * mask t·t, the positions t·d, every activation b·s·d or b·t·d); so is the
 * count of allocations. Dry runs with the run's model and arithmetic at
 * b = 1, 2 and the six (s, t) of s + t ≤ 4 give both polynomials exactly,
 * a seventh shape checks them, and since each allocation starts 64-byte
 * aligned, asked + 63·allocs bounds the arena's use at any shape.
 */
#include <math.h>
#include <string.h>

#include "../core/internal.h"
#include "trainer_internal.h"

/* the quadratic's monomials in (s, t) */
static void monomials(double s, double t, double m[EVALMEM_TERMS])
{
    const double v[EVALMEM_TERMS] = {1.0, s, t, s * s, s * t, t * t};
    memcpy(m, v, sizeof v);
}

/* Solves a x = y (n ≤ EVALMEM_TERMS) by elimination with partial pivoting. */
static void solve(int n, double a[EVALMEM_TERMS][EVALMEM_TERMS], double *y, double *x)
{
    for (int c = 0; c < n; c++) {
        int p = c;
        for (int r = c + 1; r < n; r++)
            p = fabs(a[r][c]) > fabs(a[p][c]) ? r : p;
        for (int k = 0; k < n; k++) {
            double tmp = a[c][k];
            a[c][k] = a[p][k];
            a[p][k] = tmp;
        }
        double tmp = y[c];
        y[c] = y[p];
        y[p] = tmp;
        for (int r = c + 1; r < n; r++) {
            const double f = a[r][c] / a[c][c];
            for (int k = c; k < n; k++)
                a[r][k] -= f * a[c][k];
            y[r] -= f * y[c];
        }
    }
    for (int r = n - 1; r >= 0; r--) {
        double v = y[r];
        for (int k = r + 1; k < n; k++)
            v -= a[r][k] * x[k];
        x[r] = v / a[r][r];
    }
}

/* one dry run: the bytes asked for and the allocations */
static int dry(nomul_graph *g, evalmem_forward f, void *ctx, int b, int s, int t, double *asked,
               double *allocs)
{
    nomul_graph_reset(g);
    nomul_graph_set_grad(g, 0);
    const int rc = f(ctx, g, b, s, t);
    const nomul_arena_use u = nomul_graph_arena_use(g);
    nomul_graph_set_grad(g, 1);
    nomul_graph_reset(g);
    *asked = (double)u.asked;
    *allocs = (double)u.allocs;
    return rc;
}

/* Σ (a[j] + b·bb[j])·m_j(s, t): A's and B's coefficients */
static double poly(const double *a, const double *bb, int n, double b, double s, double t)
{
    double m[EVALMEM_TERMS], v = 0.0;
    monomials(s, t, m);
    for (int j = 0; j < n; j++)
        v += (a[j] + b * bb[j]) * m[j];
    return v;
}

int evalmem_fit_new(nomul_graph *g, int lengths, evalmem_forward f, void *ctx, evalmem_fit *fit)
{
    static const int st[EVALMEM_TERMS][2] = {{1, 1}, {2, 1}, {1, 2}, {3, 1}, {2, 2}, {1, 3}};
    const int n = lengths ? EVALMEM_TERMS : 1;
    memset(fit, 0, sizeof *fit);
    fit->terms = n;
    double a[2][EVALMEM_TERMS][EVALMEM_TERMS], ya[2][EVALMEM_TERMS], yn[2][EVALMEM_TERMS];
    for (int i = 0; i < n; i++) {
        double v1, n1, v2, n2;
        if (dry(g, f, ctx, 1, st[i][0], st[i][1], &v1, &n1) ||
            dry(g, f, ctx, 2, st[i][0], st[i][1], &v2, &n2))
            return -1;
        /* (A + B), (A + 2B): B and A at this (s, t) */
        ya[1][i] = v2 - v1;
        ya[0][i] = v1 - ya[1][i];
        yn[1][i] = n2 - n1;
        yn[0][i] = n1 - yn[1][i];
        monomials(st[i][0], st[i][1], a[0][i]);
        memcpy(a[1][i], a[0][i], sizeof a[0][i]);
    }
    for (int k = 0; k < 2; k++) {
        double a2[EVALMEM_TERMS][EVALMEM_TERMS];
        memcpy(a2, a[k], sizeof a2);
        solve(n, a[k], ya[k], fit->asked[k]);
        solve(n, a2, yn[k], fit->allocs[k]);
    }
    /* the fit reproduces a shape it was not made from, or the forward's
     * memory is not of the form above and no bound is known */
    const int b = 3, s = lengths ? 4 : 1, t = lengths ? 5 : 1;
    double v, na;
    if (dry(g, f, ctx, b, s, t, &v, &na))
        return -1;
    const double pv = poly(fit->asked[0], fit->asked[1], n, b, s, t);
    const double pn = poly(fit->allocs[0], fit->allocs[1], n, b, s, t);
    if (fabs(pv - v) > 0.5 || fabs(pn - na) > 0.5) {
        nomul_report(NOMUL_EINVAL, "cannot bound the evaluation's memory: a dry run of %d × "
                     "(%d, %d) asked the arena for %.0f bytes in %.0f allocations, the fit "
                     "says %.0f in %.0f", b, s, t, v, na, pv, pn);
        return -1;
    }
    return 0;
}

double evalmem_bytes(const evalmem_fit *fit, long b, long s, long t)
{
    return poly(fit->asked[0], fit->asked[1], fit->terms, (double)b, (double)s, (double)t) +
           63.0 * poly(fit->allocs[0], fit->allocs[1], fit->terms, (double)b, (double)s, (double)t);
}
