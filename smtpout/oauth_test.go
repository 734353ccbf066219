package smtpout

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-sasl"
	"golang.org/x/oauth2/clientcredentials"

	"mailgate/oauthsasl"
	"mailgate/oauthtest"
)

// appTokens gets a new token from the authorization server whenever the
// last one was handed back, as oauthgrant.Source does.
type appTokens struct {
	cc *clientcredentials.Config

	mu       sync.Mutex
	cur      string
	issued   int
	rejected []string
}

func (a *appTokens) Token(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur == "" {
		tok, err := a.cc.Token(ctx)
		if err != nil {
			return "", err
		}
		a.cur = tok.AccessToken
		a.issued++
	}
	return a.cur, nil
}

func (a *appTokens) Reject(tok string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rejected = append(a.rejected, tok)
	if tok == a.cur {
		a.cur = ""
	}
}

func TestSendOAuth2(t *testing.T) {
	for _, mechs := range [][]string{{oauthsasl.XOAuth2}, {sasl.Plain, oauthsasl.OAuthBearer, oauthsasl.XOAuth2}} {
		t.Run(strings.Join(mechs, "+"), func(t *testing.T) {
			auth, err := oauthtest.Start(oauthtest.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { auth.Close() })
			auth.AddClient(oauthtest.Client{ID: "app", Secret: "cs", Subject: "support@acme.example"})
			srvTLS, pool := testCert(t)
			relay := &testRelay{mechs: mechs, tokens: auth.CheckByIntrospection()}
			addr := startRelay(t, relay, relayOptions{starttls: srvTLS})
			tokens := &appTokens{cc: &clientcredentials.Config{ClientID: "app", ClientSecret: "cs", TokenURL: auth.TokenURL()}}
			s := newTestSender(t, SenderOptions{Address: addr, Security: SecuritySTARTTLS, Username: "support@acme.example",
				Tokens: tokens, TLSConfig: &tls.Config{RootCAs: pool}})

			if err := sendOne(t, s, testEnvelope(t, 1)); err != nil {
				t.Fatalf("Send: %v", err)
			}
			if got := relay.delivered(); len(got) != 1 || got[0].user != "support@acme.example" || !got[0].tls {
				t.Fatalf("relay got %+v", got)
			}

			// Revoked before it expired: the relay refuses the token, it
			// goes back to the source, and a new one logs in on a new
			// connection.
			revoked, _ := tokens.Token(context.Background())
			auth.Revoke(revoked)
			if err := sendOne(t, s, testEnvelope(t, 2)); err != nil {
				t.Fatalf("Send after revocation: %v", err)
			}
			if len(tokens.rejected) != 1 || tokens.rejected[0] != revoked || tokens.issued != 2 {
				t.Fatalf("rejected %d, issued %d", len(tokens.rejected), tokens.issued)
			}
			if n := len(relay.delivered()); n != 2 {
				t.Errorf("%d delivered", n)
			}

			// A token the relay never accepts: the send fails temporarily
			// after one retry, without showing the token.
			relay.tokens = func(string, string) error { return errors.New("mailbox not enabled for SMTP AUTH") }
			err = sendOne(t, s, testEnvelope(t, 3))
			var se *SMTPError
			if !errors.As(err, &se) || !strings.HasPrefix(se.Command, "AUTH") || IsPermanent(err) {
				t.Fatalf("refused token: err = %v, want a temporary AUTH SMTPError", err)
			}
			if len(tokens.rejected) != 3 {
				t.Errorf("%d tokens handed back, want 3", len(tokens.rejected))
			}
			for _, tok := range tokens.rejected {
				if strings.Contains(err.Error(), tok) {
					t.Fatal("error shows the token")
				}
			}
		})
	}
}

func TestSendOAuth2NoMechanism(t *testing.T) {
	relay := &testRelay{mechs: []string{sasl.Plain}, users: map[string]string{"u": "p"}}
	addr := startRelay(t, relay, relayOptions{insecure: true})
	tokens := &appTokens{}
	tokens.cur = "tok"
	s := newTestSender(t, SenderOptions{Address: addr, Security: SecurityNone, Username: "u", Tokens: tokens})
	err := sendOne(t, s, testEnvelope(t, 1))
	if err == nil || !strings.Contains(err.Error(), "offers no OAuth2 AUTH mechanism") || IsPermanent(err) {
		t.Fatalf("err = %v", err)
	}
	if _, err := NewSender(SenderOptions{Address: addr, Username: "u", Password: "p", Tokens: tokens}); err == nil {
		t.Error("password and token source together accepted")
	}
}
