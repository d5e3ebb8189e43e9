/*
 * nomul/vectors.h — test vectors of the arithmetic in the golden format of
 * PAM_SPEC.md: one case a line, `OP INPUT... -> OUTPUT...`, every value a
 * float32 bit pattern in hex; `#` starts a comment line.
 *
 * The operations are the spec's (mul, mul_off, div, mul_grad,
 * mul_grad_approx, div_grad, exp2, exp, log2, log, sqrt, pow) and nomul's
 * extensions for the remaining derivatives (div_grad_approx, mul_off_grad,
 * exp2_grad, log2_grad, exp_grad, exp_grad_approx, log_grad,
 * log_grad_approx, sqrt_grad, sqrt_grad_approx, pow_grad, pow_grad_approx).
 */
#ifndef NOMUL_VECTORS_H
#define NOMUL_VECTORS_H

#include <stddef.h>
#include <stdint.h>

#include "nomul/isa.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NOMUL_VECTOR_MAX_IN 4
#define NOMUL_VECTOR_MAX_OUT 2

typedef struct nomul_vector_case {
    int op; /* index of the operation, 0 .. nomul_vector_op_count() - 1 */
    uint32_t in[NOMUL_VECTOR_MAX_IN];
    uint32_t out[NOMUL_VECTOR_MAX_OUT];
} nomul_vector_case;

int nomul_vector_op_count(void);
const char *nomul_vector_op_name(int op);
int nomul_vector_op_inputs(int op);
int nomul_vector_op_outputs(int op);
/* 1 for the operations PAM_SPEC.md defines, 0 for nomul's extensions. */
int nomul_vector_op_in_spec(int op);
/* The index of the operation called `name`, or -1. */
int nomul_vector_op_find(const char *name);

/* Parses one line. Returns 1 and fills *c for a case, 0 for a blank or
 * comment line, -1 for a malformed line after reporting NOMUL_EFORMAT
 * (nomul/error.h: the message says what is wrong, without the line number). */
int nomul_vector_parse(const char *line, nomul_vector_case *c);
/* Writes a case as one line (without newline); returns snprintf's count. */
int nomul_vector_format(char *buf, size_t len, const nomul_vector_case *c);

/* The outputs of op on in[], with the scalar functions. */
void nomul_vector_eval_scalar(int op, const uint32_t *in, uint32_t *out);
/* The outputs of op on n cases at once, with the array kernels of `isa`
 * (which must be at most nomul_isa_max()). in[j] and out[j] hold n values. */
void nomul_vector_eval_array(nomul_isa isa, int op, size_t n, const float *const *in,
                             float *const *out);

#ifdef __cplusplus
}
#endif
#endif
