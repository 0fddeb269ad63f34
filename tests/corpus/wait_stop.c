/* waitpid with WNOHANG, WUNTRACED and WCONTINUED; waitid with WNOWAIT
 * leaves the child waitable. */
#include "corpus.h"
#include <signal.h>
#include <sys/wait.h>

int main(void)
{
	int p[2], st;
	siginfo_t si;
	char c;
	pid_t pid;

	CHECK(pipe(p) == 0, "pipe");
	pid = fork();
	if (pid == 0) {
		close(p[1]);
		(void)!read(p[0], &c, 1);
		_exit(8);
	}
	close(p[0]);
	CHECK(waitpid(pid, &st, WNOHANG) == 0, "WNOHANG on a running child");
	say("WNOHANG on a running child: 0\n");
	kill(pid, SIGSTOP);
	CHECK(waitpid(pid, &st, WUNTRACED) == pid && WIFSTOPPED(st) && WSTOPSIG(st) == SIGSTOP, "stopped %#x", st);
	kill(pid, SIGCONT);
	CHECK(waitpid(pid, &st, WCONTINUED) == pid && WIFCONTINUED(st), "continued %#x", st);
	say("SIGSTOP/SIGCONT seen by WUNTRACED and WCONTINUED\n");
	(void)!write(p[1], "g", 1);
	CHECK(waitid(P_PID, pid, &si, WEXITED | WNOWAIT) == 0 && si.si_pid == pid && si.si_status == 8, "waitid");
	CHECK(waitpid(pid, &st, 0) == pid && WEXITSTATUS(st) == 8, "reap after WNOWAIT");
	say("waitid WNOWAIT then waitpid: both see exit 8\n");
	ok();
}
