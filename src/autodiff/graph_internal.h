/*
 * graph_internal.h — what the tape (graph.c) and the operations (ops_*.c,
 * pool.c) share, private to src/autodiff: the graph, the tape's node, the
 * list of operations with each one's typed parameters and backward, and the
 * helpers an operation's forward uses to allocate and record.
 *
 * To add an operation, see the note at the top of optable.c.
 */
#ifndef NOMUL_GRAPH_INTERNAL_H
#define NOMUL_GRAPH_INTERNAL_H

#include "nomul/autodiff.h"
#include "nomul/conv.h"
#include "nomul/functional.h"

#include "../core/internal.h" /* nomul_conv_xstats */

/* Every operation the tape records, grouped by the file that holds its
 * forward and backward; ad_op_table (optable.c) names each. */
typedef enum {
    /* ops_nn.c: products */
    AD_OP_LINEAR,
    AD_OP_LINEAR_RELU,
    AD_OP_MATMUL,
    AD_OP_CONV2D,
    /* ops_rows.c: row-wise functional forms (functional.h) */
    AD_OP_SOFTMAX,
    AD_OP_LOG_SOFTMAX,
    AD_OP_LOGSUMEXP,
    AD_OP_LAYER_NORM,
    AD_OP_BATCH_NORM,
    AD_OP_BATCH_NORM_RELU,
    AD_OP_CROSS_ENTROPY,
    /* ops_elementwise.c */
    AD_OP_RELU,
    AD_OP_GELU,
    AD_OP_ADD,
    AD_OP_SUB,
    AD_OP_MUL,
    AD_OP_DIV,
    AD_OP_SCALE,
    AD_OP_DROPOUT,
    AD_OP_SUM,
    AD_OP_MEAN,
    /* ops_shape.c */
    AD_OP_TRANSPOSE,
    AD_OP_CONCAT,
    AD_OP_NARROW,
    AD_OP_EMBEDDING,
    /* pool.c */
    AD_OP_MAX_POOL2D,
    AD_OP_AVG_POOL_GLOBAL,
    AD_OP_COUNT
} ad_op;

/* An operation's parameters, as its forward saved them for its backward;
 * one member per operation that has any, named after it. Pointers are into
 * the graph's arena or the caller's memory, valid until the graph's reset. */
typedef union {
    struct {
        int trans_b;
    } matmul;
    struct {
        nomul_conv2d_desc d; /* a copy: the caller's need not outlive the call */
        int live;            /* x's gradient wanted only where x ≠ 0 (ad_zeros_dropped) */
        nomul_conv_xstats xs; /* the forward's classification of x, for the backward */
    } conv2d;
    struct {
        const float *mean, *rstd; /* layer norm: per row; batch norm: per channel */
        const float *keep;        /* layer norm: nomul_layer_norm_forward_keep's, or NULL */
        float eps;
    } norm; /* layer and batch norm */
    struct {
        nomul_tensor *logp; /* log_softmax(logits), or NULL where keep holds what the
                             * backward reads */
        const float *keep;  /* nomul_cross_entropy_logits_forward's, or NULL */
        const int *targets; /* the caller's, one per row */
        int ignore_index;
        float smoothing;
        int global;           /* nomul_cross_entropy_global: the loss of a global batch */
        nomul_ce_global glob; /* its total and used rows */
    } cross_entropy;
    struct {
        const float *keep; /* the forward's intermediates (nomul_gelu_forward_keep), or NULL */
    } gelu;
    struct {
        const float *keep; /* nomul_softmax_forward_keep's, or NULL */
    } softmax;
    struct {
        float c;
    } scale;
    struct {
        const unsigned char *keep; /* 1 where the element was kept */
        float s;                   /* 1/(1 − p) */
    } dropout;
    struct {
        float sum; /* Σx, the exact PAD derivative's numerator */
    } mean;
    struct {
        int d0, d1;
    } transpose;
    struct {
        int dim;
    } concat;
    struct {
        int dim, start;
    } narrow;
    struct {
        const int *ids; /* the caller's */
    } embedding;
    struct {
        const int *argmax; /* per output: the chosen input's index in its (h, w) plane */
    } max_pool2d;
    struct {
        float s;           /* 1/(h·w) */
        const float *sums; /* per plane Σx, kept in PA mode (the exact derivative) */
    } avg_pool_global;
} ad_params;

/* One recorded operation: out = op(in[0], in[1], in[2]) under cfg (unused
 * inputs NULL; the standard configuration for operations without one).
 * store[k], set by nomul_backward just before the node's backward: in[k]'s
 * gradient was made for this backward and not zero-filled (the op table's
 * `stores` names the inputs where that may happen), or (AD_TAKEN) is the
 * output's gradient, handed over (`takes`). */
typedef struct node {
    ad_op op;
    nomul_tensor *in[3], *out;
    nomul_op_cfg cfg;
    ad_params p;
    unsigned char store[3];
} node;

/* Profile rows (nomul_graph_profile): per operation and variant (float,
 * PA with exact derivatives, PA with the approximate ones). */
enum { AD_VARIANTS = 3 };
typedef struct {
    long calls;
    double fwd, bwd; /* seconds */
} ad_time;

/* The gradient of an operation's output is made when the backward first
 * needs it (AD_GRAD_PENDING until then: non-NULL, so `t->grad` still says
 * whether a gradient is wanted) and handed back for reuse once the
 * operation's own backward has consumed it: a training step holds its
 * activations and the gradients of the few layers the backward is in, not
 * a gradient for every activation. */
