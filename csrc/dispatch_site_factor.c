/*
 * dispatch_site_factor.c - the site_factor API as pool tasks.  Every call
 * comes under slurmctld's job write lock, so none waits for a loading
 * handler or behind a stuck one: it fails at once, factors unchanged.
 */
#define _GNU_SOURCE
#include <stdlib.h>

#include <stdio.h>

#include "spm.h"

struct sf_call {
	spm_task_t task;           /* first: the pool's handle */
	int hook;
	spm_arena_t *arena;        /* owns job / batch */
	spm_job_t *job;
	spm_batch_t *batch;
	uint32_t *ids;             /* update(): job ids returned */
	int64_t *factors;          /* update(): their factors; set(): [0] */
	uint32_t cap, n;
	int have;
	int by_index;              /* update(): factors[i] is job i's */
};

static int _run_sf(spm_task_t *task)
{
	struct sf_call *s = (struct sf_call *)task;

	switch (s->hook) {
	case SPM_HOOK_SF_SET:
		return spm_py_sf_set(s->arena, s->job, s->factors, &s->have);
	case SPM_HOOK_SF_UPDATE:
		return spm_py_sf_update(s->arena, s->batch, s->ids, s->factors,
					s->cap, &s->n, &s->by_index);
	default:
		return spm_py_sf_reconfig();
	}
}

static void _release_sf(spm_task_t *task)
{
	struct sf_call *s = (struct sf_call *)task;

	spm_arena_unref(s->arena);
	free(s->ids);
	free(s->factors);
	free(s);
}

static struct sf_call *_sf_new(int hook, uint32_t cap)
{
	struct sf_call *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	spm_task_init(&s->task, SPM_CTX_SITE_FACTOR, _run_sf, NULL, _release_sf,
		      spm_ctx_timeout_ms(SPM_CTX_SITE_FACTOR));
	s->task.fail_fast = true;
	s->task.ctx_timeout = true;
	s->task.stats_hook = hook;
	s->hook = hook;
	s->cap = cap;
	if (cap && (!(s->ids = calloc(cap, sizeof(*s->ids))) ||
		    !(s->factors = calloc(cap, sizeof(*s->factors))))) {
		spm_task_unref(&s->task);
		return NULL;
	}
	return s;
}

/* stats: the call's outcome; a failure Python did not report (the pool
 * could not run it, the bridge is not attached, no usable handler) or a
 * timeout is its hook's last error. */
static void _count(struct sf_call *s, int rc, bool timed_out, uint64_t us)
{
	char text[SPM_STATS_TEXT];

	if (timed_out) {
		snprintf(text, sizeof(text),
			 "%s() exceeded its time limit of %u ms",
			 spm_hooks[s->hook].name, s->task.timeout_ms);
		spm_stats_set_error(s->hook, "", text);
	} else if (rc != SPM_PY_OK && !s->task.py_failed) {
		snprintf(text, sizeof(text), "%s() failed: %s",
			 spm_hooks[s->hook].name,
			 spm_py_status_why(rc, &s->task));
		spm_stats_set_error(s->hook, "", text);
	}
	spm_stats_call(s->hook, timed_out ? SPM_STATS_TIMEOUT :
		       rc == SPM_PY_OK ? SPM_STATS_OK : SPM_STATS_FAILED, us);
}

/* Run a call on the pool; true if the handler answered OK in time.  The
 * caller keeps its reference; after a timeout it must not read what the
 * (still running) handler writes. */
static bool _sf_call(struct sf_call *s)
{
	bool timed_out;
	uint64_t t0 = spm_now_us();
	int rc = spm_pool_call(&s->task, &timed_out);

	_count(s, rc, timed_out, spm_stats_us_since(t0));
	if (timed_out)
		spm_logf(SPM_CTX_SITE_FACTOR, SPM_LOG_ERROR,
			 "%s(): the handler exceeded its time limit of %u ms; factors left unchanged",
			 spm_hooks[s->hook].name, s->task.timeout_ms);
	else if (rc == SPM_PY_UNATTACHED)
		spm_logf(SPM_CTX_SITE_FACTOR, SPM_LOG_ERROR,
			 "%s(): the Python bridge is not attached; factors left unchanged",
			 spm_hooks[s->hook].name);
	return !timed_out && rc == SPM_PY_OK;
}

/* Calls skipped while the handler loads: one log line a second at most. */
static uint32_t skipped;
static uint64_t skipped_logged_ms;

static bool _wanted(int hook)
{
	uint64_t now;
	uint32_t n;

	if (!(spm_ctx_hooks(SPM_CTX_SITE_FACTOR) & (1u << hook)))
		return false;
	if (spm_ctx_ready(SPM_CTX_SITE_FACTOR))
		return true;
	/* Callers hold the job write lock: one at a time. */
	n = ++skipped;
	now = spm_now_ms();
	if (now - skipped_logged_ms >= 1000) {
		spm_logf(SPM_CTX_SITE_FACTOR, SPM_LOG_INFO,
			 "the handler is still loading: %u call(s) skipped, factors left unchanged",
			 n);
		skipped = 0;
		skipped_logged_ms = now;
	}
	return false;
}

SPM_EXPORT void spm_sf_set(struct job_record *job_ptr)
{
	struct sf_call *s;

	if (!_wanted(SPM_HOOK_SF_SET) || !(s = _sf_new(SPM_HOOK_SF_SET, 1)))
		return;
	if ((s->job = spm_snapshot_job(job_ptr, &s->arena)) && _sf_call(s) &&
	    s->have)
		spm_apply_factor(job_ptr, s->factors[0]);
	spm_task_unref(&s->task);
}

SPM_EXPORT void spm_sf_update(void)
{
	spm_arena_t *arena;
	spm_batch_t *batch;
	struct sf_call *s;
	bool ok;

	if (!_wanted(SPM_HOOK_SF_UPDATE))
		return;
	if (!(batch = spm_snapshot_pending(&arena))) {
		spm_logf(SPM_CTX_SITE_FACTOR, SPM_LOG_ERROR,
			 "update(): cannot copy the pending jobs; factors left unchanged");
		return;
	}
	if (!(s = _sf_new(SPM_HOOK_SF_UPDATE, batch->count))) {
		spm_lazy_close(batch->lazy);
		spm_arena_unref(arena);
		return;
	}
	s->arena = arena;     /* the call owns the batch now */
	s->batch = batch;
	ok = _sf_call(s);
	/* Before slurmctld releases its job lock: from here on Python reads
	 * nothing more from Slurm's records (our reference keeps s). */
	spm_lazy_close(batch->lazy);
	if (ok && s->by_index)
		spm_apply_factors_at(spm_lazy_records(batch->lazy), s->factors,
				     s->n < batch->count ? s->n : batch->count);
	else if (ok)
		spm_apply_factors(s->ids, s->factors, s->n);
	spm_task_unref(&s->task);
}

SPM_EXPORT void spm_sf_reconfig(void)
{
	struct sf_call *s;

	/* Also the moment Python re-checks the handler file.  A handler
	 * still loading (new parameters) has nothing to reconfigure. */
	if (!spm_ctx_ready(SPM_CTX_SITE_FACTOR) ||
	    !(s = _sf_new(SPM_HOOK_SF_RECONFIG, 0)))
		return;
	(void)_sf_call(s);
	spm_task_unref(&s->task);
}
