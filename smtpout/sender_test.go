package smtpout

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"mailgate/oauthsasl"
	"mailgate/oauthtest"
)

// received is one message as the test relay got it.
type received struct {
	from string
	to   []string
	data []byte
	tls  bool
	user string
}

// testRelay is an in-process go-smtp backend that records what it gets and
// lets a test refuse commands.
type testRelay struct {
	mechs    []string             // AUTH mechanisms offered
	users    map[string]string    // username -> password
	tokens   oauthtest.TokenCheck // checks OAuth2 tokens, when set
	mailHook func(c *smtp.Conn, n int) error
	rcptHook func(n int, to string) error
	dataHook func(n int) error

	mu    sync.Mutex
	conns int
	mails int // MAIL FROM commands seen
	rcpts int // RCPT TO commands seen
	datas int // DATA bodies seen
	msgs  []received
}

func (b *testRelay) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.mu.Lock()
	b.conns++
	b.mu.Unlock()
	return &testSession{b: b, c: c}, nil
}

func (b *testRelay) connCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conns
}

func (b *testRelay) mailCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mails
}

func (b *testRelay) delivered() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.msgs...)
}

type testSession struct {
	b    *testRelay
	c    *smtp.Conn
	user string
	cur  received
}

func (s *testSession) AuthMechanisms() []string { return s.b.mechs }

func (s *testSession) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if want, ok := s.b.users[user]; !ok || want != pass {
			return errors.New("invalid credentials")
		}
		s.user = user
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, user, pass string) error { return check(user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	if s.b.tokens != nil {
		login := func(user, token string) error {
			if err := s.b.tokens(user, token); err != nil {
				return err
			}
			s.user = user
			return nil
		}
		switch mech {
		case oauthsasl.XOAuth2:
			return oauthtest.NewXOAuth2Server(login), nil
		case oauthsasl.OAuthBearer:
			return oauthtest.NewOAuthBearerServer(login), nil
		}
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *testSession) Mail(from string, _ *smtp.MailOptions) error {
	if (len(s.b.users) > 0 || s.b.tokens != nil) && s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.b.mu.Lock()
	s.b.mails++
	n := s.b.mails
	s.b.mu.Unlock()
	if s.b.mailHook != nil {
		if err := s.b.mailHook(s.c, n); err != nil {
			return err
		}
	}
	s.cur = received{from: from, user: s.user}
	_, s.cur.tls = s.c.TLSConnectionState()
	return nil
}

func (s *testSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.b.mu.Lock()
	s.b.rcpts++
	n := s.b.rcpts
	s.b.mu.Unlock()
	if s.b.rcptHook != nil {
		if err := s.b.rcptHook(n, to); err != nil {
			return err
		}
	}
	s.cur.to = append(s.cur.to, to)
	return nil
}

func (s *testSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.b.mu.Lock()
	s.b.datas++
	n := s.b.datas
	s.b.mu.Unlock()
	if s.b.dataHook != nil {
		if err := s.b.dataHook(n); err != nil {
			return err
		}
	}
	s.cur.data = data
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, s.cur)
	s.b.mu.Unlock()
	return nil
}

func (s *testSession) Reset()        { s.cur = received{} }
func (s *testSession) Logout() error { return nil }

// loginServer is the server side of AUTH LOGIN, which go-sasl lacks.
type loginServer struct {
	step  int
	user  string
	check func(user, pass string) error
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step++
		if len(resp) == 0 {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		l.step = 2
		l.user = string(resp)
		return []byte("Password:"), false, nil
	case 2:
		l.step++
		return nil, true, l.check(l.user, string(resp))
	}
	return nil, false, errors.New("unexpected LOGIN step")
}

// relayOptions say how to start a test relay.
type relayOptions struct {
	starttls    *tls.Config // offered with STARTTLS
	implicitTLS *tls.Config // the listener speaks TLS from the start
	insecure    bool        // allow AUTH without TLS
}

// startRelay serves b on 127.0.0.1 and returns its address.
func startRelay(t *testing.T, b *testRelay, o relayOptions) string {
	t.Helper()
	s := smtp.NewServer(b)
	s.Domain = "relay.test"
	s.AllowInsecureAuth = o.insecure
	s.TLSConfig = o.starttls
	s.ReadTimeout = 10 * time.Second
	s.WriteTimeout = 10 * time.Second
	s.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.implicitTLS != nil {
		ln = tls.NewListener(ln, o.implicitTLS)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Close() })
	return ln.Addr().String()
}

