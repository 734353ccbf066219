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

// TestDaemonContactForm: mail from a listed, verified form sender is posted
// under its Reply-To and flagged; inspect says the same.
func TestDaemonContactForm(t *testing.T) {
	e := newTestEnv(t, `form_senders = ["Forms@example.test"]`)
	raw := "Authentication-Results: mx.example.test; dmarc=pass header.from=example.test\n" +
		"From: Website form <forms@example.test>\nReply-To: visitor@visitor.test\nTo: support@example.test\n" +
		"Subject: Contact form\nMessage-ID: <form-1@example.test>\nDate: Tue, 24 Nov 2026 10:00:00 +0000\n\nPlease call me back.\n"
	path := filepath.Join(t.TempDir(), "form.eml")
	if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "", "inspect", "-c", e.cfgPath, path)
	if code != 0 {
		t.Fatalf("inspect: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, `"email": "visitor@visitor.test"`) || !strings.Contains(out, `"via_form": "forms@example.test"`) {
		t.Errorf("inspect does not take the Reply-To as the contact:\n%s", out)
	}
	e.deliver(raw)
	e.start()
	p := e.ul.waitPosts(1)[0]
	if p.Email != "visitor@visitor.test" {
		t.Errorf("posted under %q, want the Reply-To", p.Email)
	}
	if !strings.HasPrefix(p.Text, "[mailgate] via contact form (address not verified)\n\n") || !strings.Contains(p.Text, "Please call me back.") {
		t.Errorf("posted text %q", p.Text)
	}
}
