/*
 * ctx.c - one context per plugin (a row of spm_plugins.h): its
 * parameters (the value of its slurm.conf key, or the text of its conf
 * file beside slurm.conf), its per-call limit, the hooks its handler
 * overrides, and the boot that starts Python and loads the handler.
 *
 * slurmstepd (every one loads PrEp plugins from 24.05 on) never boots at
 * init(): only the first hook call there (PrologFlags=RunInJob: prolog
 * and epilog in the extern step) starts it, see spm_ctx_boot_on_call().
 *
 * The boot runs on a thread of its own, started by init(): init() stays
 * cheap, nothing waits for an import under slurmctld's locks, and by the
 * time the first job comes the handler is usually loaded.  Calls that come
 * while it loads queue behind it (bounded by their own deadline); if it
 * takes over SPM_BOOT_TIMEOUT_MS, the context's pool is closed (every call
 * fails at once, logged) until the load finishes.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spm.h"

#define CONF_FILE_MAX (1 << 20)

struct ctx_state {
	pthread_mutex_t mu;
	pthread_cond_t cv;         /* a boot finished */
	char *params;              /* as of the last init() */
	char *booted_params;       /* params of the boot running or done */
	bool booting;              /* the boot thread runs */
	bool booted;               /* a boot of booted_params finished */
	bool dead;                 /* Python cannot run in this process */
	uint32_t default_timeout_ms;
	uint32_t hooks;            /* atomic: 1 << SPM_HOOK_* */
	uint32_t timeout_ms;       /* atomic */
	uint32_t on_failure_accept; /* atomic: job_submit on_failure=accept */
	char params_file[4096];    /* a conf_file plugin: its path */
};

static struct ctx_state ctxs[SPM_CTX_COUNT];
static pthread_once_t ctxs_once = PTHREAD_ONCE_INIT;

static void _init_ctxs(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	for (int i = 0; i < SPM_CTX_COUNT; i++) {
		pthread_mutex_init(&ctxs[i].mu, NULL);
		pthread_cond_init(&ctxs[i].cv, &attr);
		ctxs[i].hooks = ~0u;
	}
	pthread_condattr_destroy(&attr);
}

static struct ctx_state *_ctx(int ctx)
{
	pthread_once(&ctxs_once, _init_ctxs);
	return &ctxs[spm_ctx_index(ctx)];
}

static bool _same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

static char *_dup(const char *s)
{
	return s ? strdup(s) : NULL;
}

void spm_set_hooks(int ctx, uint32_t hooks)
{
	__atomic_store_n(&_ctx(ctx)->hooks, hooks, __ATOMIC_RELEASE);
}

SPM_EXPORT uint32_t spm_ctx_hooks(int ctx)
{
	return __atomic_load_n(&_ctx(ctx)->hooks, __ATOMIC_ACQUIRE);
}

uint32_t spm_ctx_timeout_ms(int ctx)
{
	return __atomic_load_n(&_ctx(ctx)->timeout_ms, __ATOMIC_ACQUIRE);
}

SPM_EXPORT bool spm_ctx_on_failure_accept(int ctx)
{
	return __atomic_load_n(&_ctx(ctx)->on_failure_accept, __ATOMIC_ACQUIRE);
}

/* The context's per-call limit, for calls made from now on and for those
 * queued or running (still counted from their submission). */
static void _set_timeout(int ctx, struct ctx_state *c, uint32_t ms)
{
	__atomic_store_n(&c->timeout_ms, ms, __ATOMIC_RELEASE);
	spm_pool_retime(ctx, ms);
}

void spm_ctx_apply_settings(int ctx, uint32_t timeout_ms,
			    uint32_t on_failure_accept, uint32_t workers)
{
	struct ctx_state *c = _ctx(ctx);

	__atomic_store_n(&c->on_failure_accept, on_failure_accept != 0,
			 __ATOMIC_RELEASE);
	_set_timeout(ctx, c, timeout_ms);
	(void)spm_pool_start(ctx, workers);
}

/* ---- the boot ---- */

SPM_EXPORT uint32_t spm_boot_timeout_ms(void)
{
	/* SPM_BOOT_TIMEOUT_MS: a diagnostic knob (like SPM_PYTHONMALLOC),
	 * for tests of a handler that loads slowly. */
	const char *e = getenv("SPM_BOOT_TIMEOUT_MS");
	long v = e ? strtol(e, NULL, 10) : 0;

	return (v > 0 && v <= SPM_BOOT_TIMEOUT_MS) ? (uint32_t)v :
		SPM_BOOT_TIMEOUT_MS;
}

struct boot_call {
	spm_task_t task;           /* first: the pool's handle */
	spm_boot_t boot;
	char *params;
	char *conf_path;
	char params_file[4096];
	int rc;                    /* what spm_py_boot returned */
};

