package smtpout

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/textproto"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wneessen/go-mail/smtp"

	"mailgate/oauthsasl"
)

// The values of SenderOptions.Security.
const (
	// SecurityTLS is implicit TLS from the first byte (usually port 465).
	SecurityTLS = "tls"
	// SecuritySTARTTLS upgrades a plain connection with STARTTLS and fails
	// if the server does not offer it (usually port 587). The default.
	SecuritySTARTTLS = "starttls"
	// SecurityNone is plain SMTP, for a relay on the same host or network.
	// Credentials are only sent in the clear to localhost.
	SecurityNone = "none"
)

// DefaultTimeout is the default limit on each step of an SMTP session.
const DefaultTimeout = 60 * time.Second

// SenderOptions configure a Sender.
type SenderOptions struct {
	// Address is the relay's host:port.
	Address string
	// Security is SecurityTLS, SecuritySTARTTLS or SecurityNone; empty
	// means SecuritySTARTTLS.
	Security string
	// Username, if set, authenticates with AUTH PLAIN, or AUTH LOGIN when
	// the relay offers only that. Credentials are sent only over TLS or to
	// localhost.
	Username string
	// Password goes with Username. It never appears in errors.
	Password string
	// Tokens, when set instead of Password, authenticates Username with an
	// OAuth2 access token per connection (SASL OAUTHBEARER or XOAUTH2,
	// chosen from the relay's EHLO). Tokens are sent only over TLS or to
	// localhost and never appear in errors.
	Tokens TokenSource
	// TLSConfig is used for TLS and STARTTLS; nil means the system roots.
	// ServerName defaults to the host of Address.
	TLSConfig *tls.Config
	// HELO is the name given in EHLO; the default is os.Hostname.
	HELO string
	// Timeout limits each step (connect, each command, each chunk of
	// data); zero means DefaultTimeout.
	Timeout time.Duration
}

// TokenSource hands out OAuth2 access tokens (oauthgrant.Source is one).
type TokenSource interface {
	// Token returns a current access token.
	Token(ctx context.Context) (string, error)
	// Reject says that the relay refused token, so that the next Token
	// gets a new one.
	Reject(token string)
}

// Sender delivers messages to one SMTP relay. It holds no connection
// between calls to Send, and is safe for concurrent use.
type Sender struct {
	addr     string
	host     string
	security string
	username string
	password string
	tokens   TokenSource
	tls      *tls.Config
	helo     string
	timeout  time.Duration
}

// Envelope is one message as SMTP sees it.
type Envelope struct {
	// From is the envelope sender (MAIL FROM), an addr-spec without angle
	// brackets; empty means the null sender.
	From string
	// To are the envelope recipients (RCPT TO), addr-specs. A refusal of
	// any of them fails the message.
	To []string
	// Copies are further recipients, RCPT TO after To (a reply's Cc). A
	// relay's refusal of one, permanent or temporary, does not stop the
	// message: the copy is left out and the refusal recorded in Refused,
	// so that a colleague's mistyped address never keeps the reply from
	// the customer (RFC 5321 section 3.3 lets a transaction go on after a
	// refused RCPT).
	Copies []string
	// Refused is set by Send: the refusals of Copies, one per copy left
	// out, for the message's last attempt.
	Refused []*SMTPError
	// Data is the complete message with CRLF line endings, as Render
	// returns it.
	Data []byte
	// Accepted, when set, is called as soon as the relay has accepted this
	// message, before the next one of the burst is sent, so the caller can
	// record it at once: a crash later in the burst then does not send it
	// again.
	Accepted func()
}

