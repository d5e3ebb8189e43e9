/*
 * graph.c — tensors, the arena and the tape (nomul/autodiff.h): graphs,
 * persistent and arena tensors, reshaped views, recording a node, and the
 * backward driver that runs the tape through the op table (optable.c). The
 * operations themselves are in ops_*.c and pool.c.
 */
#include "nomul/autodiff.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/internal.h"
#include "graph_internal.h"

#include <omp.h>

nomul_graph *nomul_graph_new(size_t arena_bytes)
{
    nomul_graph *g = calloc(1, sizeof *g);
    if (g)
        g->arena = nomul_aligned_alloc(arena_bytes);
    if (!g || !g->arena) {
        free(g);
        nomul_report(NOMUL_ENOMEM, "nomul_graph_new: cannot allocate a %zu-byte arena",
                     arena_bytes);
        return NULL;
    }
    g->size = arena_bytes;
    g->grad_enabled = 1;
    return g;
}

void nomul_graph_free(nomul_graph *g)
{
    if (!g)
        return;
    nomul_aligned_free(g->arena);
    free(g->tape);
    free(g->blocks);
    free(g->views);
    free(g->prof);
    free(g);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void nomul_graph_reset(nomul_graph *g)
{
    g->used = 0;
    g->asked = 0;
    g->allocs = 0;
    g->ntape = 0;
    g->nblocks = 0;
    g->nviews = 0;
    if (g->prof)
        g->mark = now_s();
}

/* ---- profile ----------------------------------------------------------------------------- */

static int variant_of(const nomul_op_cfg *cfg)
{
    return !nomul_op_is_pa(cfg) ? 0 : cfg->approx_bwd ? 2 : 1;
}

void nomul_graph_profile(nomul_graph *g, int on)
{
    free(g->prof);
    g->prof = NULL;
    if (on && !(g->prof = calloc((size_t)AD_OP_COUNT * AD_VARIANTS, sizeof *g->prof)))
        nomul_report(NOMUL_ENOMEM, "nomul_graph_profile: out of memory");
    g->mark = now_s();
}

static int by_time(const void *a, const void *b)
{
    const nomul_op_time *x = a, *y = b;
    double tx = x->forward_s + x->backward_s, ty = y->forward_s + y->backward_s;
    return tx < ty ? 1 : tx > ty ? -1 : strcmp(x->op, y->op);
}

int nomul_graph_profile_rows(const nomul_graph *g, nomul_op_time *rows, int max)
{
    static const char *const variants[AD_VARIANTS] = {"float", "pa", "pa approx"};
    nomul_op_time all[AD_OP_COUNT * AD_VARIANTS];
    int n = 0;
    for (int i = 0; g->prof && i < AD_OP_COUNT * AD_VARIANTS; i++)
        if (g->prof[i].calls)
            all[n++] = (nomul_op_time){ad_op_table[i / AD_VARIANTS].name,
                                       variants[i % AD_VARIANTS], g->prof[i].calls,
                                       g->prof[i].fwd, g->prof[i].bwd};
    qsort(all, (size_t)n, sizeof *all, by_time);
    for (int i = 0; i < n && i < max; i++)
        rows[i] = all[i];
    return n;
}

void nomul_graph_set_grad(nomul_graph *g, int enabled) { g->grad_enabled = enabled != 0; }

nomul_arena_use nomul_graph_arena_use(const nomul_graph *g)
{
    return (nomul_arena_use){g->size, g->used, g->asked, g->allocs, g->peak};
}

void nomul_graph_reset_peak(nomul_graph *g) { g->peak = g->used; }

static void *arena_get(nomul_graph *g, size_t bytes)
{
    size_t at = (g->used + 63) & ~(size_t)63;
    if (at + bytes > g->size) {
        nomul_report(NOMUL_ENOMEM, "autodiff: the graph's %zu-byte arena is full (a step needs "
                     "more; make the graph larger)", g->size);
        return NULL;
    }
    g->used = at + bytes;
    g->asked += bytes;
    g->allocs++;
    g->peak = g->used > g->peak ? g->used : g->peak;
    return g->arena + at;
}

static int shape_ok(const char *fn, int ndim, const int *shape, long *n)
{
    if (ndim < 1 || ndim > NOMUL_MAX_DIMS) {
        nomul_report(NOMUL_EINVAL, "%s: %d dimensions (1 to %d)", fn, ndim, NOMUL_MAX_DIMS);
        return 0;
    }
    long total = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1) {
            nomul_report(NOMUL_EINVAL, "%s: dimension %d is %d", fn, i, shape[i]);
            return 0;
        }
        total *= shape[i];
    }
    *n = total;
    return 1;
}

