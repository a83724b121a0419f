/*
 * micro_snapshot.c - attribution micro-benchmark for bench/NOTES.md: times
 * the C pieces of the shim (libslurmpy.so's exported spm_* functions) on
 * one thread, without Python, the pool or lock contention:
 *
 *   snapshot_job    spm_snapshot_job() + spm_arena_unref() of one synthetic
 *                   pending job (the records spm_host's job_synth() builds),
 *                   per call, same thread (malloc fast path)
 *   snapshot_xthr   the same, but the arena is freed by a second thread, as
 *                   the shim does (the worker drops the last reference)
 *   pending_cold    spm_snapshot_pending() over N pending jobs, first call
 *                   (fresh pages: page faults included), + unref
 *   pending_warm    the same, repeated (glibc mmaps blocks this size anew
 *                   each time, so "warm" is only warmer caches)
 *   pending_lazy_all the same plus spm_lazy_load() of every job: the C
 *                   part of a handler reading a string field of each job
 *                   (update() batches copy strings lazily since d4b1dfe)
 *   pending_noalloc a copy loop over the same jobs into a preallocated,
 *                   already-touched buffer: what the snapshot costs without
 *                   the fresh 40+ MB arena (memcpy of the strings included)
 *
 * Each figure is the best of a few rounds (the least disturbed by other
 * processes).
 *
 * usage: micro_snapshot [N_JOBS=100000] [N_CALLS=200000]
 * env SPM_LIB: path of libslurmpy.so (default build/plugins/slurmpy/...)
 * Built and run by bench/run.py (part "attrib").
 */
#define _GNU_SOURCE
#include "config.h"

#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "slurm/slurm.h"
#include "src/common/list.h"
#include "src/common/xmalloc.h"
#include "src/common/xstring.h"
#include "src/slurmctld/slurmctld.h"

/* What the shim looks up with dlsym(RTLD_DEFAULT, ...) (-rdynamic). */
List job_list = NULL;

/* the shim's record types (csrc/spm_types.h, built with -I csrc); the
 * functions are looked up with dlsym in the library under test */
#include "spm_types.h"

static void *(*snapshot_job)(job_record_t *, spm_arena_t **);
static spm_batch_t *(*snapshot_pending)(spm_arena_t **);
static void (*arena_unref)(spm_arena_t *);
static void (*lazy_close)(spm_lazy_t *);
static int (*lazy_load)(spm_lazy_t *, spm_job_t *);
static int (*batch_rows)(spm_lazy_t *);

