/*
 * snapshot.c - the only file that reads Slurm's job_record_t and job_env_t.
 * It copies what handlers may see into flat spm_* records in an arena (see
 * spm_types.h).  Called with the daemon's locks held: it only copies, never
 * calls Python and never blocks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "slurm/slurm.h"
#include "src/slurmctld/slurmctld.h"

#include "spm.h"
#define SPM_COMPAT_LIST
#define SPM_COMPAT_ENV
#define SPM_COMPAT_JOBDESC
#include "compat.h"
#include "src/common/assoc_mgr.h"

_Static_assert(SPM_PART_FLAG_NO_ROOT == PART_FLAG_NO_ROOT,
	       "SPM_PART_FLAG_NO_ROOT must match Slurm");
_Static_assert(SPM_PART_FLAG_ROOT_ONLY == PART_FLAG_ROOT_ONLY,
	       "SPM_PART_FLAG_ROOT_ONLY must match Slurm");

/* slurmctld-only symbols, looked up when first needed so that this library
 * also loads in slurmd (a data reference would fail there at load time). */
static spm_list_t *_job_list(void)
{
	return (spm_list_t *)dlsym(RTLD_DEFAULT, "job_list");
}

static char **_copy_strv(spm_arena_t *a, char **v, uint32_t n, int *oom)
{
	char **out;

	if (!v || !n)
		return NULL;
	if (!(out = spm_arena_alloc(a, (n + 1) * sizeof(char *)))) {
		*oom = 1;
		return NULL;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (v[i] && !(out[i] = spm_arena_strdup(a, v[i])))
			*oom = 1;
	}
	return out;
}

/* Count a NULL-terminated array (gres_job_env has no size field). */
static uint32_t _strv_len(char **v)
{
	uint32_t n = 0;

	while (v && v[n])
		n++;
	return n;
}

/*
 * The fields of spm_job_t and where they come from, once: the full copies
 * below and the per-field columns of update() batches both expand these.
 * `job` is the job_record_t, `d` its details (may be NULL).
 */
#define SPM_JOB_NUMBERS(X) \
	X(job_id, job->job_id) \
	X(array_job_id, job->array_job_id) \
	X(array_task_id, job->array_task_id) \
	X(het_job_id, job->het_job_id) \
	X(het_job_offset, job->het_job_offset) \
	X(user_id, job->user_id) \
	X(group_id, job->group_id) \
	X(job_state, job->job_state) \
	X(state_reason, job->state_reason) \
	X(exit_code, job->exit_code) \
	X(derived_ec, job->derived_ec) \
	X(priority, job->priority) \
	X(time_limit, job->time_limit) \
	X(time_min, job->time_min) \
	X(restart_cnt, job->restart_cnt) \
	X(qos_id, job->qos_id) \
	X(assoc_id, job->assoc_id) \
	X(resv_id, job->resv_id) \
	X(batch_flag, job->batch_flag) \
	X(bit_flags, job->bit_flags) \
	X(site_factor, (int64_t)job->site_factor - (int64_t)NICE_OFFSET) \
	X(start_time, job->start_time) \
	X(end_time, job->end_time) \
	X(deadline, job->deadline) \
	X(num_nodes, job->node_cnt ? job->node_cnt : d ? d->min_nodes : 0) \
	X(num_cpus, job->total_cpus ? job->total_cpus : d ? d->min_cpus : 0) \
	X(min_nodes, d ? d->min_nodes : 0) \
	X(max_nodes, d ? d->max_nodes : 0) \
	X(min_cpus, d ? d->min_cpus : 0) \
	X(requeue, d ? d->requeue : 0) \
	X(nice, d ? (int64_t)d->nice - (int64_t)NICE_OFFSET : 0) \
	X(pn_min_memory, d ? d->pn_min_memory : 0) \
	X(submit_time, d ? d->submit_time : 0) \
	X(eligible_time, d ? d->begin_time : 0)

