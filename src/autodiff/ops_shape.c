/*
 * ops_shape.c — the autodiff operations that move entries without
 * arithmetic: transpose, concat, narrow (copies), embedding (rows of a
 * table by id); and the sinusoidal position table, a constant. Each
 * backward accumulates (+=) into its inputs' gradients and quotes its
 * forward.
 */
#include <math.h>
#include <string.h>

#include "../core/internal.h"
#include "graph_internal.h"

/* ---- transpose ------------------------------------------------------------------------------ */

/* y = x with dimensions d0 and d1 swapped, as a 5-D view: x is (A, P, B, Q,
 * C) with P, Q the swapped sizes, y is (A, Q, B, P, C); C (the dimensions
 * after both) is contiguous in both, so rows of C values are copied whole.
 * add: x's layout receives y's values (dst[x index] += src[y index]), the
 * backward. */
static void transpose_copy(const nomul_tensor *x, int d0, int d1, const float *src, float *dst,
                           int add)
{
    if (d0 == d1) { /* the same tensor */
        for (long i = 0; i < x->n; i++)
            dst[i] = add ? dst[i] + src[i] : src[i];
        return;
    }
    if (d0 > d1) {
        int t = d0;
        d0 = d1;
        d1 = t;
    }
    long A = 1, B = 1, C = 1;
    for (int d = 0; d < d0; d++)
        A *= x->shape[d];
    for (int d = d0 + 1; d < d1; d++)
        B *= x->shape[d];
    for (int d = d1 + 1; d < x->ndim; d++)
        C *= x->shape[d];
    const long P = x->shape[d0], Q = x->shape[d1];
    /* each (a, q) writes its own elements (y's (a, q, ·) block, or x's
     * (a, ·, ·, q, ·) ones): on all threads; the runs of C as loops the
     * compiler vectorizes (a memcpy call per attention head's few dozen
     * floats cost more than the copy) */
#pragma omp parallel for collapse(2) schedule(static) num_threads(nomul_light_threads(x->n))
    for (long a = 0; a < A; a++)
        for (long q = 0; q < Q; q++)
            for (long b = 0; b < B; b++)
                for (long p = 0; p < P; p++) {
                    long xo = (((a * P + p) * B + b) * Q + q) * C; /* x (a, p, b, q, ·) */
                    long yo = (((a * Q + q) * B + b) * P + p) * C; /* y (a, q, b, p, ·) */
                    if (add) {
                        float *restrict d = dst + xo;
                        const float *restrict s_ = src + yo;
                        for (long c = 0; c < C; c++)
                            d[c] += s_[c];
                    } else {
                        float *restrict d = dst + yo;
                        const float *restrict s_ = src + xo;
                        for (long c = 0; c < C; c++)
                            d[c] = s_[c];
                    }
                }
}

/* forward: y = swap(x, d0, d1) */
void ad_transpose_backward(const node *nd)
{
    /* dx[swap(idx)] += dy[idx] */
    transpose_copy(nd->in[0], nd->p.transpose.d0, nd->p.transpose.d1, nd->out->grad,
                   nd->in[0]->grad, 1);
}

