package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
)

// maxSelfSignatures bounds the DKIM signatures checked per message (each
// costs a DNS lookup and a public-key operation).
const maxSelfSignatures = 5

// lookupFunc adapts the Resolver to go-msgauth's context-free LookupTXT,
// with one DNSTimeout per query under ctx.
func (v *Verifier) lookupFunc(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		ctx, cancel := context.WithTimeout(ctx, v.opts.DNSTimeout)
		defer cancel()
		return v.opts.Resolver.LookupTXT(ctx, name)
	}
}

// selfDKIM verifies the DKIM signatures of raw and reports the first valid,
// unexpired one whose signing domain aligns with the From domain.
func (v *Verifier) selfDKIM(ctx context.Context, raw []byte, id identity) arOutcome {
	lookup := v.lookupFunc(ctx)
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{
		LookupTXT:        lookup,
		MaxVerifications: maxSelfSignatures,
	})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		return arOutcome{reason: fmt.Sprintf("self DKIM check failed: %v", err)}
	}
	if len(verifs) == 0 {
		return arOutcome{reason: "message has no DKIM signature"}
	}
	// The DMARC record is read only when it matters: for a valid signature
	// by a different domain of the same organization.
	strict, policyRead := v.opts.StrictAlignment, v.opts.StrictAlignment
	mode := func() string {
		switch {
		case v.opts.StrictAlignment:
			return "strict"
		case strict:
			return "strict, as the domain's DMARC record asks or could not be read"
		}
		return "relaxed"
	}
	now := v.opts.Now()
	var notes []string
	for _, vf := range verifs {
		d, derr := asciiDomain(vf.Domain)
		name := clip(vf.Domain)
		switch {
		case vf.Err != nil:
			notes = append(notes, fmt.Sprintf("d=%s: %v", name, vf.Err))
			continue
		case !vf.Expiration.IsZero() && now.After(vf.Expiration):
			notes = append(notes, fmt.Sprintf("d=%s: signature expired at %s", name, vf.Expiration.UTC().Format(time.RFC3339)))
			continue
		case derr != nil:
			notes = append(notes, fmt.Sprintf("d=%s: %v", name, derr))
			continue
		}
		if !policyRead && d != id.domain && aligned(d, id.domain, false) {
			strict, policyRead = v.policyWantsStrictDKIM(lookup, id.domain), true
		}
		if !aligned(d, id.domain, strict) {
			notes = append(notes, fmt.Sprintf("d=%s: valid but not aligned (%s) with %s", d, mode(), id.domain))
			continue
		}
		return arOutcome{pass: true, method: MethodDKIMSelf, domain: d,
			reason: fmt.Sprintf("valid DKIM signature by %s (%s alignment with %s), checked by mailgate", d, mode(), id.domain)}
	}
	if errors.Is(err, dkim.ErrTooManySignatures) {
		notes = append(notes, fmt.Sprintf("only the first %d signatures were checked", maxSelfSignatures))
	}
	return arOutcome{reason: "no valid aligned DKIM signature: " + strings.Join(notes, "; ")}
}

// policyWantsStrictDKIM reports whether the From domain's DMARC record (or,
// when it has none, its organizational domain's) asks for strict DKIM
// alignment (adkim=s). A lookup that fails for another reason than "no
// record" also answers true: a published policy can only tighten alignment,
// so when it cannot be read the strict reading is the safe one.
func (v *Verifier) policyWantsStrictDKIM(lookup func(string) ([]string, error), domain string) bool {
	names := []string{domain}
	if org, ok := orgDomain(domain); ok && org != domain {
		names = append(names, org)
	}
	for _, n := range names {
		rec, err := dmarc.LookupWithOptions(n, &dmarc.LookupOptions{LookupTXT: lookup})
		switch {
		case err == nil:
			return rec.DKIMAlignment == dmarc.AlignmentStrict
		case errors.Is(err, dmarc.ErrNoPolicy):
			continue
		default:
			var dnsErr *net.DNSError
			if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
				continue
			}
			return true
		}
	}
	return false
}