// SMTPError is a reply from the relay that refused a command.
type SMTPError struct {
	// Command is what was refused: "greeting", "EHLO", "STARTTLS",
	// "AUTH PLAIN", "MAIL FROM:<a@b>", "RCPT TO:<c@d>", "DATA", or
	// "end of data".
	Command string
	// Code is the three-digit reply code.
	Code int
	// Enhanced is the RFC 3463 enhanced status code ("5.1.1"), if any.
	Enhanced string
	// Message is the reply text, without codes.
	Message string
	// Temporary is true for 4xx replies, and for any reply before MAIL
	// FROM (greeting, EHLO, STARTTLS, AUTH): those concern the session,
	// not the message, so a retry may succeed once the relay or the
	// configuration is fixed.
	Temporary bool
}

// Error implements error.
func (e *SMTPError) Error() string {
	var b strings.Builder
	b.WriteString("smtpout: relay answered ")
	b.WriteString(e.Command)
	b.WriteString(" with ")
	b.WriteString(strconv.Itoa(e.Code))
	if e.Enhanced != "" {
		b.WriteString(" " + e.Enhanced)
	}
	if e.Message != "" {
		b.WriteString(" " + e.Message)
	}
	return b.String()
}

// ErrInvalidEnvelope marks an Envelope that cannot be sent as it is (bad
// address, no recipient, no data). It is permanent.
var ErrInvalidEnvelope = errors.New("smtpout: invalid envelope")

// ErrNotAttempted marks a message of a burst that was not sent because the
// connection failed or the context ended before its turn. It is temporary.
var ErrNotAttempted = errors.New("smtpout: message not attempted")

// IsPermanent reports whether err means that sending the same message again
// cannot succeed: a 5xx reply to the message's MAIL FROM, RCPT TO or DATA,
// or an invalid envelope. Network and TLS errors, 4xx replies and session
// errors are not permanent.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrInvalidEnvelope) {
		return true
	}
	var se *SMTPError
	if errors.As(err, &se) {
		return !se.Temporary
	}
	return false
}

// NewSender checks opts and returns a Sender.
func NewSender(opts SenderOptions) (*Sender, error) {
	host, port, err := net.SplitHostPort(opts.Address)
	if err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("smtpout: invalid relay address %q: want host:port", opts.Address)
	}
	s := &Sender{
		addr:     opts.Address,
		host:     host,
		username: opts.Username,
		password: opts.Password,
		tokens:   opts.Tokens,
		helo:     opts.HELO,
		timeout:  opts.Timeout,
	}
	switch sec := strings.ToLower(strings.TrimSpace(opts.Security)); sec {
	case "":
		s.security = SecuritySTARTTLS
	case SecurityTLS, SecuritySTARTTLS, SecurityNone:
		s.security = sec
	default:
		return nil, fmt.Errorf("smtpout: invalid security %q: want %q, %q or %q",
			opts.Security, SecurityTLS, SecuritySTARTTLS, SecurityNone)
	}
	if opts.Username == "" && (opts.Password != "" || opts.Tokens != nil) {
		return nil, errors.New("smtpout: a password or token source is set but no username")
	}
	if opts.Password != "" && opts.Tokens != nil {
		return nil, errors.New("smtpout: both a password and a token source are set")
	}
	if strings.ContainsAny(opts.Username, "\x00\r\n") {
		return nil, errors.New("smtpout: invalid username: contains control characters")
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.helo == "" {
		if h, err := os.Hostname(); err == nil && validHELO(h) {
			s.helo = h
		} else {
			s.helo = "localhost"
		}
	}
	if !validHELO(s.helo) {
		return nil, fmt.Errorf("smtpout: invalid HELO name %q", opts.HELO)
	}
	if opts.TLSConfig != nil {
		s.tls = opts.TLSConfig.Clone()
	} else {
		s.tls = &tls.Config{}
	}
	if s.tls.ServerName == "" {
		s.tls.ServerName = host
	}
	if s.tls.MinVersion == 0 {
		s.tls.MinVersion = tls.VersionTLS12
	}
	return s, nil
}

// validHELO reports whether name can follow EHLO: printable ASCII without
// spaces.
func validHELO(name string) bool {
	if name == "" || len(name) > 255 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] >= 0x7f {
			return false
		}
	}
	return true
}