static void set_shape(nomul_tensor *t, int ndim, const int *shape, long n)
{
    t->ndim = ndim;
    memset(t->shape, 0, sizeof t->shape);
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->n = n;
}

nomul_tensor *nomul_tensor_alloc(int ndim, const int *shape, int grad)
{
    long n;
    if (!shape_ok("nomul_tensor_alloc", ndim, shape, &n))
        return NULL;
    nomul_tensor *t = calloc(1, sizeof *t);
    if (t) {
        t->data = calloc((size_t)n, sizeof(float));
        t->grad = grad ? calloc((size_t)n, sizeof(float)) : NULL;
    }
    if (!t || !t->data || (grad && !t->grad)) {
        nomul_tensor_free(t);
        nomul_report(NOMUL_ENOMEM, "nomul_tensor_alloc: out of memory for %ld floats", n);
        return NULL;
    }
    set_shape(t, ndim, shape, n);
    return t;
}

void nomul_tensor_free(nomul_tensor *t)
{
    if (!t)
        return;
    free(t->data);
    free(t->grad);
    free(t);
}

/* arr (n used of *cap elements of elem bytes) with room for one more:
 * itself, or reallocated to twice the capacity (64 at first); NULL after
 * reporting what ran out (arr is still valid then). The tape, the views and
 * the gradient blocks grow in the first steps, then stay. */
static void *room_for_one(void *arr, int n, int *cap, size_t elem, const char *what)
{
    if (n < *cap)
        return arr;
    int c = *cap ? 2 * *cap : 64;
    void *p = realloc(arr, (size_t)c * elem);
    if (!p) {
        nomul_report(NOMUL_ENOMEM, "%s", what);
        return NULL;
    }
    *cap = c;
    return p;
}

float ad_grad_pending[1];

/* lazy: the gradient is made by the backward (AD_GRAD_PENDING until then) */
static nomul_tensor *graph_tensor(nomul_graph *g, int ndim, const int *shape, int grad,
                                  int zero_data, int lazy)
{
    long n;
    if (!shape_ok("nomul_graph_tensor", ndim, shape, &n))
        return NULL;
    nomul_tensor *t = arena_get(g, sizeof *t);
    float *data = arena_get(g, (size_t)n * sizeof(float));
    const int want = grad && g->grad_enabled;
    float *gr = !want ? NULL : lazy ? AD_GRAD_PENDING : arena_get(g, (size_t)n * sizeof(float));
    if (!t || !data || (want && !gr))
        return NULL;
    if (zero_data)
        memset(data, 0, (size_t)n * sizeof(float));
    if (gr && !lazy)
        memset(gr, 0, (size_t)n * sizeof(float));
    t->data = data;
    t->grad = gr;
    set_shape(t, ndim, shape, n);
    return t;
}

nomul_tensor *nomul_graph_tensor(nomul_graph *g, int ndim, const int *shape, int grad)
{
    return graph_tensor(g, ndim, shape, grad, 1, 0);
}

nomul_tensor *ad_output(nomul_graph *g, int ndim, const int *shape, int grad)
{
    return graph_tensor(g, ndim, shape, grad, 0, 1);
}

nomul_tensor *ad_output_zeroed(nomul_graph *g, int ndim, const int *shape, int grad)
{
    return graph_tensor(g, ndim, shape, grad, 1, 1);
}

nomul_tensor *nomul_reshape(nomul_graph *g, nomul_tensor *x, int ndim, const int *shape)
{
    long n;
    if (!x)
        return NULL;
    if (!shape_ok("nomul_reshape", ndim, shape, &n))
        return NULL;
    if (n != x->n) {
        nomul_report(NOMUL_EINVAL, "nomul_reshape: %ld elements cannot take a shape of %ld",
                     x->n, n);
        return NULL;
    }
    nomul_tensor *t = arena_get(g, sizeof *t);
    if (!t)
        return NULL;
    if (x->grad == AD_GRAD_PENDING) { /* the view's gradient will be x's */
        ad_view *v = room_for_one(g->views, g->nviews, &g->capviews, sizeof *v,
                                  "nomul_reshape: out of memory");
        if (!v)
            return NULL;
        g->views = v;
        g->views[g->nviews++] = (ad_view){t, x};
    }
    *t = *x;
    set_shape(t, ndim, shape, n);
    return t;
}

