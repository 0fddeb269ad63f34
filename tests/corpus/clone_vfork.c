/* CLONE_VM|CLONE_VFORK: the parent is suspended until the child exits. */
#include "corpus.h"
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

static char stack[32 * 1024];
static volatile int step;

static int child(void *arg)
{
	(void)arg;
	/* Give the parent every chance to run if it were not suspended. */
	for (int i = 0; i < 100; i++)
		sys3(SYS_sched_yield, 0, 0, 0);
	step = 1;
	return 0;
}

int main(void)
{
	int st;
	long pid = raw_clone(CLONE_VM | CLONE_VFORK | SIGCHLD, stack + sizeof(stack), NULL, NULL, 0, child, NULL);

	CHECK(pid > 0, "clone");
	CHECK(step == 1, "the parent ran before the vfork child exited");
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "waitpid");
	say("CLONE_VFORK: parent resumed only after the child's exit\n");
	ok();
}
