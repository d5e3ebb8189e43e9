/*
 * vectors.c — the golden test-vector format of PAM_SPEC.md: parsing,
 * formatting, and evaluation of each operation through the scalar functions
 * or the array kernels of one instruction set. A malformed line is reported
 * through nomul_report.
 */
#include "nomul/vectors.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "bits.h"
#include "elt.h"

/* Reports a malformed line; returns -1 for the caller to pass on. */
#define BAD(...) (nomul_report(NOMUL_EFORMAT, __VA_ARGS__), -1)

typedef struct {
    const char *name;
    nomul_elt_op elt;
    int approx;
    int in_spec;
} vector_op;

static const vector_op vector_ops[] = {
    {"mul", NOMUL_ELT_MUL, 0, 1},
    {"mul_off", NOMUL_ELT_MUL_OFF, 0, 1},
    {"div", NOMUL_ELT_DIV, 0, 1},
    {"mul_grad", NOMUL_ELT_MUL_GRAD, 0, 1},
    {"mul_grad_approx", NOMUL_ELT_MUL_GRAD_APPROX, 0, 1},
    {"div_grad", NOMUL_ELT_DIV_GRAD, 0, 1},
    {"exp2", NOMUL_ELT_EXP2, 0, 1},
    {"exp", NOMUL_ELT_EXP, 0, 1},
    {"log2", NOMUL_ELT_LOG2, 0, 1},
    {"log", NOMUL_ELT_LOG, 0, 1},
    {"sqrt", NOMUL_ELT_SQRT, 0, 1},
    {"pow", NOMUL_ELT_POW, 0, 1},
    {"div_grad_approx", NOMUL_ELT_DIV_GRAD_APPROX, 0, 0},
    {"mul_off_grad", NOMUL_ELT_MUL_OFF_GRAD, 0, 0},
    {"exp2_grad", NOMUL_ELT_EXP2_GRAD, 0, 0},
    {"log2_grad", NOMUL_ELT_LOG2_GRAD, 0, 0},
    {"exp_grad", NOMUL_ELT_EXP_GRAD, 0, 0},
    {"exp_grad_approx", NOMUL_ELT_EXP_GRAD, 1, 0},
    {"log_grad", NOMUL_ELT_LOG_GRAD, 0, 0},
    {"log_grad_approx", NOMUL_ELT_LOG_GRAD, 1, 0},
    {"sqrt_grad", NOMUL_ELT_SQRT_GRAD, 0, 0},
    {"sqrt_grad_approx", NOMUL_ELT_SQRT_GRAD, 1, 0},
    {"pow_grad", NOMUL_ELT_POW_GRAD, 0, 0},
    {"pow_grad_approx", NOMUL_ELT_POW_GRAD, 1, 0},
};
#define N_OPS ((int)(sizeof vector_ops / sizeof vector_ops[0]))

int nomul_vector_op_count(void) { return N_OPS; }

static int valid(int op) { return op >= 0 && op < N_OPS; }

const char *nomul_vector_op_name(int op) { return valid(op) ? vector_ops[op].name : NULL; }
int nomul_vector_op_inputs(int op)
{
    return valid(op) ? nomul_elt_info_table[vector_ops[op].elt].n_in : 0;
}
int nomul_vector_op_outputs(int op)
{
    return valid(op) ? nomul_elt_info_table[vector_ops[op].elt].n_out : 0;
}
int nomul_vector_op_in_spec(int op) { return valid(op) ? vector_ops[op].in_spec : 0; }

int nomul_vector_op_find(const char *name)
{
    for (int i = 0; i < N_OPS; i++)
        if (strcmp(vector_ops[i].name, name) == 0)
            return i;
    return -1;
}

/* Reads one whitespace-delimited token into tok; returns the rest or NULL. */
static const char *next_token(const char *s, char *tok, size_t len)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    if (!*s)
        return NULL;
    size_t n = 0;
    while (*s && !isspace((unsigned char)*s)) {
        if (n + 1 < len)
            tok[n++] = *s;
        else
            return NULL;
        s++;
    }
    tok[n] = 0;
    return s;
}