// testCert makes a self-signed certificate for 127.0.0.1 and returns the
// server config and a pool that trusts it.
func testCert(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "relay.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

func newTestSender(t *testing.T, opts SenderOptions) *Sender {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.HELO == "" {
		opts.HELO = "mailgate.test"
	}
	s, err := NewSender(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testEnvelope(t *testing.T, n int) *Envelope {
	t.Helper()
	r := baseReply()
	r.MessageID = fmt.Sprintf("reply-%d@mailgate.test", n)
	r.Text = fmt.Sprintf("Message %d.\n.\n..leading dots survive\n", n)
	data, err := Render(r)
	if err != nil {
		t.Fatal(err)
	}
	return &Envelope{From: "support@acme.example", To: []string{"jane@example.org"}, Data: data}
}

func sendOne(t *testing.T, s *Sender, env *Envelope) error {
	t.Helper()
	errs := s.Send(context.Background(), []*Envelope{env})
	if len(errs) != 1 {
		t.Fatalf("Send returned %d errors for 1 message", len(errs))
	}
	return errs[0]
}

func TestSendPlain(t *testing.T) {
	relay := &testRelay{}
	addr := startRelay(t, relay, relayOptions{})
	s := newTestSender(t, SenderOptions{Address: addr, Security: SecurityNone})
	env := testEnvelope(t, 1)
	if err := sendOne(t, s, env); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := relay.delivered()
	if len(got) != 1 {
		t.Fatalf("relay got %d messages", len(got))
	}
	if got[0].from != env.From || strings.Join(got[0].to, ",") != "jane@example.org" || got[0].tls {
		t.Errorf("relay got from %q to %v tls %v", got[0].from, got[0].to, got[0].tls)
	}
	if !bytes.Equal(got[0].data, env.Data) {
		t.Errorf("data changed in transit:\n%s\nwant:\n%s", got[0].data, env.Data)
	}
}

func TestSendAuth(t *testing.T) {
	const password = "s3cret-Pa55"
	for _, mechs := range [][]string{{sasl.Plain, sasl.Login}, {sasl.Login}} {
		t.Run(strings.Join(mechs, "+"), func(t *testing.T) {
			relay := &testRelay{mechs: mechs, users: map[string]string{"mailgate": password}}
			addr := startRelay(t, relay, relayOptions{insecure: true})
			s := newTestSender(t, SenderOptions{Address: addr, Security: SecurityNone, Username: "mailgate", Password: password})
			if err := sendOne(t, s, testEnvelope(t, 1)); err != nil {
				t.Fatalf("Send: %v", err)
			}
			if got := relay.delivered(); len(got) != 1 || got[0].user != "mailgate" {
				t.Fatalf("relay got %+v", got)
			}

			bad := newTestSender(t, SenderOptions{Address: addr, Security: SecurityNone, Username: "mailgate", Password: "wrong-" + password})
			err := sendOne(t, bad, testEnvelope(t, 2))
			var se *SMTPError
			if !errors.As(err, &se) || !strings.HasPrefix(se.Command, "AUTH") || IsPermanent(err) {
				t.Fatalf("wrong password: err = %v, want a temporary AUTH SMTPError", err)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("error shows the password: %v", err)
			}
			if n := len(relay.delivered()); n != 1 {
				t.Errorf("relay has %d messages after failed auth", n)
			}
		})
	}
}

func TestSendAuthUnsupported(t *testing.T) {
	relay := &testRelay{}
	addr := startRelay(t, relay, relayOptions{insecure: true})
	s := newTestSender(t, SenderOptions{Address: addr, Security: SecurityNone, Username: "u", Password: "p"})
	err := sendOne(t, s, testEnvelope(t, 1))
	if err == nil || !strings.Contains(err.Error(), "does not offer AUTH") || IsPermanent(err) {
		t.Fatalf("err = %v", err)
	}
}

func TestSendSTARTTLS(t *testing.T) {
	serverTLS, pool := testCert(t)
	relay := &testRelay{mechs: []string{sasl.Plain}, users: map[string]string{"u": "p"}}
	addr := startRelay(t, relay, relayOptions{starttls: serverTLS})

	s := newTestSender(t, SenderOptions{Address: addr, Username: "u", Password: "p", TLSConfig: &tls.Config{RootCAs: pool}})
	if err := sendOne(t, s, testEnvelope(t, 1)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := relay.delivered(); len(got) != 1 || !got[0].tls || got[0].user != "u" {
		t.Fatalf("relay got %+v", got)
	}

	// Without the test root the certificate is refused; nothing is sent.
	untrusted := newTestSender(t, SenderOptions{Address: addr, Security: SecuritySTARTTLS})
	err := sendOne(t, untrusted, testEnvelope(t, 2))
	var certErr *tls.CertificateVerificationError
	if !errors.As(err, &certErr) || IsPermanent(err) {
		t.Errorf("untrusted certificate: err = %v", err)
	}
	if n := len(relay.delivered()); n != 1 {
		t.Errorf("relay has %d messages", n)
	}
}

func TestSendSTARTTLSRequired(t *testing.T) {
	relay := &testRelay{}
	addr := startRelay(t, relay, relayOptions{})
	s := newTestSender(t, SenderOptions{Address: addr}) // default: mandatory STARTTLS
	err := sendOne(t, s, testEnvelope(t, 1))
	if err == nil || !strings.Contains(err.Error(), "STARTTLS") || IsPermanent(err) {
		t.Fatalf("err = %v", err)
	}
	if relay.mailCount() != 0 {
		t.Errorf("MAIL FROM sent without TLS")
	}
}

func TestSendImplicitTLS(t *testing.T) {
	serverTLS, pool := testCert(t)
	relay := &testRelay{}
	addr := startRelay(t, relay, relayOptions{implicitTLS: serverTLS})
	s := newTestSender(t, SenderOptions{Address: addr, Security: SecurityTLS, TLSConfig: &tls.Config{RootCAs: pool}})
	if err := sendOne(t, s, testEnvelope(t, 1)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := relay.delivered(); len(got) != 1 || !got[0].tls {
		t.Fatalf("relay got %+v", got)
	}
}

func TestSendBurstOneConnection(t *testing.T) {
	relay := &testRelay{}
	addr := startRelay(t, relay, relayOptions{})
	s := newTestSender(t, SenderOptions{Address: addr, Security: SecurityNone})
	var envs []*Envelope
	for i := range 5 {
		envs = append(envs, testEnvelope(t, i))
	}
	for i, err := range s.Send(context.Background(), envs) {
		if err != nil {
			t.Errorf("message %d: %v", i, err)
		}
	}
	if n := relay.connCount(); n != 1 {
		t.Errorf("%d connections for a burst of 5, want 1", n)
	}
	got := relay.delivered()
	if len(got) != 5 {
		t.Fatalf("relay got %d messages", len(got))
	}
	for i := range got {
		if !bytes.Equal(got[i].data, envs[i].Data) {
			t.Errorf("message %d out of order or changed", i)
		}
	}
}

func TestSendTemporaryThenRetry(t *testing.T) {
	relay := &testRelay{rcptHook: func(n int, _ string) error {
		if n == 1 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Greylisted, try again later"}
		}
		return nil
	}}
	addr := startRelay(t, relay, relayOptions{})
	s := newTestSender(t, SenderOptions{Address: addr, Security: SecurityNone})
	env := testEnvelope(t, 1)

	err := sendOne(t, s, env)
	var se *SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("first Send: err = %v, want *SMTPError", err)
	}
	want := SMTPError{Command: "RCPT TO:<jane@example.org>", Code: 451, Enhanced: "4.7.1", Message: "Greylisted, try again later", Temporary: true}
	if *se != want || IsPermanent(err) {
		t.Errorf("first Send: %#v, want %#v", *se, want)
	}
	if n := len(relay.delivered()); n != 0 {
		t.Fatalf("relay got %d messages after 451", n)
	}

	if err := sendOne(t, s, env); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if n := len(relay.delivered()); n != 1 {
		t.Errorf("relay got %d messages after retry", n)
	}
}

func TestSendPermanent(t *testing.T) {
	relay := &testRelay{
		rcptHook: func(_ int, to string) error {
			if to == "nobody@example.org" {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
			}
			return nil
		},
		dataHook: func(n int) error {
			if n == 2 {
				return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Message refused as spam"}
			}
			return nil
		},
	}
	addr := startRelay(t, relay, relayOptions{})
	s := newTestSender(t, SenderOptions{Address: addr, Security: SecurityNone})
	envs := []*Envelope{testEnvelope(t, 0), testEnvelope(t, 1), testEnvelope(t, 2), testEnvelope(t, 3)}
	envs[0].To = []string{"nobody@example.org"}
	errs := s.Send(context.Background(), envs)

	var se *SMTPError
	if !errors.As(errs[0], &se) || se.Code != 550 || se.Enhanced != "5.1.1" || !IsPermanent(errs[0]) {
		t.Errorf("unknown recipient: %v", errs[0])
	}
	if errs[1] != nil {
		t.Errorf("message after a refused one: %v", errs[1])
	}
	if !errors.As(errs[2], &se) || se.Code != 554 || se.Command != "end of data" || !IsPermanent(errs[2]) {
		t.Errorf("refused data: %v", errs[2])
	}
	if errs[3] != nil {
		t.Errorf("message after refused data: %v", errs[3])
	}
	if n := relay.connCount(); n != 1 {
		t.Errorf("%d connections", n)
	}
	if n := len(relay.delivered()); n != 2 {
		t.Errorf("relay got %d messages, want 2", n)
	}
}

func TestSendConnectionLost(t *testing.T) {
	relay := &testRelay{mailHook: func(c *smtp.Conn, n int) error {
		if n == 3 {
			_ = c.Conn().Close()
			return errors.New("gone")
		}
		return nil
	}}
	addr := startRelay(t, relay, relayOptions{})
	s := newTestSender(t, SenderOptions{Address: addr, Security: SecurityNone})
	var envs []*Envelope
	for i := range 5 {
		envs = append(envs, testEnvelope(t, i))
	}
	errs := s.Send(context.Background(), envs)
	if errs[0] != nil || errs[1] != nil {
		t.Errorf("messages before the break: %v, %v", errs[0], errs[1])
	}
	var se *SMTPError
	if errs[2] == nil || errors.As(errs[2], &se) || IsPermanent(errs[2]) || errors.Is(errs[2], ErrNotAttempted) {
		t.Errorf("message in flight: %v", errs[2])
	}
	for i := 3; i < 5; i++ {
		if !errors.Is(errs[i], ErrNotAttempted) || IsPermanent(errs[i]) {
			t.Errorf("message %d after the break: %v", i, errs[i])
		}
	}
	if n := len(relay.delivered()); n != 2 {
		t.Errorf("relay got %d messages, want 2", n)
	}
	if n := relay.mailCount(); n != 3 {
		t.Errorf("relay saw %d MAIL commands, want 3 (nothing after the break)", n)
	}
}

func TestSendServiceClosing(t *testing.T) {
	relay := &testRelay{mailHook: func(_ *smtp.Conn, n int) error {
		if n == 2 {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Shutting down"}
		}
		return nil
	}}
	addr := startRelay(t, relay, relayOptions{})
	s := newTestSender(t, SenderOptions{Address: addr, Security: SecurityNone})
	errs := s.Send(context.Background(), []*Envelope{testEnvelope(t, 0), testEnvelope(t, 1), testEnvelope(t, 2)})
	var se *SMTPError
	if errs[0] != nil || !errors.As(errs[1], &se) || se.Code != 421 || IsPermanent(errs[1]) || !errors.Is(errs[2], ErrNotAttempted) {
		t.Errorf("errs = %v", errs)
	}
}

func TestSendInvalidEnvelopes(t *testing.T) {
	relay := &testRelay{}
	addr := startRelay(t, relay, relayOptions{})
	s := newTestSender(t, SenderOptions{Address: addr, Security: SecurityNone})
	data := []byte("Subject: x\r\n\r\nx\r\n")
	envs := []*Envelope{
		nil,
		{From: "a@b.example\r\nRCPT TO:<x@y.example>", To: []string{"c@d.example"}, Data: data},
		{From: "a@b.example", Data: data},
		{From: "a@b.example", To: []string{"c@d.example>"}, Data: data},
		{From: "a@b.example", To: []string{"Jane <c@d.example>"}, Data: data},
		{From: "a@b.example", To: []string{"c@d.example"}},
	}
	for i, err := range s.Send(context.Background(), envs) {
		if !errors.Is(err, ErrInvalidEnvelope) || !IsPermanent(err) {
			t.Errorf("envelope %d: %v", i, err)
		}
	}
	if n := relay.connCount(); n != 0 {
		t.Errorf("connected %d times for nothing to send", n)
	}

	// The null sender is allowed; an invalid envelope does not stop the
	// others in the burst.
	errs := s.Send(context.Background(), []*Envelope{envs[2], {To: []string{"c@d.example"}, Data: data}})
	if !errors.Is(errs[0], ErrInvalidEnvelope) || errs[1] != nil {
		t.Errorf("errs = %v", errs)
	}
	if got := relay.delivered(); len(got) != 1 || got[0].from != "" {
		t.Errorf("relay got %+v", got)
	}
}

func TestSendContextCancelled(t *testing.T) {
	relay := &testRelay{}
	addr := startRelay(t, relay, relayOptions{})
	s := newTestSender(t, SenderOptions{Address: addr, Security: SecurityNone})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	errs := s.Send(ctx, []*Envelope{testEnvelope(t, 0), testEnvelope(t, 1)})
	for i, err := range errs {
		if !errors.Is(err, context.Canceled) || IsPermanent(err) {
			t.Errorf("message %d: %v", i, err)
		}
	}
	if n := len(relay.delivered()); n != 0 {
		t.Errorf("relay got %d messages", n)
	}

	// A relay that never answers is abandoned when the context ends.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c) // no greeting, ever
		}
	}()
	mute := newTestSender(t, SenderOptions{Address: ln.Addr().String(), Security: SecurityNone})
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	errs = mute.Send(ctx, []*Envelope{testEnvelope(t, 0)})
	if !errors.Is(errs[0], context.DeadlineExceeded) && !errors.Is(errs[0], os.ErrDeadlineExceeded) {
		t.Errorf("mute relay: %v", errs[0])
	}
}

func TestSendConnectRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := newTestSender(t, SenderOptions{Address: addr, Security: SecurityNone})
	errs := s.Send(context.Background(), []*Envelope{testEnvelope(t, 0), testEnvelope(t, 1)})
	for i, err := range errs {
		if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), addr) {
			t.Errorf("message %d: %v", i, err)
		}
	}
}

