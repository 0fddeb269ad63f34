/* 50 sleeps of 2 ms take at least 100 ms; a zero sleep returns at once. */
#include "corpus.h"

int main(void)
{
	struct timespec z = { 0, 0 }, bad = { 0, 1000000000L };
	int64_t t0 = now_ns();

	for (int i = 0; i < 50; i++)
		sleep_ms(2);
	CHECK(now_ns() - t0 >= 100000000LL, "50 x 2 ms took under 100 ms");
	say("50 nanosleeps of 2 ms: at least 100 ms passed\n");
	CHECK(nanosleep(&z, NULL) == 0, "zero nanosleep");
	CHECK(nanosleep(&bad, NULL) == -1 && errno == EINVAL, "tv_nsec 1e9 accepted");
	say("nanosleep(0) returns 0; tv_nsec of 1e9 is EINVAL\n");
	ok();
}
