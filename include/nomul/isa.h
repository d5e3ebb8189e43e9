/*
 * nomul/isa.h — which instruction set the kernels run on.
 *
 * The library is built for baseline x86-64 and carries AVX2 and AVX-512
 * kernels beside the scalar ones; the best one the CPU supports is chosen at
 * the first call. The environment variable NOMUL_ISA=scalar|avx2|avx512 caps
 * that choice (a cap above what the CPU has falls back to the best it has).
 */
#ifndef NOMUL_ISA_H
#define NOMUL_ISA_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nomul_isa {
    NOMUL_ISA_SCALAR = 0,
    NOMUL_ISA_AVX2 = 1,
    NOMUL_ISA_AVX512 = 2,
    NOMUL_ISA_COUNT
} nomul_isa;

/* The best instruction set this CPU (and OS) supports. */
nomul_isa nomul_isa_detect(void);
/* The best one allowed: the detected one, capped by NOMUL_ISA. */
nomul_isa nomul_isa_max(void);
/* The one in use: nomul_isa_max() unless nomul_isa_set() chose another. */
nomul_isa nomul_isa_active(void);
/* Use `isa` from now on (capped by nomul_isa_max()); returns the one
 * actually selected. For tests and benchmarks that compare paths. */
nomul_isa nomul_isa_set(nomul_isa isa);
/* "scalar", "avx2", "avx512". */
const char *nomul_isa_name(nomul_isa isa);
/* Parses a name as above; returns -1 if it is none of them. */
int nomul_isa_parse(const char *name);
/* 1 where the CPU runs 512-bit fused multiply-adds at full width, two a
 * cycle (AMD's Zen 5 desktop and server cores), 0 where it splits them in
 * 256-bit halves (Zen 4, Zen 5's mobile parts), has no AVX-512, or cpuid
 * does not tell (Intel's Xeons have one or two 512-bit FMA units by model).
 * Some kernel choices follow it (README, "The matrix engine"). */
int nomul_cpu_fma512_full(void);

#ifdef __cplusplus
}
#endif
#endif
