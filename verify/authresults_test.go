package verify

import (
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/authres"
)

// TestCleanARValueStopsInjection shows why values are cleaned before
// authres.Parse: read raw, attacker text in a comment or a quoted string
// becomes a DMARC pass of its own.
func TestCleanARValueStopsInjection(t *testing.T) {
	tests := []string{
		`mx.google.com; spf=pass (domain of "x;dmarc=pass header.from=bank.example;"@evil.org designates) smtp.mailfrom=evil.org; dmarc=none header.from=bank.example`,
		`mx.google.com; spf=pass smtp.mailfrom="x;dmarc=pass header.from=bank.example;"@evil.org; dmarc=none header.from=bank.example`,
		`mx.google.com; spf=pass reason="a b; dmarc=pass header.from=bank.example; c" smtp.mailfrom=evil.org`,
	}
	for _, v := range tests {
		if !dmarcPassFor(t, v, "bank.example") {
			t.Fatalf("precondition: raw authres.Parse of %q should be fooled", v)
		}
		f := readARField(v)
		if f.ambiguous {
			t.Fatalf("%q: unexpectedly ambiguous", v)
		}
		if dmarcPassFor(t, f.clean, "bank.example") {
			t.Errorf("cleaned %q still yields dmarc=pass: %q", v, f.clean)
		}
		if f.id != "mx.google.com" {
			t.Errorf("id = %q", f.id)
		}
	}
}

func dmarcPassFor(t *testing.T, v, domain string) bool {
	t.Helper()
	_, results, _ := authres.Parse(v)
	for _, r := range results {
		if d, ok := r.(*authres.DMARCResult); ok && d.Value == authres.ResultPass && strings.EqualFold(d.From, domain) {
			return true
		}
	}
	return false
}

func TestReadARField(t *testing.T) {
	tests := []struct {
		in        string
		id        string
		ambiguous bool
	}{
		{in: "mx.google.com; dmarc=pass header.from=a.example", id: "mx.google.com"},
		{in: "MX.Google.COM 1; none", id: "mx.google.com"},
		{in: "  mx.example.org (Postfix) ;\r\n\tdkim=pass header.d=a.example", id: "mx.example.org"},
		{in: "spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=a.example", id: AuthservIDAbsent},
		{in: `"(absent)"; dmarc=pass`, id: `"(absent)"`},
		{in: "(absent); dmarc=pass", id: ""},
		{in: "", id: ""},
		{in: "mx.example.org; dkim=pass (unclosed", id: "mx.example.org", ambiguous: true},
		{in: `mx.example.org; dkim=pass reason="unclosed`, id: "mx.example.org", ambiguous: true},
		{in: `mx.example.org; spf=pass (of "a)b"@c.example) smtp.mailfrom=c.example`, id: "mx.example.org", ambiguous: true},
		{in: `mx.example.org; spf=pass (of "a b"@c.example \) x) smtp.mailfrom=c.example`, id: "mx.example.org"},
	}
	for _, tt := range tests {
		f := readARField(tt.in)
		if f.id != tt.id || f.ambiguous != tt.ambiguous {
			t.Errorf("readARField(%q) = id %q ambiguous %v, want %q %v (clean %q)", tt.in, f.id, f.ambiguous, tt.id, tt.ambiguous, f.clean)
		}
	}
}

func TestAligned(t *testing.T) {
	tests := []struct {
		auth, from string
		strict     bool
		want       bool
	}{
		{"example.com", "example.com", false, true},
		{"example.com", "example.com", true, true},
		{"mail.example.com", "example.com", false, true},
		{"mail.example.com", "example.com", true, false},
		{"example.com", "mail.example.com", false, true},
		{"evil-example.com", "example.com", false, false},
		{"example.com.evil.net", "example.com", false, false},
		{"co.uk", "shop.co.uk", false, false},
		{"a.co.uk", "b.co.uk", false, false},
		{"com", "com", true, false},
		{"", "example.com", false, false},
	}
	for _, tt := range tests {
		if got := aligned(tt.auth, tt.from, tt.strict); got != tt.want {
			t.Errorf("aligned(%q, %q, strict=%v) = %v, want %v", tt.auth, tt.from, tt.strict, got, tt.want)
		}
	}
}

func TestDomainOfIdentity(t *testing.T) {
	tests := []struct{ in, want string }{
		{"example.com", "example.com"},
		{"Jane@Example.COM", "example.com"},
		{"@example.com", "example.com"},
		{`"jane doe"@example.com`, "example.com"},
		{`"example.com"`, "example.com"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"XN--BCHER-KVA.example.", "xn--bcher-kva.example"},
		{"", ""},
		{"exa mple.com", ""},
		{"[192.0.2.1]", ""},
	}
	for _, tt := range tests {
		got, err := domainOfIdentity(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("domainOfIdentity(%q) = %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("domainOfIdentity(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
}
