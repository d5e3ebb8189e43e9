/*
 * audit.c — one training step of a small transformer block under the
 * operation counters (nomul/audit.h): what `nomul audit` reports.
 */
#include "nomul/audit.h"

#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "nomul/autodiff.h"
#include "nomul/opcfg.h"
#include "nomul/optim.h"

enum { B = 8, T = 16, D = 32, H = 4, F = 64, C = 10, NPARAM = 11 };

static void fill(nomul_tensor *t, unsigned long long *s, float scale)
{
    for (long i = 0; i < t->n; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        t->data[i] = ((float)((*s >> 40) & 0xFFFF) / 32768.0f - 1.0f) * scale;
    }
}

int nomul_audit_step(const nomul_op_cfgs *c, nomul_op_counts *out)
{
    int sdd[2] = {D, D}, sfd[2] = {F, D}, sdf[2] = {D, F}, scd[2] = {C, D}, sd = D, sc = C,
        sx[2] = {B * T, D};
    /* ln1 γ β, wq wk wv wo, ln2 γ β, w1 (F×D), w2 (D×F), head (C×D) */
    int *shapes[NPARAM] = {&sd, &sd, sdd, sdd, sdd, sdd, &sd, &sd, sfd, sdf, scd};
    int dims[NPARAM] = {1, 1, 2, 2, 2, 2, 1, 1, 2, 2, 2};
    nomul_tensor *p[NPARAM] = {0}, *x = nomul_tensor_alloc(2, sx, 0), *hb = NULL;
    float *mom[NPARAM] = {0}, *vel[NPARAM] = {0};
    int ok = x != NULL, targets[B * T];
    unsigned long long s = 2026;
    for (int k = 0; k < NPARAM && ok; k++) {
        p[k] = nomul_tensor_alloc(dims[k], shapes[k], 1);
        mom[k] = p[k] ? calloc((size_t)p[k]->n, sizeof(float)) : NULL;
        vel[k] = p[k] ? calloc((size_t)p[k]->n, sizeof(float)) : NULL;
        ok = p[k] && mom[k] && vel[k];
        if (ok)
            fill(p[k], &s, k == 0 || k == 6 ? 0.0f : 0.2f);
        if (ok && (k == 0 || k == 6))
            for (long i = 0; i < p[k]->n; i++)
                p[k]->data[i] = 1.0f; /* layer-norm gains */
    }
    hb = ok ? nomul_tensor_alloc(1, &sc, 1) : NULL;
    nomul_graph *g = ok && hb ? nomul_graph_new((size_t)64 << 20) : NULL;
    int rc = -1;
    if (g) {
        fill(x, &s, 1.0f);
        for (int i = 0; i < B * T; i++)
            targets[i] = i % C;
        const nomul_op_cfg *lin = &c->family[NOMUL_CFG_LINEAR], *nrm = &c->family[NOMUL_CFG_NORM];
        const nomul_op_cfg *fun = &c->family[NOMUL_CFG_FUNCTIONAL];
        int s3[3] = {B, T, D};
        nomul_counts_reset();
        nomul_counts_enable(1);
        /* h = x + attention(ln1(x)); h = h + mlp(ln2(h)); logits = head(h) */
        nomul_tensor *a = nomul_layer_norm(g, nrm, x, p[0], p[1], 1e-5f);
        nomul_tensor *q = nomul_reshape(g, nomul_linear(g, lin, a, p[2], NULL), 3, s3);
        nomul_tensor *k = nomul_reshape(g, nomul_linear(g, lin, a, p[3], NULL), 3, s3);
        nomul_tensor *v = nomul_reshape(g, nomul_linear(g, lin, a, p[4], NULL), 3, s3);
        nomul_tensor *att = nomul_reshape(
            g, nomul_attention(g, &c->family[NOMUL_CFG_BMM], fun, q, k, v, H, NULL), 2, sx);
        nomul_tensor *h = nomul_add(g, x, nomul_linear(g, lin, att, p[5], NULL));
        nomul_tensor *m = nomul_layer_norm(g, nrm, h, p[6], p[7], 1e-5f);
        m = nomul_linear(g, lin, nomul_gelu(g, fun, nomul_linear(g, lin, m, p[8], NULL)), p[9],
                         NULL);
        h = nomul_add(g, h, m);
        nomul_tensor *loss = nomul_cross_entropy(g, &c->family[NOMUL_CFG_LOSS_FUNCTIONAL],
                                                 nomul_linear(g, lin, h, p[10], hb), targets,
                                                 -100, 0.1f);
        if (loss) {
            nomul_backward(g, loss);
            nomul_adamw opt;
            nomul_adamw_init(&opt, 1e-3f, 0.01f,
                             c->family[NOMUL_CFG_OPT_FUNCTIONAL].subtype != NOMUL_OP_STANDARD);
            nomul_adamw_begin_step(&opt);
            for (int kk = 0; kk < NPARAM; kk++)
                nomul_adamw_update(&opt, (size_t)p[kk]->n, p[kk]->data, p[kk]->grad, mom[kk],
                                   vel[kk]);
            rc = 0;
        }
        nomul_counts_enable(0);
        nomul_counts_get(out);
    }
    nomul_graph_free(g);
    for (int k = 0; k < NPARAM; k++) {
        nomul_tensor_free(p[k]);
        free(mom[k]);
        free(vel[k]);
    }
    nomul_tensor_free(hb);
    nomul_tensor_free(x);
    if (rc != 0 && nomul_last_error() == NOMUL_OK)
        nomul_report(NOMUL_ENOMEM, "nomul_audit_step: out of memory");
    return rc;
}
