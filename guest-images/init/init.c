/*
 * /init of samsara's reference guest (static, musl).
 *
 * Sets up the minimal userland (proc, sys, devtmpfs, tmpfs, optional ext2/4
 * disk on /mnt), then talks to the VMM through the control page, a page of
 * guest-physical address space at 0xD0000 that is not RAM: every access
 * exits to the VMM. It is reached with pread/pwrite on /dev/mem.
 *
 *   0xD0000  1 byte, write: power off with this exit status
 *   0xD0004  1 byte, write: checkpoint here (the VMM may save the machine;
 *            a resumed machine continues right after this write)
 *   0xD0008  4 bytes, read: the command's length in bytes (every 8 bytes
 *            read through /dev/mem is one exit, so init reads only that)
 *   0xD0100  3840 bytes, read: the command, argv strings each NUL-terminated,
 *            the list ended by an empty string; an empty list means init's
 *            own arguments, or /bin/hello if it has none. Leading strings
 *            that start with the byte 0x01 are settings, not argv (samsara
 *            run/record --cwd, --env, --stdin; internal/vmm/command.go):
 *            "\1cwd=DIR", "\1env=K=V" (repeatable), "\1stdin=FILE".
 *
 * Without samsara (e.g. under QEMU, where 0xD0000 is not a control page and
 * reads as an empty command), the program comes from the kernel command
 * line's words after " -- " (which Linux also hands to init as arguments),
 * so "... -- blackscholes 2 tiny" runs that. The power-off write then returns
 * (samsara never lets it return), and init prints "init: exit status N" and
 * reboots: with "-no-reboot", QEMU exits on the reset. (RB_POWER_OFF only
 * halts there: the reference kernel has no ACPI, so nothing powers off.)
 *
 * The guest's file systems: /proc, /sys, devtmpfs on /dev, tmpfs on /tmp
 * and /dev/shm (POSIX shared memory: shm_open, sem_open), devpts on
 * /dev/pts where the kernel has it (the reference kernel has no
 * UNIX98_PTYS; the mount is then skipped silently), the disk on /mnt.
 *
 * The program runs with PATH=/bin:/mnt HOME=/ TERM=dumb plus the --env
 * settings (which override those), in / or the --cwd directory, with stdin
 * from the console or the --stdin file; a name without a
 * slash is looked up in /bin, then /mnt. Its exit status is WEXITSTATUS, or
 * 128+signal, or 127 if it could not be executed. On success init prints
 * nothing, so the console carries only the program's output; diagnostics go
 * to stderr prefixed "init: ".
 */
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <termios.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>

#define CTRL_EXIT       0xD0000UL /* write 1 byte: exit status, power off */
#define CTRL_CHECKPOINT 0xD0004UL /* write 1 byte: checkpoint here */
#define CTRL_CMD_SIZE   0xD0008UL /* read 4 bytes: the argv list's length */
#define CTRL_CMD        0xD0100UL /* read: argv list */
#define CTRL_CMD_LEN    3840      /* up to the end of the page */
#define MAX_ARGS        256

#define MAX_ENV         64        /* --env settings kept; more are dropped */

static const char *const default_argv[] = { "/bin/hello", NULL };
static const char *const base_env[] = { "PATH=/bin:/mnt", "HOME=/", "TERM=dumb" };

/* The settings that come before argv on the control page. */
static struct {
	const char *cwd;                   /* working directory, or NULL: / */
	const char *stdin_path;            /* standard input, or NULL: console */
	char *env[MAX_ENV + 3 + 1];        /* settings, then base_env, NULL */
	int nenv;
} settings;

/*
 * Concatenate NULL-terminated string arguments into buf (truncating).
 * No stdio anywhere in init: printf would triple the binary's size, and the
 * guest kernel unpacks the initramfs at ~30 ms per KB under PVM.
 */
static size_t vcat(char *buf, size_t size, va_list ap)
{
	size_t n = 0;

	for (const char *s; (s = va_arg(ap, const char *)) != NULL;) {
		size_t l = strlen(s);
		if (l > size - 1 - n)
			l = size - 1 - n;
		memcpy(buf + n, s, l);
		n += l;
	}
	buf[n] = '\0';
	return n;
}

static void cat(char *buf, size_t size, ...)
{
	va_list ap;

	va_start(ap, size);
	vcat(buf, size, ap);
	va_end(ap);
}

/* Unbuffered diagnostic on stderr: "init: " + strings + "\n". */
static void msg(const char *first, ...)
{
	char buf[512];
	size_t n;
	va_list ap;

	n = strlen("init: ");
	memcpy(buf, "init: ", n);
	cat(buf + n, sizeof(buf) - n - 1, first, (char *)NULL);
	n += strlen(buf + n);
	va_start(ap, first);
	n += vcat(buf + n, sizeof(buf) - n - 1, ap);
	va_end(ap);
	buf[n++] = '\n';
	(void)!write(2, buf, n);
}

