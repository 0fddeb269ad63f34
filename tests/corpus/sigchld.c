/* SIGCHLD with SA_SIGINFO names the exited child and its status. */
#include "corpus.h"
#include <signal.h>
#include <sys/wait.h>

static volatile pid_t who;
static volatile int code, status_;

static void on_chld(int sig, siginfo_t *si, void *uc) { (void)sig; (void)uc; who = si->si_pid; code = si->si_code; status_ = si->si_status; }

int main(void)
{
	struct sigaction sa = { 0 };
	sigset_t s, old;
	pid_t pid;
	int st;

	sa.sa_sigaction = on_chld;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGCHLD, &sa, NULL);
	sigemptyset(&s);
	sigaddset(&s, SIGCHLD);
	sigprocmask(SIG_BLOCK, &s, &old);
	pid = fork();
	if (pid == 0)
		_exit(42);
	while (!who)
		sigsuspend(&old);
	CHECK(who == pid && code == CLD_EXITED && status_ == 42, "siginfo pid/code/status");
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 42, "waitpid");
	say("SIGCHLD: si_pid is the child, CLD_EXITED, status 42\n");
	ok();
}
