//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tokens of the fake Userlike channel.
const (
	inboundToken  = "e2e-inbound-token-0123456789"
	outboundToken = "e2e-outbound-token-9876543210"
)

// mailgateOptions are the settings a scenario chooses; everything else in
// the generated configuration is fixed (see config).
type mailgateOptions struct {
	// InboundURL is the fake Userlike's Inbound URL.
	InboundURL string
	// RateLimit is channel.inbound.rate_limit (0: mailgate's default).
	RateLimit int
	// Media, IMAP and SMTP are extra TOML lines for the [media],
	// [channel.imap] and [channel.smtp] tables (for example
	// `coalesce = "1s"`).
	Media, IMAP, SMTP string
	// Verify replaces the body of [channel.verify]; "" means
	// `require = "none"` (no sender verification).
	Verify string
	// Extra is TOML appended to the end of the file, inside the channel
	// (for example "[channel.inbound]\nmailing_lists = \"post\"").
	Extra string
	// IMAPUser is the mailbox mailgate logs in to (default supportUser).
	IMAPUser string
	// OAuth2, when set, is the body of [channel.oauth2]; the channel then
	// has no passwords and sends through Postfix's submission listener,
	// which requires SMTP AUTH.
	OAuth2 string
	// Store is extra TOML lines for the [store] table (for example the
	// PostgreSQL store and the lease keys).
	Store string
}

// mailgate is one mailgate daemon of a scenario, as a child process that
// can be killed and restarted on the same configuration and store.
type mailgate struct {
	t       testing.TB
	dir     string
	cfgPath string
	logPath string
	listen  string // HTTP listener (webhook, media, /healthz)
	metrics string
	// sockets are the HTTP and metrics listening sockets, bound once on
	// port 0 and handed to every process as systemd does (LISTEN_FDS):
	// no port is picked before it is bound, and a restart keeps the
	// addresses, with the connections made meanwhile in the backlog.
	sockets []*os.File
	opts    mailgateOptions

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has exited
	waitErr error
	logFrom int64 // size of the log when the current process started
	starts  int
	kills   int
}

// newMailgate writes a configuration for the scenario's directory; call
// Start to run it. The daemon is stopped when the test ends.
func newMailgate(t *testing.T, dir string, opts mailgateOptions) *mailgate {
	t.Helper()
	g := &mailgate{
		t:       t,
		dir:     dir,
		cfgPath: filepath.Join(dir, "mailgate.toml"),
		logPath: filepath.Join(suite.workDir, "logs", filepath.Base(dir)+"-mailgate.log"),
		opts:    opts,
	}
	if err := g.bindSockets(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.cfgPath, []byte(g.config(opts)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() && g.Running() {
			// The log then ends with every goroutine's stack: where
			// mailgate was when the scenario gave up on it.
			g.DumpStacks()
		}
		if err := g.Stop(); err != nil {
			t.Errorf("stopping mailgate: %v", err)
		}
		for _, f := range g.sockets {
			f.Close()
		}
		t.Logf("mailgate log: %s (%d starts, %d SIGKILLs)", g.logPath, g.starts, g.kills)
	})
	return g
}

// bindSockets binds the HTTP and metrics listeners on port 0 of loopback
// and keeps their sockets for the processes to come.
func (g *mailgate) bindSockets() error {
	var addrs []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		f, err := ln.(*net.TCPListener).File() // a descriptor of its own
		addrs = append(addrs, ln.Addr().String())
		ln.Close()
		if err != nil {
			return err
		}
		g.sockets = append(g.sockets, f)
	}
	g.listen, g.metrics = addrs[0], addrs[1]
	return nil
}

