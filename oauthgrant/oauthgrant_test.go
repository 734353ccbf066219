package oauthgrant

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"mailgate/internal/fakeclock"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/config"
	"mailgate/oauthtest"
	"mailgate/store"
)

type fixture struct {
	auth *oauthtest.Server
	clk  *fakeclock.Clock
	db   *store.DB
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	// x/oauth2 judges expiry by the real clock, the server by clk: start
	// clk at the real time so that moving it past an expiry is seen by
	// the server first, and tokens are refreshed only when expired there.
	clk := fakeclock.New(time.Now())
	auth, err := oauthtest.Start(oauthtest.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auth.Close() })
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "mailgate.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &fixture{auth: auth, clk: clk, db: db}
}

func (f *fixture) delegated(extra func(*config.OAuth2)) config.OAuth2 {
	c := config.OAuth2{
		Provider: config.OAuth2Generic, Mode: config.OAuth2Delegated, ClientID: "mailgate",
		TokenURL: f.auth.TokenURL(), DeviceURL: f.auth.DeviceURL(), Scopes: []string{"mail"},
	}
	if extra != nil {
		extra(&c)
	}
	return c
}

// codeWriter collects Login's instructions and hands over the first
// user code or authorization URL it shows.
type codeWriter struct {
	re   *regexp.Regexp
	mu   sync.Mutex
	buf  strings.Builder
	once sync.Once
	got  chan string
}

func newCodeWriter(re string) *codeWriter {
	return &codeWriter{re: regexp.MustCompile(re), got: make(chan string, 1)}
}

func (w *codeWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if m := w.re.FindStringSubmatch(w.buf.String()); m != nil {
		w.once.Do(func() { w.got <- m[1] })
	}
	return len(p), nil
}