/* "init: what[ arg]: strerror(errno)" */
static void err(const char *what, const char *arg)
{
	const char *e = strerror(errno);

	if (arg)
		msg(what, " ", arg, ": ", e, (char *)NULL);
	else
		msg(what, ": ", e, (char *)NULL);
}

static int do_mount(const char *src, const char *dir, const char *type,
		    unsigned long flags, int quiet)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		if (!quiet)
			err("mkdir", dir);
		return -1;
	}
	if (mount(src, dir, type, flags, NULL) < 0) {
		if (!quiet)
			err("mount", dir);
		return -1;
	}
	return 0;
}

/* Make sure a character device node exists (devtmpfs normally made it). */
static void ensure_chr(const char *path, mode_t mode, int maj, int min)
{
	struct stat st;

	if (stat(path, &st) == 0 && S_ISCHR(st.st_mode))
		return;
	unlink(path);
	if (mknod(path, S_IFCHR | mode, makedev(maj, min)) < 0)
		err("mknod", path);
}

static void setup_console(void)
{
	int fd = open("/dev/console", O_RDWR | O_NOCTTY);

	if (fd < 0) {
		err("open", "/dev/console");
		return;
	}
	for (int i = 0; i < 3; i++)
		if (fd != i)
			dup2(fd, i);
	if (fd > 2)
		close(fd);
}

static int mount_disk(void)
{
	struct stat st;

	if (stat("/dev/vda", &st) < 0 || !S_ISBLK(st.st_mode))
		return 0; /* no disk: fine */
	if (do_mount("/dev/vda", "/mnt", "ext4", 0, 1) == 0)
		return 1;
	if (do_mount("/dev/vda", "/mnt", "ext2", 0, 1) == 0)
		return 1;
	err("cannot mount /dev/vda on /mnt as ext4 or ext2", NULL);
	return 0;
}

/* argv0 without a slash: /bin/argv0, then /mnt/argv0. */
static const char *resolve(const char *name, char *buf, size_t len)
{
	static const char *const dirs[] = { "/bin/", "/mnt/" };

	if (strchr(name, '/'))
		return name;
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		cat(buf, len, dirs[i], name, (char *)NULL);
		if (access(buf, X_OK) == 0)
			return buf;
	}
	return NULL;
}

/* Whether the environment already sets the variable of kv ("K=..."). */
static int env_has(const char *kv)
{
	size_t k = strcspn(kv, "=");

	for (int i = 0; i < settings.nenv; i++)
		if (strncmp(settings.env[i], kv, k) == 0 && settings.env[i][k] == '=')
			return 1;
	return 0;
}

/* One setting string ("\1key=value") from the control page. */
static void add_setting(char *s)
{
	s++; /* the 0x01 marker */
	if (strncmp(s, "cwd=", 4) == 0)
		settings.cwd = s + 4;
	else if (strncmp(s, "stdin=", 6) == 0)
		settings.stdin_path = s + 6;
	else if (strncmp(s, "env=", 4) == 0 && strchr(s + 4, '=') && settings.nenv < MAX_ENV)
		settings.env[settings.nenv++] = s + 4;
	else
		msg("unknown setting from the VMM: ", s, (char *)NULL);
}

/* The child's side before execve: cwd and stdin; exits 127 on failure. */
static void apply_settings(void)
{
	for (size_t i = 0; i < sizeof(base_env) / sizeof(base_env[0]); i++)
		if (!env_has(base_env[i]))
			settings.env[settings.nenv++] = (char *)base_env[i];
	settings.env[settings.nenv] = NULL;
	if (settings.cwd && chdir(settings.cwd) < 0) {
		err("--cwd", settings.cwd);
		_exit(127);
	}
	if (settings.stdin_path) {
		int fd = open(settings.stdin_path, O_RDONLY);

		if (fd < 0) {
			err("--stdin", settings.stdin_path);
			_exit(127);
		}
		if (fd != 0) {
			dup2(fd, 0);
			close(fd);
		}
	}
}

static int run(char *const argv[])
{
	char pathbuf[4096];
	const char *path = resolve(argv[0], pathbuf, sizeof(pathbuf));
	int status;
	pid_t pid, w;

	if (!path) {
		msg(argv[0], ": command not found in /bin or /mnt", (char *)NULL);
		return 127;
	}
	pid = fork();
	if (pid < 0) {
		err("fork", NULL);
		return 127;
	}
	if (pid == 0) {
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setsid();
		apply_settings();
		execve(path, argv, settings.env);
		err("cannot execute", path);
		_exit(127);
	}
	/* As PID 1 we also inherit orphans: reap until our child is done. */
	for (;;) {
		w = waitpid(-1, &status, 0);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			err("waitpid", NULL);
			return 127;
		}
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 127;
}

