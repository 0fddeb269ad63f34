/*
 * race [N]: two threads increment shared counters N times each (default
 * 200000): one with atomic adds, one with plain racy read-modify-writes,
 * and each records, every 1024 iterations, its id in a shared trace. The
 * printed racy total and trace hash depend on how the threads interleave,
 * so a recording and its replay must print the same line.
 * Prints "race: worker=<address>" first (a debugger's breakpoint in the
 * worker: the binary is stripped), then "race: atomic=<2N> racy=<value>
 * trace=<hash>"; exits 0 iff the atomic counter is exact.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static long n = 200000;
static long atomic_counter;
static volatile long racy_counter;
static unsigned char trace[4096];
static long trace_len;

/*
 * The loop and the worker's entry are on pages of their own (aligned):
 * a debugger without an instruction counter traps every instruction run
 * from the page that holds a breakpoint (samsara's page traps, README
 * "Debugging a replay with gdb"), so a breakpoint on worker does not make
 * the whole loop crawl.
 */
__attribute__((noinline, aligned(4096))) static void count(long id)
{
	for (long i = 0; i < n; i++) {
		__atomic_fetch_add(&atomic_counter, 1, __ATOMIC_RELAXED);
		racy_counter = racy_counter + 1;
		if ((i & 1023) == 0) {
			long at = __atomic_fetch_add(&trace_len, 1, __ATOMIC_RELAXED);
			if (at < (long)sizeof(trace))
				trace[at] = (unsigned char)id;
		}
	}
}

__attribute__((noinline, aligned(4096))) static void *worker(void *arg)
{
	count((long)arg);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t[2];
	unsigned long h = 14695981039346656037UL;

	if (argc > 1)
		n = atol(argv[1]);
	printf("race: worker=%p\n", (void *)worker);
	for (long i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, worker, (void *)(i + 1));
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (long i = 0; i < trace_len && i < (long)sizeof(trace); i++)
		h = (h ^ trace[i]) * 1099511628211UL;
	printf("race: atomic=%ld racy=%ld trace=%016lx\n", atomic_counter, racy_counter, h);
	return atomic_counter == 2 * n ? 0 : 1;
}
