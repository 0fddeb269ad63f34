/* An exited, unwaited child is a zombie (state Z in /proc) until waitpid
 * reaps it; then its /proc entry is gone. */
#include "corpus.h"
#include <fcntl.h>
#include <sys/wait.h>

static char state_of(pid_t pid)
{
	char path[64], buf[256], *p;
	int fd, n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] ? p[2] : '?';
}

int main(void)
{
	pid_t pid = fork();
	int st;

	if (pid == 0)
		_exit(5);
	for (int tries = 0; state_of(pid) != 'Z'; tries++) {
		CHECK(tries < 10000, "child never became a zombie (state %c)", state_of(pid));
		sleep_ms(1);
	}
	say("exited child is a zombie before it is waited for\n");
	CHECK(kill(pid, 0) == 0, "a zombie still takes signal 0");
	CHECK(waitpid(pid, &st, 0) == pid && WEXITSTATUS(st) == 5, "waitpid");
	CHECK(state_of(pid) == 0, "/proc entry still there after reaping");
	say("waitpid reaped it: status 5, /proc entry gone\n");
	ok();
}
