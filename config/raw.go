package config

import (
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"time"
)

// value is one leaf of the configuration file as toml decoded it, before
// any conversion. Decoding every leaf into a value (instead of straight into
// typed fields) means toml never stops at the first wrongly typed value:
// conversion reports every problem, each at its own line and channel, and
// set tells an absent key from an empty one.
type value struct {
	v   any
	set bool
}

// UnmarshalTOML implements toml.Unmarshaler.
func (v *value) UnmarshalTOML(data any) error {
	v.v = data
	v.set = true
	return nil
}

// def gives v the default d when the key was not written.
func (v *value) def(d any) {
	if !v.set {
		v.v = d
	}
}

// The raw* types mirror the file layout. Their toml tags are the schema:
// schemaKeys derives the list of known keys from them.

type rawFile struct {
	Server  rawServer    `toml:"server"`
	Metrics rawMetrics   `toml:"metrics"`
	Store   rawStore     `toml:"store"`
	Media   rawMedia     `toml:"media"`
	Log     rawLog       `toml:"log"`
	Channel []rawChannel `toml:"channel"`
}

type rawServer struct {
	Listen    value `toml:"listen"`
	PublicURL value `toml:"public_url"`
}

type rawMetrics struct {
	Listen value `toml:"listen"`
}

type rawStore struct {
	Driver        value `toml:"driver"`
	Path          value `toml:"path"`
	DSN           value `toml:"dsn"`
	DSNFile       value `toml:"dsn_file"`
	DSNCredential value `toml:"dsn_credential"`
}

type rawMedia struct {
	Dir            value `toml:"dir"`
	MaxSize        value `toml:"max_size"`
	MaxCount       value `toml:"max_count"`
	MaxMessageSize value `toml:"max_message_size"`
	URLTTL         value `toml:"url_ttl"`
	Retention      value `toml:"retention"`
	Key            value `toml:"key"`
	KeyFile        value `toml:"key_file"`
	KeyCredential  value `toml:"key_credential"`
	FetchAllow     value `toml:"fetch_allow"`
}

type rawLog struct {
	Level  value `toml:"level"`
	Format value `toml:"format"`
}

type rawChannel struct {
	Name     value       `toml:"name"`
	Userlike rawUserlike `toml:"userlike"`
	IMAP     rawIMAP     `toml:"imap"`
	SMTP     rawSMTP     `toml:"smtp"`
	Verify   rawVerify   `toml:"verify"`
	Inbound  rawInbound  `toml:"inbound"`
	OAuth2   rawOAuth2   `toml:"oauth2"`
}

type rawUserlike struct {
	InboundURL              value `toml:"inbound_url"`
	InboundToken            value `toml:"inbound_token"`
	InboundTokenFile        value `toml:"inbound_token_file"`
	InboundTokenCredential  value `toml:"inbound_token_credential"`
	OutboundToken           value `toml:"outbound_token"`
	OutboundTokenFile       value `toml:"outbound_token_file"`
	OutboundTokenCredential value `toml:"outbound_token_credential"`
	Debug                   value `toml:"debug"`
}

type rawIMAP struct {
	Address            value `toml:"address"`
	Security           value `toml:"security"`
	Username           value `toml:"username"`
	Password           value `toml:"password"`
	PasswordFile       value `toml:"password_file"`
	PasswordCredential value `toml:"password_credential"`
	Folders            value `toml:"folders"`
	After              value `toml:"after"`
	MoveTo             value `toml:"move_to"`
	QuarantineFolder   value `toml:"quarantine_folder"`
	Start              value `toml:"start"`
	PollInterval       value `toml:"poll_interval"`
	IdleRefresh        value `toml:"idle_refresh"`
	TLSServerName      value `toml:"tls_server_name"`
	InsecureSkipVerify value `toml:"insecure_skip_verify"`
}

type rawSMTP struct {
	Address            value `toml:"address"`
	Security           value `toml:"security"`
	Username           value `toml:"username"`
	Password           value `toml:"password"`
	PasswordFile       value `toml:"password_file"`
	PasswordCredential value `toml:"password_credential"`
	From               value `toml:"from"`
	SentFolder         value `toml:"sent_folder"`
	NewSubject         value `toml:"new_subject"`
	FromTemplate       value `toml:"from_template"`
	ReplyTo            value `toml:"reply_to"`
	NotifyFailures     value `toml:"notify_failures"`
	MaxAge             value `toml:"max_age"`
	Coalesce           value `toml:"coalesce"`
	FooterText         value `toml:"footer_text"`
	FooterHTML         value `toml:"footer_html"`
	Quote              value `toml:"quote"`
	ReplyCc            value `toml:"reply_cc"`
}

type rawVerify struct {
	TrustedAuthservIDs value `toml:"trusted_authserv_ids"`
	Require            value `toml:"require"`
	Allow              value `toml:"allow"`
	DKIM               value `toml:"dkim"`
	OnFail             value `toml:"on_fail"`
	StrictAlignment    value `toml:"strict_alignment"`
	FormSenders        value `toml:"form_senders"`
}

type rawInbound struct {
	Subject        value `toml:"subject"`
	MailingLists   value `toml:"mailing_lists"`
	RateLimit      value `toml:"rate_limit"`
	RateWindow     value `toml:"rate_window"`
	AttachOriginal value `toml:"attach_original"`
}

