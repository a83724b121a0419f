/*
 * calls.c - the one dispatch path of both plugins: context state, boot,
 * and each hook turned into a pool task.  No Slurm struct is read here
 * (snapshot.c does that); no Python object is touched here (only the
 * spm_py_* entry points, and only from pool workers).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "spm.h"

#define SLURM_SUCCESS 0
#define SLURM_ERROR -1

#define BOOT_TIMEOUT_MS 60000
#define SF_DEFAULT_TIMEOUT_MS 5000

/* Wait statuses, as slurmctld's prep callbacks read them. */
#define STATUS_OK 0
#define STATUS_FAILED (1 << 8)        /* WIFEXITED, exit status 1 */
#define STATUS_KILLED SIGKILL         /* WIFSIGNALED: with timed_out=true */

struct ctx_state {
	pthread_mutex_t mu;
	char *params;          /* as of the last init() */
	char *booted_params;   /* params of the current boot */
	bool booted;           /* a boot ran (successfully or not) */
	bool runtime_dead;     /* Python cannot run in this process */
	uint32_t hooks;        /* atomic: 1 << SPM_HOOK_* */
	uint32_t timeout_ms;
};

static struct ctx_state ctxs[2] = {
	{ .mu = PTHREAD_MUTEX_INITIALIZER },
	{ .mu = PTHREAD_MUTEX_INITIALIZER },
};

/* Cached for the process lifetime: 22.05 re-inits the plugin after a
 * reconfigure without registering callbacks again. */
static spm_slurm_cb_t prolog_cb, epilog_cb;

static struct ctx_state *_ctx(int ctx)
{
	return &ctxs[ctx == SPM_CTX_SITE_FACTOR ? 1 : 0];
}

void spm_set_hooks(int ctx, uint32_t hooks)
{
	__atomic_store_n(&_ctx(ctx)->hooks, hooks, __ATOMIC_RELEASE);
}

SPM_EXPORT uint32_t spm_ctx_hooks(int ctx)
{
	return __atomic_load_n(&_ctx(ctx)->hooks, __ATOMIC_ACQUIRE);
}

static bool _same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

SPM_EXPORT int spm_ctx_init(int ctx)
{
	struct ctx_state *c = _ctx(ctx);
	spm_conf_t conf;

	spm_read_conf(ctx, &conf);
	pthread_mutex_lock(&c->mu);
	free(c->params);
	c->params = conf.params ? strdup(conf.params) : NULL;
	pthread_mutex_unlock(&c->mu);
	return SLURM_SUCCESS;
}

SPM_EXPORT void spm_ctx_fini(int ctx)
{
	/* The library and Python stay; the next init() decides whether the
	 * handler must be reloaded. */
	(void)ctx;
}

struct boot_call {
	spm_task_t task;
	spm_boot_t boot;
	char *params;
	char *conf_path;
};

static int _run_boot(spm_task_t *task)
{
	struct boot_call *b = task->data;

	return spm_py_boot(&b->boot);
}

static void _release_boot(spm_task_t *task)
{
	struct boot_call *b = task->data;

	free(b->params);
	free(b->conf_path);
	free(b);
}

