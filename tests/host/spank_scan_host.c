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

/* each option registered: one line, OPT name arginfo usage has_arg */
static void _print_option(struct spank_option *opt)
{
	printf("OPT\t%s\t%s\t", opt->name, opt->arginfo ? opt->arginfo : "-");
	for (const char *c = opt->usage; *c; c++)   /* one line per option */
		printf(*c == '\n' ? "\\n" : *c == '\\' ? "\\\\" : "%c", *c);
	printf("\t%d\n", opt->has_arg);
}

#define SPANK_STUB_CONTEXT S_CTX_LOCAL
#define SPANK_STUB_GETENV_RC ESPANK_NOT_AVAIL
#define SPANK_STUB_SETENV_RC ESPANK_NOT_AVAIL
#define SPANK_STUB_REGISTER(opt) _print_option(opt)
#include "spank_stubs.h"

int main(int argc, char **argv)
{
	slurm_spank_init(NULL, argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(sp_hooks) / sizeof(sp_hooks[0]); i++)
		if (hook_mask & (1u << sp_hooks[i].hook))
			printf("HOOK\t%s\n", sp_hooks[i].name);
	return 0;
}
