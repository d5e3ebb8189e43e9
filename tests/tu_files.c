/* tu_files.c — see tu_files.h. */
#include "tu_files.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nomul/error.h"

char tu_last_error[1024];
static char dir[256];

static void capture(nomul_status s, const char *msg)
{
    (void)s;
    snprintf(tu_last_error, sizeof tu_last_error, "%s", msg);
}

int tu_tmpdir_setup(const char *tag)
{
    const char *root = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/nomul-%s-XXXXXX", root, tag);
    if (!mkdtemp(dir))
        return -1;
    nomul_set_error_handler(capture);
    return 0;
}

int tu_tmpdir_teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

const char *tu_tmpdir(void)
{
    return dir;
}

const char *tu_path(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}