static int _run_boot(spm_task_t *task)
{
	struct boot_call *b = (struct boot_call *)task;

	b->rc = spm_py_boot(&b->boot);
	return b->rc;
}

static void _release_boot(spm_task_t *task)
{
	struct boot_call *b = (struct boot_call *)task;

	free(b->params);
	free(b->conf_path);
	free(b);
}

/* Start Python, load the handler of `params`, publish what it said.  On
 * the boot thread, with no lock held. */
static void _boot_once(int ctx, struct ctx_state *c, const char *params)
{
	spm_conf_t conf;
	struct boot_call *b;
	bool timed_out;
	uint64_t t0 = spm_now_ms();

	if (spm_runtime_start()) {
		pthread_mutex_lock(&c->mu);
		c->dead = true;
		pthread_mutex_unlock(&c->mu);
		spm_pool_close(ctx, "Python is not available in this daemon: the call fails");
		spm_logf(ctx, SPM_LOG_ERROR,
			 "Python is not available in this daemon: every hook will fail");
		return;
	}
	if (spm_pool_start(ctx, 1)) {
		spm_pool_close(ctx, "no worker thread could be started: the call fails");
		return;
	}
	spm_read_conf(ctx, &conf);
	if (!(b = calloc(1, sizeof(*b)))) {
		spm_logf(ctx, SPM_LOG_ERROR, "out of memory loading the handler");
		return;
	}
	spm_task_init(&b->task, ctx, _run_boot, NULL, _release_boot,
		      spm_boot_timeout_ms());
	b->task.barrier = true;   /* no call runs against a half-loaded handler */
	b->task.no_interrupt = true; /* a late load is taken, not broken */
	b->params = _dup(params);
	b->conf_path = _dup(conf.conf_path);
	b->boot.ctx = ctx;
	b->boot.daemon = spm_daemon();
	b->boot.params = b->params;
	b->boot.conf_path = b->conf_path;
	pthread_mutex_lock(&c->mu);
	memcpy(b->params_file, c->params_file, sizeof(b->params_file));
	pthread_mutex_unlock(&c->mu);
	b->boot.params_file = b->params_file[0] ? b->params_file : NULL;
	b->boot.default_timeout_ms = c->default_timeout_ms;
	b->boot.slurm_user_id = conf.slurm_user_id;
	b->boot.epilog_set = conf.epilog_set;
	b->boot.load_limit_ms = spm_boot_timeout_ms();
	b->rc = SPM_PY_EXCEPTION;

	(void)spm_pool_call(&b->task, &timed_out);
	if (timed_out) {
		spm_logf(ctx, SPM_LOG_ERROR,
			 "loading the handler takes more than %u ms: every call fails at once until it has loaded",
			 spm_boot_timeout_ms());
		spm_pool_close(ctx, "the handler is still loading (past its time limit): the call fails");
		spm_pool_wait(&b->task);
		spm_logf(ctx, SPM_LOG_INFO,
			 "the handler load finished after %llu s",
			 (unsigned long long)((spm_now_ms() - t0) / 1000));
	}
	if (b->rc == SPM_PY_OK || b->rc == SPM_PY_FAILED) {
		/* FAILED: no usable handler; Python reports every hook, so
		 * the calls come and fail closed (logged there). */
		spm_set_hooks(ctx, b->boot.hooks);
		spm_stats_load(ctx);
		spm_ctx_apply_settings(ctx, b->boot.timeout_ms,
				       b->boot.on_failure_accept,
				       b->boot.workers);
	} else {
		spm_logf(ctx, SPM_LOG_ERROR,
			 "the Python bridge did not attach (see the slurmpy errors above); every hook will fail");
		spm_set_hooks(ctx, ~0u);
		(void)spm_pool_start(ctx, 1);
	}
	spm_task_unref(&b->task);
}

static void *_boot_thread(void *arg)
{
	int ctx = (int)(intptr_t)arg;
	struct ctx_state *c = _ctx(ctx);
	char *params;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		free(c->booted_params);
		c->booted_params = _dup(c->params);
		c->booted = false;
		params = _dup(c->params);
		pthread_mutex_unlock(&c->mu);

		_boot_once(ctx, c, params);
		free(params);

		pthread_mutex_lock(&c->mu);
		/* init() changed the parameters meanwhile: load those. */
		if (!c->dead && !_same(c->params, c->booted_params))
			continue;
		c->booted = true;
		c->booting = false;
		pthread_cond_broadcast(&c->cv);
		pthread_mutex_unlock(&c->mu);
		spm_logf(ctx, SPM_LOG_VERBOSE,
			 "boot finished: hooks 0x%x, time limit %u ms",
			 spm_ctx_hooks(ctx), spm_ctx_timeout_ms(ctx));
		spm_pool_unhold(ctx);    /* the calls queued meanwhile run */
		return NULL;
	}
}

