package imapsync

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

const (
	// commandTimeout bounds how long the server may stay silent while a
	// command is pending; the connection is then closed and re-opened.
	commandTimeout = 2 * time.Minute
	// handshakeTimeout bounds the TLS handshake of SecurityTLS.
	handshakeTimeout = 30 * time.Second
	// warnEvery rate-limits the WARN lines of repeated connection failures.
	warnEvery = time.Minute
)

// folderWatcher is the loop of one folder: one connection at a time.
type folderWatcher struct {
	w    *Watcher
	name string
	log  *slog.Logger

	notify chan struct{} // Watcher.Notify; buffered, size 1
	exists chan struct{} // EXISTS seen on the connection; buffered, size 1

	state folderState // guarded by w.mu

	// Owned by the loop goroutine.
	backoff        backoff           // reconnect delay
	handlerBackoff backoff           // delay before handing a failed UID again
	memValidity    uint32            // UIDVALIDITY of memUID
	memUID         uint32            // highest UID handed successfully
	announced      [2]uint32         // last (old, new) accepted by UIDValidityChanged
	refetchTries   map[[2]uint32]int // (UIDVALIDITY, UID) -> tries to fetch it again
}

// run connects, syncs and reconnects until ctx is done.
func (f *folderWatcher) run(ctx context.Context) {
	f.handlerBackoff = backoff{min: f.w.opts.MinBackoff, max: f.w.opts.MaxBackoff}
	f.refetchTries = make(map[[2]uint32]int)
	attempt := 0
	var lastWarn time.Time
	for {
		synced, err := f.session(ctx, attempt)
		if synced {
			attempt = 0
		}
		if ctx.Err() != nil {
			f.updateState(func(s *folderState) { s.connected = false })
			return
		}
		attempt++
		delay := f.backoff.next()
		var authErr *AuthError
		if errors.As(err, &authErr) && authErr.Reported {
			// A grant that waits for a person: retry often enough that
			// the channel resumes soon after the login. An attempt asks
			// the token source first, which answers without the network.
			delay = min(delay, LoginWaitRetry)
		}
		now := time.Now()
		f.updateState(func(s *folderState) {
			s.connected = false
			s.attempted = true
			s.lastError = fmt.Sprintf("folder %q: %v", f.name, err)
			s.lastErrorAt = now
			s.backoff = delay
		})
		switch {
		case isAuthFailure(err):
			f.log.Debug("imap: login rejected, retrying", "attempt", attempt, "retry_in", delay)
		case attempt <= 3 || now.Sub(lastWarn) >= warnEvery:
			lastWarn = now
			f.log.Warn("imap: connection failed, retrying", "attempt", attempt, "retry_in", delay, "err", err)
		default:
			f.log.Debug("imap: connection failed, retrying", "attempt", attempt, "retry_in", delay, "err", err)
		}
		if !sleep(ctx, delay) {
			f.updateState(func(s *folderState) { s.connected = false })
			return
		}
	}
}

// session is one connection's life. synced reports whether it completed at
// least one catch-up; err says why it ended.
func (f *folderWatcher) session(ctx context.Context, failedBefore int) (synced bool, err error) {
	c, closeConn, err := f.connect(ctx)
	if err != nil {
		return false, err
	}
	defer closeConn()

	s := &session{f: f, c: c, wd: newWatchdog(c), known: make(map[string]bool)}
	defer s.wd.disarm()
	defer func() { err = s.wd.explain(err) }()

	if err := s.selectFolder(); err != nil {
		return false, err
	}
	caps := c.Caps()
	s.hasIdle = caps.Has(imap.CapIdle)
	s.hasMove = caps.Has(imap.CapMove)
	s.hasUIDPlus = caps.Has(imap.CapUIDPlus)
	f.updateState(func(st *folderState) {
		st.connected = true
		st.attempted = true
	})
	if failedBefore > 0 {
		f.log.Info("imap: connected again", "failed_attempts", failedBefore, "uidvalidity", s.validity)
	} else {
		f.log.Info("imap: connected", "uidvalidity", s.validity, "idle", s.hasIdle)
	}

	lastPoll := time.Now()
	for {
		retry, err := s.catchUp(ctx)
		if err != nil {
			return synced, err
		}
		if !synced {
			synced = true
			f.backoff.reset()
			f.updateState(func(st *folderState) { st.backoff = 0 })
		}
		if retry == 0 {
			now := time.Now()
			f.updateState(func(st *folderState) {
				st.lastSync = now
				st.lastError = ""
			})
		}
		if err := s.applyActions(ctx); err != nil {
			return synced, err
		}

		wait := time.Until(lastPoll.Add(f.w.opts.PollInterval))
		if retry > 0 && retry < wait {
			wait = retry
		}
		if wait > 0 {
			if s.hasIdle {
				err = s.idle(ctx, min(wait, f.w.opts.IdleRefresh))
			} else {
				err = s.sleep(ctx, wait)
			}
			if err != nil {
				return synced, err
			}
		}
		if ctx.Err() != nil {
			return synced, ctx.Err()
		}
		if time.Since(lastPoll) >= f.w.opts.PollInterval {
			// Reconciliation: SELECT again, which also reveals a
			// UIDVALIDITY change that IDLE would never report.
			if err := s.selectFolder(); err != nil {
				return synced, err
			}
			lastPoll = time.Now()
		}
	}
}

