// Package oauthtest is an OAuth2 authorization server for tests. It runs on
// a loopback listener and implements the grants mailgate uses against
// Microsoft Entra ID and Google: client credentials (RFC 6749 section 4.4),
// the JWT bearer grant (RFC 7523), the device authorization grant (RFC 8628),
// the authorization code grant with PKCE S256 (RFC 7636), refresh tokens that
// rotate on every use, revocation (RFC 7009) and token introspection
// (RFC 7662) in the shape Dovecot's oauth2 passdb expects.
//
// It is a non-test package so that unit tests and the e2e suite (where
// Dovecot calls its introspection endpoint) share one implementation.
package oauthtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Grant type URNs.
const (
	grantJWTBearer  = "urn:ietf:params:oauth:grant-type:jwt-bearer"  // RFC 7523
	grantDeviceCode = "urn:ietf:params:oauth:grant-type:device_code" // RFC 8628
)

// Client is a registered OAuth2 client.
type Client struct {
	ID     string
	Secret string
	// Subject is the mailbox that tokens from the client credentials grant
	// are issued for (app-only access).
	Subject string
}

// Options configure a Server.
type Options struct {
	// AccessTokenLifetime is how long issued access tokens stay valid;
	// one minute when zero.
	AccessTokenLifetime time.Duration
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
}

// Server is a running authorization server. Its methods are safe for
// concurrent use.
type Server struct {
	// URL is the base URL, e.g. "http://127.0.0.1:41234".
	URL string

	opts Options
	srv  *http.Server
	ln   net.Listener

	mu       sync.Mutex
	clients  map[string]Client
	jwtKeys  map[string]*rsa.PublicKey // by issuer
	access   map[string]*grant         // access token -> grant
	accessEx map[string]time.Time      // access token -> expiry
	refresh  map[string]*grant         // live refresh token -> grant
	codes    map[string]*authCode
	devices  map[string]*deviceAuth // by device code
	users    map[string]string      // user code -> device code
	loginAs  string
	revoked  map[string]bool // access tokens revoked
	issued   int             // access tokens issued, for tests
}

// grant is one authorization: a client acting for a subject.
type grant struct {
	clientID string
	subject  string
	scope    string
	revoked  bool
}

type authCode struct {
	g           *grant
	redirectURI string
	challenge   string
	expires     time.Time
}

type deviceAuth struct {
	clientID string
	scope    string
	subject  string // set on approval
	denied   bool
	expires  time.Time
}

// Start starts a server on 127.0.0.1 at a free port.
func Start(opts Options) (*Server, error) {
	if opts.AccessTokenLifetime == 0 {
		opts.AccessTokenLifetime = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("oauthtest: listen: %w", err)
	}
	s := &Server{
		URL:      "http://" + ln.Addr().String(),
		opts:     opts,
		ln:       ln,
		clients:  map[string]Client{},
		jwtKeys:  map[string]*rsa.PublicKey{},
		access:   map[string]*grant{},
		accessEx: map[string]time.Time{},
		refresh:  map[string]*grant{},
		codes:    map[string]*authCode{},
		devices:  map[string]*deviceAuth{},
		users:    map[string]string{},
		revoked:  map[string]bool{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.handleToken)
	mux.HandleFunc("POST /device", s.handleDevice)
	mux.HandleFunc("GET /authorize", s.handleAuthorize)
	mux.HandleFunc("POST /revoke", s.handleRevoke)
	mux.HandleFunc("POST /introspect", s.handleIntrospect)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

// Endpoint URLs.
func (s *Server) TokenURL() string      { return s.URL + "/token" }
func (s *Server) DeviceURL() string     { return s.URL + "/device" }
func (s *Server) AuthURL() string       { return s.URL + "/authorize" }
func (s *Server) RevokeURL() string     { return s.URL + "/revoke" }
func (s *Server) IntrospectURL() string { return s.URL + "/introspect" }

// AddClient registers a client.
func (s *Server) AddClient(c Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[c.ID] = c
}

// AddJWTKey registers the public key that verifies RS256 assertions whose
// "iss" claim is issuer (RFC 7523; a Google service account's email).
func (s *Server) AddJWTKey(issuer string, key *rsa.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jwtKeys[issuer] = key
}

// LoginAs sets the user that the authorization endpoint signs in and
// consents for, as a browser would.
func (s *Server) LoginAs(subject string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loginAs = subject
}

// ApproveDevice approves the device authorization with the given user code
// for subject, as the user would at the verification URI.
func (s *Server) ApproveDevice(userCode, subject string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[s.users[userCode]]
	if d == nil {
		return fmt.Errorf("oauthtest: unknown user code %q", userCode)
	}
	d.subject = subject
	return nil
}

// DenyDevice denies the device authorization with the given user code.
func (s *Server) DenyDevice(userCode string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[s.users[userCode]]
	if d == nil {
		return fmt.Errorf("oauthtest: unknown user code %q", userCode)
	}
	d.denied = true
	return nil
}

// Revoke revokes token (access or refresh), as an administrator would. A
// revoked refresh token also invalidates the access tokens of its grant.
func (s *Server) Revoke(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revokeLocked(token)
}

// Issued reports how many access tokens the server has issued.
func (s *Server) Issued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued
}

// Active reports whether token is a live access token, and for whom.
func (s *Server) Active(token string) (subject string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.access[token]
	if g == nil || g.revoked || s.revoked[token] || !s.opts.Now().Before(s.accessEx[token]) {
		return "", false
	}
	return g.subject, true
}

func (s *Server) revokeLocked(token string) {
	if g := s.refresh[token]; g != nil {
		g.revoked = true
		delete(s.refresh, token)
	}
	if _, ok := s.access[token]; ok {
		s.revoked[token] = true
	}
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// oauthError writes an RFC 6749 section 5.2 error response.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

// authClient authenticates the client by HTTP Basic or form parameters
// (RFC 6749 section 2.3.1). A public client (empty secret) needs only its id.
func (s *Server) authClient(r *http.Request) (Client, bool) {
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
	}
	c, ok := s.clients[id]
	if !ok {
		return Client{}, false
	}
	if subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		return Client{}, false
	}
	return c, true
}

