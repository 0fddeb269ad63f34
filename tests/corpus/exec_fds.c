/* execve keeps an fd without FD_CLOEXEC and closes one with it; the pid
 * stays the same across exec. */
#include "corpus.h"
#include <fcntl.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	if (argc == 4) { /* after exec: argv = self, keep, cloexec, pid */
		int keep = atoi(argv[1]), cl = atoi(argv[2]);
		CHECK(fcntl(keep, F_GETFD) >= 0, "fd without CLOEXEC lost");
		CHECK(fcntl(cl, F_GETFD) == -1 && errno == EBADF, "CLOEXEC fd survived");
		CHECK(getpid() == atoi(argv[3]), "pid changed across exec");
		say("after exec: plain fd kept, CLOEXEC fd closed, same pid\n");
		ok();
	}
	pid_t pid = fork();
	if (pid == 0) {
		char a[16], b[16], c[16];
		int keep = open("/dev/null", O_RDONLY), cl = open("/dev/null", O_RDONLY | O_CLOEXEC);
		snprintf(a, sizeof(a), "%d", keep);
		snprintf(b, sizeof(b), "%d", cl);
		snprintf(c, sizeof(c), "%d", getpid());
		char *nargv[] = { argv[0], a, b, c, NULL };
		execv("/proc/self/exe", nargv);
		_exit(127);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "exec'd child failed %#x", st);
	return 0; /* the child printed the ok line */
}
