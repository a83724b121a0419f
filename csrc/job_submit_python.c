/*
 * job_submit_python.c - job_submit/python: routes Slurm's job_submit API
 * to the shared dispatch path (ctx.c, dispatch_job_submit.c).  Nothing
 * else happens here.
 */
#include "config.h"
#include "slurm/slurm.h"
#include "slurm/slurm_errno.h"
#include "src/slurmctld/slurmctld.h"

#include "compat.h"
#include "spm.h"

const char plugin_name[] = "Job submit plugin for Python handlers (slurmpy_plugins)";
const char plugin_type[] = "job_submit/python";
const uint32_t plugin_version = SLURM_VERSION_NUMBER;

/* slurmctld loads this at start-up with no locks held (or on a
 * reconfigure that changes JobSubmitPlugins): wait (bounded) for the
 * handler, so that the first submission has it. */
extern int init(void)
{
	spm_ctx_init(SPM_CTX_JOB_SUBMIT);
	(void)spm_ctx_wait_ready(SPM_CTX_JOB_SUBMIT, spm_boot_timeout_ms());
	return SLURM_SUCCESS;
}

extern void fini(void)
{
	spm_ctx_fini(SPM_CTX_JOB_SUBMIT);
}

extern int job_submit(job_desc_msg_t *job_desc, uint32_t submit_uid,
		      char **err_msg)
{
	return spm_js_submit(job_desc, submit_uid, err_msg);
}

/* 22.05 has no err_msg here: a refusal is logged, scontrol reports the
 * error code; from 23.02 the message reaches the user (compat.h). */
extern int job_modify(job_desc_msg_t *job_desc, job_record_t *job_ptr,
		      uint32_t submit_uid SPM_JOB_MODIFY_ERR_MSG_ARG)
{
	return spm_js_modify(job_desc, job_ptr, submit_uid,
			     SPM_JOB_MODIFY_ERR_MSG);
}
