package verify

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"

	"mailgate/mailaddr"
)

// identity is the single author of a message, as found in its From header.
type identity struct {
	addr   string // local@domain, local part ASCII-lower-cased, domain ASCII lower-cased
	local  string
	domain string // ASCII (punycode) form, lower-cased
	name   string // decoded display name
}

// parseFrom parses the values of all From header fields of a message (in
// header order) into exactly one mailbox. Anything else - no field, several
// fields, several addresses, group syntax, an empty or invalid address - is
// an error that says which.
func parseFrom(values []string) (identity, error) {
	switch len(values) {
	case 0:
		return identity{}, errors.New("no From header")
	case 1:
	default:
		return identity{}, fmt.Errorf("%d From headers, exactly one is allowed", len(values))
	}
	v := strings.TrimSpace(values[0])
	if v == "" {
		return identity{}, errors.New("empty From header")
	}
	if hasUnquotedGroupSyntax(v) {
		return identity{}, fmt.Errorf("From header %q uses group or route syntax", clip(v))
	}
	p := mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: lenientCharsetReader}}
	list, err := p.ParseList(v)
	if err != nil {
		return identity{}, fmt.Errorf("invalid From header %q: %v", clip(v), err)
	}
	switch len(list) {
	case 0:
		return identity{}, fmt.Errorf("From header %q holds no address", clip(v))
	case 1:
	default:
		return identity{}, fmt.Errorf("From header %q holds %d addresses, exactly one is allowed", clip(v), len(list))
	}
	a := list[0]
	at := strings.LastIndexByte(a.Address, '@')
	if at <= 0 || at == len(a.Address)-1 {
		return identity{}, fmt.Errorf("invalid From address %q", clip(a.Address))
	}
	local, dom := a.Address[:at], a.Address[at+1:]
	if !isDotAtom(local) {
		return identity{}, fmt.Errorf("From address %q: local part is not a plain dot-atom (quoted local parts are refused)", clip(a.Address))
	}
	ascii, err := asciiDomain(dom)
	if err != nil {
		return identity{}, fmt.Errorf("From address %q: %v", clip(a.Address), err)
	}
	if !strings.Contains(ascii, ".") {
		return identity{}, fmt.Errorf("From address %q: domain %q is not fully qualified", clip(a.Address), ascii)
	}
	local = mailaddr.LowerASCII(local)
	return identity{
		addr:   local + "@" + ascii,
		local:  local,
		domain: ascii,
		name:   cleanName(a.Name),
	}, nil
}

// hasUnquotedGroupSyntax reports whether s has a ':' or ';' outside quoted
// strings and comments: the marks of RFC 5322 group syntax
// ("Friends: a@x, b@y;") and of obsolete source routes ("<@relay:a@x>").
// net/mail accepts both and flattens them, so they are refused up front.
func hasUnquotedGroupSyntax(s string) bool {
	inQuote, escaped, depth := false, false, 0
	for _, r := range s {
		switch {
		case escaped:
			escaped = false
		case r == '\\' && (inQuote || depth > 0):
			escaped = true
		case inQuote:
			if r == '"' {
				inQuote = false
			}
		case r == '(':
			depth++
		case r == ')' && depth > 0:
			depth--
		case depth > 0:
		case r == '"':
			inQuote = true
		case r == ':' || r == ';':
			return true
		}
	}
	return false
}

// isDotAtom reports whether s is an RFC 5322 dot-atom (RFC 6532: UTF-8
// allowed): atext runs separated by single dots.
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == '.' {
			continue
		}
		if r < 0x80 {
			if r <= ' ' || r == 0x7f || strings.ContainsRune(`()<>[]:;@\,"`, r) {
				return false
			}
			continue
		}
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// cleanName trims a display name and drops control characters, so a decoded
// name cannot smuggle line breaks into logs or JSON consumers.
func cleanName(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// clip shortens attacker-supplied text quoted in reasons.
func clip(s string) string {
	const max = 120
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// lenientCharsetReader decodes encoded-words in every charset go-message
// knows and keeps the bytes of any other: an unknown charset in a display
// name must not make the address, which alone is the identity, invalid.
func lenientCharsetReader(label string, r io.Reader) (io.Reader, error) {
	if cr, err := charset.Reader(label, r); err == nil {
		return cr, nil
	}
	return r, nil
}
