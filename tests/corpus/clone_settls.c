/* CLONE_SETTLS gives the raw thread its own FS base; CLONE_CHILD_SETTID
 * stores the tid in the child's word. */
#include "corpus.h"
#include <sched.h>

static char stack[32 * 1024];
static void *tls_block[16];
static volatile int ctid = -1, seen_tid_set; /* -1 until the child stores its tid */
static volatile void *seen_fs;

static int child(void *arg)
{
	void *fs;

	(void)arg;
	__asm__ volatile("mov %%fs:0, %0" : "=r"(fs));
	seen_fs = fs;
	seen_tid_set = ctid == (int)sys3(SYS_gettid, 0, 0, 0);
	return 0;
}

int main(void)
{
	void *mine;
	long tid;

	tls_block[0] = tls_block; /* x86-64 TLS ABI: %fs:0 points to itself */
	tid = raw_clone(CLONE_VM | CLONE_THREAD | CLONE_SIGHAND | CLONE_SETTLS | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID,
			stack + sizeof(stack), NULL, (int *)&ctid, (unsigned long)tls_block, child, NULL);
	CHECK(tid > 0, "clone");
	futex_wait_tid(&ctid);
	CHECK(seen_fs == (void *)tls_block, "child's %%fs:0 is not its TLS block");
	CHECK(seen_tid_set, "CLONE_CHILD_SETTID did not store the child's tid");
	__asm__ volatile("mov %%fs:0, %0" : "=r"(mine));
	CHECK(mine != (void *)tls_block, "the parent's FS base changed");
	say("CLONE_SETTLS: child saw its own TLS block; CHILD_SETTID stored its tid\n");
	ok();
}
