package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want Size
		err  bool
	}{
		{"0", 0, false},
		{"1024", 1024, false},
		{"512B", 512, false},
		{"64KB", 64000, false},
		{"64KiB", 64 << 10, false},
		{"25MB", 25e6, false},
		{"25MiB", 25 << 20, false},
		{"25 MiB", 25 << 20, false},
		{"2GB", 2e9, false},
		{"2GiB", 2 << 30, false},
		{"", 0, true},
		{"MiB", 0, true},
		{"-1", 0, true},
		{"1.5MiB", 0, true},
		{"25mib", 0, true},
		{"25 megabytes", 0, true},
		{"9999999999GiB", 0, true},
		{"99999999999999999999", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestSizeString(t *testing.T) {
	tests := []struct {
		in   Size
		want string
	}{
		{0, "0B"},
		{1, "1B"},
		{1000, "1KB"},
		{1024, "1KiB"},
		{25 << 20, "25MiB"},
		{50e6, "50MB"},
		{3 << 30, "3GiB"},
		{1000001, "1000001B"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		text, _ := tt.in.MarshalText()
		var back Size
		if err := back.UnmarshalText(text); err != nil || back != tt.in {
			t.Errorf("round trip of %d through %q = %d, %v", int64(tt.in), text, back, err)
		}
	}
}

func TestDuration(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("1h30m")); err != nil || d.Duration != 90*time.Minute {
		t.Errorf("UnmarshalText(1h30m) = %v, %v", d, err)
	}
	err := d.UnmarshalText([]byte("5 minutes"))
	if err == nil || err.Error() != `invalid duration "5 minutes"` {
		t.Errorf("UnmarshalText(5 minutes) error = %v", err)
	}
	text, _ := Duration{5 * time.Minute}.MarshalText()
	if string(text) != "5m0s" {
		t.Errorf("MarshalText = %q", text)
	}
}

func TestSecretFormatting(t *testing.T) {
	s := NewSecret("hunter2")
	if s.IsZero() || !(Secret{}).IsZero() || s.Reveal() != "hunter2" {
		t.Fatalf("IsZero/Reveal broken")
	}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%T"} {
		outs = append(outs, fmt.Sprintf(verb, s), fmt.Sprintf(verb, &s), fmt.Sprintf(verb, struct{ P Secret }{s}))
	}
	j, _ := json.Marshal(map[string]Secret{"p": s})
	outs = append(outs, string(j), s.String(), s.GoString(), fmt.Sprint(s), fmt.Sprintln(s))
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("m", "p", s, "ptr", &s)
	outs = append(outs, buf.String())
	for _, o := range outs {
		if bytes.Contains([]byte(o), []byte("hunter2")) {
			t.Errorf("secret revealed: %s", o)
		}
	}
	if string(j) != `{"p":"[redacted]"}` {
		t.Errorf("JSON = %s", j)
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"25MiB", "1", "64 KB", "9223372036854775807", "1GiB "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
		back, err := ParseSize(n.String())
		if err != nil || back != n {
			t.Fatalf("ParseSize(%q) = %d; its String %q parses to %d, %v", s, n, n.String(), back, err)
		}
	})
}
