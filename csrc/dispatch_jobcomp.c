/*
 * dispatch_jobcomp.c - jobcomp/python: the spool and its deliverer.
 *
 * Slurm calls jobcomp under the job write lock.  spm_jc_record() formats
 * the job's completion record (one JSON object, one line), appends it to
 * the spool file and fdatasync()s it before returning: once the hook has
 * returned, the record survives scontrol reconfigure, a restart and a
 * kill -9.  It never waits for Python.  A record that would take the
 * spool past its size bound (spool_max=), or that cannot be written, is
 * dropped: an error is logged each time, with the count so far.
 *
 * One deliverer thread (started once per slurmctld, alive across
 * fini/init) hands the records to the handler in spool order, one at a
 * time, on the context's pool worker (ctx.c, pool.c), off every lock.  A
 * record is acknowledged (its end offset written to the ack file and
 * fdatasync'd) only after the handler returned normally: a call that
 * raised, timed out or found no usable handler is retried with doubling
 * backoff (SPM_JC_RETRY_FIRST_MS .. SPM_JC_RETRY_LAST_MS), and no later
 * record is delivered before it.  A crash between a delivery and its
 * acknowledgement delivers the record again: at least once, and every
 * record carries a stable key for de-duplication.
 *
 * Files in the spool directory (spool=, else
 * <StateSaveLocation>/jobcomp_python, created 0700):
 *   records  the records, "\n"-terminated; a torn last line (a crash in
 *            the middle of an append, before its hook returned) is cut
 *            off at open
 *   acked    the offset in `records` up to which records were delivered
 *            (decimal, fixed width); once everything is delivered and
 *            `records` holds SPM_JC_COMPACT_BYTES or more, acked is set
 *            to 0 first and `records` truncated next (a crash in between
 *            delivers again, never loses)
 *   lock     flock()ed around every append, the compaction and the open's
 *            look at the files
 *
 * Two slurmctld processes can share the spool for a moment: from 23.11 a
 * reconfigure (daemonized, or under systemd) starts the new slurmctld
 * while the old one, whose deliverer still runs, waits for it to come up.
 * So appends go at the file's real end (under `lock`), and only the
 * process holding an flock() on `records` delivers and compacts: the new
 * one's deliverer takes it (waiting) once the old one has exited, and
 * re-reads the files then.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spm.h"

#define JC SPM_CTX_JOBCOMP
#define SPM_JC_COMPACT_BYTES (1u << 20)
#define ACK_WIDTH 21           /* "%020" PRIu64 "\n" */
#define CONF_LINE_MAX 4096

struct spool {
	pthread_mutex_t mu;    /* fd, size, max_bytes, dropped */
	pthread_cond_t cv;     /* records were appended */
	int fd;                /* records, -1: not open */
	int ack_fd;            /* acked (the deliverer's) */
	int lock_fd;           /* lock */
	bool owner;            /* this process holds the flock on records */
	char dir[4096];
	uint64_t size;         /* bytes in records (all durable) */
	uint64_t acked;        /* delivered up to here (deliverer only,
				* read under mu by compaction) */
	uint64_t max_bytes;
	uint64_t dropped;
	bool deliverer;        /* its thread runs */
};

static struct spool sp = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.fd = -1,
	.ack_fd = -1,
	.lock_fd = -1,
};
static pthread_once_t sp_once = PTHREAD_ONCE_INIT;

static void _init_cv(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&sp.cv, &attr);
	pthread_condattr_destroy(&attr);
}

/* ---- the record: one JSON line ---- */

typedef struct {
	char *p;
	size_t len, cap;
	bool oom;
} buf_t;

static void _put(buf_t *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 2 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *p;

		while (b->len + n + 2 > cap)
			cap *= 2;
		if (!(p = realloc(b->p, cap))) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void _puts(buf_t *b, const char *s)
{
	_put(b, s, strlen(s));
}

static void _str(buf_t *b, const char *key, const char *s)
{
	char esc[8];

	_puts(b, ",\"");
	_puts(b, key);
	_puts(b, "\":");
	if (!s) {
		_puts(b, "null");
		return;
	}
	_puts(b, "\"");
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c == '"' || *c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*c;
			_put(b, esc, 2);
		} else if (*c < 0x20 || *c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", *c);
			_put(b, esc, 6);
		} else {
			_put(b, (const char *)c, 1);
		}
	}
	_puts(b, "\"");
}