// Send delivers msgs over one connection, in order, and returns one error
// per message: nil when the relay accepted it. Errors are *SMTPError for a
// refusal, ErrInvalidEnvelope for a message that cannot be sent, and wrapped
// network, TLS or context errors otherwise. When the connection fails, the
// message in flight gets the network error (it may or may not have been
// accepted if the failure came after its data was sent) and the remaining
// messages get ErrNotAttempted, so that none is sent twice by this call.
func (s *Sender) Send(ctx context.Context, msgs []*Envelope) []error {
	for _, m := range msgs {
		if checkEnvelope(m) == nil {
			// At least one to send: connect.
			i := 0
			return s.SendEach(ctx, func() (*Envelope, bool) {
				if i == len(msgs) {
					return nil, false
				}
				i++
				return msgs[i-1], true
			})
		}
	}
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		errs[i] = checkEnvelope(m)
	}
	return errs
}

// SendEach is Send for a burst whose messages are still being made while
// it is sent: next returns them one at a time, in order, and false after
// the last; it may block until the next one is ready. The connection is
// opened when the first valid message arrives, so a caller can render the
// next message while the relay takes the one before. The errors are those
// of Send, one per message next returned: when the connection cannot be
// opened or fails, next is still called to the end and the remaining
// messages get the error (ErrNotAttempted after a failure mid-burst).
func (s *Sender) SendEach(ctx context.Context, next func() (*Envelope, bool)) []error {
	var (
		errs []error
		sess *session
		rest error // the error of every remaining message, once set
	)
	defer func() {
		if sess != nil {
			sess.close()
		}
	}()
	for {
		m, ok := next()
		if !ok {
			break
		}
		if err := checkEnvelope(m); err != nil {
			errs = append(errs, err)
			continue
		}
		if rest != nil {
			errs = append(errs, rest)
			continue
		}
		if sess == nil {
			var err error
			if sess, err = s.open(ctx); err != nil {
				rest = err
				errs = append(errs, err)
				continue
			}
		}
		err := sess.deliver(ctx, m)
		errs = append(errs, err)
		if err == nil && m.Accepted != nil {
			m.Accepted()
		}
		if sess.broken != nil {
			rest = sess.broken
			if !errors.Is(rest, ErrNotAttempted) {
				rest = fmt.Errorf("%w: %v", ErrNotAttempted, rest)
			}
		}
	}
	if sess != nil && rest == nil {
		sess.quit(ctx)
	}
	return errs
}

// checkEnvelope validates m before anything is sent.
func checkEnvelope(m *Envelope) error {
	if m == nil {
		return fmt.Errorf("%w: nil Envelope", ErrInvalidEnvelope)
	}
	if m.From != "" && !validAddrSpec(m.From) {
		return fmt.Errorf("%w: sender %q is not an addr-spec", ErrInvalidEnvelope, m.From)
	}
	if len(m.To) == 0 {
		return fmt.Errorf("%w: no recipients", ErrInvalidEnvelope)
	}
	for _, to := range append(m.To[:len(m.To):len(m.To)], m.Copies...) {
		if !validAddrSpec(to) {
			return fmt.Errorf("%w: recipient %q is not an addr-spec", ErrInvalidEnvelope, to)
		}
	}
	if len(m.Data) == 0 {
		return fmt.Errorf("%w: no data", ErrInvalidEnvelope)
	}
	return nil
}

// validAddrSpec reports whether a is a plain addr-spec that can be written
// in MAIL FROM or RCPT TO.
func validAddrSpec(a string) bool {
	if a == "" || len(a) > 254 || hasControl(a) || strings.ContainsAny(a, " <>") {
		return false
	}
	p, err := mail.ParseAddress("<" + a + ">")
	return err == nil && p.Address == a
}

// session is one SMTP connection, ready for MAIL FROM.
type session struct {
	s      *Sender
	c      *smtp.Client
	conn   net.Conn
	stop   func() bool
	broken error // set when the connection can no longer be used
}

