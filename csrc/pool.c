/*
 * pool.c - worker threads that run Python, with deadlines counted from
 * submission, and a reaper thread that answers every task no worker can.
 *
 * Every Python call goes through here, so no daemon thread (which may hold
 * slurmctld's job/node locks) ever waits for the GIL.  The rules:
 *
 *  - Each task is answered exactly once: by the worker that ran it, or by
 *    the reaper when its deadline (submission + timeout_ms) passed first,
 *    or at once when the pool cannot run it (closed, or every worker stuck).
 *    An async answer (task->done) is always delivered from a pool thread
 *    (the deliverer, else the worker or reaper that answered it),
 *    never from the submitting thread, never with a pool mutex or the GIL
 *    held.
 *  - A worker whose task overran is written off (a replacement starts while
 *    fewer than SPM_POOL_MAX_STUCK are) and TimeoutError is raised in its
 *    Python thread (effective at its next bytecode), however many are
 *    written off.  A stuck worker that returns rejoins the pool while it is
 *    short.
 *  - Tasks are reference counted (spm_task_ref/unref); release() runs once,
 *    when the last reference goes, on whichever thread drops it.  Who holds
 *    one: the submitter (until spm_pool_submit hands it over, or for as
 *    long as spm_pool_call runs), the pool (from queueing until the task
 *    left the queue or its worker let go of it) and a delivery list (an
 *    async answer, from _answer_locked until done() has returned).  So a
 *    task whose done() blocks (Slurm's callback waits for the job write
 *    lock) stays valid whatever its worker does meanwhile.
 */
#define _GNU_SOURCE
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spm.h"

enum { T_NEW, T_QUEUED, T_RUNNING, T_FINISHED };

#define REAPER_SLACK_MS 10
#define REAPER_IDLE_MS 1000
#define DEFER_RING 4096
/* A sync caller polls this long for its answer before it sleeps (see
 * _poll_answer), while the pool's recent calls answered within it. */
#define SPIN_US 200
#define RECENT_CAP_US (10 * SPIN_US)

struct pool {
	pthread_mutex_t mu;
	pthread_cond_t work_cv;     /* workers: a task was queued */
	pthread_cond_t done_cv;     /* sync waiters: a task was answered */
	pthread_cond_t reaper_cv;   /* reaper: something to look at */
	pthread_cond_t dl_cv;       /* deliverer: answers to deliver */
	spm_task_t *q_head, *q_tail;
	spm_task_t *dl_head, *dl_tail; /* async answers for the deliverer */
	bool deliverer_started;
	spm_task_t *running;
	uint32_t target, live, stuck_cnt;
	uint32_t barriers;          /* barrier tasks queued or running, and
				     * holds (spm_pool_hold) */
	bool reaper_started, exhausted_logged;
	uint64_t reaper_wake_ms;    /* when the sleeping reaper wakes */
	uint32_t ctx_timeout_ms;    /* the context's limit (spm_pool_retime) */
	const char *closed_why;     /* non-NULL: fail every task at once */
	/* deferred calls (spm_pool_defer): a ring that needs no allocation */
	struct { void (*fn)(uintptr_t); uintptr_t arg; } defer[DEFER_RING];
	uint32_t defer_head, defer_cnt;
	/* fail-fast calls refused since the last log line */
	uint32_t refused_cnt;
	uint64_t refused_logged_ms;
	/* running average of a sync call's time from submission to answer,
	 * in us (capped at RECENT_CAP_US): whether the next one polls */
	uint32_t recent_us;
	int ctx;
};

static struct pool pools[SPM_CTX_COUNT];
static pthread_once_t pools_once = PTHREAD_ONCE_INIT;

