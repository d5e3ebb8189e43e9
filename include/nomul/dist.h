/* nomul/dist.h — data-parallel training over processes (MPI ranks).
 *
 * A program started under `mpirun -np N` calls nomul_dist_init once, before
 * any training, and nomul_dist_finalize at its end; nomul_train then splits
 * every global batch over the N ranks (src/dist/, src/train/trainer.c). A
 * program that never calls nomul_dist_init is one rank of one. A library
 * built without MPI (nomul_dist_has_mpi() == 0) always runs as one rank. */
#ifndef NOMUL_DIST_H
#define NOMUL_DIST_H

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when this build of libnomul was linked with Open MPI. */
int nomul_dist_has_mpi(void);
/* The number of processes the launcher started (OMPI_COMM_WORLD_SIZE, or
 * PMI_SIZE), 1 when started alone; readable before nomul_dist_init, and in a
 * build without MPI (which then cannot join them). */
int nomul_dist_launched_size(void);
/* Joins the ranks (MPI_Init_thread) when this build has MPI and the process
 * was started by a launcher; otherwise one rank. 0, or -1 after a report. */
int nomul_dist_init(int *argc, char ***argv);
/* Leaves them (MPI_Finalize); a no-op for one rank. */
void nomul_dist_finalize(void);
/* This process's rank (0 .. size − 1) and the number of ranks. */
int nomul_dist_rank(void);
int nomul_dist_size(void);
/* Ends every rank of the job now with this exit code (MPI_Abort); exit() for
 * one rank. */
void nomul_dist_abort(int code);
/* 1 when the last error was agreed by all ranks (each returned it from the
 * same collective step, so they end together and rank 0 alone need print
 * it); 0 for an error of this rank alone, after which the job must be
 * ended with nomul_dist_abort lest the other ranks wait for it. */
int nomul_dist_error_is_shared(void);

#ifdef __cplusplus
}
#endif
#endif
