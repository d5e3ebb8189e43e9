/* version.c — the version of the linked library. */
#include "nomul/version.h"

const char *nomul_version(void) { return NOMUL_VERSION_STRING; }
