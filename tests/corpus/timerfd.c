/* timerfd: a periodic monotonic timer counts expirations; a one-shot
 * absolute timer fires once; a nonblocking read before expiry is EAGAIN. */
#include "corpus.h"
#include <poll.h>
#include <sys/timerfd.h>

int main(void)
{
	struct itimerspec its = { { 0, 10000000L }, { 0, 10000000L } }, cur;
	uint64_t exp, total = 0;
	int fd = timerfd_create(CLOCK_MONOTONIC, 0);
	int64_t t0 = now_ns();

	CHECK(fd >= 0, "timerfd_create");
	CHECK(timerfd_settime(fd, 0, &its, NULL) == 0, "settime");
	while (total < 10) {
		CHECK(read(fd, &exp, 8) == 8 && exp >= 1, "read");
		total += exp;
	}
	CHECK(now_ns() - t0 >= 100000000LL, "10 expirations of 10 ms in under 100 ms");
	say("periodic 10 ms timerfd: 10 expirations, at least 100 ms\n");
	memset(&its, 0, sizeof(its));
	timerfd_settime(fd, 0, &its, NULL);
	close(fd);

	fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	clock_gettime(CLOCK_MONOTONIC, &its.it_value);
	its.it_value.tv_sec += 1;
	its.it_value.tv_nsec = 0;
	CHECK(timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, NULL) == 0, "abs settime");
	CHECK(read(fd, &exp, 8) == -1 && errno == EAGAIN, "read before expiry");
	timerfd_gettime(fd, &cur);
	CHECK(cur.it_value.tv_sec <= 1, "remaining > 1 s");
	say("absolute one-shot: EAGAIN before it fires\n");
	struct pollfd p = { fd, POLLIN, 0 };
	CHECK(poll(&p, 1, 5000) == 1, "poll did not see the expiry within 5 s");
	CHECK(read(fd, &exp, 8) == 8 && exp == 1, "one-shot expirations");
	say("absolute one-shot: poll woke, one expiration\n");
	ok();
}