extern float ad_grad_pending[1];
#define AD_GRAD_PENDING (ad_grad_pending)

/* a gradient buffer in the arena, free for reuse or held */
typedef struct {
    float *p;
    size_t bytes;
    int held;
} ad_block;

/* a reshaped view made while its base's gradient was pending: the view's
 * gradient is the base's, once the base has one */
typedef struct {
    nomul_tensor *view, *base;
} ad_view;

struct nomul_graph {
    unsigned char *arena;
    size_t size, used;
    size_t asked, allocs, peak; /* nomul_graph_arena_use */
    node *tape;
    int ntape, captape;
    int grad_enabled;
    ad_time *prof; /* [AD_OP_COUNT][AD_VARIANTS] while profiling, else NULL */
    double mark;   /* when the previous recorded operation ended */
    ad_block *blocks; /* the backward's gradient buffers (reset with the arena) */
    int nblocks, capblocks;
    ad_view *views;
    int nviews, capviews;
    long taken;    /* gradients taken (ad_op_def.takes) in the last backward */
    int takes_off; /* the twin for the tests: no gradient taken */
};

/* The op table: each operation's name and backward. A backward accumulates
 * (+=) into the gradients of its node's inputs that have one, except where
 * it is the gradient's first writer: bit k of `stores` says that the
 * backward honours nd->store[k], and then it writes every element of
 * in[k]'s gradient as +0 + v (what += into a zero-filled one gives, −0
 * becoming +0), so that the gradient needs no zero fill before and no read.
 * Where nomul_backward can't promise a whole fresh buffer (a view's
 * gradient, which is part of its base's; an input that is also another
 * input of the same node) it zero-fills and leaves store[k] 0.
 *
 * Bit k of `takes` (a subset of `stores`): in[k]'s gradient is the output's
 * own, element for element, where no input is broadcast (a residual add's
 * first input). Where in[k]'s would be stored fresh and the output's is a
 * backward block handed back after this node (not the loss's, not a leaf's
 * or a view's), nomul_backward gives the output's block to in[k] instead
 * of making one (store[k] = AD_TAKEN, in[k]->grad == out->grad): the
 * backward reads what it needs of the output's gradient first, then turns
 * its −0s into +0 in place, the bits of the +0 + v it would have stored. */
enum { AD_TAKEN = 2 };
typedef struct {
    const char *name; /* the public function's, without nomul_ */
    void (*backward)(const node *nd);
    unsigned stores; /* bit k: in[k]'s gradient may be stored, not added */
    unsigned takes;  /* bit k: in[k]'s gradient may be the output's (above) */
} ad_op_def;

extern const ad_op_def ad_op_table[AD_OP_COUNT];

/* Records op on the tape when gradients are on and some input has one:
 * out = op(a, b, c) under cfg (NULL: the standard configuration), with the
 * parameters *p (NULL: none). */
void ad_record(nomul_graph *g, ad_op op, const nomul_op_cfg *cfg, const ad_params *p,
               nomul_tensor *out, nomul_tensor *a, nomul_tensor *b, nomul_tensor *c);
/* Whether an output of these inputs needs a gradient. */
int ad_wants_grad(nomul_graph *g, nomul_tensor *a, nomul_tensor *b, nomul_tensor *c);
/* An operation's output whose every element the operation writes: as
 * nomul_graph_tensor, but the data is not zero-filled first (the gradient
 * is); zeroing every activation cost 7% of a float ViT step. */
nomul_tensor *ad_output(nomul_graph *g, int ndim, const int *shape, int grad);
/* The same with zero-filled data, for operations that accumulate into it. */
nomul_tensor *ad_output_zeroed(nomul_graph *g, int ndim, const int *shape, int grad);
/* bytes of zero-filled, 64-byte aligned arena memory that lives until the
 * graph's reset (an operation's saved values); NULL after a report when the
 * arena is full. */
void *ad_arena_zalloc(nomul_graph *g, size_t bytes);
/* the same, not zero-filled (for values the forward writes in full) */
void *ad_arena_alloc(nomul_graph *g, size_t bytes);

/* The backwards, one per operation, each in its forward's file. */
void ad_linear_backward(const node *nd);
void ad_matmul_backward(const node *nd);
void ad_conv2d_backward(const node *nd);
/* whether t is the output of a relu or batch_norm_relu recorded on g's
 * tape, whose backward drops t's gradient wherever t is ±0 (those
 * elements' gradients are then not wanted from t's consumers) */
int ad_zeros_dropped(const nomul_graph *g, const nomul_tensor *t);
void ad_softmax_backward(const node *nd);
void ad_log_softmax_backward(const node *nd);
void ad_logsumexp_backward(const node *nd);
void ad_layer_norm_backward(const node *nd);
void ad_batch_norm_backward(const node *nd);
void ad_batch_norm_relu_backward(const node *nd);
void ad_cross_entropy_backward(const node *nd);
void ad_relu_backward(const node *nd);
void ad_gelu_backward(const node *nd);
void ad_binary_backward(const node *nd); /* add, sub, mul, div */
void ad_scale_backward(const node *nd);
void ad_dropout_backward(const node *nd);
void ad_sum_backward(const node *nd);
void ad_mean_backward(const node *nd);
void ad_transpose_backward(const node *nd);
void ad_concat_backward(const node *nd);
void ad_narrow_backward(const node *nd);
void ad_embedding_backward(const node *nd);
void ad_max_pool2d_backward(const node *nd);
void ad_avg_pool_global_backward(const node *nd);

#endif