static int parse_hex32(const char *tok, uint32_t *v)
{
    size_t n = strlen(tok);
    if (n == 0 || n > 8)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)tok[i]))
            return 0;
    *v = (uint32_t)strtoul(tok, NULL, 16);
    return 1;
}

int nomul_vector_parse(const char *line, nomul_vector_case *c)
{
    char tok[64];
    const char *s = line;
    while (*s && isspace((unsigned char)*s))
        s++;
    if (*s == 0 || *s == '#')
        return 0;
    memset(c, 0, sizeof *c);
    s = next_token(s, tok, sizeof tok);
    if (!s)
        return BAD("operation name too long");
    c->op = nomul_vector_op_find(tok);
    if (c->op < 0)
        return BAD("unknown operation '%s'", tok);
    int nin = nomul_vector_op_inputs(c->op), nout = nomul_vector_op_outputs(c->op);
    for (int j = 0; j < nin; j++) {
        s = next_token(s, tok, sizeof tok);
        if (!s || !parse_hex32(tok, &c->in[j]))
            return BAD("%s takes %d inputs as 1 to 8 hex digits; input %d is %s%s%s",
                       vector_ops[c->op].name, nin, j + 1, s ? "'" : "missing", s ? tok : "",
                       s ? "'" : "");
    }
    s = next_token(s, tok, sizeof tok);
    if (!s || strcmp(tok, "->") != 0)
        return BAD("expected '->' after %d inputs of %s", nin, vector_ops[c->op].name);
    for (int j = 0; j < nout; j++) {
        s = next_token(s, tok, sizeof tok);
        if (!s || !parse_hex32(tok, &c->out[j]))
            return BAD("%s gives %d outputs as 1 to 8 hex digits; output %d is %s%s%s",
                       vector_ops[c->op].name, nout, j + 1, s ? "'" : "missing", s ? tok : "",
                       s ? "'" : "");
    }
    if (next_token(s, tok, sizeof tok))
        return BAD("unexpected text after the %d outputs of %s", nout, vector_ops[c->op].name);
    return 1;
}

int nomul_vector_format(char *buf, size_t len, const nomul_vector_case *c)
{
    int nin = nomul_vector_op_inputs(c->op), nout = nomul_vector_op_outputs(c->op);
    int k = snprintf(buf, len, "%s", vector_ops[c->op].name);
    for (int j = 0; j < nin && k >= 0 && (size_t)k < len; j++)
        k += snprintf(buf + k, len - k, " %08x", (unsigned)c->in[j]);
    if (k >= 0 && (size_t)k < len)
        k += snprintf(buf + k, len - k, " ->");
    for (int j = 0; j < nout && k >= 0 && (size_t)k < len; j++)
        k += snprintf(buf + k, len - k, " %08x", (unsigned)c->out[j]);
    return k;
}

void nomul_vector_eval_scalar(int op, const uint32_t *in, uint32_t *out)
{
    float fin[NOMUL_VECTOR_MAX_IN] = {0}, fout[NOMUL_VECTOR_MAX_OUT] = {0};
    const float *pin[NOMUL_VECTOR_MAX_IN];
    float *pout[NOMUL_VECTOR_MAX_OUT] = {&fout[0], &fout[1]};
    for (int j = 0; j < NOMUL_VECTOR_MAX_IN; j++) {
        fin[j] = pa_float(in[j]);
        pin[j] = &fin[j];
    }
    nomul_vector_eval_array(NOMUL_ISA_SCALAR, op, 1, pin, pout);
    for (int j = 0; j < nomul_vector_op_outputs(op); j++)
        out[j] = pa_bits(fout[j]);
}

void nomul_vector_eval_array(nomul_isa isa, int op, size_t n, const float *const *in,
                             float *const *out)
{
    const vector_op *v = &vector_ops[op];
    const nomul_elt_info *info = &nomul_elt_info_table[v->elt];
    nomul_elt_args g = {{0}, {0}, {0}, v->approx};
    for (int j = 0; j < info->n_in; j++)
        g.in[j] = in[j];
    for (int j = 0; j < info->n_out; j++)
        g.out[j] = out[j];
    nomul_elt_run_isa(isa, v->elt, n, &g);
}
