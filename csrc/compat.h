/*
 * compat.h - every difference between the Slurm releases the shim builds
 * against, in one place, keyed on SLURM_VERSION_NUMBER.  Only the files
 * that see Slurm's own headers include it: conf.c, snapshot.c, factors.c,
 * jobdesc.c, drain.c and the plugins.  Nothing else may test
 * SLURM_VERSION_NUMBER.
 *
 * Verified by building against every release from 22.05.8 to 26.05.3
 * (make releases: 22.05.8, 23.02.8, 23.11.11, 24.05.8, 24.11.5, 25.05.8,
 * 25.11.7, 26.05.3), each boundary at the release where it happened.
 *
 *   release  difference                                  handled by
 *   23.02    prep.h, site_factor.h, cred.h moved from    SPM_PREP_H,
 *            src/common/ to src/interfaces/              SPM_SITE_FACTOR_H
 *   23.11    job_env_t.user_name removed: the user is    spm_compat_env_user()
 *            in the job credential (prep/script reads
 *            slurm_cred_get_args(cred)->id->pw_name)
 *   24.05    slurm_conf.epilog is a char ** with         spm_compat_epilog_set()
 *            epilog_cnt
 *   24.05    site_factor_p_reconfig no longer called     (nothing to compile)
 *   23.02    job_modify() gains char **err_msg           SPM_JOB_MODIFY_ERR_MSG_ARG
 *   24.11    the List typedef is gone (list_t *)         spm_list_t
 *   23.02    jobcomp_p_set_location() loses its char *   SPM_JC_SET_LOCATION_ARGS
 *            (JobCompLoc is read from slurm_conf)
 *   25.05    jobcomp_p_log_record(job) becomes           SPM_JC_HAS_JOB_START
 *            jobcomp_p_record_job_end(job, event), and
 *            jobcomp_p_record_job_start(job, event) is
 *            required (JobCompParams=enable_job_start)
 *   25.05    running_in_slurmctld() & co become macros   conf.c includes
 *            over run_in_daemon()                        run_in_daemon.h
 *   25.05    prolog_epilog_timeout split into            spm_compat_prep_timeout()
 *            prolog_timeout/epilog_timeout
 *   26.05    update_node_msg_t.reason_uid removed        SPM_UPDATE_NODE_REASON_UID
 *            (slurmctld takes the RPC's uid)
 *   23.11    spank_prepend_task_argv() (spank/python's   spm_compat_spank_prepend_argv(),
 *            prepend_argv in task_init)                  SPM_SPANK_HAS_PREPEND_ARGV
 *   23.02    part_record_t.allow_uids gains             spm_compat_part_uids()
 *            allow_uids_cnt (was 0-terminated)
 *   23.11    job_desc_msg_t.id (identity_t): the user    spm_compat_desc_identity_name()
 *            name job_submit/lua reads first
 *   25.11    job_env_t.jobid/step_id and                 SPM_ENV_JOB_ID_MEMBER,
 *            job_desc_msg_t.job_id become a              SPM_DESC_JOB_ID_MEMBER,
 *            slurm_step_id_t step_id                     spm_compat_env_job_id()
 *
 * Include it after config.h and slurm/slurm.h.
 */
#ifndef SPM_COMPAT_H
#define SPM_COMPAT_H

#include "slurm/slurm_version.h"

#ifndef SLURM_VERSION_NUMBER
#error "compat.h: include slurm/slurm.h first"
#endif

#if SLURM_VERSION_NUMBER < SLURM_VERSION_NUM(22, 5, 0)
#error "slurmpy_plugins needs Slurm 22.05 or later"
#endif

#define SPM_SLURM_AT_LEAST(a, b) \
	(SLURM_VERSION_NUMBER >= SLURM_VERSION_NUM(a, b, 0))

/* ---- headers (prep_python.c, site_factor_python.c use them) ---- */
#if SPM_SLURM_AT_LEAST(23, 2)
#define SPM_PREP_H        "src/interfaces/prep.h"
#define SPM_SITE_FACTOR_H "src/interfaces/site_factor.h"
#define SPM_CRED_H        "src/interfaces/cred.h"
#else
#define SPM_PREP_H        "src/common/prep.h"
#define SPM_SITE_FACTOR_H "src/common/site_factor.h"
#define SPM_CRED_H        "src/common/slurm_cred.h"
#endif

/* ---- job_submit (job_submit_python.c) ---- */
/* job_modify()'s last parameter, and the err_msg to pass on (NULL on
 * 22.05, whose job_modify has none: a refusal is only logged there). */
