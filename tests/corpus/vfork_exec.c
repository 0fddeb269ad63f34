/* vfork + execve of this program: the parent resumes after the exec, the
 * child sees its argv and environment, and its exit status comes back. */
#include "corpus.h"
#include <sys/wait.h>

int main(int argc, char **argv)
{
	char *cargv[] = { argv[0], "child", "x y", NULL };
	char *cenv[] = { "CORPUS_VAR=hello", NULL };
	pid_t pid;
	int st;

	if (argc == 3 && strcmp(argv[1], "child") == 0) {
		const char *v = getenv("CORPUS_VAR");
		return strcmp(argv[2], "x y") == 0 && v && strcmp(v, "hello") == 0 ? 7 : 1;
	}
	pid = vfork();
	if (pid == 0) {
		execve("/proc/self/exe", cargv, cenv);
		_exit(127);
	}
	CHECK(pid > 0, "vfork");
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 7, "status %#x", st);
	say("vfork+execve: child got its argv and environment, exited 7\n");
	ok();
}
