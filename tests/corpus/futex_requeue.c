/* FUTEX_CMP_REQUEUE: of 4 waiters on A, one is woken and three are moved
 * to B; waking B wakes exactly those three. */
#include "corpus.h"
#include <pthread.h>

#define N 4
static volatile int a, b, woke, waiting;

static void *waiter(void *arg)
{
	(void)arg;
	__atomic_add_fetch(&waiting, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&a, __ATOMIC_SEQ_CST) == 0)
		syscall(SYS_futex, &a, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	__atomic_add_fetch(&woke, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

int main(void)
{
	pthread_t t[N];
	long woken = 0, moved = 0, n;

	for (int i = 0; i < N; i++)
		pthread_create(&t[i], NULL, waiter, NULL);
	/* Wait until all 4 sleep in the kernel on A: a requeue of A onto
	 * itself moves nobody anywhere and returns how many are queued. */
	for (int tries = 0;; tries++) {
		CHECK(tries < 10000, "the waiters never all slept on A");
		if (waiting == N && syscall(SYS_futex, &a, FUTEX_CMP_REQUEUE_PRIVATE, 0, (void *)(long)N, &a, 0) == N)
			break;
		sleep_ms(1);
	}
	/* The requeued ones wait on B but re-check A, which stays 0 until
	 * they are woken from B: set A first so that a wake from either
	 * futex ends their loop. */
	a = 1;
	n = syscall(SYS_futex, &a, FUTEX_CMP_REQUEUE_PRIVATE, 1, (void *)(long)(N - 1), &b, 1);
	CHECK(n == N, "CMP_REQUEUE returned %ld, want %d (woken + requeued)", n, N);
	woken = 1;
	moved = N - 1;
	n = syscall(SYS_futex, &b, FUTEX_WAKE_PRIVATE, N, NULL, NULL, 0);
	CHECK(n == moved, "waking B woke %ld", n);
	for (int i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	CHECK(woke == N, "woke %d", woke);
	say("CMP_REQUEUE: %ld woken on A, %ld requeued to B and woken there\n", woken, moved);
	CHECK(syscall(SYS_futex, &a, FUTEX_CMP_REQUEUE_PRIVATE, 1, (void *)1L, &b, 0) == -1 && errno == EAGAIN, "cmp mismatch");
	say("CMP_REQUEUE with a stale value: EAGAIN\n");
	ok();
}