#if SPM_SLURM_AT_LEAST(23, 2)
#define SPM_JOB_MODIFY_ERR_MSG_ARG , char **err_msg
#define SPM_JOB_MODIFY_ERR_MSG err_msg
#else
#define SPM_JOB_MODIFY_ERR_MSG_ARG
#define SPM_JOB_MODIFY_ERR_MSG NULL
#endif

/* ---- jobcomp (jobcomp_python.c) ---- */
/* set_location()'s parameters: JobCompLoc up to 22.05, none from 23.02;
 * jobcomp/python has no use for it either way. */
#if SPM_SLURM_AT_LEAST(23, 2)
#define SPM_JC_SET_LOCATION_ARGS void
#else
#define SPM_JC_SET_LOCATION_ARGS char *location
#endif
/* From 25.05: jobcomp_p_record_job_end(job, event) replaces
 * jobcomp_p_log_record(job), and jobcomp_p_record_job_start(job, event)
 * is looked up too. */
#if SPM_SLURM_AT_LEAST(25, 5)
#define SPM_JC_HAS_JOB_START 1
#else
#define SPM_JC_HAS_JOB_START 0
#endif

/* ---- slurmctld's job_list and part_list (snapshot.c) ---- */
#ifdef SPM_COMPAT_LIST
#include "src/common/list.h"
#if SPM_SLURM_AT_LEAST(24, 11)
typedef list_t *spm_list_t;
#else
typedef List spm_list_t;
#endif
#endif

/* ---- job ids in job_env_t and job_desc_msg_t (snapshot.c) ---- */
/* job_env_t's uint32_t jobid and step_id, and job_desc_msg_t's job_id (the
 * id a job_modify request names; NO_VAL when submitting) up to 25.05; from
 * 25.11 both carry a slurm_step_id_t step_id instead.  The members as
 * designators (for offsetof: the C host's field tables), and accessors. */
#if SPM_SLURM_AT_LEAST(25, 11)
#define SPM_ENV_JOB_ID_MEMBER  step_id.job_id
#define SPM_ENV_STEP_ID_MEMBER step_id.step_id
#define SPM_DESC_JOB_ID_MEMBER step_id.job_id
#else
#define SPM_ENV_JOB_ID_MEMBER  jobid
#define SPM_ENV_STEP_ID_MEMBER step_id
#define SPM_DESC_JOB_ID_MEMBER job_id
#endif
#define spm_compat_env_job_id(e)  ((e)->SPM_ENV_JOB_ID_MEMBER)
#define spm_compat_env_step_id(e) ((e)->SPM_ENV_STEP_ID_MEMBER)
#define spm_compat_desc_job_id(d) ((d)->SPM_DESC_JOB_ID_MEMBER)

/* ---- slurm_conf, which daemon this is (conf.c) ---- */
#ifdef SPM_COMPAT_CONF
/* running_in_slurmctld() & co: functions up to 24.11, macros over
 * run_in_daemon(IS_SLURMCTLD ...) (reading the daemon's slurm_daemon) from
 * 25.05; this header declares whichever the release has. */
#include "src/common/run_in_daemon.h"

/* The prep context's default per-call limit in seconds (0: none set):
 * PrologEpilogTimeout up to 24.11; 25.05 splits it into PrologTimeout and
 * EpilogTimeout.  The context has one limit for all its hooks, so from
 * 25.05 it is the larger of the two that are set: no hook is cut shorter
 * than Slurm's own prep/script would allow it. */
static inline uint32_t _spm_compat_secs(uint16_t t)
{
	return (t == NO_VAL16 || t == INFINITE16) ? 0 : t;
}

static inline uint32_t spm_compat_prep_timeout(void)
{
#if SPM_SLURM_AT_LEAST(25, 5)
	uint32_t p = _spm_compat_secs(slurm_conf.prolog_timeout);
	uint32_t e = _spm_compat_secs(slurm_conf.epilog_timeout);

	return p > e ? p : e;
#else
	return _spm_compat_secs(slurm_conf.prolog_epilog_timeout);
#endif
}

/* Is Epilog= set, i.e. does slurmd run the epilog of a job with no steps
 * left (req.c tests slurm_conf.epilog)? */
static inline bool spm_compat_epilog_set(void)
{
#if SPM_SLURM_AT_LEAST(24, 5)
	return slurm_conf.epilog && slurm_conf.epilog_cnt > 0;
#else
	return slurm_conf.epilog && slurm_conf.epilog[0];
#endif
}
#endif

/* ---- SPANK (spank_python.c; define SPM_COMPAT_SPANK, include slurm/spank.h) ---- */
#ifdef SPM_COMPAT_SPANK
/* spank_prepend_task_argv(), from 23.11: run the task as argv followed by
 * its command (task_init only).  0: done; -1: refused (not task_init);
 * -2: this release has no such call. */