static void _init_pools(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	for (int i = 0; i < SPM_CTX_COUNT; i++) {
		pthread_mutex_init(&pools[i].mu, NULL);
		pthread_cond_init(&pools[i].work_cv, NULL);
		pthread_cond_init(&pools[i].done_cv, &attr);
		pthread_cond_init(&pools[i].reaper_cv, &attr);
		pthread_cond_init(&pools[i].dl_cv, NULL);
		pools[i].ctx = i;
	}
	pthread_condattr_destroy(&attr);
}

static struct pool *_pool(int ctx)
{
	pthread_once(&pools_once, _init_pools);
	return &pools[spm_ctx_index(ctx)];
}

static uint64_t _now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t spm_now_us(void)
{
	return _now_us();
}

uint64_t spm_now_ms(void)
{
	return _now_us() / 1000;
}

static struct timespec _abs(uint64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (ms % 1000) * 1000000L };
	return ts;
}

/* ---- tasks ---- */

void spm_task_init(spm_task_t *task, int ctx, spm_run_fn run,
		   spm_done_fn done, void (*release)(spm_task_t *),
		   uint32_t timeout_ms)
{
	memset(task, 0, sizeof(*task));
	task->ctx = ctx;
	task->run = run;
	task->done = done;
	task->release = release;
	task->timeout_ms = timeout_ms;
	task->stats_hook = -1;
	task->refs = 1;
}

void spm_task_ref(spm_task_t *task)
{
	__atomic_add_fetch(&task->refs, 1, __ATOMIC_RELAXED);
}

void spm_task_unref(spm_task_t *task)
{
	if (task && !__atomic_sub_fetch(&task->refs, 1, __ATOMIC_ACQ_REL))
		task->release(task);
}

/* ---- stuck workers ---- */

static bool _exhausted(struct pool *p)
{
	return !p->live && p->stuck_cnt >= SPM_POOL_MAX_STUCK;
}

static void *_worker(void *arg);

/* Called with p->mu held. */
static void _spawn_locked(struct pool *p)
{
	pthread_t tid;
	pthread_attr_t attr;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (spm_thread_create(&tid, &attr, _worker, p) == 0)
		p->live++;
	else
		spm_logf(p->ctx, SPM_LOG_ERROR,
			 "cannot start a worker thread: %s", strerror(errno));
	pthread_attr_destroy(&attr);
}

static void _fill_locked(struct pool *p)
{
	while (p->live < p->target && !p->closed_why) {
		uint32_t before = p->live;

		_spawn_locked(p);
		if (p->live == before)
			break;
	}
}

/* The worker running `task` overran: write it off, keep the pool's size
 * while fewer than SPM_POOL_MAX_STUCK are stuck.  p->mu held. */
static void _write_off_locked(struct pool *p, spm_task_t *task)
{
	task->worker_written_off = true;
	spm_stats_written_off(task->stats_hook);
	p->live--;
	p->stuck_cnt++;
	if (p->stuck_cnt < SPM_POOL_MAX_STUCK) {
		_fill_locked(p);
	} else if (!p->exhausted_logged && !p->live) {
		p->exhausted_logged = true;
		spm_logf(p->ctx, SPM_LOG_ERROR,
			 "all worker threads are stuck in handlers (%u written off, the limit): every call fails at once until one of them returns",
			 p->stuck_cnt);
	}
}

struct interrupt { struct pool *p; unsigned long ident; };

