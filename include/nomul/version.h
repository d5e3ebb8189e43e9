/* nomul/version.h — the library's version. */
#ifndef NOMUL_VERSION_H
#define NOMUL_VERSION_H

#define NOMUL_VERSION_MAJOR 0
#define NOMUL_VERSION_MINOR 1
#define NOMUL_VERSION_PATCH 0
#define NOMUL_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif
/* The version of the library actually linked (may differ from the header). */
const char *nomul_version(void);
#ifdef __cplusplus
}
#endif
#endif
