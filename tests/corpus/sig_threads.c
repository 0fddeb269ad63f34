/* Signals between threads: pthread_kill to a thread in sigwait, and back
 * to the main thread; a process-directed signal reaches the one thread
 * that has it unblocked. */
#include "corpus.h"
#include <pthread.h>
#include <signal.h>

static pthread_t main_thread;
static volatile pthread_t handled_by;
static volatile sig_atomic_t got;

static void on_usr2(int sig) { (void)sig; handled_by = pthread_self(); got = 1; }

static void *worker(void *arg)
{
	sigset_t s;
	int sig;

	(void)arg;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	CHECK(sigwait(&s, &sig) == 0 && sig == SIGUSR1, "worker sigwait");
	pthread_kill(main_thread, SIGUSR1);
	/* Now take the process-directed SIGUSR2: only this thread has it unblocked. */
	sigemptyset(&s);
	sigaddset(&s, SIGUSR2);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);
	while (!got)
		sleep_ms(1);
	return NULL;
}

int main(void)
{
	sigset_t s;
	pthread_t t;
	int sig;

	main_thread = pthread_self();
	signal(SIGUSR2, on_usr2);
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	sigaddset(&s, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &s, NULL); /* inherited by the worker */
	pthread_create(&t, NULL, worker, NULL);
	pthread_kill(t, SIGUSR1);
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	CHECK(sigwait(&s, &sig) == 0 && sig == SIGUSR1, "main sigwait");
	say("SIGUSR1 main -> worker -> main via pthread_kill and sigwait\n");
	kill(getpid(), SIGUSR2);
	pthread_join(t, NULL);
	CHECK(pthread_equal(handled_by, t), "SIGUSR2 handled by the wrong thread");
	say("process-directed SIGUSR2 handled by the only thread that unblocked it\n");
	ok();
}
