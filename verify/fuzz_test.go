package verify

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"mailgate/mailaddr"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// fuzzKeys uses a fixed key, so saved corpus entries keep valid signatures.
func fuzzKeys() *testKeys {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	pub := priv.Public().(ed25519.PublicKey)
	return &testKeys{
		res: &fakeResolver{records: map[string][]string{
			"s1._domainkey.signed.test": {"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)},
		}},
		keys: map[string]ed25519.PrivateKey{"signed.test": priv},
	}
}

// FuzzVerify feeds arbitrary messages to Verify. It must not panic, and a
// passing verdict must be backed by what its method claims: an Allow entry,
// a header of the trusted authserv-id, or a DKIM signature that really
// verifies.
func FuzzVerify(f *testing.F) {
	keys := fuzzKeys()
	f.Add(message(body, "Authentication-Results: mx.trusted.test; dmarc=pass header.from=example.com", "From: a@example.com"))
	f.Add(message(body, "Authentication-Results: mx.trusted.test; dkim=pass header.d=mail.example.com", "From: Ä <a@EXAMPLE.com>"))
	f.Add(message(body, "Authentication-Results: mx.evil.test; dmarc=pass header.from=example.com", "From: a@example.com"))
	f.Add(message(body, `Authentication-Results: mx.trusted.test; spf=pass (of "x);dmarc=pass header.from=b.test;(") smtp.mailfrom=b.test`, "From: x@b.test"))
	f.Add(message(body, "From: vip@ok.test"))
	f.Add(message(body, "From: g: a@allowed.test;"))
	f.Add(message(body, "From: =?utf-8?q?a=40b.test?= <c@bücher.example>"))
	f.Add(keys.sign(f, message(body, "From: a@signed.test"), "signed.test", time.Time{}))
	f.Add([]byte("From: a@b.test\n\n"))
	f.Add([]byte{})

	v, err := New(Options{
		TrustedAuthservIDs: []string{"mx.trusted.test"},
		Allow:              []string{"allowed.test", "vip@ok.test"},
		SelfDKIM:           true,
		Resolver:           keys.res,
		DNSTimeout:         time.Second,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got := v.Verify(context.Background(), raw)
		switch got.Result {
		case ResultFail:
			if got.Method != "" || got.Domain != "" {
				t.Fatalf("failing verdict with method/domain: %+v", got)
			}
			return
		case ResultPass:
		default:
			t.Fatalf("unexpected result %q", got.Result)
		}
		at := strings.LastIndexByte(got.From, '@')
		if at <= 0 || got.From != strings.ToLower(got.From) || got.Reason == "" {
			t.Fatalf("passing verdict with bad From/Reason: %+v", got)
		}
		fromDomain := got.From[at+1:]
		switch got.Method {
		case MethodAllowlist:
			if fromDomain != "allowed.test" && got.From != "vip@ok.test" {
				t.Fatalf("allowlist pass for %q", got.From)
			}
		case MethodAuthresDMARC, MethodAuthresDKIM, MethodAuthresSPF:
			if !bytes.Contains(bytes.ToLower(raw), []byte("mx.trusted.test")) {
				t.Fatalf("A-R pass without a trusted header: %+v", got)
			}
			if !aligned(got.Domain, fromDomain, false) {
				t.Fatalf("A-R pass for unaligned domain: %+v", got)
			}
		case MethodDKIMSelf:
			verifs, _ := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{
				LookupTXT: func(name string) ([]string, error) {
					return keys.res.LookupTXT(context.Background(), name)
				},
			})
			ok := false
			for _, vf := range verifs {
				if vf.Err == nil && strings.EqualFold(vf.Domain, got.Domain) && aligned(got.Domain, fromDomain, false) {
					ok = true
				}
			}
			if !ok {
				t.Fatalf("dkim-self pass without a valid aligned signature: %+v", got)
			}
		default:
			t.Fatalf("pass with unknown method: %+v", got)
		}
	})
}

// FuzzParseFrom checks the From parser: no panics, and an accepted address
// is normalized and parses again to itself.
func FuzzParseFrom(f *testing.F) {
	for _, s := range []string{
		"Jane <jane@example.com>", `"a@b.c" <x@y.z>`, "a@b.c, d@e.f", "g: a@b.c;", "<@r:a@b.c>",
		"=?utf-8?b?w4Q=?= <ä@bücher.example>", "a(comment)@b.c", `"q"@b.c`, "a@[1.2.3.4]", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseFrom([]string{s})
		if err != nil {
			return
		}
		// Only ASCII letters are lower-cased (see package mailaddr): a
		// non-ASCII local part keeps its case.
		if id.addr != id.local+"@"+id.domain || id.addr != mailaddr.LowerASCII(id.addr) {
			t.Fatalf("not normalized: %+v", id)
		}
		if d, err := asciiDomain(id.domain); err != nil || d != id.domain {
			t.Fatalf("domain %q is not canonical ASCII: %q, %v", id.domain, d, err)
		}
		again, err := parseFrom([]string{id.addr})
		if err != nil || again.addr != id.addr {
			t.Fatalf("%q -> %q does not parse to itself: %+v, %v", s, id.addr, again, err)
		}
	})
}

// FuzzReadARField checks the Authentication-Results reader: no panics, and a
// header read as unambiguous has no comment left and no ";" inside quotes.
func FuzzReadARField(f *testing.F) {
	for _, s := range []string{
		"mx.google.com; dmarc=pass (p=REJECT) header.from=a.example",
		`x; spf=pass (of "a)b"@c) smtp.mailfrom="a;b"@c`,
		"spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=a.example",
		`a; dkim=pass reason="x\"y" (c\)d)`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fld := readARField(s)
		fld.parse()
		if fld.ambiguous {
			return
		}
		inQuote := false
		for _, r := range fld.clean {
			switch {
			case r == '"':
				inQuote = !inQuote
			case inQuote && (r == ';' || r == ' ' || r == '\\'):
				t.Fatalf("%q: %q inside a quoted string of %q", s, r, fld.clean)
			case !inQuote && (r == '(' || r == ')'):
				t.Fatalf("%q: comment left in %q", s, fld.clean)
			}
		}
	})
}

// headerEndByLines is headerEnd's definition as a scan of lines: the
// length up to and including the first empty line ("\n" or "\r\n"), 0
// when the first line is empty (no header at all), or -1. It is the oracle
// for FuzzHeaderEnd.
func headerEndByLines(b []byte) int {
	for start := 0; start < len(b); {
		nl := bytes.IndexByte(b[start:], '\n')
		if nl < 0 {
			return -1
		}
		if line := b[start : start+nl]; len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			if start == 0 {
				return 0
			}
			return start + nl + 1
		}
		start += nl + 1
	}
	return -1
}

// FuzzHeaderEnd checks that headerEnd finds the end of the header block
// where a scan of its lines does.
func FuzzHeaderEnd(f *testing.F) {
	for _, s := range []string{"", "\n", "\r\n", "A: b\r\n\r\nbody\n\nmore", "A: b\n\nbody\r\n\r\n", "A: b\n\r\n", "A: b\r\nC: d\n\n\r\n", "no end"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := headerEnd(b), headerEndByLines(b); got != want {
			t.Fatalf("headerEnd(%q) = %d, the line scan says %d", b, got, want)
		}
	})
}
