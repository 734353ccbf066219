package oauthtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func startServer(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// post sends a form and decodes the JSON answer.
func post(t *testing.T, u string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]any{}
	if resp.StatusCode != http.StatusOK || strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		json.NewDecoder(resp.Body).Decode(&m)
	}
	return resp.StatusCode, m
}

func introspect(t *testing.T, s *Server, tok string) map[string]any {
	t.Helper()
	_, m := post(t, s.IntrospectURL(), url.Values{"token": {tok}, "client_id": {""}, "client_secret": {""}})
	return m
}

func TestClientCredentialsAndIntrospection(t *testing.T) {
	s := startServer(t, Options{})
	s.AddClient(Client{ID: "app", Secret: "s3cret", Subject: "support@example.com"})

	code, m := post(t, s.TokenURL(), url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"wrong"}})
	if code != http.StatusUnauthorized || m["error"] != "invalid_client" {
		t.Fatalf("wrong secret: %d %v", code, m)
	}
	code, m = post(t, s.TokenURL(), url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"s3cret"}})
	if code != http.StatusOK {
		t.Fatalf("token: %d %v", code, m)
	}
	if _, ok := m["refresh_token"]; ok {
		t.Error("client credentials must not return a refresh token")
	}
	at := m["access_token"].(string)
	got := introspect(t, s, at)
	if got["active"] != true || got["email"] != "support@example.com" {
		t.Errorf("introspect = %v", got)
	}
	if got := introspect(t, s, "bogus"); got["active"] != false {
		t.Errorf("bogus token introspects as %v", got)
	}
	s.Revoke(at)
	if got := introspect(t, s, at); got["active"] != false {
		t.Errorf("revoked token introspects as %v", got)
	}
}

func TestAccessTokenExpires(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := startServer(t, Options{AccessTokenLifetime: time.Minute, Now: func() time.Time { return now }})
	s.AddClient(Client{ID: "app", Secret: "x", Subject: "a@example.com"})
	_, m := post(t, s.TokenURL(), url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"x"}})
	at := m["access_token"].(string)
	if m["expires_in"] != float64(60) {
		t.Errorf("expires_in = %v", m["expires_in"])
	}
	if introspect(t, s, at)["active"] != true {
		t.Fatal("fresh token inactive")
	}
	now = now.Add(time.Minute)
	if introspect(t, s, at)["active"] != false {
		t.Fatal("expired token active")
	}
}

func TestAuthCodePKCEAndRotation(t *testing.T) {
	s := startServer(t, Options{})
	s.AddClient(Client{ID: "desktop"})
	s.LoginAs("agent@example.com")
	verifier := "the-verifier-written-for-this-test-0123456789"
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	redirect := "http://127.0.0.1:9/cb"

	getCode := func() string {
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		q := url.Values{"response_type": {"code"}, "client_id": {"desktop"}, "redirect_uri": {redirect},
			"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "state": {"st"}}
		resp, err := c.Get(s.AuthURL() + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if loc.Query().Get("state") != "st" || loc.Query().Get("code") == "" {
			t.Fatalf("redirect %q", loc)
		}
		return loc.Query().Get("code")
	}

	// A wrong verifier fails, and the code is spent.
	code := getCode()
	st, m := post(t, s.TokenURL(), url.Values{"grant_type": {"authorization_code"}, "client_id": {"desktop"},
		"code": {code}, "redirect_uri": {redirect}, "code_verifier": {"wrong"}})
	if st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("wrong verifier: %d %v", st, m)
	}
	code = getCode()
	st, m = post(t, s.TokenURL(), url.Values{"grant_type": {"authorization_code"}, "client_id": {"desktop"},
		"code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}})
	if st != http.StatusOK {
		t.Fatalf("code exchange: %d %v", st, m)
	}
	rt1 := m["refresh_token"].(string)
	if introspect(t, s, m["access_token"].(string))["email"] != "agent@example.com" {
		t.Error("wrong subject")
	}

	// Refresh rotates: rt1 is spent afterwards.
	st, m = post(t, s.TokenURL(), url.Values{"grant_type": {"refresh_token"}, "client_id": {"desktop"}, "refresh_token": {rt1}})
	if st != http.StatusOK || m["refresh_token"] == rt1 || m["refresh_token"] == nil {
		t.Fatalf("refresh: %d %v", st, m)
	}
	rt2 := m["refresh_token"].(string)
	at2 := m["access_token"].(string)
	st, m = post(t, s.TokenURL(), url.Values{"grant_type": {"refresh_token"}, "client_id": {"desktop"}, "refresh_token": {rt1}})
	if st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("reused refresh token: %d %v", st, m)
	}

	// Revocation through the endpoint kills the grant and its access tokens.
	if st, _ := post(t, s.RevokeURL(), url.Values{"client_id": {"desktop"}, "token": {rt2}}); st != http.StatusOK {
		t.Fatalf("revoke: %d", st)
	}
	st, m = post(t, s.TokenURL(), url.Values{"grant_type": {"refresh_token"}, "client_id": {"desktop"}, "refresh_token": {rt2}})
	if m["error"] != "invalid_grant" {
		t.Fatalf("revoked refresh token: %d %v", st, m)
	}
	if introspect(t, s, at2)["active"] != false {
		t.Error("access token of a revoked grant still active")
	}
}

func TestAuthorizeRejectsNonLoopbackAndPlainPKCE(t *testing.T) {
	s := startServer(t, Options{})
	s.AddClient(Client{ID: "desktop"})
	s.LoginAs("a@example.com")
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"response_type": {"code"}, "client_id": {"desktop"}, "redirect_uri": {"http://evil.example/cb"},
		"code_challenge": {"x"}, "code_challenge_method": {"S256"}}
	resp, _ := c.Get(s.AuthURL() + "?" + q.Encode())
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("non-loopback redirect: %d", resp.StatusCode)
	}
	q.Set("redirect_uri", "http://127.0.0.1:9/cb")
	q.Set("code_challenge_method", "plain")
	resp, _ = c.Get(s.AuthURL() + "?" + q.Encode())
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc.Query().Get("error") != "invalid_request" {
		t.Errorf("plain PKCE: %q", loc)
	}
}

func TestJWTBearerRejectsForeignKey(t *testing.T) {
	s := startServer(t, Options{})
	good, _ := rsa.GenerateKey(rand.Reader, 2048)
	s.AddJWTKey("sa@project.example", &good.PublicKey)
	st, m := post(t, s.TokenURL(), url.Values{"grant_type": {grantJWTBearer}, "assertion": {"a.b.c"}})
	if st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Errorf("garbage assertion: %d %v", st, m)
	}
}