/* end an update() batch as dispatch_site_factor.c does: close the lazy part, unref */
static void batch_done(spm_batch_t *b, spm_arena_t *a)
{
	if (lazy_close && b)
		lazy_close(b->lazy);
	arena_unref(a);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* tests/host/spm_host.c job_new() + job_synth(), trimmed. */
static job_record_t *job_synth(uint32_t i)
{
	static const char *parts[] = { "batch", "gpu", "debug", "long" };
	static const char *qos[] = { "normal", "high", "low" };
	job_record_t *job = xmalloc(sizeof(*job));

	job->details = xmalloc(sizeof(*job->details));
	job->magic = JOB_MAGIC;
	job->details->magic = DETAILS_MAGIC;
	job->array_task_id = NO_VAL;
	job->site_factor = NICE_OFFSET;
	job->details->nice = NICE_OFFSET;
	job->job_id = 1000000 + i;
	job->user_id = 10000 + (i % 97);
	job->group_id = 10000 + (i % 13);
	job->account = xstrdup_printf("acct%02u", i % 50);
	job->user_name = xstrdup_printf("user%03u", i % 97);
	job->name = xstrdup_printf("sim_job_%u", i);
	job->partition = xstrdup(parts[i % 4]);
	job->comment = (i % 3) ? NULL : xstrdup("synthetic benchmark job");
	job->tres_req_str = xstrdup_printf("1=%u,2=%u,4=1", 1 + i % 64,
					   1024 * (1 + i % 16));
	job->qos_ptr = xmalloc(sizeof(*job->qos_ptr));
	job->qos_ptr->name = xstrdup(qos[i % 3]);
	job->qos_id = 1 + i % 3;
	job->assoc_id = 1 + i % 200;
	job->priority = 1000 + i % 5000;
	job->time_limit = 60 + i % 1440;
	job->job_state = JOB_PENDING;
	job->state_reason = WAIT_PRIORITY;
	job->details->min_cpus = 1 + i % 64;
	job->details->min_nodes = 1;
	job->details->max_nodes = 1 + i % 4;
	job->details->pn_min_memory = 1024 * (1 + i % 16);
	job->details->submit_time = time(NULL) - (i % 86400);
	job->details->work_dir = xstrdup_printf("/home/user%03u", i % 97);
	return job;
}

/* a single-slot hand-off to a freeing thread */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static void *slots[1024];
static int n_slots, stop_freer, use_unref;

static void *freer(void *arg)
{
	(void) arg;
	pthread_mutex_lock(&mu);
	for (;;) {
		while (!n_slots && !stop_freer)
			pthread_cond_wait(&cv, &mu);
		if (!n_slots && stop_freer)
			break;
		void *p = slots[--n_slots];
		pthread_mutex_unlock(&mu);
		if (use_unref)
			arena_unref(p);
		else
			free(p);
		pthread_mutex_lock(&mu);
	}
	pthread_mutex_unlock(&mu);
	return NULL;
}

static void hand_off(void *p)
{
	pthread_mutex_lock(&mu);
	while (n_slots == 1024) {
		pthread_mutex_unlock(&mu);
		sched_yield();
		pthread_mutex_lock(&mu);
	}
	slots[n_slots++] = p;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

static double xthr(job_record_t *job, long calls, int arenas)
/* snapshot here, spm_arena_unref() on a second thread (arenas=1), or
 * malloc(4 KB) here and free() there (arenas=0) */
{
	pthread_t t;
	uint64_t t0;

	stop_freer = 0;
	use_unref = arenas;
	pthread_create(&t, NULL, freer, NULL);
	t0 = now_ns();
	for (long i = 0; i < calls; i++) {
		if (arenas) {
			spm_arena_t *a;

			snapshot_job(job, &a);
			hand_off(a);
		} else {
			hand_off(malloc(4096));
		}
	}
	pthread_mutex_lock(&mu);
	stop_freer = 1;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
	pthread_join(t, NULL);
	return (double) (now_ns() - t0) / calls;
}

int main(int argc, char **argv)
{
	long n_jobs = argc > 1 ? atol(argv[1]) : 100000;
	long calls = argc > 2 ? atol(argv[2]) : 200000;
	const char *lib = getenv("SPM_LIB");
	void *h;
	uint64_t t0;
	spm_arena_t *a;
	job_record_t *one;
	char *buf;
	size_t cap;

	if (!lib)
		lib = "build/plugins/slurmpy/libslurmpy.so";
	if (!(h = dlopen(lib, RTLD_NOW | RTLD_GLOBAL))) {
		fprintf(stderr, "dlopen %s: %s\n", lib, dlerror());
		return 1;
	}
	snapshot_job = dlsym(h, "spm_snapshot_job");
	snapshot_pending = dlsym(h, "spm_snapshot_pending");
	arena_unref = dlsym(h, "spm_arena_unref");
	lazy_close = dlsym(h, "spm_lazy_close");
	lazy_load = dlsym(h, "spm_lazy_load");
	batch_rows = dlsym(h, "spm_batch_rows");   /* rows on request (issue 12) */
	if (!snapshot_job || !snapshot_pending || !arena_unref) {
		fprintf(stderr, "missing spm_* symbols in %s\n", lib);
		return 1;
	}

	one = job_synth(7);
	for (long i = 0; i < 1000; i++) {	/* warm up */
		snapshot_job(one, &a);
		arena_unref(a);
	}
	{
		double best = 1e18, bx = 1e18;

		for (int r = 0; r < 5; r++) {
			double d;

			t0 = now_ns();
			for (long i = 0; i < calls / 5; i++) {
				snapshot_job(one, &a);
				arena_unref(a);
			}
			d = (double) (now_ns() - t0) / (calls / 5);
			if (d < best)
				best = d;
		}
		for (int r = 0; r < 3; r++) {
			double d = xthr(one, calls / 3, 1);

			if (d < bx)
				bx = d;
		}
		printf("snapshot_job ns=%.0f\n", best);
		printf("snapshot_xthr ns=%.0f\n", bx);
	}

	job_list = list_create(NULL);
	for (long i = 0; i < n_jobs; i++)
		list_append(job_list, job_synth(i));
	{
		spm_batch_t *b;

		t0 = now_ns();
		b = snapshot_pending(&a);
		printf("pending_cold n=%ld ms=%.2f\n", n_jobs, (now_ns() - t0) / 1e6);
		t0 = now_ns();
		batch_done(b, a);
		printf("pending_unref ms=%.2f\n", (now_ns() - t0) / 1e6);
	}
	{
		double best = 1e18;

		for (int r = 0; r < 3; r++) {
			double d;

			spm_batch_t *b;

			t0 = now_ns();
			b = snapshot_pending(&a);
			d = (now_ns() - t0) / 1e6;
			batch_done(b, a);
			if (d < best)
				best = d;
		}
		printf("pending_warm n=%ld ms=%.2f\n", n_jobs, best);
	}

	/* lazy batches (d4b1dfe on): the snapshot plus loading the strings of
	 * every job, what a handler reading one string field of each job
	 * causes (the C part of it) */
	if (lazy_load && lazy_close) {
		double best = 1e18;

		for (int r = 0; r < 3; r++) {
			spm_batch_t *b;
			double d;

			t0 = now_ns();
			b = snapshot_pending(&a);
			if (b && batch_rows)
				(void)batch_rows(b->lazy);
			for (uint32_t i = 0; b && b->jobs && i < b->count; i++)
				lazy_load(b->lazy, &b->jobs[i]);
			d = (now_ns() - t0) / 1e6;
			batch_done(b, a);
			if (d < best)
				best = d;
		}
		printf("pending_lazy_all n=%ld ms=%.2f\n", n_jobs, best);
	}

	/* the copy alone, into a buffer that is already mapped and touched:
	 * the records (~400 B each, zeroed) then the strings */
	cap = (size_t) n_jobs * 512 + 4096;
	buf = malloc(cap);
	memset(buf, 0, cap);
	double best_na = 1e18;

	for (int r = 0; r < 3; r++) {
		ListIterator it = list_iterator_create(job_list);
		job_record_t *j;
		size_t off = 0;

		t0 = now_ns();
		while ((j = list_next(it))) {
			const char *s[] = { j->account, j->user_name, j->name,
					    j->partition, j->comment,
					    j->tres_req_str, j->qos_ptr->name,
					    j->details->work_dir };
			uint32_t *rec = (uint32_t *) (buf + off);

			memset(rec, 0, 408);
			rec[0] = j->job_id;
			rec[1] = j->user_id;
			rec[2] = j->job_state;
			off += 408;
			for (int k = 0; k < 8; k++) {
				size_t len;

				if (!s[k])
					continue;
				len = strlen(s[k]) + 1;
				memcpy(buf + off, s[k], len);
				off += len;
			}
			off = (off + 15) & ~(size_t) 15;
		}
		list_iterator_destroy(it);
		if ((now_ns() - t0) / 1e6 < best_na)
			best_na = (now_ns() - t0) / 1e6;
	}
	printf("pending_noalloc n=%ld ms=%.2f\n", n_jobs, best_na);

	/* touching the jobs only (what the host's C baseline does) */
	{
		double best = 1e18;

		for (int r = 0; r < 3; r++) {
			ListIterator it = list_iterator_create(job_list);
			job_record_t *j;
			uint64_t sum = 0;

			t0 = now_ns();
			while ((j = list_next(it)))
				sum += j->job_state + j->site_factor;
			list_iterator_destroy(it);
			if ((now_ns() - t0) / 1e6 < best)
				best = (now_ns() - t0) / 1e6;
			if (sum == 42)
				printf(" ");
		}
		printf("pending_walk n=%ld ms=%.2f\n", n_jobs, best);
	}
	return 0;
}
