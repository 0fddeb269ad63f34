/* posix_spawn (musl: clone with CLONE_VM|CLONE_VFORK) runs this program
 * with file actions that redirect its stdout into a pipe. */
#include "corpus.h"
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv)
{
	posix_spawn_file_actions_t fa;
	char *cargv[] = { argv[0], "child", NULL };
	char buf[64] = { 0 };
	int p[2], st;
	pid_t pid;

	if (argc == 2) {
		(void)!write(1, "from the spawned child", 22);
		return 4;
	}
	CHECK(pipe(p) == 0, "pipe");
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_addclose(&fa, p[0]);
	CHECK(posix_spawn(&pid, "/proc/self/exe", &fa, NULL, cargv, environ) == 0, "posix_spawn");
	close(p[1]);
	for (size_t n = 0; n < sizeof(buf) - 1;) {
		ssize_t r = read(p[0], buf + n, sizeof(buf) - 1 - n);
		if (r <= 0)
			break;
		n += r;
	}
	CHECK(waitpid(pid, &st, 0) == pid && WEXITSTATUS(st) == 4, "status %#x", st);
	CHECK(strcmp(buf, "from the spawned child") == 0, "read %s", buf);
	say("posix_spawn: child's stdout came through the pipe, exit 4\n");
	ok();
}
