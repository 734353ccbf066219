package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &environment{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	code = execute(context.Background(), env, args)
	return code, out.String(), errb.String()
}

// TestCheckConfigExample checks that the example, as shipped (and installed
// by the .deb as /etc/mailgate/config.toml), fails naming every value an
// admin must edit, and passes once they are edited.
func TestCheckConfigExample(t *testing.T) {
	code, out, errOut := runCLI(t, "", "check-config", "-c", "../../config.example.toml")
	if code != 2 {
		t.Fatalf("exit %d, want 2; stdout %s stderr %s", code, out, errOut)
	}
	for _, key := range []string{
		"server.public_url", "userlike.inbound_url", "userlike.inbound_token", "userlike.outbound_token",
		"imap.address", "imap.username", "imap.password",
		"smtp.address", "smtp.username", "smtp.password", "smtp.from", "verify.trusted_authserv_ids",
	} {
		if !strings.Contains(errOut, key+": still the example value: set ") {
			t.Errorf("stderr does not name %s:\n%s", key, errOut)
		}
	}
	// The line of the first placeholder inside [[channel]]: the
	// Inbound URL.
	example, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	line := 0
	for i, l := range strings.Split(string(example), "\n") {
		if strings.HasPrefix(l, "inbound_url = ") {
			line = i + 1
			break
		}
	}
	if want := fmt.Sprintf("config.example.toml:%d: ", line); line == 0 || !strings.Contains(errOut, want) || !strings.Contains(errOut, "edit these 12 values") {
		t.Errorf("stderr lacks file:line or the count:\n%s", errOut)
	}
	if strings.Contains(errOut, `"REPLACE-ME"`) {
		t.Errorf("stderr shows a secret value: %q", errOut)
	}

	edited := strings.NewReplacer(
		"inbound/REPLACE-ME", "inbound/c0ffee",
		"REPLACE-ME", "0123456789abcdef",
		"example.com", "acme.test",
	).Replace(string(example))
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, "", "check-config", "-c", path)
	if code != 0 {
		t.Fatalf("edited example: exit %d, stderr %s", code, errOut)
	}
	if !strings.Contains(out, `channel "support"`) {
		t.Errorf("summary %q does not name the channel", out)
	}
	if strings.Contains(out, "0123456789abcdef") {
		t.Errorf("summary shows a secret: %q", out)
	}
	// run refuses the unedited example before it opens anything.
	code, _, errOut = runCLI(t, "", "run", "-c", "../../config.example.toml")
	if code != 2 || !strings.Contains(errOut, "imap.password: still the example value") {
		t.Errorf("run on the example: exit %d, stderr %s", code, errOut)
	}
}

func TestCheckConfigErrors(t *testing.T) {
	example, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	base := string(example)
	tests := []struct {
		name string
		edit func(string) string
		want string // substring of stderr: file:line: ... key
	}{
		{"unknown key", func(s string) string {
			return strings.Replace(s, "[channel.imap]\n", "[channel.imap]\nfolderz = [\"INBOX\"]\n", 1)
		}, "folderz"},
		{"missing port", func(s string) string {
			return strings.Replace(s, `address = "imap.example.com:993"`, `address = "imap.example.com"`, 1)
		}, `channel "support": imap.address: missing port`},
		{"duplicate channel", func(s string) string {
			i := strings.Index(s, "[[channel]]")
			return s + "\n" + s[i:]
		}, `duplicate`},
		{"bad duration", func(s string) string {
			return strings.Replace(s, "[channel.imap]\n", "[channel.imap]\npoll_interval = \"5 minutes\"\n", 1)
		}, "imap.poll_interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.toml")
			if err := os.WriteFile(path, []byte(tt.edit(base)), 0o600); err != nil {
				t.Fatal(err)
			}
			code, _, errOut := runCLI(t, "", "check-config", "-c", path)
			if code != 2 {
				t.Errorf("exit %d, want 2; stderr %s", code, errOut)
			}
			if !strings.Contains(errOut, "config.toml:") || !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr %q: want file:line and %q", errOut, tt.want)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	code, out, _ := runCLI(t, "", "help")
	if code != 0 || !strings.Contains(out, "check-config") || !strings.Contains(out, "inspect") {
		t.Errorf("help: exit %d, output %q", code, out)
	}
	for _, cmd := range []string{"run", "check-config", "version", "inspect", "help"} {
		code, _, errOut := runCLI(t, "", cmd, "-h")
		if code != 0 || !strings.Contains(errOut, "Usage: mailgate "+cmd) {
			t.Errorf("%s -h: exit %d, output %q", cmd, code, errOut)
		}
	}
	code, out, _ = runCLI(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "mailgate ") {
		t.Errorf("version: exit %d, output %q", code, out)
	}
	if code, _, _ := runCLI(t, "", "frobnicate"); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}

func TestInspect(t *testing.T) {
	raw := customerMail("jane@example.test", "Jane Doe", "i1@example.test", "Where is my order?", "Hi,\n\nwhere is order 99?\n\nJane\n-- \nJane Doe, ACME", "In-Reply-To: <x@y>")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	example, _ := os.ReadFile("../../config.example.toml")
	os.WriteFile(cfg, []byte(strings.Replace(string(example), `trusted_authserv_ids = ["mx.example.com"]`, `trusted_authserv_ids = ["mx.example.test"]`, 1)), 0o600)
	code, out, errOut := runCLI(t, raw, "inspect", "-c", cfg, "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{`"action": "post"`, `"email": "jane@example.test"`, `"text": "Hi,\n\nwhere is order 99?\n\nJane"`, `"method": "authres-dmarc"`, `"full_text"`, `"classification"`, `"trimmed_by"`, `"rule": "signature"`} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %s:\n%s", want, out)
		}
	}
	// Without a config the defaults apply: no trusted authserv-id, so the
	// sender cannot be verified and the mail would be quarantined.
	code, out, _ = runCLI(t, raw, "inspect", "-")
	if code != 0 || !strings.Contains(out, `"action": "quarantine"`) {
		t.Errorf("inspect on defaults: exit %d\n%s", code, out)
	}
}

