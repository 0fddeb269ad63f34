/* CPU affinity: pinned to the first allowed CPU, then the last, a thread
 * runs there (sched_getcpu); a set with no CPU is EINVAL. */
#include "corpus.h"
#include <sched.h>

int main(void)
{
	cpu_set_t all, one;
	int first = -1, last = -1;

	CHECK(sched_getaffinity(0, sizeof(all), &all) == 0 && CPU_COUNT(&all) >= 1, "getaffinity");
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &all)) {
			if (first < 0)
				first = c;
			last = c;
		}
	for (int k = 0; k < 2; k++) {
		int cpu = k ? last : first;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		CHECK(sched_setaffinity(0, sizeof(one), &one) == 0, "setaffinity %d", cpu);
		for (int i = 0; i < 100; i++) {
			sched_yield();
			CHECK(sched_getcpu() == cpu, "running on %d, pinned to %d", sched_getcpu(), cpu);
		}
	}
	say("pinned to the first and then the last allowed CPU: ran there\n");
	CPU_ZERO(&one);
	CHECK(sched_setaffinity(0, sizeof(one), &one) == -1 && errno == EINVAL, "empty set");
	CHECK(sched_setaffinity(0, sizeof(all), &all) == 0, "restore");
	say("an empty CPU set: EINVAL\n");
	ok();
}
