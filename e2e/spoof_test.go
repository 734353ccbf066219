//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// trustedMTA is the authserv-id of the (simulated) receiving mail server
// whose Authentication-Results headers mailgate is told to trust.
const trustedMTA = "mx.example.test"

// TestSpoofing runs mailgate with sender verification as shipped
// (require = "dmarc", on_fail = "quarantine") and trusted_authserv_ids =
// ["mx.example.test"]. The test plays the trusted MTA: it prepends the
// Authentication-Results header the MTA would add, then delivers with
// doveadm save. Genuine senders (a trusted dmarc=pass for the From domain)
// must be posted; forged ones (no header, an untrusted authserv-id,
// dmarc=fail, a forged trusted pass below the real header, a pass for
// another domain, ...) must be moved to the Quarantine folder and never
// posted.
func TestSpoofing(t *testing.T) {
	ul, g := startScenario(t, mailgateOptions{
		RateLimit: 1000,
		Verify:    fmt.Sprintf("trusted_authserv_ids = [%q]", trustedMTA),
	})

	type spoofCase struct {
		name    string
		genuine bool
		ar      []string // Authentication-Results values, topmost first
		from    string   // From header value; default "<sender>"
		sender  string
	}
	pass := trustedMTA + "; spf=pass smtp.mailfrom=example.test; dkim=pass header.d=example.test; dmarc=pass header.from=example.test"
	cases := []spoofCase{
		{name: "genuine-dmarc-pass", genuine: true, sender: "jane@example.test", ar: []string{pass}},
		{name: "genuine-folded-and-upper-case", genuine: true, sender: "bob@example.test",
			ar: []string{"MX.Example.TEST;\r\n\tdkim=pass header.d=example.test header.s=s1;\r\n\tdmarc=pass (p=reject) header.from=example.test"}},
		{name: "genuine-untrusted-header-below", genuine: true, sender: senderOf(1),
			ar: []string{pass, "mx.attacker.test; dmarc=fail header.from=example.test"}},
		{name: "genuine-dkim-aligned-no-policy", genuine: true, sender: senderOf(2),
			ar: []string{trustedMTA + "; dkim=pass header.d=mail.example.test; dmarc=none header.from=example.test"}},

		{name: "forged-no-header", sender: "jane@example.test"},
		{name: "forged-untrusted-authserv-id", sender: "jane@example.test",
			ar: []string{"mx.attacker.test; spf=pass smtp.mailfrom=example.test; dmarc=pass header.from=example.test"}},
		{name: "forged-lookalike-authserv-id", sender: "jane@example.test",
			ar: []string{"mx.example.test.attacker.test; dmarc=pass header.from=example.test"}},
		{name: "forged-no-authserv-id", sender: "jane@example.test",
			ar: []string{"dmarc=pass header.from=example.test"}},
		{name: "forged-dmarc-fail", sender: "bob@example.test",
			ar: []string{trustedMTA + "; spf=fail smtp.mailfrom=example.test; dkim=pass header.d=example.test; dmarc=fail header.from=example.test"}},
		{name: "forged-trusted-pass-below-real", sender: "bob@example.test",
			ar: []string{trustedMTA + "; spf=softfail smtp.mailfrom=attacker.test; dkim=none; dmarc=fail header.from=example.test", pass}},
		{name: "forged-trusted-pass-below-real-none", sender: senderOf(3),
			ar: []string{trustedMTA + "; spf=none smtp.mailfrom=attacker.test; dkim=none", pass}},
		{name: "forged-pass-for-other-domain", sender: "jane@example.test",
			ar: []string{trustedMTA + "; dkim=pass header.d=attacker.test; dmarc=pass header.from=attacker.test"}},
		{name: "forged-display-name", sender: "evil@attacker.test", from: `"jane@example.test" <evil@attacker.test>`,
			ar: []string{pass}},
		{name: "forged-dkim-only-unaligned", sender: senderOf(4),
			ar: []string{trustedMTA + "; dkim=pass header.d=attacker.test; dmarc=none header.from=example.test"}},
	}

	var genuine, forged []string
	for _, c := range cases {
		from := c.from
		if from == "" {
			from = "<" + c.sender + ">"
		}
		marker := "sp-" + c.name
		var b strings.Builder
		for _, ar := range c.ar {
			b.WriteString("Authentication-Results: " + ar + "\r\n")
		}
		fmt.Fprintf(&b, "Received: from client.example.test by %s with ESMTP; %s\r\n", trustedMTA, time.Now().Format(time.RFC1123Z))
		raw := email{From: c.sender, Subject: "Account question " + marker, Body: "Please reset my account: " + marker + "."}.raw()
		body := strings.Replace(string(raw), "From: <"+c.sender+">", "From: "+from, 1)
		deliver(t, supportUser, []byte(b.String()+body))
		if c.genuine {
			genuine = append(genuine, marker)
		} else {
			forged = append(forged, marker)
		}
	}

	// Settled: a late post would already be among the posts (see
	// waitSettled).
	st, ok := g.waitSettled(t, 60*time.Second, len(cases))
	if !ok {
		t.Fatalf("not settled within 60s: %s\nlog:\n%s", st, g.LogTail(40))
	}
	q, qok := waitCount(t, supportUser, "Quarantine", len(forged), 30*time.Second)
	inbox, _ := waitCount(t, supportUser, "INBOX", len(genuine), 30*time.Second)
	posts := ul.Accepted()
	st = g.Status(t)
	t.Logf("result: %d genuine, %d forged; status %s; INBOX %d, Quarantine %d; %d posts",
		len(genuine), len(forged), st, inbox, q, len(posts))

	verdicts := map[string]*ledgerRow{}
	for _, r := range g.Ledger(t) {
		for _, c := range cases {
			if strings.Contains(r.Subject, "sp-"+c.name) && !strings.Contains(r.Subject, "sp-"+c.name+"-") {
				verdicts[c.name] = r
			}
		}
	}
	for _, c := range cases {
		marker := "sp-" + c.name
		n := countMarker(posts, marker+".")
		r := verdicts[c.name]
		state, reason := "(no ledger row)", ""
		if r != nil {
			state, reason = string(r.State), r.Reason
		}
		t.Logf("%-38s %-11s posts=%d  %s", c.name, state, n, clipText(reason, 140))
		switch {
		case c.genuine && (n != 1 || state != statePosted):
			t.Errorf("genuine %s: %s, posted %d times; want posted once (%s)", c.name, state, n, reason)
		case !c.genuine && (n != 0 || state != stateQuarantined):
			t.Errorf("forged %s: %s, posted %d times; want quarantined, never posted (%s)", c.name, state, n, reason)
		}
	}
	if !qok {
		t.Errorf("the Quarantine folder holds %d messages, want the %d forged ones", q, len(forged))
	}
	if inbox != len(genuine) {
		t.Errorf("INBOX holds %d messages, want the %d genuine ones", inbox, len(genuine))
	}
	if st.Inbound[stateQuarantined] != len(forged) || st.Inbound[statePosted] != len(genuine) {
		t.Errorf("status %s, want quarantined=%d posted=%d", st, len(forged), len(genuine))
	}
	for _, p := range posts {
		for _, f := range forged {
			if strings.Contains(p.Text, f+".") {
				t.Errorf("forged email %s reached Userlike as %q", f, p.Email)
			}
		}
	}
	if n := len(posts); n != len(genuine) {
		t.Errorf("Userlike received %d posts, want %d:\n%s", n, len(genuine), describePosts(posts))
	}
}
