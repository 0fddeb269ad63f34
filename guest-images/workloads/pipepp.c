/*
 * pipepp: pipe ping-pong between two processes (issue 18's sync-heavy
 * set).  The parent forks a child; they pass an 8-byte value back and
 * forth over two pipes ROUNDS times, the child advancing it with
 * splitmix64 each time: every round is a write, a blocking read and a
 * wake-up in each process.  THREADS is accepted for the common command
 * line and printed; there are always two processes.
 *
 *   tiny: 2000 rounds    small: 20000 rounds
 */
#include <sys/wait.h>
#include <unistd.h>

#include "wl.h"

static void xfer(int fd, uint64_t *v, int out)
{
	ssize_t n = out ? write(fd, v, sizeof *v) : read(fd, v, sizeof *v);
	if (n != (ssize_t)sizeof *v) {
		perror(out ? "pipepp: write" : "pipepp: read");
		exit(1);
	}
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse_args(argc, argv);
	long rounds = a.size == WL_TINY ? 2000 : 20000;
	int down[2], up[2];
	uint64_t v = 7, want = 7;

	if (pipe(down) != 0 || pipe(up) != 0) {
		perror("pipepp: pipe");
		return 1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("pipepp: fork");
		return 1;
	}
	if (pid == 0) {
		close(down[1]);
		close(up[0]);
		for (long i = 0; i < rounds; i++) {
			xfer(down[0], &v, 0);
			wl_splitmix64(&v);
			xfer(up[1], &v, 1);
		}
		_exit(0);
	}
	close(down[0]);
	close(up[1]);
	for (long i = 0; i < rounds; i++) {
		xfer(down[1], &v, 1);
		xfer(up[0], &v, 0);
	}
	int status;
	if (waitpid(pid, &status, 0) != pid) {
		perror("pipepp: waitpid");
		return 1;
	}
	for (long i = 0; i < rounds; i++)
		wl_splitmix64(&want);
	int ok = v == want && WIFEXITED(status) && WEXITSTATUS(status) == 0;
	if (!ok)
		fprintf(stderr, "pipepp: value %016llx want %016llx, child status %#x\n",
			(unsigned long long)v, (unsigned long long)want, status);
	return WL_FINISH(ok, "pipepp", a, "rounds=%ld value=%016llx", rounds, (unsigned long long)v);
}
