/*
 * spank_stubs.h - SPANK's functions for a program that includes
 * csrc/spank_python.c and runs it outside Slurm: tests/host/spank_scan_host.c
 * (what slurm_spank_init registers) and bench/spank_boot.c (what a remote
 * hook costs).  Define before including:
 *
 *   SPANK_STUB_CONTEXT     the spank_context() the plugin sees (S_CTX_*)
 *   SPANK_STUB_GETENV_RC   what spank_getenv() returns (it never finds one)
 *   SPANK_STUB_SETENV_RC   what spank_setenv()/spank_unsetenv() return
 *   SPANK_STUB_REGISTER(opt)  optional: run for each option registered
 *
 * Items and option values are never available; spank_prepend_task_argv
 * (23.11+, compat.h) is not either.
 */
#ifndef SPANK_STUBS_H
#define SPANK_STUBS_H

#ifndef SPANK_STUB_REGISTER
#define SPANK_STUB_REGISTER(opt) ((void)(opt))
#endif

spank_context_t spank_context(void)
{
	return SPANK_STUB_CONTEXT;
}

spank_err_t spank_option_register(spank_t sp, struct spank_option *opt)
{
	(void)sp;
	SPANK_STUB_REGISTER(opt);
	return ESPANK_SUCCESS;
}

spank_err_t spank_option_getopt(spank_t sp, struct spank_option *opt, char **optarg)
{
	(void)sp; (void)opt; (void)optarg;
	return ESPANK_NOT_AVAIL;
}

spank_err_t spank_get_item(spank_t sp, spank_item_t item, ...)
{
	(void)sp; (void)item;
	return ESPANK_NOT_AVAIL;
}

spank_err_t spank_getenv(spank_t sp, const char *var, char *buf, int len)
{
	(void)sp; (void)var; (void)buf; (void)len;
	return SPANK_STUB_GETENV_RC;
}

spank_err_t spank_setenv(spank_t sp, const char *var, const char *val, int overwrite)
{
	(void)sp; (void)var; (void)val; (void)overwrite;
	return SPANK_STUB_SETENV_RC;
}

spank_err_t spank_unsetenv(spank_t sp, const char *var)
{
	(void)sp; (void)var;
	return SPANK_STUB_SETENV_RC;
}

#if SPM_SPANK_HAS_PREPEND_ARGV   /* compat.h: 23.11+ */
spank_err_t spank_prepend_task_argv(spank_t sp, int argc, const char *argv[])
{
	(void)sp; (void)argc; (void)argv;
	return ESPANK_NOT_AVAIL;
}
#endif

#endif