#if SPM_SLURM_AT_LEAST(23, 11)
#define SPM_SPANK_HAS_PREPEND_ARGV 1
#else
#define SPM_SPANK_HAS_PREPEND_ARGV 0
#endif

static inline int spm_compat_spank_prepend_argv(spank_t sp, int argc,
						const char **argv)
{
#if SPM_SPANK_HAS_PREPEND_ARGV
	return spank_prepend_task_argv(sp, argc, argv) == ESPANK_SUCCESS ?
	       0 : -1;
#else
	(void)sp;
	(void)argc;
	(void)argv;
	return -2;
#endif
}
#endif

/* ---- job_env_t (snapshot.c) ---- */
#ifdef SPM_COMPAT_ENV
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>
#include "src/slurmd/slurmd/slurmd.h"
#if SPM_SLURM_AT_LEAST(23, 11)
#include SPM_CRED_H
#endif


/* The job's user name, copied into arena a: job_env_t's own field before
 * 23.11; from 23.11 on, the name in the job credential, else the passwd
 * entry of job_env->uid (what prep/script does).  Returns 0, or -1 on OOM. */
static inline int spm_compat_env_user(spm_arena_t *a, job_env_t *e,
				      void *cred, char **out)
{
	const char *name = NULL;
	int rc = 0;

	*out = NULL;
#if SPM_SLURM_AT_LEAST(23, 11)
	if (cred) {
		slurm_cred_arg_t *arg = slurm_cred_get_args(cred);

		if (arg && arg->id && arg->id->pw_name &&
		    !(*out = spm_arena_strdup(a, arg->id->pw_name)))
			rc = -1;
		slurm_cred_unlock_args(cred);
		if (*out || rc)
			return rc;
	}
	{
		struct passwd pw, *res = NULL;
		long sz = sysconf(_SC_GETPW_R_SIZE_MAX);
		char *buf = malloc(sz > 0 ? (size_t)sz : 16384);

		if (!buf)
			return -1;
		if (!getpwuid_r(e->uid, &pw, buf, sz > 0 ? (size_t)sz : 16384,
				&res) && res)
			name = res->pw_name;
		if (name && !(*out = spm_arena_strdup(a, name)))
			rc = -1;
		free(buf);
		return rc;
	}
#else
	(void)cred;
	name = e->user_name;
	if (name && !(*out = spm_arena_strdup(a, name)))
		rc = -1;
	return rc;
#endif
}
#endif

/* ---- job_submit's looked-up fields and part_list (snapshot.c) ---- */
#ifdef SPM_COMPAT_JOBDESC
#if SPM_SLURM_AT_LEAST(23, 11)
#include "src/common/identity.h"
#endif
#include "src/common/uid.h"
#include "src/common/xmalloc.h"
#include "src/common/xstring.h"

/* The name of the request's user as the identity it came with holds it
 * (23.11+; the request's memory: do not free), or NULL when there is none
 * (22.05, 23.02, or no identity): then job_submit/lua's "user_name" is
 * uid_to_string_or_null(user_id), which snapshot.c looks up (cached). */
static inline const char *spm_compat_desc_identity_name(job_desc_msg_t *d)
{
#if SPM_SLURM_AT_LEAST(23, 11)
	if (d->id) {
		identity_t *id = d->id;

		return id->pw_name;
	}
#else
	(void)d;
#endif
	return NULL;
}

/* A partition's uid filter as job_submit/lua's _user_can_use_part() reads
 * it: NULL when none applies (22.05: allow_uids NULL; from 23.02:
 * allow_uids_cnt 0), else the array and its length in *n. */
static inline uid_t *spm_compat_part_uids(part_record_t *p, uint32_t *n)
{
#if SPM_SLURM_AT_LEAST(23, 2)
	*n = p->allow_uids_cnt > 0 ? (uint32_t)p->allow_uids_cnt : 0;
	return *n ? p->allow_uids : NULL;
#else
	uint32_t i = 0;

	while (p->allow_uids && p->allow_uids[i])
		i++;
	*n = i;
	return p->allow_uids;
#endif
}
#endif

/* ---- drain.c: update_node_msg_t ---- */
#if SPM_SLURM_AT_LEAST(26, 5)
#define SPM_UPDATE_NODE_REASON_UID 0   /* slurmctld uses the RPC's uid */
#else
#define SPM_UPDATE_NODE_REASON_UID 1
#endif

#endif /* SPM_COMPAT_H */
