// Package devmail runs a small mail system in-process on loopback: an IMAP
// server (go-imap's imapmemserver) that holds the mailboxes, and an SMTP
// server (go-smtp) that delivers into them. `mailgate demo` and the
// integration tests use it as the support mailbox and the SMTP relay; it is
// not meant for real mail.
package devmail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"mailgate/oauthtest"
)

// Options configures a Server.
type Options struct {
	// Users maps login names (email addresses) to passwords. Each user gets
	// an INBOX and a Sent folder marked \Sent.
	Users map[string]string
	// RcptHook, when set, is asked about every SMTP recipient; a non-nil
	// error (use *smtp.SMTPError for a specific reply) refuses it. Tests
	// use it to make the relay fail.
	RcptHook func(rcpt string) error
	// IMAPAddr and SMTPAddr are the listen addresses; default 127.0.0.1:0.
	IMAPAddr, SMTPAddr string
	// Delivered, when set, is called after SMTP delivered raw to user.
	Delivered func(user string, raw []byte)
	// TokenCheck, when set, makes IMAP and SMTP log users in with OAuth2
	// bearer tokens (SASL OAUTHBEARER and XOAUTH2) that it accepts, and
	// makes SMTP require a login; oauthtest.Server.CheckByIntrospection
	// checks them as Dovecot's oauth2 passdb would.
	TokenCheck oauthtest.TokenCheck
}

// Server is a running in-process mail system.
type Server struct {
	opts  Options
	mem   *imapmemserver.Server
	users map[string]*imapmemserver.User
	pass  map[string]string // by user, for the login behind a token

	mu       sync.Mutex
	imapSrv  *imapserver.Server
	imapAddr string
	smtpSrv  *smtp.Server
	smtpLn   net.Listener
}

// Start starts the IMAP and SMTP servers.
func Start(opts Options) (*Server, error) {
	s := &Server{opts: opts, mem: imapmemserver.New(), users: map[string]*imapmemserver.User{}, pass: map[string]string{}}
	for name, pass := range opts.Users {
		if err := s.AddUser(name, pass); err != nil {
			return nil, err
		}
	}
	addr := opts.IMAPAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := s.StartIMAP(addr); err != nil {
		return nil, err
	}
	if err := s.startSMTP(); err != nil {
		s.StopIMAP()
		return nil, err
	}
	return s, nil
}

// AddUser creates a user with an INBOX and a Sent folder.
func (s *Server) AddUser(name, password string) error {
	name = strings.ToLower(name)
	u := imapmemserver.NewUser(name, password)
	if err := u.Create("INBOX", nil); err != nil {
		return fmt.Errorf("devmail: create INBOX of %s: %w", name, err)
	}
	if err := u.Create("Sent", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrSent}}); err != nil {
		return fmt.Errorf("devmail: create Sent of %s: %w", name, err)
	}
	s.mem.AddUser(u)
	s.mu.Lock()
	s.users[name] = u
	s.pass[name] = password
	s.mu.Unlock()
	return nil
}

// StartIMAP (re)starts the IMAP listener on addr, keeping the mailboxes.
// Tests use StopIMAP and StartIMAP to simulate a server restart.
func (s *Server) StartIMAP(addr string) error {
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			sess := pollingIdleSession{s.mem.NewSession()}
			if s.opts.TokenCheck != nil {
				return tokenSession{sess, s}, nil, nil
			}
			return sess, nil, nil
		},
		Caps: imap.CapSet{
			imap.CapIMAP4rev1:        {},
			imap.CapUIDPlus:          {},
			imap.CapMove:             {},
			imap.CapSpecialUse:       {},
			imap.CapCreateSpecialUse: {},
			imap.CapIdle:             {},
			imap.CapUnselect:         {},
			imap.CapLiteralMinus:     {},
		},
		InsecureAuth: true,
		Logger:       log.New(io.Discard, "", 0),
	})
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		ln, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // a restarted port may still be closing
	}
	if err != nil {
		return fmt.Errorf("devmail: IMAP listen on %s: %w", addr, err)
	}
	go srv.Serve(ln)
	s.mu.Lock()
	s.imapSrv, s.imapAddr = srv, ln.Addr().String()
	s.mu.Unlock()
	return nil
}

// StopIMAP closes the IMAP listener and every IMAP connection.
func (s *Server) StopIMAP() {
	s.mu.Lock()
	srv := s.imapSrv
	s.imapSrv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// IMAPAddr is the address of the IMAP listener.
func (s *Server) IMAPAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.imapAddr
}

// SMTPAddr is the address of the SMTP listener.
func (s *Server) SMTPAddr() string { return s.smtpLn.Addr().String() }

// Deliver appends raw to a mailbox of user and returns its UID.
func (s *Server) Deliver(user, mailbox string, raw []byte, flags ...imap.Flag) (uint32, error) {
	s.mu.Lock()
	u := s.users[strings.ToLower(user)]
	s.mu.Unlock()
	if u == nil {
		return 0, fmt.Errorf("devmail: no user %q", user)
	}
	data, err := u.Append(mailbox, bytes.NewReader(raw), &imap.AppendOptions{Flags: flags, Time: time.Now()})
	if err != nil {
		return 0, fmt.Errorf("devmail: append to %s of %s: %w", mailbox, user, err)
	}
	return uint32(data.UID), nil
}

