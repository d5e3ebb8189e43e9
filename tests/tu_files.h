/*
 * tu_files.h — what the file-reading tests share: a temporary folder per
 * test program, paths inside it, and the last error message of libnomul
 * captured instead of printed.
 */
#ifndef NOMUL_TU_FILES_H
#define NOMUL_TU_FILES_H

/* The message of the last error libnomul reported since
 * tu_tmpdir_setup (which installs the capturing handler). */
extern char tu_last_error[1024];

/* Makes $TMPDIR/nomul-TAG-XXXXXX (or under /tmp); 0 on success. */
int tu_tmpdir_setup(const char *tag);
/* Removes it and everything in it; 0 on success. */
int tu_tmpdir_teardown(void);
/* The folder, and NAME inside it (four results stay valid at a time). */
const char *tu_tmpdir(void);
const char *tu_path(const char *name);

#endif
