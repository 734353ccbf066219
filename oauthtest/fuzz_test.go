package oauthtest

import (
	"errors"
	"testing"
)

// FuzzXOAuth2Server feeds arbitrary initial responses to the XOAUTH2 server
// mechanism: it must never panic, and must accept only the exact user and
// token it was given.
func FuzzXOAuth2Server(f *testing.F) {
	f.Add([]byte("user=a@example.com\x01auth=Bearer tok\x01\x01"))
	f.Add([]byte("user=\x01auth=Bearer \x01\x01"))
	f.Add([]byte("auth=Bearer tok\x01user=a@example.com"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, ir []byte) {
		srv := NewXOAuth2Server(func(user, token string) error {
			if user == "a@example.com" && token == "tok" {
				return nil
			}
			return errors.New("no")
		})
		ch, done, err := srv.Next(ir)
		if done && err == nil {
			// Accepted: the response must have carried the right pair.
			return
		}
		if !done {
			// An error challenge; the client's empty answer ends it in failure.
			if ch == nil {
				t.Fatal("not done without a challenge")
			}
			if _, done, err := srv.Next([]byte{}); !done || err == nil {
				t.Fatalf("exchange after error challenge: done=%v err=%v", done, err)
			}
		}
	})
}

// FuzzVerifyAssertion feeds arbitrary JWT bearer assertions to the
// verifier: it must never panic or accept an unsigned one.
func FuzzVerifyAssertion(f *testing.F) {
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJzYUBleGFtcGxlIn0.c2ln")
	f.Add("a.b.c")
	f.Add("")
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJzYUBleGFtcGxlIn0.")
	s := &Server{URL: "http://127.0.0.1:1", jwtKeys: nil, opts: Options{}}
	f.Fuzz(func(t *testing.T, a string) {
		if _, err := s.verifyAssertionLocked(a); err == nil {
			t.Fatalf("assertion %q accepted without any registered key", a)
		}
	})
}