/*
 * The words after " -- " on the kernel command line, into argv (at most
 * MAX_ARGS); returns their number. Linux also passes them to init as its
 * last arguments, but in front of them it passes every unrecognised
 * parameter without "=" (6.1 passes "noxsave" that way: it is read with
 * cmdline_find_option, not registered), so init's own argv cannot tell
 * them apart; /proc/cmdline can. Words are separated by spaces; quotes are
 * not interpreted.
 */
static int args_after_dashes(char *argv[])
{
	static char line[4096]; /* COMMAND_LINE_SIZE on x86 is 2048 */
	int fd = open("/proc/cmdline", O_RDONLY), argc = 0;
	ssize_t n;
	char *p;

	if (fd < 0)
		return 0;
	n = read(fd, line, sizeof(line) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	line[n] = '\0';
	for (p = line; *p; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	p = strstr(line, " -- ");
	if (!p)
		return 0;
	p += 4;
	while (*p && argc < MAX_ARGS) {
		while (*p == ' ')
			*p++ = '\0';
		if (!*p)
			break;
		argv[argc++] = p;
		while (*p && *p != ' ')
			p++;
	}
	return argc;
}

int main(void)
{
	static char cmd[CTRL_CMD_LEN + 2];
	char *argv[MAX_ARGS + 1];
	int argc = 0, disk, status, mem;
	unsigned char b;

	/* The kernel gave us /dev/console from the initramfs if it had one. */
	umask(022);
	do_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, 0);
	do_mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, 0);
	if (do_mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, 0) < 0)
		mkdir("/dev", 0755);
	ensure_chr("/dev/console", 0600, 5, 1);
	ensure_chr("/dev/mem", 0640, 1, 1);
	ensure_chr("/dev/null", 0666, 1, 3);
	setup_console();
	do_mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, 0);
	/* POSIX shared memory (shm_open) lives in /dev/shm; devpts is quiet. */
	do_mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, 0);
	do_mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, 1);
	disk = mount_disk();

	mem = open("/dev/mem", O_RDWR | O_SYNC);
	if (mem < 0) {
		err("open", "/dev/mem (no VMM control page; running the default program)");
	} else {
		/* Checkpoint: a restored machine continues right after this. */
		b = 1;
		if (pwrite(mem, &b, 1, CTRL_CHECKPOINT) != 1)
			err("checkpoint write to /dev/mem", NULL);
		/*
		 * Only the command's length (an older samsara reads 0 there, a
		 * machine without the page all ones: read the whole page).
		 */
		uint32_t len = 0;
		if (pread(mem, &len, sizeof(len), CTRL_CMD_SIZE) != sizeof(len) ||
		    len == 0 || len > CTRL_CMD_LEN)
			len = CTRL_CMD_LEN;
		ssize_t n = pread(mem, cmd, len, CTRL_CMD);
		if (n < 0) {
			err("reading the command from /dev/mem", NULL);
			n = 0;
		}
		cmd[n] = cmd[n + 1] = '\0';
		for (char *p = cmd; *p && p < cmd + n; p += strlen(p) + 1) {
			if (argc == 0 && *p == '\1') {
				add_setting(p);
				continue;
			}
			if (argc == MAX_ARGS) {
				msg("command has too many arguments; truncated", (char *)NULL);
				break;
			}
			argv[argc++] = p;
		}
	}
	/* No command from the VMM: the kernel command line's words after "--". */
	if (argc == 0)
		argc = args_after_dashes(argv);
	argv[argc] = NULL;

	status = run(argc ? argv : (char *const *)default_argv);

	/* Stop leftovers (daemons, orphans) so /mnt can be unmounted. */
	kill(-1, SIGKILL);
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
	sync();
	if (disk && umount("/mnt") < 0) {
		err("umount", "/mnt");
		sync();
	}

	/*
	 * Let the console transmit what the program wrote: tty output drains
	 * through UART interrupts, and powering off first would drop it (seen
	 * under samsara's recorder, which delivers interrupts only at exits).
	 */
	tcdrain(STDOUT_FILENO);
	tcdrain(STDERR_FILENO);

	/* Power off with the status; the VMM should not let this return. */
	b = (unsigned char)status;
	if (mem >= 0 && pwrite(mem, &b, 1, CTRL_EXIT) != 1)
		err("exit-status write to /dev/mem", NULL);

	/*
	 * Still here: no samsara. Report the status on the console (nothing
	 * else carries it out) and reset the machine, which a VMM run with
	 * -no-reboot (QEMU) turns into an exit.
	 */
	{
		char num[4] = { (char)('0' + status / 100),
				(char)('0' + status / 10 % 10),
				(char)('0' + status % 10), '\0' };
		const char *s = num;

		while (*s == '0' && s[1])
			s++;
		msg("exit status ", s, (char *)NULL);
	}
	tcdrain(STDERR_FILENO);
	reboot(RB_AUTOBOOT);
	err("reboot(RB_AUTOBOOT)", NULL);
	/* Exiting PID 1 panics the kernel, which reboots (panic=-1). */
	return status;
}
