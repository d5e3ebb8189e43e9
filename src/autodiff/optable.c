/*
 * optable.c — the op table: every operation the tape records, by name, with
 * its backward (nomul_backward calls ad_op_table[node.op].backward, last
 * recorded first).
 *
 * How to add an operation, e.g. nomul_foo(g, cfg, x, ...):
 *   1. include/nomul/autodiff.h: declare nomul_foo with its shapes and the
 *      configuration family it takes; list it in the header comment.
 *   2. graph_internal.h: AD_OP_FOO in ad_op, under the file that will hold
 *      it; if the backward needs more than the node's inputs, output and
 *      cfg, a member foo of ad_params with what the forward saves (values
 *      too large for it go into the arena, ad_arena_zalloc); declare
 *      ad_foo_backward.
 *   3. The group's file (ops_elementwise.c, ops_rows.c, ops_nn.c,
 *      ops_shape.c, pool.c): nomul_foo checks its inputs (NULL in, NULL out,
 *      without a new report), allocates its output with nomul_graph_tensor
 *      (a gradient when ad_wants_grad), computes, and ends with
 *      ad_record(g, AD_OP_FOO, cfg, &(ad_params){.foo = {...}}, y, x, ...);
 *      ad_foo_backward quotes the forward and accumulates (+=) into every
 *      input gradient that is not NULL.
 *   4. Here: the row [AD_OP_FOO] = {"foo", ad_foo_backward}; a third field,
 *      a bit per input, where the backward can be a gradient's first writer
 *      (nd->store[k]: it then writes every element as +0 + v; see ad_op_def);
 *      a fourth, where in[k]'s gradient is the output's own and may take
 *      its buffer (nd->store[k] == AD_TAKEN; see ad_op_def).
 *   5. tests/test_autodiff.c: a case in apply_op, with its name in names
 *      and the loop's count raised, so that test_ops_match_finite_differences
 *      checks its float gradients against finite differences; a PA form
 *      against direct calls of the arithmetic, as test_pa_ops_wiring; its
 *      errors in test_op_errors (test_op_table checks the row of step 4).
 */
#include "graph_internal.h"

const ad_op_def ad_op_table[AD_OP_COUNT] = {
    [AD_OP_LINEAR] = {"linear", ad_linear_backward, 0, 0},
    [AD_OP_MATMUL] = {"matmul", ad_matmul_backward, 0, 0},
    [AD_OP_CONV2D] = {"conv2d", ad_conv2d_backward, 1, 0},
    [AD_OP_SOFTMAX] = {"softmax", ad_softmax_backward, 0, 0},
    [AD_OP_LOG_SOFTMAX] = {"log_softmax", ad_log_softmax_backward, 0, 0},
    [AD_OP_LOGSUMEXP] = {"logsumexp", ad_logsumexp_backward, 0, 0},
    [AD_OP_LAYER_NORM] = {"layer_norm", ad_layer_norm_backward, 0, 0},
    [AD_OP_BATCH_NORM] = {"batch_norm", ad_batch_norm_backward, 1, 0},
    [AD_OP_BATCH_NORM_RELU] = {"batch_norm_relu", ad_batch_norm_relu_backward, 1, 0},
    [AD_OP_CROSS_ENTROPY] = {"cross_entropy", ad_cross_entropy_backward, 1, 0},
    [AD_OP_LINEAR_RELU] = {"linear_relu", ad_linear_backward, 0, 0},
    [AD_OP_RELU] = {"relu", ad_relu_backward, 0, 0},
    [AD_OP_GELU] = {"gelu", ad_gelu_backward, 0, 0},
    [AD_OP_ADD] = {"add", ad_binary_backward, 3, 1},
    [AD_OP_SUB] = {"sub", ad_binary_backward, 3, 1},
    [AD_OP_MUL] = {"mul", ad_binary_backward, 0, 0},
    [AD_OP_DIV] = {"div", ad_binary_backward, 0, 0},
    [AD_OP_SCALE] = {"scale", ad_scale_backward, 0, 0},
    [AD_OP_DROPOUT] = {"dropout", ad_dropout_backward, 0, 0},
    [AD_OP_SUM] = {"sum", ad_sum_backward, 0, 0},
    [AD_OP_MEAN] = {"mean", ad_mean_backward, 0, 0},
    [AD_OP_TRANSPOSE] = {"transpose", ad_transpose_backward, 0, 0},
    [AD_OP_CONCAT] = {"concat", ad_concat_backward, 0, 0},
    [AD_OP_NARROW] = {"narrow", ad_narrow_backward, 0, 0},
    [AD_OP_EMBEDDING] = {"embedding", ad_embedding_backward, 0, 0},
    [AD_OP_MAX_POOL2D] = {"max_pool2d", ad_max_pool2d_backward, 0, 0},
    [AD_OP_AVG_POOL_GLOBAL] = {"avg_pool_global", ad_avg_pool_global_backward, 0, 0},
};
