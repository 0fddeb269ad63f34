/*
 * cpuidbits: prints the CPUID feature bits samsara hides from the guest
 * because they would make a recording non-deterministic (the TSC and what
 * reads it, hardware random numbers), as the guest's CPUID instruction
 * reports them: "cpuidbits: tsc=0 rdtscp=0 rdrand=0 rdseed=0".
 * On hardware virtualization samsara's KVM_SET_CPUID2 policy decides
 * them; under PVM the guest reads the host's leaves 1 and 7, and only the
 * kernel's clearcpuid= hides them from the kernel (README, "Determinism
 * contract").
 */
#include <stdio.h>

static void cpuid(unsigned leaf, unsigned sub, unsigned r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

int main(void)
{
	unsigned l1[4], l7[4], e1[4], max[4];

	cpuid(0, 0, max);
	cpuid(1, 0, l1);
	if (max[0] >= 7)
		cpuid(7, 0, l7);
	else
		l7[1] = 0;
	cpuid(0x80000001, 0, e1);
	printf("cpuidbits: tsc=%u rdtscp=%u rdrand=%u rdseed=%u\n",
	       (l1[3] >> 4) & 1, (e1[3] >> 27) & 1, (l1[2] >> 30) & 1, (l7[1] >> 18) & 1);
	return 0;
}
