/* counts.c — the operation counters of nomul/audit.h. */
#include "nomul/audit.h"

#include "internal.h"

static int enabled;
static unsigned long long counters[NOMUL_COUNT_CLASSES];

void nomul_counts_enable(int on) { __atomic_store_n(&enabled, on != 0, __ATOMIC_RELAXED); }

void nomul_counts_reset(void)
{
    for (int i = 0; i < NOMUL_COUNT_CLASSES; i++)
        __atomic_store_n(&counters[i], 0, __ATOMIC_RELAXED);
}

void nomul_counts_get(nomul_op_counts *out)
{
    for (int i = 0; i < NOMUL_COUNT_CLASSES; i++)
        out->n[i] = __atomic_load_n(&counters[i], __ATOMIC_RELAXED);
}

void nomul_count(nomul_op_class c, unsigned long long n)
{
    if (__atomic_load_n(&enabled, __ATOMIC_RELAXED) && n)
        __atomic_fetch_add(&counters[c], n, __ATOMIC_RELAXED);
}

const char *nomul_op_class_name(nomul_op_class c)
{
    static const char *const names[NOMUL_COUNT_CLASSES] = {
        "float mul", "float div", "float exp/log/sqrt", "float add", "PAM",
        "PAD",       "palog2",    "paexp2",            "exponent shift"};
    return (unsigned)c < NOMUL_COUNT_CLASSES ? names[c] : "?";
}

double nomul_op_class_energy_pj(nomul_op_class c)
{
    switch (c) {
    case NOMUL_COUNT_FMUL:
    case NOMUL_COUNT_FDIV:
    case NOMUL_COUNT_FTRANS: return 3.7;
    case NOMUL_COUNT_FADD: return 0.9;
    default: return 0.1;
    }
}