// login runs the device code login and approves it for support@.
func (f *fixture) login(t *testing.T, cfg config.OAuth2) {
	t.Helper()
	out := newCodeWriter(`enter the code\s+(\S+)`)
	done := make(chan error, 1)
	go func() {
		_, err := Login(context.Background(), LoginOptions{Channel: "support", Config: cfg, DB: f.db, Out: out})
		done <- err
	}()
	select {
	case code := <-out.got:
		if err := f.auth.ApproveDevice(code, "support@example.com"); err != nil {
			t.Fatal(err)
		}
	case err := <-done:
		t.Fatalf("login ended before showing a code: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) storedRT(t *testing.T) string {
	t.Helper()
	rt, err := f.db.OAuthRefreshToken(context.Background(), "support")
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func TestDelegatedRotationAndLoginNeeded(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.auth.AddClient(oauthtest.Client{ID: "mailgate"})
	cfg := f.delegated(nil)

	var needed []*LoginNeededError
	src, err := New(Options{Channel: "support", Config: cfg, DB: f.db, LoginCommand: "mailgate oauth login -c c.toml -channel support",
		OnLoginNeeded: func(e *LoginNeededError) { needed = append(needed, e) }})
	if err != nil {
		t.Fatal(err)
	}

	// Before any login: login needed, without asking the server.
	var lne *LoginNeededError
	if _, err := src.Token(ctx); !errors.As(err, &lne) || lne.Reason != "no login yet" {
		t.Fatalf("before login: %v", err)
	}
	if len(needed) != 1 || !strings.Contains(needed[0].Error(), "run: mailgate oauth login -c c.toml -channel support") {
		t.Fatalf("OnLoginNeeded calls: %v", needed)
	}

	f.login(t, cfg)
	if g, err := f.db.OAuthGrant(ctx, "support"); err != nil || g.LoginNeeded || g.Kind != "device_code" {
		t.Fatalf("after login: %+v %v", g, err)
	}
	// The Source picks the login up from the store.
	for round := range 3 {
		before := f.storedRT(t)
		tok, err := src.Token(ctx)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if sub, ok := f.auth.Active(tok); !ok || sub != "support@example.com" {
			t.Fatalf("round %d: token not active", round)
		}
		if src.LoginNeeded() != nil {
			t.Fatalf("round %d: still login needed", round)
		}
		// Every refresh rotated the refresh token, and the new one was
		// stored before the access token was handed out.
		after := f.storedRT(t)
		if after == before {
			t.Fatalf("round %d: refresh token not rotated in the store", round)
		}
		// Cached until it expires.
		if again, _ := src.Token(ctx); again != tok {
			t.Fatalf("round %d: token not reused", round)
		}
		// A restarted daemon (a new Source) continues from the store: the
		// stored token is the live one.
		if round == 1 {
			src2, _ := New(Options{Channel: "support", Config: cfg, DB: f.db})
			if _, err := src2.Token(ctx); err != nil {
				t.Fatalf("a new Source from the stored grant: %v", err)
			}
			// src2 spent the token src started from: src's next
			// refresh is refused, and it takes the stored one.
		}
		f.auth.Revoke(tok) // the mail server would now refuse it
		src.Reject(tok)
	}
	g, _ := f.db.OAuthGrant(ctx, "support")
	if g.LastRefresh.IsZero() || g.Expiry.IsZero() {
		t.Errorf("grant after refreshes: %+v", g)
	}

	// An administrator revokes the grant.
	tok, _ := src.Token(ctx)
	f.auth.Revoke(f.storedRT(t))
	src.Reject(tok)
	_, err = src.Token(ctx)
	if !errors.As(err, &lne) || !strings.Contains(lne.Reason, "invalid_grant") {
		t.Fatalf("after revocation: %v", err)
	}
	if len(needed) != 2 {
		t.Fatalf("OnLoginNeeded called %d times, want 2", len(needed))
	}
	if g, _ := f.db.OAuthGrant(ctx, "support"); !g.LoginNeeded || !strings.Contains(g.LoginReason, "invalid_grant") {
		t.Fatalf("store after revocation: %+v", g)
	}
	issued := f.auth.Issued()
	for range 3 {
		if _, err := src.Token(ctx); !errors.As(err, &lne) {
			t.Fatalf("still refused: %v", err)
		}
	}
	if len(needed) != 2 || f.auth.Issued() != issued {
		t.Fatalf("repeated: %d OnLoginNeeded calls, %d tokens issued", len(needed), f.auth.Issued()-issued)
	}

	// A new login ends it.
	f.login(t, cfg)
	if _, err := src.Token(ctx); err != nil || src.LoginNeeded() != nil {
		t.Fatalf("after new login: %v", err)
	}
}

func TestAuthCodeLoginPasted(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.auth.AddClient(oauthtest.Client{ID: "desktop", Secret: "not-really-secret"})
	f.auth.LoginAs("support@example.com")
	cfg := f.delegated(func(c *config.OAuth2) {
		c.ClientID, c.ClientSecret = "desktop", config.NewSecret("not-really-secret")
		c.DeviceURL, c.AuthURL = "", f.auth.AuthURL()
	})
	if cfg.Grant() != config.GrantAuthCode {
		t.Fatalf("grant %s", cfg.Grant())
	}
	out := newCodeWriter(`in a browser:\s+(\S+)`)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := Login(ctx, LoginOptions{Channel: "support", Config: cfg, DB: f.db, Out: out, In: pr})
		done <- err
	}()
	authURL := <-out.got
	// The browser, on another machine: it logs in and is redirected to a
	// loopback address it cannot reach; the person pastes that address.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if !strings.Contains(loc, "code=") {
		t.Fatalf("redirect %q", loc)
	}
	if _, err := io.WriteString(pw, "not the address\n"+loc+"\n"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	pw.Close()
	src, _ := New(Options{Channel: "support", Config: cfg, DB: f.db})
	tok, err := src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sub, ok := f.auth.Active(tok); !ok || sub != "support@example.com" {
		t.Fatal("token after auth code login not active")
	}
	if g, _ := f.db.OAuthGrant(ctx, "support"); g.Kind != "auth_code" {
		t.Errorf("grant kind %q", g.Kind)
	}
}

func TestClientCredentials(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.auth.AddClient(oauthtest.Client{ID: "app", Secret: "cs-s3cret", Subject: "support@example.com"})
	cfg := config.OAuth2{Provider: config.OAuth2Generic, Mode: config.OAuth2AppOnly, ClientID: "app",
		ClientSecret: config.NewSecret("cs-s3cret"), TokenURL: f.auth.TokenURL(), Scopes: []string{"https://outlook.office365.com/.default"}}
	src, err := New(Options{Channel: "support", Config: cfg, DB: f.db})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sub, ok := f.auth.Active(tok); !ok || sub != "support@example.com" {
		t.Fatal("token not active")
	}
	if again, _ := src.Token(ctx); again != tok {
		t.Error("token not reused")
	}
	src.Reject(tok)
	if again, _ := src.Token(ctx); again == tok {
		t.Error("rejected token handed out again")
	}
	if g, err := f.db.OAuthGrant(ctx, "support"); err != nil || g.Kind != "client_credentials" || g.LastRefresh.IsZero() || g.HasRefreshToken {
		t.Errorf("grant %+v %v", g, err)
	}

	// A wrong secret is an error that names neither the secret nor a
	// login (app-only grants have none).
	cfg.ClientSecret = config.NewSecret("wrong-s3cret")
	src, _ = New(Options{Channel: "support", Config: cfg, DB: f.db})
	_, err = src.Token(ctx)
	var lne *LoginNeededError
	if err == nil || errors.As(err, &lne) || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("wrong secret: %v", err)
	}
	// Login for an app-only grant just checks it.
	out := &strings.Builder{}
	cfg.ClientSecret = config.NewSecret("cs-s3cret")
	if _, err := Login(ctx, LoginOptions{Channel: "support", Config: cfg, DB: f.db, Out: out}); err != nil || !strings.Contains(out.String(), "no login needed") {
		t.Fatalf("login: %v %q", err, out)
	}
}

func TestServiceAccount(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f.auth.AddJWTKey("mailgate@proj.iam.gserviceaccount.com", &key.PublicKey)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	js, _ := json.Marshal(map[string]string{
		"type": "service_account", "client_email": "mailgate@proj.iam.gserviceaccount.com", "private_key_id": "k1",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "token_uri": f.auth.TokenURL(),
	})
	cfg := config.OAuth2{Provider: config.OAuth2Google, Mode: config.OAuth2AppOnly, ServiceAccountKey: config.NewSecret(string(js)),
		Subject: "support@example.com", TokenURL: f.auth.TokenURL(), Scopes: []string{"https://mail.google.com/"}}
	src, err := New(Options{Channel: "support", Config: cfg, DB: f.db})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sub, ok := f.auth.Active(tok); !ok || sub != "support@example.com" {
		t.Fatalf("token active=%v for %q", ok, sub)
	}
	cfg.ServiceAccountKey = config.NewSecret(`{"type":"service_account","client_email":"x","private_key":"garbage-s3cret"}`)
	if _, err := New(Options{Channel: "support", Config: cfg, DB: f.db}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("bad key: %v", err)
	}
}

// TestRotatedByAnotherProcess: a second process (check-config -connect
// beside the daemon) refreshing the same grant spends the refresh token the
// first one holds; the first one then takes the stored token instead of
// declaring the grant lost.
func TestRotatedByAnotherProcess(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	// Tokens that live no longer than x/oauth2's expiry margin are
	// refreshed on every Token call.
	short, err := oauthtest.Start(oauthtest.Options{AccessTokenLifetime: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { short.Close() })
	f.auth = short
	f.auth.AddClient(oauthtest.Client{ID: "mailgate"})
	cfg := f.delegated(nil)
	f.login(t, cfg)

	daemon, _ := New(Options{Channel: "support", Config: cfg, DB: f.db})
	other, _ := New(Options{Channel: "support", Config: cfg, DB: f.db})
	for i := range 3 {
		for _, src := range []*Source{daemon, other} {
			if _, err := src.Token(ctx); err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		}
	}
	if daemon.LoginNeeded() != nil || other.LoginNeeded() != nil {
		t.Fatal("login needed after concurrent rotation")
	}
}
