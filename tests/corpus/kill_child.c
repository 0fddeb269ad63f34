/* Killing a child that waits in pause(): SIGTERM by default terminates it,
 * a caught SIGTERM lets it exit normally. */
#include "corpus.h"
#include <signal.h>
#include <sys/wait.h>

static void on_term(int sig) { (void)sig; _exit(3); }

int main(void)
{
	int p[2], st;
	char c;
	pid_t pid;

	for (int caught = 0; caught < 2; caught++) {
		CHECK(pipe(p) == 0, "pipe");
		pid = fork();
		if (pid == 0) {
			if (caught)
				signal(SIGTERM, on_term);
			close(p[0]);
			(void)!write(p[1], "r", 1);
			for (;;)
				pause();
		}
		close(p[1]);
		CHECK(read(p[0], &c, 1) == 1, "child not ready");
		close(p[0]);
		kill(pid, SIGTERM);
		CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
		if (caught) {
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3, "status %#x", st);
			say("caught SIGTERM: child exited 3\n");
		} else {
			CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "status %#x", st);
			say("default SIGTERM: child killed by signal 15\n");
		}
	}
	ok();
}
