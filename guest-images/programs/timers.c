/*
 * timers: exercises guest time: 10 nanosleeps of 1 ms, 5 poll() timeouts
 * of 3 ms, and 5 SIGALRMs from a 2 ms interval timer. Prints the counts
 * and the elapsed CLOCK_MONOTONIC time in microseconds; exits 0 iff every
 * wait took at least as long as asked.
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

static long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

int main(void)
{
	long long t0 = now_us(), t1, t2, t3;
	struct timespec ms = {0, 1000000};
	struct itimerval it = {{0, 2000}, {0, 2000}};
	int sleeps = 0, polls = 0;

	for (int i = 0; i < 10; i++)
		sleeps += nanosleep(&ms, NULL) == 0;
	t1 = now_us();
	for (int i = 0; i < 5; i++)
		polls += poll(NULL, 0, 3) == 0;
	t2 = now_us();
	signal(SIGALRM, on_alarm);
	setitimer(ITIMER_REAL, &it, NULL);
	while (alarms < 5)
		pause();
	t3 = now_us();
	it.it_interval.tv_usec = it.it_value.tv_usec = 0;
	setitimer(ITIMER_REAL, &it, NULL);
	printf("timers: sleeps=%d polls=%d alarms=%d elapsed_us=%lld,%lld,%lld\n",
	       sleeps, polls, (int)alarms, t1 - t0, t2 - t1, t3 - t2);
	return sleeps == 10 && polls == 5 && t1 - t0 >= 10000 && t2 - t1 >= 15000 ? 0 : 1;
}
