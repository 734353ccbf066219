// Package config reads mailgate's TOML configuration file: the schema, the
// defaults, the validation and the secrets (given inline, in a file, or as a
// systemd credential).
//
// Decoding is strict: an unknown key is an error. Every error and warning
// names the file, the line and the key, for example
//
//	config.toml:14: channel "support": imap.address: missing port
//
// and Parse reports all problems at once, sorted by line. Secret values never
// appear in errors, warnings, or in any printed or encoded form of a Config.
package config

import (
	"fmt"
	"io/fs"
	"log/slog"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"strings"
)

// Options controls how a configuration is read.
type Options struct {
	// Getenv looks up environment variables ($STATE_DIRECTORY,
	// $CREDENTIALS_DIRECTORY). Nil means os.Getenv.
	Getenv func(string) string
	// Mode is the permission of the configuration file, when known (Load
	// sets it): a file readable by all users that holds a secret inline
	// gets a warning.
	Mode fs.FileMode
}

// Config is a parsed and validated configuration file.
type Config struct {
	Server   Server    `toml:"server"`  // [server]
	Metrics  Metrics   `toml:"metrics"` // [metrics]
	Store    Store     `toml:"store"`   // [store]
	Media    Media     `toml:"media"`   // [media]
	Log      Log       `toml:"log"`     // [log]
	Channels []Channel `toml:"channel"` // [[channel]], at least one, names unique

	// Warnings lists problems that do not stop mailgate, each as
	// "file:line: key: message". This package does not log them.
	Warnings []string `toml:"-"`

	// Placeholders lists the keys that still hold an example value of
	// config.example.toml (PlaceholderMarker, or a host under example.com),
	// each as "file:line: key: still the example value: set ...". The file
	// is valid, but the daemon must not run with it; commands that only
	// read it (inspect, status) may ignore them.
	Placeholders []string `toml:"-"`
}

// Server is the [server] table: the HTTP listener for the Userlike webhook
// and the media files.
type Server struct {
	// Listen is the host:port to listen on (default "127.0.0.1:8080"). A
	// socket bound to this address and passed by systemd
	// (contrib/systemd/mailgate.socket) is used instead of binding it.
	Listen string `toml:"listen" default:"'127.0.0.1:8080'"`
	// PublicURL is the absolute http(s) URL under which Userlike reaches
	// this server; media URLs are built from it (default "http://"+Listen).
	PublicURL string `toml:"public_url"`
}

// Metrics is the [metrics] table.
type Metrics struct {
	// Listen is the host:port of the Prometheus endpoint (default
	// "127.0.0.1:9464"); empty means the endpoint is off.
	Listen string `toml:"listen" default:"'127.0.0.1:9464'"`
}

// Store is the [store] table.
type Store struct {
	// Driver is the database: "sqlite" (default, the file at Path) or
	// "postgres" (the server at DSN, which several instances may share).
	Driver StoreDriver `toml:"driver" default:"'sqlite'"`
	// Path is the SQLite database file (default
	// $STATE_DIRECTORY/mailgate.db, or /var/lib/mailgate/mailgate.db).
	// With driver postgres it only places the default media.dir.
	Path string `toml:"path"`
	// DSN is the PostgreSQL connection string (key=value pairs or a
	// postgres:// URL) for driver postgres. It may hold a password, so it
	// is a secret (dsn, dsn_file or dsn_credential); name it in logs with
	// store.RedactDSN.
	DSN Secret `toml:"dsn"`
	// Instance names this instance as a lease holder with driver
	// postgres; empty means hostname-pid, decided at startup.
	Instance string `toml:"instance"`
	// LeaseTTL is how long a channel's lease outlives its holder's last
	// renewal (default 15s), with driver postgres.
	LeaseTTL Duration `toml:"lease_ttl" default:"'15s'"`
}