/* With c->mu held. */
static bool _boot_locked(int ctx, struct ctx_state *c)
{
	spm_conf_t conf;
	struct boot_call *b;
	bool timed_out;
	int rc;

	c->booted = true;
	free(c->booted_params);
	c->booted_params = c->params ? strdup(c->params) : NULL;
	/* Until a handler answers, every hook is required and fails. */
	spm_set_hooks(ctx, ~0u);

	if (spm_runtime_start() || spm_pool_start(ctx, 1)) {
		c->runtime_dead = true;
		spm_logf(ctx, SPM_LOG_ERROR,
			 "Python is not available in this daemon: every hook will fail");
		return false;
	}
	spm_read_conf(ctx, &conf);
	if (!(b = calloc(1, sizeof(*b))))
		return false;
	b->params = c->params ? strdup(c->params) : NULL;
	b->conf_path = conf.conf_path ? strdup(conf.conf_path) : NULL;
	b->boot.ctx = ctx;
	b->boot.daemon = spm_daemon();
	b->boot.params = b->params;
	b->boot.conf_path = b->conf_path;
	b->boot.default_timeout = conf.prolog_epilog_timeout;
	b->boot.slurm_user_id = conf.slurm_user_id;
	b->task.ctx = ctx;
	b->task.run = _run_boot;
	b->task.release = _release_boot;
	b->task.data = b;
	b->task.timeout_ms = BOOT_TIMEOUT_MS;

	rc = spm_pool_call(&b->task, &timed_out);
	if (timed_out) {
		spm_logf(ctx, SPM_LOG_ERROR,
			 "loading the handler took more than %d s; every hook will fail until it loads",
			 BOOT_TIMEOUT_MS / 1000);
		return false;   /* the pool releases b */
	}
	if (rc == SPM_PY_UNATTACHED)
		spm_logf(ctx, SPM_LOG_ERROR,
			 "the Python bridge did not attach (see the slurmpy errors above); every hook will fail");
	/* Python reports the hooks (all of them when the handler failed to
	 * load, so that the calls come and fail closed). */
	if (rc == SPM_PY_OK || rc == SPM_PY_FAILED)
		spm_set_hooks(ctx, b->boot.hooks);
	c->timeout_ms = b->boot.timeout_ms;
	if (ctx == SPM_CTX_SITE_FACTOR && !c->timeout_ms)
		c->timeout_ms = SF_DEFAULT_TIMEOUT_MS;
	if (rc == SPM_PY_OK || rc == SPM_PY_FAILED)
		(void)spm_pool_start(ctx, b->boot.workers);
	_release_boot(&b->task);
	return rc == SPM_PY_OK;
}

SPM_EXPORT bool spm_ctx_boot(int ctx)
{
	struct ctx_state *c = _ctx(ctx);
	bool ok;

	pthread_mutex_lock(&c->mu);
	if (c->runtime_dead)
		ok = false;
	else if (c->booted && _same(c->params, c->booted_params))
		ok = !spm_ctx_failed(ctx);
	else
		ok = _boot_locked(ctx, c);
	pthread_mutex_unlock(&c->mu);
	return ok;
}

SPM_EXPORT bool spm_ctx_failed(int ctx)
{
	return _ctx(ctx)->runtime_dead;
}

/* ---- prep ---- */

SPM_EXPORT void spm_prep_set_callbacks(spm_slurm_cb_t p, spm_slurm_cb_t e)
{
	if (p)
		prolog_cb = p;
	if (e)
		epilog_cb = e;
}

struct prep_call {
	spm_task_t task;
	int hook;
	spm_arena_t *arena;
	spm_job_t *job;
	spm_env_t *env;
	uint32_t job_id;
	spm_slurm_cb_t cb;
};

static int _run_prep(spm_task_t *task)
{
	struct prep_call *p = task->data;

	if (!p->arena)
		return SPM_PY_FAILED;   /* snapshot failed (logged) */
	if (spm_ctx_failed(task->ctx))
		return SPM_PY_FAILED;
	return spm_py_prep(p->hook, p->arena, p->job, p->env);
}

static void _release_prep(spm_task_t *task)
{
	struct prep_call *p = task->data;

	spm_arena_unref(p->arena);
	free(p);
}

static const char *_hook_name(int hook)
{
	switch (hook) {
	case SPM_HOOK_PROLOG: return "prolog";
	case SPM_HOOK_EPILOG: return "epilog";
	case SPM_HOOK_PROLOG_SLURMCTLD: return "prolog_slurmctld";
	case SPM_HOOK_EPILOG_SLURMCTLD: return "epilog_slurmctld";
	case SPM_HOOK_SF_SET: return "set";
	case SPM_HOOK_SF_UPDATE: return "update";
	default: return "reconfig";
	}
}

static void _done_prep_ctld(spm_task_t *task, int result, bool timed_out)
{
	struct prep_call *p = task->data;
	int status;

	if (timed_out)
		status = STATUS_KILLED;
	else
		status = result == SPM_PY_OK ? STATUS_OK : STATUS_FAILED;
	if (status != STATUS_OK)
		spm_logf(SPM_CTX_PREP, SPM_LOG_ERROR,
			 "%s for JobId=%u %s", _hook_name(p->hook), p->job_id,
			 timed_out ? "timed out" : "failed");
	/* Outside every lock and without the GIL: slurmctld's callback
	 * takes the job and node write locks. */
	p->cb(status, p->job_id, timed_out);
}

