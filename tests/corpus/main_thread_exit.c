/* The main thread calls pthread_exit while a worker runs; the process
 * lives on and the worker's exit(0) ends it. */
#include "corpus.h"
#include <pthread.h>

static void *worker(void *arg)
{
	(void)arg;
	sleep_ms(50);
	say("worker ran on after the main thread's pthread_exit\n");
	ok();
}

int main(void)
{
	pthread_t t;

	pthread_create(&t, NULL, worker, NULL);
	pthread_exit(NULL);
}
