/*
 * nomul/threads.h — how many threads the kernels use: the environment
 * variable NOMUL_NUM_THREADS, or every core; nomul_set_num_threads()
 * overrides both (0 goes back to them).
 */
#ifndef NOMUL_THREADS_H
#define NOMUL_THREADS_H

#ifdef __cplusplus
extern "C" {
#endif

int nomul_get_num_threads(void);
void nomul_set_num_threads(int n);

#ifdef __cplusplus
}
#endif
#endif
