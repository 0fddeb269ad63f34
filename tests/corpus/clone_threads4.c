/* Four raw CLONE_THREAD threads at once, each ending with SYS_exit while
 * the others still run; the parent waits for every tid word to clear. */
#include "corpus.h"
#include <sched.h>

#define N 4
static char stacks[N][32 * 1024];
static volatile int ctid[N];
static volatile long counts[N];
static volatile int go;

static int child(void *arg)
{
	long i = (long)arg;

	while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE))
		sys3(SYS_sched_yield, 0, 0, 0);
	for (long k = 0; k < 20000 * (i + 1); k++)
		counts[i]++;
	return 0;
}

int main(void)
{
	unsigned long fl = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |
			   CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;

	for (long i = 0; i < N; i++) {
		long tid = raw_clone(fl, stacks[i] + sizeof(stacks[i]), (int *)&ctid[i], (int *)&ctid[i], 0, child, (void *)i);
		CHECK(tid > 0, "clone %ld", i);
		CHECK(ctid[i] == tid, "CLONE_PARENT_SETTID did not store the tid");
	}
	__atomic_store_n(&go, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < N; i++)
		futex_wait_tid(&ctid[i]);
	for (int i = 0; i < N; i++)
		CHECK(counts[i] == 20000 * (i + 1), "thread %d count %ld", i, counts[i]);
	say("4 raw threads with PARENT_SETTID and CHILD_CLEARTID all ran and exited\n");
	ok();
}
