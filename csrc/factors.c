/*
 * factors.c - the only file that writes into Slurm's records: site
 * factors, under the job write lock slurmctld holds for set()/update().
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

#include "config.h"
#include "slurm/slurm.h"
#include "src/slurmctld/slurmctld.h"

#include "spm.h"
#include "compat.h"

_Static_assert(SPM_FACTOR_MIN == -(int64_t)NICE_OFFSET,
	       "SPM_FACTOR_MIN must match Slurm's NICE_OFFSET");
_Static_assert(SPM_FACTOR_MAX == (int64_t)UINT32_MAX - (int64_t)NICE_OFFSET,
	       "SPM_FACTOR_MAX must match Slurm's NICE_OFFSET");

/* slurmctld-only, looked up when first needed so that this library also
 * loads in slurmd (a data reference would fail there at load time). */
static job_record_t *(*_find_job(void))(uint32_t)
{
	return (job_record_t *(*)(uint32_t))dlsym(RTLD_DEFAULT,
						  "find_job_record");
}

bool spm_apply_factor(struct job_record *job_ptr, int64_t factor)
{
	uint32_t v;

	/* Python clamped already (and said so); saturate, never wrap. */
	if (factor < SPM_FACTOR_MIN)
		factor = SPM_FACTOR_MIN;
	else if (factor > SPM_FACTOR_MAX)
		factor = SPM_FACTOR_MAX;
	v = (uint32_t)(factor + (int64_t)NICE_OFFSET);
	if (job_ptr->site_factor == v)
		return false;   /* no write: the record's line stays clean */
	job_ptr->site_factor = v;
	return true;
}

void spm_apply_factors(const uint32_t *ids, const int64_t *factors,
		       uint32_t n)
{
	job_record_t *(*find)(uint32_t) = _find_job();
	uint32_t skipped = 0, changed = 0;
	char sample[160] = "";
	size_t used = 0;

	if (!find) {
		spm_logf(SPM_CTX_SITE_FACTOR, SPM_LOG_ERROR,
			 "find_job_record() not found: not running in slurmctld?");
		return;
	}
	for (uint32_t i = 0; i < n; i++) {
		job_record_t *job = find(ids[i]);

		if (job && IS_JOB_PENDING(job)) {
			changed += spm_apply_factor(job, factors[i]);
			continue;
		}
		if (skipped++ < 5 && used < sizeof(sample))
			used += snprintf(sample + used, sizeof(sample) - used,
					 "%s%u", used ? ", " : "", ids[i]);
	}
	if (skipped)
		spm_logf(SPM_CTX_SITE_FACTOR, SPM_LOG_INFO,
			 "warning: update() returned factors for %u job(s) that are unknown or no longer pending (JobId=%s%s); ignored",
			 skipped, sample, skipped > 5 ? ", ..." : "");
	spm_logf(SPM_CTX_SITE_FACTOR, SPM_LOG_DEBUG2,
		 "update(): %u factor(s) by job id, %u changed", n, changed);
}

void spm_apply_factors_at(struct job_record **recs, const int64_t *factors,
			  uint32_t n)
{
	uint32_t set = 0, changed = 0;

	for (uint32_t i = 0; i < n; i++) {
		if (factors[i] == SPM_FACTOR_KEEP)
			continue;
		set++;
		changed += spm_apply_factor(recs[i], factors[i]);
	}
	spm_logf(SPM_CTX_SITE_FACTOR, SPM_LOG_DEBUG2,
		 "update(): %u factor(s) by batch index, %u changed", set, changed);
}