func TestNewSender(t *testing.T) {
	tests := []struct {
		name string
		opts SenderOptions
		ok   bool
	}{
		{"defaults", SenderOptions{Address: "smtp.example.com:587"}, true},
		{"tls", SenderOptions{Address: "smtp.example.com:465", Security: "TLS"}, true},
		{"no port", SenderOptions{Address: "smtp.example.com"}, false},
		{"empty", SenderOptions{}, false},
		{"bad security", SenderOptions{Address: "a:25", Security: "ssl"}, false},
		{"password without user", SenderOptions{Address: "a:25", Password: "x"}, false},
		{"user with CRLF", SenderOptions{Address: "a:25", Username: "u\r\nQUIT"}, false},
		{"bad helo", SenderOptions{Address: "a:25", HELO: "my host"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSender(tt.opts)
			if (err == nil) != tt.ok {
				t.Fatalf("NewSender: %v", err)
			}
			if err != nil && tt.opts.Password != "" && strings.Contains(err.Error(), tt.opts.Password) {
				t.Errorf("error shows the password: %v", err)
			}
			if err == nil && (s.security == "" || s.timeout != DefaultTimeout || s.helo == "" || s.tls.ServerName != "smtp.example.com") {
				t.Errorf("defaults not applied: %+v", s)
			}
		})
	}
}

