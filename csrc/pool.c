/*
 * pool.c - worker threads that run Python, with deadlines.
 *
 * Every Python call goes through here, so no daemon thread (which may hold
 * slurmctld's job/node locks) ever waits for the GIL.  A task that overruns
 * its deadline is given up: its completion is delivered at once (async:
 * done(timed_out=true) from the watchdog; sync: the waiter returns), the
 * stuck worker is written off and a replacement started so the pool keeps
 * its size, and TimeoutError is raised asynchronously in the stuck Python
 * thread (which takes effect only when it next runs Python bytecode).
 */
#define _GNU_SOURCE
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spm.h"

enum { T_QUEUED = 1, T_RUNNING, T_DONE, T_ABANDONED };

#define MAX_WRITTEN_OFF 64
#define WATCHDOG_MS 100

/* owners of an abandoned async task: the stuck worker and the watchdog. */
struct owner_note { spm_task_t *task; int owners; struct owner_note *next; };

/* One pool per context, so a slow prolog never queues a site_factor call
 * that slurmctld waits for under its job write lock. */
struct pool {
	pthread_mutex_t mu;
	pthread_cond_t work_cv;
	pthread_cond_t done_cv;
	spm_task_t *q_head, *q_tail;     /* queued tasks */
	spm_task_t *running;             /* tasks on a worker */
	uint32_t target, live, written_off;
	bool watchdog_started;
	struct owner_note *owner_notes;
	/* Python idents of written-off workers still inside a handler: an
	 * interrupt is only sent to a thread listed here (a finished thread's
	 * ident may be reused by a new worker). */
	unsigned long stuck[MAX_WRITTEN_OFF + 1];
	int ctx;
};

static struct pool pools[2];
static pthread_once_t pools_once = PTHREAD_ONCE_INIT;

static void _init_pools(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	for (int i = 0; i < 2; i++) {
		pthread_mutex_init(&pools[i].mu, NULL);
		pthread_cond_init(&pools[i].work_cv, NULL);
		pthread_cond_init(&pools[i].done_cv, &attr);
		pools[i].ctx = i;
	}
	pthread_condattr_destroy(&attr);
}

static struct pool *_pool(int ctx)
{
	pthread_once(&pools_once, _init_pools);
	return &pools[ctx == SPM_CTX_SITE_FACTOR ? 1 : 0];
}

static uint64_t _now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void _unlink_running(struct pool *p, spm_task_t *task)
{
	spm_task_t **pp;

	for (pp = &p->running; *pp; pp = &(*pp)->next) {
		if (*pp == task) {
			*pp = task->next;
			task->next = NULL;
			return;
		}
	}
}

/* Drop one owner of an abandoned async task; true if it must be released.
 * Called with mu held. */
static bool _drop_owner(struct pool *p, spm_task_t *task)
{
	struct owner_note **pp;

	for (pp = &p->owner_notes; *pp; pp = &(*pp)->next) {
		if ((*pp)->task == task) {
			if (--(*pp)->owners)
				return false;
			struct owner_note *n = *pp;
			*pp = n->next;
			free(n);
			return true;
		}
	}
	return true;
}

static void *_worker(void *arg);

/* Called with p->mu held. */
static void _spawn_locked(struct pool *p)
{
	pthread_t tid;
	pthread_attr_t attr;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&tid, &attr, _worker, p) == 0)
		p->live++;
	else
		spm_logf(p->ctx, SPM_LOG_ERROR, "cannot start a worker thread: %s",
			 strerror(errno));
	pthread_attr_destroy(&attr);
}

static void _stuck_set(struct pool *p, unsigned long from, unsigned long to)
{
	for (int i = 0; i <= MAX_WRITTEN_OFF; i++) {
		if (p->stuck[i] == from) {
			p->stuck[i] = to;
			return;
		}
	}
}

/* A worker overran: write it off and keep the pool's size.  p->mu held. */
static void _write_off_locked(struct pool *p, unsigned long ident)
{
	_stuck_set(p, 0, ident);
	p->live--;
	p->written_off++;
	if (p->written_off > MAX_WRITTEN_OFF) {
		spm_logf(p->ctx, SPM_LOG_ERROR,
			 "%u worker threads are stuck in handlers; not starting more",
			 p->written_off);
		return;
	}
	while (p->live < p->target) {
		uint32_t before = p->live;

		_spawn_locked(p);
		if (p->live == before)
			break;
	}
}

