/*
 * spm.h - the shim's internal C API.  libslurmpy.so is built from
 *
 *   log.c                 logging into the daemon's log; the plugin and
 *                         hook tables (from spm_plugins.h)
 *   arena.c               record arenas (reference counted)
 *   runtime.c             the interpreter: lazy start, UTF-8, fork hygiene
 *   pool.c                worker threads, deadlines, the reaper
 *   ctx.c                 per-plugin context: parameters, async boot
 *   dispatch_prep.c       the PrEp API turned into pool tasks
 *   dispatch_site_factor.c the site_factor API turned into pool tasks
 *   dispatch_job_submit.c the job_submit API turned into pool tasks
 *   dispatch_jobcomp.c    the jobcomp API: a durable spool, a deliverer
 *   conf.c                what the shim reads of slurm_conf, daemon identity
 *   snapshot.c            copies of Slurm's records (the only reader)
 *   factors.c             site factors written back (the only writer of
 *                         job records)
 *   jobdesc.c             job_submit changes written back (the only writer
 *                         of job_desc_msg_t, and of err_msg)
 *   errno.c               Slurm's error codes by name (slurm_errno.h of
 *                         the release built against)
 *   stats.c               per-process counters in a shared file, for
 *                         `slurmpy-plugins stats`
 *
 * and seen by the thin plugins (prep_python.c, site_factor_python.c,
 * job_submit_python.c, jobcomp_python.c, one per row of spm_plugins.h).  One libslurmpy.so
 * is loaded per daemon, so every plugin in it shares one interpreter and
 * one dispatch path.
 *
 * Threading contract: no function here takes the GIL in the calling
 * thread.  Python runs only on pool workers; daemon threads that hold
 * slurmctld locks only copy records and wait (bounded) for a worker.
 * Callbacks into Slurm are made from pool threads, never from inside a
 * plugin hook, never with the GIL or a pool mutex held.
 */
#ifndef SPM_H
#define SPM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "spm_types.h"
#include "spm_bridge.h"

#define SPM_EXPORT __attribute__((visibility("default")))

#ifndef SLURM_SUCCESS
#define SLURM_SUCCESS 0
#define SLURM_ERROR -1
#endif

/* Opaque Slurm types: only conf.c, snapshot.c, factors.c and jobdesc.c
 * see them.  Differences between Slurm releases live in compat.h, which
 * only those files and the plugins include. */
struct job_record;
struct job_descriptor;

typedef void (*spm_slurm_cb_t)(int rc, uint32_t job_id, bool timed_out);

/* ---- log.c ---- */

/* Log through Slurm with the context's prefix ("prep/python: ...").
 * level is SPM_LOG_*; printf-style; the text is cut at 1 KiB.  Safe from
 * any thread, with or without the GIL. */
