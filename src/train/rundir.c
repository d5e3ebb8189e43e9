/*
 * rundir.c — the run folder (out_dir): creating it, config.json, and the
 * metric log a resumed run continues (metrics.jsonl, its lines appended by
 * nomul_metrics_append in progress.c), and the partial checkpoints a killed
 * run left.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../core/internal.h"
#include "trainer_internal.h"

int train_make_dirs(const char *path)
{
    char buf[NOMUL_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char keep = *p;
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST) {
                nomul_report(NOMUL_EIO, "out_dir: cannot create '%s': %s", buf, strerror(errno));
                return -1;
            }
            *p = keep;
            if (!keep)
                break;
        }
    }
    return 0;
}

int train_write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) {
        nomul_report(NOMUL_EIO, "cannot write '%s': %s", path, strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    return 0;
}

/* Keeps the metric lines of steps up to `step` (a resumed run rewrites what
 * the interrupted one logged after its checkpoint). */
int train_truncate_metrics(const char *path, long step)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0; /* nothing logged yet */
    size_t cap = 0, len = 0;
    char *kept = NULL, *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    while ((n = getline(&line, &lcap, f)) > 0) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *s = o ? cJSON_GetObjectItemCaseSensitive(o, "step") : NULL;
        /* an epoch's line at the checkpoint's step came after the checkpoint:
         * the resumed run writes it again */
        const int epoch_line = o && cJSON_GetObjectItemCaseSensitive(o, "train_loss");
        int keep = s && cJSON_IsNumber(s) &&
                   (s->valuedouble < (double)step || (s->valuedouble == (double)step && !epoch_line));
        cJSON_Delete(o);
        if (!keep)
            continue;
        if (len + (size_t)n + 1 > cap) {
            char *k = realloc(kept, cap = 2 * (len + (size_t)n + 1));
            if (!k) {
                free(kept);
                free(line);
                fclose(f);
                nomul_report(NOMUL_ENOMEM, "out of memory reading '%s'", path);
                return -1;
            }
            kept = k;
        }
        memcpy(kept + len, line, (size_t)n);
        len += (size_t)n;
    }
    free(line);
    fclose(f);
    if (kept)
        kept[len] = 0;
    int r = train_write_text(path, kept ? kept : "");
    free(kept);
    return r;
}

int train_write_config(const trainer *t)
{
    size_t len = (size_t)nomul_train_config_format(t->c, NULL, 0) + 1;
    char *json = malloc(len), path[NOMUL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/config.json", t->dir);
    int bad = !json || (nomul_train_config_format(t->c, json, len), train_write_text(path, json));
    free(json);
    return bad ? -1 : 0;
}

int train_remove_partial_checkpoints(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        nomul_report(NOMUL_EIO, "out_dir: cannot read '%s': %s", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    const struct dirent *e;
    char path[NOMUL_PATH_MAX + 300];
    while ((e = readdir(d))) {
        /* the writer's temporary files, checkpoint*.safetensors.tmp.XXXXXX */
        if (strncmp(e->d_name, "checkpoint", 10) || !strstr(e->d_name, ".safetensors.tmp."))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) && errno != ENOENT) {
            nomul_report(NOMUL_EIO, "cannot remove the partial checkpoint '%s': %s", path,
                         strerror(errno));
            rc = -1;
            break;
        }
    }
    closedir(d);
    return rc;
}
