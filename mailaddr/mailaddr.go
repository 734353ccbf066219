// Package mailaddr normalises email addresses for use as keys: the
// Userlike contact, thread and outbox keys, the verified From.
//
// Only ASCII letters are lower-cased. Unicode case folding is not used on
// purpose: strings.ToLower maps U+212A KELVIN SIGN to "k" and U+0130 LATIN
// CAPITAL LETTER I WITH DOT ABOVE to "i", so "\u212Aate@example.com" would
// become "kate@example.com", another person's mailbox. RFC 5321 section 2.4
// leaves the local part to the receiving host, which may treat case as
// significant, and RFC 6532 allows UTF-8 there; folding ASCII is what
// common mail hosts do, and it can never merge two non-ASCII addresses.
package mailaddr

import "strings"

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