#define SPM_JOB_STRINGS(X) \
	X(features, d ? d->features : NULL) \
	X(std_err, d ? d->std_err : NULL) \
	X(std_in, d ? d->std_in : NULL) \
	X(std_out, d ? d->std_out : NULL) \
	X(work_dir, d ? d->work_dir : NULL) \
	X(account, job->account) \
	X(admin_comment, job->admin_comment) \
	X(alloc_node, job->alloc_node) \
	X(batch_host, job->batch_host) \
	X(burst_buffer, job->burst_buffer) \
	X(comment, job->comment) \
	X(licenses, job->licenses) \
	X(mcs_label, job->mcs_label) \
	X(name, job->name) \
	X(nodes, job->nodes) \
	X(partition, job->partition) \
	X(qos, job->qos_ptr ? job->qos_ptr->name : NULL) \
	X(resv_name, job->resv_name) \
	X(state_desc, job->state_desc) \
	X(system_comment, job->system_comment) \
	X(tres_alloc_str, job->tres_alloc_str) \
	X(tres_req_str, job->tres_req_str) \
	X(tres_per_job, job->tres_per_job) \
	X(tres_per_node, job->tres_per_node) \
	X(tres_per_task, job->tres_per_task) \
	X(user_name, job->user_name) \
	X(wckey, job->wckey)

/* The numeric fields of *job (cheap: no allocation). */
static void _copy_job_numbers(spm_job_t *out, job_record_t *job)
{
	__typeof__(job->details) d = job->details; /* a named type from 24.11 */

#define X(f, v) out->f = (v);
	SPM_JOB_NUMBERS(X)
#undef X
}

/* The string fields of *job into arena a; returns 0 or -1 on OOM. */
static int _copy_job_strings(spm_arena_t *a, spm_job_t *out, job_record_t *job)
{
	__typeof__(job->details) d = job->details;
	int oom = 0;

#define X(f, v) { const char *s_ = (v); \
		  if (s_ && !(out->f = spm_arena_strdup(a, s_))) oom = 1; }
	SPM_JOB_STRINGS(X)
#undef X
	out->spank_job_env = _copy_strv(a, job->spank_job_env,
					job->spank_job_env_size, &oom);
	out->spank_job_env_size = out->spank_job_env ?
		job->spank_job_env_size : 0;
	/* A partial copy (OOM) stays "not loaded": the next access tries
	 * again rather than showing NULL for fields Slurm has set. */
	if (oom)
		return -1;
	out->strings_loaded = 1;
	return 0;
}

/* A full copy of *job; returns 0 or -1 on OOM. */
static int _copy_job(spm_arena_t *a, spm_job_t *out, job_record_t *job)
{
	_copy_job_numbers(out, job);
	return _copy_job_strings(a, out, job);
}

spm_job_t *spm_snapshot_job(struct job_record *job_ptr,
			    spm_arena_t **arena_out)
{
	spm_arena_t *a = spm_arena_new(2048);
	spm_job_t *out;

	*arena_out = NULL;
	if (!a)
		return NULL;
	if (!(out = spm_arena_alloc(a, sizeof(*out))) ||
	    _copy_job(a, out, job_ptr)) {
		spm_arena_unref(a);
		return NULL;
	}
	*arena_out = a;
	return out;
}

#define S(f, v) do { if ((v) && !(out->f = spm_arena_strdup(a, (v)))) \
			     oom = 1; } while (0)

spm_env_t *spm_snapshot_env(void *job_env, void *cred,
			    spm_arena_t **arena_out)
{
	job_env_t *e = job_env;
	spm_arena_t *a = spm_arena_new(1024);
	spm_env_t *out;
	int oom = 0;

	*arena_out = NULL;
	if (!a)
		return NULL;
	if (!(out = spm_arena_alloc(a, sizeof(*out)))) {
		spm_arena_unref(a);
		return NULL;
	}
	out->job_id = spm_compat_env_job_id(e);
	out->step_id = spm_compat_env_step_id(e);
	out->uid = e->uid;
	out->gid = e->gid;
	out->het_job_id = e->het_job_id;
	out->exit_code = e->exit_code;
	out->derived_ec = e->derived_ec;
	if (spm_compat_env_user(a, e, cred, &out->user_name))
		oom = 1;
	S(partition, e->partition);
	S(node_list, e->node_list);
	S(node_aliases, e->node_aliases);
	S(work_dir, e->work_dir);
	S(node_name, spm_node_name());
	out->spank_job_env = _copy_strv(a, e->spank_job_env,
					e->spank_job_env_size, &oom);
	out->spank_job_env_size = out->spank_job_env ?
		e->spank_job_env_size : 0;
	out->gres_job_env_size = _strv_len(e->gres_job_env);
	out->gres_job_env = _copy_strv(a, e->gres_job_env,
				       out->gres_job_env_size, &oom);
	if (oom) {
		spm_arena_unref(a);
		return NULL;
	}
	*arena_out = a;
	return out;
}
#undef S