static void *_interrupt(void *arg)
{
	struct interrupt *in = arg;
	struct pool *p = in->p;
	PyGILState_STATE g;

	/* Lock order: GIL, then p->mu (no thread holds p->mu while waiting
	 * for the GIL).  Only a thread still stuck in its handler is hit: a
	 * written-off task still on the running list (a worker unlinks its
	 * task under p->mu as soon as the handler returns; a finished
	 * thread's ident may be reused by a new worker, whose task is not
	 * written off). */
	g = PyGILState_Ensure();
	pthread_mutex_lock(&p->mu);
	for (spm_task_t *t = p->running; t; t = t->next) {
		if (t->worker_written_off && t->py_ident == in->ident) {
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
	if (spm_thread_create(&tid, &attr, _interrupt, in))
		free(in);
	pthread_attr_destroy(&attr);
}

/* ---- answering ---- */

static void _unlink(spm_task_t **head, spm_task_t **tail, spm_task_t *task)
{
	spm_task_t *prev = NULL;

	for (spm_task_t *t = *head; t; prev = t, t = t->next) {
		if (t != task)
			continue;
		if (prev)
			prev->next = t->next;
		else
			*head = t->next;
		if (tail && *tail == t)
			*tail = prev;
		t->next = NULL;
		return;
	}
}

/* Mark `task` answered with (result, timed_out).  A sync waiter is woken
 * here; an async task is put on *deliver, for done() outside p->mu, with a
 * reference of its own (the delivery list's: dropped once done() has
 * returned).  Returns false if it was answered already.  p->mu held. */
static bool _answer_locked(struct pool *p, spm_task_t *task, int result,
			   bool timed_out, const char *why,
			   spm_task_t **deliver)
{
	if (task->answered)
		return false;
	task->result = result;
	task->timed_out = timed_out;
	task->why = why;
	/* also read without p->mu, by a polling sync caller */
	__atomic_store_n(&task->answered, true, __ATOMIC_RELEASE);
	if (task->waited) {
		pthread_cond_broadcast(&p->done_cv);
	} else {
		spm_task_ref(task);
		task->deliver_next = *deliver;
		*deliver = task;
	}
	return true;
}

/* Deliver async answers, then drop the delivery list's reference of each.
 * No mutex held. */
static void _deliver(struct pool *p, spm_task_t *list)
{
	while (list) {
		spm_task_t *t = list;

		list = t->deliver_next;
		if (t->why)
			spm_logf(p->ctx, SPM_LOG_ERROR, "%s", t->why);
		t->done(t, t->result, t->timed_out);
		spm_task_unref(t);
	}
}

/* A delivery list in the other order. */
static spm_task_t *_reverse(spm_task_t *list)
{
	spm_task_t *rev = NULL;

	while (list) {
		spm_task_t *t = list;

		list = t->deliver_next;
		t->deliver_next = rev;
		rev = t;
	}
	return rev;
}

/* ---- the deliverer ---- */

/*
 * Async answers are delivered by one thread per pool, in order: those a
 * worker produced, so that workers go straight back to Python (Slurm's
 * callback takes slurmctld's job write lock, and with every worker calling
 * back there were up to (workers + 1) threads handing that lock around,
 * issue 12), and those the reaper produced, so that a callback blocked on
 * that lock never holds up the reaper: the next deadline is kept, its
 * worker written off and interrupted, while the callback waits.  Falls
 * back to the worker or the reaper delivering itself if the thread cannot
 * start.
 */
static void *_deliverer(void *arg)
{
	struct pool *p = arg;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		spm_task_t *list;

		while (!p->dl_head)
			pthread_cond_wait(&p->dl_cv, &p->mu);
		list = p->dl_head;
		p->dl_head = p->dl_tail = NULL;
		pthread_mutex_unlock(&p->mu);
		_deliver(p, list);
		pthread_mutex_lock(&p->mu);
	}
	return NULL;
}

/* Start the deliverer if it is not running; false if it cannot start.
 * p->mu held. */
static bool _deliverer_locked(struct pool *p)
{
	pthread_t tid;
	pthread_attr_t attr;

	if (p->deliverer_started)
		return true;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (spm_thread_create(&tid, &attr, _deliverer, p) == 0)
		p->deliverer_started = true;
	pthread_attr_destroy(&attr);
	return p->deliverer_started;
}

/* Hand a list of answered async tasks (each with the delivery list's
 * reference, linked by deliver_next, oldest first) to the deliverer.
 * Returns false, the list untouched, if there is no deliverer: the caller
 * delivers it.  p->mu held. */
static bool _to_deliverer_locked(struct pool *p, spm_task_t *list)
{
	spm_task_t *last = list;

	if (!list)
		return true;
	if (!_deliverer_locked(p))
		return false;
	while (last->deliver_next)
		last = last->deliver_next;
	if (p->dl_tail)
		p->dl_tail->deliver_next = list;
	else
		p->dl_head = list;
	p->dl_tail = last;
	pthread_cond_signal(&p->dl_cv);
	return true;
}

/* Answer what is due: queued tasks past their deadline (or all of them
 * when the pool cannot run anything), running tasks past their deadline
 * (their worker is written off).  Returns the next deadline (0: none).
 * p->mu held; async answers go to *deliver. */
static uint64_t _reap_locked(struct pool *p, uint64_t now,
			     spm_task_t **deliver, spm_task_t **unref)
{
	uint64_t next = 0;
	const char *exhausted = _exhausted(p) ?
		"no worker thread can run it: all are stuck in handlers" : NULL;
	spm_task_t *t, *nt;

	for (t = p->q_head; t; t = nt) {
		/* A handler load waits for a worker (bounded by its deadline)
		 * rather than fail because calls are stuck. */
		const char *fail_all = p->closed_why ? p->closed_why :
			t->barrier ? NULL : exhausted;

		nt = t->next;
		if (fail_all || (t->deadline_ms && now >= t->deadline_ms)) {
			bool late = !fail_all;

			_unlink(&p->q_head, &p->q_tail, t);
			t->state = T_FINISHED;
			if (t->barrier)
				p->barriers--;
			_answer_locked(p, t, late ? SPM_PY_EXCEPTION : SPM_PY_UNAVAILABLE,
				       late, late ? NULL : fail_all, deliver);
			/* The pool's reference, dropped outside p->mu (the
			 * waiter, or the delivery list, holds its own). */
			t->unref_next = *unref;
			*unref = t;
		} else if (t->deadline_ms && (!next || t->deadline_ms < next)) {
			next = t->deadline_ms;
		}
	}
	for (t = p->running; t; t = t->next) {
		if (t->answered || !t->deadline_ms)
			continue;
		if (now >= t->deadline_ms) {
			_answer_locked(p, t, SPM_PY_EXCEPTION, true, NULL, deliver);
			_write_off_locked(p, t);
			t->interrupt = !t->no_interrupt;
		} else if (!next || t->deadline_ms < next) {
			next = t->deadline_ms;
		}
	}
	return next;
}

static void *_reaper(void *arg)
{
	struct pool *p = arg;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		spm_task_t *deliver = NULL, *unref = NULL;
		uint64_t now = spm_now_ms(), next, wake;
		unsigned long idents[SPM_POOL_MAX_STUCK];
		int n_int = 0;
		struct { void (*fn)(uintptr_t); uintptr_t arg; } deferred[64];
		int n_def = 0;
		struct timespec abs;

		next = _reap_locked(p, now, &deliver, &unref);
		/* More than fit here are picked up by the next pass. */
		for (spm_task_t *t = p->running; t; t = t->next) {
			if (t->interrupt && n_int < SPM_POOL_MAX_STUCK) {
				t->interrupt = false;
				idents[n_int++] = t->py_ident;
			}
		}
		while (p->defer_cnt && n_def < 64) {
			deferred[n_def].fn = p->defer[p->defer_head].fn;
			deferred[n_def++].arg = p->defer[p->defer_head].arg;
			p->defer_head = (p->defer_head + 1) % DEFER_RING;
			p->defer_cnt--;
		}
		if (deliver || unref || n_int || n_def) {
			/* _answer_locked put the newest first */
			deliver = _reverse(deliver);
			if (_to_deliverer_locked(p, deliver))
				deliver = NULL;
			pthread_mutex_unlock(&p->mu);
			_deliver(p, deliver);   /* no deliverer: here */
			while (unref) {
				spm_task_t *t = unref;

				unref = t->unref_next;
				spm_task_unref(t);
			}
			for (int i = 0; i < n_int; i++)
				_interrupt_later(p, idents[i]);
			for (int i = 0; i < n_def; i++)
				deferred[i].fn(deferred[i].arg);
			pthread_mutex_lock(&p->mu);
			continue;
		}
		wake = now + REAPER_IDLE_MS;
		if (next && next + REAPER_SLACK_MS < wake)
			wake = next < now + REAPER_SLACK_MS ?
				now + REAPER_SLACK_MS : next;
		abs = _abs(wake);
		p->reaper_wake_ms = wake;
		pthread_cond_timedwait(&p->reaper_cv, &p->mu, &abs);
		p->reaper_wake_ms = 0;
	}
	return NULL;
}

