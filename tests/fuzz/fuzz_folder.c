/* fuzz_folder.c — nomul_image_set_from_folder on PNG and JPEG files cut from
 * the fuzzer's bytes at "\n\n" into root/a/0.EXT and root/b/1.EXT (byte 0:
 * the extensions, the channels (1 or 3) and the size asked: 0 (that of the
 * first image) or 1 to 31). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const int mode = data[0], c = mode & 1 ? 3 : 1, side = (mode >> 3) & 31;
    const char *ext[4] = {"png", "jpg", "JPEG", "png"};
    const uint8_t *second;
    size_t n1, n2;
    fz_split(data + 1, size - 1, &n1, &second, &n2);
    char *root = strdup(fz_path("root"));
    fz_rm_tree(root);
    if (mkdir(root, 0700) || mkdir(fz_path("root/a"), 0700))
        abort();
    char name[64];
    snprintf(name, sizeof name, "root/a/0.%s", ext[(mode >> 1) & 3]);
    fz_write(fz_path(name), data + 1, n1);
    if (n2) {
        if (mkdir(fz_path("root/b"), 0700))
            abort();
        snprintf(name, sizeof name, "root/b/1.%s", ext[(mode >> 2) & 3]);
        fz_write(fz_path(name), second, n2);
    }
    char **names = NULL;
    nomul_image_set *s = nomul_image_set_from_folder(root, side, side, c, &names);
    if (s) {
        for (int i = 0; i < s->classes; i++)
            free(names[i]);
        free(names);
        nomul_image_set_free(s);
    }
    fz_rm_tree(root);
    free(root);
    return 0;
}
