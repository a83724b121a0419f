/*
 * dispatch_prep.c - the PrEp API as pool tasks: slurmctld's hooks answer
 * through Slurm's callback from a pool thread; slurmd's hooks wait,
 * bounded, for their worker.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "spm.h"

/* Wait statuses, as slurmctld's prep callbacks read them. */
#define STATUS_OK 0
#define STATUS_FAILED (1 << 8)        /* WIFEXITED, exit status 1 */
#define STATUS_KILLED SIGKILL         /* WIFSIGNALED: with timed_out=true */

/* Cached for the process lifetime: 22.05 re-inits the plugin after a
 * reconfigure without registering callbacks again. */
static spm_slurm_cb_t cached_cb[2];

static spm_slurm_cb_t *_slot(int hook)
{
	return &cached_cb[hook == SPM_HOOK_PROLOG_SLURMCTLD ? 0 : 1];
}

SPM_EXPORT void spm_prep_set_callbacks(spm_slurm_cb_t p, spm_slurm_cb_t e)
{
	if (p)
		__atomic_store_n(_slot(SPM_HOOK_PROLOG_SLURMCTLD), p, __ATOMIC_RELEASE);
	if (e)
		__atomic_store_n(_slot(SPM_HOOK_EPILOG_SLURMCTLD), e, __ATOMIC_RELEASE);
}

/* The registered callback, else the one slurmctld exports (a plugin first
 * loaded by a reconfigure never had callbacks registered). */
static spm_slurm_cb_t _callback(int hook)
{
	spm_slurm_cb_t cb = __atomic_load_n(_slot(hook), __ATOMIC_ACQUIRE);

	if (!cb && (cb = spm_slurmctld_callback(hook)))
		__atomic_store_n(_slot(hook), cb, __ATOMIC_RELEASE);
	return cb;
}

struct prep_call {
	spm_task_t task;           /* first: the pool's handle */
	int hook;
	spm_arena_t *arena;        /* owns job/env; NULL: the copy failed */
	spm_job_t *job;
	spm_env_t *env;
	uint32_t job_id;
	spm_slurm_cb_t cb;
	uint64_t t0_us;            /* submission, for stats */
	char why[SPM_WHY_SIZE];    /* the worker's, until it completes the
				    * task: read only when not timed out */
};

static int _run_prep(spm_task_t *task)
{
	struct prep_call *p = (struct prep_call *)task;

	if (!p->arena) {        /* the copy failed (logged) */
		snprintf(p->why, sizeof(p->why), "out of memory copying the job");
		return SPM_PY_FAILED;
	}
	return spm_py_prep(p->hook, p->arena, p->job, p->env, p->why);
}

static void _release_prep(spm_task_t *task)
{
	struct prep_call *p = (struct prep_call *)task;

	spm_arena_unref(p->arena);
	free(p);
}

static void _answer(int hook, spm_slurm_cb_t cb, uint32_t job_id,
		    int result, bool timed_out, uint32_t timeout_ms)
{
	int status = timed_out ? STATUS_KILLED :
		result == SPM_PY_OK ? STATUS_OK : STATUS_FAILED;

	if (timed_out)
		spm_logf(SPM_CTX_PREP, SPM_LOG_ERROR,
			 "%s for JobId=%u timed out: the handler exceeded its time limit of %u ms",
			 spm_hooks[hook].name, job_id, timeout_ms);
	else if (status != STATUS_OK)
		spm_logf(SPM_CTX_PREP, SPM_LOG_ERROR, "%s for JobId=%u failed",
			 spm_hooks[hook].name, job_id);
	/* Outside every lock and without the GIL: slurmctld's callback
	 * takes the job and node write locks. */
	cb(status, job_id, timed_out);
}

/* stats: the call's outcome (prep hooks succeed or fail: no refusals); a
 * failure Python did not report, or a timeout, is its hook's last error.
 * Only when not timed out may p->why be read (the worker's until then). */
static void _count(struct prep_call *p, int result, bool timed_out)
{
	char text[SPM_STATS_TEXT];
	uint64_t us = spm_stats_us_since(p->t0_us);

	if (timed_out) {
		snprintf(text, sizeof(text),
			 "%s for JobId=%u exceeded its time limit of %u ms",
			 spm_hooks[p->hook].name, p->job_id, p->task.timeout_ms);
		spm_stats_set_error(p->hook, "", text);
	} else if (result != SPM_PY_OK && !p->task.py_failed) {
		snprintf(text, sizeof(text), "%s for JobId=%u failed: %.200s",
			 spm_hooks[p->hook].name, p->job_id,
			 (result == SPM_PY_FAILED || result == SPM_PY_UNLOADED)
			 && p->why[0] ? p->why :
			 spm_py_status_why(result, &p->task));
		spm_stats_set_error(p->hook, "", text);
	}
	spm_stats_call(p->hook, timed_out ? SPM_STATS_TIMEOUT :
		       result == SPM_PY_OK ? SPM_STATS_OK : SPM_STATS_FAILED,
		       us);
}