// Close stops both servers.
func (s *Server) Close() error {
	s.StopIMAP()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.smtpSrv.Shutdown(ctx)
}

// PollingIdle wraps an imapmemserver session so that its IDLE reports new
// mail promptly, as real servers do: imapmemserver's IDLE only wakes on
// updates queued after it began, so mail appended between a client's last
// command and its IDLE would stay unreported until the next update. The
// wrapped IDLE polls every 20 ms; MOVE stays available.
func PollingIdle(sess imapserver.Session) imapserver.Session {
	return pollingIdleSession{sess}
}

type pollingIdleSession struct {
	imapserver.Session
}

func (s pollingIdleSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if err := s.Session.Poll(w, true); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-t.C:
		}
	}
}

func (s pollingIdleSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	return s.Session.(imapserver.SessionMove).Move(w, numSet, dest)
}

func (s *Server) startSMTP() error {
	addr := s.opts.SMTPAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("devmail: SMTP listen on %s: %w", addr, err)
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		if s.opts.TokenCheck != nil {
			return &smtpTokenSession{smtpSession: smtpSession{s: s}}, nil
		}
		return &smtpSession{s: s}, nil
	}))
	srv.Domain = "devmail.localhost"
	srv.AllowInsecureAuth = true
	srv.MaxMessageBytes = 64 << 20
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	s.smtpSrv, s.smtpLn = srv, ln
	go srv.Serve(ln)
	return nil
}

// smtpSession delivers each accepted message to the INBOX of every
// recipient.
type smtpSession struct {
	s    *Server
	rcpt []string
}

func (ss *smtpSession) Reset()        { ss.rcpt = nil }
func (ss *smtpSession) Logout() error { return nil }

func (ss *smtpSession) Mail(from string, opts *smtp.MailOptions) error { return nil }

func (ss *smtpSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	to = strings.ToLower(to)
	if hook := ss.s.opts.RcptHook; hook != nil {
		if err := hook(to); err != nil {
			return err
		}
	}
	ss.s.mu.Lock()
	_, ok := ss.s.users[to]
	ss.s.mu.Unlock()
	if !ok {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "user unknown"}
	}
	ss.rcpt = append(ss.rcpt, to)
	return nil
}

func (ss *smtpSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	var errs []error
	for _, to := range ss.rcpt {
		if _, err := ss.s.Deliver(to, "INBOX", raw); err != nil {
			errs = append(errs, err)
		} else if ss.s.opts.Delivered != nil {
			ss.s.opts.Delivered(to, raw)
		}
	}
	return errors.Join(errs...)
}

// oauthMechs are the SASL mechanisms offered with Options.TokenCheck.
var oauthMechs = []string{sasl.OAuthBearer, "XOAUTH2"}

// saslLogin returns the server side of an OAuth2 mechanism whose login
// checks the token and then calls login.
func (s *Server) saslLogin(mech string, login func(user string) error) sasl.Server {
	check := func(user, token string) error {
		if err := s.opts.TokenCheck(user, token); err != nil {
			return err
		}
		return login(strings.ToLower(user))
	}
	switch mech {
	case sasl.OAuthBearer:
		return oauthtest.NewOAuthBearerServer(check)
	case "XOAUTH2":
		return oauthtest.NewXOAuth2Server(check)
	}
	return nil
}

// tokenSession is an IMAP session that logs in with OAuth2 tokens.
type tokenSession struct {
	pollingIdleSession
	s *Server
}

func (t tokenSession) AuthenticateMechanisms() []string { return oauthMechs }

func (t tokenSession) Authenticate(mech string) (sasl.Server, error) {
	srv := t.s.saslLogin(mech, func(user string) error {
		t.s.mu.Lock()
		pass := t.s.pass[user]
		t.s.mu.Unlock()
		return t.Session.Login(user, pass)
	})
	if srv != nil {
		// A refused token is a NO [AUTHENTICATIONFAILED], not a BAD.
		srv = refusal{srv}
	}
	if srv == nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "mechanism not supported"}
	}
	return srv, nil
}

// refusal turns the errors of a SASL server into IMAP's answer to a
// failed login.
type refusal struct{ sasl.Server }

func (r refusal) Next(resp []byte) ([]byte, bool, error) {
	challenge, done, err := r.Server.Next(resp)
	var ie *imap.Error
	if err != nil && !errors.As(err, &ie) {
		err = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "invalid token"}
	}
	return challenge, done, err
}

// Login refuses passwords: with TokenCheck only tokens log in.
func (t tokenSession) Login(string, string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "use OAUTHBEARER or XOAUTH2"}
}

// smtpTokenSession is an SMTP session that needs an OAuth2 login before
// MAIL FROM.
type smtpTokenSession struct {
	smtpSession
	user string
}

func (ss *smtpTokenSession) AuthMechanisms() []string { return oauthMechs }

func (ss *smtpTokenSession) Auth(mech string) (sasl.Server, error) {
	srv := ss.s.saslLogin(mech, func(user string) error { ss.user = user; return nil })
	if srv == nil {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return srv, nil
}

func (ss *smtpTokenSession) Mail(from string, opts *smtp.MailOptions) error {
	if ss.user == "" {
		return smtp.ErrAuthRequired
	}
	return nil
}