static void *_fail_later(void *arg)
{
	struct prep_call *p = arg;

	_done_prep_ctld(&p->task, SPM_PY_FAILED, false);
	_release_prep(&p->task);
	return NULL;
}

SPM_EXPORT bool spm_prep_ctld_async(int hook, struct job_record *job_ptr)
{
	struct ctx_state *c = _ctx(SPM_CTX_PREP);
	spm_slurm_cb_t cb = hook == SPM_HOOK_PROLOG_SLURMCTLD ? prolog_cb :
		epilog_cb;
	struct prep_call *p;

	if (!cb)
		return false;
	if (!(p = calloc(1, sizeof(*p))))
		return false;
	p->hook = hook;
	p->cb = cb;
	p->job_id = spm_job_id(job_ptr);
	/* A failed snapshot still gets its (failing) callback. */
	if (!(p->job = spm_snapshot_job(job_ptr, &p->arena)))
		spm_logf(SPM_CTX_PREP, SPM_LOG_ERROR,
			 "out of memory copying JobId=%u", p->job_id);
	p->task.ctx = SPM_CTX_PREP;
	p->task.run = _run_prep;
	p->task.done = _done_prep_ctld;
	p->task.release = _release_prep;
	p->task.data = p;
	p->task.timeout_ms = c->timeout_ms;
	if (spm_ctx_failed(SPM_CTX_PREP)) {
		/* No workers exist: fail from a thread of our own, which waits
		 * for the caller to release the job lock. */
		pthread_t tid;
		pthread_attr_t attr;
		int rc;

		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rc = pthread_create(&tid, &attr, _fail_later, p);
		pthread_attr_destroy(&attr);
		if (rc) {
			_release_prep(&p->task);
			return false;
		}
		return true;
	}
	spm_pool_submit(&p->task);
	return true;
}

SPM_EXPORT int spm_prep_slurmd(int hook, void *job_env)
{
	struct ctx_state *c = _ctx(SPM_CTX_PREP);
	struct prep_call *p;
	bool timed_out;
	int rc;

	if (spm_ctx_failed(SPM_CTX_PREP))
		return SLURM_ERROR;
	if (!(p = calloc(1, sizeof(*p))))
		return SLURM_ERROR;
	p->hook = hook;
	if (!(p->env = spm_snapshot_env(job_env, &p->arena))) {
		free(p);
		spm_logf(SPM_CTX_PREP, SPM_LOG_ERROR, "out of memory copying job_env");
		return SLURM_ERROR;
	}
	p->job_id = p->env->job_id;
	p->task.ctx = SPM_CTX_PREP;
	p->task.run = _run_prep;
	p->task.release = _release_prep;
	p->task.data = p;
	p->task.timeout_ms = c->timeout_ms;
	rc = spm_pool_call(&p->task, &timed_out);
	if (timed_out) {
		spm_logf(SPM_CTX_PREP, SPM_LOG_ERROR, "%s for JobId=%u timed out",
			 _hook_name(hook), p->job_id);
		return SLURM_ERROR;  /* the pool releases p */
	}
	_release_prep(&p->task);
	return rc == SPM_PY_OK ? SLURM_SUCCESS : SLURM_ERROR;
}

/* ---- site_factor ---- */

struct sf_call {
	spm_task_t task;
	int hook;
	spm_arena_t *arena;
	spm_job_t *job;
	spm_batch_t *batch;
	uint32_t *ids;           /* update(): job ids returned */
	int64_t *factors;        /* update(): their factors; set(): [0] */
	uint32_t cap, n;
	int have;
};

static int _run_sf(spm_task_t *task)
{
	struct sf_call *s = task->data;

	switch (s->hook) {
	case SPM_HOOK_SF_SET:
		return spm_py_sf_set(s->arena, s->job, s->factors, &s->have);
	case SPM_HOOK_SF_UPDATE:
		return spm_py_sf_update(s->arena, s->batch, s->ids, s->factors,
					s->cap, &s->n);
	default:
		return spm_py_sf_reconfig();
	}
}

static void _release_sf(spm_task_t *task)
{
	struct sf_call *s = task->data;

	spm_arena_unref(s->arena);
	free(s->ids);
	free(s->factors);
	free(s);
}