nomul_tensor *nomul_transpose(nomul_graph *g, nomul_tensor *x, int d0, int d1)
{
    if (!x)
        return NULL;
    if (d0 < 0 || d1 < 0 || d0 >= x->ndim || d1 >= x->ndim) {
        nomul_report(NOMUL_EINVAL, "nomul_transpose: dimensions %d, %d of a %d-D tensor", d0, d1,
                     x->ndim);
        return NULL;
    }
    int shape[NOMUL_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[d0] = x->shape[d1];
    shape[d1] = x->shape[d0];
    nomul_tensor *y = ad_output(g, x->ndim, shape, ad_wants_grad(g, x, NULL, NULL));
    if (!y)
        return NULL;
    transpose_copy(x, d0, d1, x->data, y->data, 0);
    ad_record(g, AD_OP_TRANSPOSE, NULL, &(ad_params){.transpose = {d0, d1}}, y, x, NULL, NULL);
    return y;
}

/* ---- concat and narrow -------------------------------------------------------------------------- */

/* Sizes around dimension dim: the product of the dimensions before it and
 * after it. */
static void around(const nomul_tensor *x, int dim, long *outer, long *inner)
{
    *outer = *inner = 1;
    for (int d = 0; d < dim; d++)
        *outer *= x->shape[d];
    for (int d = dim + 1; d < x->ndim; d++)
        *inner *= x->shape[d];
}

/* forward: y = a and b joined along dim */
void ad_concat_backward(const node *nd)
{
    const int dim = nd->p.concat.dim;
    long outer, inner;
    around(nd->out, dim, &outer, &inner);
    const long ra = nd->in[0]->shape[dim] * inner, rb = nd->in[1]->shape[dim] * inner;
    const float *dy = nd->out->grad;
    for (long o = 0; o < outer; o++) {
        const float *src = dy + o * (ra + rb);
        if (nd->in[0]->grad)
            for (long i = 0; i < ra; i++)
                nd->in[0]->grad[o * ra + i] += src[i];
        if (nd->in[1]->grad)
            for (long i = 0; i < rb; i++)
                nd->in[1]->grad[o * rb + i] += src[ra + i];
    }
}

nomul_tensor *nomul_concat(nomul_graph *g, nomul_tensor *a, nomul_tensor *b, int dim)
{
    if (!a || !b)
        return NULL;
    int ok = a->ndim == b->ndim && dim >= 0 && dim < a->ndim;
    for (int d = 0; ok && d < a->ndim; d++)
        ok = d == dim || a->shape[d] == b->shape[d];
    if (!ok) {
        nomul_report(NOMUL_EINVAL, "nomul_concat: a %d-D and a %d-D tensor along dimension %d "
                     "(every other dimension must agree)", a->ndim, b->ndim, dim);
        return NULL;
    }
    int shape[NOMUL_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[dim] = a->shape[dim] + b->shape[dim];
    nomul_tensor *y = ad_output_zeroed(g, a->ndim, shape, ad_wants_grad(g, a, b, NULL));
    if (!y)
        return NULL;
    long outer, inner;
    around(a, dim, &outer, &inner);
    const long ra = a->shape[dim] * inner, rb = b->shape[dim] * inner;
    for (long o = 0; o < outer; o++) {
        memcpy(y->data + o * (ra + rb), a->data + o * ra, (size_t)ra * sizeof(float));
        memcpy(y->data + o * (ra + rb) + ra, b->data + o * rb, (size_t)rb * sizeof(float));
    }
    ad_record(g, AD_OP_CONCAT, NULL, &(ad_params){.concat = {dim}}, y, a, b, NULL);
    return y;
}

/* forward: y = x's entries start .. start+len−1 along dim */
void ad_narrow_backward(const node *nd)
{
    const int dim = nd->p.narrow.dim, start = nd->p.narrow.start;
    const nomul_tensor *x = nd->in[0];
    long outer, inner;
    around(x, dim, &outer, &inner);
    const long rx = x->shape[dim] * inner, ry = nd->out->shape[dim] * inner;
    for (long o = 0; o < outer; o++)
        for (long i = 0; i < ry; i++)
            x->grad[o * rx + start * inner + i] += nd->out->grad[o * ry + i];
}

nomul_tensor *nomul_narrow(nomul_graph *g, nomul_tensor *x, int dim, int start, int len)
{
    if (!x)
        return NULL;
    if (dim < 0 || dim >= x->ndim || start < 0 || len < 1 || start > x->shape[dim] - len) {
        nomul_report(NOMUL_EINVAL, "nomul_narrow: entries %d..%d of dimension %d of a %d-D "
                     "tensor", start, start + len - 1, dim, x->ndim);
        return NULL;
    }
    int shape[NOMUL_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[dim] = len;
    nomul_tensor *y = ad_output_zeroed(g, x->ndim, shape, ad_wants_grad(g, x, NULL, NULL));
    if (!y)
        return NULL;
    long outer, inner;
    around(x, dim, &outer, &inner);
    const long rx = x->shape[dim] * inner, ry = (long)len * inner;
    for (long o = 0; o < outer; o++)
        memcpy(y->data + o * ry, x->data + o * rx + start * inner, (size_t)ry * sizeof(float));
    ad_record(g, AD_OP_NARROW, NULL, &(ad_params){.narrow = {dim, start}}, y, x, NULL, NULL);
    return y;
}

/* ---- embedding -------------------------------------------------------------------------- */

/* forward: y[i] = table[ids[i]] */
void ad_embedding_backward(const node *nd)
{
    nomul_tensor *table = nd->in[0], *y = nd->out;
    int dim = table->shape[1];
    for (int i = 0; i < y->shape[0]; i++) {
        float *dst = table->grad + (long)nd->p.embedding.ids[i] * dim;
        const float *src = y->grad + (long)i * dim;
        for (int j = 0; j < dim; j++)
            dst[j] += src[j];
    }
}

nomul_tensor *nomul_embedding(nomul_graph *g, nomul_tensor *table, const int *ids, int n)
{
    if (!table)
        return NULL;
    if (table->ndim != 2 || !ids || n < 1) {
        nomul_report(NOMUL_EINVAL, "nomul_embedding: the table must be (vocab, dim), with ids");
        return NULL;
    }
    int vocab = table->shape[0], dim = table->shape[1];
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab) {
            nomul_report(NOMUL_EINVAL, "nomul_embedding: id %d at position %d is outside the "
                         "vocabulary of %d", ids[i], i, vocab);
            return NULL;
        }
    int shape[2] = {n, dim};
    nomul_tensor *y = ad_output_zeroed(g, 2, shape, ad_wants_grad(g, table, NULL, NULL));
    if (!y)
        return NULL;
    for (int i = 0; i < n; i++)
        memcpy(y->data + (long)i * dim, table->data + (long)ids[i] * dim, (size_t)dim * 4);
    ad_record(g, AD_OP_EMBEDDING, NULL, &(ad_params){.embedding = {ids}}, y, table, NULL, NULL);
    return y;
}

void nomul_sinusoidal_positions(int positions, int dim, float *out)
{
    int half = dim / 2;
    double step = half > 1 ? log(10000.0) / (half - 1) : 0.0;
    for (int p = 0; p < positions; p++) {
        for (int i = 0; i < half; i++) {
            double a = p * exp(-step * i);
            out[(long)p * dim + i] = (float)sin(a);
            out[(long)p * dim + half + i] = (float)cos(a);
        }
        if (dim % 2)
            out[(long)p * dim + dim - 1] = 0.0f;
    }
}