/* p->mu held. */
static void _ensure_reaper_locked(struct pool *p)
{
	pthread_t tid;
	pthread_attr_t attr;

	if (p->reaper_started)
		return;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (spm_thread_create(&tid, &attr, _reaper, p) == 0)
		p->reaper_started = true;
	else
		spm_logf(p->ctx, SPM_LOG_ERROR,
			 "cannot start the reaper thread: %s", strerror(errno));
	pthread_attr_destroy(&attr);
}

/* ---- workers ---- */

/* The task a worker takes next: the oldest, except that while a barrier
 * task (a handler load) is queued or running only barriers are taken, so
 * that no call runs against a half-loaded handler.  p->mu held. */
static spm_task_t *_next_locked(struct pool *p)
{
	if (!p->barriers)
		return p->q_head;
	for (spm_task_t *t = p->q_head; t; t = t->next)
		if (t->barrier)
			return t;
	return NULL;
}

static void *_worker(void *arg)
{
	struct pool *p = arg;
	PyGILState_STATE gil;
	PyThreadState *ts;
	unsigned long ident;
	bool have_gil = false;

	/* Signals belong to the daemon's own threads (a child started from a
	 * handler gets a clean mask: see runtime.c). */
	spm_worker_thread_enter();

	/* Keep a Python thread state for the thread's whole life, so each
	 * call only swaps the GIL instead of creating a thread state. */
	gil = PyGILState_Ensure();
	ident = PyThread_get_thread_ident();
	ts = PyEval_SaveThread();

	/*
	 * While tasks are queued the worker keeps the GIL from one task to the
	 * next (the entry points' PyGILState_Ensure then only nests), instead
	 * of handing it to another worker after every call; Python's switch
	 * interval still rotates the GIL between busy workers.  It is dropped
	 * before waiting for work, and never held while delivering an answer
	 * (the deliverer does that, without the GIL).  Lock order as
	 * everywhere: GIL, then p->mu.
	 */
	pthread_mutex_lock(&p->mu);
	for (;;) {
		spm_task_t *task, *deliver = NULL;
		bool leave;
		int result;

		while (!(task = _next_locked(p)) || p->closed_why) {
			if (have_gil) {
				pthread_mutex_unlock(&p->mu);
				ts = PyEval_SaveThread();
				have_gil = false;
				pthread_mutex_lock(&p->mu);
				continue;
			}
			if (p->closed_why || p->live > p->target)
				goto out;
			pthread_cond_wait(&p->work_cv, &p->mu);
		}
		_unlink(&p->q_head, &p->q_tail, task);
		task->next = p->running;
		p->running = task;
		task->state = T_RUNNING;
		task->py_ident = ident;
		pthread_mutex_unlock(&p->mu);

		if (task->barrier) {
			/* A boot: its cffi entry may be the process's first,
			 * which takes cffi's init lock; the thread holding that
			 * lock (another pool's boot) waits for the GIL.  Enter
			 * without the GIL.  Every other task runs after its
			 * pool's boot, when cffi's init is done. */
			if (have_gil) {
				ts = PyEval_SaveThread();
				have_gil = false;
			}
		} else if (!have_gil) {
			PyEval_RestoreThread(ts);
			have_gil = true;
		}
		spm_stats_enter(task->stats_hook);
		result = task->run(task);
		task->py_failed = spm_stats_leave();
		/* A handler that forked and returned in the child: the child
		 * must never touch the pool or call into Slurm. */
		if (spm_forked_child())
			_exit(1);

		pthread_mutex_lock(&p->mu);
		_unlink(&p->running, NULL, task);
		task->state = T_FINISHED;
		if (task->barrier && !--p->barriers)
			pthread_cond_broadcast(&p->work_cv);
		if (task->waited)
			pthread_cond_broadcast(&p->done_cv);
		(void)_answer_locked(p, task, result, false, NULL, &deliver);
		leave = false;
		if (task->worker_written_off) {
			p->stuck_cnt--;
			p->exhausted_logged = false;
			/* Rejoin while the pool is short, else go. */
			if (p->live < p->target && !p->closed_why)
				p->live++;
			else
				leave = true;
			spm_logf(p->ctx, SPM_LOG_INFO,
				 "a handler that overran its time limit has returned; its result was discarded%s",
				 leave ? "" : "; its thread rejoins the pool");
		}
		if (deliver && _to_deliverer_locked(p, deliver))
			deliver = NULL;
		pthread_mutex_unlock(&p->mu);
		if (deliver) {          /* no deliverer: answer it here */
			if (have_gil) {   /* the callback takes Slurm locks */
				ts = PyEval_SaveThread();
				have_gil = false;
			}
			task->done(task, result, false);
			spm_task_unref(task);    /* the delivery list's */
		}
		spm_task_unref(task);    /* the pool's reference */
		if (leave)
			goto gone;
		pthread_mutex_lock(&p->mu);
	}
out:
	p->live--;
	pthread_mutex_unlock(&p->mu);
gone:
	if (!have_gil)
		PyEval_RestoreThread(ts);
	PyGILState_Release(gil);
	return NULL;
}