static void _num(buf_t *b, const char *key, int64_t v)
{
	char n[32];

	_puts(b, ",\"");
	_puts(b, key);
	_puts(b, "\":");
	snprintf(n, sizeof(n), "%" PRId64, v);
	_puts(b, n);
}

/* The record of *v; Python (slurmpy_plugins/_jobcomp.py) reads it.  The
 * key: "<cluster>:<job_id>:<submit_time>:<start_time>" (0: never
 * started), ":start" added for a start record: the same for every
 * delivery of one record, different for each run of a job: a requeue
 * resets submit_time, and a job that slurmctld runs again because a kill -9
 * lost its completion from the state files starts at another time. */
static void _format(buf_t *b, int hook, const spm_jc_view_t *v)
{
	char key[512];

	snprintf(key, sizeof(key), "%s:%u:%" PRId64 ":%" PRId64 "%s",
		 v->cluster ? v->cluster : "", v->job_id, v->submit_time,
		 v->start_time, hook == SPM_HOOK_JC_START ? ":start" : "");
	_puts(b, "{\"v\":1");
	_str(b, "event", hook == SPM_HOOK_JC_START ? "start" : "end");
	_str(b, "key", key);
	_str(b, "cluster", v->cluster);
	_num(b, "job_id", v->job_id);
	_num(b, "array_job_id", v->array_job_id);
	_num(b, "array_task_id", v->array_task_id);
	_num(b, "het_job_id", v->het_job_id);
	_num(b, "het_job_offset", v->het_job_offset);
	_str(b, "name", v->name);
	_num(b, "user_id", v->user_id);
	_str(b, "user_name", v->user_name);
	_num(b, "group_id", v->group_id);
	_str(b, "account", v->account);
	_str(b, "partition", v->partition);
	_str(b, "qos", v->qos);
	_str(b, "wckey", v->wckey);
	_str(b, "reservation", v->reservation);
	_str(b, "state", v->state);
	_num(b, "exit_code", v->exit_code);
	_num(b, "derived_ec", v->derived_ec);
	_num(b, "submit_time", v->submit_time);
	_num(b, "eligible_time", v->eligible_time);
	_num(b, "start_time", v->start_time);
	_num(b, "end_time", v->end_time);
	_num(b, "suspended", v->suspended_secs);
	_num(b, "time_limit", v->time_limit);
	_num(b, "requeues", v->requeues);
	_str(b, "nodes", v->nodes);
	_num(b, "node_count", v->node_cnt);
	_num(b, "cpus", v->total_cpus);
	_str(b, "tres_alloc", v->tres_alloc);
	_str(b, "tres_req", v->tres_req);
	_str(b, "work_dir", v->work_dir);
	_puts(b, "}\n");
}

/* ---- files ---- */