/*
 * update() batches.  Reading 100,000 of Slurm's records is mostly cache
 * misses (each field group is another line of a ~1.5 KiB record), and a
 * handler typically reads a few fields.  So the snapshot under the lock
 * only collects the pending records' addresses; everything else is copied
 * on request, from the worker thread running update(), while slurmctld
 * still holds its job write lock and waits for the answer: whole rows
 * (spm_batch_rows, for Job views), one field of every job
 * (spm_batch_column, spm_batch_strings), or the strings of one row
 * (spm_lazy_load).  The waiting thread calls spm_lazy_close() before it
 * releases the lock; afterwards nothing is read from Slurm's memory again
 * and what was copied stays readable.  `mu` serializes the copies (they
 * allocate in the batch's arena).
 */
struct spm_lazy {
	pthread_mutex_t mu;
	bool open;
	spm_arena_t *arena;        /* the batch's arena (this struct lives in it) */
	spm_batch_t *batch;
	spm_job_t *jobs;           /* batch->jobs once spm_batch_rows() ran */
	job_record_t **recs;       /* recs[i] is job i's record (C only) */
	uint32_t count;
};

struct collect {
	job_record_t **recs;
	uint32_t count, cap;
};

static int _collect_one(void *x, void *arg)
{
	job_record_t *job = x;
	struct collect *c = arg;

	if (IS_JOB_PENDING(job) && c->count < c->cap)
		c->recs[c->count++] = job;
	return 0;
}

spm_batch_t *spm_snapshot_pending(spm_arena_t **arena_out)
{
	spm_list_t *jl = _job_list();
	struct collect c = { 0 };
	spm_arena_t *arena;
	spm_batch_t *batch;
	spm_lazy_t *lz;
	uint32_t total;

	*arena_out = NULL;
	if (!jl || !*jl)
		return NULL;
	total = list_count(*jl);
	if (!(arena = spm_arena_new((size_t)total * sizeof(void *) + 4096)))
		return NULL;
	c.cap = total;
	if (!(batch = spm_arena_alloc(arena, sizeof(*batch))) ||
	    !(lz = spm_arena_alloc(arena, sizeof(*lz))) ||
	    (total && !(c.recs = spm_arena_alloc(
				arena, (size_t)total * sizeof(*c.recs))))) {
		spm_arena_unref(arena);
		return NULL;
	}
	pthread_mutex_init(&lz->mu, NULL);
	lz->open = true;
	lz->arena = arena;
	lz->batch = batch;
	batch->lazy = lz;
	if (total)
		(void)list_for_each(*jl, _collect_one, &c);
	lz->recs = c.recs;
	lz->count = batch->count = c.count;
	*arena_out = arena;
	return batch;
}

/* Under lz->mu: 0 if Slurm's records may be read, else -1. */
static int _lazy_usable(spm_lazy_t *lz)
{
	return lz->open ? 0 : -1;
}

int spm_batch_rows(spm_lazy_t *lz)
{
	spm_job_t *jobs;
	int rc;

	if (!lz)
		return -1;
	pthread_mutex_lock(&lz->mu);
	if (lz->jobs || !lz->count) {
		rc = 0;
	} else if ((rc = _lazy_usable(lz))) {
		;
	} else if (!(jobs = spm_arena_alloc(lz->arena, (size_t)lz->count *
					    sizeof(*jobs)))) {
		rc = -2;
	} else {
		for (uint32_t i = 0; i < lz->count; i++) {
			_copy_job_numbers(&jobs[i], lz->recs[i]);
			jobs[i].lazy = lz;
		}
		lz->jobs = lz->batch->jobs = jobs;
	}
	pthread_mutex_unlock(&lz->mu);
	return rc;
}