// config renders the TOML configuration.
func (g *mailgate) config(opts mailgateOptions) string {
	q := strconv.Quote
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by the e2e suite for %s.\n", filepath.Base(g.dir))
	fmt.Fprintf(&b, "[server]\nlisten = %s\n\n", q(g.listen))
	fmt.Fprintf(&b, "[metrics]\nlisten = %s\n\n", q(g.metrics))
	fmt.Fprintf(&b, "[store]\npath = %s\n%s\n", q(filepath.Join(g.dir, "mailgate.db")), lines(opts.Store))
	fmt.Fprintf(&b, "[media]\ndir = %s\n%s\n", q(filepath.Join(g.dir, "media")), lines(opts.Media))
	fmt.Fprintf(&b, "[log]\nlevel = \"debug\"\nformat = \"json\"\n\n")
	fmt.Fprintf(&b, "[[channel]]\nname = \"support\"\n\n")
	fmt.Fprintf(&b, "[channel.userlike]\ninbound_url = %s\ninbound_token = %s\noutbound_token = %s\n\n",
		q(opts.InboundURL), q(inboundToken), q(outboundToken))
	imapLines := lines(opts.IMAP)
	if !strings.Contains(imapLines, "start =") {
		// The scenarios deliver their mail before mailgate starts.
		imapLines = "start = \"all\"\n" + imapLines
	}
	imapUser := opts.IMAPUser
	if imapUser == "" {
		imapUser = supportUser
	}
	password := "password = " + q(suite.vars["MAIL_PASSWORD"]) + "\n"
	if opts.OAuth2 != "" {
		password = ""
	}
	fmt.Fprintf(&b, "[channel.imap]\naddress = %s\nsecurity = \"none\"\nusername = %s\n%s%s\n",
		q(suite.vars["IMAP_ADDR"]), q(imapUser), password, imapLines)
	smtpAddr := suite.vars["SMTP_ADDR"]
	if opts.OAuth2 != "" {
		smtpAddr = suite.vars["SUBMISSION_ADDR"] // AUTH required
	}
	fmt.Fprintf(&b, "[channel.smtp]\naddress = %s\nsecurity = \"none\"\nfrom = %s\n%s\n",
		q(smtpAddr), q("Support <"+supportUser+">"), lines(opts.SMTP))
	verify := opts.Verify
	if verify == "" {
		verify = `require = "none"`
	}
	fmt.Fprintf(&b, "[channel.verify]\n%s\n", lines(verify))
	if opts.RateLimit > 0 {
		fmt.Fprintf(&b, "[channel.inbound]\nrate_limit = %d\n\n", opts.RateLimit)
	}
	if opts.Extra != "" {
		b.WriteString(opts.Extra + "\n")
	}
	if opts.OAuth2 != "" {
		fmt.Fprintf(&b, "[channel.oauth2]\n%s", lines(opts.OAuth2))
	}
	return b.String()
}

