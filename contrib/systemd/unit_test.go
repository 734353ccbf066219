// Package systemd_test checks contrib/systemd/mailgate.service: the
// directives mailgate relies on, its credential names against
// config.example.toml, and, where systemd-analyze is installed, that
// systemd accepts every directive and rates the sandbox 1.5 or lower.
package systemd_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const unitPath = "mailgate.service"

// maxExposure is the highest acceptable "Overall exposure level" of
// systemd-analyze security (0 is fully locked down, 10 is unprotected).
const maxExposure = 1.5

// unit is a parsed unit file: directive values by "Section.Key", in file
// order, and the commented-out directives by key, without section.
type unit struct {
	values    map[string][]string
	commented map[string][]string
}

// commentedDirective matches a commented-out directive such as
// "#LoadCredential=name:/path".
var commentedDirective = regexp.MustCompile(`^[#;]\s*([A-Z][A-Za-z]+)=(.*)$`)

// parseUnit reads the unit file at path. It knows just enough of the
// format for this test: sections, comments, Key=Value lines and
// backslash continuations.
func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open unit: %v", err)
	}
	defer f.Close()
	u := unit{values: map[string][]string{}, commented: map[string][]string{}}
	section := ""
	sc := bufio.NewScanner(f)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		for strings.HasSuffix(line, `\`) && sc.Scan() {
			lineNo++
			line = strings.TrimSuffix(line, `\`) + " " + strings.TrimSpace(sc.Text())
		}
		switch {
		case line == "":
		case line[0] == '#' || line[0] == ';':
			if m := commentedDirective.FindStringSubmatch(line); m != nil {
				u.commented[m[1]] = append(u.commented[m[1]], m[2])
			}
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				t.Fatalf("%s:%d: malformed section header %q", path, lineNo, line)
			}
			section = line[1 : len(line)-1]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a directive inside a section: %q", path, lineNo, line)
			}
			key := section + "." + strings.TrimSpace(k)
			u.values[key] = append(u.values[key], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read unit: %v", err)
	}
	return u
}

// last returns the effective value of key: the last assignment wins.
func (u unit) last(key string) (string, bool) {
	v := u.values[key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

func TestUnitDirectives(t *testing.T) {
	u := parseUnit(t, unitPath)
	tests := []struct {
		key  string
		want string // exact value; "" means any non-empty value
	}{
		{"Service.Type", "notify"},
		{"Service.NotifyAccess", "main"},
		{"Service.ExecStart", "/usr/local/bin/mailgate run -c /etc/mailgate/config.toml"},
		{"Service.ExecReload", "/bin/kill -HUP $MAINPID"},
		{"Service.WatchdogSec", "30s"},
		{"Service.Restart", "on-failure"},
		{"Service.TimeoutStopSec", "45s"},
		{"Service.StateDirectory", "mailgate"},
		{"Service.StateDirectoryMode", "0700"},
		{"Service.ConfigurationDirectory", "mailgate"},
		{"Service.DynamicUser", "yes"},
		{"Service.NoNewPrivileges", "yes"},
		{"Service.ProtectSystem", "strict"},
		{"Service.CapabilityBoundingSet", ""},
		{"Service.RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"},
		{"Service.MemoryDenyWriteExecute", "yes"},
		{"Service.UMask", "0077"},
		{"Service.MemoryHigh", ""},
		{"Service.MemoryMax", ""},
		{"Install.WantedBy", "multi-user.target"},
	}
	for _, tt := range tests {
		got, ok := u.last(tt.key)
		switch {
		case !ok:
			t.Errorf("%s missing", tt.key)
		case tt.want != "" && got != tt.want:
			t.Errorf("%s=%s, want %s", tt.key, got, tt.want)
		}
	}
	// CapabilityBoundingSet= must be present and empty: no capability at all.
	if got, _ := u.last("Service.CapabilityBoundingSet"); got != "" {
		t.Errorf("CapabilityBoundingSet=%s, want empty", got)
	}
	// A daemon that needs the network must not be cut off from it.
	for _, key := range []string{"Service.PrivateNetwork", "Service.IPAddressDeny"} {
		if v, ok := u.last(key); ok && v != "" && v != "no" {
			t.Errorf("%s=%s would cut mailgate off from its mail servers and Userlike", key, v)
		}
	}
}

// TestUnitCredentials checks that the commented LoadCredential= examples
// are well formed and use credential names that config.example.toml refers
// to, so that uncommenting both sides lines them up.
func TestUnitCredentials(t *testing.T) {
	u := parseUnit(t, unitPath)
	examples := u.commented["LoadCredential"]
	if len(examples) == 0 {
		t.Fatal("no LoadCredential= example in the unit")
	}
	cfg, err := os.ReadFile(filepath.Join("..", "..", "config.example.toml"))
	if err != nil {
		t.Fatalf("read config.example.toml: %v", err)
	}
	for _, ex := range examples {
		name, path, ok := strings.Cut(ex, ":")
		if !ok || name == "" || !filepath.IsAbs(path) {
			t.Errorf("LoadCredential=%s: want NAME:/absolute/path", ex)
			continue
		}
		if !strings.Contains(string(cfg), `_credential = "`+name+`"`) {
			t.Errorf("LoadCredential=%s: config.example.toml has no *_credential = %q", ex, name)
		}
	}
}

// systemdAnalyze returns the path of systemd-analyze, skipping the test
// when it is missing or older than version 250 (no --offline).
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		t.Skipf("systemd-analyze --version: %v", err)
	}
	m := regexp.MustCompile(`^systemd (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Skipf("systemd-analyze --version: unrecognised output %q", out)
	}
	if v, _ := strconv.Atoi(string(m[1])); v < 250 {
		t.Skipf("systemd %d is older than 250: no --offline", v)
	}
	return path
}

// exposureLine matches the summary line of systemd-analyze security.
var exposureLine = regexp.MustCompile(`Overall exposure level for \S+: (\d+(?:\.\d+)?)`)

func TestUnitSecurityExposure(t *testing.T) {
	analyze := systemdAnalyze(t)
	out, err := exec.Command(analyze, "security", "--offline=yes", "--no-pager", "./"+unitPath).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := exposureLine.FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no overall exposure level in output:\n%s", out)
	}
	exposure, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatalf("exposure %q: %v", m[1], err)
	}
	if exposure > maxExposure {
		t.Errorf("exposure level %.1f, want <= %.1f; systemd-analyze says:\n%s", exposure, maxExposure, out)
	}
	t.Logf("exposure level %.1f", exposure)
}

// TestUnitVerify runs systemd-analyze verify on a copy of the unit whose
// ExecStart points at an existing binary, so that a misspelt or unknown
// directive (which systemd ignores with only a warning) fails the test.
func TestUnitVerify(t *testing.T) {
	analyze := systemdAnalyze(t)
	raw, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatalf("read unit: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable: %v", err)
	}
	const exec0 = "ExecStart=/usr/local/bin/mailgate "
	if !strings.Contains(string(raw), exec0) {
		t.Fatalf("unit has no %q line", exec0)
	}
	copyPath := filepath.Join(t.TempDir(), unitPath)
	patched := strings.Replace(string(raw), exec0, "ExecStart="+self+" ", 1)
	if err := os.WriteFile(copyPath, []byte(patched), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--no-pager", copyPath).CombinedOutput()
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// Executables of the host (ExecReload's kill) are not the unit's
		// business here.
		if line == "" || strings.Contains(line, "is not executable") {
			continue
		}
		problems = append(problems, line)
	}
	if err != nil || len(problems) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(problems, "\n"))
	}
}
