/*
 * dispatch_job_submit.c - the job_submit API as pool tasks.  slurmctld
 * calls job_submit()/job_modify() on an RPC thread that holds its config,
 * job, node and partition read locks and job_submit's own mutex (one call
 * at a time): the call copies the request and the partitions, hands them
 * to a worker and waits at most the context's timeout.  A worker stuck
 * past it is written off and the next call runs on a fresh one (up to the
 * pool's bound, SPM_POOL_MAX_STUCK), so one hung call costs one refusal;
 * the written-off call may still be running when the next one starts.
 * The handler's changes are written back only if it accepted in time.
 *
 * What slurmctld gets is decided here, and only here (_answer()), from the
 * call's SPM_PY_* status: Python reports what the handler did, this file
 * adds what no Python code sees (timeout, pool, bridge, memory), applies
 * on_failure= and writes the refusal's text and its log line.  The test
 * kit's _js_answer() (slurmpy_plugins/testing.py) mirrors it, and
 * tests/unit/test_kit.py holds the two to the same answers.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spm.h"

struct js_call {
	spm_task_t task;           /* first: the pool's handle */
	spm_js_call_t call;        /* the bridge's (its arena owns the rest) */
};

static int _run_js(spm_task_t *task)
{
	return spm_py_js_call(&((struct js_call *)task)->call);
}

static void _release_js(spm_task_t *task)
{
	struct js_call *j = (struct js_call *)task;

	if (j->call.arena)
		spm_arena_unref(j->call.arena);
	if (j->call.current_arena)
		spm_arena_unref(j->call.current_arena);
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
	j->call.hook = hook;
	j->call.submit_uid = uid;
	if (!(j->call.arena = spm_arena_new(8192)) ||
	    !(j->call.desc_in = spm_snapshot_jobdesc(desc, j->call.arena)) ||
	    !(j->call.desc_out = spm_arena_alloc(j->call.arena,
						sizeof(*j->call.desc_out))) ||
	    !(j->call.parts = spm_snapshot_parts(j->call.arena))) {
		spm_task_unref(&j->task);
		return NULL;
	}
	*j->call.desc_out = *j->call.desc_in; /* strings shared: Python
					       * replaces, never writes into
					       * them */
	if (job_ptr && !(j->call.current = spm_snapshot_job(job_ptr,
						&j->call.current_arena))) {
		spm_task_unref(&j->task);
		return NULL;
	}
	/* scontrol update names the job by job_id_str: job.job_id is the
	 * job's id (read only, never written back) */
	if (job_ptr && j->call.desc_in->job_id == SPM_NO_VAL)
		j->call.desc_in->job_id = j->call.desc_out->job_id =
			spm_job_id(job_ptr);
	return j;
}

#define JS_REFUSED "job_submit/python: request refused: the site's job submission policy"

/* The answer to slurmctld for one call, from its status (SPM_PY_*, or
 * timed_out): apply on_failure=, set the user's message, log.  `what`
 * names the call in log lines; `why` is the failure in one line (FAILED,
 * UNLOADED and the failures of the call itself); msg/code are the
 * handler's (OK, REFUSED, FAILED).  Every refusal but the handler's own
 * (REFUSED) is a failure: on_failure=accept accepts the request unchanged
 * instead, logged each time. */