// issueLocked writes a token response for g; with a refresh token when
// withRefresh.
func (s *Server) issueLocked(w http.ResponseWriter, g *grant, withRefresh bool) {
	at := randomToken()
	s.access[at] = g
	s.accessEx[at] = s.opts.Now().Add(s.opts.AccessTokenLifetime)
	s.issued++
	resp := map[string]any{
		"access_token": at,
		"token_type":   "Bearer",
		"expires_in":   int(s.opts.AccessTokenLifetime / time.Second),
		"scope":        g.scope,
	}
	if withRefresh {
		rt := randomToken()
		s.refresh[rt] = g
		resp["refresh_token"] = rt
	}
	writeJSON(w, resp)
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "bad form body")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gt := r.PostFormValue("grant_type")
	if gt == grantJWTBearer {
		s.jwtBearerLocked(w, r)
		return
	}
	c, ok := s.authClient(r)
	if !ok {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	switch gt {
	case "client_credentials":
		if c.Secret == "" || c.Subject == "" {
			oauthError(w, http.StatusBadRequest, "unauthorized_client", "client may not use client credentials")
			return
		}
		s.issueLocked(w, &grant{clientID: c.ID, subject: c.Subject, scope: r.PostFormValue("scope")}, false)
	case "refresh_token":
		rt := r.PostFormValue("refresh_token")
		g := s.refresh[rt]
		if g == nil || g.revoked || g.clientID != c.ID {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "refresh token is invalid, used or revoked")
			return
		}
		// Rotation: the presented refresh token is spent.
		delete(s.refresh, rt)
		s.issueLocked(w, g, true)
	case "authorization_code":
		s.authCodeLocked(w, r, c)
	case grantDeviceCode:
		s.deviceTokenLocked(w, r, c)
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant type "+gt)
	}
}

func (s *Server) authCodeLocked(w http.ResponseWriter, r *http.Request, c Client) {
	code := r.PostFormValue("code")
	ac := s.codes[code]
	delete(s.codes, code) // codes are single use
	if ac == nil || ac.g.clientID != c.ID || !s.opts.Now().Before(ac.expires) {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "authorization code is invalid or expired")
		return
	}
	if r.PostFormValue("redirect_uri") != ac.redirectURI {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri does not match")
		return
	}
	// RFC 7636 section 4.6: BASE64URL(SHA256(code_verifier)) == code_challenge.
	sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(ac.challenge)) != 1 {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "PKCE verification failed")
		return
	}
	s.issueLocked(w, ac.g, true)
}

func (s *Server) deviceTokenLocked(w http.ResponseWriter, r *http.Request, c Client) {
	dc := r.PostFormValue("device_code")
	d := s.devices[dc]
	switch {
	case d == nil || d.clientID != c.ID:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown device code")
	case !s.opts.Now().Before(d.expires):
		oauthError(w, http.StatusBadRequest, "expired_token", "device code expired")
	case d.denied:
		oauthError(w, http.StatusBadRequest, "access_denied", "user denied the request")
	case d.subject == "":
		oauthError(w, http.StatusBadRequest, "authorization_pending", "waiting for the user")
	default:
		delete(s.devices, dc)
		s.issueLocked(w, &grant{clientID: c.ID, subject: d.subject, scope: d.scope}, true)
	}
}