// lines returns s with a final newline, or "" for "".
func lines(s string) string {
	if s == "" || strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

// Start starts the daemon and waits until /healthz answers. An error
// means mailgate cannot run (see requireDaemon); the log tail is in it.
func (g *mailgate) Start() error {
	if err := g.spawn(); err != nil {
		return err
	}
	return g.waitHealthy(30 * time.Second)
}

// spawn starts the process without waiting for it to be ready.
func (g *mailgate) spawn() error {
	if suite.buildErr != nil {
		return suite.buildErr
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd != nil {
		return errors.New("mailgate already running")
	}
	logf, err := os.OpenFile(g.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	st, err := logf.Stat()
	if err != nil {
		return err
	}
	g.logFrom = st.Size()
	g.starts++
	fmt.Fprintf(logf, "=== e2e: start #%d at %s\n", g.starts, time.Now().Format(time.RFC3339Nano))
	// The shell execs mailgate in its own process, so that LISTEN_PID,
	// which sd_listen_fds(3) checks, is mailgate's pid.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, suite.binary, "run", "-c", g.cfgPath)
	cmd.Env = append(os.Environ(), fmt.Sprintf("LISTEN_FDS=%d", len(g.sockets)))
	cmd.ExtraFiles = g.sockets
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = g.dir
	// The daemon dies with the test process, even on a crash.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mailgate: %w", err)
	}
	g.cmd = cmd
	exited := make(chan struct{})
	g.exited = exited
	suite.track(g, true)
	go func() {
		err := cmd.Wait()
		g.mu.Lock()
		g.waitErr = err
		g.mu.Unlock()
		close(exited)
	}()
	return nil
}

// waitHealthy polls /healthz until it answers 200, the process exits, or
// timeout.
func (g *mailgate) waitHealthy(timeout time.Duration) error {
	g.mu.Lock()
	exited := g.exited
	g.mu.Unlock()
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			g.mu.Lock()
			err := g.waitErr
			g.mu.Unlock()
			g.reap()
			return fmt.Errorf("mailgate exited during startup (%v); log:\n%s", err, g.LogTail(30))
		default:
		}
		resp, err := client.Get("http://" + g.listen + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("mailgate: no healthy /healthz on %s within %v; log:\n%s", g.listen, timeout, g.LogTail(30))
}

// Running reports whether the process is alive.
func (g *mailgate) Running() bool {
	g.mu.Lock()
	exited := g.exited
	g.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Kill9 kills the daemon with SIGKILL and waits for it to be gone.
func (g *mailgate) Kill9() {
	g.mu.Lock()
	running := g.cmd != nil
	if running {
		g.kills++
	}
	g.mu.Unlock()
	if running {
		g.killProcess()
	}
}

// killProcess sends SIGKILL and reaps; safe to call in any state.
func (g *mailgate) killProcess() {
	g.mu.Lock()
	cmd, exited := g.cmd, g.exited
	g.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
	g.reap()
}

// reap forgets an exited process.
func (g *mailgate) reap() {
	g.mu.Lock()
	g.cmd, g.exited = nil, nil
	g.mu.Unlock()
	suite.track(g, false)
}

// Stop stops the daemon with SIGTERM (SIGKILL after 45s) and returns an
// error when it did not exit cleanly. Stopping a stopped daemon is a no-op.
func (g *mailgate) Stop() error {
	g.mu.Lock()
	cmd, exited := g.cmd, g.exited
	g.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(45 * time.Second):
		g.killProcess()
		return errors.New("mailgate did not exit within 45s of SIGTERM; killed")
	}
	g.mu.Lock()
	err := g.waitErr
	g.mu.Unlock()
	g.reap()
	if err != nil {
		return fmt.Errorf("mailgate exited with %v after SIGTERM; log:\n%s", err, g.LogTail(20))
	}
	return nil
}

// DumpStacks sends SIGQUIT: the Go runtime writes every goroutine's stack
// to the log and exits. Scenarios call it when mailgate seems stuck, so
// that the log shows where; the daemon can be restarted afterwards.
func (g *mailgate) DumpStacks() {
	g.mu.Lock()
	cmd, exited := g.cmd, g.exited
	g.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-exited:
		g.reap()
	case <-time.After(10 * time.Second):
		g.killProcess()
	}
	g.t.Logf("mailgate stopped with SIGQUIT; goroutine stacks in %s", g.logPath)
}

// Restart starts the daemon again after Kill9 or Stop.
func (g *mailgate) Restart() error { return g.Start() }

// Log returns the log written since the current (or last) process started.
func (g *mailgate) Log() string {
	g.mu.Lock()
	from := g.logFrom
	g.mu.Unlock()
	b, err := os.ReadFile(g.logPath)
	if err != nil || int64(len(b)) < from {
		return ""
	}
	return string(b[from:])
}

// FullLog returns the whole log of the scenario, every process included.
func (g *mailgate) FullLog() string {
	b, _ := os.ReadFile(g.logPath)
	return string(b)
}

// LogTail returns the last n lines of the current process's log.
func (g *mailgate) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(g.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitLog waits until the current process's log contains substr.
func (g *mailgate) WaitLog(substr string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		if strings.Contains(g.Log(), substr) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// CountLog counts the occurrences of substr in the whole scenario log.
func (g *mailgate) CountLog(substr string) int {
	return bytes.Count([]byte(g.FullLog()), []byte(substr))
}
