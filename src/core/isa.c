/*
 * isa.c — run-time choice of instruction set: what the CPU and OS support
 * (cpuid, xgetbv), capped by the environment variable NOMUL_ISA.
 */
#include "nomul/isa.h"

#include "internal.h"

#include <cpuid.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const isa_names[NOMUL_ISA_COUNT] = {"scalar", "avx2", "avx512"};

const char *nomul_isa_name(nomul_isa isa)
{
    return (unsigned)isa < NOMUL_ISA_COUNT ? isa_names[isa] : "unknown";
}

int nomul_isa_parse(const char *name)
{
    for (int i = 0; i < NOMUL_ISA_COUNT; i++)
        if (name && strcmp(name, isa_names[i]) == 0)
            return i;
    return -1;
}

static unsigned long long xgetbv0(void)
{
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

nomul_isa nomul_isa_detect(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return NOMUL_ISA_SCALAR;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx)
        return NOMUL_ISA_SCALAR;
    unsigned long long xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) /* XMM and YMM state saved by the OS */
        return NOMUL_ISA_SCALAR;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return NOMUL_ISA_SCALAR;
    int avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
        avx512vl = (b >> 31) & 1;
    if (avx512f && avx512dq && avx512bw && avx512vl && fma && (xcr0 & 0xE0) == 0xE0)
        return NOMUL_ISA_AVX512;
    /* the AVX2 level's float kernels use FMA3 (every AVX2 CPU but a few VIA
     * parts has it) */
    return avx2 && fma ? NOMUL_ISA_AVX2 : NOMUL_ISA_SCALAR;
}

static int active_isa = -1;
static int max_isa = -1;

static nomul_isa isa_from_env(void)
{
    nomul_isa best = nomul_isa_detect();
    const char *cap = getenv("NOMUL_ISA");
    if (!cap || !*cap)
        return best;
    int want = nomul_isa_parse(cap);
    if (want < 0) {
        fprintf(stderr, "nomul: NOMUL_ISA='%s' is not one of scalar, avx2, avx512; using %s\n",
                cap, nomul_isa_name(best));
        return best;
    }
    return (nomul_isa)want < best ? (nomul_isa)want : best;
}

nomul_isa nomul_isa_max(void)
{
    int isa = __atomic_load_n(&max_isa, __ATOMIC_ACQUIRE);
    if (isa < 0) {
        isa = (int)isa_from_env();
        __atomic_store_n(&max_isa, isa, __ATOMIC_RELEASE);
    }
    return (nomul_isa)isa;
}

nomul_isa nomul_isa_active(void)
{
    int isa = __atomic_load_n(&active_isa, __ATOMIC_ACQUIRE);
    if (isa < 0) {
        isa = (int)nomul_isa_max();
        __atomic_store_n(&active_isa, isa, __ATOMIC_RELEASE);
    }
    return (nomul_isa)isa;
}

nomul_isa nomul_isa_set(nomul_isa isa)
{
    nomul_isa best = nomul_isa_max();
    if ((unsigned)isa >= NOMUL_ISA_COUNT || isa > best)
        isa = best;
    __atomic_store_n(&active_isa, (int)isa, __ATOMIC_RELEASE);
    return isa;
}

/* AMD's cores (Zen 4 measured) and Intel's weigh some kernel choices
 * differently: a merge-masked float add and the mask tests it needs cost a
 * fifth to a third of the zero-aware in-place kernels' rate on Zen 4, not
 * on the Xeons measured, so the lists that skip zeros pay at higher
 * densities there (conv2d.c's xs_num_of). A tuning choice only: the sums
 * are the same on every path. */
int nomul_cpu_amd(void)
{
    static int amd = -1;
    int v = __atomic_load_n(&amd, __ATOMIC_ACQUIRE);
    if (v < 0) {
        unsigned a, b, c, d;
        v = __get_cpuid(0, &a, &b, &c, &d) && b == 0x68747541u /* "Auth" */ &&
            d == 0x69746e65u /* "enti" */ && c == 0x444d4163u /* "cAMD" */;
        __atomic_store_n(&amd, v, __ATOMIC_RELEASE);
    }
    return v;
}

/* AMD's Zen 5 desktop and server cores (family 1Ah: Turin models 00h-1Fh,
 * Granite Ridge and Fire Range 40h-4Fh, Strix Halo 70h-7Fh) execute a
 * 512-bit FMA in one pass on each of two pipes; Zen 4 (19h) and Zen 5's
 * mobile Strix and Krackan Point (1Ah, models 20h-2Fh and 60h-6Fh) in two
 * 256-bit halves. Later families are taken as full width. Intel's Xeons
 * have one or two 512-bit FMA units by model, which cpuid does not tell:
 * 0 there (the choices measured on the Xeons and on Zen 4). */
int nomul_cpu_fma512_full_of(int amd, unsigned family, unsigned model)
{
    if (!amd || family < 0x1A)
        return 0;
    if (family > 0x1A)
        return 1;
    return !((model >= 0x20 && model <= 0x2F) || (model >= 0x60 && model <= 0x6F));
}

int nomul_cpu_fma512_full(void)
{
    static int full = -1;
    int v = __atomic_load_n(&full, __ATOMIC_ACQUIRE);
    if (v < 0) {
        unsigned a, b, c, d;
        v = 0;
        if (nomul_isa_detect() == NOMUL_ISA_AVX512 && __get_cpuid(1, &a, &b, &c, &d)) {
            unsigned family = (a >> 8) & 0xF, model = (a >> 4) & 0xF;
            if (family == 0xF)
                family += (a >> 20) & 0xFF;
            if (family >= 0xF || family == 6)
                model |= ((a >> 16) & 0xF) << 4;
            v = nomul_cpu_fma512_full_of(nomul_cpu_amd(), family, model);
        }
        __atomic_store_n(&full, v, __ATOMIC_RELEASE);
    }
    return v;
}
