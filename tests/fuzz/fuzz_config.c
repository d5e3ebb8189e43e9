/* fuzz_config.c — the training configuration: byte 0 even, the rest as a
 * JSON file (nomul_train_config_parse_json); odd, KEY=VALUE lines as --set
 * gives them (nomul_train_config_set). Then the check and the JSON that
 * checkpoints store, which must read back. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fz_dir(); /* errors silenced */
    char *s = fz_string(data + 1, size - 1);
    nomul_train_config c;
    nomul_train_config_default(&c);
    if (data[0] % 2 == 0)
        nomul_train_config_parse_json(&c, s);
    else {
        char *lines[64];
        int n = fz_lines(s, lines, 64);
        for (int i = 0; i < n; i++) {
            char *eq = strchr(lines[i], '=');
            if (!eq)
                continue;
            *eq = 0;
            nomul_train_config_set(&c, lines[i], eq + 1);
        }
    }
    nomul_train_config_check(&c);
    int len = nomul_train_config_format(&c, NULL, 0);
    char *json = malloc((size_t)len + 1);
    if (!json)
        abort();
    nomul_train_config_format(&c, json, (size_t)len + 1);
    nomul_train_config back;
    nomul_train_config_default(&back);
    if (nomul_train_config_parse_json(&back, json))
        abort(); /* what a checkpoint stores must read back */
    free(json);
    free(s);
    return 0;
}