void nomul_tensor_zero_grad(nomul_tensor *t)
{
    if (t && t->grad)
        memset(t->grad, 0, (size_t)t->n * sizeof(float));
}

void *ad_arena_alloc(nomul_graph *g, size_t bytes) { return arena_get(g, bytes); }

void *ad_arena_zalloc(nomul_graph *g, size_t bytes)
{
    void *p = arena_get(g, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

/* ---- the tape ---------------------------------------------------------------------------- */

int ad_wants_grad(nomul_graph *g, nomul_tensor *a, nomul_tensor *b, nomul_tensor *c)
{
    return g->grad_enabled && ((a && a->grad) || (b && b->grad) || (c && c->grad));
}

void ad_record(nomul_graph *g, ad_op op, const nomul_op_cfg *cfg, const ad_params *p,
               nomul_tensor *out, nomul_tensor *a, nomul_tensor *b, nomul_tensor *c)
{
    static const nomul_op_cfg standard = {NOMUL_OP_STANDARD, 0, 1.0f};
    if (!ad_wants_grad(g, a, b, c))
        return;
    node *tape = room_for_one(g->tape, g->ntape, &g->captape, sizeof *tape,
                              "autodiff: out of memory for the tape");
    if (!tape)
        return;
    g->tape = tape;
    node *nd = &g->tape[g->ntape++];
    memset(nd, 0, sizeof *nd);
    nd->op = op;
    nd->out = out;
    nd->in[0] = a;
    nd->in[1] = b;
    nd->in[2] = c;
    nd->cfg = cfg ? *cfg : standard;
    if (p)
        nd->p = *p;
    if (g->prof) {
        double t = now_s();
        ad_time *row = &g->prof[op * AD_VARIANTS + variant_of(&nd->cfg)];
        row->calls++;
        row->fwd += t - g->mark;
        g->mark = t;
    }
}

int ad_zeros_dropped(const nomul_graph *g, const nomul_tensor *t)
{
    for (int i = g->ntape - 1; i >= 0; i--)
        if (g->tape[i].out == t)
            return g->tape[i].op == AD_OP_RELU || g->tape[i].op == AD_OP_BATCH_NORM_RELU;
    return 0;
}

/* ---- backward -------------------------------------------------------------------------- */

/* n floats for a gradient, zero-filled unless `fill` is 0: the smallest
 * free block that holds them and is at most twice their size, else a new
 * one from the arena */
static float *block_get(nomul_graph *g, long n, int fill)
{
    const size_t bytes = (size_t)n * sizeof(float);
    int best = -1;
    for (int i = 0; i < g->nblocks; i++)
        if (!g->blocks[i].held && g->blocks[i].bytes >= bytes &&
            g->blocks[i].bytes / 2 <= bytes &&
            (best < 0 || g->blocks[i].bytes < g->blocks[best].bytes))
            best = i;
    if (best < 0) {
        ad_block *blocks = room_for_one(g->blocks, g->nblocks, &g->capblocks, sizeof *blocks,
                                        "nomul_backward: out of memory");
        if (!blocks)
            return NULL;
        g->blocks = blocks;
        float *p = arena_get(g, bytes);
        if (!p)
            return NULL;
        best = g->nblocks++;
        g->blocks[best] = (ad_block){p, bytes, 0};
    }
    g->blocks[best].held = 1;
    float *p = g->blocks[best].p;
    if (fill) /* on every thread from 2^16 floats (the other waits otherwise) */
        nomul_zero_floats(p, n);
    return p;
}

/* t's gradient made if it is pending (a view takes its base's): left
 * unfilled where the caller will store every element (`store`; 1 returned
 * then), else zero-filled (0); -1 after a report when the arena is full */
static int grad_ready_as(nomul_graph *g, nomul_tensor *t, int store)
{
    if (!t || t->grad != AD_GRAD_PENDING)
        return 0;
    for (int i = g->nviews - 1; i >= 0; i--)
        if (g->views[i].view == t) {
            if (grad_ready_as(g, g->views[i].base, 0) < 0)
                return -1;
            t->grad = g->views[i].base->grad;
            return 0;
        }
    if (!(t->grad = block_get(g, t->n, !store)))
        return -1;
    return store;
}

static int grad_ready(nomul_graph *g, nomul_tensor *t) { return grad_ready_as(g, t, 0); }

/* whether t is a view (its gradient a part of its base's) */
static int is_view(const nomul_graph *g, const nomul_tensor *t)
{
    for (int i = 0; i < g->nviews; i++)
        if (g->views[i].view == t)
            return 1;
    return 0;
}

/* the backward block that holds exactly t's gradient, -1 if none */
static int block_of(const nomul_graph *g, const nomul_tensor *t)
{
    if (!t->grad || t->grad == AD_GRAD_PENDING || is_view(g, t))
        return -1;
    for (int i = g->nblocks - 1; i >= 0; i--)
        if (g->blocks[i].held && g->blocks[i].p == t->grad)
            return i;
    return -1;
}

/* whether in[k]'s gradient may be written whole by nd's backward: bit k of
 * `bits` (ad_op_def.stores or .takes) is set, and in[k] is neither the
 * output nor another input */
static int may_store(const node *nd, int k, unsigned bits)
{
    const nomul_tensor *t = nd->in[k];
    if (!(bits >> k & 1) || !t || t == nd->out)
        return 0;
    for (int j = 0; j < 3; j++)
        if (j != k && nd->in[j] == t)
            return 0; /* the op's two writes would be one overwrite */
    return 1;
}

/* whether every input of nd has the output's size (none broadcast) */
static int all_of_out_size(const node *nd)
{
    for (int k = 0; k < 3; k++)
        if (nd->in[k] && nd->in[k]->n != nd->out->n)
            return 0;
    return 1;
}

/* nd's input gradients made ready, nd->store set where the op stores into
 * a fresh one (ad_op_def.stores) or takes the output's (.takes: where no
 * input is broadcast, the first such input whose gradient is still to be
 * made and whole, while the output's is a block handed back after nd; 1
 * returned then); -1 when the arena is full */
static int inputs_ready(nomul_graph *g, node *nd, const nomul_tensor *loss)
{
    int took = -1;
    const ad_op_def *def = &ad_op_table[nd->op];
    const int may_take = def->takes && !g->takes_off && nd->out != loss && all_of_out_size(nd) &&
                         block_of(g, nd->out) >= 0;
    for (int k = 0; k < 3 && took < 0 && may_take; k++) {
        nomul_tensor *t = nd->in[k];
        if (may_store(nd, k, def->takes) && t->grad == AD_GRAD_PENDING && !is_view(g, t)) {
            t->grad = nd->out->grad;
            took = k;
        }
    }
    for (int k = 0; k < 3; k++) {
        if (k == took) {
            nd->store[k] = AD_TAKEN;
            continue;
        }
        int r = grad_ready_as(g, nd->in[k], may_store(nd, k, def->stores));
        if (r < 0)
            return -1;
        nd->store[k] = (unsigned char)r;
    }
    return took >= 0;
}

/* t's gradient handed back if it is one of the backward's blocks: its
 * producer's backward has consumed it (every consumer ran before) */
static void grad_done(nomul_graph *g, nomul_tensor *t)
{
    if (!t || !t->grad || t->grad == AD_GRAD_PENDING)
        return;
    for (int i = g->nblocks - 1; i >= 0; i--)
        if (g->blocks[i].p == t->grad) {
            g->blocks[i].held = 0;
            t->grad = NULL; /* not kept: only leaves keep their gradients */
            return;
        }
}

int nomul_backward(nomul_graph *g, nomul_tensor *loss)
{
    if (!loss || loss->n != 1 || !loss->grad) {
        nomul_report(NOMUL_EINVAL, "nomul_backward: the loss must be a 1-element tensor with a "
                     "gradient (made while gradients were on)");
        return -1;
    }
    if (grad_ready(g, loss))
        return -1;
    loss->grad[0] += 1.0f;
    g->taken = 0;
    for (int i = g->ntape - 1; i >= 0; i--) {
        node *nd = &g->tape[i];
        double t = g->prof ? now_s() : 0.0;
        int took;
        if (grad_ready(g, nd->out) || (took = inputs_ready(g, nd, loss)) < 0)
            return -1;
        ad_op_table[nd->op].backward(nd);
        if (took) {
            nd->out->grad = NULL; /* its block is the input's now */
            g->taken++;
        } else if (nd->out != loss) {
            grad_done(g, nd->out);
        }
        if (g->prof)
            g->prof[nd->op * AD_VARIANTS + variant_of(&nd->cfg)].bwd += now_s() - t;
    }
    if (g->prof)
        g->mark = now_s();
    return 0;
}
