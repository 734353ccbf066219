// Package msgid makes and recognises mailgate's own Message-IDs.
//
// An id has the form <random.mac@domain>: random is 12 bytes of crypto/rand
// and mac is a truncated HMAC-SHA256 of random under the installation key, both
// base32 (lower case, no padding). The MAC lets the inbound side recognise
// mail that mailgate itself sent (a reply coming back, a bounce of it) without
// keeping any state, and it cannot be forged without the key.
package msgid

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"
)

const (
	randomLen = 12
	macLen    = 10
)

var encoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// Generator makes and checks Message-IDs under one key.
type Generator struct {
	key    []byte
	domain string
}

// NewGenerator returns a Generator for key (at least 16 bytes) and the domain
// used on the right-hand side of new ids.
func NewGenerator(key []byte, domain string) (*Generator, error) {
	if len(key) < 16 {
		return nil, fmt.Errorf("msgid: key of %d bytes is too short (need 16)", len(key))
	}
	domain = strings.ToLower(strings.TrimSpace(domain))
	if domain == "" || strings.ContainsAny(domain, "<>@ \t\r\n") {
		return nil, fmt.Errorf("msgid: invalid domain %q", domain)
	}
	return &Generator{key: append([]byte(nil), key...), domain: domain}, nil
}

// New returns a fresh Message-ID without angle brackets.
func (g *Generator) New() string {
	var r [randomLen]byte
	if _, err := rand.Read(r[:]); err != nil {
		panic("msgid: crypto/rand failed: " + err.Error())
	}
	return g.format(r[:])
}

func (g *Generator) format(random []byte) string {
	left := strings.ToLower(encoding.EncodeToString(random)) + "." + strings.ToLower(encoding.EncodeToString(g.mac(random)))
	return left + "@" + g.domain
}

func (g *Generator) mac(random []byte) []byte {
	m := hmac.New(sha256.New, g.key)
	m.Write(random)
	return m.Sum(nil)[:macLen]
}

// IsOwn reports whether id (with or without angle brackets) was made by a
// Generator with the same key. The domain is not part of the check, so a
// changed domain keeps old ids recognisable.
func (g *Generator) IsOwn(id string) bool {
	id = strings.TrimSpace(id)
	id = strings.TrimPrefix(id, "<")
	id = strings.TrimSuffix(id, ">")
	at := strings.LastIndexByte(id, '@')
	if at < 0 {
		return false
	}
	randPart, macPart, ok := strings.Cut(id[:at], ".")
	if !ok {
		return false
	}
	random, err := encoding.DecodeString(strings.ToUpper(randPart))
	if err != nil || len(random) != randomLen {
		return false
	}
	mac, err := encoding.DecodeString(strings.ToUpper(macPart))
	if err != nil || len(mac) != macLen {
		return false
	}
	return hmac.Equal(mac, g.mac(random))
}
