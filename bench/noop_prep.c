/*
 * noop_prep.c - a C "no-op" PrEp plugin, the baseline for prep/python's
 * bridge cost (bench/run.py).  Built like build/plugins/prep_python.so
 * (gcc -O2 -g -fPIC -shared against the same Slurm tree, same version
 * script, -z nodelete).
 *
 * PrEpParameters (slurm_conf.prep_params) picks the mode:
 *
 *   mode=handoff (default)  the same hand-off shape as the Python shim,
 *                           minus the record snapshot and Python:
 *                           prolog/epilog_slurmctld queue the job id on a
 *                           mutex+condvar queue and return *async=true; one
 *                           worker thread pops it and calls slurmctld's
 *                           callback (never from inside the hook, as a real
 *                           async plugin must).  slurmd prolog/epilog queue
 *                           a task and wait until the worker marks it done
 *                           (like spm_pool_call()).
 *   mode=direct             no threads at all: slurmctld hooks answer
 *                           synchronously (*async=false), slurmd hooks
 *                           return 0.  The floor of a plugin call.
 *
 * Also loadable by a real slurmctld (PrEpPlugins=prep/noop with
 * build/bench in PluginDir): bench/run.py's cluster control (d).
 */
#include "config.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slurm/slurm.h"
#include "slurm/slurm_errno.h"
#include "compat.h"		/* csrc/: where prep.h lives on this release */
#include SPM_PREP_H
#include "src/slurmctld/slurmctld.h"

const char plugin_name[] = "no-op PrEp plugin (slurmpy bench baseline)";
const char plugin_type[] = "prep/noop";
const uint32_t plugin_version = SLURM_VERSION_NUMBER;

struct task {
	struct task *next;
	uint32_t job_id;
	int hook;		/* 0 prolog_slurmctld, 1 epilog_slurmctld, 2 slurmd */
	bool done;
};

static prep_callbacks_t cbs;
static bool direct;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static struct task *q_head, *q_tail;
static bool worker_started;

static void *_worker(void *arg)
{
	(void) arg;
	pthread_mutex_lock(&mu);
	for (;;) {
		struct task *t;

		while (!q_head)
			pthread_cond_wait(&work_cv, &mu);
		t = q_head;
		if (!(q_head = t->next))
			q_tail = NULL;
		if (t->hook == 2) {	/* slurmd: the waiter frees it */
			t->done = true;
			pthread_cond_broadcast(&done_cv);
			continue;
		}
		pthread_mutex_unlock(&mu);
		if (t->hook == 0)
			cbs.prolog_slurmctld(0, t->job_id, false);
		else
			cbs.epilog_slurmctld(0, t->job_id, false);
		free(t);
		pthread_mutex_lock(&mu);
	}
	return NULL;
}

static void _enqueue(struct task *t)
{
	pthread_mutex_lock(&mu);
	if (!worker_started) {
		pthread_t tid;

		if (pthread_create(&tid, NULL, _worker, NULL) == 0) {
			pthread_detach(tid);
			worker_started = true;
		}
	}
	t->next = NULL;
	if (q_tail)
		q_tail->next = t;
	else
		q_head = t;
	q_tail = t;
	pthread_cond_signal(&work_cv);
	pthread_mutex_unlock(&mu);
}

extern int init(void)
{
	direct = slurm_conf.prep_params &&
		strstr(slurm_conf.prep_params, "mode=direct");
	return SLURM_SUCCESS;
}

extern void fini(void)
{
}

extern void prep_p_register_callbacks(prep_callbacks_t *callbacks)
{
	if (callbacks->prolog_slurmctld)
		cbs.prolog_slurmctld = callbacks->prolog_slurmctld;
	if (callbacks->epilog_slurmctld)
		cbs.epilog_slurmctld = callbacks->epilog_slurmctld;
}

static int _slurmd(job_env_t *env)
{
	struct task t = { .job_id = env->jobid, .hook = 2 };

	if (direct)
		return SLURM_SUCCESS;
	_enqueue(&t);
	pthread_mutex_lock(&mu);
	while (!t.done)
		pthread_cond_wait(&done_cv, &mu);
	pthread_mutex_unlock(&mu);
	return SLURM_SUCCESS;
}

extern int prep_p_prolog(job_env_t *job_env, slurm_cred_t *cred)
{
	return _slurmd(job_env);
}

extern int prep_p_epilog(job_env_t *job_env, slurm_cred_t *cred)
{
	return _slurmd(job_env);
}

static int _ctld(int hook, job_record_t *job_ptr, bool *async)
{
	struct task *t;

	*async = false;
	if (direct)
		return SLURM_SUCCESS;
	if (!(hook ? cbs.epilog_slurmctld : cbs.prolog_slurmctld) ||
	    !(t = calloc(1, sizeof(*t))))
		return SLURM_ERROR;
	t->job_id = job_ptr->job_id;
	t->hook = hook;
	_enqueue(t);
	*async = true;
	return SLURM_SUCCESS;
}

extern int prep_p_prolog_slurmctld(job_record_t *job_ptr, bool *async)
{
	return _ctld(0, job_ptr, async);
}

extern int prep_p_epilog_slurmctld(job_record_t *job_ptr, bool *async)
{
	return _ctld(1, job_ptr, async);
}

/* slurmctld hooks are always required; slurmd's prolog/epilog only with
 * "slurmd=1" in PrEpParameters (bench/run.py's cluster control (d) matches
 * prep/python with a handler that has only slurmctld hooks). */
extern void prep_p_required(prep_call_type_t type, bool *required)
{
	*required = (type == PREP_PROLOG_SLURMCTLD ||
		     type == PREP_EPILOG_SLURMCTLD) ||
		(slurm_conf.prep_params &&
		 strstr(slurm_conf.prep_params, "slurmd=1"));
}
