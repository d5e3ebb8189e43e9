/*
 * graph_internal.h — the tape's node and the graph, shared by graph.c and
 * ops.c (private to src/autodiff).
 */
#ifndef NOMUL_GRAPH_INTERNAL_H
#define NOMUL_GRAPH_INTERNAL_H

#include "nomul/autodiff.h"
#include "nomul/functional.h"

typedef struct node node;
typedef void (*backward_fn)(const node *nd);

struct node {
    backward_fn backward;
    nomul_tensor *in[3], *out;
    nomul_op_cfg cfg;
    const int *targets; /* cross-entropy */
    int ival;
    float fval;
    nomul_tensor *saved; /* cross-entropy: the log-probabilities */
};

struct nomul_graph {
    unsigned char *arena;
    size_t size, used;
    node *tape;
    int ntape, captape;
    int grad_enabled;
};


/* Records a node when gradients are on and some input has one (NULL else). */
node *ad_record(nomul_graph *g, backward_fn fn, nomul_tensor *out, nomul_tensor *a,
                nomul_tensor *b, nomul_tensor *c);
/* Whether an output of these inputs needs a gradient. */
int ad_wants_grad(nomul_graph *g, nomul_tensor *a, nomul_tensor *b, nomul_tensor *c);

#endif
