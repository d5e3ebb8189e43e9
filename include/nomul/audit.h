/*
 * nomul/audit.h — counts of the arithmetic nomul's operations execute, by
 * class, for the multiplication audit and energy estimates.
 *
 * Every library operation (the matrix products, conv2d, the elementwise
 * array functions, the composite operations, the autodiff operations, the
 * optimizers) adds what the code path it takes performs: a float-mode path
 * adds its float multiplications, a PA path its PAMs, and so on. Counting is
 * off until nomul_counts_enable(1); the counters are shared by all threads.
 * These are core counters: the audit's training step that reads them is
 * the trainer's (nomul_audit_step, nomul/train.h).
 */
#ifndef NOMUL_AUDIT_H
#define NOMUL_AUDIT_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nomul_op_class {
    NOMUL_COUNT_FMUL,   /* float multiplications */
    NOMUL_COUNT_FDIV,   /* float divisions */
    NOMUL_COUNT_FTRANS, /* float exp, log, sqrt, erf */
    NOMUL_COUNT_FADD,   /* float additions and subtractions */
    NOMUL_COUNT_PAM,    /* piecewise affine multiplications */
    NOMUL_COUNT_PAD,    /* piecewise affine divisions */
    NOMUL_COUNT_PALOG2,
    NOMUL_COUNT_PAEXP2,
    NOMUL_COUNT_SHIFT,  /* exact-derivative slopes applied by exponent shifts */
    NOMUL_COUNT_CLASSES
} nomul_op_class;

typedef struct nomul_op_counts {
    unsigned long long n[NOMUL_COUNT_CLASSES];
} nomul_op_counts;

void nomul_counts_enable(int on);
void nomul_counts_reset(void);
void nomul_counts_get(nomul_op_counts *out);
const char *nomul_op_class_name(nomul_op_class c);

/* Energy per operation in pJ, 45 nm (Horowitz, ISSCC 2014): fp32 multiply
 * 3.7, fp32 add 0.9, int32 add 0.1. nomul prices a float division, exp, log
 * or sqrt as one multiply (a lower bound), and every PA operation or
 * exponent shift as one int32 add. */
double nomul_op_class_energy_pj(nomul_op_class c);

#ifdef __cplusplus
}
#endif
#endif