// deadline is when the next step must be done.
func (s *Sender) deadline(ctx context.Context) time.Time {
	d := time.Now().Add(s.timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// open connects, greets, secures and authenticates. When the relay refuses
// an OAuth2 token (revoked before it expired), it tries once more with a
// new one.
func (s *Sender) open(ctx context.Context) (*session, error) {
	sess, err := s.openOnce(ctx)
	var tr *tokenRefused
	if errors.As(err, &tr) {
		sess, err = s.openOnce(ctx)
	}
	if errors.As(err, &tr) {
		err = tr.error
	}
	return sess, err
}

// openOnce is one attempt of open.
func (s *Sender) openOnce(ctx context.Context) (*session, error) {
	// The token first: a refresh must not keep the relay waiting.
	var token string
	if s.tokens != nil {
		var err error
		if token, err = s.tokens.Token(ctx); err != nil {
			return nil, fmt.Errorf("smtpout: OAuth2 token for %q: %w", s.username, err)
		}
	}
	dialer := net.Dialer{Timeout: s.timeout}
	conn, err := dialer.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, fmt.Errorf("smtpout: connect to %s: %w", s.addr, err)
	}
	// Cancelling ctx aborts whatever I/O is blocked. Every later deadline
	// is set before ctx is checked, so a cancellation is never overwritten.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*session, error) {
		stop()
		_ = conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("smtpout: session with %s: %w (%v)", s.addr, ctx.Err(), err)
		}
		return nil, err
	}
	_ = conn.SetDeadline(s.deadline(ctx))

	var c net.Conn = conn
	if s.security == SecurityTLS {
		tc := tls.Client(conn, s.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(fmt.Errorf("smtpout: TLS handshake with %s: %w", s.addr, err))
		}
		c = tc
	}
	client, err := smtp.NewClient(c, s.host)
	if err != nil {
		return fail(sessionError(s.addr, "greeting", err))
	}
	sess := &session{s: s, c: client, conn: conn, stop: stop}
	failSession := func(err error) (*session, error) {
		_ = client.Close()
		return fail(err)
	}
	if err := client.Hello(s.helo); err != nil {
		return failSession(sessionError(s.addr, "EHLO", err))
	}
	if s.security == SecuritySTARTTLS {
		if ok, _ := client.Extension("STARTTLS"); !ok {
			return failSession(fmt.Errorf("smtpout: %s does not offer STARTTLS (security %q)", s.addr, s.security))
		}
		_ = conn.SetDeadline(s.deadline(ctx))
		if err := client.StartTLS(s.tls); err != nil {
			return failSession(sessionError(s.addr, "STARTTLS", err))
		}
	}
	if s.username != "" {
		_ = conn.SetDeadline(s.deadline(ctx))
		auth := sess.auth
		if s.tokens != nil {
			auth = func() error { return sess.authToken(token) }
		}
		if err := auth(); err != nil {
			return failSession(err)
		}
	}
	return sess, nil
}

// auth authenticates with PLAIN, or LOGIN if PLAIN is not offered.
func (sess *session) auth() error {
	s := sess.s
	ok, params := sess.c.Extension("AUTH")
	if !ok {
		return fmt.Errorf("smtpout: %s does not offer AUTH", s.addr)
	}
	mechs := strings.Fields(strings.ToUpper(params))
	var a smtp.Auth
	var mech string
	switch {
	case slices.Contains(mechs, "PLAIN"):
		a, mech = smtp.PlainAuth("", s.username, s.password, s.host, false), "AUTH PLAIN"
	case slices.Contains(mechs, "LOGIN"):
		a, mech = smtp.LoginAuth(s.username, s.password, s.host, false), "AUTH LOGIN"
	default:
		return fmt.Errorf("smtpout: %s offers no supported AUTH mechanism (offers %q; want PLAIN or LOGIN)",
			s.addr, cleanHeaderText(params))
	}
	err := sess.c.Auth(a)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, smtp.ErrUnencrypted):
		return fmt.Errorf("smtpout: refusing to send credentials to %s without TLS", s.addr)
	default:
		// go-mail's errors here are server replies or fixed texts; neither
		// holds the password.
		return sessionError(s.addr, mech+" as "+strconv.Quote(s.username), err)
	}
}