static int _write_all(int fd, const char *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

static int _write_ack(uint64_t off)
{
	char line[ACK_WIDTH + 1];

	snprintf(line, sizeof(line), "%020" PRIu64 "\n", off);
	if (_write_all(sp.ack_fd, line, ACK_WIDTH, 0) || fdatasync(sp.ack_fd))
		return -1;
	return 0;
}

static uint64_t _read_ack(void)
{
	char line[ACK_WIDTH + 1] = "";
	ssize_t n = pread(sp.ack_fd, line, ACK_WIDTH, 0);

	if (n <= 0)
		return 0;
	line[n] = '\0';
	return strtoull(line, NULL, 10);
}

static uint64_t _cut_torn(int fd, uint64_t size);

/* The lock between processes (see the top); sp.mu is held. */
static void _lock_files(void)
{
	while (flock(sp.lock_fd, LOCK_EX) && errno == EINTR)
		;
}

static void _unlock_files(void)
{
	(void)flock(sp.lock_fd, LOCK_UN);
}

/* The files as they are now (the open, and a deliverer that has just
 * become the owner): sp.mu and the file lock held. */
static void _resync(void)
{
	struct stat st;

	if (fstat(sp.fd, &st))
		return;
	sp.size = _cut_torn(sp.fd, (uint64_t)st.st_size);
	sp.acked = _read_ack();
	if (sp.acked > sp.size) {
		spm_logf(JC, SPM_LOG_ERROR,
			 "spool %s: acked offset %" PRIu64 " past the end (%" PRIu64 "): every record is delivered again",
			 sp.dir, sp.acked, sp.size);
		sp.acked = 0;
	}
	spm_stats_jc_backlog(sp.size - sp.acked);
	if (sp.size > sp.acked)
		spm_logf(JC, SPM_LOG_INFO,
			 "spool %s: %" PRIu64 " bytes of records not yet delivered",
			 sp.dir, sp.size - sp.acked);
}

/* Cut a torn last record (no "\n": slurmctld died inside an append,
 * before that hook returned).  Returns the size kept. */
static uint64_t _cut_torn(int fd, uint64_t size)
{
	char chunk[4096];
	uint64_t end = size;

	while (end > 0) {
		size_t n = end < sizeof(chunk) ? (size_t)end : sizeof(chunk);
		ssize_t r = pread(fd, chunk, n, (off_t)(end - n));

		if (r != (ssize_t)n)
			return size;    /* unreadable: leave it be */
		for (size_t i = n; i > 0; i--) {
			if (chunk[i - 1] == '\n') {
				uint64_t keep = end - n + i;

				if (keep != size) {
					spm_logf(JC, SPM_LOG_ERROR,
						 "spool %s/records: %" PRIu64 " bytes of a record torn by a crash cut off at its end (its hook had not returned)",
						 sp.dir, size - keep);
					if (ftruncate(fd, (off_t)keep) || fdatasync(fd))
						return size;
				}
				return keep;
			}
		}
		end -= n;
	}
	if (size && !ftruncate(fd, 0))
		(void)fdatasync(fd);
	return 0;
}

/* spool= and spool_max= of jobcomp_python.conf (slurmpy_plugins/_config.py
 * checks them for `slurmpy-plugins check`; here they are only read). */
static void _read_settings(const char *file, char *dir, size_t dir_sz,
			   uint64_t *max_mb)
{
	FILE *f = file[0] ? fopen(file, "re") : NULL;
	char line[CONF_LINE_MAX];

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *k = line, *v, *e;

		while (*k == ' ' || *k == '\t')
			k++;
		if (*k == '#' || !(v = strchr(k, '=')))
			continue;
		for (e = v; e > k && (e[-1] == ' ' || e[-1] == '\t'); e--)
			;
		*e = '\0';
		for (v++; *v == ' ' || *v == '\t'; v++)
			;
		for (e = v + strlen(v); e > v && strchr(" \t\r\n", e[-1]); e--)
			;
		*e = '\0';
		if (!strcasecmp(k, "spool"))
			snprintf(dir, dir_sz, "%s", v);
		else if (!strcasecmp(k, "spool_max") && strtoull(v, NULL, 10))
			*max_mb = strtoull(v, NULL, 10);
	}
	fclose(f);
}

static void *_deliverer(void *arg);

/* Open (create 0600) the spool file `name` in `dir`; -1, logged, if it
 * cannot be. */
static int _open_in(const char *dir, const char *name)
{
	char path[4200];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		spm_logf(JC, SPM_LOG_ERROR, "cannot open %s: %m: no record can be kept",
			 path);
	return fd;
}

