/*
 * snapshot.c - the only file that reads Slurm's job_record_t and job_env_t.
 * It copies what handlers may see into flat spm_* records in an arena (see
 * spm_types.h).  Called with the daemon's locks held: it only copies, never
 * calls Python and never blocks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "config.h"
#include "slurm/slurm.h"
#include "src/slurmctld/slurmctld.h"

#include "spm.h"
#define SPM_COMPAT_LIST
#define SPM_COMPAT_ENV
#include "compat.h"

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

#define S(f, v) do { if ((v) && !(out->f = spm_arena_strdup(a, (v)))) \
			     oom = 1; } while (0)

/* The numeric fields of *job (cheap: no allocation). */
static void _copy_job_numbers(spm_job_t *out, job_record_t *job)
{
	__typeof__(job->details) d = job->details; /* a named type from 24.11 */

	out->job_id = job->job_id;
	out->array_job_id = job->array_job_id;
	out->array_task_id = job->array_task_id;
	out->het_job_id = job->het_job_id;
	out->het_job_offset = job->het_job_offset;
	out->user_id = job->user_id;
	out->group_id = job->group_id;
	out->job_state = job->job_state;
	out->state_reason = job->state_reason;
	out->exit_code = job->exit_code;
	out->derived_ec = job->derived_ec;
	out->priority = job->priority;
	out->time_limit = job->time_limit;
	out->time_min = job->time_min;
	out->restart_cnt = job->restart_cnt;
	out->qos_id = job->qos_id;
	out->assoc_id = job->assoc_id;
	out->resv_id = job->resv_id;
	out->batch_flag = job->batch_flag;
	out->bit_flags = job->bit_flags;
	out->site_factor = (int64_t)job->site_factor - (int64_t)NICE_OFFSET;
	out->start_time = job->start_time;
	out->end_time = job->end_time;
	out->deadline = job->deadline;
	out->num_nodes = job->node_cnt;
	out->num_cpus = job->total_cpus;
	if (d) {
		out->min_nodes = d->min_nodes;
		out->max_nodes = d->max_nodes;
		out->min_cpus = d->min_cpus;
		out->requeue = d->requeue;
		out->nice = (int64_t)d->nice - (int64_t)NICE_OFFSET;
		out->pn_min_memory = d->pn_min_memory;
		out->submit_time = d->submit_time;
		out->eligible_time = d->begin_time;
		if (!out->num_nodes)
			out->num_nodes = d->min_nodes;
		if (!out->num_cpus)
			out->num_cpus = d->min_cpus;
	}
}

/* The string fields of *job into arena a; returns 0 or -1 on OOM. */
static int _copy_job_strings(spm_arena_t *a, spm_job_t *out, job_record_t *job)
{
	__typeof__(job->details) d = job->details; /* a named type from 24.11 */
	int oom = 0;

	if (d) {
		S(features, d->features);
		S(std_err, d->std_err);
		S(std_in, d->std_in);
		S(std_out, d->std_out);
		S(work_dir, d->work_dir);
	}
	S(account, job->account);
	S(admin_comment, job->admin_comment);
	S(alloc_node, job->alloc_node);
	S(batch_host, job->batch_host);
	S(burst_buffer, job->burst_buffer);
	S(comment, job->comment);
	S(licenses, job->licenses);
	S(mcs_label, job->mcs_label);
	S(name, job->name);
	S(nodes, job->nodes);
	S(partition, job->partition);
	if (job->qos_ptr)
		S(qos, job->qos_ptr->name);
	S(resv_name, job->resv_name);
	S(state_desc, job->state_desc);
	S(system_comment, job->system_comment);
	S(tres_alloc_str, job->tres_alloc_str);
	S(tres_req_str, job->tres_req_str);
	S(tres_per_job, job->tres_per_job);
	S(tres_per_node, job->tres_per_node);
	S(tres_per_task, job->tres_per_task);
	S(user_name, job->user_name);
	S(wckey, job->wckey);
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
	out->job_id = e->jobid;
	out->step_id = e->step_id;
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
 * update() batches.  Copying every string of 100,000 pending jobs costs more
 * than the whole 50 ms budget, and a handler typically reads a few fields.
 * update() runs while slurmctld holds its job write lock and waits for the
 * answer, so Slurm's records cannot change or go away until the waiting
 * thread calls spm_lazy_close(): until then, the strings of a job are
 * copied on its first string access.  Afterwards nothing is read from
 * Slurm's memory again; numbers stay readable, strings already copied too.
 */
struct spm_lazy {
	pthread_mutex_t mu;
	bool open;
	spm_arena_t *arena;        /* the batch's arena (this struct lives in it) */
	spm_job_t *jobs;
	job_record_t **recs;       /* recs[i] is jobs[i]'s record (C only) */
	uint32_t count;
};

struct collect {
	spm_batch_t *batch;
	job_record_t **recs;
	spm_lazy_t *lazy;
	uint32_t cap;
};

static int _collect_one(void *x, void *arg)
{
	job_record_t *job = x;
	struct collect *c = arg;
	spm_job_t *out;

	if (!IS_JOB_PENDING(job) || c->batch->count >= c->cap)
		return 0;
	out = &c->batch->jobs[c->batch->count];
	_copy_job_numbers(out, job);
	out->lazy = c->lazy;
	c->recs[c->batch->count++] = job;
	return 0;
}

spm_batch_t *spm_snapshot_pending(spm_arena_t **arena_out)
{
	spm_list_t *jl = _job_list();
	struct collect c = { 0 };
	spm_arena_t *arena;
	uint32_t total;

	*arena_out = NULL;
	if (!jl || !*jl)
		return NULL;
	total = list_count(*jl);
	/* One chunk for the records; strings come later, if asked for. */
	if (!(arena = spm_arena_new((size_t)total *
				    (sizeof(spm_job_t) + sizeof(void *)) + 4096)))
		return NULL;
	c.cap = total;
	if (!(c.batch = spm_arena_alloc(arena, sizeof(*c.batch))) ||
	    !(c.lazy = spm_arena_alloc(arena, sizeof(*c.lazy))) ||
	    (total && !(c.batch->jobs = spm_arena_alloc(
				arena, (size_t)total * sizeof(spm_job_t)))) ||
	    (total && !(c.recs = spm_arena_alloc(
				arena, (size_t)total * sizeof(*c.recs))))) {
		spm_arena_unref(arena);
		return NULL;
	}
	pthread_mutex_init(&c.lazy->mu, NULL);
	c.lazy->open = true;
	c.lazy->arena = arena;
	c.batch->lazy = c.lazy;
	if (total)
		(void)list_for_each(*jl, _collect_one, &c);
	c.lazy->jobs = c.batch->jobs;
	c.lazy->recs = c.recs;
	c.lazy->count = c.batch->count;
	*arena_out = arena;
	return c.batch;
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
	} else if (job < lz->jobs || job >= lz->jobs + lz->count) {
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

uint32_t spm_job_id(struct job_record *job_ptr)
{
	return job_ptr->job_id;
}

/* ---- job_submit: job_desc_msg_t and the partitions ---- */

#include "jobdesc_fields.h"

#define S(f, v) do { if ((v) && !(out->f = spm_arena_strdup(a, (v)))) \
			     oom = 1; } while (0)

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