// Media is the [media] table: attachments served to Userlike at signed URLs.
type Media struct {
	// Dir holds the media files (default: the directory of Store.Path + "/media").
	Dir string `toml:"dir"`
	// MaxSize is the largest attachment passed on (default 25MiB).
	MaxSize Size `toml:"max_size" default:"'25MiB'"`
	// MaxCount is the most attachments passed on per message (default 20).
	MaxCount int `toml:"max_count" default:"20"`
	// MaxMessageSize is the largest email processed at all (default 50MiB).
	MaxMessageSize Size `toml:"max_message_size" default:"'50MiB'"`
	// URLTTL is how long a signed media URL stays valid (default 168h).
	URLTTL Duration `toml:"url_ttl" default:"'168h'"`
	// Retention is how long media files are kept (default 720h).
	Retention Duration `toml:"retention" default:"'720h'"`
	// Key is the HMAC key for media URLs. Zero means: generate one and keep
	// it in the store.
	Key Secret `toml:"key"`
	// FetchAllow lists the networks that the fetcher of operator media may
	// reach although they are private or loopback: exceptions to its SSRF
	// guard, for tests and internal media servers (default none). Entries
	// are masked ("10.1.2.3/16" becomes "10.1.0.0/16").
	FetchAllow []netip.Prefix `toml:"fetch_allow" default:"[]"`
}

// Log is the [log] table.
type Log struct {
	// Level is "debug", "info" (default), "warn" or "error".
	Level string `toml:"level" default:"'info'"`
	// Format is "text" (default) or "json".
	Format string `toml:"format" default:"'text'"`
}

// SlogLevel returns Level as a slog.Level.
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Channel is one [[channel]]: a mailbox bridged to one Userlike Custom
// Channel.
type Channel struct {
	// Name identifies the channel in URLs, the store and logs; it matches
	// ^[a-z0-9][a-z0-9_-]{0,62}$ and is unique.
	Name     string   `toml:"name"`
	Userlike Userlike `toml:"userlike"`        // [channel.userlike]
	IMAP     IMAP     `toml:"imap"`            // [channel.imap]
	SMTP     SMTP     `toml:"smtp"`            // [channel.smtp]
	Verify   Verify   `toml:"verify"`          // [channel.verify]
	Inbound  Inbound  `toml:"inbound"`         // [channel.inbound]
	OAuth2   OAuth2   `toml:"oauth2,optional"` // [channel.oauth2]; the zero value means passwords
}

// Userlike is [channel.userlike]: the Custom Channel's endpoints and tokens.
type Userlike struct {
	// InboundURL is the Userlike URL that customer messages are POSTed to.
	InboundURL string `toml:"inbound_url"`
	// InboundToken is sent in API-SECURITY-TOKEN with every inbound POST.
	InboundToken Secret `toml:"inbound_token"`
	// OutboundToken is what Userlike sends to mailgate's webhook.
	OutboundToken Secret `toml:"outbound_token"`
	// Debug logs raw webhook payloads, with tokens removed (default false).
	Debug bool `toml:"debug"`
}

// IMAP is [channel.imap]: the mailbox that customer mail arrives in.
type IMAP struct {
	// Address is the server's host:port.
	Address string `toml:"address"`
	// Security is "tls" (default), "starttls" or "none".
	Security Security `toml:"security" default:"'tls'"`
	// Username logs in together with Password, or with the OAuth2 token.
	Username string `toml:"username"`
	// Password logs in together with Username; empty with [channel.oauth2].
	Password Secret `toml:"password"`
	// Folders are watched for new mail (default ["INBOX"]).
	Folders []string `toml:"folders" default:"['INBOX']"`
	// After says what happens to a processed message: "seen" (default:
	// flag \Seen), "move" (to MoveTo), "delete" or "none".
	After After `toml:"after" default:"'seen'"`
	// MoveTo is the folder processed messages move to; set iff After is "move".
	MoveTo string `toml:"move_to"`
	// QuarantineFolder receives messages that fail verification (default
	// "Quarantine").
	QuarantineFolder string `toml:"quarantine_folder" default:"'Quarantine'"`
	// Start is where reading a folder begins when mailgate has no cursor
	// for it (a new store, or a new UIDVALIDITY): "now" (default: mail
	// already there is history, not posted), "all", or a duration such as
	// "7d" (mail that arrived within it is posted).
	Start StartPoint `toml:"start" default:"'now'"`
	// PollInterval is how often folders are polled when IDLE is not
	// available (default 5m, at least 10s).
	PollInterval Duration `toml:"poll_interval" default:"'5m'"`
	// IdleRefresh is how often IDLE is restarted (default 10m, 1m to 29m).
	IdleRefresh Duration `toml:"idle_refresh" default:"'10m'"`
	// TLSServerName overrides the name checked in the server certificate.
	TLSServerName string `toml:"tls_server_name"`
	// InsecureSkipVerify turns off certificate checks (default false).
	InsecureSkipVerify bool `toml:"insecure_skip_verify"`
}