static int _answer(int hook, const char *what, int status, const char *why,
		   const char *msg, int code, struct job_descriptor *desc,
		   const spm_js_call_t *call, char **err_msg)
{
	bool unloaded = status == SPM_PY_UNLOADED;
	const char *pre = unloaded ? "no usable handler (" : "";
	const char *post = unloaded ? ")" : "";
	char *text = NULL;
	int rc;

	if (status == SPM_PY_OK) {
		spm_apply_jobdesc(desc, call->desc_in, call->desc_out);
		spm_set_err_msg(err_msg, msg);
		return SLURM_SUCCESS;
	}
	if (status == SPM_PY_REFUSED) {
		if (hook == SPM_HOOK_JS_MODIFY)
			spm_logf(SPM_CTX_JOB_SUBMIT, SPM_LOG_INFO,
				 "modify() refused the update of JobId=%u: %s",
				 call->desc_in->job_id, msg ? msg : "");
		spm_set_err_msg(err_msg, msg);
		return code ? code : SLURM_ERROR;
	}
	/* the handler's lines before it failed still reach the user */
	spm_set_err_msg(err_msg, msg);
	if (spm_ctx_on_failure_accept(SPM_CTX_JOB_SUBMIT)) {
		spm_logf(SPM_CTX_JOB_SUBMIT, SPM_LOG_ERROR,
			 "%s failed (%s%s%s); on_failure=accept: the request is accepted unchanged",
			 what, pre, why, post);
		return SLURM_SUCCESS;
	}
	spm_logf(SPM_CTX_JOB_SUBMIT, SPM_LOG_ERROR, "%s refused: %s%s%s", what,
		 pre, why, post);
	/* why may be Python's (a load error names files): no fixed size */
	if (unloaded)
		rc = asprintf(&text, JS_REFUSED " is not loaded (%s)", why);
	else if (status == SPM_PY_FAILED)   /* the traceback is in the log */
		rc = asprintf(&text, JS_REFUSED " failed (an administrator can find the error in slurmctld's log)");
	else
		rc = asprintf(&text, JS_REFUSED " failed (%s)", why);
	spm_set_err_msg(err_msg, rc < 0 ? JS_REFUSED " failed" : text);
	if (rc >= 0)
		free(text);
	return SLURM_ERROR;
}

static int _js_run(int hook, struct job_descriptor *desc,
		   struct job_record *job_ptr, uint32_t uid, char **err_msg)
{
	struct js_call *j;
	bool timed_out;
	int rc, ret, outcome;
	uint64_t t0 = spm_now_us();
	uint32_t job_id;
	char why[160], what[64];
	const char *reason;

	if (!(spm_ctx_hooks(SPM_CTX_JOB_SUBMIT) & (1u << hook)))
		return SLURM_SUCCESS;   /* the handler does not override it */
	j = _js_new(hook, desc, job_ptr, uid);
	job_id = j ? j->call.desc_in->job_id :
		job_ptr ? spm_job_id(job_ptr) : 0;
	if (hook == SPM_HOOK_JS_MODIFY)
		snprintf(what, sizeof(what), "modify() for JobId=%u", job_id);
	else
		snprintf(what, sizeof(what), "submit() for a job of uid %u",
			 uid);
	if (!j) {
		reason = "out of memory copying the request";
		spm_stats_set_error(hook, "", reason);
		spm_stats_call(hook, SPM_STATS_FAILED, spm_stats_us_since(t0));
		return _answer(hook, what, SPM_PY_UNAVAILABLE, reason, NULL, 0,
			       desc, NULL, err_msg);
	}
	rc = spm_pool_call(&j->task, &timed_out);
	if (timed_out) {
		/* the worker may still be running: read nothing it writes */
		snprintf(why, sizeof(why),
			 "the handler did not answer within its time limit of %u ms",
			 j->task.timeout_ms);
		rc = SPM_PY_EXCEPTION;
		reason = why;
	} else if (rc == SPM_PY_OK || rc == SPM_PY_REFUSED) {
		reason = NULL;
	} else if (rc == SPM_PY_FAILED || rc == SPM_PY_UNLOADED) {
		reason = j->call.why ? j->call.why : "see slurmctld's log";
	} else if (rc == SPM_PY_UNAVAILABLE) {
		reason = j->task.why ? j->task.why :
			"no worker could run the handler";
	} else {
		reason = rc == SPM_PY_UNATTACHED ?
			"the Python bridge is not attached" :
			"the Python bridge failed (see slurmctld's log)";
		rc = SPM_PY_EXCEPTION;
	}
	/* stats: Python recorded the error of FAILED and UNLOADED itself;
	 * on_failure=accept still counts a failure as one */
	outcome = timed_out ? SPM_STATS_TIMEOUT :
		rc == SPM_PY_OK ? SPM_STATS_OK :
		rc == SPM_PY_REFUSED ? SPM_STATS_REFUSED : SPM_STATS_FAILED;
	if (timed_out || rc == SPM_PY_UNAVAILABLE || rc == SPM_PY_EXCEPTION)
		spm_stats_set_error(hook, "", reason);
	ret = _answer(hook, what, rc, reason,
		      timed_out ? NULL : j->call.msg,
		      timed_out ? 0 : j->call.code, desc,
		      &j->call, err_msg);
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
