/* A grandchild whose parent exits is reparented to the subreaper (this
 * process, PR_SET_CHILD_SUBREAPER), which then reaps it. */
#include "corpus.h"
#include <sys/prctl.h>
#include <sys/wait.h>

int main(void)
{
	int p[2], st;
	pid_t me = getpid(), child, gc = 0, w;
	char c;

	CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0, "subreaper");
	CHECK(pipe(p) == 0, "pipe");
	child = fork();
	if (child == 0) {
		pid_t g = fork();
		if (g == 0) {
			close(p[0]);
			while (getppid() != me)
				sleep_ms(1);
			(void)!write(p[1], "r", 1);
			_exit(getppid() == me ? 21 : 1);
		}
		(void)!write(p[1], &g, sizeof(g));
		_exit(20);
	}
	close(p[1]);
	CHECK(read(p[0], &gc, sizeof(gc)) == sizeof(gc), "grandchild pid");
	CHECK(waitpid(child, &st, 0) == child && WEXITSTATUS(st) == 20, "child");
	CHECK(read(p[0], &c, 1) == 1, "the grandchild never saw its new parent");
	w = waitpid(-1, &st, 0);
	CHECK(w == gc && WEXITSTATUS(st) == 21, "reaped %d status %#x", w, st);
	say("orphaned grandchild reparented to the subreaper and reaped (status 21)\n");
	ok();
}