SPM_EXPORT int spm_jc_open(void)
{
	spm_conf_t conf;
	char dir[4096] = "";
	uint64_t max_mb = SPM_JC_SPOOL_MAX_MB;
	int fd = -1, ack_fd = -1, lock_fd = -1, rc = SLURM_SUCCESS;

	if (spm_daemon() != SPM_DAEMON_SLURMCTLD)
		return SLURM_SUCCESS;     /* sacct -c, scontrol: nothing */
	pthread_once(&sp_once, _init_cv);
	spm_read_conf(JC, &conf);
	_read_settings(conf.params_file, dir, sizeof(dir), &max_mb);
	if (!dir[0])
		snprintf(dir, sizeof(dir), "%s/jobcomp_python",
			 conf.state_save_location ? conf.state_save_location : ".");

	pthread_mutex_lock(&sp.mu);
	sp.max_bytes = max_mb << 20;
	if (sp.fd >= 0) {
		if (strcmp(dir, sp.dir))
			spm_logf(JC, SPM_LOG_ERROR,
				 "spool=%s: the spool stays %s until slurmctld restarts",
				 dir, sp.dir);
		goto out;
	}
	if (dir[0] != '/') {
		spm_logf(JC, SPM_LOG_ERROR,
			 "spool=%s is not an absolute directory: no record can be kept", dir);
		rc = SLURM_ERROR;
		goto out;
	}
	if (mkdir(dir, 0700) && errno != EEXIST) {
		spm_logf(JC, SPM_LOG_ERROR, "cannot create the spool %s: %m: no record can be kept",
			 dir);
		rc = SLURM_ERROR;
		goto out;
	}
	if ((fd = _open_in(dir, "records")) < 0 ||
	    (ack_fd = _open_in(dir, "acked")) < 0 ||
	    (lock_fd = _open_in(dir, "lock")) < 0) {
		rc = SLURM_ERROR;
		goto out;
	}
	snprintf(sp.dir, sizeof(sp.dir), "%s", dir);
	sp.fd = fd;
	sp.ack_fd = ack_fd;
	sp.lock_fd = lock_fd;
	fd = ack_fd = lock_fd = -1;
	sp.owner = !flock(sp.fd, LOCK_EX | LOCK_NB);
	if (!sp.owner)
		spm_logf(JC, SPM_LOG_INFO,
			 "spool %s: another slurmctld process (the one before a reconfigure) still delivers from it: this one takes over once it has exited",
			 sp.dir);
	_lock_files();
	_resync();
	_unlock_files();
	if (!sp.deliverer) {
		pthread_t tid;
		pthread_attr_t attr;

		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (spm_thread_create(&tid, &attr, _deliverer, NULL) == 0)
			sp.deliverer = true;
		else
			spm_logf(JC, SPM_LOG_ERROR,
				 "cannot start the deliverer thread: records are kept in %s, undelivered",
				 sp.dir);
		pthread_attr_destroy(&attr);
	}
out:
	pthread_mutex_unlock(&sp.mu);
	if (fd >= 0)
		close(fd);
	if (ack_fd >= 0)
		close(ack_fd);
	if (lock_fd >= 0)
		close(lock_fd);
	return rc;
}

static int _drop(uint32_t job_id, const char *why)
{
	uint64_t n;

	pthread_mutex_lock(&sp.mu);
	n = ++sp.dropped;
	pthread_mutex_unlock(&sp.mu);
	spm_stats_jc_dropped();
	spm_logf(JC, SPM_LOG_ERROR,
		 "the record of JobId=%u is dropped: %s (%" PRIu64 " dropped since slurmctld started)",
		 job_id, why, n);
	return SLURM_ERROR;
}

SPM_EXPORT int spm_jc_record(int hook, struct job_record *job_ptr)
{
	spm_jc_view_t v;
	spm_conf_t conf;
	buf_t b = { 0 };
	int rc = SLURM_SUCCESS;
	char why[4400];

	spm_read_conf(JC, &conf);
	/* 25.05+ calls record_job_start for every job: the plugin keeps it
	 * only with JobCompParams=enable_job_start (as Slurm's own do), and
	 * only for a handler that has job_start() */
	if (hook == SPM_HOOK_JC_START &&
	    (!conf.jobcomp_params ||
	     !strcasestr(conf.jobcomp_params, "enable_job_start") ||
	     !(spm_ctx_hooks(JC) & (1u << SPM_HOOK_JC_START))))
		return SLURM_SUCCESS;
	spm_snapshot_jobcomp(job_ptr, &v);
	v.cluster = conf.cluster_name;
	_format(&b, hook, &v);
	if (b.oom) {
		free(b.p);
		return _drop(v.job_id, "out of memory");
	}
	pthread_mutex_lock(&sp.mu);
	if (sp.fd >= 0) {
		off_t end;

		_lock_files();
		/* the real end: another process may have appended */
		if ((end = lseek(sp.fd, 0, SEEK_END)) >= 0)
			sp.size = (uint64_t)end;
	}
	if (sp.fd < 0) {
		snprintf(why, sizeof(why), "the spool is not open");
		rc = SLURM_ERROR;
	} else if (sp.size + b.len > sp.max_bytes) {
		snprintf(why, sizeof(why),
			 "the spool %s is full (%" PRIu64 " bytes of records, spool_max=%" PRIu64 " MiB): the handler is not taking them",
			 sp.dir, sp.size, sp.max_bytes >> 20);
		rc = SLURM_ERROR;
	} else if (_write_all(sp.fd, b.p, b.len, sp.size) ||
		   fdatasync(sp.fd)) {
		snprintf(why, sizeof(why), "cannot write %s/records: %s",
			 sp.dir, strerror(errno));
		/* no half record before the next one */
		if (ftruncate(sp.fd, (off_t)sp.size))
			;
		rc = SLURM_ERROR;
	} else {
		sp.size += b.len;
		spm_stats_jc_spooled();
		spm_stats_jc_backlog(sp.size - sp.acked);
		pthread_cond_signal(&sp.cv);
	}
	if (sp.fd >= 0)
		_unlock_files();
	pthread_mutex_unlock(&sp.mu);
	free(b.p);
	if (rc != SLURM_SUCCESS)
		return _drop(v.job_id, why);
	return SLURM_SUCCESS;
}

