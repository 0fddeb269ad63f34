/* alarm(1) must interrupt a loop that never leaves user mode (issue 19:
 * the serialized recorder never delivered it). The loop is bounded by an
 * iteration count far beyond what 1 s takes natively, and fails if the
 * signal never comes. */
#include "corpus.h"
#include <signal.h>

static volatile sig_atomic_t fired;

static void on_alarm(int sig) { (void)sig; fired = 1; }

int main(void)
{
	volatile uint64_t i;
	const uint64_t bound = 1ULL << 33; /* several seconds natively */

	signal(SIGALRM, on_alarm);
	alarm(1);
	for (i = 0; !fired && i < bound; i++)
		;
	CHECK(fired, "SIGALRM never came in %llu iterations of a user-mode loop", (unsigned long long)bound);
	say("SIGALRM interrupted a user-mode loop\n");
	ok();
}
