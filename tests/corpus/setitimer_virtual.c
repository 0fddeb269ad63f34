/* ITIMER_VIRTUAL counts user CPU time: a user-mode loop must see SIGVTALRM. */
#include "corpus.h"
#include <signal.h>
#include <sys/time.h>

static volatile sig_atomic_t fired;
static void on_vt(int sig) { (void)sig; fired = 1; }

int main(void)
{
	struct itimerval it = { { 0, 0 }, { 0, 50000 } };
	volatile uint64_t i;

	signal(SIGVTALRM, on_vt);
	CHECK(setitimer(ITIMER_VIRTUAL, &it, NULL) == 0, "setitimer");
	for (i = 0; !fired && i < (1ULL << 33); i++)
		;
	CHECK(fired, "SIGVTALRM never came");
	say("SIGVTALRM after 50 ms of user CPU time\n");
	ok();
}
