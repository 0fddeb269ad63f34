/*
 * spinflag [ROUNDS]: two threads hand a token back and forth ROUNDS times
 * (default 50) by spinning in user mode on a shared flag: no system call,
 * no PAUSE, nothing in the loop that leaves the CPU. It is the guest a
 * recorder without an instruction counter finds hardest (issue 11): a
 * vCPU spinning here makes no exit while the thread it waits for may sit
 * on the other vCPU, which must get to run. The loop keeps nothing that
 * changes from one pass to the next (a counter would), so the spinning
 * vCPU's state repeats: a recorder may stop it at any pass.
 * Prints "spinflag: rounds=<ROUNDS> ok"; exits 0 iff every round was
 * seen in order by both threads.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static long rounds = 50;
static volatile long turn;   /* whose turn: even = main, odd = worker */
static int bad;

static void play(int me)
{
	for (long r = 0; r < rounds; r++) {
		long want = 2 * r + me;

		while (turn != want)
			;
		if (turn != want)
			bad = 1;
		turn = want + 1;
	}
}

static void *worker(void *arg)
{
	(void)arg;
	play(1);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t;

	if (argc > 1)
		rounds = atol(argv[1]);
	if (pthread_create(&t, NULL, worker, NULL) != 0) {
		perror("pthread_create");
		return 2;
	}
	play(0);
	pthread_join(t, NULL);
	if (bad || turn != 2 * rounds) {
		printf("spinflag: rounds=%ld FAILED at turn %ld\n", rounds, turn);
		return 1;
	}
	printf("spinflag: rounds=%ld ok\n", rounds);
	return 0;
}
