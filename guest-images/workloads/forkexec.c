/*
 * forkexec: many short processes (issue 18's sync-heavy set; a build
 * system or a shell script in miniature).  The parent starts CHILDREN
 * children, at most THREADS at a time; each is fork + execve of this
 * program (/proc/self/exe) with "--child K", which computes a hash of K
 * and exits with its low 6 bits.  The parent adds up the exit statuses:
 * the same for every thread count, checked against a serial computation.
 *
 *   tiny: 40 children    small: 400 children
 */
#include <sys/wait.h>
#include <unistd.h>

#include "wl.h"

static int child_status(uint64_t k)
{
	uint64_t s = k;
	for (int i = 0; i < 1000; i++)
		wl_splitmix64(&s);
	return (int)(s & 0x3f); /* 0-63: 127 means the exec failed */
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--child") == 0)
		return child_status(strtoull(argv[2], NULL, 10));
	struct wl_args a = wl_parse_args(argc, argv);
	long children = a.size == WL_TINY ? 40 : 400;
	long started = 0, running = 0, reaped = 0, sum = 0, want = 0;

	while (reaped < children) {
		if (started < children && running < a.threads) {
			char arg[32];
			snprintf(arg, sizeof arg, "%ld", started);
			pid_t pid = fork();
			if (pid < 0) {
				perror("forkexec: fork");
				return 1;
			}
			if (pid == 0) {
				char *cargv[] = { argv[0], "--child", arg, NULL };
				char *envp[] = { NULL };
				execve("/proc/self/exe", cargv, envp);
				perror("forkexec: execve /proc/self/exe");
				_exit(127);
			}
			started++;
			running++;
			continue;
		}
		int status;
		if (wait(&status) < 0) {
			perror("forkexec: wait");
			return 1;
		}
		running--;
		reaped++;
		if (!WIFEXITED(status) || WEXITSTATUS(status) == 127) {
			fprintf(stderr, "forkexec: a child ended with status %#x\n", status);
			return 1;
		}
		sum += WEXITSTATUS(status);
	}
	for (long k = 0; k < children; k++)
		want += child_status((uint64_t)k);
	int ok = sum == want;
	if (!ok)
		fprintf(stderr, "forkexec: status sum %ld want %ld\n", sum, want);
	return WL_FINISH(ok, "forkexec", a, "children=%ld sum=%ld", children, sum);
}
