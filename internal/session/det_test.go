package session

import "testing"

func TestIsRepString(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"rep movsb", []byte{0xF3, 0xA4}, true},
		{"rep stosq", []byte{0xF3, 0x48, 0xAB}, true},
		{"repne scasb", []byte{0xF2, 0xAE}, true},
		{"rep insb", []byte{0xF3, 0x6C}, true},
		{"movsb without rep", []byte{0xA4}, false},
		{"pause (f3 90)", []byte{0xF3, 0x90}, false},
		{"popcnt (f3 0f b8)", []byte{0xF3, 0x48, 0x0F, 0xB8, 0xC0}, false},
		{"mov", []byte{0x48, 0x89, 0xC7}, false},
		{"only prefixes", []byte{0x66, 0x67}, false},
	} {
		if got := isRepString(tc.b); got != tc.want {
			t.Errorf("%s % x: got %v, want %v", tc.name, tc.b, got, tc.want)
		}
	}
}
