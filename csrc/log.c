/*
 * log.c - messages into the daemon's own log, through Slurm's log_var(),
 * with a fixed prefix per context ("prep/python: ..."); and the plugin
 * and hook tables (spm_plugins[], spm_hooks[]) made from spm_plugins.h.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "spm.h"
#include "spm_plugins.h"

/* From libslurmfull (resolved in the daemon's global scope). */
extern void log_var(int level, const char *fmt, ...);
extern int get_log_level(void);

/* The plugin and hook tables, from csrc/spm_plugins.h (the one place
 * they are written). */
#define SPM_PLUGIN_KEY(c, type, key, member, timeout, daemons, workers) \
	[SPM_CTX_##c] = { SPM_CTX_##c, type, key, NULL, timeout, daemons, workers },
#define SPM_PLUGIN_FILE(c, type, file, timeout, daemons, workers) \
	[SPM_CTX_##c] = { SPM_CTX_##c, type, NULL, file, timeout, daemons, workers },
SPM_EXPORT const spm_plugin_t spm_plugins[SPM_CTX_COUNT] = { SPM_PLUGIN_TABLE };
#undef SPM_PLUGIN_KEY
#undef SPM_PLUGIN_FILE

#define SPM_HOOK_ROW(h, c, name) [SPM_HOOK_##h] = { SPM_HOOK_##h, SPM_CTX_##c, name },
SPM_EXPORT const spm_hook_t spm_hooks[SPM_HOOK_COUNT] = { SPM_HOOK_TABLE };
#undef SPM_HOOK_ROW

/* One row per SPM_CTX_* and per SPM_HOOK_* (a gap or a row given twice is
 * caught by tests/host/test_plugin_table.py). */
#define SPM_PLUGIN_KEY(...) + 1
#define SPM_PLUGIN_FILE(...) + 1
_Static_assert(0 SPM_PLUGIN_TABLE == SPM_CTX_COUNT,
	       "spm_plugins.h: one SPM_PLUGIN_* row per SPM_CTX_* (SPM_CTX_COUNT)");
#undef SPM_PLUGIN_KEY
#undef SPM_PLUGIN_FILE
#define SPM_HOOK_ROW(...) + 1
_Static_assert(0 SPM_HOOK_TABLE == SPM_HOOK_COUNT,
	       "spm_plugins.h: one SPM_HOOK_ROW per SPM_HOOK_* (SPM_HOOK_COUNT)");
#undef SPM_HOOK_ROW

int spm_ctx_index(int ctx)
{
	return (ctx >= 0 && ctx < SPM_CTX_COUNT) ? ctx : 0;
}

SPM_EXPORT const char *spm_ctx_name(int ctx)
{
	return (ctx >= 0 && ctx < SPM_CTX_COUNT) ? spm_plugins[ctx].name : "slurmpy";
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
