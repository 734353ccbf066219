package imapsync

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailgate/oauthsasl"
)

// Security modes accepted in Options.Security.
const (
	// SecurityTLS is implicit TLS (usually port 993). It is the default.
	SecurityTLS = "tls"
	// SecurityStartTLS is a plain connection upgraded with STARTTLS
	// (usually port 143). PREAUTH on the plain connection is refused.
	SecurityStartTLS = "starttls"
	// SecurityNone is an unencrypted connection; meant for tests and for
	// servers reached over loopback or a tunnel.
	SecurityNone = "none"
)

// Default values used when the corresponding Options field is zero.
const (
	DefaultPollInterval = 5 * time.Minute
	DefaultIdleRefresh  = 10 * time.Minute
	DefaultBatchSize    = 50
	DefaultMinBackoff   = 1 * time.Second
	DefaultMaxBackoff   = 5 * time.Minute
)

// Options configures a Watcher: one channel's mailbox.
type Options struct {
	// Channel names the channel in logs and errors. Required.
	Channel string
	// Address is the IMAP server as host:port. Required.
	Address string
	// Security is one of SecurityTLS (default when empty),
	// SecurityStartTLS or SecurityNone.
	Security string
	// TLSConfig is used for SecurityTLS and SecurityStartTLS. When nil, a
	// default configuration is used. ServerName defaults to the host of
	// Address.
	TLSConfig *tls.Config
	// Auth logs in on each new connection. Required.
	Auth Authenticator
	// Folders are the mailboxes to watch, each on its own connection.
	// At least one is required.
	Folders []string
	// QuarantineFolder is the destination of ActionQuarantine actions.
	// It is created when missing.
	QuarantineFolder string
	// MoveTo is the destination of ActionMove actions that carry no Dest.
	// It is created when missing.
	MoveTo string
	// PollInterval is how often the folder is re-selected and searched for
	// new mail even while IDLE works. Default DefaultPollInterval.
	PollInterval time.Duration
	// IdleRefresh is how long one IDLE command may last before it is ended
	// and restarted. Default DefaultIdleRefresh.
	IdleRefresh time.Duration
	// MaxMessageSize is the largest RFC822.SIZE whose body is fetched.
	// Larger messages are handed with TooLarge set and Raw nil. Zero means
	// no limit.
	MaxMessageSize int64
	// BatchSize is the number of UIDs per metadata FETCH. Default
	// DefaultBatchSize. Bodies are fetched in chunks of at most 16 MiB and
	// queued for the Handler while the next chunk is fetched; a folder
	// holds at most BatchSize queued messages and 32 MiB of queued bodies
	// (or one larger message).
	BatchSize int
	// PrepareWorkers is how many goroutines per folder run
	// Options.Preparer. Default runtime.GOMAXPROCS(0), at most 4.
	PrepareWorkers int
	// MinBackoff and MaxBackoff bound the reconnect delay, which doubles
	// from MinBackoff up to MaxBackoff (with jitter) and is reset after a
	// successful sync. Defaults DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Start says where reading a folder without a cursor (a new store, or
	// a new UIDVALIDITY) begins. The zero Start is "now": what the folder
	// holds is history, not handed; only mail that arrives afterwards is.
	Start Start
	// Now returns the current time, for Start.Since. Default time.Now.
	Now func() time.Time
	// Cursors tells how far each folder has been recorded. Required.
	Cursors CursorStore
	// Handler records fetched messages. Required. It is called from one
	// goroutine per folder, so it must be safe for concurrent use when
	// several folders are watched.
	Handler Handler
	// Actions supplies the flag/move/delete actions to apply. Optional.
	Actions ActionSource
	// Refetches names messages to fetch and hand again (dead letters an
	// admin retries). Optional.
	Refetches RefetchSource
	// Preparer does the order-independent part of handling ahead of
	// Handler, on PrepareWorkers goroutines. Optional.
	Preparer Preparer
	// Logger receives the Watcher's logs. When nil, logs are discarded.
	Logger *slog.Logger
	// Dial opens the TCP connection. Optional; the default is a net.Dialer
	// with a 30s timeout and TCP keep-alive every 30s.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Authenticator logs a freshly connected client in. Implementations should
// return an *AuthError (or the server's *imap.Error) when the server
// rejects the credentials, so that the Watcher can tell a rejected login
// from a network failure.
type Authenticator interface {
	Authenticate(ctx context.Context, c *imapclient.Client) error
}

// PasswordAuth authenticates with the IMAP LOGIN command. The password is
// never logged nor put in an error.
type PasswordAuth struct {
	Username, Password string
}

// Authenticate sends LOGIN. A NO from the server is returned as *AuthError.
func (a PasswordAuth) Authenticate(ctx context.Context, c *imapclient.Client) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := c.Login(a.Username, a.Password).Wait()
	if err == nil {
		return nil
	}
	var imapErr *imap.Error
	if errors.As(err, &imapErr) {
		return &AuthError{Username: a.Username, Err: imapErr}
	}
	return fmt.Errorf("imapsync: login as %q: %w", a.Username, err)
}

