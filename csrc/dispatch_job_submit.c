/*
 * dispatch_job_submit.c - the job_submit API as pool tasks.  slurmctld
 * calls job_submit()/job_modify() on an RPC thread that holds its config,
 * job, node and partition read locks and job_submit's own mutex (one call
 * at a time): the call copies the request and the partitions, hands them
 * to a worker and waits at most the context's timeout.  A worker stuck
 * past it is written off and the next call runs on a fresh one (up to the
 * pool's bound, SPM_POOL_MAX_STUCK), so one hung call costs one refusal;
 * the written-off call may still be running when the next one starts.
 * The handler's changes are written back only if it accepted in time.  Every failure refuses the request with a
 * message, or accepts it unchanged with on_failure=accept (logged).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spm.h"

struct js_call {
	spm_task_t task;           /* first: the pool's handle */
	int hook;
	spm_arena_t *arena;        /* owns everything below */
	spm_jobdesc_t *in, *out;
	spm_job_t *current;        /* modify(): the job's record */
	spm_arena_t *job_arena;    /* owns current */
	spm_partlist_t *parts;
	uint32_t submit_uid;
	char *msg;                 /* the handler's message (in the arena) */
	int code;                  /* Reject's code (0: none, SLURM_ERROR) */
};

static int _run_js(spm_task_t *task)
{
	struct js_call *j = (struct js_call *)task;

	return spm_py_js_call(j->hook, j->arena, j->in, j->out, j->job_arena,
			      j->current,
			      j->parts, j->submit_uid, &j->msg, &j->code);
}

static void _release_js(spm_task_t *task)
{
	struct js_call *j = (struct js_call *)task;

	if (j->arena)
		spm_arena_unref(j->arena);
	if (j->job_arena)
		spm_arena_unref(j->job_arena);
	free(j);
}

/* Copy the request (twice: as it came, and the one Python changes), the
 * partitions and, for modify(), the job.  NULL on OOM. */
static struct js_call *_js_new(int hook, struct job_descriptor *desc,
			       struct job_record *job_ptr, uint32_t uid)
{
	struct js_call *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	spm_task_init(&j->task, SPM_CTX_JOB_SUBMIT, _run_js, NULL, _release_js,
		      spm_ctx_timeout_ms(SPM_CTX_JOB_SUBMIT));
	j->task.ctx_timeout = true;
	j->task.stats_hook = hook;
	j->hook = hook;
	j->submit_uid = uid;
	if (!(j->arena = spm_arena_new(8192)) ||
	    !(j->in = spm_snapshot_jobdesc(desc, j->arena)) ||
	    !(j->out = spm_arena_alloc(j->arena, sizeof(*j->out))) ||
	    !(j->parts = spm_snapshot_parts(j->arena))) {
		spm_task_unref(&j->task);
		return NULL;
	}
	*j->out = *j->in;          /* strings shared: Python replaces, never
				    * writes into them */
	if (job_ptr && !(j->current = spm_snapshot_job(job_ptr,
						      &j->job_arena))) {
		spm_task_unref(&j->task);
		return NULL;
	}
	/* scontrol update names the job by job_id_str: job.job_id is the
	 * job's id (read only, never written back) */
	if (job_ptr && j->in->job_id == SPM_NO_VAL)
		j->in->job_id = j->out->job_id = spm_job_id(job_ptr);
	return j;
}

/* A failure Python could not answer (timeout, stuck or closed pool, the
 * bridge not attached, out of memory): refuse with `why`, or accept
 * unchanged with on_failure=accept.  Both logged. */
static int _failed(int hook, uint32_t job_id, const char *why, char **err_msg)
{
	char text[512];

	if (spm_ctx_on_failure_accept(SPM_CTX_JOB_SUBMIT)) {
		spm_logf(SPM_CTX_JOB_SUBMIT, SPM_LOG_ERROR,
			 "%s() failed (%s); on_failure=accept: the request is accepted unchanged",
			 spm_hooks[hook].name, why);
		return SLURM_SUCCESS;
	}
	snprintf(text, sizeof(text),
		 "job_submit/python: request refused: the site's job submission policy failed (%s)",
		 why);
	if (hook == SPM_HOOK_JS_MODIFY)
		spm_logf(SPM_CTX_JOB_SUBMIT, SPM_LOG_ERROR,
			 "modify() for JobId=%u refused: %s", job_id, why);
	else
		spm_logf(SPM_CTX_JOB_SUBMIT, SPM_LOG_ERROR,
			 "submit() refused a request: %s", why);
	spm_set_err_msg(err_msg, text);
	return SLURM_ERROR;
}