SPM_EXPORT void spm_logf(int ctx, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The plugin prefix of a context ("prep/python", "site_factor/python"). */
SPM_EXPORT const char *spm_ctx_name(int ctx);

/* A context number as an array index (0 for anything unknown). */
int spm_ctx_index(int ctx);

/* ---- arena.c ---- */

/* Arena: a chain of malloc'd chunks, freed as one when its last reference
 * is dropped (spm_arena_ref/unref in spm_types.h).  spm_arena_new()
 * returns NULL on OOM; the new arena has one reference (the caller's).
 * spm_arena_alloc() returns zeroed memory or NULL; spm_arena_strdup(NULL)
 * is NULL. */
spm_arena_t *spm_arena_new(size_t first_chunk);
void *spm_arena_alloc(spm_arena_t *arena, size_t size);

/* ---- runtime.c ---- */

/* Start Python once per process (RTLD_GLOBAL promotion, fixed home, UTF-8
 * mode, no signal handlers, stderr into the daemon log, never finalized).
 * Returns 0, or -1 if Python cannot run in this process (logged once;
 * every later call returns -1 at once).  May take seconds: never call it
 * from a thread that holds slurmctld locks. */
int spm_runtime_start(void);

/* pthread_create() with every signal blocked in the new thread. */
int spm_thread_create(pthread_t *tid, const pthread_attr_t *attr,
		      void *(*fn)(void *), void *arg);

/* Called first by each worker thread: blocks signals (they belong to the
 * daemon's threads) and marks the thread, so that a process forked from
 * it starts with an empty signal mask. */
void spm_worker_thread_enter(void);

/* True in a child forked from a worker thread (a handler that forked and
 * returned in the child): the worker must _exit() at once. */
bool spm_forked_child(void);

/* ---- pool.c: workers that run Python, with deadlines ---- */

/* Most worker threads a pool writes off (stuck in a handler past its
 * deadline) and replaces; past it, a stuck worker is not replaced (every
 * written-off worker is still interrupted).  With no live worker left,
 * calls fail at once (logged) until one of them returns. */
#define SPM_POOL_MAX_STUCK 128

typedef struct spm_task spm_task_t;
typedef int (*spm_run_fn)(spm_task_t *task);        /* on a worker */
typedef void (*spm_done_fn)(spm_task_t *task, int result, bool timed_out);

/* A unit of work.  Embed it first in a call struct; set it up with
 * spm_task_init().  Reference counted: release() runs once, when the last
 * reference is dropped, on the thread that drops it. */
struct spm_task {
	int ctx;
	spm_run_fn run;          /* calls one spm_py_* entry point */
	spm_done_fn done;        /* async: the answer, exactly once */
	void (*release)(spm_task_t *task); /* frees the call struct */
	uint32_t timeout_ms;     /* counted from submission; 0: no limit */
	bool fail_fast;          /* sync: fail at once while a worker of
				  * this pool is stuck */
	bool barrier;            /* runs first and alone: no other task of
				  * the pool starts until it has returned */
	bool ctx_timeout;        /* the context's limit, taken when queued
				  * (timeout_ms is then set by the pool);
				  * spm_pool_retime() changes it */
	bool no_interrupt;       /* past its deadline, let it finish: no
				  * TimeoutError (a handler import) */
	int stats_hook;          /* SPM_HOOK_* of the call, for stats (-1:
				  * none, spm_task_init's default) */
	bool py_failed;          /* set by the worker: Python reported the
				  * call failed (spm_stats_error); read it
				  * only when not timed out */
	/* private to pool.c */
	int refs;
	int state;
	int result;
	bool answered, timed_out, waited;
	bool worker_written_off, interrupt;
	const char *why;         /* static text: why it failed unrun */
	uint64_t submitted_ms, deadline_ms;
	unsigned long py_ident;
	spm_task_t *next, *deliver_next, *unref_next;
};

/* Fill in a task with one reference (the caller's). */
void spm_task_init(spm_task_t *task, int ctx, spm_run_fn run,
		   spm_done_fn done, void (*release)(spm_task_t *),
		   uint32_t timeout_ms);
void spm_task_ref(spm_task_t *task);
void spm_task_unref(spm_task_t *task);

/* Make the context's pool run `workers` threads (Python must be up) and
 * reopen it if closed.  Returns 0, or -1 if no thread could start. */
int spm_pool_start(int ctx, uint32_t workers);

/* Fail every queued task of the pool at once, and every task submitted
 * until spm_pool_start() reopens it; `why` (static text) is logged for
 * each.  Idle workers leave. */
void spm_pool_close(int ctx, const char *why);

/* The context's limit: ctx_timeout tasks queued from now on get it, and
 * so do those queued or running (a handler loaded with timeout=), still
 * counted from their submission. */
void spm_pool_retime(int ctx, uint32_t timeout_ms);

/* Until the matching unhold, workers take only barrier tasks: calls queue
 * (their deadlines running) while a handler loads. */
void spm_pool_hold(int ctx);
void spm_pool_unhold(int ctx);

/* Async: queue the task, taking over the caller's reference.  done() is
 * called exactly once, from a worker or the reaper (never from the calling
 * thread): with the run function's result, or with timed_out=true when
 * timeout_ms passed since submission first, or with SPM_PY_UNAVAILABLE at
 * once when the pool is closed or all its workers are stuck (task->why
 * says which). */
void spm_pool_submit(spm_task_t *task);

/* Sync: queue the task and wait until it is answered, at most timeout_ms
 * from now.  The caller keeps its reference (and drops it when done with
 * the call struct, whatever happened).  Returns the run function's
 * result; SPM_PY_EXCEPTION with *timed_out set when the deadline passed
 * (the run function may still be running on a written-off worker: the
 * caller must not read what it writes); SPM_PY_UNAVAILABLE when the pool
 * could not run it (or, for fail_fast, while a worker is stuck).  The caller
 * first polls for the answer for up to 200 us, yielding the CPU between
 * looks (while the pool's recent calls answered that fast), then sleeps. */
int spm_pool_call(spm_task_t *task, bool *timed_out);

/* Why a call that was not timed out did not succeed, in words, for a
 * status no handler answered (the handler's own failures, SPM_PY_FAILED
 * and SPM_PY_UNLOADED, point to the log, where Python said more):
 * SPM_PY_UNAVAILABLE gives the pool's reason (task->why). */
const char *spm_py_status_why(int status, const spm_task_t *task);

/* Wait, without limit, until the task's run function has returned (or
 * the task was answered without running).  For the boot thread only. */
void spm_pool_wait(spm_task_t *task);

/* Run fn(arg) soon on the context's reaper thread, with no lock held.
 * Needs no allocation (a fixed ring): the way to answer Slurm when memory
 * ran out.  Returns false if the ring is full or no reaper runs. */
bool spm_pool_defer(int ctx, void (*fn)(uintptr_t), uintptr_t arg);

/* Monotonic milliseconds, microseconds. */
uint64_t spm_now_ms(void);
uint64_t spm_now_us(void);

/* ---- conf.c: what the shim reads from slurm_conf ---- */

typedef struct {
	const char *params;       /* the value of the plugin's conf_key
				   * (NULL for a conf_file plugin) */
	char params_file[4096];   /* the plugin's conf_file, beside slurm.conf
				   * ("" for a conf_key plugin) */
	const char *conf_path;    /* slurm.conf */
	uint32_t prep_timeout;    /* seconds, 0: not set: PrologEpilogTimeout,
				   * from 25.05 Prolog/EpilogTimeout (compat.h) */
	uint32_t slurm_user_id;
	bool epilog_set;          /* Epilog= is set (slurmd runs epilogs) */
	const char *state_save_location; /* StateSaveLocation */
	const char *cluster_name; /* ClusterName */
	const char *jobcomp_params; /* JobCompParams */
} spm_conf_t;

/* Fill *out; its strings point into slurm_conf (valid until the next
 * reconfigure: copy what you keep). */
SPM_EXPORT void spm_read_conf(int ctx, spm_conf_t *out);

/* Which daemon this process is (SPM_DAEMON_*), from Slurm's own test. */
SPM_EXPORT int spm_daemon(void);

/* This node's NodeName as slurmd (or slurmstepd) knows it (`slurmd -N`),
 * NULL in any other process.  Points into the daemon's conf. */
const char *spm_node_name(void);

/* SlurmdSpoolDir as this slurmd expanded it (%n, %h), NULL elsewhere. */
const char *spm_slurmd_spooldir(void);

/* ---- stats.c: counters for `slurmpy-plugins stats` ---- */

/* Outcomes of one hook call (spm_stats_hook_t's counters). */
#define SPM_STATS_OK 0
#define SPM_STATS_REFUSED 1
#define SPM_STATS_FAILED 2
#define SPM_STATS_TIMEOUT 3

/* In slurmctld and slurmd: create and map
 * <dir>/slurmpy-stats/<daemon>.<host>.<pid> (once per process; a failure
 * is logged and stats stay off).  Anywhere else: nothing. */
void spm_stats_open(const char *dir);

/* One answered call of `hook`: an outcome (SPM_STATS_*) after `us`
 * microseconds from submission.  Lock-free; nothing without the file.
 * Called where the dispatch files decide the outcome. */
void spm_stats_call(int hook, int outcome, uint64_t us);
uint64_t spm_stats_us_since(uint64_t t0_us);

/* The pool wrote off the worker of a call of `hook`. */
void spm_stats_written_off(int hook);

/* A context's handler was loaded (a boot). */
void spm_stats_load(int ctx);

/* A hook's last error, from C (a timeout; where ""). */
void spm_stats_set_error(int hook, const char *where, const char *text);

/* jobcomp/python's spool (spm_stats_jobcomp_t): a record appended, one
 * dropped; a delivery attempt (delivered or not; failures: the failed
 * attempts of the record the deliverer is on); the undelivered bytes now. */
void spm_stats_jc_spooled(void);
void spm_stats_jc_dropped(void);
void spm_stats_jc_attempt(bool delivered, uint64_t failures);
void spm_stats_jc_backlog(uint64_t bytes);

/* The writers of a stats file, in-process (stats.c) and shared between
 * processes (spank_python.c, which links no libslurmpy.so): counters by
 * relaxed atomic adds, a hook's last error under a claim on its seq
 * (spm_types.h) that no process can hold for good. */
static inline unsigned spm_stats_bucket(uint64_t us)
{
	uint64_t v = us + 1;
	unsigned e = 63 - (unsigned)__builtin_clzll(v), s, b;

	s = e >= 2 ? (unsigned)(v >> (e - 2)) & 3 : (unsigned)(v << (2 - e)) & 3;
	b = e * SPM_STATS_SUB + s;
	return b < SPM_STATS_BUCKETS ? b : SPM_STATS_BUCKETS - 1;
}

static inline void spm_stats_add(uint64_t *counter, uint64_t n)
{
	__atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

static inline void spm_stats_count(spm_stats_hook_t *h, int outcome,
				   uint64_t us)
{
	uint64_t max;

	spm_stats_add(&h->calls, 1);
	switch (outcome) {
	case SPM_STATS_OK: spm_stats_add(&h->ok, 1); break;
	case SPM_STATS_REFUSED: spm_stats_add(&h->refused, 1); break;
	case SPM_STATS_TIMEOUT: spm_stats_add(&h->timeouts, 1); break;
	default: spm_stats_add(&h->failed, 1);
	}
	spm_stats_add(&h->buckets[spm_stats_bucket(us)], 1);
	max = __atomic_load_n(&h->max_us, __ATOMIC_RELAXED);
	while (us > max && !__atomic_compare_exchange_n(
		       &h->max_us, &max, us, true, __ATOMIC_RELAXED,
		       __ATOMIC_RELAXED))
		;
}

/* A claim older than this (seconds) is a dead writer's: taken over. */
#define SPM_STATS_CLAIM_STALE 2

/* Write e unless another writer is at it (its error is as recent: this
 * one is dropped).  Never waits. */
static inline void spm_stats_write_error(spm_stats_error_t *e,
					 const char *where, const char *text,
					 int64_t now)
{
	uint32_t seq = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE), next;

	if (seq & 1) {
		uint32_t claimed = __atomic_load_n(&e->claimed, __ATOMIC_RELAXED);

		if ((int64_t)(uint32_t)now - (int64_t)claimed < SPM_STATS_CLAIM_STALE)
			return;
		next = seq + 2;          /* still odd: the claim is ours */
	} else {
		next = seq + 1;
	}
	if (!__atomic_compare_exchange_n(&e->seq, &seq, next, false,
					 __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
		return;
	__atomic_store_n(&e->claimed, (uint32_t)now, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	snprintf(e->where, sizeof(e->where), "%s", where ? where : "");
	snprintf(e->text, sizeof(e->text), "%s", text ? text : "");
	for (char *c = e->text; *c; c++)
		if (*c == '\n' || *c == '\r')
			*c = ' ';
	e->time = now;
	/* released only if still ours (not taken over meanwhile) */
	__atomic_compare_exchange_n(&e->seq, &next, next + 1, false,
				    __ATOMIC_RELEASE, __ATOMIC_RELAXED);
}

/* Around a task's run function on a worker: spm_stats_error() from
 * Python then knows the hook; leave() returns whether it was called. */
void spm_stats_enter(int hook);
bool spm_stats_leave(void);

/* ---- drain.c ---- */

/* In slurmd: drain this node with the reason "<ctx name>: <why>" (an
 * update_node RPC to slurmctld, as `scontrol update state=drain` does),
 * unless it is already draining (an admin's reason is kept, as Slurm's
 * own drain keeps it).  Logs what it did; blocks for the RPC (at most
 * slurm.conf's MessageTimeout).  Anywhere else: nothing.  why is copied. */
void spm_drain_node(int ctx, uint32_t job_id, const char *why);

/* slurmctld's exported PrEp callbacks, looked up by name (NULL outside
 * slurmctld).  22.05 re-inits a plugin with NULL callbacks. */
spm_slurm_cb_t spm_slurmctld_callback(int hook);

/* ---- ctx.c: one context per plugin ---- */

/* init(): read the context's parameters (cheap, no Python).  In slurmctld
 * and slurmd, start loading the handler on a thread of its own if it is
 * not loaded with these parameters yet; elsewhere (slurmstepd) do nothing
 * more.  Never waits. */
SPM_EXPORT int spm_ctx_init(int ctx);

/* Before a hook call in slurmstepd (PrologFlags=RunInJob runs prolog and
 * epilog in the extern step's slurmstepd, 24.05+): start the boot that
 * init() did not, once; the call then queues behind it as calls do in
 * slurmd.  Anywhere else, or once started, it does nothing. */
SPM_EXPORT void spm_ctx_boot_on_call(int ctx);

/* fini(): nothing is torn down (the library stays loaded, Python keeps
 * running); a later init() decides whether the handler is reloaded. */
SPM_EXPORT void spm_ctx_fini(int ctx);

/* Wait up to max_ms for the boot started by init() to finish.  Returns
 * true when the context is ready (a handler answered the boot, loaded or
 * refused: see spm_ctx_hooks). */
SPM_EXPORT bool spm_ctx_wait_ready(int ctx, uint32_t max_ms);

/* Is the handler of the current parameters booted (not loading)? */
SPM_EXPORT bool spm_ctx_ready(int ctx);

/* Bit mask (1 << SPM_HOOK_*) of the hooks to call: those the loaded
 * handler overrides; all of them while it is loading or unusable, so
 * that the calls come and fail closed. */
SPM_EXPORT uint32_t spm_ctx_hooks(int ctx);

/* job_submit: the conf file says on_failure=accept (a failure accepts
 * the job unchanged instead of refusing it). */
SPM_EXPORT bool spm_ctx_on_failure_accept(int ctx);

/* The per-call limit in ms (0: none): the handler's timeout=, else the
 * context's default from slurm.conf; always set, whatever the boot did. */
uint32_t spm_ctx_timeout_ms(int ctx);

/* The boot's upper limit: SPM_BOOT_TIMEOUT_MS ms, or less when the
 * environment variable of that name says so (a diagnostic knob). */
#define SPM_BOOT_TIMEOUT_MS 60000
SPM_EXPORT uint32_t spm_boot_timeout_ms(void);

/* ---- dispatch_prep.c ---- */

/* Remember the slurmctld callbacks; NULL entries keep the cached ones. */
SPM_EXPORT void spm_prep_set_callbacks(spm_slurm_cb_t prolog_cb,
				       spm_slurm_cb_t epilog_cb);

/* prolog/epilog_slurmctld: copy the job, queue it, return at once.  The
 * answer always arrives through the callback (cached, else slurmctld's
 * exported one), exactly once, from another thread, within the timeout
 * counted from now: even when memory runs out or no worker can run it.
 * Returns false only when there is no callback to call at all (not in
 * slurmctld): nothing was queued. */
SPM_EXPORT bool spm_prep_ctld_async(int hook, struct job_record *job_ptr);

/* slurmd prolog/epilog (job_env_t *, slurm_cred_t * or NULL): run on a worker, wait up to the
 * timeout.  Returns SLURM_SUCCESS or SLURM_ERROR. */
SPM_EXPORT int spm_prep_slurmd(int hook, void *job_env, void *cred);

/* ---- dispatch_site_factor.c ---- */

/* set one job's factor; update all pending jobs; reconfig.  Called under
 * slurmctld's job write lock: they copy, hand off to a worker, wait at
 * most the context's timeout (not at all while an earlier call is stuck
 * or the handler is still loading), then apply results. */
SPM_EXPORT void spm_sf_set(struct job_record *job_ptr);
SPM_EXPORT void spm_sf_update(void);
SPM_EXPORT void spm_sf_reconfig(void);

/* ---- dispatch_job_submit.c ---- */

/* job_submit(): run the handler's submit() on a worker (fail fast while
 * one is stuck), wait at most the context's timeout, then write the
 * handler's changes back into *job_desc (only if it accepted) and its
 * message into *err_msg.  Returns SLURM_SUCCESS, Reject's code, or
 * SLURM_ERROR; on failure (no handler, an exception, the timeout, no
 * worker) it refuses with a message, or accepts unchanged with
 * on_failure=accept (logged); a Reject always refuses. */
SPM_EXPORT int spm_js_submit(struct job_descriptor *job_desc,
			     uint32_t submit_uid, char **err_msg);

/* job_modify(): the same for modify().  err_msg is NULL on Slurm 22.05,
 * whose job_modify has none: the message of a refusal is then logged. */
SPM_EXPORT int spm_js_modify(struct job_descriptor *job_desc,
			     struct job_record *job_ptr, uint32_t submit_uid,
			     char **err_msg);

/* ---- dispatch_jobcomp.c ---- */

/* init()/set_location() of jobcomp/python.  In slurmctld only: open the
 * spool (spool= of jobcomp_python.conf, else
 * <StateSaveLocation>/jobcomp_python), drop a record torn by a crash at
 * its end, and start the deliverer (once; it keeps running across
 * fini/init, the spool is on disk).  Anywhere else (sacct -c, scontrol)
 * nothing happens.  Returns SLURM_SUCCESS, or SLURM_ERROR (logged) when
 * the spool cannot be opened. */
SPM_EXPORT int spm_jc_open(void);

/* jobcomp_p_log_record / record_job_end (SPM_HOOK_JC_END) and
 * record_job_start (SPM_HOOK_JC_START), under the job write lock: format
 * the job's completion record, append it to the spool and fdatasync it,
 * wake the deliverer.  Never waits for Python.  A record that does not
 * fit under the spool's size bound, or that cannot be written, is dropped
 * with an error logged each time (and counted).  Returns SLURM_SUCCESS or
 * SLURM_ERROR (dropped). */
SPM_EXPORT int spm_jc_record(int hook, struct job_record *job_ptr);

/* ---- snapshot.c: the only file that reads Slurm's records ---- */

/* Copy *job_ptr into a new arena.  Returns the copy (owned by *arena_out,
 * one reference) or NULL on OOM (*arena_out NULL). */
spm_job_t *spm_snapshot_job(struct job_record *job_ptr,
			    spm_arena_t **arena_out);

/* Copy a slurmd job_env_t the same way (the credential, may be NULL,
 * gives the user name from Slurm 23.11 on: see compat.h). */
spm_env_t *spm_snapshot_env(void *job_env, void *cred,
			    spm_arena_t **arena_out);

/* Copy every pending job of slurmctld's job_list into one batch: numbers
 * now, string fields lazily (spm_lazy_load) while the caller still holds
 * the job write lock.  The caller must call spm_lazy_close(batch->lazy)
 * before releasing that lock, whatever happened to the call.  Returns NULL
 * on OOM or when job_list is not reachable (not slurmctld). */
spm_batch_t *spm_snapshot_pending(spm_arena_t **arena_out);
void spm_lazy_close(spm_lazy_t *lazy);

/* The batch's records, in batch order (valid while the caller holds the
 * job write lock it took the snapshot under). */
struct job_record **spm_lazy_records(spm_lazy_t *lazy);

/* Copy a job_desc_msg_t into arena a (strings copied).  Returns NULL on
 * OOM. */
spm_jobdesc_t *spm_snapshot_jobdesc(struct job_descriptor *desc,
				    spm_arena_t *a);

/* Copy slurmctld's partitions (part_list; the caller holds the partition
 * read lock) into arena a.  An empty list outside slurmctld; NULL on
 * OOM. */
spm_partlist_t *spm_snapshot_parts(spm_arena_t *a);

/* A finished (or started) job as jobcomp sees it: numbers copied,
 * strings pointing into Slurm's records (valid while the caller holds the
 * job write lock; NULL: unset).  state is the job's base state word
 * ("COMPLETED", "FAILED", "TIMEOUT", ...), flags removed. */
typedef struct {
	uint32_t job_id, array_job_id, array_task_id, het_job_id,
		 het_job_offset, user_id, group_id, node_cnt, total_cpus,
		 time_limit, exit_code, derived_ec, requeues;
	int64_t submit_time, eligible_time, start_time, end_time,
		suspended_secs;
	const char *cluster, *name, *user_name, *account, *partition, *qos,
		   *wckey, *reservation, *state, *nodes, *tres_alloc,
		   *tres_req, *work_dir;
} spm_jc_view_t;

/* Fill *v from *job_ptr (no allocation). */
void spm_snapshot_jobcomp(struct job_record *job_ptr, spm_jc_view_t *v);

/* The job id of a record (so the dispatch files need no Slurm header). */
uint32_t spm_job_id(struct job_record *job_ptr);

/* ---- factors.c: the only file that writes into Slurm's records ---- */

/* Store a factor (signed, within [SPM_FACTOR_MIN, SPM_FACTOR_MAX]: Python
 * clamps) into the job record, NICE_OFFSET added.  Writes only if the
 * factor changes; returns whether it did. */
bool spm_apply_factor(struct job_record *job_ptr, int64_t factor);

/* Look jobs up by id and store their factors; jobs unknown or no longer
 * pending are skipped, with one log line for all of them. */
void spm_apply_factors(const uint32_t *job_ids, const int64_t *factors,
		       uint32_t n);

/* update() by batch index: factors[i] for recs[i] (the batch's records,
 * all pending: the lock was held since the snapshot), SPM_FACTOR_KEEP
 * leaves a job as it is. */
void spm_apply_factors_at(struct job_record **recs, const int64_t *factors,
			  uint32_t n);

/* ---- jobdesc.c: the only file that writes into job_desc_msg_t ---- */

/* Write back every field where *out differs from *in. */
void spm_apply_jobdesc(struct job_descriptor *desc, const spm_jobdesc_t *in,
		       const spm_jobdesc_t *out);

/* Add msg to *err_msg (Slurm's xmalloc'd string): after what an earlier
 * plugin of JobSubmitPlugins wrote there (job_submit/lua's
 * slurm.log_user lines), on a line of its own; NULL or "" adds nothing. */
void spm_set_err_msg(char **err_msg, const char *msg);

#endif /* SPM_H */
