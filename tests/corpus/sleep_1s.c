/* nanosleep(1 s) lets at least 1 s of CLOCK_MONOTONIC pass, and not much
 * more (issue 19: under a recorder, guest time must follow real time). */
#include "corpus.h"

int main(void)
{
	struct timespec ts = { 1, 0 };
	int64_t t0 = now_ns(), d;

	CHECK(nanosleep(&ts, NULL) == 0, "nanosleep");
	d = now_ns() - t0;
	CHECK(d >= 1000000000LL, "slept %lld ns, less than 1 s", (long long)d);
	CHECK(d < 3000000000LL, "slept %lld ns, more than 3 s", (long long)d);
	say("nanosleep(1 s): between 1 s and 3 s of CLOCK_MONOTONIC passed\n");
	ok();
}
