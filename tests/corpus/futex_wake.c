/* Futex ping-pong: two threads hand a token back and forth 100 times with
 * FUTEX_WAIT_PRIVATE/FUTEX_WAKE_PRIVATE. */
#include "corpus.h"
#include <pthread.h>

static volatile int word; /* whose turn: 0 main, 1 worker */
#define ROUNDS 100

static void wait_for(int v)
{
	int cur;

	while ((cur = __atomic_load_n(&word, __ATOMIC_ACQUIRE)) != v)
		syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, cur, NULL, NULL, 0);
}

static void pass(int v)
{
	__atomic_store_n(&word, v, __ATOMIC_RELEASE);
	syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *worker(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		wait_for(1);
		pass(0);
	}
	return NULL;
}

int main(void)
{
	pthread_t t;
	struct timespec to = { 0, 20000000L };
	int v = 5;

	pthread_create(&t, NULL, worker, NULL);
	for (int i = 0; i < ROUNDS; i++) {
		pass(1);
		wait_for(0);
	}
	pthread_join(t, NULL);
	say("100 futex wait/wake round trips\n");
	CHECK(syscall(SYS_futex, &v, FUTEX_WAIT_PRIVATE, 4, NULL, NULL, 0) == -1 && errno == EAGAIN, "value mismatch");
	CHECK(syscall(SYS_futex, &v, FUTEX_WAIT_PRIVATE, 5, &to, NULL, 0) == -1 && errno == ETIMEDOUT, "timeout");
	CHECK(syscall(SYS_futex, &v, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0) == 0, "wake nobody");
	say("FUTEX_WAIT: EAGAIN on a changed value, ETIMEDOUT after 20 ms; wake of nobody is 0\n");
	ok();
}
