package oauthtoken

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"mailgate/oauthtest"
)

func startAuth(t *testing.T, opts oauthtest.Options) *oauthtest.Server {
	t.Helper()
	s, err := oauthtest.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestClientCredentials(t *testing.T) {
	s := startAuth(t, oauthtest.Options{})
	s.AddClient(oauthtest.Client{ID: "app", Secret: "s3cret", Subject: "support@example.com"})
	for _, tt := range []struct {
		name, secret string
		ok           bool
	}{{"right secret", "s3cret", true}, {"wrong secret", "nope", false}} {
		t.Run(tt.name, func(t *testing.T) {
			ts := ClientCredentials(context.Background(), &clientcredentials.Config{
				ClientID: "app", ClientSecret: tt.secret, TokenURL: s.TokenURL(),
				Scopes: []string{"https://outlook.office365.com/.default"},
			})
			tok, err := ts.Token()
			if !tt.ok {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sub, ok := s.Active(tok.AccessToken); !ok || sub != "support@example.com" {
				t.Errorf("token active=%v for %q", ok, sub)
			}
		})
	}
}

func pemKey(t *testing.T, k *rsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestJWTBearer(t *testing.T) {
	s := startAuth(t, oauthtest.Options{})
	registered, _ := rsa.GenerateKey(rand.Reader, 2048)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	s.AddJWTKey("mailgate@project.example", &registered.PublicKey)

	tests := []struct {
		name string
		key  []byte
		ok   bool
	}{
		{"registered key", pemKey(t, registered), true},
		{"unregistered key", pemKey(t, other), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, err := JWTBearer(context.Background(), JWTBearerOptions{
				Issuer: "mailgate@project.example", PrivateKey: tt.key,
				Subject: "support@example.com", Scopes: []string{"https://mail.google.com/"},
				TokenURL: s.TokenURL(),
			})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := ts.Token()
			if !tt.ok {
				if !IsInvalidGrant(err) {
					t.Fatalf("err = %v, want invalid_grant", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sub, ok := s.Active(tok.AccessToken); !ok || sub != "support@example.com" {
				t.Errorf("token active=%v for %q", ok, sub)
			}
		})
	}
	if _, err := JWTBearer(context.Background(), JWTBearerOptions{PrivateKey: []byte("garbage")}); err == nil {
		t.Error("garbage key accepted")
	}
}

func TestDeviceLogin(t *testing.T) {
	s := startAuth(t, oauthtest.Options{})
	s.AddClient(oauthtest.Client{ID: "mailgate"})
	cfg := &oauth2.Config{ClientID: "mailgate", Endpoint: oauth2.Endpoint{
		TokenURL: s.TokenURL(), DeviceAuthURL: s.DeviceURL(), AuthStyle: oauth2.AuthStyleInParams}}

	tok, err := DeviceLogin(context.Background(), cfg, func(da *oauth2.DeviceAuthResponse) error {
		if da.VerificationURI == "" || da.UserCode == "" {
			t.Errorf("device response %+v", da)
		}
		return s.ApproveDevice(da.UserCode, "agent@example.com")
	})
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" {
		t.Error("no refresh token")
	}
	if sub, ok := s.Active(tok.AccessToken); !ok || sub != "agent@example.com" {
		t.Errorf("token active=%v for %q", ok, sub)
	}

	_, err = DeviceLogin(context.Background(), cfg, func(da *oauth2.DeviceAuthResponse) error {
		return s.DenyDevice(da.UserCode)
	})
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "access_denied" {
		t.Errorf("denied login: %v", err)
	}
}

// browse plays the operator's browser: it follows the authorization URL to
// the loopback redirect.
func browse(t *testing.T) func(string) error {
	return func(u string) error {
		resp, err := http.Get(u)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil
	}
}

func authCodeToken(t *testing.T, s *oauthtest.Server) (*oauth2.Config, *oauth2.Token) {
	t.Helper()
	s.AddClient(oauthtest.Client{ID: "desktop"})
	s.LoginAs("agent@example.com")
	cfg := &oauth2.Config{ClientID: "desktop", Scopes: []string{"https://mail.google.com/"},
		Endpoint: oauth2.Endpoint{AuthURL: s.AuthURL(), TokenURL: s.TokenURL(), AuthStyle: oauth2.AuthStyleInParams}}
	tok, err := AuthCodeLogin(context.Background(), cfg, browse(t))
	if err != nil {
		t.Fatal(err)
	}
	return cfg, tok
}

func TestAuthCodeLogin(t *testing.T) {
	s := startAuth(t, oauthtest.Options{})
	_, tok := authCodeToken(t, s)
	if tok.RefreshToken == "" {
		t.Error("no refresh token")
	}
	if sub, ok := s.Active(tok.AccessToken); !ok || sub != "agent@example.com" {
		t.Errorf("token active=%v for %q", ok, sub)
	}

	s.LoginAs("") // the user refuses consent
	cfg := &oauth2.Config{ClientID: "desktop", Endpoint: oauth2.Endpoint{AuthURL: s.AuthURL(), TokenURL: s.TokenURL()}}
	if _, err := AuthCodeLogin(context.Background(), cfg, browse(t)); err == nil {
		t.Error("refused consent gave a token")
	}
}

func TestRotatingSourcePersistsBeforeUse(t *testing.T) {
	// Tokens live 5s, inside x/oauth2's expiry margin, so every Token call
	// refreshes and rotates.
	s := startAuth(t, oauthtest.Options{AccessTokenLifetime: 5 * time.Second})
	cfg, tok := authCodeToken(t, s)

	var stored []string
	fail := true
	rs := NewRotatingSource(context.Background(), cfg, tok, func(_ context.Context, t *oauth2.Token) error {
		if fail {
			return errors.New("disk full")
		}
		stored = append(stored, t.RefreshToken)
		return nil
	})

	got, err := rs.Token()
	if err == nil || got != nil {
		t.Fatalf("failing persist: token %v err %v, want no token", got, err)
	}

	fail = false
	got, err = rs.Token()
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0] != got.RefreshToken || got.RefreshToken == tok.RefreshToken {
		t.Fatalf("stored %q, token refresh %q (initial %q)", stored, got.RefreshToken, tok.RefreshToken)
	}
	if _, ok := s.Active(got.AccessToken); !ok {
		t.Error("returned access token is not active")
	}

	// Another refresh rotates again and persists the newest token.
	got2, err := rs.Token()
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 2 || stored[1] != got2.RefreshToken {
		t.Fatalf("second rotation: stored %q", stored)
	}

	// Revoking the grant gives invalid_grant.
	s.Revoke(got2.RefreshToken)
	if _, err := rs.Token(); !IsInvalidGrant(err) {
		t.Fatalf("after revoke: %v, want invalid_grant", err)
	}
}