static int _js_run(int hook, struct job_descriptor *desc,
		   struct job_record *job_ptr, uint32_t uid, char **err_msg)
{
	struct js_call *j;
	bool timed_out;
	int rc, ret, outcome;
	uint64_t t0 = spm_now_us();
	char why[160];

	if (!(spm_ctx_hooks(SPM_CTX_JOB_SUBMIT) & (1u << hook)))
		return SLURM_SUCCESS;   /* the handler does not override it */
	if (!(j = _js_new(hook, desc, job_ptr, uid))) {
		spm_stats_set_error(hook, "", "out of memory copying the request");
		spm_stats_call(hook, SPM_STATS_FAILED, spm_stats_us_since(t0));
		return _failed(hook, job_ptr ? spm_job_id(job_ptr) : 0,
			       "out of memory copying the request", err_msg);
	}
	rc = spm_pool_call(&j->task, &timed_out);
	/* stats: a refusal is the handler's own (Reject: a message, and no
	 * failure reported by Python); on_failure=accept still counts a
	 * failure as one */
	outcome = timed_out ? SPM_STATS_TIMEOUT :
		j->task.py_failed ? SPM_STATS_FAILED :
		rc == SPM_PY_OK ? SPM_STATS_OK :
		rc == SPM_PY_FAILED && j->msg ? SPM_STATS_REFUSED :
		SPM_STATS_FAILED;
	if (timed_out) {
		snprintf(why, sizeof(why),
			 "the handler did not answer within its time limit of %u ms",
			 j->task.timeout_ms);
		spm_stats_set_error(hook, "", why);
		ret = _failed(hook, j->in->job_id, why, err_msg);
	} else if (rc == SPM_PY_OK) {
		spm_apply_jobdesc(desc, j->in, j->out);
		spm_set_err_msg(err_msg, j->msg);
		ret = SLURM_SUCCESS;
	} else if (rc == SPM_PY_FAILED && j->msg) {
		/* the handler refused (or failed: Python logged why), with
		 * Reject's code if it gave one */
		if (hook == SPM_HOOK_JS_MODIFY)
			spm_logf(SPM_CTX_JOB_SUBMIT, SPM_LOG_INFO,
				 "modify() refused the update of JobId=%u: %s",
				 j->in->job_id, j->msg);
		spm_set_err_msg(err_msg, j->msg);
		ret = j->code ? j->code : SLURM_ERROR;
	} else if (rc == SPM_PY_FAILED) {
		/* the pool could not run it: its reason (every worker stuck,
		 * or the pool closed) */
		spm_stats_set_error(hook, "", j->task.why ? j->task.why :
				    "no worker could run the handler");
		ret = _failed(hook, j->in->job_id, j->task.why ? j->task.why :
			      "no worker could run the handler", err_msg);
	} else {
		spm_stats_set_error(hook, "", "the Python bridge is not attached");
		ret = _failed(hook, j->in->job_id,
			      "the Python bridge is not attached", err_msg);
	}
	spm_stats_call(hook, outcome, spm_stats_us_since(t0));
	spm_task_unref(&j->task);
	return ret;
}

SPM_EXPORT int spm_js_submit(struct job_descriptor *job_desc,
			     uint32_t submit_uid, char **err_msg)
{
	return _js_run(SPM_HOOK_JS_SUBMIT, job_desc, NULL, submit_uid, err_msg);
}

SPM_EXPORT int spm_js_modify(struct job_descriptor *job_desc,
			     struct job_record *job_ptr, uint32_t submit_uid,
			     char **err_msg)
{
	return _js_run(SPM_HOOK_JS_MODIFY, job_desc, job_ptr, submit_uid,
		       err_msg);
}
