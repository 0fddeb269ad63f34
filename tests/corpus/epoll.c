/* epoll over a pipe and an eventfd: level-triggered readiness, a timeout
 * with nothing ready, and edge-triggered reporting once per change. */
#include "corpus.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>

int main(void)
{
	struct epoll_event ev, out[4];
	int ep = epoll_create1(0), p[2], e = eventfd(0, 0);
	uint64_t one = 1;
	int64_t t0;

	CHECK(ep >= 0 && pipe(p) == 0 && e >= 0, "setup");
	ev.events = EPOLLIN;
	ev.data.u32 = 1;
	epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u32 = 2;
	epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev);
	t0 = now_ns();
	CHECK(epoll_wait(ep, out, 4, 50) == 0, "something ready");
	CHECK(now_ns() - t0 >= 50000000LL, "50 ms timeout returned early");
	say("nothing ready: epoll_wait timed out after at least 50 ms\n");
	(void)!write(p[1], "x", 1);
	for (int i = 0; i < 2; i++)
		CHECK(epoll_wait(ep, out, 4, 1000) == 1 && out[0].data.u32 == 1, "level-triggered pipe");
	say("level-triggered pipe reported while unread\n");
	(void)!write(e, &one, 8);
	int n = epoll_wait(ep, out, 4, 1000);
	CHECK(n == 2, "pipe and eventfd: %d", n);
	char c;
	(void)!read(p[0], &c, 1);
	CHECK(epoll_wait(ep, out, 4, 0) == 0, "edge-triggered eventfd reported twice");
	say("edge-triggered eventfd reported once\n");
	ok();
}
