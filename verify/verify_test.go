package verify

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// fakeResolver serves TXT records from a map and counts queries.
type fakeResolver struct {
	mu      sync.Mutex
	records map[string][]string
	queries atomic.Int64
}

func (f *fakeResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	f.queries.Add(1)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if txts, ok := f.records[strings.ToLower(name)]; ok {
		return append([]string(nil), txts...), nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// testKeys holds one signing key per domain, published through res.
type testKeys struct {
	res  *fakeResolver
	keys map[string]ed25519.PrivateKey
}

// newTestKeys generates a key for each domain and publishes it at
// s1._domainkey.<domain>. It also publishes an adkim=s DMARC record for
// strict.example.
func newTestKeys(t testing.TB, domains ...string) *testKeys {
	t.Helper()
	k := &testKeys{res: &fakeResolver{records: map[string][]string{
		"_dmarc.strict.example": {"v=DMARC1; p=reject; adkim=s"},
	}}, keys: map[string]ed25519.PrivateKey{}}
	for _, d := range domains {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k.keys[d] = priv
		k.res.records["s1._domainkey."+d] = []string{"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}
	}
	return k
}

// sign DKIM-signs raw for domain (whose key must exist), with an optional
// expiry, and returns the signed message.
func (k *testKeys) sign(t testing.TB, raw []byte, domain string, expires time.Time) []byte {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, bytes.NewReader(raw), &dkim.SignOptions{
		Domain:                 domain,
		Selector:               "s1",
		Signer:                 k.keys[domain],
		HeaderKeys:             []string{"From", "To", "Subject", "Date", "Message-ID"},
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		Expiration:             expires,
	})
	if err != nil {
		t.Fatalf("sign for %s: %v", domain, err)
	}
	return out.Bytes()
}

// message writes a message with the given header lines (in order, topmost
// first) and body, with CRLF line ends.
func message(body string, headers ...string) []byte {
	var b strings.Builder
	for _, h := range headers {
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	b.WriteString("To: support@shop.example\r\nSubject: Where is my order?\r\n")
	b.WriteString("Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m1@example.com>\r\n\r\n")
	b.WriteString(strings.ReplaceAll(body, "\n", "\r\n"))
	return []byte(b.String())
}

const body = "Hello,\nmy order 1234 has not arrived.\nJane\n"

func TestVerify(t *testing.T) {
	keys := newTestKeys(t, "example.com", "mail.example.com", "evil.org", "mail.strict.example")
	realNow := time.Now()

	base := Options{
		TrustedAuthservIDs: []string{"mx.google.com", "mx.shop.example"},
		Allow:              []string{"partner@friends.example", "trusted.example"},
		Resolver:           keys.res,
	}
	withSelf := func(o Options) Options { o.SelfDKIM = true; return o }
	strict := func(o Options) Options { o.StrictAlignment = true; return o }
	require := func(r string) func(Options) Options {
		return func(o Options) Options { o.Require = r; return o }
	}

	unsigned := message(body, "From: Jane Doe <jane@example.com>")
	signedBy := func(domain string, headers ...string) []byte {
		return keys.sign(t, message(body, headers...), domain, time.Time{})
	}

	tests := []struct {
		name       string
		opts       func(Options) Options
		raw        []byte
		wantResult string
		wantMethod string
		wantDomain string
		wantFrom   string
		wantName   string
		reasonHas  string
	}{
		// Genuine senders, one per method.
		{
			name: "authres dmarc pass (gmail style)",
			raw: message(body,
				"Authentication-Results: mx.google.com;\r\n       dkim=pass header.i=@example.com header.s=s1 header.b=AbCd;\r\n       spf=pass (google.com: domain of jane@example.com designates 192.0.2.1 as permitted sender) smtp.mailfrom=jane@example.com;\r\n       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.com",
				"From: Jane Doe <jane@example.com>"),
			wantResult: ResultPass, wantMethod: MethodAuthresDMARC, wantDomain: "example.com",
			wantFrom: "jane@example.com", wantName: "Jane Doe",
			reasonHas: "dmarc=pass for example.com in Authentication-Results from mx.google.com",
		},
		{
			name: "authres dkim aligned, domain without DMARC policy",
			raw: message(body,
				"Authentication-Results: mx.shop.example; dkim=pass header.d=example.com header.s=s1; spf=neutral smtp.mailfrom=b@bounce.other.net; dmarc=none header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultPass, wantMethod: MethodAuthresDKIM, wantDomain: "example.com", wantFrom: "jane@example.com",
		},
		{
			name: "authres dkim aligned via header.i only, no dmarc result",
			raw: message(body,
				"Authentication-Results: mx.google.com; dkim=pass header.i=@example.com header.s=s1",
				"From: jane@example.com"),
			wantResult: ResultPass, wantMethod: MethodAuthresDKIM, wantDomain: "example.com",
		},
		{
			name: "authres dmarc bestguesspass falls back to aligned dkim",
			raw: message(body,
				"Authentication-Results: mx.shop.example; dkim=pass header.d=example.com; dmarc=bestguesspass action=none header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultPass, wantMethod: MethodAuthresDKIM,
		},
		{
			name: "authres spf aligned",
			raw: message(body,
				"Authentication-Results: mx.shop.example; spf=pass smtp.mailfrom=bounces@mail.example.com; dkim=none",
				"From: jane@example.com"),
			wantResult: ResultPass, wantMethod: MethodAuthresSPF, wantDomain: "mail.example.com",
		},
		{
			name:       "self dkim",
			opts:       withSelf,
			raw:        signedBy("example.com", "From: Jane Doe <jane@example.com>"),
			wantResult: ResultPass, wantMethod: MethodDKIMSelf, wantDomain: "example.com",
			wantFrom: "jane@example.com", wantName: "Jane Doe",
		},
		{
			name:       "self dkim ignores untrusted A-R",
			opts:       withSelf,
			raw:        signedBy("example.com", "Authentication-Results: relay.other.net; dmarc=fail header.from=example.com", "From: jane@example.com"),
			wantResult: ResultPass, wantMethod: MethodDKIMSelf,
		},
		{
			name:       "allowlisted address",
			raw:        message(body, "From: Partner <Partner@Friends.example>"),
			wantResult: ResultPass, wantMethod: MethodAllowlist, wantFrom: "partner@friends.example", wantDomain: "friends.example",
		},
		{
			name:       "allowlisted domain",
			raw:        message(body, "From: bob@TRUSTED.example"),
			wantResult: ResultPass, wantMethod: MethodAllowlist, wantFrom: "bob@trusted.example",
		},
		{
			name:       "require none",
			opts:       require(RequireNone),
			raw:        unsigned,
			wantResult: ResultNone, wantFrom: "jane@example.com",
			reasonHas: "verification disabled (verify.require = none)",
		},

		// Alignment.
		{
			name:       "self dkim subdomain signer, relaxed",
			opts:       withSelf,
			raw:        signedBy("mail.example.com", "From: jane@example.com"),
			wantResult: ResultPass, wantMethod: MethodDKIMSelf, wantDomain: "mail.example.com",
		},
		{
			name:       "self dkim subdomain signer, strict",
			opts:       func(o Options) Options { return strict(withSelf(o)) },
			raw:        signedBy("mail.example.com", "From: jane@example.com"),
			wantResult: ResultFail, reasonHas: "not aligned (strict)",
		},
		{
			name:       "self dkim subdomain signer, domain publishes adkim=s",
			opts:       withSelf,
			raw:        signedBy("mail.strict.example", "From: jane@strict.example"),
			wantResult: ResultFail, reasonHas: "not aligned (strict, as the domain's DMARC record asks",
		},
		{
			name: "authres dkim subdomain signer, relaxed",
			raw: message(body,
				"Authentication-Results: mx.google.com; dkim=pass header.d=mail.example.com; dmarc=none header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultPass, wantMethod: MethodAuthresDKIM, wantDomain: "mail.example.com",
		},
		{
			name: "authres dkim subdomain signer, strict",
			opts: strict,
			raw: message(body,
				"Authentication-Results: mx.google.com; dkim=pass header.d=mail.example.com; dmarc=none header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultFail,
		},
		{
			name: "dkim signer is a public suffix",
			raw: message(body,
				"Authentication-Results: mx.google.com; dkim=pass header.d=co.uk",
				"From: jane@shop.co.uk"),
			wantResult: ResultFail,
		},

		// Forgeries.
		{
			name: "forged trusted A-R below the real one (real says none)",
			raw: message(body,
				"Authentication-Results: mx.google.com; dkim=none; spf=softfail smtp.mailfrom=evil.org; dmarc=none header.from=example.com",
				"Authentication-Results: mx.google.com; dkim=pass header.d=example.com; spf=pass smtp.mailfrom=example.com; dmarc=pass header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultFail, wantFrom: "jane@example.com",
			reasonHas: "spf=softfail",
		},
		{
			name: "forged trusted A-R below the real one (real says fail)",
			raw: message(body,
				"Authentication-Results: mx.google.com; dmarc=fail (p=REJECT) header.from=example.com",
				"Received: from evil.org by relay.evil.org",
				"Authentication-Results: mx.google.com; dmarc=pass header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultFail, reasonHas: "DMARC did not pass",
		},
		{
			name: "untrusted authserv-id above the trusted one says pass",
			raw: message(body,
				"Authentication-Results: mx.evil.org; dmarc=pass header.from=example.com",
				"Authentication-Results: mx.google.com; dmarc=fail header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultFail,
		},
		{
			name: "only an untrusted A-R saying pass",
			raw: message(body,
				"Authentication-Results: mx.evil.org; dkim=pass header.d=example.com; dmarc=pass header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultFail,
			reasonHas:  "no trusted Authentication-Results header (trusted_authserv_ids = [mx.google.com, mx.shop.example]) and self DKIM check disabled",
		},
		{
			name: "authserv-id that merely contains a trusted one",
			raw: message(body,
				"Authentication-Results: mx.google.com.evil.org; dmarc=pass header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultFail,
		},
		{
			name: "only an untrusted A-R saying pass, self dkim on, unsigned",
			opts: withSelf,
			raw: message(body,
				"Authentication-Results: mx.evil.org; dmarc=pass header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultFail, reasonHas: "no DKIM signature",
		},
		{
			name: "dmarc fail despite aligned dkim and spf",
			raw: message(body,
				"Authentication-Results: mx.google.com; dkim=pass header.d=example.com; spf=pass smtp.mailfrom=example.com; dmarc=fail header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultFail, reasonHas: "dmarc=fail",
		},
		{
			name: "dmarc quarantine",
			raw: message(body,
				"Authentication-Results: mx.google.com; dmarc=quarantine header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultFail,
		},
		{
			name: "dmarc pass for another domain",
			raw: message(body,
				"Authentication-Results: mx.google.com; dmarc=pass header.from=evil.org",
				"From: jane@example.com"),
			wantResult: ResultFail,
		},
		{
			name: "authres dkim pass for an unaligned domain",
			raw: message(body,
				"Authentication-Results: mx.google.com; dkim=pass header.d=evil.org; spf=pass smtp.mailfrom=evil.org; dmarc=none header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultFail,
		},
		{
			name:       "self dkim valid but unaligned signer",
			opts:       withSelf,
			raw:        signedBy("evil.org", "From: jane@example.com"),
			wantResult: ResultFail, reasonHas: "d=evil.org: valid but not aligned",
		},
		{
			name: "self dkim, body tampered after signing",
			opts: withSelf,
			raw: func() []byte {
				m := signedBy("example.com", "From: jane@example.com")
				return bytes.Replace(m, []byte("order 1234"), []byte("order 9999"), 1)
			}(),
			wantResult: ResultFail, reasonHas: "body hash",
		},
		{
			name: "self dkim, From replaced after signing",
			opts: withSelf,
			raw: func() []byte {
				m := signedBy("example.com", "From: jane@example.com")
				return bytes.Replace(m, []byte("From: jane@example.com"), []byte("From: ceo@example.com"), 1)
			}(),
			wantResult: ResultFail, wantFrom: "ceo@example.com",
		},
		{
			name: "self dkim, second From added after signing",
			opts: withSelf,
			raw: func() []byte {
				return append([]byte("From: ceo@example.com\r\n"), signedBy("example.com", "From: jane@example.com")...)
			}(),
			wantResult: ResultFail, reasonHas: "2 From headers",
		},
		{
			name: "self dkim, expired relative to Now",
			opts: func(o Options) Options {
				o.SelfDKIM = true
				o.Now = func() time.Time { return realNow.Add(3 * time.Hour) }
				return o
			},
			raw:        keys.sign(t, message(body, "From: jane@example.com"), "example.com", realNow.Add(time.Hour)),
			wantResult: ResultFail, reasonHas: "expired",
		},
		{
			name:       "self dkim, expired in real time",
			opts:       withSelf,
			raw:        keys.sign(t, message(body, "From: jane@example.com"), "example.com", realNow.Add(-time.Hour)),
			wantResult: ResultFail, reasonHas: "expired",
		},
		{
			name:       "self dkim, unexpired x=",
			opts:       withSelf,
			raw:        keys.sign(t, message(body, "From: jane@example.com"), "example.com", realNow.Add(time.Hour)),
			wantResult: ResultPass, wantMethod: MethodDKIMSelf,
		},
		{
			name:       "self dkim, key not published",
			opts:       withSelf,
			raw:        bytes.Replace(signedBy("example.com", "From: jane@example.com"), []byte("s=s1"), []byte("s=s2"), 1),
			wantResult: ResultFail,
		},
		{
			name: "sender and reply-to do not change the identity",
			raw: message(body,
				"Authentication-Results: mx.google.com; dkim=pass header.d=example.com; dmarc=pass header.from=example.com",
				"Sender: jane@example.com",
				"Reply-To: jane@example.com",
				"From: mallory@evil.org"),
			wantResult: ResultFail, wantFrom: "mallory@evil.org",
		},
		{
			name: "display name holding another address (forged)",
			raw: message(body,
				"Authentication-Results: mx.google.com; dmarc=pass header.from=example.com",
				`From: "jane@example.com" <mallory@evil.org>`),
			wantResult: ResultFail, wantFrom: "mallory@evil.org", wantName: "jane@example.com",
		},
		{
			name: "display name holding another address (genuine)",
			raw: message(body,
				"Authentication-Results: mx.google.com; dmarc=pass header.from=example.com",
				`From: "support@bank.example" <jane@example.com>`),
			wantResult: ResultPass, wantMethod: MethodAuthresDMARC, wantFrom: "jane@example.com", wantName: "support@bank.example",
		},
		{
			name: "comment injection into A-R",
			raw: message(body,
				`Authentication-Results: mx.google.com; spf=pass (domain of "x;dmarc=pass header.from=example.com;"@evil.org designates 192.0.2.9) smtp.mailfrom=evil.org; dmarc=none header.from=example.com`,
				"From: jane@example.com"),
			wantResult: ResultFail,
		},
		{
			name: "quoted string injection into A-R",
			raw: message(body,
				`Authentication-Results: mx.google.com; spf=pass smtp.mailfrom="x;dmarc=pass header.from=example.com;"@evil.org; dmarc=none header.from=example.com`,
				"From: jane@example.com"),
			wantResult: ResultFail,
		},
		{
			name: "parentheses in a quoted local part inside a comment",
			raw: message(body,
				`Authentication-Results: mx.google.com; spf=pass (google.com: domain of "a);dmarc=pass header.from=example.com;(c"@evil.org designates 192.0.2.9 as permitted sender) smtp.mailfrom="a);dmarc=pass header.from=example.com;(c"@evil.org; dmarc=none header.from=example.com`,
				"From: jane@example.com"),
			wantResult: ResultFail, reasonHas: "ambiguous",
		},
		{
			name: "unterminated comment in trusted A-R",
			raw: message(body,
				"Authentication-Results: mx.google.com; dmarc=pass header.from=example.com (p=none",
				"From: jane@example.com"),
			wantResult: ResultFail, reasonHas: "ambiguous",
		},
		{
			name: "two dmarc results in the trusted A-R",
			raw: message(body,
				"Authentication-Results: mx.google.com; dmarc=pass header.from=example.com; dmarc=none header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultFail, reasonHas: "2 dmarc results",
		},
		{
			name: "quoted pair and quotes in comments (gmail style, genuine)",
			raw: message(body,
				`Authentication-Results: mx.google.com; spf=pass (google.com: domain of "jane doe"@example.com designates 192.0.2.1 \(really\) as permitted sender) smtp.mailfrom="jane doe"@example.com; dmarc=pass (p=NONE) header.from=example.com`,
				"From: jane@example.com"),
			wantResult: ResultPass, wantMethod: MethodAuthresDMARC,
		},
		{
			name: "malformed trusted A-R",
			raw: message(body,
				"Authentication-Results: mx.google.com 7; dmarc=pass header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultFail, reasonHas: "malformed",
		},
		{
			name: "trusted A-R saying none",
			raw: message(body,
				"Authentication-Results: mx.google.com; none",
				"From: jane@example.com"),
			wantResult: ResultFail, reasonHas: "no dmarc, dkim or spf result",
		},

		// From header shapes.
		{name: "no From", raw: message(body, "Authentication-Results: mx.google.com; dmarc=pass header.from=example.com"), wantResult: ResultFail, reasonHas: "no From header"},
		{name: "empty From", raw: message(body, "From: "), wantResult: ResultFail, reasonHas: "empty From"},
		{name: "From with empty angle address", raw: message(body, "From: Jane <>"), wantResult: ResultFail},
		{name: "invalid From", raw: message(body, "From: jane at example.com"), wantResult: ResultFail},
		{name: "From without domain dot", raw: message(body, "From: jane@localhost"), wantResult: ResultFail},
		{name: "From with address literal", raw: message(body, "From: jane@[192.0.2.1]"), wantResult: ResultFail},
		{name: "From with quoted local part", raw: message(body, `From: "jane@bank.example"@trusted.example`), wantResult: ResultFail, reasonHas: "dot-atom"},
		{
			name: "quoted local part that is a dot-atom is the same mailbox",
			raw: message(body,
				"Authentication-Results: mx.google.com; dmarc=pass header.from=example.com",
				`From: "jane"@example.com`),
			wantResult: ResultPass, wantMethod: MethodAuthresDMARC, wantDomain: "example.com", wantFrom: "jane@example.com",
		},
		// Unicode case folding must never turn one address into another:
		// only ASCII letters are lower-cased (RFC 5321 section 2.4 leaves
		// the local part's case to the receiving host; RFC 6532 adds UTF-8).
		{
			name: "Kelvin sign local part is not folded to k",
			raw: message(body,
				"Authentication-Results: mx.google.com; dmarc=pass header.from=example.com",
				"From: \u212Aate <\u212Aate@example.com>"),
			wantResult: ResultPass, wantMethod: MethodAuthresDMARC, wantDomain: "example.com", wantFrom: "\u212Aate@example.com",
		},
		{
			name: "dotted capital I local part is not folded to i",
			raw: message(body,
				"Authentication-Results: mx.google.com; dmarc=pass header.from=example.com",
				"From: \u0130rem@example.com"),
			wantResult: ResultPass, wantMethod: MethodAuthresDMARC, wantDomain: "example.com", wantFrom: "\u0130rem@example.com",
		},
		{
			name: "ASCII local part is lower-cased",
			raw: message(body,
				"Authentication-Results: mx.google.com; dmarc=pass header.from=example.com",
				"From: Kate.SMITH@Example.COM"),
			wantResult: ResultPass, wantMethod: MethodAuthresDMARC, wantDomain: "example.com", wantFrom: "kate.smith@example.com",
		},
		{
			name: "From with two addresses",
			raw: message(body,
				"Authentication-Results: mx.google.com; dmarc=pass header.from=example.com",
				"From: jane@example.com, mallory@evil.org"),
			wantResult: ResultFail, reasonHas: "2 addresses",
		},
		{
			name: "group From",
			raw: message(body,
				"Authentication-Results: mx.google.com; dmarc=pass header.from=example.com",
				"From: Staff: jane@example.com;"),
			wantResult: ResultFail, reasonHas: "group",
		},
		{
			name:       "group From with an allowlisted member",
			raw:        message(body, "From: Partners: partner@friends.example;"),
			wantResult: ResultFail, reasonHas: "group",
		},
		{
			name: "two From headers",
			raw: message(body,
				"Authentication-Results: mx.google.com; dmarc=pass header.from=example.com",
				"From: jane@example.com",
				"from: jane@example.com"),
			wantResult: ResultFail, reasonHas: "2 From headers",
		},

		// Allowlist lookalikes.
		{name: "lookalike evil-example", opts: allow("example.com"), raw: message(body, "From: a@evil-example.com"), wantResult: ResultFail},
		{name: "lookalike suffix domain", opts: allow("example.com"), raw: message(body, "From: a@example.com.evil.net"), wantResult: ResultFail},
		{name: "subdomain of allowed domain", opts: allow("example.com"), raw: message(body, "From: a@sub.example.com"), wantResult: ResultFail},
		{name: "other address at allowed address domain", opts: allow("jane@example.com"), raw: message(body, "From: bob@example.com"), wantResult: ResultFail},
		{name: "allowed domain exact", opts: allow("example.com"), raw: message(body, "From: A@Example.COM"), wantResult: ResultPass, wantMethod: MethodAllowlist, wantFrom: "a@example.com"},

		// Case and IDN.
		{
			name: "mixed case in From and A-R",
			raw: message(body,
				"Authentication-Results: MX.Google.COM; DMARC=PASS header.from=Example.COM",
				"FROM: Jane <Jane.Doe@EXAMPLE.Com>"),
			wantResult: ResultPass, wantMethod: MethodAuthresDMARC, wantFrom: "jane.doe@example.com", wantDomain: "example.com",
		},
		{
			name: "IDN From, punycode header.from",
			raw: message(body,
				"Authentication-Results: mx.google.com; dmarc=pass header.from=xn--bcher-kva.example",
				"From: Jürgen <user@bücher.example>"),
			wantResult: ResultPass, wantMethod: MethodAuthresDMARC, wantFrom: "user@xn--bcher-kva.example", wantDomain: "xn--bcher-kva.example", wantName: "Jürgen",
		},
		{
			name: "punycode From, Unicode header.from",
			raw: message(body,
				"Authentication-Results: mx.google.com; dmarc=pass header.from=BÜCHER.example",
				"From: user@XN--BCHER-KVA.example"),
			wantResult: ResultPass, wantFrom: "user@xn--bcher-kva.example",
		},
		{
			name: "encoded display name",
			raw: message(body,
				"Authentication-Results: mx.google.com; dmarc=pass header.from=example.com",
				"From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <jm@example.com>"),
			wantResult: ResultPass, wantName: "Jürgen Müller",
		},

		// Require = dkim.
		{
			name: "require dkim, only spf pass",
			opts: require(RequireDKIM),
			raw: message(body,
				"Authentication-Results: mx.google.com; spf=pass smtp.mailfrom=example.com; dkim=none",
				"From: jane@example.com"),
			wantResult: ResultFail, reasonHas: "verify.require = dkim",
		},
		{
			name: "require dkim, dmarc pass without dkim (spf-based)",
			opts: require(RequireDKIM),
			raw: message(body,
				"Authentication-Results: mx.google.com; spf=pass smtp.mailfrom=example.com; dkim=none; dmarc=pass header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultFail,
		},
		{
			name: "require dkim, aligned dkim pass",
			opts: require(RequireDKIM),
			raw: message(body,
				"Authentication-Results: mx.google.com; dkim=pass header.d=example.com; dmarc=pass header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultPass, wantMethod: MethodAuthresDKIM,
		},
		{
			name:       "require dkim, self dkim",
			opts:       func(o Options) Options { return withSelf(require(RequireDKIM)(o)) },
			raw:        signedBy("example.com", "From: jane@example.com"),
			wantResult: ResultPass, wantMethod: MethodDKIMSelf,
		},

		// Microsoft 365 writes no authserv-id.
		{
			name: "header without authserv-id, trusted by AuthservIDAbsent",
			opts: func(o Options) Options { o.TrustedAuthservIDs = []string{AuthservIDAbsent}; return o },
			raw: message(body,
				"Authentication-Results: spf=pass (sender IP is 192.0.2.1)\r\n smtp.mailfrom=example.com; dkim=pass (signature was verified)\r\n header.d=example.com;dmarc=pass action=none header.from=example.com;compauth=pass\r\n reason=100",
				"From: jane@example.com"),
			wantResult: ResultPass, wantMethod: MethodAuthresDMARC,
			reasonHas: "from (absent)",
		},
		{
			name: "header without authserv-id, not trusted",
			raw: message(body,
				"Authentication-Results: spf=pass smtp.mailfrom=example.com; dmarc=pass action=none header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultFail,
		},
		{
			name: "quoted authserv-id cannot pose as absent",
			opts: func(o Options) Options { o.TrustedAuthservIDs = []string{AuthservIDAbsent}; return o },
			raw: message(body,
				`Authentication-Results: "(absent)"; dmarc=pass header.from=example.com`,
				"Authentication-Results: spf=fail smtp.mailfrom=example.com; dmarc=fail header.from=example.com",
				"From: jane@example.com"),
			wantResult: ResultFail,
		},
		{name: "unreadable header", raw: []byte(" leading space\r\nFrom: jane@example.com\r\n\r\nhi"), wantResult: ResultFail, reasonHas: "unreadable"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			if tt.opts != nil {
				o = tt.opts(o)
			}
			v, err := New(o)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			got := v.Verify(context.Background(), tt.raw)
			t.Logf("verdict: %+v", got)
			if got.Result != tt.wantResult {
				t.Fatalf("Result = %q, want %q (reason: %s)", got.Result, tt.wantResult, got.Reason)
			}
			if got.Passed() != (tt.wantResult == ResultPass) {
				t.Errorf("Passed() = %v with Result %q", got.Passed(), got.Result)
			}
			if got.Result != ResultPass && (got.Method != "" || got.Domain != "") {
				t.Errorf("non-passing verdict carries method %q domain %q", got.Method, got.Domain)
			}
			if tt.wantMethod != "" && got.Method != tt.wantMethod {
				t.Errorf("Method = %q, want %q", got.Method, tt.wantMethod)
			}
			if tt.wantDomain != "" && got.Domain != tt.wantDomain {
				t.Errorf("Domain = %q, want %q", got.Domain, tt.wantDomain)
			}
			if tt.wantFrom != "" && got.From != tt.wantFrom {
				t.Errorf("From = %q, want %q", got.From, tt.wantFrom)
			}
			if tt.wantName != "" && got.FromName != tt.wantName {
				t.Errorf("FromName = %q, want %q", got.FromName, tt.wantName)
			}
			if got.Reason == "" {
				t.Errorf("empty Reason")
			}
			if tt.reasonHas != "" && !strings.Contains(got.Reason, tt.reasonHas) {
				t.Errorf("Reason = %q, want it to contain %q", got.Reason, tt.reasonHas)
			}
		})
	}
}

// allow replaces the allowlist.
func allow(entries ...string) func(Options) Options {
	return func(o Options) Options { o.Allow = entries; return o }
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "defaults with a trusted id", opts: Options{TrustedAuthservIDs: []string{"mx.google.com"}}},
		{name: "self dkim only", opts: Options{SelfDKIM: true}},
		{name: "allowlist only", opts: Options{Allow: []string{"a@b.example"}}},
		{name: "require none", opts: Options{Require: "NONE"}},
		{name: "nothing could pass", opts: Options{}},
		{name: "unknown require", opts: Options{Require: "spf", SelfDKIM: true}, wantErr: `require "spf"`},
		{name: "authserv-id with spaces", opts: Options{TrustedAuthservIDs: []string{"mx.google.com 1"}}, wantErr: "one token"},
		{name: "empty authserv-id", opts: Options{TrustedAuthservIDs: []string{" "}}, wantErr: "one token"},
		{name: "bad allow entry", opts: Options{SelfDKIM: true, Allow: []string{"a b@example.com"}}, wantErr: "allow entry"},
		{name: "bad allow domain", opts: Options{SelfDKIM: true, Allow: []string{"exa mple.com"}}, wantErr: "allow entry"},
		{name: "negative timeout", opts: Options{SelfDKIM: true, DNSTimeout: -time.Second}, wantErr: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(tt.opts)
			if tt.wantErr == "" {
				if err != nil || v == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestVerdictJSON(t *testing.T) {
	b, err := json.Marshal(Verdict{Result: ResultPass, Method: MethodAllowlist, Domain: "example.com",
		From: "jane@example.com", FromName: "Jane", Reason: "r"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"result":"pass","method":"allowlist","domain":"example.com","from":"jane@example.com","from_name":"Jane","reason":"r"}`
	if string(b) != want {
		t.Fatalf("JSON = %s\nwant   %s", b, want)
	}
}

// TestSelfDKIMUsesResolverTimeout checks that a hanging resolver is cut off
// by DNSTimeout and the message fails instead of passing or blocking.
func TestSelfDKIMUsesResolverTimeout(t *testing.T) {
	keys := newTestKeys(t, "example.com")
	raw := keys.sign(t, message(body, "From: jane@example.com"), "example.com", time.Time{})
	v, err := New(Options{SelfDKIM: true, DNSTimeout: 50 * time.Millisecond, Resolver: hangingResolver{}})
	if err != nil {
		t.Fatal(err)
	}
	got := v.Verify(context.Background(), raw)
	if got.Passed() {
		t.Fatalf("passed with an unreachable resolver: %+v", got)
	}
}

type hangingResolver struct{}

func (hangingResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	<-ctx.Done()
	return nil, &net.DNSError{Err: ctx.Err().Error(), Name: name, IsTimeout: true}
}

// TestNothingConfigured checks that a Verifier with no way to verify fails
// every message, even one whose (untrusted) header claims a pass.
func TestNothingConfigured(t *testing.T) {
	v, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := v.Verify(context.Background(), message(body,
		"Authentication-Results: mx.google.com; dmarc=pass header.from=example.com",
		"From: jane@example.com"))
	want := "no trusted Authentication-Results header (trusted_authserv_ids = []) and self DKIM check disabled"
	if got.Passed() || !strings.HasPrefix(got.Reason, want) {
		t.Fatalf("got %+v, want a failure starting %q", got, want)
	}
}

// dmarcDown fails every DMARC record lookup with a temporary error.
type dmarcDown struct{ next Resolver }

func (d dmarcDown) LookupTXT(ctx context.Context, name string) ([]string, error) {
	if strings.HasPrefix(name, "_dmarc.") {
		return nil, &net.DNSError{Err: "server misbehaving", Name: name, IsTemporary: true}
	}
	return d.next.LookupTXT(ctx, name)
}

// TestSelfDKIMUnreadablePolicyIsStrict checks that when the DMARC record
// cannot be read, only a signature by the From domain itself passes.
func TestSelfDKIMUnreadablePolicyIsStrict(t *testing.T) {
	keys := newTestKeys(t, "example.com", "mail.example.com")
	v, err := New(Options{SelfDKIM: true, Resolver: dmarcDown{keys.res}})
	if err != nil {
		t.Fatal(err)
	}
	sub := v.Verify(context.Background(), keys.sign(t, message(body, "From: jane@example.com"), "mail.example.com", time.Time{}))
	if sub.Passed() || !strings.Contains(sub.Reason, "could not be read") {
		t.Errorf("subdomain signer: %+v, want a strict-alignment failure", sub)
	}
	exact := v.Verify(context.Background(), keys.sign(t, message(body, "From: jane@example.com"), "example.com", time.Time{}))
	if !exact.Passed() {
		t.Errorf("exact signer: %+v, want pass", exact)
	}
}
