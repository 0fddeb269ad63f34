/* timer_create with SIGEV_SIGNAL: a periodic timer delivers its sigval;
 * timer_getoverrun is readable; timer_delete stops it. */
#include "corpus.h"
#include <signal.h>

static volatile int count, val_ok = 1;
static void on_sig(int sig, siginfo_t *si, void *uc) { (void)sig; (void)uc; if (si->si_value.sival_int != 77 || si->si_code != SI_TIMER) val_ok = 0; count++; }

int main(void)
{
	struct sigaction sa = { 0 };
	struct sigevent sev = { 0 };
	struct itimerspec its = { { 0, 10000000L }, { 0, 10000000L } };
	timer_t tm;
	sigset_t s, old;

	sa.sa_sigaction = on_sig;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGRTMIN + 1, &sa, NULL);
	sigemptyset(&s);
	sigaddset(&s, SIGRTMIN + 1);
	sigprocmask(SIG_BLOCK, &s, &old);
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SIGRTMIN + 1;
	sev.sigev_value.sival_int = 77;
	CHECK(timer_create(CLOCK_MONOTONIC, &sev, &tm) == 0, "timer_create");
	CHECK(timer_settime(tm, 0, &its, NULL) == 0, "timer_settime");
	while (count < 5)
		sigsuspend(&old);
	CHECK(val_ok, "wrong si_value or si_code");
	CHECK(timer_getoverrun(tm) >= 0, "overrun");
	CHECK(timer_delete(tm) == 0, "timer_delete");
	say("POSIX timer: 5 signals carrying sival 77 and SI_TIMER\n");
	ok();
}