// authToken authenticates with an OAuth2 access token, by OAUTHBEARER or
// XOAUTH2 as the relay offers. A refused token goes back to the token
// source, and the error is a *tokenRefused, so that open tries once more
// on a new connection (go-mail's client quits after a failed AUTH).
func (sess *session) authToken(token string) error {
	s := sess.s
	if s.security == SecurityNone && !isLocalhost(s.host) {
		return fmt.Errorf("smtpout: refusing to send an OAuth2 token to %s without TLS", s.addr)
	}
	ok, params := sess.c.Extension("AUTH")
	if !ok {
		return fmt.Errorf("smtpout: %s does not offer AUTH", s.addr)
	}
	port, _ := strconv.Atoi(s.addr[strings.LastIndexByte(s.addr, ':')+1:])
	err := sess.c.Auth(oauthsasl.SMTPAuth(oauthsasl.Credentials{Username: s.username, Token: token, Host: s.host, Port: port}))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, oauthsasl.ErrNoMechanism):
		return fmt.Errorf("smtpout: %s offers no OAuth2 AUTH mechanism (offers %q; want OAUTHBEARER or XOAUTH2)",
			s.addr, cleanHeaderText(params))
	}
	// Server replies and oauthsasl's errors never hold the token.
	err = sessionError(s.addr, "AUTH (OAuth2) as "+strconv.Quote(s.username), err)
	var se *SMTPError
	if errors.As(err, &se) {
		s.tokens.Reject(token)
		return &tokenRefused{err}
	}
	return err
}

// tokenRefused is a relay's refusal of an OAuth2 token.
type tokenRefused struct{ error }

func (e *tokenRefused) Unwrap() error { return e.error }

// isLocalhost reports whether host is the loopback interface by name or
// address.
func isLocalhost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// sessionError turns a failure before MAIL FROM into an error. SMTP
// replies become temporary *SMTPError values.
func sessionError(addr, cmd string, err error) error {
	var tp *textproto.Error
	if errors.As(err, &tp) {
		e := newSMTPError(cmd, tp.Code, tp.Msg)
		e.Temporary = true
		return e
	}
	return fmt.Errorf("smtpout: %s on %s: %w", cmd, addr, err)
}