// String describes a without its password.
func (a PasswordAuth) String() string {
	return fmt.Sprintf("PasswordAuth{Username: %q, Password: <redacted>}", a.Username)
}

// GoString describes a without its password, for %#v.
func (a PasswordAuth) GoString() string { return a.String() }

// LogValue keeps the password out of structured logs.
func (a PasswordAuth) LogValue() slog.Value {
	return slog.GroupValue(slog.String("username", a.Username))
}

// LoginWaitRetry caps the reconnect delay while the OAuth2 grant waits for
// a person to log in again (an *AuthError marked Reported), so that the
// folder resumes within it after the login.
const LoginWaitRetry = time.Minute

// TokenSource hands out OAuth2 access tokens (oauthgrant.Source is one).
type TokenSource interface {
	// Token returns a current access token.
	Token(ctx context.Context) (string, error)
	// Reject says that the server refused token, so that the next Token
	// gets a new one rather than the cached one.
	Reject(token string)
}

// OAuth2Auth authenticates with an OAuth2 access token, fetched for each
// connection, using SASL OAUTHBEARER (RFC 7628) or XOAUTH2, whichever the
// server advertises. The token is never logged nor put in an error.
type OAuth2Auth struct {
	Username string
	Tokens   TokenSource
}

// Authenticate gets a token and sends AUTHENTICATE. When the server
// refuses the token (revoked before it expired), the token goes back to the
// source and one new token is tried on the same connection; a second NO is
// returned as *AuthError. A grant that needs a person to log in again (a
// token error with a NeedsLogin() bool method that returns true) is an
// *AuthError too, marked Reported: the token source has said so loudly.
func (a OAuth2Auth) Authenticate(ctx context.Context, c *imapclient.Client) error {
	var err error
	for try := 0; try < 2; try++ {
		var tok string
		if tok, err = a.Tokens.Token(ctx); err != nil {
			var nl interface{ NeedsLogin() bool }
			if errors.As(err, &nl) && nl.NeedsLogin() {
				return &AuthError{Username: a.Username, Err: err, Reported: true}
			}
			return fmt.Errorf("imapsync: OAuth2 token for %q: %w", a.Username, err)
		}
		err = oauthsasl.AuthenticateIMAP(c, oauthsasl.Credentials{Username: a.Username, Token: tok})
		if err == nil {
			return nil
		}
		var imapErr *imap.Error
		if !errors.As(err, &imapErr) {
			if errors.Is(err, oauthsasl.ErrNoMechanism) {
				return &AuthError{Username: a.Username, Err: err}
			}
			return err
		}
		a.Tokens.Reject(tok)
	}
	return &AuthError{Username: a.Username, Err: err}
}

// AuthError reports that the server rejected the credentials of Username.
// Err is usually the server's *imap.Error.
type AuthError struct {
	Username string
	Err      error
	// Reported is set when the failure was reported already (an OAuth2
	// grant that needs a new login): the Watcher does not log it again.
	Reported bool
}

// Error implements error.
func (e *AuthError) Error() string {
	return fmt.Sprintf("imapsync: login as %q failed: %v", e.Username, e.Err)
}

// Unwrap returns the server's error.
func (e *AuthError) Unwrap() error { return e.Err }

// Start is where reading a folder without a cursor begins: a folder of a
// mailbox that has years of mail in it must not be posted by surprise.
type Start struct {
	// All hands everything the folder holds.
	All bool
	// Since, when All is false, hands the messages whose INTERNALDATE is
	// within Since before the start (found with SEARCH SINCE, then
	// checked exactly); 0 hands none of them.
	Since time.Duration
}

// Cursor is how far a folder has been recorded, and where its history
// lies.
type Cursor struct {
	// UIDValidity and UID: the highest UID recorded under UIDVALIDITY;
	// zero values mean nothing has been recorded.
	UIDValidity, UID uint32
	// HistoryBelow and HistoryBefore: a message with a UID below
	// HistoryBelow whose INTERNALDATE is before HistoryBefore was in the
	// folder before reading started. It is handed with History set and
	// without its body. Zero: no history marks.
	HistoryBelow  uint32
	HistoryBefore time.Time
	// History is how many messages the start point left out.
	History int
}