struct interrupt { struct pool *p; unsigned long ident; };

static void *_interrupt(void *arg)
{
	struct interrupt *in = arg;
	struct pool *p = in->p;
	PyGILState_STATE g;

	/* Lock order: GIL, then p->mu (no thread holds p->mu while waiting
	 * for the GIL).  Only a thread still stuck in its handler is hit. */
	g = PyGILState_Ensure();
	pthread_mutex_lock(&p->mu);
	for (int i = 0; i <= MAX_WRITTEN_OFF; i++) {
		if (p->stuck[i] == in->ident) {
			PyThreadState_SetAsyncExc(in->ident, PyExc_TimeoutError);
			break;
		}
	}
	pthread_mutex_unlock(&p->mu);
	PyGILState_Release(g);
	free(in);
	return NULL;
}

/* Ask a stuck Python thread to raise TimeoutError, from a throw-away thread
 * (it needs the GIL, which the stuck thread may be hogging). */
static void _interrupt_later(struct pool *p, unsigned long ident)
{
	pthread_t tid;
	pthread_attr_t attr;
	struct interrupt *in;

	if (!ident || !(in = malloc(sizeof(*in))))
		return;
	in->p = p;
	in->ident = ident;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&tid, &attr, _interrupt, in))
		free(in);
	pthread_attr_destroy(&attr);
}

