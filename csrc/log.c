/*
 * log.c - messages into the daemon's own log, through Slurm's log_var(),
 * with a fixed prefix per context ("prep/python: ...").
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "spm.h"

/* From libslurmfull (resolved in the daemon's global scope). */
extern void log_var(int level, const char *fmt, ...);
extern int get_log_level(void);

const char *const spm_ctx_names[SPM_CTX_COUNT] = {
	[SPM_CTX_PREP] = "prep/python",
	[SPM_CTX_SITE_FACTOR] = "site_factor/python",
	[SPM_CTX_JOB_SUBMIT] = "job_submit/python",
};

const char *const spm_hook_names[SPM_HOOK_COUNT] = {
	[SPM_HOOK_PROLOG] = "prolog",
	[SPM_HOOK_EPILOG] = "epilog",
	[SPM_HOOK_PROLOG_SLURMCTLD] = "prolog_slurmctld",
	[SPM_HOOK_EPILOG_SLURMCTLD] = "epilog_slurmctld",
	[SPM_HOOK_SF_SET] = "set",
	[SPM_HOOK_SF_UPDATE] = "update",
	[SPM_HOOK_SF_RECONFIG] = "reconfig",
	[SPM_HOOK_JS_SUBMIT] = "submit",
	[SPM_HOOK_JS_MODIFY] = "modify",
};

const int spm_hook_ctx[SPM_HOOK_COUNT] = {
	[SPM_HOOK_PROLOG] = SPM_CTX_PREP,
	[SPM_HOOK_EPILOG] = SPM_CTX_PREP,
	[SPM_HOOK_PROLOG_SLURMCTLD] = SPM_CTX_PREP,
	[SPM_HOOK_EPILOG_SLURMCTLD] = SPM_CTX_PREP,
	[SPM_HOOK_SF_SET] = SPM_CTX_SITE_FACTOR,
	[SPM_HOOK_SF_UPDATE] = SPM_CTX_SITE_FACTOR,
	[SPM_HOOK_SF_RECONFIG] = SPM_CTX_SITE_FACTOR,
	[SPM_HOOK_JS_SUBMIT] = SPM_CTX_JOB_SUBMIT,
	[SPM_HOOK_JS_MODIFY] = SPM_CTX_JOB_SUBMIT,
};

int spm_ctx_index(int ctx)
{
	return (ctx >= 0 && ctx < SPM_CTX_COUNT) ? ctx : 0;
}

SPM_EXPORT const char *spm_ctx_name(int ctx)
{
	return (ctx >= 0 && ctx < SPM_CTX_COUNT) ? spm_ctx_names[ctx] : "slurmpy";
}

void spm_log(int level, const char *prefix, const char *msg)
{
	if (level < SPM_LOG_ERROR)
		level = SPM_LOG_ERROR;
	if (level > SPM_LOG_DEBUG2)
		level = SPM_LOG_DEBUG2;
	if (get_log_level() < level)
		return;
	/* Slurm adds "error: " itself at LOG_LEVEL_ERROR. */
	log_var(level, "%s: %s", prefix ? prefix : "slurmpy", msg ? msg : "");
}

int spm_log_level(void)
{
	return get_log_level();
}

SPM_EXPORT void spm_logf(int ctx, int level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (get_log_level() < level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	spm_log(level, spm_ctx_name(ctx), buf);
}

void spm_boot_failure(const char *text)
{
	/* One log line per traceback line keeps the daemon log greppable. */
	const char *p = text ? text : "(no traceback)";

	while (*p) {
		const char *nl = strchr(p, '\n');
		int len = nl ? (int)(nl - p) : (int)strlen(p);

		if (len)
			log_var(SPM_LOG_ERROR,
				"slurmpy: Python bridge failed to start: %.*s",
				len, p);
		if (!nl)
			break;
		p = nl + 1;
	}
}
