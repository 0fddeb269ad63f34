/* fork five children with different exit statuses; waitpid collects each
 * by pid; wait() with no children left is ECHILD. */
#include "corpus.h"
#include <sys/wait.h>

int main(void)
{
	pid_t pids[5];
	int st;

	for (int i = 0; i < 5; i++) {
		pids[i] = fork();
		CHECK(pids[i] >= 0, "fork");
		if (pids[i] == 0)
			_exit(10 + i);
	}
	for (int i = 4; i >= 0; i--)
		CHECK(waitpid(pids[i], &st, 0) == pids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 10 + i, "child %d", i);
	CHECK(wait(&st) == -1 && errno == ECHILD, "wait with no children");
	say("5 children exited 10..14, each collected by pid; then ECHILD\n");
	ok();
}