/* ---- API ---- */

int spm_pool_start(int ctx, uint32_t workers)
{
	struct pool *p = _pool(ctx);
	int rc;

	if (!workers)
		workers = 1;
	pthread_mutex_lock(&p->mu);
	_ensure_reaper_locked(p);
	p->target = workers;
	p->closed_why = NULL;
	_fill_locked(p);
	/* Extra workers (a lower workers=) leave when idle. */
	pthread_cond_broadcast(&p->work_cv);
	rc = (p->live || p->stuck_cnt) ? 0 : -1;
	pthread_mutex_unlock(&p->mu);
	return rc;
}

void spm_pool_close(int ctx, const char *why)
{
	struct pool *p = _pool(ctx);

	pthread_mutex_lock(&p->mu);
	_ensure_reaper_locked(p);
	p->closed_why = why;
	pthread_cond_broadcast(&p->work_cv);
	pthread_cond_signal(&p->reaper_cv);
	pthread_mutex_unlock(&p->mu);
}

void spm_pool_hold(int ctx)
{
	struct pool *p = _pool(ctx);

	pthread_mutex_lock(&p->mu);
	p->barriers++;
	pthread_mutex_unlock(&p->mu);
}

void spm_pool_unhold(int ctx)
{
	struct pool *p = _pool(ctx);

	pthread_mutex_lock(&p->mu);
	if (!--p->barriers)
		pthread_cond_broadcast(&p->work_cv);
	pthread_mutex_unlock(&p->mu);
}