enum sf_outcome { SF_OK, SF_FAILED, SF_GONE };

/* Run a site_factor call on its pool.  SF_GONE: it timed out and the pool
 * now owns s (do not touch it); otherwise the caller releases s. */
static enum sf_outcome _sf_call(struct sf_call *s)
{
	struct ctx_state *c = _ctx(SPM_CTX_SITE_FACTOR);
	bool timed_out;
	int rc;

	s->task.ctx = SPM_CTX_SITE_FACTOR;
	s->task.run = _run_sf;
	s->task.release = _release_sf;
	s->task.data = s;
	s->task.timeout_ms = c->timeout_ms;
	rc = spm_pool_call(&s->task, &timed_out);
	if (timed_out) {
		spm_logf(SPM_CTX_SITE_FACTOR, SPM_LOG_ERROR,
			 "%s() took more than %u ms; factors left unchanged",
			 _hook_name(s->hook), c->timeout_ms);
		return SF_GONE;
	}
	if (rc == SPM_PY_UNATTACHED)
		spm_logf(SPM_CTX_SITE_FACTOR, SPM_LOG_ERROR,
			 "%s(): the Python bridge is not attached; factors left unchanged",
			 _hook_name(s->hook));
	return rc == SPM_PY_OK ? SF_OK : SF_FAILED;
}

static bool _sf_wanted(int hook)
{
	return (spm_ctx_hooks(SPM_CTX_SITE_FACTOR) & (1u << hook)) &&
		!spm_ctx_failed(SPM_CTX_SITE_FACTOR);
}

static struct sf_call *_sf_new(int hook, uint32_t cap)
{
	struct sf_call *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->hook = hook;
	s->cap = cap;
	if (cap && (!(s->ids = calloc(cap, sizeof(*s->ids))) ||
		    !(s->factors = calloc(cap, sizeof(*s->factors))))) {
		free(s->ids);
		free(s);
		return NULL;
	}
	return s;
}

SPM_EXPORT void spm_sf_set(struct job_record *job_ptr)
{
	struct sf_call *s;

	if (!_sf_wanted(SPM_HOOK_SF_SET) ||
	    !(s = _sf_new(SPM_HOOK_SF_SET, 1)))
		return;
	if (!(s->job = spm_snapshot_job(job_ptr, &s->arena))) {
		_release_sf(&s->task);
		return;
	}
	switch (_sf_call(s)) {
	case SF_GONE:
		return;
	case SF_OK:
		if (s->have)
			spm_apply_factor(job_ptr, s->factors[0]);
		/* fall through */
	case SF_FAILED:
		_release_sf(&s->task);
	}
}

SPM_EXPORT void spm_sf_update(void)
{
	spm_arena_t *arena;
	spm_batch_t *batch;
	struct sf_call *s;
	enum sf_outcome outcome;

	if (!_sf_wanted(SPM_HOOK_SF_UPDATE))
		return;
	if (!(batch = spm_snapshot_pending(&arena))) {
		spm_logf(SPM_CTX_SITE_FACTOR, SPM_LOG_ERROR,
			 "update(): cannot copy the pending jobs; factors left unchanged");
		return;
	}
	if (!(s = _sf_new(SPM_HOOK_SF_UPDATE, batch->count))) {
		spm_arena_unref(arena);
		return;
	}
	/* Our own reference: the batch must outlive a timed-out task, so
	 * that we can close it before slurmctld releases its job lock. */
	spm_arena_ref(arena);
	s->arena = arena;
	s->batch = batch;
	outcome = _sf_call(s);
	/* From here on Python reads nothing more from Slurm's records. */
	spm_lazy_close(batch->lazy);
	if (outcome != SF_GONE) {
		if (outcome == SF_OK)
			spm_apply_factors(s->ids, s->factors, s->n);
		_release_sf(&s->task);
	}
	spm_arena_unref(arena);
}

SPM_EXPORT void spm_sf_reconfig(void)
{
	struct sf_call *s;

	if (spm_ctx_failed(SPM_CTX_SITE_FACTOR) ||
	    !(s = _sf_new(SPM_HOOK_SF_RECONFIG, 0)))
		return;
	/* Always called: Python also re-checks the handler file here. */
	if (_sf_call(s) != SF_GONE)
		_release_sf(&s->task);
}