// SMTP is [channel.smtp]: the relay that operator replies are sent through.
type SMTP struct {
	// Address is the relay's host:port.
	Address string `toml:"address"`
	// Security is "tls", "starttls" (default) or "none".
	Security Security `toml:"security" default:"'starttls'"`
	// Username, when set, authenticates together with Password. With
	// [channel.oauth2] it defaults to the IMAP username and authenticates
	// with the token.
	Username string `toml:"username"`
	// Password goes with Username.
	Password Secret `toml:"password"`
	// From is the sender of replies (display name optional).
	From mail.Address `toml:"from"`
	// SentFolder is the IMAP folder that sent replies are appended to:
	// "auto" (default: the folder marked \Sent) or a name; "" turns it off.
	SentFolder string `toml:"sent_folder" default:"'auto'"`
	// NewSubject is the subject of a reply to a contact who never mailed
	// (a new thread). Empty (default) lets the daemon derive it: "Your
	// message to " + From's display name, or the channel name.
	NewSubject string `toml:"new_subject"`
	// FromTemplate makes the display name of a reply's From out of the
	// placeholders {operator} and {channel}, the only ones allowed (default
	// "{operator} ({channel})"); never empty.
	FromTemplate string `toml:"from_template" default:"'{operator} ({channel})'"`
	// ReplyTo is one RFC 5322 address that customers answer to; empty
	// (default) means the From address.
	ReplyTo string `toml:"reply_to"`
	// NotifyFailures posts a "[mailgate] Your reply could not be delivered"
	// line into the Userlike conversation when a reply fails (default true).
	NotifyFailures bool `toml:"notify_failures" default:"true"`
	// MaxAge is how long a failing reply is retried (default 72h, at least
	// 1m).
	MaxAge Duration `toml:"max_age" default:"'72h'"`
	// Coalesce is how long an operator message waits for more messages to
	// the same contact, to send them as one email; each new message extends
	// the wait, up to 60s after the first (default 10s, 0 to 60s; 0 sends
	// each message at once).
	Coalesce Duration `toml:"coalesce" default:"'10s'"`
	// FooterText is appended to the plain-text body of every reply.
	FooterText string `toml:"footer_text"`
	// FooterHTML is appended to the HTML body of every reply, as is; empty
	// means FooterText, escaped.
	FooterHTML string `toml:"footer_html"`
	// Quote quotes the customer's last message below the reply (default
	// false).
	Quote bool `toml:"quote"`
	// ReplyCc is "thread" (default: replies copy the Cc addresses of the
	// contact's latest email, without mailgate's own addresses) or "none".
	ReplyCc ReplyCc `toml:"reply_cc" default:"'thread'"`
}

// Verify is [channel.verify]: how a sender's address is trusted.
type Verify struct {
	// TrustedAuthservIDs are the authserv-ids whose Authentication-Results
	// headers are believed (default none).
	TrustedAuthservIDs []string `toml:"trusted_authserv_ids" default:"[]"`
	// Require is "dmarc" (default), "dkim" or "none".
	Require Require `toml:"require" default:"'dmarc'"`
	// Allow lists lower-cased addresses ("a@b.c") and domains ("b.c")
	// accepted without verification.
	Allow []string `toml:"allow" default:"[]"`
	// DKIM makes mailgate verify DKIM signatures itself (default false).
	DKIM bool `toml:"dkim"`
	// OnFail is "quarantine" (default) or "reject".
	OnFail OnFail `toml:"on_fail" default:"'quarantine'"`
	// StrictAlignment requires the authenticated domain to equal the From
	// domain exactly, instead of sharing its organizational domain
	// (default false).
	StrictAlignment bool `toml:"strict_alignment"`
	// FormSenders lists lower-cased From addresses of the company's own web
	// forms. A verified email from one of them is posted under its Reply-To
	// address, flagged as not verified (default none).
	FormSenders []string `toml:"form_senders" default:"[]"`
}

// Inbound is [channel.inbound]: how customer mail is posted to Userlike.
type Inbound struct {
	// Subject is "first-line" (default: the subject becomes the first line
	// of a new conversation) or "none".
	Subject SubjectMode `toml:"subject" default:"'first-line'"`
	// MailingLists is "skip" (default) or "post".
	MailingLists MailingLists `toml:"mailing_lists" default:"'skip'"`
	// RateLimit is the most messages posted per sender per RateWindow
	// (default 20).
	RateLimit int `toml:"rate_limit" default:"20"`
	// RateWindow is the window of RateLimit (default 10m).
	RateWindow Duration `toml:"rate_window" default:"'10m'"`
	// AttachOriginal is "never" (default), "when-trimmed" or "always".
	AttachOriginal AttachOriginal `toml:"attach_original" default:"'never'"`
}

