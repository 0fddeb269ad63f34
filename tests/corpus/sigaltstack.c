/* A handler installed with SA_ONSTACK runs on the alternate stack, also for
 * a stack overflow's SIGSEGV. */
#include "corpus.h"
#include <setjmp.h>
#include <signal.h>
#include <sys/resource.h>

static char altstack[64 * 1024];
static volatile int on_alt, segv_on_alt;
static sigjmp_buf jb;

static int in_alt(void *p) { return (char *)p >= altstack && (char *)p < altstack + sizeof(altstack); }

static void on_usr1(int sig) { int x; (void)sig; on_alt = in_alt(&x); }
static void on_segv(int sig) { int x; (void)sig; segv_on_alt = in_alt(&x); siglongjmp(jb, 1); }

static int recurse(volatile char *p, int n)
{
	volatile char buf[4096];
	buf[0] = (char)n;
	(void)p;
	if (n > (1 << 20)) /* never reached: 4 GB of stack */
		return 0;
	return recurse(buf, n + 1) + buf[0];
}

int main(void)
{
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) }, cur;
	struct sigaction sa = { 0 };
	struct rlimit rl = { 1 << 20, 1 << 20 };

	CHECK(sigaltstack(&ss, NULL) == 0, "sigaltstack");
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGUSR1, &sa, NULL);
	raise(SIGUSR1);
	CHECK(on_alt, "SIGUSR1 handler not on the alternate stack");
	say("SA_ONSTACK handler ran on the alternate stack\n");
	CHECK(sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_ONSTACK), "still on the alternate stack");

	setrlimit(RLIMIT_STACK, &rl);
	sa.sa_handler = on_segv;
	sa.sa_flags = SA_ONSTACK | SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	if (sigsetjmp(jb, 1) == 0)
		recurse(NULL, 0);
	CHECK(segv_on_alt, "SIGSEGV of the overflow not handled on the alternate stack");
	say("stack overflow SIGSEGV handled on the alternate stack\n");
	ok();
}
