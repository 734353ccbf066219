package verify

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-msgauth/authres"
)

// AuthservIDAbsent is a TrustedAuthservIDs entry that stands for an
// Authentication-Results header without an authserv-id. Microsoft 365
// (Exchange Online) writes its header that way ("Authentication-Results:
// spf=pass (sender IP is ...) smtp.mailfrom=...; dkim=pass ...;
// dmarc=pass action=none header.from=..."). Trusting it is weaker than
// trusting a named authserv-id: use it only when every message reaches the
// mailbox through that provider, which then always adds such a header on top.
const AuthservIDAbsent = "(absent)"

// arField is one Authentication-Results header field, with its authserv-id
// extracted and its text cleaned of comments.
type arField struct {
	id    string // lower-cased authserv-id, or AuthservIDAbsent
	clean string // comments removed, quoted strings defused
	// ambiguous is set when comments or quoted strings are unterminated, or
	// when their boundaries depend on how one reads a quote inside a
	// comment. Such a header cannot be read safely.
	ambiguous bool
}

// readARField extracts the authserv-id of an Authentication-Results value.
func readARField(raw string) arField {
	clean, ok := cleanARValue(raw, false)
	alt, altOK := cleanARValue(raw, true)
	f := arField{clean: clean, ambiguous: !ok || !altOK || clean != alt}
	first, _, _ := strings.Cut(clean, ";")
	tok := strings.Fields(first)
	switch {
	case len(tok) == 0:
		f.id = ""
	case strings.Contains(tok[0], "="):
		// No authserv-id: the first token is already "method=result".
		f.id = AuthservIDAbsent
	default:
		// A quoted authserv-id stays quoted, so it can never equal a
		// configured id (nor AuthservIDAbsent).
		f.id = strings.ToLower(tok[0])
	}
	return f
}

// parse runs authres.Parse over the cleaned value.
func (f arField) parse() ([]authres.Result, error) {
	if f.ambiguous {
		return nil, errors.New("unbalanced or ambiguous comments or quoted strings")
	}
	v := f.clean
	if f.id == AuthservIDAbsent {
		v = "absent; " + v
	}
	_, results, err := authres.Parse(v)
	return results, err
}