/* One numeric field of every job, by its offset in spm_job_t. */
static int _fill_column(spm_lazy_t *lz, uint32_t offset, void **out)
{
	job_record_t **recs = lz->recs;
	uint32_t n = lz->count;

	switch (offset) {
#define X(f, v) case offsetof(spm_job_t, f): { \
		__typeof__(((spm_job_t *)0)->f) *col; \
		if (!(col = spm_arena_alloc(lz->arena, \
					    (size_t)n * sizeof(*col) + 1))) \
			return -2; \
		for (uint32_t i = 0; i < n; i++) { \
			job_record_t *job = recs[i]; \
			__typeof__(job->details) d = job->details; \
			(void)d; \
			col[i] = (v); \
		} \
		*out = col; \
		return 0; \
	}
	SPM_JOB_NUMBERS(X)
#undef X
	default:
		return -3;
	}
}

/* After spm_lazy_close(): the same column from the copied rows, if any
 * (the bridge copies the rows when a handler keeps its jobs). */
static int _gather_column(spm_lazy_t *lz, uint32_t offset, void **out)
{
	switch (offset) {
#define X(f, v) case offsetof(spm_job_t, f): { \
		__typeof__(((spm_job_t *)0)->f) *col; \
		if (!(col = spm_arena_alloc(lz->arena, \
					    (size_t)lz->count * sizeof(*col) + 1))) \
			return -2; \
		for (uint32_t i = 0; i < lz->count; i++) \
			col[i] = lz->jobs[i].f; \
		*out = col; \
		return 0; \
	}
	SPM_JOB_NUMBERS(X)
#undef X
	default:
		return -3;
	}
}

int spm_batch_column(spm_lazy_t *lz, uint32_t offset, void **out)
{
	int rc;

	*out = NULL;
	if (!lz)
		return -1;
	pthread_mutex_lock(&lz->mu);
	if (!(rc = _lazy_usable(lz)))
		rc = _fill_column(lz, offset, out);
	else if (lz->jobs)
		rc = _gather_column(lz, offset, out);
	pthread_mutex_unlock(&lz->mu);
	return rc;
}

#define X(f, v) static const char *_get_##f(job_record_t *job) \
	{ __typeof__(job->details) d = job->details; (void)d; return (v); }
SPM_JOB_STRINGS(X)
#undef X

static const struct {
	uint32_t offset;
	const char *(*get)(job_record_t *);
} _string_fields[] = {
#define X(f, v) { offsetof(spm_job_t, f), _get_##f },
	SPM_JOB_STRINGS(X)
#undef X
};

