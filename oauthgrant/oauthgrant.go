// Package oauthgrant keeps the OAuth2 access tokens of a channel configured
// with [channel.oauth2]: it runs the configured grant with package
// oauthtoken, keeps a delegated grant's refresh token in the store (a
// rotated one is committed before the access token that came with it is
// handed out), and turns a refused grant (invalid_grant) into "login
// needed", which only `mailgate oauth login` ends.
package oauthgrant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"mailgate/config"
	"mailgate/oauthtoken"
	"mailgate/store"
)

// DefaultHTTPTimeout bounds each request to the token endpoint.
const DefaultHTTPTimeout = 30 * time.Second

// Options configure a Source.
type Options struct {
	// Channel names the channel in the store, errors and logs.
	Channel string
	// Config is the channel's [channel.oauth2]; it must be enabled.
	Config config.OAuth2
	// DB keeps the grant.
	DB *store.DB
	// LoginCommand is the command that logs the channel in again, named
	// in errors (e.g. "mailgate oauth login -c /etc/mailgate/config.toml
	// -channel support").
	LoginCommand string
	// OnLoginNeeded is called once each time the grant turns out to be
	// refused, with the error that says so. Optional.
	OnLoginNeeded func(*LoginNeededError)
	// HTTPClient talks to the token endpoint; nil means a client with
	// DefaultHTTPTimeout.
	HTTPClient *http.Client
}

// LoginNeededError reports that a delegated grant was refused (revoked,
// expired, or never logged in): only a new login helps.
type LoginNeededError struct {
	Channel string
	// Reason is the authorization server's word, never a token.
	Reason string
	// Command logs the channel in again.
	Command string
}

// Error implements error.
func (e *LoginNeededError) Error() string {
	return fmt.Sprintf("oauth2: channel %q: login needed (%s); run: %s", e.Channel, e.Reason, e.Command)
}

// Source hands out current access tokens of one channel. It is safe for
// concurrent use: the IMAP folders, the Sent folder and the SMTP sender of
// a channel share one.
type Source struct {
	opts  Options
	grant config.OAuth2Grant
	ctx   context.Context // carries the HTTP client of x/oauth2

	mu        sync.Mutex
	src       oauth2.TokenSource // nil: build on the next Token
	usedRT    string             // refresh token src started from (delegated)
	persisted string             // access token whose grant SaveOAuthLogin stored
	last      string             // last access token handed out
	needed    *LoginNeededError  // set while the grant is refused
}

