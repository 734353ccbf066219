package verify

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"

	"mailgate/mailaddr"
)

// Values of Options.Require.
const (
	RequireDMARC = "dmarc" // DMARC pass, or an aligned DKIM or SPF pass when the domain has no policy
	RequireDKIM  = "dkim"  // an aligned DKIM pass; SPF alone is not enough
	RequireNone  = "none"  // no verification: every sender gets Result "none"
)

// Values of Verdict.Result.
const (
	ResultPass = "pass" // the sender owns the From address
	ResultFail = "fail" // not shown, or shown false; Reason says why
	ResultNone = "none" // verification disabled (Require "none")
)

// Values of Verdict.Method: what proved a passing verdict.
const (
	MethodAuthresDMARC = "authres-dmarc"        // dmarc=pass for the From domain in the trusted A-R header
	MethodAuthresDKIM  = "authres-dkim-aligned" // dkim=pass for an aligned domain in the trusted A-R header
	MethodAuthresSPF   = "authres-spf-aligned"  // spf=pass for an aligned MAIL FROM in the trusted A-R header
	MethodDKIMSelf     = "dkim-self"            // a DKIM signature checked by this package, aligned
	MethodAllowlist    = "allowlist"            // the address or its domain is in Options.Allow
)

// DefaultDNSTimeout bounds each DNS query when Options.DNSTimeout is zero.
const DefaultDNSTimeout = 5 * time.Second

// Options configures a Verifier. The zero value plus TrustedAuthservIDs is a
// strict, useful configuration.
type Options struct {
	// TrustedAuthservIDs lists the authserv-ids (the first token of an
	// Authentication-Results header) written by the receiving mail system,
	// compared case-insensitively. Only the topmost header carrying one of
	// them counts. AuthservIDAbsent trusts a header without authserv-id.
	TrustedAuthservIDs []string
	// Require is RequireDMARC (the default when empty), RequireDKIM or
	// RequireNone.
	Require string
	// Allow lists exact addresses ("a@b.c") and exact domains ("b.c") that
	// pass without further checks. A domain does not cover its subdomains.
	Allow []string
	// SelfDKIM verifies DKIM signatures in this package when no trusted
	// Authentication-Results header is present.
	SelfDKIM bool
	// StrictAlignment requires the authenticated domain to equal the From
	// domain instead of sharing its organizational domain.
	StrictAlignment bool
	// Resolver answers the DNS TXT queries of SelfDKIM. Nil means
	// NewCachingResolver(NetResolver(), 0, 0).
	Resolver Resolver
	// DNSTimeout bounds each DNS query; zero means DefaultDNSTimeout.
	DNSTimeout time.Duration
	// Now is the clock for DKIM signature expiry (x=); nil means time.Now.
	Now func() time.Time
}

// Verdict is the outcome of Verify: whether the sender owns the From
// address, how that was decided, and why.
type Verdict struct {
	// Result is ResultPass, ResultFail or ResultNone.
	Result string `json:"result"`
	// Method is one of the Method constants when Result is ResultPass,
	// empty otherwise.
	Method string `json:"method"`
	// Domain is the authenticated domain that aligned with the From domain
	// (ASCII, lower-cased); the From domain itself for authres-dmarc and
	// allowlist.
	Domain string `json:"domain"`
	// From is the one From address: local part with its ASCII letters
	// lower-cased (other characters kept as written), domain in its
	// ASCII (punycode, "xn--...") form lower-cased, so equal addresses
	// compare equal as strings. Empty when the From header was unusable.
	From string `json:"from"`
	// FromName is the decoded display name of the From address, if any. It
	// is never used for verification.
	FromName string `json:"from_name"`
	// Reason explains the verdict for logs and "mailgate inspect".
	Reason string `json:"reason"`
}

// Passed reports whether the sender was verified to own the From address.
func (v Verdict) Passed() bool { return v.Result == ResultPass }

