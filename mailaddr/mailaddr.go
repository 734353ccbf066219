// Package mailaddr normalises email addresses for use as keys: the
// Userlike contact, thread and outbox keys, the verified From; and it picks
// the addresses a reply may be copied to (Copies).
//
// Only ASCII letters are lower-cased. Unicode case folding is not used on
// purpose: strings.ToLower maps U+212A KELVIN SIGN to "k" and U+0130 LATIN
// CAPITAL LETTER I WITH DOT ABOVE to "i", so "\u212Aate@example.com" would
// become "kate@example.com", another person's mailbox. RFC 5321 section 2.4
// leaves the local part to the receiving host, which may treat case as
// significant, and RFC 6532 allows UTF-8 there; folding ASCII is what
// common mail hosts do, and it can never merge two non-ASCII addresses.
package mailaddr

import (
	"net/mail"
	"strings"
)

// LowerASCII returns s with its ASCII letters lower-cased and every other
// character kept as written.
func LowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// Key returns the form of an address used to compare and store it:
// surrounding white space removed, ASCII letters lower-cased.
func Key(addr string) string {
	return LowerASCII(strings.TrimSpace(addr))
}

// Copies returns the addresses of cc to copy a reply to, in order: plain
// addr-specs (see Plain) other than those in exclude (compared as Key,
// ASCII case-insensitively), each once, at most max; dropped counts the
// usable addresses left out over max.
func Copies(cc []*mail.Address, exclude []string, max int) (out []string, dropped int) {
	skip := make(map[string]bool, len(exclude)+len(cc))
	for _, e := range exclude {
		skip[Key(e)] = true
	}
	for _, a := range cc {
		if a == nil || !Plain(a.Address) {
			continue
		}
		k := Key(a.Address)
		if skip[k] {
			continue
		}
		skip[k] = true
		if len(out) == max {
			dropped++
			continue
		}
		out = append(out, a.Address)
	}
	return out, dropped
}

// Plain reports whether a is an addr-spec that can be written in RCPT TO
// and an address header as is: RFC 5321 section 4.5.3.1.3 caps a path at
// 256 octets, so an address at 254.
func Plain(a string) bool {
	if a == "" || len(a) > 254 || strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '<' || r == '>' }) {
		return false
	}
	p, err := mail.ParseAddress("<" + a + ">")
	return err == nil && p.Address == a && strings.Contains(a, "@")
}
