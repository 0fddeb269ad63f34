package vmm

import (
	"fmt"
	"strings"
)

// The guest program's environment (issue 17): its working directory,
// extra environment variables and standard input travel to the guest's
// init on the control page, as settings strings in front of argv. Each
// starts with settingMarker, a byte no real argv[0] starts with, so an
// init that reads the page tells them apart from the program; a
// recording's header keeps them inside Config.Argv, which is why replay
// serves the guest exactly the environment the recording had.
//
//	"\x01cwd=DIR"    chdir(DIR) before execve
//	"\x01env=K=V"    K=V in the environment (overrides init's defaults)
//	"\x01stdin=FILE" FILE (a guest path, e.g. /mnt/input.txt) as fd 0
const settingMarker = "\x01"

// Environment is what init sets up for the program besides argv.
type Environment struct {
	// Cwd is the working directory; empty means /.
	Cwd string
	// Env holds K=V settings added to init's PATH, HOME and TERM.
	Env []string
	// Stdin is a guest path opened as standard input; empty means the
	// console.
	Stdin string
}

// GuestArgv returns argv with env's settings in front, as Config.Argv
// takes them. It rejects what init could not apply: an env entry without
// "=" or an empty key, and relative cwd or stdin paths (init runs in /,
// so a relative path would silently mean something else).
func GuestArgv(argv []string, env Environment) ([]string, error) {
	var out []string
	if env.Cwd != "" {
		if !strings.HasPrefix(env.Cwd, "/") {
			return nil, fmt.Errorf("--cwd %q: must be an absolute guest path", env.Cwd)
		}
		out = append(out, settingMarker+"cwd="+env.Cwd)
	}
	for _, kv := range env.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("--env %q: must be KEY=VALUE", kv)
		}
		out = append(out, settingMarker+"env="+kv)
	}
	if env.Stdin != "" {
		if !strings.HasPrefix(env.Stdin, "/") {
			return nil, fmt.Errorf("--stdin %q: must be an absolute guest path (e.g. /mnt/input.txt)", env.Stdin)
		}
		out = append(out, settingMarker+"stdin="+env.Stdin)
	}
	for _, a := range append(out, argv...) {
		if strings.ContainsRune(a, 0) {
			return nil, fmt.Errorf("program argument %q contains a NUL byte", a)
		}
	}
	return append(out, argv...), nil
}

// SplitGuestArgv is GuestArgv's inverse: the program's argv and its
// environment settings (for inspect and the suite's reports).
func SplitGuestArgv(argv []string) ([]string, Environment) {
	var env Environment
	i := 0
	for ; i < len(argv) && strings.HasPrefix(argv[i], settingMarker); i++ {
		k, v, _ := strings.Cut(argv[i][len(settingMarker):], "=")
		switch k {
		case "cwd":
			env.Cwd = v
		case "env":
			env.Env = append(env.Env, v)
		case "stdin":
			env.Stdin = v
		}
	}
	return argv[i:], env
}
