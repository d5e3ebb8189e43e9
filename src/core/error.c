/* error.c — per-thread error status and the error handler (nomul/error.h). */
#include "nomul/error.h"

#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

static _Thread_local nomul_status last_status;
static _Thread_local char last_message[512];
static nomul_error_handler handler;

nomul_status nomul_last_error(void) { return last_status; }
const char *nomul_last_error_message(void) { return last_message; }

void nomul_clear_error(void)
{
    last_status = NOMUL_OK;
    last_message[0] = 0;
}

void nomul_set_error_handler(nomul_error_handler h)
{
    __atomic_store_n(&handler, h, __ATOMIC_RELEASE);
}

void nomul_report(nomul_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    last_status = status;
    nomul_error_handler h = __atomic_load_n(&handler, __ATOMIC_ACQUIRE);
    if (h)
        h(status, last_message);
    else
        fprintf(stderr, "nomul: %s\n", last_message);
}