// Load reads and parses the configuration file at path; see Parse.
func Load(path string, opts Options) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil {
		opts.Mode = fi.Mode().Perm()
	}
	return Parse(path, data, opts)
}

// Channel returns the channel called name.
func (c *Config) Channel(name string) (*Channel, bool) {
	for i := range c.Channels {
		if c.Channels[i].Name == name {
			return &c.Channels[i], true
		}
	}
	return nil, false
}

// Summary returns one line per channel describing it, without secrets, as
// `mailgate check-config` prints it.
func (c *Config) Summary() []string {
	lines := make([]string, 0, len(c.Channels))
	for _, ch := range c.Channels {
		var b strings.Builder
		fmt.Fprintf(&b, "channel %q: imap %s@%s (%s) folders %s after=%s",
			ch.Name, ch.IMAP.Username, ch.IMAP.Address, ch.IMAP.Security,
			strings.Join(ch.IMAP.Folders, ","), ch.IMAP.After)
		if ch.IMAP.After == AfterMove {
			fmt.Fprintf(&b, " move_to=%s", ch.IMAP.MoveTo)
		}
		if ch.IMAP.InsecureSkipVerify {
			b.WriteString(" insecure_skip_verify")
		}
		b.WriteString("; smtp ")
		if ch.SMTP.Username != "" {
			b.WriteString(ch.SMTP.Username + "@")
		}
		fmt.Fprintf(&b, "%s (%s) from %s", ch.SMTP.Address, ch.SMTP.Security, formatFrom(ch.SMTP.From))
		if ch.SMTP.ReplyTo != "" {
			fmt.Fprintf(&b, " reply_to=%s", ch.SMTP.ReplyTo)
		}
		if ch.SMTP.SentFolder == "" {
			b.WriteString(" sent_folder=off")
		} else {
			fmt.Fprintf(&b, " sent_folder=%s", ch.SMTP.SentFolder)
		}
		fmt.Fprintf(&b, " coalesce=%s max_age=%s", shortDuration(ch.SMTP.Coalesce), shortDuration(ch.SMTP.MaxAge))
		if ch.SMTP.ReplyCc == ReplyCcNone {
			b.WriteString(" reply_cc=none")
		}
		fmt.Fprintf(&b, "; userlike %s", redactURL(ch.Userlike.InboundURL))
		if ch.Userlike.Debug {
			b.WriteString(" debug")
		}
		fmt.Fprintf(&b, "; verify require=%s on_fail=%s", ch.Verify.Require, ch.Verify.OnFail)
		if ch.Verify.DKIM {
			b.WriteString(" dkim")
		}
		if ch.Verify.StrictAlignment {
			b.WriteString(" strict_alignment")
		}
		if len(ch.Verify.TrustedAuthservIDs) > 0 {
			fmt.Fprintf(&b, " trusted=%s", strings.Join(ch.Verify.TrustedAuthservIDs, ","))
		}
		if len(ch.Verify.Allow) > 0 {
			fmt.Fprintf(&b, " allow=%d", len(ch.Verify.Allow))
		}
		if len(ch.Verify.FormSenders) > 0 {
			fmt.Fprintf(&b, " form_senders=%s", strings.Join(ch.Verify.FormSenders, ","))
		}
		if ch.OAuth2.Enabled() {
			b.WriteString(oauth2Summary(ch.OAuth2))
		}
		lines = append(lines, b.String())
	}
	return lines
}

// shortDuration formats d without zero trailing units: "72h", "1h30m",
// "10s".
func shortDuration(d Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
	}
	return s
}

// formatFrom writes an address as `Name <a@b>` or `a@b`.
func formatFrom(a mail.Address) string {
	if a.Name == "" {
		return a.Address
	}
	return a.String()
}

// redactURL drops the user info and query of a URL, which may carry
// credentials, for display.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid URL)"
	}
	out := u.Scheme + "://" + u.Host + u.Path
	if u.RawQuery != "" {
		out += "?…"
	}
	return out
}

// Equal reports whether two channel configurations are the same, secret
// values included, so that a reload can tell which channels changed. It
// compares every field, so a new key needs nothing here; lists compare by
// their entries and order (Parse gives an absent list its default, so a
// parsed list is never nil where the other is empty).
func (a Channel) Equal(b Channel) bool { return reflect.DeepEqual(a, b) }