func TestNewSMTPError(t *testing.T) {
	tests := []struct {
		code int
		msg  string
		want SMTPError
	}{
		{550, "5.1.1 No such user", SMTPError{Code: 550, Enhanced: "5.1.1", Message: "No such user"}},
		{452, "4.2.2 Mailbox full\n4.2.2 try later", SMTPError{Code: 452, Enhanced: "4.2.2", Message: "Mailbox full try later", Temporary: true}},
		{554, "Transaction failed", SMTPError{Code: 554, Message: "Transaction failed"}},
		{421, "4.3.2 bye\x1b[31m", SMTPError{Code: 421, Enhanced: "4.3.2", Message: "bye [31m", Temporary: true}},
		{250, "", SMTPError{Code: 250, Temporary: true}},
	}
	for _, tt := range tests {
		got := newSMTPError("DATA", tt.code, tt.msg)
		tt.want.Command = "DATA"
		if *got != tt.want {
			t.Errorf("newSMTPError(%d, %q) = %#v, want %#v", tt.code, tt.msg, *got, tt.want)
		}
	}
	e := &SMTPError{Command: "RCPT TO:<a@b>", Code: 550, Enhanced: "5.1.1", Message: "No such user"}
	if got := e.Error(); got != "smtpout: relay answered RCPT TO:<a@b> with 550 5.1.1 No such user" {
		t.Errorf("Error() = %q", got)
	}
	if IsPermanent(nil) || IsPermanent(errors.New("x")) || !IsPermanent(fmt.Errorf("wrapped: %w", e)) {
		t.Errorf("IsPermanent wrong")
	}
}