// CursorStore tells how far a folder has been durably recorded. The
// Handler advances cursors; the Watcher reads them and records where
// reading a folder starts.
type CursorStore interface {
	// Cursor returns the folder's cursor.
	Cursor(ctx context.Context, folder string) (Cursor, error)
	// StartFolder durably sets the cursor of a folder that had none under
	// c.UIDValidity, with its history marks, before anything of it is
	// handed.
	StartFolder(ctx context.Context, folder string, c Cursor) error
}

// A RefetchSource (Options.Refetches) asks for messages at or below the
// cursor to be fetched and handed again, such as a dead letter an
// admin retries. The Watcher asks it on every catch-up of a folder, after
// handing the new mail, and hands those messages (at most 100 a pass) in
// UID order; the Handler must then record them again instead of treating
// them as repeats, and without moving the cursor back.
type RefetchSource interface {
	// Refetches returns the UIDs of folder, under uidValidity, to fetch
	// and hand again, ascending.
	Refetches(ctx context.Context, folder string, uidValidity uint32) ([]uint32, error)
	// RefetchFailed reports UIDs asked for that the Watcher gave up: the
	// folder no longer holds them, or fetching or handling them failed 3
	// times. why says which.
	RefetchFailed(ctx context.Context, folder string, uidValidity uint32, uids []uint32, why string) error
}

// Message is one fetched message, handed to the Handler.
type Message struct {
	Folder       string
	UIDValidity  uint32
	UID          uint32
	Size         int64 // RFC822.SIZE
	InternalDate time.Time
	Flags        []imap.Flag
	// Raw is the whole message as fetched with BODY.PEEK[]; nil when
	// TooLarge.
	Raw []byte
	// TooLarge is set when Size exceeds Options.MaxMessageSize; the body
	// was not fetched.
	TooLarge bool
	// History is set for a message that was in the folder before reading
	// started (Cursor.HistoryBelow); the body was not fetched. The Handler
	// records it without acting on it.
	History bool
	// Prepared is what Options.Preparer left for Handle; nil without a
	// Preparer.
	Prepared any
}

// Handler receives messages, one at a time and in UID order per folder.
type Handler interface {
	// Handle records m durably, and advances the folder's cursor to m.UID
	// in the same transaction, before returning nil. An error means a
	// temporary failure: the Watcher stops the batch and hands the same
	// UID again later, never a later UID before it.
	Handle(ctx context.Context, m *Message) error
	// UIDValidityChanged is called before any message of folder is handed
	// under a UIDVALIDITY (new) that differs from the cursor's (old). The
	// folder is then rescanned from UID 1. An error postpones the rescan.
	UIDValidityChanged(ctx context.Context, folder string, old, new uint32) error
}

// A BatchHandler is a Handler that records several messages at once. When
// Options.Handler is one, the Watcher hands it, instead of single
// messages, runs of consecutive messages (in UID order, up to
// Options.BatchSize) that are fetched and prepared already, so that a
// backlog costs one store transaction per run instead of one per message.
// A message that arrives alone is handed alone, with no wait for company.
type BatchHandler interface {
	Handler
	// HandleBatch records msgs durably, in order, and advances the
	// folder's cursor to the last one recorded in the same transaction,
	// before returning. It returns how many of msgs, from the first, it
	// recorded; when n < len(msgs), err is the temporary failure of
	// msgs[n], as for Handle: the Watcher hands msgs[n] again later, never
	// a later UID before it.
	HandleBatch(ctx context.Context, msgs []*Message) (n int, err error)
}

// A Preparer (Options.Preparer) does the part of handling that needs
// neither order nor the store, such as parsing. The Watcher calls Prepare
// on fetched messages ahead of Handle, from up to
// Options.PrepareWorkers goroutines per folder, while it fetches the next
// batch; Handle still receives the messages one at a time in UID order,
// each after its Prepare returned. Prepare must be safe for concurrent use
// and may store its result in m.Prepared. A message whose Handle fails is
// prepared again before it is handed again.
type Preparer interface {
	Prepare(ctx context.Context, m *Message)
}

// Kinds of Action.
const (
	ActionSeen       = "seen"       // add \Seen
	ActionFlag       = "flag"       // add \Flagged
	ActionMove       = "move"       // move to Dest (Options.MoveTo when empty)
	ActionDelete     = "delete"     // \Deleted and expunge
	ActionQuarantine = "quarantine" // move to Options.QuarantineFolder
)