// connect dials, secures, greets and logs in. closeConn releases the
// connection; it is also closed when ctx is done.
func (f *folderWatcher) connect(ctx context.Context) (c *imapclient.Client, closeConn func(), err error) {
	o := &f.w.opts
	copts := &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			// Runs on the client's reader goroutine: never block.
			Mailbox: func(data *imapclient.UnilateralDataMailbox) {
				if data.NumMessages != nil {
					select {
					case f.exists <- struct{}{}:
					default:
					}
				}
			},
		},
	}
	c, stop, err := dialClient(ctx, o, copts)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*imapclient.Client, func(), error) {
		stop()
		return nil, nil, err
	}
	wd := newWatchdog(c)
	err = o.Auth.Authenticate(ctx, c)
	wd.disarm()
	if err != nil {
		err = wd.explain(err)
		if isAuthFailure(err) {
			f.w.authResult(authUsername(o.Auth, err), err)
		}
		return fail(err)
	}
	f.w.authResult(authUsername(o.Auth, nil), nil)
	return c, stop, nil
}

// dialClient connects to the server of o with its security setting and
// waits for the greeting. The returned stop closes the client and the
// connection; the connection is also closed when ctx ends.
func dialClient(ctx context.Context, o *Options, copts *imapclient.Options) (c *imapclient.Client, stop func(), err error) {
	conn, err := o.Dial(ctx, "tcp", o.Address)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", o.Address, err)
	}
	unwatch := context.AfterFunc(ctx, func() { conn.Close() })
	fail := func(err error) (*imapclient.Client, func(), error) {
		unwatch()
		if c != nil {
			c.Close()
		}
		conn.Close()
		return nil, nil, err
	}
	host, _, _ := net.SplitHostPort(o.Address)
	tlsConfig := func() *tls.Config {
		var cfg *tls.Config
		if o.TLSConfig != nil {
			cfg = o.TLSConfig.Clone()
		} else {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		return cfg
	}

	switch o.Security {
	case SecurityTLS:
		cfg := tlsConfig()
		if cfg.NextProtos == nil {
			cfg.NextProtos = []string{"imap"}
		}
		tc := tls.Client(conn, cfg)
		hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			return fail(fmt.Errorf("tls handshake with %s: %w", o.Address, err))
		}
		c = imapclient.New(tc, copts)
	case SecurityStartTLS:
		copts.TLSConfig = tlsConfig()
		c, err = imapclient.NewStartTLS(conn, copts)
		if err != nil {
			return fail(fmt.Errorf("starttls with %s: %w", o.Address, err))
		}
	default:
		c = imapclient.New(conn, copts)
	}
	if err := c.WaitGreeting(); err != nil {
		return fail(fmt.Errorf("greeting from %s: %w", o.Address, err))
	}
	return c, func() { unwatch(); c.Close(); conn.Close() }, nil
}