// New returns a Source. It checks what can be checked without the network
// (the service account key).
func New(opts Options) (*Source, error) {
	if !opts.Config.Enabled() {
		return nil, fmt.Errorf("oauthgrant: channel %q has no [channel.oauth2]", opts.Channel)
	}
	if opts.DB == nil {
		return nil, fmt.Errorf("oauthgrant: channel %q: no store", opts.Channel)
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	s := &Source{
		opts:  opts,
		grant: opts.Config.Grant(),
		ctx:   context.WithValue(context.Background(), oauth2.HTTPClient, hc),
	}
	if s.grant == config.GrantJWTBearer {
		if _, err := s.jwtSource(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Grant returns the grant the tokens come from.
func (s *Source) Grant() config.OAuth2Grant { return s.grant }

// LoginNeeded returns the error of a refused grant, or nil.
func (s *Source) LoginNeeded() *LoginNeededError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.needed
}

// Token returns a current access token, refreshing it ahead of its expiry.
// A refused delegated grant yields a *LoginNeededError until the store holds
// a new login; while it does, Token reads the store and asks no server.
func (s *Source) Token(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tok, err := s.tokenLocked(ctx, true)
	if err != nil {
		return "", err
	}
	if tok.AccessToken != s.last {
		s.last = tok.AccessToken
		if tok.AccessToken != s.persisted {
			// An access token without a new refresh token: record the
			// refresh for `oauth status`.
			if err := s.opts.DB.OAuthRefreshed(ctx, s.opts.Channel, string(s.grant), tok.Expiry); err != nil {
				return "", err
			}
		}
	}
	return tok.AccessToken, nil
}

func (s *Source) tokenLocked(ctx context.Context, retry bool) (*oauth2.Token, error) {
	if s.src == nil {
		if err := s.buildLocked(ctx); err != nil {
			return nil, err
		}
	}
	tok, err := s.src.Token()
	if err == nil {
		s.needed = nil
		return tok, nil
	}
	if !oauthtoken.IsInvalidGrant(err) || !s.grant.Delegated() {
		s.src = nil // start over on the next call
		return nil, fmt.Errorf("oauth2: channel %q: get an access token from %s: %s", s.opts.Channel, s.opts.Config.TokenURL, Describe(err))
	}
	// Another process (check-config -connect, a login) may have rotated
	// the refresh token under us: start over from the stored one once.
	s.src = nil
	if rt, serr := s.opts.DB.OAuthRefreshToken(ctx, s.opts.Channel); retry && serr == nil && rt != s.usedRT {
		return s.tokenLocked(ctx, false)
	}
	return nil, s.refuseLocked(ctx, Describe(err))
}

// refuseLocked records a refused grant in the store and reports it once.
func (s *Source) refuseLocked(ctx context.Context, reason string) error {
	e := &LoginNeededError{Channel: s.opts.Channel, Reason: reason, Command: s.opts.LoginCommand}
	if s.needed == nil || s.needed.Reason != reason {
		if err := s.opts.DB.SetOAuthLoginNeeded(ctx, s.opts.Channel, string(s.grant), reason); err != nil {
			return errors.Join(e, err)
		}
		if s.needed == nil && s.opts.OnLoginNeeded != nil {
			s.opts.OnLoginNeeded(e)
		}
	}
	s.needed = e
	return e
}

// buildLocked makes the token source of the grant.
func (s *Source) buildLocked(ctx context.Context) error {
	c := s.opts.Config
	switch s.grant {
	case config.GrantClientCredentials:
		s.src = oauthtoken.ClientCredentials(s.ctx, &clientcredentials.Config{
			ClientID: c.ClientID, ClientSecret: c.ClientSecret.Reveal(), TokenURL: c.TokenURL, Scopes: c.Scopes,
		})
		return nil
	case config.GrantJWTBearer:
		src, err := s.jwtSource()
		s.src = src
		return err
	}
	g, err := s.opts.DB.OAuthGrant(ctx, s.opts.Channel)
	switch {
	case errors.Is(err, store.ErrNotFound) || err == nil && !g.HasRefreshToken:
		return s.refuseLocked(ctx, "no login yet")
	case err != nil:
		return err
	case g.LoginNeeded:
		return s.refuseLocked(ctx, g.LoginReason)
	}
	rt, err := s.opts.DB.OAuthRefreshToken(ctx, s.opts.Channel)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return s.refuseLocked(ctx, "no login yet")
		}
		return err
	}
	s.usedRT = rt
	// An expired access token: the first Token refreshes (and rotates).
	tok := &oauth2.Token{RefreshToken: rt, Expiry: time.Unix(1, 0)}
	s.src = oauthtoken.NewRotatingSource(s.ctx, OAuth2Config(c), tok, func(pctx context.Context, t *oauth2.Token) error {
		// Runs inside Token with s.mu held.
		if err := s.opts.DB.SaveOAuthLogin(pctx, s.opts.Channel, string(s.grant), t.RefreshToken, t.Expiry); err != nil {
			return err
		}
		s.usedRT, s.persisted = t.RefreshToken, t.AccessToken
		return nil
	})
	return nil
}

func (s *Source) jwtSource() (oauth2.TokenSource, error) {
	c := s.opts.Config
	sa, err := config.ParseServiceAccount(c.ServiceAccountKey)
	if err != nil {
		return nil, fmt.Errorf("oauth2: channel %q: service account key: %w", s.opts.Channel, err)
	}
	return oauthtoken.JWTBearer(s.ctx, oauthtoken.JWTBearerOptions{
		Issuer:     sa.ClientEmail,
		PrivateKey: []byte(sa.PrivateKey.Reveal()),
		KeyID:      sa.PrivateKeyID,
		Subject:    c.Subject,
		Scopes:     c.Scopes,
		TokenURL:   sa.TokenURI,
	})
}

// Reject tells the Source that the mail server refused token: the next
// Token gets a new one from the authorization server instead of handing
// out the cached one again until it expires (a revoked token looks valid
// until then).
func (s *Source) Reject(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token != "" && token == s.last {
		s.src = nil
	}
}

// OAuth2Config is the x/oauth2 configuration of a delegated grant.
func OAuth2Config(c config.OAuth2) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     c.ClientID,
		ClientSecret: c.ClientSecret.Reveal(),
		Scopes:       c.Scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:       c.AuthURL,
			TokenURL:      c.TokenURL,
			DeviceAuthURL: c.DeviceURL,
		},
	}
}

// Describe says why a token request failed in words safe to log: the
// OAuth2 error code and description (RFC 6749 section 5.2) rather than the
// raw response, and never a token or secret.
func Describe(err error) string {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return err.Error()
	}
	code, desc := re.ErrorCode, re.ErrorDescription
	if code == "" {
		var body struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(re.Body, &body) == nil {
			code, desc = body.Error, body.Description
		}
	}
	status := ""
	if re.Response != nil {
		status = re.Response.Status
	}
	switch {
	case code == "":
		return "token endpoint answered " + status
	case desc == "":
		return code
	}
	// Descriptions are the server's prose; keep them on one line and short.
	desc = strings.Join(strings.Fields(desc), " ")
	if len(desc) > 200 {
		desc = desc[:200] + "…"
	}
	return code + ": " + desc
}

// NeedsLogin reports true: imapsync and smtpout recognise a grant that
// needs a person by this method.
func (e *LoginNeededError) NeedsLogin() bool { return true }
