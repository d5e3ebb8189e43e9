/*
 * nomul/error.h — how libnomul reports bad arguments.
 *
 * A call that cannot do what it was asked (a negative size, a leading
 * dimension too small, an unsupported beta, ...) does nothing to its outputs,
 * records an error for the calling thread and passes the message to the
 * error handler, which by default prints it on stderr (as BLAS's xerbla
 * does). It never aborts and never touches memory it was not given.
 */
#ifndef NOMUL_ERROR_H
#define NOMUL_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nomul_status {
    NOMUL_OK = 0,
    NOMUL_EINVAL = 1, /* a bad argument */
    NOMUL_ENOMEM = 2, /* out of memory */
    NOMUL_EIO = 3,    /* a file could not be read or written */
    NOMUL_EFORMAT = 4 /* a file's content is not what it should be */
} nomul_status;

/* The status of this thread's last failed call (NOMUL_OK if none since
 * nomul_clear_error()), and its message ("" if none). */
nomul_status nomul_last_error(void);
const char *nomul_last_error_message(void);
void nomul_clear_error(void);

/* Replaces the handler (NULL restores the default that prints to stderr). */
typedef void (*nomul_error_handler)(nomul_status status, const char *message);
void nomul_set_error_handler(nomul_error_handler handler);

#ifdef __cplusplus
}
#endif
#endif
