package imapsync

import (
	"context"
	"errors"
	"log"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"
	"golang.org/x/oauth2/clientcredentials"

	"mailgate/devmail"
	"mailgate/oauthsasl"
	"mailgate/oauthtest"
)

// movingSession is a session with MOVE, which fullCaps advertises.
type movingSession interface {
	imapserver.Session
	imapserver.SessionMove
}

// tokenSession logs users in with OAuth2 tokens checked at the
// authorization server's introspection endpoint, as Dovecot's oauth2
// passdb does.
type tokenSession struct {
	movingSession
	mechs []string
	check oauthtest.TokenCheck
}

func (s *tokenSession) AuthenticateMechanisms() []string { return s.mechs }

func (s *tokenSession) Authenticate(mech string) (sasl.Server, error) {
	login := func(user, token string) error {
		if err := s.check(user, token); err != nil {
			return err
		}
		return s.movingSession.Login(user, testPassword)
	}
	switch mech {
	case oauthsasl.XOAuth2:
		return oauthtest.NewXOAuth2Server(login), nil
	case oauthsasl.OAuthBearer:
		return oauthtest.NewOAuthBearerServer(login), nil
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "mechanism not supported"}
}

// listenOAuth replaces the test server's listener with one whose sessions
// authenticate with tokens only.
func (ts *testServer) listenOAuth(auth *oauthtest.Server, mechs []string) {
	ts.t.Helper()
	ts.stop()
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &tokenSession{movingSession: devmail.PollingIdle(ts.mem.NewSession()).(movingSession), mechs: mechs, check: auth.CheckByIntrospection()}, nil, nil
		},
		Caps:         ts.caps,
		InsecureAuth: true,
		Logger:       log.New(discardWriter{}, "", 0),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ts.t.Fatal(err)
	}
	go srv.Serve(ln)
	ts.mu.Lock()
	ts.srv, ts.addr = srv, ln.Addr().String()
	ts.mu.Unlock()
}

// serverTokens gets a new app-only token from the authorization server at
// every call, or fails with needsLogin while refused is set.
type serverTokens struct {
	cc *clientcredentials.Config

	mu       sync.Mutex
	refused  bool
	issued   []string
	rejected []string
}

type needsLogin struct{}

func (needsLogin) Error() string    { return "oauth2: login needed" }
func (needsLogin) NeedsLogin() bool { return true }

func (s *serverTokens) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refused {
		return "", needsLogin{}
	}
	tok, err := s.cc.Token(ctx)
	if err != nil {
		return "", err
	}
	s.issued = append(s.issued, tok.AccessToken)
	return tok.AccessToken, nil
}

func (s *serverTokens) Reject(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejected = append(s.rejected, tok)
}

func (s *serverTokens) setRefused(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refused = v
}

func (s *serverTokens) counts() (issued, rejected int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.issued), len(s.rejected)
}

func TestOAuth2Auth(t *testing.T) {
	auth, err := oauthtest.Start(oauthtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auth.Close() })
	auth.AddClient(oauthtest.Client{ID: "app", Secret: "cs", Subject: testUser})
	ts := newTestServer(t, fullCaps)
	ts.listenOAuth(auth, []string{oauthsasl.XOAuth2})
	tokens := &serverTokens{cc: &clientcredentials.Config{ClientID: "app", ClientSecret: "cs", TokenURL: auth.TokenURL()}}

	r := newRecorder()
	var logs lockedBuffer
	opts := baseOptions(ts, r)
	opts.Auth = OAuth2Auth{Username: testUser, Tokens: tokens}
	opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// Each listener below has its own port.
	opts.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, ts.address())
	}
	ts.appendMsg("INBOX", testMail(1))
	w := startWatcher(t, opts)
	waitHandled(t, r, 1)

	// A revoked token: the server refuses it, the Watcher hands it back,
	// and the next connection logs in with a new one.
	issued, _ := tokens.counts()
	tokens.mu.Lock()
	last := tokens.issued[len(tokens.issued)-1]
	tokens.mu.Unlock()
	auth.Revoke(last)
	ts.stop()
	ts.listenOAuth(auth, []string{oauthsasl.XOAuth2, oauthsasl.OAuthBearer})
	ts.appendMsg("INBOX", testMail(2))
	waitHandled(t, r, 2)
	if n, _ := tokens.counts(); n <= issued {
		t.Errorf("no new token after reconnecting")
	}

	// A grant that needs a login: the login fails as refused, without an
	// ERROR line of the Watcher (the token source reported it), and
	// recovers once the grant works again.
	tokens.setRefused(true)
	ts.stop()
	ts.listenOAuth(auth, []string{oauthsasl.OAuthBearer})
	waitFor(t, "login refused", func() bool { return w.State().AuthFailed })
	tokens.setRefused(false)
	ts.appendMsg("INBOX", testMail(3))
	waitHandled(t, r, 3)
	waitFor(t, "connected again", func() bool { s := w.State(); return s.Connected && !s.AuthFailed })
	if n := strings.Count(logs.String(), "level=ERROR"); n != 0 {
		t.Errorf("%d ERROR lines, want 0:\n%s", n, logs.String())
	}
	tokens.mu.Lock()
	defer tokens.mu.Unlock()
	for _, tok := range tokens.issued {
		if strings.Contains(logs.String(), tok) {
			t.Fatal("a token leaked into the logs")
		}
	}
}

func TestOAuth2AuthRejectedToken(t *testing.T) {
	auth, err := oauthtest.Start(oauthtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auth.Close() })
	auth.AddClient(oauthtest.Client{ID: "app", Secret: "cs", Subject: "someone-else"})
	ts := newTestServer(t, fullCaps)
	ts.listenOAuth(auth, []string{oauthsasl.OAuthBearer})
	tokens := &serverTokens{cc: &clientcredentials.Config{ClientID: "app", ClientSecret: "cs", TokenURL: auth.TokenURL()}}
	opts := baseOptions(ts, newRecorder())
	opts.Auth = OAuth2Auth{Username: testUser, Tokens: tokens}
	steps := Check(context.Background(), opts, CheckOptions{})
	var ae *AuthError
	if len(steps) < 2 || !errors.As(steps[1].Err, &ae) || steps[1].Name != `log in as "alice"` {
		t.Fatalf("steps %+v", steps)
	}
	// The refused token was handed back and a new one tried once.
	if issued, rejected := tokens.counts(); issued != 2 || rejected != 2 {
		t.Errorf("%d tokens issued, %d handed back; want 2 and 2", issued, rejected)
	}
}

// While the grant waits for a login, reconnects are at most LoginWaitRetry
// apart, however long the backoff has grown.
func TestOAuth2LoginWaitCapsBackoff(t *testing.T) {
	ts := newTestServer(t, fullCaps)
	tokens := &serverTokens{refused: true}
	opts := baseOptions(ts, newRecorder())
	opts.Auth = OAuth2Auth{Username: testUser, Tokens: tokens}
	opts.MinBackoff, opts.MaxBackoff = 2*LoginWaitRetry, 5*LoginWaitRetry
	w := startWatcher(t, opts)
	waitFor(t, "a refused login", func() bool { s := w.State(); return s.AuthFailed && s.Backoff > 0 })
	if b := w.State().Backoff; b > LoginWaitRetry {
		t.Fatalf("backoff %v while the grant waits for a login, want at most %v", b, LoginWaitRetry)
	}
}
