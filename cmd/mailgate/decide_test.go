package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestInspectDecidesAsDaemon runs the same emails through the daemon and
// through `mailgate inspect` for several verify settings, and requires the
// same emails to be posted by both. inspect once built its verifier apart
// from the daemon and dropped strict_alignment.
func TestInspectDecidesAsDaemon(t *testing.T) {
	mail := func(from, authres, id string) string {
		return "Authentication-Results: mx.example.test; " + authres + "\n" +
			"From: Customer <" + from + ">\nTo: support@example.test\nSubject: Question " + id + "\n" +
			"Message-ID: <" + id + "@client.test>\nDate: Tue, 24 Nov 2026 10:00:00 +0000\n\nA question.\n"
	}
	emails := map[string]string{
		"dmarc@example.test":   mail("dmarc@example.test", "dmarc=pass header.from=example.test", "m1"),
		"relaxed@example.test": mail("relaxed@example.test", "dkim=pass header.d=mail.example.test; dmarc=none header.from=example.test", "m2"),
		"spf@example.test":     mail("spf@example.test", "spf=pass smtp.mailfrom=bounce@example.test; dmarc=none header.from=example.test", "m3"),
		"partner@partner.test": mail("partner@partner.test", "dmarc=fail header.from=partner.test", "m4"),
		"forged@example.test":  strings.Replace(mail("forged@example.test", "dmarc=pass header.from=example.test", "m5"), "mx.example.test;", "evil.test;", 1),
	}
	// Each setting with the emails the daemon must post under it, so that
	// the test also fails if both sides ignore a setting.
	settings := []struct {
		verify string
		posted []string
	}{
		{"", []string{"dmarc@example.test", "relaxed@example.test", "spf@example.test"}},
		{"strict_alignment = true", []string{"dmarc@example.test", "spf@example.test"}},
		{`require = "dkim"`, []string{"relaxed@example.test"}},
		{"strict_alignment = true\nallow = [\"partner@partner.test\"]", []string{"dmarc@example.test", "partner@partner.test", "spf@example.test"}},
	}
	for _, tt := range settings {
		verifyTOML := tt.verify
		t.Run(strings.ReplaceAll(verifyTOML, "\n", "; "), func(t *testing.T) {
			e := newTestEnv(t, verifyTOML)
			dir := t.TempDir()
			var inspected []string
			for from, raw := range emails {
				path := filepath.Join(dir, from+".eml")
				if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
					t.Fatal(err)
				}
				code, out, errOut := runCLI(t, "", "inspect", "-c", e.cfgPath, path)
				if code != 0 {
					t.Fatalf("inspect %s: exit %d: %s", from, code, errOut)
				}
				if strings.Contains(out, `"action": "post"`) {
					inspected = append(inspected, from)
				}
				e.deliver(raw)
			}
			slices.Sort(inspected)

			e.start()
			settled := func(s string) bool {
				n := 0
				for _, part := range strings.Fields(s) {
					var state string
					var c int
					if _, err := fmt.Sscanf(strings.Replace(part, "=", " ", 1), "%s %d", &state, &c); err == nil && (state == "posted" || state == "quarantined") {
						n += c
					}
				}
				return n == len(emails)
			}
			e.waitLedger(settled)
			var posted []string
			for _, p := range e.ul.received() {
				if !slices.Contains(posted, p.Email) {
					posted = append(posted, p.Email)
				}
			}
			slices.Sort(posted)
			if !slices.Equal(posted, inspected) {
				t.Errorf("daemon posted %v, inspect says %v", posted, inspected)
			}
			if !slices.Equal(posted, tt.posted) {
				t.Errorf("daemon posted %v, want %v", posted, tt.posted)
			}
		})
	}
}
