package oauthtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/emersion/go-sasl"
)

// TokenCheck validates a bearer token for a login user, as a mail server's
// passdb would; it returns nil when the token is good for user.
type TokenCheck func(user, token string) error

// CheckByIntrospection returns a TokenCheck that asks the server's
// introspection endpoint, exactly as Dovecot's oauth2 passdb does
// (introspection_mode = post, username_attribute = email).
func (s *Server) CheckByIntrospection() TokenCheck {
	return func(user, token string) error {
		resp, err := http.PostForm(s.IntrospectURL(), url.Values{"token": {token}, "client_id": {""}, "client_secret": {""}})
		if err != nil {
			return fmt.Errorf("oauthtest: introspect: %w", err)
		}
		defer resp.Body.Close()
		var r struct {
			Active bool   `json:"active"`
			Email  string `json:"email"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return fmt.Errorf("oauthtest: introspect answer: %w", err)
		}
		if !r.Active || r.Email != user {
			return fmt.Errorf("oauthtest: token not valid for %q", user)
		}
		return nil
	}
}

// NewXOAuth2Server returns the server side of the XOAUTH2 mechanism for test
// mail servers. A rejected token gets the JSON error challenge; the client's
// (empty) answer to it then ends the exchange with an error.
func NewXOAuth2Server(check TokenCheck) sasl.Server {
	return &xoauth2Server{check: check}
}

type xoauth2Server struct {
	check  TokenCheck
	failed error
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if x.failed != nil {
		return nil, true, x.failed
	}
	if resp == nil {
		return []byte{}, false, nil // ask for the initial response
	}
	// user=<user>\x01auth=Bearer <token>\x01\x01
	var user, token string
	for _, f := range bytes.Split(bytes.TrimSuffix(resp, []byte("\x01\x01")), []byte("\x01")) {
		switch {
		case bytes.HasPrefix(f, []byte("user=")):
			user = string(f[len("user="):])
		case bytes.HasPrefix(f, []byte("auth=Bearer ")):
			token = string(f[len("auth=Bearer "):])
		}
	}
	if user == "" || token == "" {
		return nil, true, fmt.Errorf("xoauth2: malformed initial response")
	}
	if err := x.check(user, token); err != nil {
		x.failed = err
		return []byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`), false, nil
	}
	return nil, true, nil
}

// NewOAuthBearerServer returns the server side of OAUTHBEARER (RFC 7628),
// from go-sasl, checking tokens with check.
func NewOAuthBearerServer(check TokenCheck) sasl.Server {
	return sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
		if err := check(o.Username, o.Token); err != nil {
			return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
		}
		return nil
	})
}
