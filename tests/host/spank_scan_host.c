/*
 * spank_scan_host.c - runs spank_python.c's slurm_spank_init() outside
 * Slurm (tests/host/test_spank_host.py): SPANK's functions are stubs that print
 * what the plugin registers, then the hooks it would run Python for.
 * Usage: spank_scan_host handler=m:C path=DIR ...
 */
#include "../../csrc/spank_python.c"

slurm_conf_t slurm_conf;

void slurm_error(const char *fmt, ...)
{
	(void)fmt;
}

spank_context_t spank_context(void)
{
	return S_CTX_LOCAL;
}

spank_err_t spank_option_register(spank_t sp, struct spank_option *opt)
{
	(void)sp;
	printf("OPT\t%s\t%s\t", opt->name, opt->arginfo ? opt->arginfo : "-");
	for (const char *c = opt->usage; *c; c++)   /* one line per option */
		printf(*c == '\n' ? "\\n" : *c == '\\' ? "\\\\" : "%c", *c);
	printf("\t%d\n", opt->has_arg);
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
	return ESPANK_NOT_AVAIL;
}

spank_err_t spank_setenv(spank_t sp, const char *var, const char *val, int overwrite)
{
	(void)sp; (void)var; (void)val; (void)overwrite;
	return ESPANK_NOT_AVAIL;
}

spank_err_t spank_unsetenv(spank_t sp, const char *var)
{
	(void)sp; (void)var;
	return ESPANK_NOT_AVAIL;
}

#if SPM_SPANK_HAS_PREPEND_ARGV   /* compat.h: 23.11+ */
/* 23.11+: spank_python.c's prepend_argv calls it */
spank_err_t spank_prepend_task_argv(spank_t sp, int argc, const char *argv[])
{
	(void)sp; (void)argc; (void)argv;
	return ESPANK_NOT_AVAIL;
}
#endif

int main(int argc, char **argv)
{
	slurm_spank_init(NULL, argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(sp_hooks) / sizeof(sp_hooks[0]); i++)
		if (hook_mask & (1u << sp_hooks[i].hook))
			printf("HOOK\t%s\n", sp_hooks[i].name);
	return 0;
}
