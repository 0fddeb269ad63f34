/* CLONE_FILES without CLONE_VM: the child's open() shows up in the parent's
 * fd table, its memory writes do not. */
#include "corpus.h"
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

static char stack[32 * 1024];
static volatile int childfd = -1, mem = 0;

static int child(void *arg)
{
	(void)arg;
	childfd = (int)sys3(SYS_open, (long)"/dev/null", O_RDONLY, 0);
	mem = 1;
	return childfd >= 0 ? childfd : 255;
}

int main(void)
{
	int st, fd;
	long pid = raw_clone(CLONE_FILES | SIGCHLD, stack + sizeof(stack), NULL, NULL, 0, child, NULL);

	CHECK(pid > 0, "clone");
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) != 255, "waitpid");
	fd = WEXITSTATUS(st);
	CHECK(mem == 0 && childfd == -1, "memory shared without CLONE_VM");
	CHECK(fcntl(fd, F_GETFD) >= 0, "fd %d opened by the child is not in the parent's table", fd);
	close(fd);
	say("CLONE_FILES: the child's fd is open in the parent, memory is not shared\n");
	ok();
}