void spm_pool_retime(int ctx, uint32_t timeout_ms)
{
	struct pool *p = _pool(ctx);
	spm_task_t *lists[2];

	pthread_mutex_lock(&p->mu);
	p->ctx_timeout_ms = timeout_ms;
	lists[0] = p->q_head;
	lists[1] = p->running;
	for (int i = 0; i < 2; i++) {
		for (spm_task_t *t = lists[i]; t; t = t->next) {
			if (!t->ctx_timeout || t->answered)
				continue;
			t->timeout_ms = timeout_ms;
			t->deadline_ms = timeout_ms ?
				t->submitted_ms + timeout_ms : 0;
		}
	}
	pthread_cond_signal(&p->reaper_cv);
	pthread_mutex_unlock(&p->mu);
}

bool spm_pool_defer(int ctx, void (*fn)(uintptr_t), uintptr_t arg)
{
	struct pool *p = _pool(ctx);
	bool ok;

	pthread_mutex_lock(&p->mu);
	_ensure_reaper_locked(p);
	if ((ok = p->reaper_started && p->defer_cnt < DEFER_RING)) {
		uint32_t i = (p->defer_head + p->defer_cnt++) % DEFER_RING;

		p->defer[i].fn = fn;
		p->defer[i].arg = arg;
		pthread_cond_signal(&p->reaper_cv);
	}
	pthread_mutex_unlock(&p->mu);
	return ok;
}