static void _done_ctld(spm_task_t *task, int result, bool timed_out)
{
	struct prep_call *p = (struct prep_call *)task;

	_count(p, result, timed_out);

	_answer(p->hook, p->cb, p->job_id, result, timed_out,
		p->task.timeout_ms);
}

/* The answer when not even a call struct could be allocated: (hook,
 * job id) packed into the deferred call's argument. */
static void _answer_unallocated(uintptr_t arg)
{
	int hook = (int)(arg >> 32);
	uint32_t job_id = (uint32_t)arg;

	spm_logf(SPM_CTX_PREP, SPM_LOG_ERROR,
		 "out of memory queueing JobId=%u", job_id);
	spm_stats_set_error(hook, "", "out of memory queueing the call");
	spm_stats_call(hook, SPM_STATS_FAILED, 0);
	_answer(hook, _callback(hook), job_id, SPM_PY_FAILED, false, 0);
}

SPM_EXPORT bool spm_prep_ctld_async(int hook, struct job_record *job_ptr)
{
	spm_slurm_cb_t cb = _callback(hook);
	uint32_t job_id = spm_job_id(job_ptr);
	struct prep_call *p;

	if (!cb)
		return false;
	if (!(p = calloc(1, sizeof(*p)))) {
		if (spm_pool_defer(SPM_CTX_PREP, _answer_unallocated,
				   ((uintptr_t)hook << 32) | job_id))
			return true;
		spm_logf(SPM_CTX_PREP, SPM_LOG_ERROR,
			 "out of memory: cannot answer JobId=%u", job_id);
		return false;
	}
	spm_task_init(&p->task, SPM_CTX_PREP, _run_prep, _done_ctld,
		      _release_prep, spm_ctx_timeout_ms(SPM_CTX_PREP));
	p->task.ctx_timeout = true;
	p->task.stats_hook = hook;
	p->t0_us = spm_now_us();
	p->hook = hook;
	p->cb = cb;
	p->job_id = job_id;
	/* A failed copy still gets its (failing) answer. */
	if (!(p->job = spm_snapshot_job(job_ptr, &p->arena)))
		spm_logf(SPM_CTX_PREP, SPM_LOG_ERROR,
			 "out of memory copying JobId=%u", job_id);
	spm_pool_submit(&p->task);
	return true;
}

SPM_EXPORT int spm_prep_slurmd(int hook, void *job_env, void *cred)
{
	struct prep_call *p;
	bool timed_out;
	int rc;

	if (!(p = calloc(1, sizeof(*p)))) {
		spm_logf(SPM_CTX_PREP, SPM_LOG_ERROR, "out of memory for %s",
			 spm_hooks[hook].name);
		return SLURM_ERROR;
	}
	spm_task_init(&p->task, SPM_CTX_PREP, _run_prep, NULL, _release_prep,
		      spm_ctx_timeout_ms(SPM_CTX_PREP));
	p->task.ctx_timeout = true;
	p->task.stats_hook = hook;
	p->t0_us = spm_now_us();
	p->hook = hook;
	if (!(p->env = spm_snapshot_env(job_env, cred, &p->arena))) {
		spm_logf(SPM_CTX_PREP, SPM_LOG_ERROR,
			 "out of memory copying job_env");
		spm_task_unref(&p->task);
		return SLURM_ERROR;
	}
	p->job_id = p->env->job_id;
	rc = spm_pool_call(&p->task, &timed_out);
	/* Our reference keeps p valid, whatever the pool did with it. */
	_count(p, rc, timed_out);
	if (timed_out) {
		spm_logf(SPM_CTX_PREP, SPM_LOG_ERROR,
			 "%s for JobId=%u timed out: the handler exceeded its time limit of %u ms",
			 spm_hooks[hook].name, p->job_id, p->task.timeout_ms);
		/* the worker may still be running, and writing p->why */
		snprintf(p->why, sizeof(p->why),
			 "%s timed out after %u ms", spm_hooks[hook].name,
			 p->task.timeout_ms);
	} else if (rc != SPM_PY_OK && ((rc != SPM_PY_FAILED &&
					  rc != SPM_PY_UNLOADED) || !p->why[0])) {
		/* not the handler's failure (Python fills why for those) */
		snprintf(p->why, sizeof(p->why), "%s failed: %s",
			 spm_hooks[hook].name, spm_py_status_why(rc, &p->task));
	}
	/* Slurm drains the node for a failed prolog or epilog with a bare
	 * "Prolog error"/"Epilog error" and keeps the reason of a node
	 * already draining: drain it first, with ours. */
	if (rc != SPM_PY_OK)
		spm_drain_node(SPM_CTX_PREP, p->job_id, p->why);
	spm_task_unref(&p->task);
	return rc == SPM_PY_OK ? SLURM_SUCCESS : SLURM_ERROR;
}
