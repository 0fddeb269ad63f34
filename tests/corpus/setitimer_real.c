/* A periodic ITIMER_REAL delivers SIGALRM repeatedly; sigsuspend wakes for each. */
#include "corpus.h"
#include <signal.h>
#include <sys/time.h>

static volatile sig_atomic_t ticks;
static void on_alarm(int sig) { (void)sig; ticks++; }

int main(void)
{
	struct itimerval it = { { 0, 20000 }, { 0, 20000 } }, off = { { 0, 0 }, { 0, 0 } };
	sigset_t block, old;
	int64_t t0 = now_ns();

	signal(SIGALRM, on_alarm);
	sigemptyset(&block);
	sigaddset(&block, SIGALRM);
	sigprocmask(SIG_BLOCK, &block, &old);
	CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0, "setitimer");
	while (ticks < 5)
		sigsuspend(&old);
	setitimer(ITIMER_REAL, &off, NULL);
	CHECK(now_ns() - t0 >= 80000000, "5 ticks of 20 ms came in under 80 ms");
	say("5 SIGALRM from a 20 ms ITIMER_REAL, at least 80 ms apart in total\n");
	ok();
}
