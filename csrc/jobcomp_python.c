/*
 * jobcomp_python.c - jobcomp/python: routes Slurm's jobcomp API to the
 * spool (dispatch_jobcomp.c) and the handler's context (ctx.c).  Nothing
 * else happens here.
 *
 * Slurm calls the record hooks under the job write lock: they only copy
 * the record into the spool (appended, fdatasync'd) and return; a
 * deliverer thread hands the records to the handler, off every lock.
 * `sacct -c` loads jobcomp plugins too: there (any process but
 * slurmctld) init() starts no Python and opens no spool.
 */
#include "config.h"
#include "slurm/slurm.h"
#include "slurm/slurm_errno.h"
#include "src/slurmctld/slurmctld.h"

#define SPM_COMPAT_LIST
#include "compat.h"
#include "spm.h"

const char plugin_name[] = "Job completion plugin for Python handlers (slurmpy_plugins)";
const char plugin_type[] = "jobcomp/python";
const uint32_t plugin_version = SLURM_VERSION_NUMBER;

extern int init(void)
{
	/* Boots the handler in slurmctld only (its row's daemons); does
	 * not wait: records spool until it has loaded. */
	spm_ctx_init(SPM_CTX_JOBCOMP);
	return spm_jc_open();
}

extern void fini(void)
{
	spm_ctx_fini(SPM_CTX_JOBCOMP);
}

/* JobCompLoc means nothing to jobcomp/python (spool= does the job);
 * slurmctld calls this at start-up and on every reconfigure: take a
 * changed jobcomp_python.conf. */
extern int jobcomp_p_set_location(SPM_JC_SET_LOCATION_ARGS)
{
	spm_ctx_init(SPM_CTX_JOBCOMP);
	return spm_jc_open();
}

#if SPM_JC_HAS_JOB_START
extern int jobcomp_p_record_job_end(job_record_t *job_ptr, uint32_t event)
{
	(void)event;
	return spm_jc_record(SPM_HOOK_JC_END, job_ptr);
}

extern int jobcomp_p_record_job_start(job_record_t *job_ptr, uint32_t event)
{
	(void)event;
	return spm_jc_record(SPM_HOOK_JC_START, job_ptr);
}
#else
extern int jobcomp_p_log_record(job_record_t *job_ptr)
{
	return spm_jc_record(SPM_HOOK_JC_END, job_ptr);
}
#endif

/* sacct -c: the records went to the handler, not to anything sacct can
 * read back. */
extern spm_list_t jobcomp_p_get_jobs(void *job_cond)
{
	(void)job_cond;
	return NULL;
}