/* c->mu held. */
static void _start_boot_locked(int ctx, struct ctx_state *c)
{
	pthread_t tid;
	pthread_attr_t attr;

	if (c->booting || c->dead)
		return;     /* a running boot re-checks the params at its end */
	/* Until the handler answers, every hook is called and fails closed
	 * or succeeds as the loaded handler says. */
	spm_set_hooks(ctx, ~0u);
	/* From now on calls queue until the boot is done. */
	spm_pool_hold(ctx);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (spm_thread_create(&tid, &attr, _boot_thread,
			      (void *)(intptr_t)ctx) == 0) {
		c->booting = true;
	} else {
		spm_pool_unhold(ctx);
		spm_logf(ctx, SPM_LOG_ERROR,
			 "cannot start a thread to load the handler: every call fails");
		spm_pool_close(ctx, "the handler could not be loaded: the call fails");
	}
	pthread_attr_destroy(&attr);
}

/* ---- API ---- */

/* A conf_file plugin's parameters: the text of its conf file (NULL if it cannot
 * be read), read at every init() only to notice that it changed (a new
 * boot then).  Python reads the file itself, from a descriptor whose owner
 * and mode it checked, and watches it between inits (reload=). */
static char *_read_params_file(const char *path)
{
	FILE *f = path[0] ? fopen(path, "re") : NULL;
	char *buf;
	size_t n;

	if (!f)
		return NULL;
	if (!(buf = malloc(CONF_FILE_MAX + 1))) {
		fclose(f);
		return NULL;
	}
	n = fread(buf, 1, CONF_FILE_MAX, f);
	buf[n] = '\0';
	if (ferror(f)) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

SPM_EXPORT int spm_ctx_init(int ctx)
{
	struct ctx_state *c = _ctx(ctx);
	spm_conf_t conf;
	int daemon = spm_daemon();
	const spm_plugin_t *p = &spm_plugins[spm_ctx_index(ctx)];

	spm_read_conf(ctx, &conf);
	spm_stats_open(daemon == SPM_DAEMON_SLURMCTLD ?
		       conf.state_save_location : spm_slurmd_spooldir());
	pthread_mutex_lock(&c->mu);
	free(c->params);
	if (p->conf_file) {
		memcpy(c->params_file, conf.params_file, sizeof(c->params_file));
		c->params = _read_params_file(conf.params_file);
	} else {
		c->params = _dup(conf.params);
	}
	c->default_timeout_ms =
		p->default_timeout_ms == SPM_TIMEOUT_PROLOG_EPILOG ?
		conf.prep_timeout * 1000 : p->default_timeout_ms;
	/* Every path has its limit before any boot answered. */
	if (!c->booted)
		_set_timeout(ctx, c, c->default_timeout_ms);
	if ((p->daemons & (1u << daemon)) &&
	    (!c->booted || !_same(c->params, c->booted_params)))
		_start_boot_locked(ctx, c);
	pthread_mutex_unlock(&c->mu);
	return SLURM_SUCCESS;
}

SPM_EXPORT void spm_ctx_boot_on_call(int ctx)
{
	struct ctx_state *c = _ctx(ctx);

	if (spm_daemon() != SPM_DAEMON_SLURMSTEPD)
		return;
	pthread_mutex_lock(&c->mu);
	if (!c->booted && !c->booting && !c->dead) {
		spm_logf(ctx, SPM_LOG_VERBOSE,
			 "a hook is called in slurmstepd (PrologFlags=RunInJob): loading the handler here");
		_start_boot_locked(ctx, c);
	}
	pthread_mutex_unlock(&c->mu);
}

SPM_EXPORT void spm_ctx_fini(int ctx)
{
	(void)ctx;
}

SPM_EXPORT bool spm_ctx_ready(int ctx)
{
	struct ctx_state *c = _ctx(ctx);
	bool ready;

	pthread_mutex_lock(&c->mu);
	ready = c->booted && !c->booting && !c->dead;
	pthread_mutex_unlock(&c->mu);
	return ready;
}

SPM_EXPORT bool spm_ctx_wait_ready(int ctx, uint32_t max_ms)
{
	struct ctx_state *c = _ctx(ctx);
	uint64_t end = spm_now_ms() + max_ms;
	struct timespec abs = { .tv_sec = end / 1000,
				.tv_nsec = (end % 1000) * 1000000L };
	bool ready;

	pthread_mutex_lock(&c->mu);
	while (c->booting && !c->dead &&
	       pthread_cond_timedwait(&c->cv, &c->mu, &abs) == 0)
		;
	ready = c->booted && !c->booting && !c->dead;
	pthread_mutex_unlock(&c->mu);
	return ready;
}