// handleDevice is the device authorization endpoint (RFC 8628 section 3.1).
func (s *Server) handleDevice(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "bad form body")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.authClient(r)
	if !ok {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	dc, uc := randomToken(), strings.ToUpper(randomToken()[:8])
	s.devices[dc] = &deviceAuth{clientID: c.ID, scope: r.PostFormValue("scope"), expires: s.opts.Now().Add(10 * time.Minute)}
	s.users[uc] = dc
	writeJSON(w, map[string]any{
		"device_code":      dc,
		"user_code":        uc,
		"verification_uri": s.URL + "/device/verify",
		"expires_in":       600,
		"interval":         1,
	})
}

// handleAuthorize is the authorization endpoint. It signs in the user set
// by LoginAs without a page and redirects with a code (RFC 6749 section 4.1.2).
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[q.Get("client_id")]
	if !ok {
		http.Error(w, "unknown client", http.StatusBadRequest)
		return
	}
	redir, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || redir.Scheme != "http" || (redir.Hostname() != "127.0.0.1" && redir.Hostname() != "localhost") {
		// Only loopback redirects (RFC 8252 section 7.3) are accepted.
		http.Error(w, "redirect_uri must be a loopback URL", http.StatusBadRequest)
		return
	}
	v := url.Values{"state": {q.Get("state")}}
	switch {
	case q.Get("response_type") != "code":
		v.Set("error", "unsupported_response_type")
	case q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		v.Set("error", "invalid_request")
		v.Set("error_description", "PKCE with S256 is required")
	case s.loginAs == "":
		v.Set("error", "access_denied")
	default:
		code := randomToken()
		s.codes[code] = &authCode{
			g:           &grant{clientID: c.ID, subject: s.loginAs, scope: q.Get("scope")},
			redirectURI: q.Get("redirect_uri"),
			challenge:   q.Get("code_challenge"),
			expires:     s.opts.Now().Add(time.Minute),
		}
		v.Set("code", code)
	}
	redir.RawQuery = v.Encode()
	http.Redirect(w, r, redir.String(), http.StatusFound)
}

// handleRevoke is the revocation endpoint (RFC 7009). It answers 200 for
// unknown tokens too, as section 2.2 requires.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "bad form body")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.authClient(r); !ok {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	s.revokeLocked(r.PostFormValue("token"))
	w.WriteHeader(http.StatusOK)
}

// handleIntrospect is the introspection endpoint (RFC 7662). Like Dovecot's
// expectations (introspection_mode = post), it takes the token as a form
// field and answers {"active": true, "email": ...} or {"active": false}.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "bad form body")
		return
	}
	tok := r.PostFormValue("token")
	s.mu.Lock()
	g := s.access[tok]
	exp := s.accessEx[tok]
	active := g != nil && !g.revoked && !s.revoked[tok] && s.opts.Now().Before(exp)
	s.mu.Unlock()
	if !active {
		writeJSON(w, map[string]any{"active": false})
		return
	}
	writeJSON(w, map[string]any{
		"active":    true,
		"email":     g.subject,
		"sub":       g.subject,
		"username":  g.subject,
		"client_id": g.clientID,
		"scope":     g.scope,
		"exp":       exp.Unix(),
	})
}

// jwtBearerLocked implements the JWT bearer grant (RFC 7523 section 2.1):
// an RS256 assertion signed by a registered issuer, for the mailbox in "sub".
func (s *Server) jwtBearerLocked(w http.ResponseWriter, r *http.Request) {
	claims, err := s.verifyAssertionLocked(r.PostFormValue("assertion"))
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", err.Error())
		return
	}
	sub := claims.Sub
	if sub == "" {
		sub = claims.Iss
	}
	s.issueLocked(w, &grant{clientID: claims.Iss, subject: sub, scope: claims.Scope}, false)
}

type jwtClaims struct {
	Iss   string `json:"iss"`
	Sub   string `json:"sub"`
	Aud   string `json:"aud"`
	Scope string `json:"scope"`
	Exp   int64  `json:"exp"`
	Iat   int64  `json:"iat"`
}

func (s *Server) verifyAssertionLocked(assertion string) (*jwtClaims, error) {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("assertion is not a compact JWS")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("assertion header: %v", err)
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hb, &hdr); err != nil || hdr.Alg != "RS256" {
		return nil, fmt.Errorf("assertion must be signed with RS256")
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("assertion payload: %v", err)
	}
	var c jwtClaims
	if err := json.Unmarshal(pb, &c); err != nil {
		return nil, fmt.Errorf("assertion claims: %v", err)
	}
	key := s.jwtKeys[c.Iss]
	if key == nil {
		return nil, fmt.Errorf("unknown issuer %q", c.Iss)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("assertion signature: %v", err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig); err != nil {
		return nil, fmt.Errorf("assertion signature does not verify")
	}
	if c.Aud != s.TokenURL() {
		return nil, fmt.Errorf("assertion audience %q is not %q", c.Aud, s.TokenURL())
	}
	if now := s.opts.Now().Unix(); c.Exp <= now {
		return nil, fmt.Errorf("assertion expired")
	}
	return &c, nil
}
