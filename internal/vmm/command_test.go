package vmm

import (
	"reflect"
	"strings"
	"testing"
)

func TestGuestArgvRoundTrip(t *testing.T) {
	env := Environment{Cwd: "/tmp", Env: []string{"A=1", "B=x=y"}, Stdin: "/mnt/in.txt"}
	argv := []string{"/mnt/prog", "2", "tiny"}
	got, err := GuestArgv(argv, env)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"\x01cwd=/tmp", "\x01env=A=1", "\x01env=B=x=y", "\x01stdin=/mnt/in.txt", "/mnt/prog", "2", "tiny"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("GuestArgv = %q, want %q", got, want)
	}
	back, benv := SplitGuestArgv(got)
	if !reflect.DeepEqual(back, argv) || !reflect.DeepEqual(benv, env) {
		t.Fatalf("SplitGuestArgv = %q %+v, want %q %+v", back, benv, argv, env)
	}
	if plain, _ := GuestArgv(argv, Environment{}); !reflect.DeepEqual(plain, argv) {
		t.Fatalf("no settings: %q, want argv unchanged", plain)
	}
}

func TestGuestArgvRejects(t *testing.T) {
	for _, tc := range []struct {
		env  Environment
		want string
	}{
		{Environment{Cwd: "tmp"}, "--cwd"},
		{Environment{Stdin: "in.txt"}, "--stdin"},
		{Environment{Env: []string{"NOEQUALS"}}, "--env"},
		{Environment{Env: []string{"=v"}}, "--env"},
	} {
		if _, err := GuestArgv([]string{"true"}, tc.env); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one naming %s", tc.env, err, tc.want)
		}
	}
}