// session is one selected connection of a folder.
type session struct {
	f  *folderWatcher
	c  *imapclient.Client
	wd *watchdog

	validity   uint32
	uidNext    uint32 // UIDNEXT of the last SELECT; 0 when not sent
	messages   uint32 // EXISTS of the last SELECT
	history    Cursor // the history marks of the folder's cursor
	hasIdle    bool
	hasMove    bool
	hasUIDPlus bool
	known      map[string]bool // mailboxes known to exist
}

// selectFolder (re-)selects the folder read-write and records its
// UIDVALIDITY.
func (s *session) selectFolder() error {
	s.wd.arm()
	data, err := s.c.Select(s.f.name, nil).Wait()
	s.wd.disarm()
	if err != nil {
		return fmt.Errorf("select %q: %w", s.f.name, err)
	}
	if data.UIDValidity == 0 {
		return fmt.Errorf("select %q: server sent no UIDVALIDITY", s.f.name)
	}
	if s.validity != 0 && s.validity != data.UIDValidity {
		s.f.log.Info("imap: UIDVALIDITY changed", "old", s.validity, "new", data.UIDValidity)
	}
	s.validity = data.UIDValidity
	s.uidNext, s.messages = uint32(data.UIDNext), data.NumMessages
	s.f.log.Debug("imap: selected", "uidvalidity", data.UIDValidity, "uidnext", data.UIDNext, "messages", data.NumMessages)
	return nil
}

// idle waits in IDLE for at most d, until new mail, a Notify or ctx.
func (s *session) idle(ctx context.Context, d time.Duration) error {
	s.wd.arm()
	cmd, err := s.c.Idle()
	s.wd.disarm()
	if err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	s.wait(ctx, d)
	s.wd.arm()
	defer s.wd.disarm()
	if err := cmd.Close(); err != nil {
		return fmt.Errorf("idle: done: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	return nil
}

// sleep waits for at most d without IDLE, until a Notify, an EXISTS
// received earlier, or ctx.
func (s *session) sleep(ctx context.Context, d time.Duration) error {
	if s.wait(ctx, d) {
		return errors.New("connection closed")
	}
	return nil
}

// wait returns after d, a Notify, an EXISTS received, the end of ctx or
// of the connection; it reports whether the connection closed.
func (s *session) wait(ctx context.Context, d time.Duration) (closed bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-s.f.exists:
	case <-s.f.notify:
	case <-t.C:
	case <-s.c.Closed():
		return true
	}
	return false
}

// watchdog closes the client when a command gets no answer in time.
type watchdog struct {
	t     *time.Timer
	fired atomic.Bool
}

// newWatchdog returns an armed watchdog for c.
func newWatchdog(c *imapclient.Client) *watchdog {
	wd := &watchdog{}
	wd.t = time.AfterFunc(commandTimeout, func() {
		wd.fired.Store(true)
		c.Close()
	})
	return wd
}

// arm (re)starts the countdown.
func (wd *watchdog) arm() { wd.t.Reset(commandTimeout) }

// disarm stops the countdown.
func (wd *watchdog) disarm() { wd.t.Stop() }

// explain says so in err when the watchdog closed the connection.
func (wd *watchdog) explain(err error) error {
	if err != nil && wd.fired.Load() {
		return fmt.Errorf("no answer from server within %v: %w", commandTimeout, err)
	}
	return err
}

// isAuthFailure tells a rejected login from other connection errors.
func isAuthFailure(err error) bool {
	var authErr *AuthError
	var imapErr *imap.Error
	return errors.As(err, &authErr) || errors.As(err, &imapErr)
}

// authUsername finds the login name for log lines.
func authUsername(a Authenticator, err error) string {
	var authErr *AuthError
	if errors.As(err, &authErr) {
		return authErr.Username
	}
	switch a := a.(type) {
	case PasswordAuth:
		return a.Username
	case *PasswordAuth:
		return a.Username
	case OAuth2Auth:
		return a.Username
	case *OAuth2Auth:
		return a.Username
	}
	return ""
}

// serverText is what the server said, without Go error decorations.
func serverText(err error) string {
	var imapErr *imap.Error
	if errors.As(err, &imapErr) && imapErr.Text != "" {
		return imapErr.Text
	}
	return err.Error()
}

// sleep waits d or until ctx is done; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
