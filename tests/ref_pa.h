/* ref_pa.h — float64 reference twin of the arithmetic (tests only). */
#ifndef NOMUL_TEST_REF_PA_H
#define NOMUL_TEST_REF_PA_H

float ref_mul(float a, float b);
float ref_mul_off(float a, float b, float c);
float ref_div(float a, float b);
float ref_log2(float x);
float ref_exp2(float y);
float ref_exp(float x);
float ref_log(float x);
float ref_pow(float a, float p);
float ref_sqrt(float a);
void ref_mul_grad(float a, float b, float dc, float *da, float *db);
void ref_mul_off_grad(float a, float b, float c, float dc, float *da, float *db);
void ref_mul_grad_approx(float a, float b, float dc, float *da, float *db);
void ref_div_grad(float a, float b, float dc, float *da, float *db);
void ref_div_grad_approx(float a, float b, float dc, float *da, float *db);
float ref_exp2_grad(float y, float dy);
float ref_log2_grad(float x, float dy);
float ref_exp_grad(float x, float dy, int approx);
float ref_log_grad(float x, float dy, int approx);
void ref_pow_grad(float a, float p, float dy, int approx, float *da, float *dp);
float ref_sqrt_grad(float a, float dy, int approx);

#endif