/* Queue a task, its deadline counted from now.  A ctx_timeout task takes
 * the context's limit here, under the mutex spm_pool_retime() takes too:
 * a limit that changes while the call is being made is never missed.
 * p->mu held. */
static void _enqueue_locked(struct pool *p, spm_task_t *task)
{
	if (task->ctx_timeout)
		task->timeout_ms = p->ctx_timeout_ms;
	task->submitted_ms = spm_now_ms();
	task->deadline_ms = task->timeout_ms ?
		task->submitted_ms + task->timeout_ms : 0;
	_ensure_reaper_locked(p);
	task->state = T_QUEUED;
	task->next = NULL;
	if (task->barrier) {
		p->barriers++;
		task->next = p->q_head;
		p->q_head = task;
		if (!p->q_tail)
			p->q_tail = task;
	} else if (p->q_tail) {
		p->q_tail->next = task;
		p->q_tail = task;
	} else {
		p->q_head = p->q_tail = task;
	}
	if (p->closed_why || _exhausted(p)) {
		pthread_cond_signal(&p->reaper_cv);
		return;
	}
	/* A deadline before the reaper's next look: wake it to re-plan. */
	if (task->deadline_ms && task->deadline_ms < p->reaper_wake_ms)
		pthread_cond_signal(&p->reaper_cv);
	pthread_cond_signal(&p->work_cv);
}

void spm_pool_submit(spm_task_t *task)
{
	struct pool *p = _pool(task->ctx);

	task->waited = false;
	pthread_mutex_lock(&p->mu);
	_enqueue_locked(p, task);   /* takes over the caller's reference */
	pthread_mutex_unlock(&p->mu);
}

/* A fail-fast call while an earlier call is stuck: one log line per
 * second at most, with the count.  p->mu held. */
static void _log_refused_locked(struct pool *p, uint64_t now)
{
	p->refused_cnt++;
	if (now - p->refused_logged_ms < 1000)
		return;
	spm_logf(p->ctx, SPM_LOG_ERROR,
		 "%u call(s) failed at once: an earlier call is still stuck in the handler",
		 p->refused_cnt);
	p->refused_cnt = 0;
	p->refused_logged_ms = now;
}

/* The waiter's backstop, should the reaper not run: expire its own task.
 * Returns the ident of a worker to interrupt (0: none).  p->mu held. */
static unsigned long _expire_own_locked(struct pool *p, spm_task_t *task,
					bool *drop_pool_ref)
{
	spm_task_t *none = NULL;

	if (task->answered)
		return 0;
	if (task->state == T_QUEUED) {
		_unlink(&p->q_head, &p->q_tail, task);
		task->state = T_FINISHED;
		if (task->barrier)
			p->barriers--;
		*drop_pool_ref = true;
		(void)_answer_locked(p, task, SPM_PY_EXCEPTION, true, NULL, &none);
		return 0;
	}
	(void)_answer_locked(p, task, SPM_PY_EXCEPTION, true, NULL, &none);
	_write_off_locked(p, task);
	return task->no_interrupt ? 0 : task->py_ident;
}

