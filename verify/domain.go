package verify

import (
	"fmt"
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// asciiDomain returns the lower-cased ASCII (A-label, punycode) form of a
// domain name given in Unicode or ASCII form, without a trailing dot. It
// refuses address literals, empty labels and anything IDNA's lookup profile
// (with STD3 rules) refuses.
func asciiDomain(d string) (string, error) {
	d = strings.TrimSpace(d)
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return "", fmt.Errorf("empty domain")
	}
	if strings.HasPrefix(d, "[") {
		return "", fmt.Errorf("address literal %q is not a domain", d)
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("invalid domain %q: %v", d, err)
	}
	a = strings.ToLower(a)
	if a == "" || strings.HasPrefix(a, ".") || strings.HasSuffix(a, ".") || strings.Contains(a, "..") {
		return "", fmt.Errorf("invalid domain %q", d)
	}
	return a, nil
}

// orgDomain returns the organizational domain (public suffix plus one label)
// of an ASCII domain. A public suffix itself has none.
func orgDomain(d string) (string, bool) {
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil || org == "" {
		return "", false
	}
	return org, true
}

// aligned reports whether the authenticated domain auth aligns with the From
// domain from, both in ASCII form: equal when strict, sharing an
// organizational domain when relaxed. Neither may be a public suffix.
func aligned(auth, from string, strict bool) bool {
	if auth == "" || from == "" {
		return false
	}
	authOrg, ok1 := orgDomain(auth)
	fromOrg, ok2 := orgDomain(from)
	if !ok1 || !ok2 {
		return false
	}
	if strict {
		return auth == from
	}
	return authOrg == fromOrg
}

// domainOfIdentity returns the ASCII domain of a value that is either a
// domain or an address ("user@example.com", "@example.com",
// "\"quoted local\"@example.com"), taking the part after the last "@".
func domainOfIdentity(v string) (string, error) {
	v = unquote(strings.TrimSpace(v))
	if i := strings.LastIndexByte(v, '@'); i >= 0 {
		v = v[i+1:]
	}
	v = strings.Trim(v, `"<> `)
	return asciiDomain(v)
}

// unquote strips one pair of surrounding double quotes.
func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}