// cleanARValue prepares an Authentication-Results value for authres.Parse,
// which splits on ";" and whitespace without knowing RFC 5322 comments or
// quoted strings. Receivers copy attacker-chosen text into comments (the
// envelope sender in "(domain of x@y designates ...)") and into quoted
// strings, so a ";" or "header.from=" inside either could otherwise be read
// as a result of its own. Comments are dropped (nested ones too); inside
// quoted strings, ";" becomes ",", whitespace becomes "_" and escapes are
// resolved into "_".
//
// RFC 5322 comments hold no quoted strings, but receivers do write quoted
// local parts into comments without escaping the parentheses in them. So
// the value is read twice, with quotes inside comments ignored (the RFC) and
// honoured (quotesInComments); readARField refuses the header when the two
// readings differ. ok is false for an unterminated comment or quoted string
// and for a ")" that closes no comment.
func cleanARValue(s string, quotesInComments bool) (clean string, ok bool) {
	var b strings.Builder
	b.Grow(len(s))
	inQuote, escaped, depth, stray := false, false, 0, false
	for _, r := range s {
		switch {
		case escaped:
			escaped = false
			if inQuote && depth == 0 {
				b.WriteRune(defuse(r))
			}
		case r == '\\' && (inQuote || depth > 0):
			escaped = true
		case inQuote:
			if r == '"' {
				inQuote = false
			}
			if depth == 0 {
				if r != '"' {
					r = defuse(r)
				}
				b.WriteRune(r)
			}
		case depth > 0:
			switch {
			case r == '(':
				depth++
			case r == ')':
				depth--
				if depth == 0 {
					b.WriteByte(' ')
				}
			case r == '"' && quotesInComments:
				inQuote = true
			}
		case r == '(':
			depth = 1
		case r == '"':
			inQuote = true
			b.WriteRune(r)
		case r == ')':
			stray = true
		case r == '\r' || r == '\n' || r == '\t':
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String(), !inQuote && depth == 0 && !escaped && !stray
}

// defuse neutralizes a character of a quoted string: ";" would split the
// value, whitespace would split a parameter, and an escaped quote or
// backslash would end or escape the string once the backslash is gone.
func defuse(r rune) rune {
	switch {
	case r == ';':
		return ','
	case r <= ' ' || r == 0x7f || r == '"' || r == '\\':
		return '_'
	}
	return r
}

// arOutcome is what the one trusted Authentication-Results header says about
// the From domain.
type arOutcome struct {
	pass   bool
	method string
	domain string
	reason string
}

// evalAuthResults judges the results of the topmost trusted header for the
// From domain fromDomain (ASCII), under require ("dmarc" or "dkim").
func evalAuthResults(results []authres.Result, id, fromDomain, require string, strict bool) arOutcome {
	src := fmt.Sprintf("in Authentication-Results from %s", id)
	var (
		dmarcPass, dmarcFail    []string
		dmarcNone               int // none, bestguesspass, or pass for another domain
		dkimAligned, spfAligned string
		seen                    []string
	)
	for _, r := range results {
		switch r := r.(type) {
		case *authres.DMARCResult:
			hf, err := domainOfIdentity(r.From)
			desc := describe("dmarc", r.Value, "header.from", r.From)
			seen = append(seen, desc)
			switch strings.ToLower(string(r.Value)) {
			case "pass":
				// A pass for another domain proves nothing about this From.
				if err == nil && hf == fromDomain {
					dmarcPass = append(dmarcPass, hf)
				} else {
					dmarcNone++
				}
			case "none", "bestguesspass":
				// The domain publishes no DMARC policy: fall back to DKIM/SPF.
				dmarcNone++
			default:
				dmarcFail = append(dmarcFail, desc)
			}
		case *authres.DKIMResult:
			signer := r.Domain
			if signer == "" {
				signer = r.Identifier // Gmail writes only header.i=@example.com
			}
			key := "header.d"
			if r.Domain == "" {
				key = "header.i"
			}
			seen = append(seen, describe("dkim", r.Value, key, signer))
			if strings.ToLower(string(r.Value)) != "pass" || dkimAligned != "" {
				continue
			}
			if d, err := domainOfIdentity(signer); err == nil && aligned(d, fromDomain, strict) {
				dkimAligned = d
			}
		case *authres.SPFResult:
			seen = append(seen, describe("spf", r.Value, "smtp.mailfrom", r.From))
			if strings.ToLower(string(r.Value)) != "pass" || spfAligned != "" || r.From == "" {
				continue
			}
			if d, err := domainOfIdentity(r.From); err == nil && aligned(d, fromDomain, strict) {
				spfAligned = d
			}
		}
	}
	said := "no dmarc, dkim or spf result"
	if len(seen) > 10 {
		seen = append(seen[:10], "...")
	}
	if len(seen) > 0 {
		said = strings.Join(seen, "; ")
	}
	mode := "relaxed"
	if strict {
		mode = "strict"
	}
	failReason := func(why string) arOutcome {
		return arOutcome{reason: fmt.Sprintf("%s; Authentication-Results from %s says: %s", why, id, said)}
	}
	if len(dmarcFail) > 0 {
		return failReason(fmt.Sprintf("DMARC did not pass for %s", fromDomain))
	}
	if n := len(dmarcPass) + dmarcNone; n > 1 {
		// One From domain gets one DMARC evaluation; a second result can
		// only be text that slipped into the header.
		return failReason(fmt.Sprintf("%d dmarc results for one message", n))
	}
	switch require {
	case RequireDKIM:
		if dkimAligned != "" {
			return arOutcome{pass: true, method: MethodAuthresDKIM, domain: dkimAligned,
				reason: fmt.Sprintf("dkim=pass for %s (%s alignment with %s) %s", dkimAligned, mode, fromDomain, src)}
		}
		return failReason(fmt.Sprintf("no DKIM pass aligned (%s) with %s, which verify.require = dkim demands", mode, fromDomain))
	default:
		if len(dmarcPass) > 0 {
			return arOutcome{pass: true, method: MethodAuthresDMARC, domain: fromDomain,
				reason: fmt.Sprintf("dmarc=pass for %s %s", fromDomain, src)}
		}
		if dkimAligned != "" {
			return arOutcome{pass: true, method: MethodAuthresDKIM, domain: dkimAligned,
				reason: fmt.Sprintf("dkim=pass for %s (%s alignment with %s) %s", dkimAligned, mode, fromDomain, src)}
		}
		if spfAligned != "" {
			return arOutcome{pass: true, method: MethodAuthresSPF, domain: spfAligned,
				reason: fmt.Sprintf("spf=pass for %s (%s alignment with %s) %s", spfAligned, mode, fromDomain, src)}
		}
		return failReason(fmt.Sprintf("no DMARC pass for %s and no DKIM or SPF pass aligned (%s) with it", fromDomain, mode))
	}
}

// describe renders one result for a Reason, e.g. "dkim=pass header.d=x".
func describe(method string, value authres.ResultValue, key, param string) string {
	if param == "" {
		return fmt.Sprintf("%s=%s", method, value)
	}
	return fmt.Sprintf("%s=%s %s=%s", method, value, key, clip(param))
}
