/* fuzz_vectors.c — golden-vector lines (nomul_vector_parse); a case that
 * parses must format (nomul_vector_format) to a line that parses to it. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_dir(); /* errors silenced */
    char *text = fz_string(data, size), *lines[256];
    int n = fz_lines(text, lines, 256);
    for (int i = 0; i < n; i++) {
        nomul_vector_case c, back;
        memset(&c, 0, sizeof c);
        memset(&back, 0, sizeof back);
        if (nomul_vector_parse(lines[i], &c) != 1)
            continue;
        char buf[512];
        nomul_vector_format(buf, sizeof buf, &c);
        if (nomul_vector_parse(buf, &back) != 1 || back.op != c.op)
            abort();
        for (int k = 0; k < nomul_vector_op_inputs(c.op); k++)
            if (back.in[k] != c.in[k])
                abort();
        for (int k = 0; k < nomul_vector_op_outputs(c.op); k++)
            if (back.out[k] != c.out[k])
                abort();
    }
    free(text);
    return 0;
}