func TestCheckConfigConnect(t *testing.T) {
	e := newTestEnv(t, "")
	code, out, errOut := runCLI(t, "", "check-config", "-connect", "-c", e.cfgPath)
	if code != 0 || strings.Contains(out, "FAILED") || !strings.Contains(out, `imap: log in as "support@example.test"`) || !strings.Contains(out, "smtp: connect") {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
	e.deliver("From: a@example.test\nSubject: old\n\nold mail\n")
	_, out, _ = runCLI(t, "", "check-config", "-connect", "-c", e.cfgPath)
	if !strings.Contains(out, `imap: folder "INBOX" (1 messages; start = "all" posts all of them on a first start)`) {
		t.Errorf("no count of what the start point posts:\n%s", out)
	}
	writeFile(t, e.cfgPath, strings.Replace(readFile(t, e.cfgPath), `password = "`+supportPass+`"`, `password = "nope"`, 1))
	code, out, _ = runCLI(t, "", "check-config", "-connect", "-c", e.cfgPath)
	if code != 1 || !strings.Contains(out, "FAILED  support: imap: log in") {
		t.Errorf("wrong password: exit %d\n%s", code, out)
	}
}

func TestReadBuildInfo(t *testing.T) {
	vcs := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "mailgate", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0985d59c1a2b3c4d5e6f708192a3b4c5d6e7f809"},
			{Key: "vcs.time", Value: "2026-12-04T01:57:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	tests := []struct {
		name   string
		linked string
		info   *debug.BuildInfo
		ok     bool
		short  string
		lines  []string
	}{
		{"release", "v1.2.0", vcs, true, "v1.2.0", []string{
			"mailgate v1.2.0\n",
			"commit   0985d59c1a2b3c4d5e6f708192a3b4c5d6e7f809 (with uncommitted changes)\n",
			"date     2026-12-04T01:57:00Z\n",
			"go       go1.26.8 ",
		}},
		{"checkout without -X", "", vcs, true, "devel-0985d59c1a2b-dirty", []string{"mailgate devel-0985d59c1a2b-dirty\n"}},
		{"go install", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.3.0"}}, true, "v1.3.0", []string{
			"mailgate v1.3.0\n",
			"commit   unknown (built without VCS information)\n",
			"date     unknown (built without VCS information)\n",
		}},
		{"no build info", "", nil, false, "devel", []string{"mailgate devel\n", "commit   unknown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := readBuildInfo(tt.linked, tt.info, tt.ok)
			if got := b.short(); got != tt.short {
				t.Errorf("short() = %q, want %q", got, tt.short)
			}
			var out bytes.Buffer
			b.print(&out)
			for _, l := range tt.lines {
				if !strings.Contains(out.String(), l) {
					t.Errorf("output lacks %q:\n%s", l, out.String())
				}
			}
		})
	}
}