/* FNV-1a; *len gets strlen(s). */
static uint64_t _hash(const char *s, size_t *len)
{
	uint64_t h = 1469598103934665603ULL;
	const char *p = s;

	for (; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	*len = p - s;
	return h;
}

struct dict {
	uint64_t *hashes;          /* per slot: the hash of its value */
	uint32_t *slots;           /* per slot: code (1-based), 0 empty */
	uint32_t mask;
	char **values;             /* values[code], values[0] = NULL */
	uint32_t n, cap;
};

static int _dict_grow(struct dict *t)
{
	uint32_t size = t->mask ? (t->mask + 1) * 2 : 1024;
	uint64_t *h = calloc(size, sizeof(*h));
	uint32_t *sl = calloc(size, sizeof(*sl));

	if (!h || !sl) {
		free(h);
		free(sl);
		return -1;
	}
	for (uint32_t i = 0; t->mask && i <= t->mask; i++) {
		uint32_t j;

		if (!t->slots[i])
			continue;
		for (j = t->hashes[i] & (size - 1); sl[j]; j = (j + 1) & (size - 1))
			;
		sl[j] = t->slots[i];
		h[j] = t->hashes[i];
	}
	free(t->hashes);
	free(t->slots);
	t->hashes = h;
	t->slots = sl;
	t->mask = size - 1;
	return 0;
}

/* The code of s in t, adding a copy of s (in arena a) if new; 0 on OOM. */
static uint32_t _dict_code(struct dict *t, spm_arena_t *a, const char *s)
{
	size_t len;
	uint64_t h = _hash(s, &len);
	uint32_t j;

	for (j = h & t->mask; t->slots[j]; j = (j + 1) & t->mask)
		if (t->hashes[j] == h && !strcmp(t->values[t->slots[j]], s))
			return t->slots[j];
	if (t->n == t->cap) {
		uint32_t cap = t->cap * 2;
		char **v = realloc(t->values, cap * sizeof(*v));

		if (!v)
			return 0;
		t->values = v;
		t->cap = cap;
	}
	if (!(t->values[t->n] = spm_arena_strdup(a, s)))
		return 0;
	t->slots[j] = t->n;
	t->hashes[j] = h;
	if (++t->n * 2 > t->mask + 1 && _dict_grow(t))
		return 0;
	return t->n - 1;
}

int spm_batch_strings(spm_lazy_t *lz, uint32_t offset, uint32_t **codes,
		      char ***values, uint32_t *nvalues)
{
	const char *(*get)(job_record_t *) = NULL;
	struct dict t = { 0 };
	uint32_t *col = NULL;
	int rc;

	*codes = NULL;
	*values = NULL;
	*nvalues = 0;
	for (size_t k = 0; k < sizeof(_string_fields) / sizeof(_string_fields[0]); k++)
		if (_string_fields[k].offset == offset)
			get = _string_fields[k].get;
	if (!lz)
		return -1;
	if (!get)
		return -3;
	pthread_mutex_lock(&lz->mu);
	if ((rc = _lazy_usable(lz)))
		goto out;
	rc = -2;
	t.cap = 64;
	if (!(t.values = malloc(t.cap * sizeof(*t.values))) || _dict_grow(&t))
		goto out;
	t.values[0] = NULL;
	t.n = 1;
	if (!(col = spm_arena_alloc(lz->arena,
				    (size_t)lz->count * sizeof(*col) + 1)))
		goto out;
	for (uint32_t i = 0; i < lz->count; i++) {
		const char *s = get(lz->recs[i]);

		if (!s)
			col[i] = 0;
		else if (!(col[i] = _dict_code(&t, lz->arena, s)))
			goto out;
	}
	if (!(*values = spm_arena_alloc(lz->arena, t.n * sizeof(**values))))
		goto out;
	memcpy(*values, t.values, t.n * sizeof(**values));
	*codes = col;
	*nvalues = t.n;
	rc = 0;
out:
	pthread_mutex_unlock(&lz->mu);
	free(t.values);
	free(t.hashes);
	free(t.slots);
	return rc;
}

struct job_record **spm_lazy_records(spm_lazy_t *lz)
{
	return lz ? lz->recs : NULL;
}

int spm_lazy_load(spm_lazy_t *lz, spm_job_t *job)
{
	int rc = 0;

	if (!lz)
		return 0;   /* a full copy */
	pthread_mutex_lock(&lz->mu);
	if (job->strings_loaded) {
		rc = 0;
	} else if (!lz->open) {
		rc = -1;
	} else if (!lz->jobs || job < lz->jobs || job >= lz->jobs + lz->count) {
		rc = -1;    /* not one of ours: never read Slurm memory */
	} else if (_copy_job_strings(lz->arena, job,
				     lz->recs[job - lz->jobs])) {
		rc = -2;
	}
	pthread_mutex_unlock(&lz->mu);
	return rc;
}

void spm_lazy_close(spm_lazy_t *lz)
{
	if (!lz)
		return;
	pthread_mutex_lock(&lz->mu);
	lz->open = false;
	pthread_mutex_unlock(&lz->mu);
}

/* ---- jobcomp: the completion record (what jobcomp/filetxt writes) ---- */

void spm_snapshot_jobcomp(struct job_record *job_ptr, spm_jc_view_t *v)
{
	job_record_t *job = job_ptr;
	__typeof__(job->details) d = job->details;
	uint32_t state = job->job_state;

	memset(v, 0, sizeof(*v));
	v->job_id = job->job_id;
	v->array_job_id = job->array_job_id;
	v->array_task_id = job->array_task_id;
	v->het_job_id = job->het_job_id;
	v->het_job_offset = job->het_job_offset;
	v->user_id = job->user_id;
	v->group_id = job->group_id;
	v->node_cnt = job->node_cnt;
	v->total_cpus = job->total_cpus;
	v->time_limit = (job->time_limit == NO_VAL && job->part_ptr) ?
		job->part_ptr->max_time : job->time_limit;
	v->exit_code = job->exit_code;
	v->derived_ec = job->derived_ec;
	v->requeues = job->restart_cnt;
	v->submit_time = d ? d->submit_time : 0;
	v->eligible_time = d ? d->begin_time : 0;
	v->start_time = job->start_time;
	v->end_time = job->end_time;
	v->suspended_secs = job->tot_sus_time;
	v->name = job->name;
	v->user_name = job->user_name;
	v->account = job->account;
	v->partition = job->part_ptr ? job->part_ptr->name : job->partition;
	v->qos = job->qos_ptr ? job->qos_ptr->name : NULL;
	v->wckey = job->wckey;
	v->reservation = job->resv_name;
	/* Called with COMPLETING (or RESIZING) set: the base state is the
	 * eventual one (FAILED, TIMEOUT, ...), as jobcomp/filetxt writes. */
	v->state = job_state_string((state & JOB_RESIZING) ? state :
				    (state & JOB_STATE_BASE));
	v->nodes = job->nodes;
	v->tres_alloc = job->tres_fmt_alloc_str;
	v->tres_req = job->tres_fmt_req_str;
	v->work_dir = d ? d->work_dir : NULL;
}

uint32_t spm_job_id(struct job_record *job_ptr)
{
	return job_ptr->job_id;
}

/* ---- job_submit: job_desc_msg_t and the partitions ---- */

#include "jobdesc_fields.h"

#define S(f, v) do { if ((v) && !(out->f = spm_arena_strdup(a, (v)))) \
			     oom = 1; } while (0)

