/* A thread keeps reading a mapping while the main thread unmaps it: the
 * reader gets SIGSEGV at the unmapped address and no other harm. */
#include "corpus.h"
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>

static volatile char *map;
static volatile int started, faulted_here;
static sigjmp_buf jb;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig; (void)uc;
	faulted_here = (char *)si->si_addr >= (char *)map && (char *)si->si_addr < (char *)map + (1 << 16);
	siglongjmp(jb, 1);
}

static void *reader(void *arg)
{
	volatile long sum = 0;

	(void)arg;
	if (sigsetjmp(jb, 1) == 0) {
		for (long i = 0;; i++) {
			sum += map[(i * 4096) % (1 << 16)];
			started = 1;
		}
	}
	return NULL;
}

int main(void)
{
	struct sigaction sa = { 0 };
	pthread_t t;

	map = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(map != MAP_FAILED, "mmap");
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, NULL);
	pthread_create(&t, NULL, reader, NULL);
	while (!started)
		sched_yield();
	CHECK(munmap((void *)map, 1 << 16) == 0, "munmap");
	pthread_join(t, NULL);
	CHECK(faulted_here, "the reader's fault was not in the unmapped range");
	say("a reader of a mapping being unmapped got SIGSEGV in that range\n");
	ok();
}