// Action is something to do to one message of a folder once the inbound pipeline has
// settled it.
type Action struct {
	ID          int64
	UIDValidity uint32
	UID         uint32
	Kind        string // one of the Action* kinds
	Dest        string // destination folder of ActionMove
}

// ActionSource supplies pending actions and learns which were applied.
type ActionSource interface {
	// PendingActions returns up to limit actions of folder not yet done.
	PendingActions(ctx context.Context, folder string, limit int) ([]Action, error)
	// ActionsDone marks actions as applied (or as impossible to apply,
	// which is logged).
	ActionsDone(ctx context.Context, ids []int64) error
	// ActionsRefused marks actions the server refused, with its words in
	// reason: they are not retried, and must stay visible to the operator.
	// The messages stay where they are; a refused move is flagged
	// \Flagged instead, when the server allows it.
	ActionsRefused(ctx context.Context, ids []int64, reason string) error
}

// withDefaults validates o and returns a copy with defaults filled in.
func (o Options) withDefaults() (Options, error) {
	if o.Channel == "" {
		return o, errors.New("imapsync: options: Channel is empty")
	}
	if _, _, err := net.SplitHostPort(o.Address); err != nil {
		return o, fmt.Errorf("imapsync: channel %q: address %q: %w", o.Channel, o.Address, err)
	}
	switch o.Security {
	case "":
		o.Security = SecurityTLS
	case SecurityTLS, SecurityStartTLS, SecurityNone:
	default:
		return o, fmt.Errorf("imapsync: channel %q: unknown security %q (want %q, %q or %q)",
			o.Channel, o.Security, SecurityTLS, SecurityStartTLS, SecurityNone)
	}
	if o.Auth == nil {
		return o, fmt.Errorf("imapsync: channel %q: Auth is nil", o.Channel)
	}
	if len(o.Folders) == 0 {
		return o, fmt.Errorf("imapsync: channel %q: no folders", o.Channel)
	}
	seen := make(map[string]bool, len(o.Folders))
	for _, f := range o.Folders {
		if f == "" {
			return o, fmt.Errorf("imapsync: channel %q: empty folder name", o.Channel)
		}
		if seen[f] {
			return o, fmt.Errorf("imapsync: channel %q: folder %q listed twice", o.Channel, f)
		}
		seen[f] = true
	}
	o.Folders = append([]string(nil), o.Folders...)
	if o.Cursors == nil {
		return o, fmt.Errorf("imapsync: channel %q: Cursors is nil", o.Channel)
	}
	if o.Handler == nil {
		return o, fmt.Errorf("imapsync: channel %q: Handler is nil", o.Channel)
	}
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"PollInterval", &o.PollInterval, DefaultPollInterval},
		{"IdleRefresh", &o.IdleRefresh, DefaultIdleRefresh},
		{"MinBackoff", &o.MinBackoff, DefaultMinBackoff},
		{"MaxBackoff", &o.MaxBackoff, DefaultMaxBackoff},
	}
	for _, d := range durations {
		if *d.v < 0 {
			return o, fmt.Errorf("imapsync: channel %q: negative %s %v", o.Channel, d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if o.MinBackoff > o.MaxBackoff {
		return o, fmt.Errorf("imapsync: channel %q: MinBackoff %v exceeds MaxBackoff %v",
			o.Channel, o.MinBackoff, o.MaxBackoff)
	}
	if o.MaxMessageSize < 0 {
		return o, fmt.Errorf("imapsync: channel %q: negative MaxMessageSize %d", o.Channel, o.MaxMessageSize)
	}
	if o.BatchSize < 0 {
		return o, fmt.Errorf("imapsync: channel %q: negative BatchSize %d", o.Channel, o.BatchSize)
	}
	if o.PrepareWorkers < 0 {
		return o, fmt.Errorf("imapsync: channel %q: negative PrepareWorkers %d", o.Channel, o.PrepareWorkers)
	}
	if o.PrepareWorkers == 0 {
		o.PrepareWorkers = min(runtime.GOMAXPROCS(0), 4)
	}
	if o.BatchSize == 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.Start.Since < 0 {
		return o, fmt.Errorf("imapsync: channel %q: negative Start.Since %v", o.Channel, o.Start.Since)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Dial == nil {
		d := &net.Dialer{
			Timeout: 30 * time.Second,
			KeepAliveConfig: net.KeepAliveConfig{
				Enable:   true,
				Idle:     30 * time.Second,
				Interval: 30 * time.Second,
				Count:    4,
			},
		}
		o.Dial = d.DialContext
	}
	return o, nil
}
