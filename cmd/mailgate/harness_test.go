package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"mailgate/userlike/userliketest"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/config"
	"mailgate/devmail"
	"mailgate/lease"
	"mailgate/store"
	"mailgate/userlike"
)

const (
	supportUser  = "support@example.test"
	supportPass  = "imap-secret-1"
	inboundToken = "inbound-token-abc"
	waitLimit    = 2 * time.Minute // generous: CI machines are slow under -race
)

// fakeUserlike is the channel's Inbound URL: userliketest.Inbound on an
// httptest server.
type fakeUserlike struct {
	*userliketest.Inbound
	t   *testing.T
	srv *httptest.Server
}

func newFakeUserlike(t *testing.T) *fakeUserlike {
	f := &fakeUserlike{Inbound: userliketest.NewInbound(inboundToken), t: t}
	f.srv = httptest.NewServer(f.Inbound)
	t.Cleanup(f.srv.Close)
	return f
}

// received returns the accepted posts.
func (f *fakeUserlike) received() []userlike.InboundMessage {
	var out []userlike.InboundMessage
	for _, p := range f.Accepted() {
		out = append(out, p.Message)
	}
	return out
}

// waitPosts waits until at least n posts were accepted.
func (f *fakeUserlike) waitPosts(n int) []userlike.InboundMessage {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, ok := f.Wait(ctx, func(p []userliketest.Post) bool { return len(p) >= n }); !ok {
		got := f.received()
		f.t.Fatalf("got %d posts, want %d: %+v", len(got), n, got)
	}
	return f.received()
}

// testEnv is one mailgate under test with its mail system and Userlike.
type testEnv struct {
	t        *testing.T
	mail     *devmail.Server
	ul       *fakeUserlike
	dir      string
	cfgPath  string
	httpAddr string
	// metricsAddr serves /metrics, /healthz and /readyz.
	metricsAddr string
	// d is the daemon started in-process by start, and stop stops it
	// (when the test keeps it).
	d    *daemon
	stop func()
	// leaseEvents, when set before start, is told the daemon's lease
	// changes.
	leaseEvents func(lease.Event)

	// bound holds the listeners bound on port 0 for httpAddr and
	// metricsAddr until the first daemon takes them (see listen).
	mu    sync.Mutex
	bound map[string]net.Listener
}

// newEnvBase starts the mail system (support's and jane's mailboxes, with
// dmOpts) and the fake Userlike, and binds the daemon's ports; the caller
// writes the configuration to e.cfgPath.
func newEnvBase(t *testing.T, dmOpts devmail.Options) *testEnv {
	t.Helper()
	dmOpts.Users = map[string]string{supportUser: supportPass, "jane@example.test": "jane-pass"}
	dm, err := devmail.Start(dmOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dm.Close() })
	e := &testEnv{t: t, mail: dm, ul: newFakeUserlike(t), dir: t.TempDir(), bound: map[string]net.Listener{}}
	e.httpAddr, e.metricsAddr = e.bind(), e.bind()
	e.cfgPath = filepath.Join(e.dir, "config.toml")
	return e
}

func newTestEnv(t *testing.T, extraTOML string, smtpTOML ...string) *testEnv {
	t.Helper()
	e := newEnvBase(t, devmail.Options{})
	dm := e.mail
	cfg := fmt.Sprintf(`
[server]
listen = %[1]q
public_url = "http://%[1]s"

[metrics]
listen = %[10]q

[store]
path = %[2]q

[log]
level = "debug"

[[channel]]
name = "support"

[channel.userlike]
inbound_url = %[3]q
inbound_token = %[4]q
outbound_token = "outbound-token-xyz"

[channel.imap]
address = %[5]q
security = "none"
username = %[6]q
password = %[7]q
poll_interval = "10s"
start = "all"

[channel.smtp]
address = %[8]q
security = "none"
from = "Example Support <support@example.test>"
%[11]s

[channel.verify]
trusted_authserv_ids = ["mx.example.test"]
%[9]s
`, e.httpAddr, filepath.Join(e.dir, "state", "mailgate.db"), e.ul.srv.URL, inboundToken, dm.IMAPAddr(), supportUser, supportPass, dm.SMTPAddr(), extraTOML, e.metricsAddr, strings.Join(smtpTOML, "\n"))
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// bind binds a listener on 127.0.0.1 port 0, keeps it for the daemon
// (listen) and returns its address: no other process can take the port
// between choosing it and serving on it.
func (e *testEnv) bind() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { ln.Close() })
	e.mu.Lock()
	defer e.mu.Unlock()
	e.bound[ln.Addr().String()] = ln
	return ln.Addr().String()
}

// releasePorts closes the listeners still held for the daemon.
func (e *testEnv) releasePorts() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for addr, ln := range e.bound {
		ln.Close()
		delete(e.bound, addr)
	}
}

// listen is the daemon's Listen: the listener bound for addr the first
// time, a new one on the same address after a restart.
func (e *testEnv) listen(network, addr string) (net.Listener, error) {
	e.mu.Lock()
	ln, ok := e.bound[addr]
	delete(e.bound, addr)
	e.mu.Unlock()
	if ok {
		return ln, nil
	}
	return net.Listen(network, addr)
}

// start runs the daemon in-process until the test ends.
func (e *testEnv) start() (stop func()) {
	e.t.Helper()
	cfg, err := config.Load(e.cfgPath, config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(testWriter{e.t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d, err := startDaemon(ctx, daemonOptions{Config: cfg, ConfigPath: e.cfgPath, Logger: log, Listen: e.listen, LeaseEvents: e.leaseEvents})
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	e.d = d
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := d.wait(); err != nil {
				e.t.Errorf("daemon stopped with %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

// deliver puts a customer email into the support INBOX.
func (e *testEnv) deliver(raw string) uint32 {
	e.t.Helper()
	uid, err := e.mail.Deliver(supportUser, "INBOX", []byte(strings.ReplaceAll(strings.ReplaceAll(raw, "\r\n", "\n"), "\n", "\r\n")))
	if err != nil {
		e.t.Fatal(err)
	}
	return uid
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// customerMail builds a plain text email that the trusted MX says passed
// DMARC.
func customerMail(from, name, msgID, subject, body string, extraHeaders ...string) string {
	domain := from[strings.IndexByte(from, '@')+1:]
	var b strings.Builder
	fmt.Fprintf(&b, "Authentication-Results: mx.example.test; dmarc=pass header.from=%s\n", domain)
	for _, h := range extraHeaders {
		b.WriteString(h + "\n")
	}
	fmt.Fprintf(&b, "From: %s <%s>\nTo: support@example.test\nSubject: %s\nMessage-ID: <%s>\nDate: Tue, 24 Nov 2026 10:00:00 +0000\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n%s\n", name, from, subject, msgID, body)
	return b.String()
}

func download(t *testing.T, url string) (sum string, resp *http.Response) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	io.Copy(h, resp.Body)
	return hex.EncodeToString(h.Sum(nil)), resp
}

// ledgerSummary opens the store read-only-ish and summarizes the ledger
// states, e.g. "posted=2 dead=1".
func ledgerSummary(t *testing.T, cfgPath string) string {
	t.Helper()
	cfg, err := config.Load(cfgPath, config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(context.Background(), cfg.Store.Path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	counts, err := db.Counts(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for state, n := range counts {
		parts = append(parts, fmt.Sprintf("%s=%d", state, n))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