// Verifier decides whether the sender of a message owns its From address.
// It is safe for concurrent use.
type Verifier struct {
	opts      Options
	trusted   map[string]bool
	trustList string // for reasons: "[a, b]"
	allowAddr map[string]bool
	allowDom  map[string]bool
}

// New checks opts, fills in defaults and returns a Verifier. It refuses an
// unknown Require value, malformed TrustedAuthservIDs or Allow entries and a
// negative DNSTimeout. Options without TrustedAuthservIDs, SelfDKIM and
// Allow are accepted, but every Verdict then fails (unless Require is
// "none"); the caller should warn about that at startup.
func New(opts Options) (*Verifier, error) {
	opts.Require = strings.ToLower(strings.TrimSpace(opts.Require))
	switch opts.Require {
	case "":
		opts.Require = RequireDMARC
	case RequireDMARC, RequireDKIM, RequireNone:
	default:
		return nil, fmt.Errorf("verify: require %q: want %q, %q or %q", opts.Require, RequireDMARC, RequireDKIM, RequireNone)
	}
	if opts.DNSTimeout < 0 {
		return nil, fmt.Errorf("verify: dns timeout %v is negative", opts.DNSTimeout)
	}
	if opts.DNSTimeout == 0 {
		opts.DNSTimeout = DefaultDNSTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Resolver == nil {
		opts.Resolver = NewCachingResolver(NetResolver(), 0, 0)
	}
	v := &Verifier{
		trusted:   make(map[string]bool),
		allowAddr: make(map[string]bool),
		allowDom:  make(map[string]bool),
	}
	var ids []string
	for _, id := range opts.TrustedAuthservIDs {
		norm := strings.ToLower(strings.TrimSpace(id))
		if norm == "" || strings.ContainsAny(norm, "; \t\r\n\"") {
			return nil, fmt.Errorf("verify: trusted authserv-id %q: must be one token, as in the received header", id)
		}
		v.trusted[norm] = true
		ids = append(ids, norm)
	}
	opts.TrustedAuthservIDs = ids
	v.trustList = "[" + strings.Join(ids, ", ") + "]"
	for _, a := range opts.Allow {
		a = strings.TrimSpace(a)
		if i := strings.LastIndexByte(a, '@'); i >= 0 {
			local, dom := a[:i], a[i+1:]
			d, err := asciiDomain(dom)
			if err != nil || !isDotAtom(local) {
				return nil, fmt.Errorf("verify: allow entry %q: not an address or a domain", a)
			}
			v.allowAddr[mailaddr.LowerASCII(local)+"@"+d] = true
			continue
		}
		d, err := asciiDomain(a)
		if err != nil {
			return nil, fmt.Errorf("verify: allow entry %q: %v", a, err)
		}
		v.allowDom[d] = true
	}
	v.opts = opts
	return v, nil
}

// Verify decides whether the sender of the message raw (the complete
// message: header and body) owns its From address. It never returns a
// passing Verdict without a trusted Authentication-Results header, a valid
// DKIM signature checked here, or an Allow entry backing it. ctx bounds the
// DNS queries of the self DKIM check.
func (v *Verifier) Verify(ctx context.Context, raw []byte) Verdict {
	h, err := readHeader(raw)
	if err != nil {
		return Verdict{Result: ResultFail, Reason: fmt.Sprintf("unreadable message header: %v", clipErr(err))}
	}
	id, err := parseFrom(h.Values("From"))
	if err != nil {
		return Verdict{Result: ResultFail, Reason: err.Error()}
	}
	verdict := func(o arOutcome) Verdict {
		vd := Verdict{Result: ResultFail, From: id.addr, FromName: id.name, Reason: o.reason}
		if o.pass {
			vd.Result, vd.Method, vd.Domain = ResultPass, o.method, o.domain
		}
		return vd
	}

	switch {
	case v.allowAddr[id.addr]:
		return verdict(arOutcome{pass: true, method: MethodAllowlist, domain: id.domain,
			reason: fmt.Sprintf("address %s is in verify.allow", id.addr)})
	case v.allowDom[id.domain]:
		return verdict(arOutcome{pass: true, method: MethodAllowlist, domain: id.domain,
			reason: fmt.Sprintf("domain %s is in verify.allow", id.domain)})
	}

	if v.opts.Require == RequireNone {
		vd := verdict(arOutcome{reason: "verification disabled (verify.require = none)"})
		vd.Result = ResultNone
		return vd
	}

	var untrusted []string
	for _, value := range h.Values("Authentication-Results") {
		f := readARField(value)
		if !v.trusted[f.id] {
			if len(untrusted) < 5 {
				name := clip(f.id)
				if name == "" {
					name = "(empty)"
				}
				untrusted = append(untrusted, name)
			}
			continue
		}
		// The topmost trusted header is the one the receiving system added;
		// anything below it may have come with the message.
		results, err := f.parse()
		if err != nil {
			return verdict(arOutcome{reason: fmt.Sprintf("trusted Authentication-Results from %s is malformed: %v", f.id, err)})
		}
		return verdict(evalAuthResults(results, f.id, id.domain, v.opts.Require, v.opts.StrictAlignment))
	}

	seen := ""
	if len(untrusted) > 0 {
		seen = fmt.Sprintf("; headers from untrusted authserv-ids were ignored: %s", strings.Join(untrusted, ", "))
	}
	if !v.opts.SelfDKIM {
		return verdict(arOutcome{reason: fmt.Sprintf("no trusted Authentication-Results header (trusted_authserv_ids = %s) and self DKIM check disabled%s", v.trustList, seen)})
	}
	o := v.selfDKIM(ctx, raw, id)
	if !o.pass {
		o.reason = fmt.Sprintf("no trusted Authentication-Results header (trusted_authserv_ids = %s); %s%s", v.trustList, o.reason, seen)
	}
	return verdict(o)
}

func clipErr(err error) string { return clip(err.Error()) }

// MaxHeaderBytes is the largest message header Verify reads, the same limit
// as the MIME parser's (mailparse.MaxHeaderBytes). A larger header fails
// verification: millions of tiny fields would cost gigabytes to parse.
const MaxHeaderBytes = 1 << 20

// errHeaderTooLarge is the error of readHeader for a header block over
// MaxHeaderBytes.
var errHeaderTooLarge = errors.New("header larger than 1 MiB")

// readHeader parses the header block of raw, reading at most MaxHeaderBytes
// of it. A message without a body separator is all header.
func readHeader(raw []byte) (textproto.Header, error) {
	head := raw
	if len(head) > MaxHeaderBytes {
		head = head[:MaxHeaderBytes]
	}
	end := headerEnd(head)
	if end < 0 {
		if len(raw) > MaxHeaderBytes {
			return textproto.Header{}, errHeaderTooLarge
		}
		end = len(raw)
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw[:end])))
	if err != nil && !errors.Is(err, io.EOF) {
		return h, err
	}
	return h, nil
}

// headerEnd returns the length of the header block at the start of b,
// including the empty line that ends it, or -1 when b holds no empty line.
func headerEnd(b []byte) int {
	if len(b) > 0 && (b[0] == '\n' || bytes.HasPrefix(b, []byte("\r\n"))) {
		return 0
	}
	i := bytes.Index(b, []byte("\n\r\n"))
	// A bare "\n\n" counts only before the CRLF blank line: search no
	// further, or a CRLF message's whole body (attachments too) is read.
	within := b
	if i >= 0 {
		within = b[:i+2]
	}
	j := bytes.Index(within, []byte("\n\n"))
	switch {
	case i >= 0 && (j < 0 || i < j):
		return i + 3
	case j >= 0:
		return j + 2
	}
	return -1
}
