/* CLONE_VM without CLONE_THREAD: a separate process sharing memory, with
 * SIGCHLD as exit signal (waitpid) and with no exit signal (__WALL). */
#include "corpus.h"
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

static char stack[32 * 1024];
static volatile long shared;

static int child(void *arg)
{
	shared = (long)arg;
	return 9;
}

int main(void)
{
	int st;
	long pid;

	pid = raw_clone(CLONE_VM | SIGCHLD, stack + sizeof(stack), NULL, NULL, 0, child, (void *)1234);
	CHECK(pid > 0, "clone");
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 9, "waitpid status %#x", st);
	CHECK(shared == 1234, "write not shared");
	say("CLONE_VM|SIGCHLD child: wrote shared memory, exit 9 via waitpid\n");

	pid = raw_clone(CLONE_VM, stack + sizeof(stack), NULL, NULL, 0, child, (void *)5678);
	CHECK(pid > 0, "clone");
	CHECK(waitpid(pid, &st, 0) == -1 && errno == ECHILD, "plain waitpid saw a clone child");
	CHECK(waitpid(pid, &st, __WALL) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 9, "__WALL status %#x", st);
	CHECK(shared == 5678, "write not shared");
	say("CLONE_VM child with no exit signal: only __WALL reaps it\n");
	ok();
}