/*
 * job.default_account and job.default_qos, as job_submit/lua's
 * _get_default_account()/_get_default_qos() find them: the user's default
 * account from assoc_mgr's user record; the default QOS of the association
 * (user, the request's account or else that default account, the
 * request's partition).  Lua calls assoc_mgr with locked=false and keeps
 * pointers into assoc_mgr's records past the unlock; here assoc_mgr's read
 * locks are held across the lookups and the copies (slurmctld's own locks
 * are held by the caller, and are taken before assoc_mgr's everywhere in
 * slurmctld).  Without accounting assoc_mgr has no users: both stay NULL.
 */
static void **acct_db_conn_p;         /* slurmctld's, or NULL (not slurmctld) */
static uint16_t *accounting_enforce_p;
static pthread_once_t assoc_once = PTHREAD_ONCE_INIT;

static void _assoc_symbols(void)
{
	acct_db_conn_p = dlsym(RTLD_DEFAULT, "acct_db_conn");
	accounting_enforce_p = dlsym(RTLD_DEFAULT, "accounting_enforce");
}

static void _assoc_defaults(job_desc_msg_t *d, spm_jobdesc_t *out,
			    spm_arena_t *a, int *oom)
{
	void **db_conn;
	uint16_t *enforce;
	assoc_mgr_lock_t locks = { .assoc = READ_LOCK, .qos = READ_LOCK,
				   .user = READ_LOCK };
	slurmdb_user_rec_t user;
	slurmdb_assoc_rec_t assoc;
	slurmdb_qos_rec_t qos;

	pthread_once(&assoc_once, _assoc_symbols);   /* once: dlsym walks every object */
	db_conn = acct_db_conn_p;
	enforce = accounting_enforce_p;
	if (!db_conn || !enforce || d->user_id == NO_VAL)
		return;                 /* not slurmctld */
	assoc_mgr_lock(&locks);
	/* locked=true never fetches a missing list: with none (no
	 * accounting) there is nothing to find */
	if (!assoc_mgr_user_list || !assoc_mgr_assoc_list) {
		assoc_mgr_unlock(&locks);
		return;
	}
	memset(&user, 0, sizeof(user));
	user.uid = d->user_id;
	if (assoc_mgr_fill_in_user(*db_conn, &user, *enforce, NULL, true) !=
	    SLURM_ERROR && user.default_acct &&
	    !(out->default_account = spm_arena_strdup(a, user.default_acct)))
		*oom = 1;
	memset(&assoc, 0, sizeof(assoc));
	assoc.uid = d->user_id;
	assoc.partition = d->partition;
	assoc.acct = d->account ? d->account : user.default_acct;
	if (assoc_mgr_fill_in_assoc(*db_conn, &assoc, *enforce, NULL, true) !=
	    SLURM_ERROR && assoc.def_qos_id) {
		memset(&qos, 0, sizeof(qos));
		qos.id = assoc.def_qos_id;
		if (assoc_mgr_fill_in_qos(*db_conn, &qos, *enforce, NULL,
					  true) != SLURM_ERROR && qos.name &&
		    !(out->default_qos = spm_arena_strdup(a, qos.name)))
			*oom = 1;
	}
	assoc_mgr_unlock(&locks);
}