/* ---- the deliverer ---- */

struct jc_call {
	spm_task_t task;       /* first: the pool's handle */
	char *rec;
	uint32_t len;
};

static int _run(spm_task_t *task)
{
	struct jc_call *c = (struct jc_call *)task;

	return spm_py_jc_call(c->rec, c->len);
}

static void _release(spm_task_t *task)
{
	struct jc_call *c = (struct jc_call *)task;

	free(c->rec);
	free(c);
}

static const char *_key(const char *rec, size_t len, int *klen);

/* The hook a record is for: start records say so first (_format()). */
static int _record_hook(const char *rec, uint32_t len)
{
	return memmem(rec, len < 64 ? len : 64, "\"event\":\"start\"", 15) ?
		SPM_HOOK_JC_START : SPM_HOOK_JC_END;
}

/* stats: one attempt's outcome; a failure Python did not report (its
 * file:line), or a timeout, is the hook's last error. */
static void _count(int hook, const char *rec, uint32_t len, uint64_t t0,
		   bool ok, bool timed_out, bool py_failed, const char *why)
{
	char text[SPM_STATS_TEXT];
	int klen;
	const char *key = _key(rec, len, &klen);

	if (!ok && (timed_out || !py_failed)) {
		snprintf(text, sizeof(text), "%s() of record %.*s: %s",
			 spm_hooks[hook].name, klen > 120 ? 120 : klen, key, why);
		spm_stats_set_error(hook, "", text);
	}
	spm_stats_call(hook, timed_out ? SPM_STATS_TIMEOUT :
		       ok ? SPM_STATS_OK : SPM_STATS_FAILED,
		       spm_stats_us_since(t0));
}

/* One attempt.  Returns true when the handler took the record. */
static bool _deliver(const char *rec, uint32_t len, const char **why)
{
	struct jc_call *c = calloc(1, sizeof(*c));
	int hook = _record_hook(rec, len);
	uint64_t t0 = spm_now_us();
	bool timed_out = false, py_failed, ok;
	int rc;

	if (!c || !(c->rec = malloc(len + 1))) {
		free(c);
		*why = "out of memory";
		_count(hook, rec, len, t0, false, false, false, *why);
		return false;
	}
	memcpy(c->rec, rec, len);
	c->rec[len] = '\0';
	c->len = len;
	spm_task_init(&c->task, JC, _run, NULL, _release, 0);
	c->task.ctx_timeout = true;
	c->task.stats_hook = hook;
	rc = spm_pool_call(&c->task, &timed_out);
	/* read only when not timed out: the worker's until it returns */
	py_failed = !timed_out && c->task.py_failed;
	ok = !timed_out && rc == SPM_PY_OK;
	/* static texts: valid after the task is gone */
	*why = timed_out ? "the handler did not return within its time limit" :
	       rc == SPM_PY_FAILED ?
	       "the handler raised, or the record is unreadable (see above)" :
	       rc == SPM_PY_UNLOADED ? "the handler is not loaded (see above)" :
	       spm_py_status_why(rc, &c->task);
	spm_task_unref(&c->task);
	_count(hook, rec, len, t0, ok, timed_out, py_failed, *why);
	return ok;
}

/* Read the record at off (end: the spool's size then).  Returns its
 * length without the "\n", or -1 (unreadable, or too long for memory). */
static int64_t _read_record(uint64_t off, uint64_t end, char **buf,
			    size_t *cap)
{
	size_t have = 0;

	for (;;) {
		size_t want = *cap - have;
		ssize_t r;
		char *nl;

		if (off + have >= end)
			return -1;
		if (want > end - off - have)
			want = (size_t)(end - off - have);
		r = pread(sp.fd, *buf + have, want, (off_t)(off + have));
		if (r <= 0)
			return -1;
		if ((nl = memchr(*buf + have, '\n', (size_t)r)))
			return nl - *buf;
		have += (size_t)r;
		if (have == *cap) {
			char *p = realloc(*buf, *cap * 2);

			if (!p)
				return -1;
			*buf = p;
			*cap *= 2;
		}
	}
}

