/* Two pipes between two threads: 200 request/response round trips, and a
 * nonblocking read on an empty pipe is EAGAIN. */
#include "corpus.h"
#include <fcntl.h>
#include <pthread.h>

static int req[2], resp[2];

static void *server(void *arg)
{
	uint32_t v;

	(void)arg;
	while (read(req[0], &v, 4) == 4) {
		v = v * 2 + 1;
		if (write(resp[1], &v, 4) != 4)
			break;
	}
	return NULL;
}

int main(void)
{
	pthread_t t;
	uint32_t v;
	char c;

	CHECK(pipe(req) == 0 && pipe(resp) == 0, "pipe");
	pthread_create(&t, NULL, server, NULL);
	for (uint32_t i = 0; i < 200; i++) {
		CHECK(write(req[1], &i, 4) == 4, "write");
		CHECK(read(resp[0], &v, 4) == 4 && v == i * 2 + 1, "reply %u", v);
	}
	close(req[1]);
	pthread_join(t, NULL);
	say("200 request/response round trips between threads over pipes\n");
	fcntl(resp[0], F_SETFL, O_NONBLOCK);
	CHECK(read(resp[0], &c, 1) == -1 && errno == EAGAIN, "nonblocking read");
	say("nonblocking read of an empty pipe: EAGAIN\n");
	ok();
}
