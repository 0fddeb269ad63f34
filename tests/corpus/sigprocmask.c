/* A blocked signal stays pending and is delivered when unblocked; standard
 * signals do not queue, realtime ones queue in order. */
#include "corpus.h"
#include <signal.h>

static volatile int usr1, order[8], n;

static void on_usr1(int sig) { (void)sig; usr1++; }
static void on_rt(int sig, siginfo_t *si, void *uc) { (void)sig; (void)uc; if (n < 8) order[n++] = si->si_value.sival_int; }

int main(void)
{
	sigset_t s, pend;
	struct sigaction sa = { 0 };

	signal(SIGUSR1, on_usr1);
	sa.sa_sigaction = on_rt;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGRTMIN, &sa, NULL);

	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	sigaddset(&s, SIGRTMIN);
	sigprocmask(SIG_BLOCK, &s, NULL);
	raise(SIGUSR1);
	raise(SIGUSR1);
	for (int i = 1; i <= 3; i++) {
		union sigval v = { .sival_int = i };
		CHECK(sigqueue(getpid(), SIGRTMIN, v) == 0, "sigqueue");
	}
	CHECK(usr1 == 0 && n == 0, "a blocked signal was delivered");
	sigpending(&pend);
	CHECK(sigismember(&pend, SIGUSR1) && sigismember(&pend, SIGRTMIN), "not pending");
	say("blocked SIGUSR1 and SIGRTMIN are pending, not delivered\n");
	sigprocmask(SIG_UNBLOCK, &s, NULL);
	CHECK(usr1 == 1, "SIGUSR1 delivered %d times", usr1);
	CHECK(n == 3 && order[0] == 1 && order[1] == 2 && order[2] == 3, "realtime order wrong (%d delivered)", n);
	say("on unblock: SIGUSR1 once, SIGRTMIN 3 times in order 1 2 3\n");
	ok();
}
