/*
 * spm.h - the shim's internal C API: libslurmpy.so (runtime.c, pool.c,
 * calls.c, snapshot.c) as seen by the two thin plugins (prep_python.c,
 * site_factor_python.c).  One libslurmpy.so is loaded per daemon, so both
 * plugins share one interpreter, one worker pool and one snapshot code path.
 *
 * Threading contract: no function here takes the GIL in the calling thread
 * once Python is running.  Python code runs only on the pool's worker
 * threads; daemon threads that hold slurmctld locks only copy records and
 * wait (bounded) for a worker.  Callbacks into Slurm are made from worker or
 * watchdog threads, never from inside a plugin hook, never with the GIL held.
 */
#ifndef SPM_H
#define SPM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spm_types.h"
#include "spm_bridge.h"

#define SPM_EXPORT __attribute__((visibility("default")))

/* Opaque Slurm types: only snapshot.c includes their definitions. */
struct job_record;
typedef struct spm_job_env spm_job_env_opaque_t;

typedef void (*spm_slurm_cb_t)(int rc, uint32_t job_id, bool timed_out);

/* ---- runtime.c ---- */

/* Log through Slurm with the context's prefix ("prep/python: ...").
 * level is SPM_LOG_*; printf-style.  Safe from any thread. */
SPM_EXPORT void spm_logf(int ctx, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The plugin prefix of a context ("prep/python", "site_factor/python"). */
SPM_EXPORT const char *spm_ctx_name(int ctx);

/* Which daemon this process is (SPM_DAEMON_*), from Slurm's own test. */
SPM_EXPORT int spm_daemon(void);

/* Start Python once per process (RTLD_GLOBAL promotion, fixed home, no
 * signal handlers, never finalized).  Returns 0, or -1 if Python cannot run
 * in this process (logged once; every later call returns -1 at once). */
int spm_runtime_start(void);

/* Arena: a chain of malloc'd chunks, freed as one when its last reference
 * is dropped.  spm_arena_new() returns NULL on OOM; the new arena has one
 * reference (the caller's).  spm_arena_alloc() returns zeroed memory or
 * NULL; spm_arena_strdup(NULL) is NULL. */
spm_arena_t *spm_arena_new(size_t first_chunk);
void *spm_arena_alloc(spm_arena_t *arena, size_t size);
char *spm_arena_strdup(spm_arena_t *arena, const char *s);

/* ---- calls.c: the one dispatch path both plugins use ---- */

/* init(): read the context's parameters from slurm_conf (cheap, no
 * Python).  Returns SLURM_SUCCESS.  Calling again with the same params
 * keeps the loaded handler; changed params make spm_ctx_boot() reload. */
SPM_EXPORT int spm_ctx_init(int ctx);

/* Start Python and boot the context if not done yet.  Returns true if a
 * handler is loaded; false means fail closed (every hook fails). */
SPM_EXPORT bool spm_ctx_boot(int ctx);

/* Bit mask (1 << SPM_HOOK_*) of hooks the loaded handler overrides. */
SPM_EXPORT uint32_t spm_ctx_hooks(int ctx);

/* Is the context failing closed (no usable handler)? */
SPM_EXPORT bool spm_ctx_failed(int ctx);

/* Remember the slurmctld callbacks; NULL entries keep the cached ones
 * (22.05 re-inits a plugin without callbacks after a reconfigure). */
SPM_EXPORT void spm_prep_set_callbacks(spm_slurm_cb_t prolog_cb,
				       spm_slurm_cb_t epilog_cb);

/* prolog/epilog_slurmctld: copy the job, queue it, return at once.  The
 * result always arrives through the cached callback, exactly once, from
 * another thread.  Returns false (and queues nothing) only when there is
 * no callback to call: the caller then reports a synchronous failure. */
SPM_EXPORT bool spm_prep_ctld_async(int hook, struct job_record *job_ptr);

/* slurmd prolog/epilog (job_env_t *): run on a worker, wait up to the
 * timeout.  Returns SLURM_SUCCESS or SLURM_ERROR. */
SPM_EXPORT int spm_prep_slurmd(int hook, void *job_env);

/* site_factor: set one job's factor; update all pending jobs; reconfig.
 * Called under slurmctld's job write lock: they copy, hand off to a worker,
 * wait at most the context's timeout, then apply results. */
SPM_EXPORT void spm_sf_set(struct job_record *job_ptr);
SPM_EXPORT void spm_sf_update(void);
SPM_EXPORT void spm_sf_reconfig(void);

/* fini(): nothing is torn down (the library stays loaded, Python keeps
 * running); only marks the context as not initialised. */
SPM_EXPORT void spm_ctx_fini(int ctx);

/* ---- snapshot.c: the only file that reads Slurm's records ---- */

/* Copy *job_ptr into a new arena.  Returns the copy (owned by *arena_out,
 * one reference) or NULL on OOM.  job_id_out gets the job id. */
spm_job_t *spm_snapshot_job(struct job_record *job_ptr,
			    spm_arena_t **arena_out);

/* Copy a slurmd job_env_t the same way. */
spm_env_t *spm_snapshot_env(void *job_env, spm_arena_t **arena_out);

/* Copy every pending job of slurmctld's job_list into one batch: numbers
 * now, string fields lazily (spm_lazy_load) while the caller still holds
 * the job write lock.  The caller must call spm_lazy_close(batch->lazy)
 * before releasing that lock, whatever happened to the call.  Returns NULL
 * on OOM or when job_list is not reachable (not slurmctld). */
spm_batch_t *spm_snapshot_pending(spm_arena_t **arena_out);
void spm_lazy_close(spm_lazy_t *lazy);

/* Store factors (NICE_OFFSET added, clamped with a warning) into the job
 * records.  spm_apply_factor() writes to job_ptr; spm_apply_factors()
 * looks jobs up by id and logs ids that are unknown or no longer pending. */
void spm_apply_factor(struct job_record *job_ptr, int64_t factor);
void spm_apply_factors(const uint32_t *job_ids, const int64_t *factors,
		       uint32_t n);

/* The job id of a record (so calls.c needs no Slurm header). */
uint32_t spm_job_id(struct job_record *job_ptr);

/* What the shim reads from slurm_conf for a context. */
typedef struct {
	const char *params;       /* PrEpParameters / ...SiteFactorParameters */
	const char *conf_path;    /* slurm.conf */
	uint32_t prolog_epilog_timeout; /* seconds, 0: not set */
	uint32_t slurm_user_id;
	bool epilog_set;          /* Epilog= is set (slurmd runs epilogs) */
} spm_conf_t;

SPM_EXPORT void spm_read_conf(int ctx, spm_conf_t *out);

/* ---- pool.c: workers that run Python, with deadlines ---- */

typedef struct spm_task spm_task_t;
typedef int (*spm_run_fn)(spm_task_t *task);        /* on a worker */
typedef void (*spm_done_fn)(spm_task_t *task, int result, bool timed_out);

struct spm_task {
	int ctx;
	spm_run_fn run;          /* calls one spm_py_* function */
	spm_done_fn done;        /* async: called exactly once, GIL not held */
	uint32_t timeout_ms;     /* 0: no limit */
	void *data;              /* the call's records and results */
	void (*release)(spm_task_t *task); /* frees task and data */
	/* private to pool.c */
	int state;
	int result;
	bool waited;
	uint64_t deadline_ms;
	unsigned long py_ident;
	struct spm_task *next;
};

/* Ensure the context's pool runs at least `workers` threads (Python must
 * be up).  Each context has its own pool.  Returns 0 or -1. */
int spm_pool_start(int ctx, uint32_t workers);

/* Async: queue the task; task->done(task, result, timed_out) is called
 * exactly once from a worker (or from the watchdog when the task overran
 * timeout_ms), then the pool calls task->release when nobody uses it. */
void spm_pool_submit(spm_task_t *task);

/* Sync: queue the task and wait until it ran or timeout_ms passed.
 * Returns the run function's result (the caller still owns the task and
 * calls task->release), or SPM_PY_EXCEPTION with *timed_out set: the task
 * is then given up and the pool calls task->release once the worker that
 * runs it returns (at once if it never started).  The stuck worker is
 * replaced so the pool keeps its size. */
int spm_pool_call(spm_task_t *task, bool *timed_out);

#endif /* SPM_H */
