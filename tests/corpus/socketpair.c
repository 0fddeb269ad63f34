/* A Unix socketpair between processes: datagrams keep their boundaries,
 * and an fd passed with SCM_RIGHTS works in the receiver. */
#include "corpus.h"
#include <sys/socket.h>
#include <sys/wait.h>

int main(void)
{
	int sv[2], st, p[2];
	char buf[64];
	pid_t pid;

	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0, "socketpair");
	CHECK(pipe(p) == 0, "pipe");
	pid = fork();
	if (pid == 0) {
		struct msghdr m = { 0 };
		char cb[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { "fd", 2 };
		close(sv[0]);
		(void)!write(sv[1], "one", 3);
		(void)!write(sv[1], "two!", 4);
		m.msg_iov = &iov;
		m.msg_iovlen = 1;
		m.msg_control = cb;
		m.msg_controllen = sizeof(cb);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &p[1], sizeof(int));
		_exit(sendmsg(sv[1], &m, 0) == 2 ? 0 : 1);
	}
	close(sv[1]);
	close(p[1]);
	CHECK(read(sv[0], buf, sizeof(buf)) == 3 && read(sv[0], buf, sizeof(buf)) == 4, "datagram sizes");
	say("SOCK_SEQPACKET kept message boundaries (3, 4)\n");
	struct msghdr m = { 0 };
	char cb[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { buf, sizeof(buf) };
	int fd;
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = cb;
	m.msg_controllen = sizeof(cb);
	CHECK(recvmsg(sv[0], &m, 0) == 2, "recvmsg");
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	CHECK(c && c->cmsg_type == SCM_RIGHTS, "no SCM_RIGHTS");
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	CHECK(waitpid(pid, &st, 0) == pid && st == 0, "child");
	CHECK(write(fd, "z", 1) == 1 && read(p[0], buf, 1) == 1 && buf[0] == 'z', "passed fd does not reach the pipe");
	say("a pipe's write end passed with SCM_RIGHTS works in the receiver\n");
	ok();
}
