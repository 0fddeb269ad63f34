/* eventfd: counter semantics, EFD_SEMAPHORE, EAGAIN when empty with
 * EFD_NONBLOCK, and a thread woken from poll by a write. */
#include "corpus.h"
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>

static int efd;

static void *poster(void *arg)
{
	uint64_t one = 1;

	(void)arg;
	for (int i = 0; i < 200; i++)
		if (write(efd, &one, 8) != 8)
			break;
	return NULL;
}

int main(void)
{
	uint64_t v, total = 0;
	pthread_t t;
	int s;

	efd = eventfd(0, EFD_NONBLOCK);
	CHECK(efd >= 0, "eventfd");
	CHECK(read(efd, &v, 8) == -1 && errno == EAGAIN, "empty read");
	v = 3;
	write(efd, &v, 8);
	v = 4;
	write(efd, &v, 8);
	CHECK(read(efd, &v, 8) == 8 && v == 7, "sum %llu", (unsigned long long)v);
	say("eventfd: writes of 3 and 4 read back as 7; empty read EAGAIN\n");

	pthread_create(&t, NULL, poster, NULL);
	while (total < 200) {
		struct pollfd p = { efd, POLLIN, 0 };
		CHECK(poll(&p, 1, 10000) == 1, "poll timed out at %llu", (unsigned long long)total);
		if (read(efd, &v, 8) == 8)
			total += v;
	}
	pthread_join(t, NULL);
	CHECK(total == 200, "total");
	say("200 posts from a thread, all collected through poll\n");

	s = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
	for (int i = 0; i < 3; i++)
		CHECK(read(s, &v, 8) == 8 && v == 1, "semaphore read");
	CHECK(read(s, &v, 8) == -1 && errno == EAGAIN, "semaphore empty");
	say("EFD_SEMAPHORE: three reads of 1, then EAGAIN\n");
	ok();
}
