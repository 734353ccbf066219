// Package oauthtoken obtains OAuth2 access tokens for a mailbox with
// golang.org/x/oauth2: app-only client credentials (Microsoft Entra ID), the
// JWT bearer grant (Google service accounts with domain-wide delegation),
// and the delegated device code and authorization code + PKCE flows. It
// writes no HTTP token code of its own.
package oauthtoken

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/oauth2/jwt"
)

// ClientCredentials returns a token source for the client credentials grant
// (RFC 6749 section 4.4), e.g. Entra ID app-only access with scope
// "https://outlook.office365.com/.default".
func ClientCredentials(ctx context.Context, cfg *clientcredentials.Config) oauth2.TokenSource {
	return cfg.TokenSource(ctx)
}

// JWTBearerOptions configure the JWT bearer grant (RFC 7523).
type JWTBearerOptions struct {
	// Issuer is the "iss" claim: a Google service account's client_email.
	Issuer string
	// PrivateKey is the PEM encoded RSA key (PKCS#1 or PKCS#8) that signs
	// the assertion with RS256.
	PrivateKey []byte
	// KeyID is the optional "kid" header.
	KeyID string
	// Subject is the mailbox to act for (domain-wide delegation).
	Subject string
	// Scopes requested, e.g. "https://mail.google.com/".
	Scopes []string
	// TokenURL is the token endpoint; it is also the assertion's audience.
	TokenURL string
}

// JWTBearer returns a token source for the JWT bearer grant.
func JWTBearer(ctx context.Context, opts JWTBearerOptions) (oauth2.TokenSource, error) {
	if _, err := parseRSAKey(opts.PrivateKey); err != nil {
		return nil, fmt.Errorf("oauthtoken: JWT bearer key for %q: %w", opts.Issuer, err)
	}
	cfg := &jwt.Config{
		Email:        opts.Issuer,
		PrivateKey:   opts.PrivateKey,
		PrivateKeyID: opts.KeyID,
		Subject:      opts.Subject,
		Scopes:       opts.Scopes,
		TokenURL:     opts.TokenURL,
	}
	return cfg.TokenSource(ctx), nil
}

// parseRSAKey checks the key up front so that a bad key file is reported at
// configuration time, not at the first login. The error never holds key bytes.
func parseRSAKey(b []byte) (*rsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, errors.New("not a PKCS#1 or PKCS#8 private key")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an RSA key")
	}
	return rk, nil
}

// DeviceLogin runs the device authorization grant (RFC 8628) once: it asks
// for a user code, hands it to show (which tells the operator where to enter
// it), and polls until the user approves, denies, or ctx ends.
func DeviceLogin(ctx context.Context, cfg *oauth2.Config, show func(*oauth2.DeviceAuthResponse) error) (*oauth2.Token, error) {
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		return nil, fmt.Errorf("oauthtoken: device authorization at %s: %w", cfg.Endpoint.DeviceAuthURL, err)
	}
	if err := show(da); err != nil {
		return nil, err
	}
	tok, err := cfg.DeviceAccessToken(ctx, da)
	if err != nil {
		return nil, fmt.Errorf("oauthtoken: device login: %w", err)
	}
	return tok, nil
}

// AuthCodeLogin runs the authorization code grant with PKCE S256 (RFC 7636)
// and a loopback redirect (RFC 8252 section 7.3): it listens on
// 127.0.0.1 at a free port, hands the authorization URL to open (which shows
// it to the operator or starts a browser), waits for the redirect and
// exchanges the code. cfg.RedirectURL is set by this function.
func AuthCodeLogin(ctx context.Context, cfg *oauth2.Config, open func(authURL string) error) (*oauth2.Token, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("oauthtoken: loopback listener: %w", err)
	}
	defer ln.Close()
	c := *cfg
	c.RedirectURL = "http://" + ln.Addr().String() + "/"
	verifier := oauth2.GenerateVerifier()
	state := oauth2.GenerateVerifier() // 32 random bytes, URL safe

	type result struct {
		code string
		err  error
	}
	done := make(chan result, 1)
	var once sync.Once
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var res result
		switch {
		case q.Get("state") != state:
			http.Error(w, "state mismatch", http.StatusBadRequest)
			return // not ours; keep waiting
		case q.Get("error") != "":
			res.err = fmt.Errorf("oauthtoken: authorization refused: %s %s", q.Get("error"), q.Get("error_description"))
			http.Error(w, "Login failed; see mailgate's output.", http.StatusForbidden)
		default:
			res.code = q.Get("code")
			fmt.Fprintln(w, "Login complete; you can close this window.")
		}
		once.Do(func() { done <- res })
	})}
	go srv.Serve(ln)
	defer srv.Close()

	authURL := c.AuthCodeURL(state, oauth2.AccessTypeOffline, oauth2.S256ChallengeOption(verifier))
	if err := open(authURL); err != nil {
		return nil, err
	}
	var res result
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case res = <-done:
	}
	if res.err != nil {
		return nil, res.err
	}
	tok, err := c.Exchange(ctx, res.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("oauthtoken: exchange authorization code: %w", err)
	}
	return tok, nil
}

// PersistFunc stores a token whose refresh token is new. It must commit
// durably before returning nil.
type PersistFunc func(ctx context.Context, tok *oauth2.Token) error

// RotatingSource is a token source for delegated grants whose refresh token
// rotates. Every time the refresh token changes it persists the token first
// and only then returns the access token, so a crash can never lose the one
// refresh token the server still accepts. If persisting fails, Token fails,
// and the next call retries the persist.
type RotatingSource struct {
	ctx     context.Context
	src     oauth2.TokenSource
	persist PersistFunc

	mu    sync.Mutex
	saved string // refresh token known to be persisted
}

// NewRotatingSource returns a source that refreshes tok with cfg (ahead of
// expiry, by x/oauth2's expiry margin) and persists rotations with persist.
// tok is assumed to be persisted already.
func NewRotatingSource(ctx context.Context, cfg *oauth2.Config, tok *oauth2.Token, persist PersistFunc) *RotatingSource {
	return &RotatingSource{
		ctx:     ctx,
		src:     cfg.TokenSource(ctx, tok),
		persist: persist,
		saved:   tok.RefreshToken,
	}
}

// Token implements oauth2.TokenSource.
func (s *RotatingSource) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok, err := s.src.Token()
	if err != nil {
		return nil, err
	}
	if tok.RefreshToken != "" && tok.RefreshToken != s.saved {
		if err := s.persist(s.ctx, tok); err != nil {
			return nil, fmt.Errorf("oauthtoken: persist rotated refresh token: %w", err)
		}
		s.saved = tok.RefreshToken
	}
	return tok, nil
}

// IsInvalidGrant reports whether err is the token endpoint's invalid_grant
// error (RFC 6749 section 5.2): the grant was revoked or has expired and
// only a new login can fix it.
func IsInvalidGrant(err error) bool {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return false
	}
	if re.ErrorCode != "" {
		return re.ErrorCode == "invalid_grant"
	}
	// x/oauth2/jwt does not parse the error body into ErrorCode.
	var body struct {
		Error string `json:"error"`
	}
	return json.Unmarshal(re.Body, &body) == nil && body.Error == "invalid_grant"
}
