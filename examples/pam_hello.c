/*
 * pam_hello.c — the smallest program on libnomul: multiply without
 * multiplying, and the exact gradient of that product.
 *
 *   cc pam_hello.c $(pkg-config --cflags --libs nomul) -o pam_hello
 */
#include <stdio.h>

#include <nomul/nomul.h>

int main(void)
{
    float a = 1.5f, b = 3.0f, da, db;
    nomul_pa_mul_grad(a, b, 1.0f, &da, &db);
    printf("nomul %s on %s\n", nomul_version(), nomul_isa_name(nomul_isa_active()));
    printf("PAM(%g, %g) = %g (true product %g)\n", a, b, nomul_pa_mul(a, b), a * b);
    printf("dPAM/da = %g, dPAM/db = %g\n", da, db);
    float x[4] = {0.5f, 1.0f, 2.0f, 4.0f}, y[4];
    nomul_pa_sqrt_v(4, x, y);
    printf("pa_sqrt: %g %g %g %g\n", y[0], y[1], y[2], y[3]);
    return 0;
}