func TestSenderCheck(t *testing.T) {
	relay := &testRelay{}
	addr := startRelay(t, relay, relayOptions{})
	s := newTestSender(t, SenderOptions{Address: addr, Security: SecurityNone})
	if err := s.Check(context.Background()); err != nil {
		t.Errorf("check: %v", err)
	}
	if n := len(relay.delivered()); n != 0 {
		t.Errorf("check delivered %d messages", n)
	}
	dead, _ := NewSender(SenderOptions{Address: "127.0.0.1:1", Security: SecurityNone})
	if err := dead.Check(context.Background()); err == nil {
		t.Error("check of a closed port succeeded")
	}
}

func TestSendCopies(t *testing.T) {
	tests := []struct {
		name    string
		copies  []string
		refuse  map[string]int // copy -> reply code
		wantErr bool           // the message fails
		wantTo  []string       // as the relay accepted them
		refused []string       // Refused commands
	}{
		{name: "all accepted", copies: []string{"bob@example.org", "carol@example.net"},
			wantTo: []string{"jane@example.org", "bob@example.org", "carol@example.net"}},
		{name: "a refused copy is left out", copies: []string{"bob@example.org", "carol@example.net"},
			refuse: map[string]int{"bob@example.org": 550},
			wantTo: []string{"jane@example.org", "carol@example.net"}, refused: []string{"RCPT TO:<bob@example.org>"}},
		{name: "a temporarily refused copy is left out too", copies: []string{"bob@example.org"},
			refuse: map[string]int{"bob@example.org": 450},
			wantTo: []string{"jane@example.org"}, refused: []string{"RCPT TO:<bob@example.org>"}},
		{name: "the relay closing fails the message", copies: []string{"bob@example.org"},
			refuse: map[string]int{"bob@example.org": 421}, wantErr: true},
		{name: "a refused contact fails the message", copies: []string{"bob@example.org"},
			refuse: map[string]int{"jane@example.org": 550}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			relay := &testRelay{rcptHook: func(_ int, to string) error {
				if code := tc.refuse[to]; code != 0 {
					return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 1, 1}, Message: "not here"}
				}
				return nil
			}}
			addr := startRelay(t, relay, relayOptions{})
			s := newTestSender(t, SenderOptions{Address: addr, Security: SecurityNone})
			env := testEnvelope(t, 1)
			env.Copies = tc.copies
			err := sendOne(t, s, env)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Send: %v, want error %v", err, tc.wantErr)
			}
			got := relay.delivered()
			if tc.wantErr {
				if len(got) != 0 {
					t.Errorf("relay got %d messages", len(got))
				}
				return
			}
			if len(got) != 1 || strings.Join(got[0].to, ",") != strings.Join(tc.wantTo, ",") {
				t.Fatalf("relay got %+v, want one to %q", got, tc.wantTo)
			}
			var refused []string
			for _, r := range env.Refused {
				refused = append(refused, r.Command)
				if r.Code != tc.refuse[strings.TrimSuffix(strings.TrimPrefix(r.Command, "RCPT TO:<"), ">")] {
					t.Errorf("refusal %+v", r)
				}
			}
			if strings.Join(refused, ",") != strings.Join(tc.refused, ",") {
				t.Errorf("Refused = %q, want %q", refused, tc.refused)
			}
		})
	}
	// A copy that is not an addr-spec makes the envelope invalid.
	env := testEnvelope(t, 2)
	env.Copies = []string{"bob@example.org>\r\nDATA"}
	if err := checkEnvelope(env); !errors.Is(err, ErrInvalidEnvelope) {
		t.Errorf("checkEnvelope = %v", err)
	}
}