static void *_worker(void *arg)
{
	struct pool *p = arg;
	PyGILState_STATE gil;
	PyThreadState *ts;
	unsigned long ident;
	sigset_t set;

	/* Signals belong to the daemon's own threads. */
	sigfillset(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	/* Keep a Python thread state for the thread's whole life, so each
	 * call only swaps the GIL instead of creating a thread state. */
	gil = PyGILState_Ensure();
	ident = PyThread_get_thread_ident();
	ts = PyEval_SaveThread();

	pthread_mutex_lock(&p->mu);
	for (;;) {
		spm_task_t *task;
		int result;

		while (!p->q_head)
			pthread_cond_wait(&p->work_cv, &p->mu);
		task = p->q_head;
		if (!(p->q_head = task->next))
			p->q_tail = NULL;
		task->next = NULL;
		if (task->state == T_ABANDONED) {
			/* its waiter gave up before it started */
			pthread_mutex_unlock(&p->mu);
			task->release(task);
			pthread_mutex_lock(&p->mu);
			continue;
		}
		task->state = T_RUNNING;
		task->py_ident = ident;
		if (!task->waited)
			task->deadline_ms = task->timeout_ms ?
				_now_ms() + task->timeout_ms : 0;
		task->next = p->running;
		p->running = task;
		pthread_mutex_unlock(&p->mu);

		result = task->run(task);

		pthread_mutex_lock(&p->mu);
		_unlink_running(p, task);
		if (task->state == T_ABANDONED) {
			/* Written off while we ran: a replacement exists. */
			bool release = task->waited || _drop_owner(p, task);
			int ctx = task->ctx;

			_stuck_set(p, ident, 0);
			p->written_off--;
			pthread_mutex_unlock(&p->mu);
			if (release)
				task->release(task);
			spm_logf(ctx, SPM_LOG_INFO,
				 "a handler that overran its time limit has returned; its result was discarded");
			break;
		}
		task->state = T_DONE;
		task->result = result;
		if (task->waited) {
			pthread_cond_broadcast(&p->done_cv);
			continue;
		}
		pthread_mutex_unlock(&p->mu);
		task->done(task, result, false);
		task->release(task);
		pthread_mutex_lock(&p->mu);
	}

	PyEval_RestoreThread(ts);
	PyGILState_Release(gil);
	return NULL;
}

static void *_watchdog(void *arg)
{
	struct pool *p = arg;
	sigset_t set;

	sigfillset(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	for (;;) {
		struct timespec nap = { 0, WATCHDOG_MS * 1000000L };
		spm_task_t *expired[64];
		int n = 0;
		uint64_t now;

		nanosleep(&nap, NULL);
		now = _now_ms();
		pthread_mutex_lock(&p->mu);
		for (spm_task_t *t = p->running; t && n < 64; t = t->next) {
			struct owner_note *note;

			if (t->waited || t->state != T_RUNNING ||
			    !t->deadline_ms || now < t->deadline_ms)
				continue;
			if (!(note = malloc(sizeof(*note))))
				continue;  /* try again on the next tick */
			t->state = T_ABANDONED;
			note->task = t;
			note->owners = 2;
			note->next = p->owner_notes;
			p->owner_notes = note;
			expired[n++] = t;
			_write_off_locked(p, t->py_ident);
		}
		pthread_mutex_unlock(&p->mu);

		for (int i = 0; i < n; i++) {
			spm_task_t *t = expired[i];
			bool release;

			spm_logf(t->ctx, SPM_LOG_ERROR,
				 "handler exceeded its time limit of %u ms; failing the call and replacing its worker thread",
				 t->timeout_ms);
			t->done(t, SPM_PY_EXCEPTION, true);
			_interrupt_later(p, t->py_ident);
			pthread_mutex_lock(&p->mu);
			release = _drop_owner(p, t);
			pthread_mutex_unlock(&p->mu);
			if (release)
				t->release(t);
		}
	}
	return NULL;
}

int spm_pool_start(int ctx, uint32_t workers)
{
	struct pool *p = _pool(ctx);
	int rc = 0;

	if (!workers)
		workers = 1;
	pthread_mutex_lock(&p->mu);
	if (workers > p->target)
		p->target = workers;
	while (p->live < p->target) {
		uint32_t before = p->live;

		_spawn_locked(p);
		if (p->live == before) {
			rc = p->live ? 0 : -1;
			break;
		}
	}
	if (!p->watchdog_started) {
		pthread_t tid;
		pthread_attr_t attr;

		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&tid, &attr, _watchdog, p) == 0)
			p->watchdog_started = true;
		else
			rc = -1;
		pthread_attr_destroy(&attr);
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

static void _enqueue_locked(struct pool *p, spm_task_t *task)
{
	task->state = T_QUEUED;
	task->next = NULL;
	if (p->q_tail)
		p->q_tail->next = task;
	else
		p->q_head = task;
	p->q_tail = task;
	pthread_cond_signal(&p->work_cv);
}

void spm_pool_submit(spm_task_t *task)
{
	struct pool *p = _pool(task->ctx);

	task->waited = false;
	pthread_mutex_lock(&p->mu);
	_enqueue_locked(p, task);
	pthread_mutex_unlock(&p->mu);
}

int spm_pool_call(spm_task_t *task, bool *timed_out)
{
	struct pool *p = _pool(task->ctx);
	struct timespec abs;
	uint64_t deadline;
	int result;

	*timed_out = false;
	task->waited = true;
	deadline = task->timeout_ms ? _now_ms() + task->timeout_ms : 0;
	task->deadline_ms = deadline;
	abs.tv_sec = deadline / 1000;
	abs.tv_nsec = (deadline % 1000) * 1000000L;

	pthread_mutex_lock(&p->mu);
	_enqueue_locked(p, task);
	while (task->state != T_DONE) {
		if (!deadline) {
			pthread_cond_wait(&p->done_cv, &p->mu);
		} else if (pthread_cond_timedwait(&p->done_cv, &p->mu, &abs) ==
			   ETIMEDOUT && task->state != T_DONE) {
			break;
		}
	}
	if (task->state == T_DONE) {
		result = task->result;
		pthread_mutex_unlock(&p->mu);
		return result;
	}

	/* Give the task up; whoever holds it last releases it, so read what
	 * we log before letting go. */
	*timed_out = true;
	spm_logf(task->ctx, SPM_LOG_ERROR,
		 "handler exceeded its time limit of %u ms", task->timeout_ms);
	if (task->state == T_RUNNING) {
		unsigned long ident = task->py_ident;

		task->state = T_ABANDONED;
		_write_off_locked(p, ident);
		pthread_mutex_unlock(&p->mu);
		_interrupt_later(p, ident);
	} else {
		task->state = T_ABANDONED;   /* still queued: worker frees */
		pthread_mutex_unlock(&p->mu);
	}
	return SPM_PY_EXCEPTION;
}
