/*
 * jobdesc.c - the only file that writes into job_desc_msg_t (a
 * job_submit handler's changes) and into job_submit's err_msg.  Called on
 * slurmctld's RPC thread, with the locks job_submit runs under, after the
 * handler returned normally: only then do its changes reach Slurm.
 */
#define _GNU_SOURCE
#include <string.h>

#include "config.h"
#include "slurm/slurm.h"
#include "src/common/xmalloc.h"
#include "src/common/xstring.h"

#include "spm.h"
#include "jobdesc_fields.h"

_Static_assert(SPM_NO_VAL16 == NO_VAL16, "SPM_NO_VAL16 must match Slurm");
_Static_assert(SPM_NO_VAL == NO_VAL, "SPM_NO_VAL must match Slurm");
_Static_assert(SPM_NO_VAL64 == NO_VAL64, "SPM_NO_VAL64 must match Slurm");
_Static_assert(SPM_INFINITE16 == INFINITE16, "SPM_INFINITE16 must match Slurm");
_Static_assert(SPM_INFINITE == INFINITE, "SPM_INFINITE must match Slurm");
_Static_assert(SPM_INFINITE64 == INFINITE64, "SPM_INFINITE64 must match Slurm");
_Static_assert(SPM_MEM_PER_CPU == MEM_PER_CPU, "SPM_MEM_PER_CPU must match Slurm");

/* Replace the request's environment with Python's array (n strings
 * "NAME=value" in the call's arena): Slurm's allocator, as job_submit/lua's
 * _set_job_env_field() writes it (NULL-terminated, env_size entries). */
static void _set_env(job_desc_msg_t *d, char **env, uint32_t n)
{
	for (uint32_t i = 0; d->environment && i < d->env_size; i++)
		xfree(d->environment[i]);
	xfree(d->environment);
	d->environment = xcalloc((size_t)n + 1, sizeof(char *));
	for (uint32_t i = 0; i < n; i++)
		d->environment[i] = xstrdup(env[i]);
	d->env_size = n;
}

static bool _same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

void spm_apply_jobdesc(struct job_descriptor *desc, const spm_jobdesc_t *in,
		       const spm_jobdesc_t *out)
{
	job_desc_msg_t *d = desc;

#define JD_NUM(f) if (in->f != out->f) d->f = out->f;
#define JD_RO_NUM(f)
#define JD_STR(f) if (!_same(in->f, out->f)) { \
		xfree(d->f); d->f = xstrdup(out->f); }
#define JD_RO_STR(f)
	SPM_JOBDESC_FIELDS
#undef JD_NUM
#undef JD_RO_NUM
#undef JD_STR
#undef JD_RO_STR
	if (in->min_mem_per_node != out->min_mem_per_node ||
	    in->min_mem_per_cpu != out->min_mem_per_cpu) {
		/* Python keeps at most one of the two set. */
		if (out->min_mem_per_cpu != NO_VAL64)
			d->pn_min_memory = out->min_mem_per_cpu | MEM_PER_CPU;
		else
			d->pn_min_memory = out->min_mem_per_node;
	}
	/* Python hands a new array only when the handler changed the
	 * environment (and only for a request that has one) */
	if (in->environment != out->environment && out->environment)
		_set_env(d, out->environment, out->environment_size);
}

void spm_set_err_msg(char **err_msg, const char *msg)
{
	if (!err_msg || !msg || !*msg)
		return;
	if (*err_msg && **err_msg)   /* an earlier plugin's lines stay first */
		xstrfmtcat(*err_msg, "\n%s", msg);
	else {
		xfree(*err_msg);
		*err_msg = xstrdup(msg);
	}
}