type rawOAuth2 struct {
	Provider                    value `toml:"provider"`
	Mode                        value `toml:"mode"`
	Tenant                      value `toml:"tenant"`
	ClientID                    value `toml:"client_id"`
	ClientSecret                value `toml:"client_secret"`
	ClientSecretFile            value `toml:"client_secret_file"`
	ClientSecretCredential      value `toml:"client_secret_credential"`
	ServiceAccountKey           value `toml:"service_account_key"`
	ServiceAccountKeyFile       value `toml:"service_account_key_file"`
	ServiceAccountKeyCredential value `toml:"service_account_key_credential"`
	Subject                     value `toml:"subject"`
	TokenURL                    value `toml:"token_url"`
	AuthURL                     value `toml:"auth_url"`
	DeviceURL                   value `toml:"device_url"`
	Scopes                      value `toml:"scopes"`
}

// schemaKeys returns every key path the file may contain, tables included
// ("server", "server.listen", "channel", "channel.imap", ...), derived from
// the toml tags of rawFile. The map value is true for a value and false for
// a table.
func schemaKeys() map[string]bool {
	keys := make(map[string]bool)
	var walk func(t reflect.Type, prefix []string)
	walk = func(t reflect.Type, prefix []string) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := f.Tag.Get("toml")
			path := append(prefix[:len(prefix):len(prefix)], name)
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft == reflect.TypeFor[value]() {
				keys[joinPath(path)] = true
				continue
			}
			keys[joinPath(path)] = false
			walk(ft, path)
		}
	}
	walk(reflect.TypeFor[rawFile](), nil)
	return keys
}

// Default values, as they would be written in the file.
const (
	defaultListen        = "127.0.0.1:8080"
	defaultMetricsListen = "127.0.0.1:9464"
	defaultStorePath     = "/var/lib/mailgate/mailgate.db"
	defaultStoreFile     = "mailgate.db"
	defaultFromTemplate  = "{operator} ({channel})"
)

// applyDefaults fills every key the file leaves out with its default. It is
// the only place defaults are decided, and it runs before conversion and
// validation, so a default is checked like a written value. Keys whose
// default depends on another key (server.public_url, media.dir) are filled
// after that key. It returns the warnings a default draws.
func applyDefaults(raw *rawFile, getenv func(string) string) []warning {
	var warns []warning

	raw.Server.Listen.def(defaultListen)
	if listen, ok := raw.Server.Listen.v.(string); ok && !raw.Server.PublicURL.set {
		raw.Server.PublicURL.v = "http://" + listen
		if host, _, err := net.SplitHostPort(listen); err == nil && host != "" && !isLoopback(host) {
			warns = append(warns, warning{
				ch:   -1,
				path: []string{"server", "public_url"},
				msg: "not set, so media URLs use \"http://" + listen +
					"\"; set public_url to the address Userlike can reach",
			})
		}
	}
	// An explicitly empty metrics.listen turns the metrics endpoint off;
	// only an absent key gets the default.
	raw.Metrics.Listen.def(defaultMetricsListen)

	storePath := defaultStorePath
	if dirs := getenv("STATE_DIRECTORY"); dirs != "" {
		// systemd joins several StateDirectory= entries with ':'.
		dir, _, _ := strings.Cut(dirs, ":")
		storePath = filepath.Join(dir, defaultStoreFile)
	}
	raw.Store.Path.def(storePath)
	raw.Store.Driver.def(string(StoreSQLite))

	if p, ok := raw.Store.Path.v.(string); ok && p != "" {
		raw.Media.Dir.def(filepath.Join(filepath.Dir(p), "media"))
	}
	raw.Media.MaxSize.def("25MiB")
	raw.Media.MaxCount.def(int64(20))
	raw.Media.MaxMessageSize.def("50MiB")
	raw.Media.URLTTL.def((168 * time.Hour).String())
	raw.Media.Retention.def((720 * time.Hour).String())
	raw.Media.FetchAllow.def([]any{})

	raw.Log.Level.def("info")
	raw.Log.Format.def("text")

	for i := range raw.Channel {
		c := &raw.Channel[i]
		c.Userlike.Debug.def(false)

		c.IMAP.Security.def("tls")
		c.IMAP.Folders.def([]any{"INBOX"})
		c.IMAP.After.def("seen")
		c.IMAP.QuarantineFolder.def("Quarantine")
		c.IMAP.Start.def("now")
		c.IMAP.PollInterval.def("5m")
		c.IMAP.IdleRefresh.def("10m")
		c.IMAP.InsecureSkipVerify.def(false)

		c.SMTP.Security.def("starttls")
		c.SMTP.SentFolder.def("auto")
		c.SMTP.FromTemplate.def(defaultFromTemplate)
		c.SMTP.NotifyFailures.def(true)
		c.SMTP.MaxAge.def("72h")
		c.SMTP.Coalesce.def("10s")
		c.SMTP.Quote.def(false)
		c.SMTP.ReplyCc.def("thread")

		c.Verify.TrustedAuthservIDs.def([]any{})
		c.Verify.Require.def("dmarc")
		c.Verify.Allow.def([]any{})
		c.Verify.DKIM.def(false)
		c.Verify.OnFail.def("quarantine")
		c.Verify.StrictAlignment.def(false)
		c.Verify.FormSenders.def([]any{})

		c.Inbound.Subject.def("first-line")
		c.Inbound.MailingLists.def("skip")
		c.Inbound.RateLimit.def(int64(20))
		c.Inbound.RateWindow.def("10m")
		c.Inbound.AttachOriginal.def("never")
	}
	return warns
}

// isLoopback reports whether host (a name or an IP address, without port)
// is the loopback interface.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
