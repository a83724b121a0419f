/*
 * stats.c - what `slurmpy-plugins stats` reads: per-process counters in a
 * file mapped MAP_SHARED (layout: spm_stats_file_t in spm_types.h).
 *
 * The hot path (spm_stats_call) is a handful of relaxed atomic adds on the
 * hook's counters and one histogram bucket, and a CAS loop on max_us only
 * when a call is the slowest yet: no lock, no system call (spm.h's inline
 * writers, shared with spank_python.c).  The rare paths (a hook's last
 * error) claim a seqlock the reader retries on; a writer that finds it
 * claimed drops its error rather than wait.  Without the
 * file (not slurmctld/slurmd, or it could not be made: logged once)
 * every function here returns at once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spm.h"

static spm_stats_file_t *stats;     /* NULL: no stats in this process */
static pthread_once_t open_once = PTHREAD_ONCE_INIT;
static char open_dir[PATH_MAX];
static char stats_path[PATH_MAX + 128];   /* set once, before `stats` */

/* The call a pool worker is running: its hook (-1: none) and whether
 * Python reported it failed (spm_stats_error). */
static __thread int tls_hook = -1;
static __thread bool tls_failed;

static spm_stats_file_t *_stats(void)
{
	return __atomic_load_n(&stats, __ATOMIC_ACQUIRE);
}

static uint64_t _proc_start(void)
{
	char buf[1024], *p;
	unsigned long long start = 0;
	FILE *f = fopen("/proc/self/stat", "r");

	if (!f)
		return 0;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')'))) {
		/* after "pid (comm)": field 3 on; starttime is field 22 */
		int field = 2;

		for (char *t = strtok(p + 1, " "); t; t = strtok(NULL, " "))
			if (++field == 22) {
				start = strtoull(t, NULL, 10);
				break;
			}
	}
	fclose(f);
	return start;
}