/*
 * job.user_name when the request carries no identity (22.05, 23.02): what
 * job_submit/lua reads, uid_to_string_or_null(user_id), remembered per uid
 * for UID_TTL seconds (NULL, an unknown uid, too).  Every job_submit call
 * takes it (Lua looks it up only when the script reads it), and one NSS
 * lookup (files: open and parse /etc/passwd) costs tens of microseconds
 * under slurmctld's locks.  Copied into `a` under the cache's lock.
 */
#define UID_SLOTS 256
#define UID_TTL 60
static struct {
	uid_t uid;
	char *name;          /* xmalloc'd, or NULL: no such user */
	time_t at;           /* 0: an empty slot */
} uid_slots[UID_SLOTS];
static pthread_mutex_t uid_mu = PTHREAD_MUTEX_INITIALIZER;

static int _user_name(uid_t uid, spm_arena_t *a, char **out)
{
	unsigned i = (unsigned)uid % UID_SLOTS;
	time_t now = time(NULL);
	char *name;
	int rc = 0;

	pthread_mutex_lock(&uid_mu);
	if (uid_slots[i].at && uid_slots[i].uid == uid &&
	    now - uid_slots[i].at < UID_TTL) {
		if (uid_slots[i].name &&
		    !(*out = spm_arena_strdup(a, uid_slots[i].name)))
			rc = -1;
		pthread_mutex_unlock(&uid_mu);
		return rc;
	}
	pthread_mutex_unlock(&uid_mu);
	name = uid_to_string_or_null(uid);      /* outside the lock: NSS may block */
	if (name && !(*out = spm_arena_strdup(a, name)))
		rc = -1;
	pthread_mutex_lock(&uid_mu);
	xfree(uid_slots[i].name);
	uid_slots[i].uid = uid;
	uid_slots[i].name = name;
	uid_slots[i].at = now ? now : 1;
	pthread_mutex_unlock(&uid_mu);
	return rc;
}