// SendEach sends messages as they are made, over one connection opened
// for the first valid one: message n+1 is asked for only after message n
// went out, an invalid message gets its error without a connection, and a
// burst of only invalid messages opens none.
func TestSendEach(t *testing.T) {
	relay := &testRelay{}
	addr := startRelay(t, relay, relayOptions{})
	s := newTestSender(t, SenderOptions{Address: addr, Security: SecurityNone})

	invalid := &Envelope{From: "support@acme.example", Data: []byte("x")} // no recipient
	errs := s.SendEach(context.Background(), func() (*Envelope, bool) {
		if invalid == nil {
			return nil, false
		}
		m := invalid
		invalid = nil
		return m, true
	})
	if len(errs) != 1 || !errors.Is(errs[0], ErrInvalidEnvelope) || relay.connCount() != 0 {
		t.Fatalf("a burst of one invalid message: %v, %d connections; want ErrInvalidEnvelope and none", errs, relay.connCount())
	}

	var sentEnvs []*Envelope
	n := 0
	errs = s.SendEach(context.Background(), func() (*Envelope, bool) {
		if got := len(relay.delivered()); got != len(sentEnvs) {
			t.Errorf("message %d asked for with %d delivered, want %d", n, got, len(sentEnvs))
		}
		if n == 4 {
			return nil, false
		}
		n++
		if n == 2 {
			return &Envelope{From: "support@acme.example", Data: []byte("x")}, true // no recipient
		}
		env := testEnvelope(t, n)
		sentEnvs = append(sentEnvs, env)
		return env, true
	})
	if len(errs) != 4 || errs[0] != nil || !errors.Is(errs[1], ErrInvalidEnvelope) || errs[2] != nil || errs[3] != nil {
		t.Fatalf("errors %v, want nil, ErrInvalidEnvelope, nil, nil", errs)
	}
	if c := relay.connCount(); c != 1 {
		t.Errorf("%d connections for a burst, want 1", c)
	}
	got := relay.delivered()
	if len(got) != 3 {
		t.Fatalf("relay got %d messages, want 3", len(got))
	}
	for i, env := range sentEnvs {
		if !bytes.Equal(got[i].data, env.Data) {
			t.Errorf("message %d out of order or changed", i)
		}
	}
}
