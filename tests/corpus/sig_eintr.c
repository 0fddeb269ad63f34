/* A signal during a blocking read: EINTR without SA_RESTART; with
 * SA_RESTART the read restarts and completes with the data the handler
 * wrote. */
#include "corpus.h"
#include <signal.h>
#include <sys/time.h>

static int pfd[2];
static volatile int handled;

static void on_alarm(int sig) { (void)sig; handled++; }
static void on_alarm_write(int sig) { (void)sig; handled++; (void)!write(pfd[1], "x", 1); }

int main(void)
{
	struct sigaction sa = { 0 };
	struct itimerval it = { { 0, 0 }, { 0, 50000 } };
	char c;
	ssize_t r;

	CHECK(pipe(pfd) == 0, "pipe");
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
	r = read(pfd[0], &c, 1);
	CHECK(r == -1 && errno == EINTR && handled == 1, "read returned %zd", r);
	say("read on an empty pipe: EINTR after the handler ran\n");

	sa.sa_handler = on_alarm_write;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
	r = read(pfd[0], &c, 1);
	CHECK(r == 1 && c == 'x' && handled == 2, "restarted read returned %zd", r);
	say("with SA_RESTART: the read restarted and got the handler's byte\n");
	ok();
}