spm_jobdesc_t *spm_snapshot_jobdesc(struct job_descriptor *desc,
				    spm_arena_t *a)
{
	job_desc_msg_t *d = desc;
	spm_jobdesc_t *out = spm_arena_alloc(a, sizeof(*out));
	int oom = 0;

	if (!out)
		return NULL;
#define JD_NUM(f) out->f = d->f;
#define JD_RO_NUM(f) JD_NUM(f)
#define JD_STR(f) S(f, d->f);
#define JD_RO_STR(f) JD_STR(f)
	SPM_JOBDESC_FIELDS
#undef JD_NUM
#undef JD_RO_NUM
#undef JD_STR
#undef JD_RO_STR
	out->job_id = spm_compat_desc_job_id(d);
	out->min_mem_per_node = out->min_mem_per_cpu = NO_VAL64;
	if (d->pn_min_memory != NO_VAL64) {
		if (d->pn_min_memory & MEM_PER_CPU)
			out->min_mem_per_cpu = d->pn_min_memory & ~MEM_PER_CPU;
		else
			out->min_mem_per_node = d->pn_min_memory;
	}
	out->environment = _copy_strv(a, d->environment, d->env_size, &oom);
	out->environment_size = out->environment ? d->env_size : 0;
	out->spank_job_env = _copy_strv(a, d->spank_job_env,
					d->spank_job_env_size, &oom);
	out->spank_job_env_size = out->spank_job_env ?
		d->spank_job_env_size : 0;
	out->argv = _copy_strv(a, d->argv, d->argc, &oom);
	out->argv_size = out->argv ? d->argc : 0;
	{
		const char *name = spm_compat_desc_identity_name(d);

		if (name)
			S(user_name, name);
		else if (d->user_id != NO_VAL &&
			 _user_name(d->user_id, a, &out->user_name))
			oom = 1;
	}
	_assoc_defaults(d, out, a, &oom);
	return oom ? NULL : out;
}

static const char *_part_state(uint16_t s)
{
	switch (s) {
	case PARTITION_UP: return "UP";
	case PARTITION_DOWN: return "DOWN";
	case PARTITION_DRAIN: return "DRAIN";
	case PARTITION_INACTIVE: return "INACTIVE";
	default: return "UNKNOWN";
	}
}

struct part_collect {
	spm_arena_t *a;
	spm_partlist_t *list;
	uint32_t cap;
	part_record_t *def;
	int oom;
};

static int _collect_part(void *x, void *arg)
{
	part_record_t *p = x;
	struct part_collect *c = arg;
	spm_part_t *out;
	int oom = 0;

	if (c->list->count >= c->cap)
		return 0;
	out = &c->list->parts[c->list->count++];
	out->max_time = p->max_time;
	out->default_time = p->default_time;
	out->max_nodes = p->max_nodes;
	out->min_nodes = p->min_nodes;
	out->total_nodes = p->total_nodes;
	out->total_cpus = p->total_cpus;
	out->max_cpus_per_node = p->max_cpus_per_node;
	out->priority_tier = p->priority_tier;
	out->flags = p->flags;
	out->is_default = p == c->def;
	{
		spm_arena_t *a = c->a;
		S(name, p->name);
		S(state, _part_state(p->state_up));
		S(nodes, p->nodes);
		S(allow_accounts, p->allow_accounts);
		S(deny_accounts, p->deny_accounts);
		S(allow_qos, p->allow_qos);
		S(deny_qos, p->deny_qos);
		S(allow_groups, p->allow_groups);
		S(qos, p->qos_char);
		S(alternate, p->alternate);
	}
	{
		uint32_t n = 0;
		uid_t *uids = spm_compat_part_uids(p, &n);

		if (uids && !(out->allow_uids = spm_arena_alloc(
				      c->a, ((size_t)n + 1) * sizeof(uint32_t))))
			oom = 1;
		else if (uids) {
			for (uint32_t i = 0; i < n; i++)
				out->allow_uids[i] = uids[i];
			out->allow_uids_size = n;
		}
	}
	if (oom)
		c->oom = 1;
	return 0;
}

spm_partlist_t *spm_snapshot_parts(spm_arena_t *a)
{
	spm_list_t *pl = (spm_list_t *)dlsym(RTLD_DEFAULT, "part_list");
	part_record_t **def = (part_record_t **)dlsym(RTLD_DEFAULT,
						      "default_part_loc");
	struct part_collect c = { .a = a };

	if (!(c.list = spm_arena_alloc(a, sizeof(*c.list))))
		return NULL;
	if (!pl || !*pl)
		return c.list;
	c.cap = list_count(*pl);
	c.def = def ? *def : NULL;
	if (c.cap && !(c.list->parts = spm_arena_alloc(
			       a, (size_t)c.cap * sizeof(spm_part_t))))
		return NULL;
	(void)list_for_each(*pl, _collect_part, &c);
	return c.oom ? NULL : c.list;
}
#undef S
