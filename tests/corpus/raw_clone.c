/* The issue-19 raw clone: CLONE_VM|CLONE_THREAD|CLONE_SIGHAND|
 * CLONE_CHILD_CLEARTID, no TLS; the thread ends with SYS_exit and the
 * kernel clears and futex-wakes the tid word the parent waits on. */
#include "corpus.h"
#include <sched.h>

static char stack[64 * 1024];
static volatile int ctid = -1;
static volatile long sum;

static int child(void *arg)
{
	for (long i = 1; i <= 100000; i++)
		sum += i;
	(void)arg;
	return 0;
}

int main(void)
{
	long tid = raw_clone(CLONE_VM | CLONE_THREAD | CLONE_SIGHAND | CLONE_CHILD_CLEARTID,
			     stack + sizeof(stack), NULL, (int *)&ctid, 0, child, NULL);

	CHECK(tid > 0, "clone returned %ld", tid);
	/* ctid is only written by the kernel at exit: -1 until then (no CHILD_SETTID). */
	futex_wait_tid(&ctid);
	CHECK(sum == 5000050000L, "sum %ld", sum);
	say("raw clone thread computed 5000050000 and its tid word was cleared at SYS_exit\n");
	ok();
}
