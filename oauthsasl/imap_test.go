package oauthsasl

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"
	"golang.org/x/oauth2/clientcredentials"

	"mailgate/oauthtest"
)

// tokenSession is an imapmemserver session that authenticates with OAuth2
// bearer tokens checked at the authorization server's introspection
// endpoint, as Dovecot's oauth2 passdb does.
type tokenSession struct {
	imapserver.Session
	mechs    []string
	check    oauthtest.TokenCheck
	password map[string]string
	used     func(mech string)
}

func (s *tokenSession) AuthenticateMechanisms() []string { return s.mechs }

func (s *tokenSession) Authenticate(mech string) (sasl.Server, error) {
	s.used(mech)
	login := func(user, token string) error {
		if err := s.check(user, token); err != nil {
			return err
		}
		return s.Session.Login(user, s.password[user])
	}
	switch mech {
	case XOAuth2:
		return oauthtest.NewXOAuth2Server(login), nil
	case OAuthBearer:
		return oauthtest.NewOAuthBearerServer(login), nil
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "mechanism not supported"}
}

type imapFixture struct {
	addr string
	mu   sync.Mutex
	mech []string
}

func (f *imapFixture) usedMechs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.mech...)
}

func startIMAP(t *testing.T, auth *oauthtest.Server, mechs []string) *imapFixture {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("support@example.com", "unused-password")
	if err := u.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(u)
	f := &imapFixture{}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &tokenSession{
				Session:  mem.NewSession(),
				mechs:    mechs,
				check:    auth.CheckByIntrospection(),
				password: map[string]string{"support@example.com": "unused-password"},
				used: func(m string) {
					f.mu.Lock()
					f.mech = append(f.mech, m)
					f.mu.Unlock()
				},
			}, nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		InsecureAuth: true,
		Logger:       log.New(io.Discard, "", 0),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	f.addr = ln.Addr().String()
	return f
}

func dialIMAP(t *testing.T, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func clientToken(t *testing.T, s *oauthtest.Server) string {
	t.Helper()
	tok, err := tokenFor(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Active(tok); !ok {
		t.Fatal("fresh token inactive")
	}
	return tok
}

func TestAuthenticateIMAP(t *testing.T) {
	tests := []struct {
		name     string
		mechs    []string
		wantMech string
	}{
		{"oauthbearer preferred", []string{"PLAIN", "XOAUTH2", "OAUTHBEARER"}, OAuthBearer},
		{"xoauth2 only", []string{"XOAUTH2"}, XOAuth2},
		{"oauthbearer only", []string{"OAUTHBEARER"}, OAuthBearer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Unix(1_800_000_000, 0)
			var clock sync.Mutex
			auth, err := oauthtest.Start(oauthtest.Options{Now: func() time.Time {
				clock.Lock()
				defer clock.Unlock()
				return now
			}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { auth.Close() })
			auth.AddClient(oauthtest.Client{ID: "app", Secret: "s", Subject: "support@example.com"})
			f := startIMAP(t, auth, tt.mechs)

			tok := clientToken(t, auth)
			cred := Credentials{Username: "support@example.com", Token: tok}

			// A good token logs in and the mailbox is usable.
			c := dialIMAP(t, f.addr)
			if err := AuthenticateIMAP(c, cred); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Fatalf("select after token login: %v", err)
			}
			if got := f.usedMechs(); len(got) != 1 || got[0] != tt.wantMech {
				t.Errorf("mechanisms used %v, want %s", got, tt.wantMech)
			}

			// A token for another mailbox is refused.
			c = dialIMAP(t, f.addr)
			err = AuthenticateIMAP(c, Credentials{Username: "other@example.com", Token: tok})
			if err == nil {
				t.Fatal("token accepted for another user")
			}
			if strings.Contains(err.Error(), tok) {
				t.Errorf("error leaks the token: %v", err)
			}

			// Once the token expires, a new connection fails; a fresh token
			// logs in again (re-authentication on reconnect).
			clock.Lock()
			now = now.Add(2 * time.Minute)
			clock.Unlock()
			c = dialIMAP(t, f.addr)
			if err := AuthenticateIMAP(c, cred); err == nil {
				t.Fatal("expired token accepted")
			}
			c = dialIMAP(t, f.addr)
			if err := AuthenticateIMAP(c, Credentials{Username: "support@example.com", Token: clientToken(t, auth)}); err != nil {
				t.Fatalf("fresh token after expiry: %v", err)
			}
		})
	}
}

func TestAuthenticateIMAPNoOAuthMechanism(t *testing.T) {
	auth, err := oauthtest.Start(oauthtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auth.Close() })
	f := startIMAP(t, auth, []string{"PLAIN"})
	c := dialIMAP(t, f.addr)
	err = AuthenticateIMAP(c, Credentials{Username: "support@example.com", Token: "x"})
	if err == nil || !strings.Contains(err.Error(), "neither OAUTHBEARER nor XOAUTH2") {
		t.Fatalf("err = %v", err)
	}
}

// tokenFor gets an app-only token for the "app" client with a plain
// client credentials request through x/oauth2.
func tokenFor(s *oauthtest.Server) (string, error) {
	cc := &clientcredentials.Config{ClientID: "app", ClientSecret: "s", TokenURL: s.TokenURL()}
	tok, err := cc.TokenSource(context.Background()).Token()
	if err != nil {
		return "", fmt.Errorf("client credentials: %w", err)
	}
	return tok.AccessToken, nil
}