var enhancedCode = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}$`)

// newSMTPError parses a reply's text into an SMTPError.
func newSMTPError(cmd string, code int, msg string) *SMTPError {
	e := &SMTPError{Command: cmd, Code: code, Temporary: code < 500}
	var lines []string
	for line := range strings.SplitSeq(msg, "\n") {
		first, rest, _ := strings.Cut(line, " ")
		if enhancedCode.MatchString(first) {
			if e.Enhanced == "" {
				e.Enhanced = first
			}
			line = rest
		}
		if line = cleanHeaderText(line); line != "" {
			lines = append(lines, line)
		}
	}
	e.Message = strings.Join(lines, " ")
	return e
}

// touch renews the connection deadline before a step and reports whether
// the context has ended.
func (sess *session) touch(ctx context.Context) error {
	_ = sess.conn.SetDeadline(sess.s.deadline(ctx))
	return ctx.Err()
}

// fail classifies an error of cmd: a reply from the relay is an
// *SMTPError; anything else breaks the session.
func (sess *session) fail(ctx context.Context, cmd string, err error) error {
	var tp *textproto.Error
	if errors.As(err, &tp) {
		e := newSMTPError(cmd, tp.Code, tp.Msg)
		if tp.Code == 421 { // the relay is closing the connection
			sess.broken = e
		}
		return e
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("smtpout: %s on %s: %w (%v)", cmd, sess.s.addr, ctx.Err(), err)
	} else {
		err = fmt.Errorf("smtpout: %s on %s: %w", cmd, sess.s.addr, err)
	}
	sess.broken = err
	return err
}

// chunkSize is how much data is written between deadline renewals.
const chunkSize = 64 << 10

// deliver runs one mail transaction.
func (sess *session) deliver(ctx context.Context, m *Envelope) error {
	c := sess.c
	if err := sess.touch(ctx); err != nil {
		err = fmt.Errorf("%w: %w", ErrNotAttempted, err)
		sess.broken = err
		return err
	}
	m.Refused = nil
	ascii := isASCII(m.From)
	for _, to := range append(m.To[:len(m.To):len(m.To)], m.Copies...) {
		ascii = ascii && isASCII(to)
	}
	c.SkipSMTPUTF8(ascii)

	cmd := "MAIL FROM:<" + m.From + ">"
	if err := c.Mail("<" + m.From + ">"); err != nil {
		return sess.abort(ctx, sess.fail(ctx, cmd, err))
	}
	for _, to := range m.To {
		cmd = "RCPT TO:<" + to + ">"
		if err := sess.touch(ctx); err != nil {
			return sess.fail(ctx, cmd, err)
		}
		if err := c.Rcpt("<" + to + ">"); err != nil {
			return sess.abort(ctx, sess.fail(ctx, cmd, err))
		}
	}
	for _, to := range m.Copies {
		cmd = "RCPT TO:<" + to + ">"
		if err := sess.touch(ctx); err != nil {
			return sess.fail(ctx, cmd, err)
		}
		if err := c.Rcpt("<" + to + ">"); err != nil {
			var tp *textproto.Error
			if !errors.As(err, &tp) || tp.Code == 421 {
				return sess.abort(ctx, sess.fail(ctx, cmd, err))
			}
			m.Refused = append(m.Refused, newSMTPError(cmd, tp.Code, tp.Msg))
		}
	}
	if err := sess.touch(ctx); err != nil {
		return sess.fail(ctx, "DATA", err)
	}
	w, err := c.Data()
	if err != nil {
		return sess.abort(ctx, sess.fail(ctx, "DATA", err))
	}
	for data := m.Data; len(data) > 0; {
		n := min(chunkSize, len(data))
		if err := sess.touch(ctx); err != nil {
			return sess.fail(ctx, "data", err)
		}
		if _, err := w.Write(data[:n]); err != nil {
			return sess.fail(ctx, "data", err)
		}
		data = data[n:]
	}
	if err := sess.touch(ctx); err != nil {
		return sess.fail(ctx, "end of data", err)
	}
	if err := w.Close(); err != nil {
		return sess.fail(ctx, "end of data", err)
	}
	return nil
}

// abort resets the transaction after a refused command so that the next
// message starts clean; if that fails, the session is broken.
func (sess *session) abort(ctx context.Context, err error) error {
	if sess.broken != nil {
		return err
	}
	if terr := sess.touch(ctx); terr != nil {
		sess.broken = terr
		return err
	}
	if rerr := sess.c.Reset(); rerr != nil {
		sess.broken = fmt.Errorf("smtpout: RSET on %s: %w", sess.s.addr, rerr)
	}
	return err
}

// quit ends the session politely.
func (sess *session) quit(ctx context.Context) {
	if sess.touch(ctx) != nil {
		return
	}
	_ = sess.c.Quit()
}

// close releases the connection.
func (sess *session) close() {
	sess.stop()
	_ = sess.c.Close()
}

// Check connects to the relay, greets it, starts TLS and authenticates as
// Send would, then quits without sending anything. It is the SMTP part of
// `mailgate check-config -connect`; the error carries the server's words.
func (s *Sender) Check(ctx context.Context) error {
	sess, err := s.open(ctx)
	if err != nil {
		return err
	}
	defer sess.close()
	sess.quit(ctx)
	return nil
}