static void _open(void)
{
	char dir[PATH_MAX + 32], path[PATH_MAX + 128], host[64] = "";
	const char *name;
	int daemon = spm_daemon(), fd;
	spm_stats_file_t *m;

	if (!open_dir[0])
		return;
	name = daemon == SPM_DAEMON_SLURMCTLD ? "slurmctld" : "slurmd";
	gethostname(host, sizeof(host) - 1);
	for (char *h = host; *h; h++)
		if (*h == '/' || *h == '.')
			*h = *h == '.' ? '\0' : '_';
	snprintf(dir, sizeof(dir), "%s/slurmpy-stats", open_dir);
	if (mkdir(dir, 0755) && errno != EEXIST) {
		spm_logf(SPM_CTX_PREP, SPM_LOG_ERROR,
			 "stats: cannot create %s: %s; no stats for slurmpy-plugins stats",
			 dir, strerror(errno));
		return;
	}
	snprintf(path, sizeof(path), "%s/%s.%s.%d", dir, name, host,
		 (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		  0600);
	if (fd < 0 || fchmod(fd, 0600) ||
	    ftruncate(fd, sizeof(spm_stats_file_t))) {
		spm_logf(SPM_CTX_PREP, SPM_LOG_ERROR,
			 "stats: cannot create %s: %s; no stats for slurmpy-plugins stats",
			 path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	m = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED) {
		spm_logf(SPM_CTX_PREP, SPM_LOG_ERROR,
			 "stats: cannot map %s: %s; no stats for slurmpy-plugins stats",
			 path, strerror(errno));
		return;
	}
	m->version = SPM_STATS_VERSION;
	m->size = sizeof(*m);
	m->pid = (uint32_t)getpid();
	m->daemon = (uint32_t)daemon;
	m->proc_start = _proc_start();
	m->started = (int64_t)time(NULL);
	m->ctx_count = SPM_CTX_COUNT;
	m->hook_count = SPM_HOOK_COUNT;
	memcpy(m->host, host, sizeof(m->host));
	snprintf(m->release, sizeof(m->release), "%s", spm_slurm_release());
	snprintf(stats_path, sizeof(stats_path), "%s", path);
	/* the reader takes the file once it sees the magic */
	__atomic_store_n(&m->magic, (uint64_t)SPM_STATS_MAGIC, __ATOMIC_RELEASE);
	__atomic_store_n(&stats, m, __ATOMIC_RELEASE);
	spm_logf(SPM_CTX_PREP, SPM_LOG_VERBOSE, "stats: %s", path);
}

void spm_stats_open(const char *dir)
{
	int daemon = spm_daemon();

	if (daemon != SPM_DAEMON_SLURMCTLD && daemon != SPM_DAEMON_SLURMD)
		return;
	if (!_stats() && dir && dir[0] && !open_dir[0])
		snprintf(open_dir, sizeof(open_dir), "%s", dir);
	pthread_once(&open_once, _open);
}

void spm_stats_call(int hook, int outcome, uint64_t us)
{
	spm_stats_file_t *m = _stats();

	if (!m || hook < 0 || hook >= SPM_HOOK_COUNT)
		return;
	spm_stats_count(&m->hooks[hook], outcome, us);
}

static void _add(uint64_t *counter)
{
	spm_stats_add(counter, 1);
}

void spm_stats_written_off(int hook)
{
	spm_stats_file_t *m = _stats();

	if (m && hook >= 0 && hook < SPM_HOOK_COUNT)
		_add(&m->hooks[hook].written_off);
}

void spm_stats_load(int ctx)
{
	spm_stats_file_t *m = _stats();

	if (m)
		_add(&m->loads[spm_ctx_index(ctx)]);
}

const char *spm_stats_path(void)
{
	return _stats() ? stats_path : "";
}

void spm_stats_reload(int ctx)
{
	spm_stats_file_t *m = _stats();

	if (m)
		_add(&m->reloads[spm_ctx_index(ctx)]);
}

void spm_stats_set_error(int hook, const char *where, const char *text)
{
	spm_stats_file_t *m = _stats();

	if (!m || hook < 0 || hook >= SPM_HOOK_COUNT)
		return;
	spm_stats_write_error(&m->errors[hook], where, text,
			      (int64_t)time(NULL));
}

/* ---- jobcomp/python's spool ---- */

void spm_stats_jc_spooled(void)
{
	spm_stats_file_t *m = _stats();

	if (m)
		_add(&m->jobcomp.spooled);
}

void spm_stats_jc_dropped(void)
{
	spm_stats_file_t *m = _stats();

	if (m)
		_add(&m->jobcomp.dropped);
}

void spm_stats_jc_attempt(bool delivered, uint64_t failures)
{
	spm_stats_file_t *m = _stats();

	if (!m)
		return;
	_add(delivered ? &m->jobcomp.delivered : &m->jobcomp.retried);
	if (delivered || failures <= 1)
		__atomic_store_n(&m->jobcomp.head_failing_since,
				 delivered ? 0 : (int64_t)time(NULL),
				 __ATOMIC_RELAXED);
	__atomic_store_n(&m->jobcomp.head_failures, delivered ? 0 : failures,
			 __ATOMIC_RELAXED);
}

void spm_stats_jc_backlog(uint64_t bytes)
{
	spm_stats_file_t *m = _stats();

	if (m)
		__atomic_store_n(&m->jobcomp.backlog_bytes, bytes,
				 __ATOMIC_RELAXED);
}

void spm_stats_error(int ctx, const char *where, const char *text)
{
	(void)ctx;
	if (tls_hook < 0)
		return;
	tls_failed = true;
	spm_stats_set_error(tls_hook, where, text);
}

void spm_stats_enter(int hook)
{
	tls_hook = hook;
	tls_failed = false;
}

bool spm_stats_leave(void)
{
	bool failed = tls_failed;

	tls_hook = -1;
	tls_failed = false;
	return failed;
}

uint64_t spm_stats_us_since(uint64_t t0_us)
{
	uint64_t now = spm_now_us();

	return now > t0_us ? now - t0_us : 0;
}
