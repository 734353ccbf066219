package oauthsasl

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
	"github.com/wneessen/go-mail/smtp"

	"mailgate/oauthtest"
)

// smtpBackend is a go-smtp server whose sessions authenticate with OAuth2
// bearer tokens checked by introspection and accept mail only afterwards.
type smtpBackend struct {
	mechs []string
	check oauthtest.TokenCheck
}

func (b *smtpBackend) NewSession(*gosmtp.Conn) (gosmtp.Session, error) {
	return &smtpSession{b: b}, nil
}

type smtpSession struct {
	b    *smtpBackend
	user string
}

func (s *smtpSession) AuthMechanisms() []string { return s.b.mechs }

func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	login := func(user, token string) error {
		if err := s.b.check(user, token); err != nil {
			return err
		}
		s.user = user
		return nil
	}
	switch mech {
	case XOAuth2:
		return oauthtest.NewXOAuth2Server(login), nil
	case OAuthBearer:
		return oauthtest.NewOAuthBearerServer(login), nil
	}
	return nil, gosmtp.ErrAuthUnknownMechanism
}

func (s *smtpSession) Mail(string, *gosmtp.MailOptions) error {
	if s.user == "" {
		return gosmtp.ErrAuthRequired
	}
	return nil
}
func (s *smtpSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (s *smtpSession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}
func (s *smtpSession) Reset()        {}
func (s *smtpSession) Logout() error { return nil }

func startSMTP(t *testing.T, auth *oauthtest.Server, mechs []string) string {
	t.Helper()
	srv := gosmtp.NewServer(&smtpBackend{mechs: mechs, check: auth.CheckByIntrospection()})
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func smtpLogin(t *testing.T, addr string, cred Credentials) error {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClient(conn, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(SMTPAuth(cred)); err != nil {
		return err
	}
	return c.Mail("support@example.com")
}

func TestSMTPAuth(t *testing.T) {
	for _, mechs := range [][]string{{XOAuth2}, {OAuthBearer}, {sasl.Plain, XOAuth2, OAuthBearer}} {
		t.Run(strings.Join(mechs, "+"), func(t *testing.T) {
			auth, err := oauthtest.Start(oauthtest.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { auth.Close() })
			auth.AddClient(oauthtest.Client{ID: "app", Secret: "s", Subject: "support@example.com"})
			addr := startSMTP(t, auth, mechs)
			tok := clientToken(t, auth)

			if err := smtpLogin(t, addr, Credentials{Username: "support@example.com", Token: tok}); err != nil {
				t.Fatalf("good token: %v", err)
			}
			auth.Revoke(tok)
			err = smtpLogin(t, addr, Credentials{Username: "support@example.com", Token: tok})
			if err == nil {
				t.Fatal("revoked token accepted")
			}
			if strings.Contains(err.Error(), tok) {
				t.Errorf("error leaks the token: %v", err)
			}
		})
	}
}

func TestSMTPAuthNoMechanism(t *testing.T) {
	auth, err := oauthtest.Start(oauthtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auth.Close() })
	addr := startSMTP(t, auth, []string{sasl.Plain})
	if err := smtpLogin(t, addr, Credentials{Username: "u", Token: "t"}); !errors.Is(err, ErrNoMechanism) {
		t.Fatalf("err = %v, want ErrNoMechanism", err)
	}
}