static void _wait_ms(uint64_t ms)
{
	uint64_t end = spm_now_ms() + ms;
	struct timespec abs = { .tv_sec = end / 1000,
				.tv_nsec = (end % 1000) * 1000000L };

	pthread_mutex_lock(&sp.mu);
	while (pthread_cond_timedwait(&sp.cv, &sp.mu, &abs) == 0 &&
	       spm_now_ms() < end)
		;
	pthread_mutex_unlock(&sp.mu);
}

/* The record's key, for log lines (records are written by _format()). */
static const char *_key(const char *rec, size_t len, int *klen)
{
	const char *k = memmem(rec, len, "\"key\":\"", 7);
	const char *e;

	*klen = 1;
	if (!k || !(e = memchr(k + 7, '"', len - (size_t)(k + 7 - rec))))
		return "?";
	*klen = (int)(e - k - 7);
	return k + 7;
}

static void *_deliverer(void *arg)
{
	size_t cap = 64 * 1024;
	char *buf = malloc(cap);
	(void)arg;

	if (!buf) {
		spm_logf(JC, SPM_LOG_ERROR, "the deliverer is out of memory: records stay in the spool");
		return NULL;
	}
	if (!sp.owner) {
		/* the previous slurmctld's deliverer: until it has exited */
		while (flock(sp.fd, LOCK_EX) && errno == EINTR)
			;
		pthread_mutex_lock(&sp.mu);
		sp.owner = true;
		_lock_files();
		_resync();
		_unlock_files();
		pthread_mutex_unlock(&sp.mu);
		spm_logf(JC, SPM_LOG_INFO, "spool %s: this slurmctld delivers from it now",
			 sp.dir);
	}
	for (;;) {
		uint64_t off, end, attempt = 0, backoff = SPM_JC_RETRY_FIRST_MS;
		int64_t len;
		const char *why = NULL;

		pthread_mutex_lock(&sp.mu);
		if (sp.acked == sp.size && sp.size >= SPM_JC_COMPACT_BYTES) {
			struct stat st;

			/* everything delivered: start the file over (acked
			 * first: a crash in between delivers again), unless
			 * another process appended meanwhile */
			_lock_files();
			if (!fstat(sp.fd, &st) && (uint64_t)st.st_size == sp.size &&
			    !_write_ack(0) && !ftruncate(sp.fd, 0) &&
			    !fdatasync(sp.fd))
				sp.size = sp.acked = 0;
			spm_stats_jc_backlog(sp.size - sp.acked);
			_unlock_files();
		}
		while (sp.acked >= sp.size)
			pthread_cond_wait(&sp.cv, &sp.mu);
		off = sp.acked;
		end = sp.size;
		pthread_mutex_unlock(&sp.mu);

		if ((len = _read_record(off, end, &buf, &cap)) < 0) {
			spm_logf(JC, SPM_LOG_ERROR,
				 "cannot read the record at offset %" PRIu64 " of %s/records: retrying",
				 off, sp.dir);
			_wait_ms(SPM_JC_RETRY_LAST_MS);
			continue;
		}
		while (!_deliver(buf, (uint32_t)len, &why)) {
			int klen;
			const char *key = _key(buf, (size_t)len, &klen);

			attempt++;
			spm_stats_jc_attempt(false, attempt);
			spm_logf(JC, SPM_LOG_ERROR,
				 "delivery of record %.*s failed (attempt %" PRIu64 ": %s); it and the records after it are kept and retried in %" PRIu64 " ms",
				 klen, key, attempt, why, backoff);
			_wait_ms(backoff);
			backoff = backoff * 2 > SPM_JC_RETRY_LAST_MS ?
				SPM_JC_RETRY_LAST_MS : backoff * 2;
		}
		if (attempt)
			spm_logf(JC, SPM_LOG_INFO,
				 "a record held back by %" PRIu64 " failed attempts is delivered",
				 attempt);
		/* the file outside the lock: only this thread writes it */
		if (_write_ack(off + (uint64_t)len + 1))
			spm_logf(JC, SPM_LOG_ERROR,
				 "cannot write %s/acked: %m: records delivered since the last write would be delivered again after a restart",
				 sp.dir);
		pthread_mutex_lock(&sp.mu);
		sp.acked = off + (uint64_t)len + 1;
		spm_stats_jc_attempt(true, 0);
		spm_stats_jc_backlog(sp.size - sp.acked);
		pthread_mutex_unlock(&sp.mu);
	}
	return NULL;
}