/*
 * Wait for `task`'s answer until `until_us` without sleeping on done_cv,
 * giving the CPU away between looks (sched_yield: a worker queued on this
 * CPU runs first).  A handler that answers within tens of microseconds then
 * costs the caller no second thread wake-up, which on a VM is most of the
 * hand-off.  No mutex held; the answer itself is read under p->mu after.
 */
static void _poll_answer(spm_task_t *task, uint64_t until_us)
{
	for (unsigned i = 0;
	     !__atomic_load_n(&task->answered, __ATOMIC_ACQUIRE); i++) {
		if (!(i & 7) && _now_us() >= until_us)
			return;
		sched_yield();
	}
}

int spm_pool_call(spm_task_t *task, bool *timed_out)
{
	struct pool *p = _pool(task->ctx);
	uint64_t t0, took_us;
	unsigned long interrupt = 0;
	bool drop_pool_ref = false;
	int result;

	*timed_out = false;
	task->waited = true;

	pthread_mutex_lock(&p->mu);
	if (task->fail_fast && p->stuck_cnt) {
		_log_refused_locked(p, spm_now_ms());
		pthread_mutex_unlock(&p->mu);
		return SPM_PY_UNAVAILABLE;
	}
	spm_task_ref(task);         /* the pool's reference */
	_enqueue_locked(p, task);
	t0 = _now_us();
	if (p->recent_us <= SPIN_US && !task->answered) {
		pthread_mutex_unlock(&p->mu);
		_poll_answer(task, t0 + SPIN_US);
		pthread_mutex_lock(&p->mu);
	}
	while (!task->answered) {
		struct timespec abs;

		if (!task->deadline_ms) {
			pthread_cond_wait(&p->done_cv, &p->mu);
			continue;
		}
		/* The reaper answers at the deadline; this is the backstop. */
		abs = _abs(task->deadline_ms + 5 * REAPER_SLACK_MS);
		if (pthread_cond_timedwait(&p->done_cv, &p->mu, &abs) == ETIMEDOUT)
			interrupt = _expire_own_locked(p, task, &drop_pool_ref);
	}
	result = task->result;
	*timed_out = task->timed_out;
	took_us = _now_us() - t0;
	p->recent_us = (p->recent_us * 7 + (took_us < RECENT_CAP_US ?
					    took_us : RECENT_CAP_US)) / 8;
	pthread_mutex_unlock(&p->mu);
	if (task->why)
		spm_logf(task->ctx, SPM_LOG_ERROR, "%s", task->why);
	if (interrupt)
		_interrupt_later(p, interrupt);
	if (drop_pool_ref)
		spm_task_unref(task);
	return result;
}

void spm_pool_wait(spm_task_t *task)
{
	struct pool *p = _pool(task->ctx);

	pthread_mutex_lock(&p->mu);
	while (task->state != T_FINISHED)
		pthread_cond_wait(&p->done_cv, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

const char *spm_py_status_why(int status, const spm_task_t *task)
{
	switch (status) {
	case SPM_PY_UNAVAILABLE:
		return task && task->why ? task->why :
			"no worker thread can run it: one is stuck in the handler";
	case SPM_PY_FAILED:
		return "the handler failed (see the log)";
	case SPM_PY_REFUSED:
		return "the handler refused";
	case SPM_PY_UNLOADED:
		return "no usable handler (see the log)";
	case SPM_PY_UNATTACHED:
		return "the Python bridge is not attached";
	default:
		return "the Python bridge failed (see the log)";
	}
}
