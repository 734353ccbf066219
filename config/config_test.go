package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// minimal is the smallest valid file: one channel with its required keys.
// Its 13 lines are numbered in the comments of tests that add to it.
const minimal = `[[channel]]
name = "support"
[channel.userlike]
inbound_url = "https://userlike.example.com/in"
inbound_token = "in-token-s3cret"
outbound_token = "out-token-s3cret"
[channel.imap]
address = "imap.example.com:993"
username = "support@example.com"
password = "imap-pass-s3cret"
[channel.smtp]
address = "smtp.example.com:587"
from = "Support <support@example.com>"
`

// secretValues are the secrets of minimal; no message may contain them.
var secretValues = []string{"in-token-s3cret", "out-token-s3cret", "imap-pass-s3cret"}

// env returns a Getenv that reads only vars.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// noEnv is Options with an empty environment.
var noEnv = Options{Getenv: env(nil)}

// errorLines returns the lines of err, or nil.
func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

// withSecondChannel returns minimal followed by a copy named "sales", with
// extra inserted after the second [channel.imap] header (line 20).
func withSecondChannel(extra string) string {
	second := strings.Replace(minimal, `name = "support"`, `name = "sales"`, 1)
	second = strings.Replace(second, "[channel.imap]\n", "[channel.imap]\n"+extra, 1)
	return minimal + second
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // every line of the error, in order
	}{{
		name: "unknown top-level key",
		src:  "bogus = 1\n" + minimal,
		want: []string{`c.toml:1: bogus: unknown key`},
	}, {
		name: "unknown key in server",
		src:  "[server]\nlisten = \"127.0.0.1:1\"\nlistn = \"x\"\n" + minimal,
		want: []string{`c.toml:3: server.listn: unknown key`},
	}, {
		name: "unknown table",
		src:  "[serverx]\na = 1\nb = 2\n" + minimal,
		want: []string{`c.toml:1: serverx: unknown key`},
	}, {
		name: "toml's own errors carry the line",
		src:  minimal + "[channel.imap]\n",
		want: []string{`c.toml:14: channel: Key 'channel.imap' has already been defined.`},
	}, {
		name: "unknown key in channel.imap, first channel",
		src:  strings.Replace(minimal, "[channel.imap]\n", "[channel.imap]\nidle = true\n", 1),
		want: []string{`c.toml:8: channel "support": imap.idle: unknown key`},
	}, {
		name: "unknown key in second channel",
		src:  withSecondChannel("bogus = true\n"),
		want: []string{`c.toml:21: channel "sales": imap.bogus: unknown key`},
	}, {
		name: "same unknown key in both channels",
		src: strings.Replace(withSecondChannel("bogus = 2\n"), "[channel.imap]\n",
			"[channel.imap]\nbogus = 1\n", 1),
		want: []string{
			`c.toml:8: channel "support": imap.bogus: unknown key`,
			`c.toml:22: channel "sales": imap.bogus: unknown key`,
		},
	}, {
		name: "unknown dotted key reported once",
		src:  minimal + "extra.a = 1\nextra.b = 2\n",
		want: []string{`c.toml:14: channel "support": smtp.extra: unknown key`},
	}, {
		name: "unknown key in inline table",
		src:  minimal + "[channel.inbound]\nx = { y = 1 }\n",
		want: []string{`c.toml:15: channel "support": inbound.x: unknown key`},
	}, {
		name: "key with wrong case",
		src:  minimal + "Sent_Folder = \"Sent\"\n",
		want: []string{`c.toml:14: channel "support": smtp.Sent_Folder: unknown key (keys are case-sensitive: did you mean "sent_folder"?)`},
	}, {
		name: "missing port",
		src:  strings.Replace(minimal, "imap.example.com:993", "imap.example.com", 1),
		want: []string{`c.toml:8: channel "support": imap.address: missing port (want host:port, got "imap.example.com")`},
	}, {
		name: "bad port and empty host",
		src: strings.Replace(strings.Replace(minimal, "imap.example.com:993", "imap.example.com:99999", 1),
			"smtp.example.com:587", ":587", 1),
		want: []string{
			`c.toml:8: channel "support": imap.address: invalid port in "imap.example.com:99999" (want 1-65535)`,
			`c.toml:12: channel "support": smtp.address: missing host in ":587" (want host:port; 0.0.0.0 means every interface)`,
		},
	}, {
		name: "duplicate channel name",
		src:  minimal + minimal,
		want: []string{`c.toml:15: channel "support": name: "support" is already the name of the channel at line 2`},
	}, {
		name: "invalid channel name",
		src:  strings.Replace(minimal, `"support"`, `"Support Desk"`, 1),
		want: []string{`c.toml:2: channel #1: name: invalid name "Support Desk": use 1 to 63 characters a-z, 0-9, _ and -, starting with a letter or digit`},
	}, {
		name: "bad duration",
		src:  strings.Replace(minimal, "[channel.imap]\n", "[channel.imap]\npoll_interval = \"5 minutes\"\n", 1),
		want: []string{`c.toml:8: channel "support": imap.poll_interval: invalid duration "5 minutes"`},
	}, {
		name: "duration of wrong type",
		src:  minimal + "[channel.inbound]\nrate_window = 600\n",
		want: []string{`c.toml:15: channel "support": inbound.rate_window: must be a duration string such as "5m", not an integer`},
	}, {
		name: "duration out of range",
		src:  strings.Replace(minimal, "[channel.imap]\n", "[channel.imap]\npoll_interval = \"1s\"\nidle_refresh = \"30m\"\n", 1),
		want: []string{
			`c.toml:8: channel "support": imap.poll_interval: 1s is too short (at least 10s)`,
			`c.toml:9: channel "support": imap.idle_refresh: 30m0s is too long (at most 29m0s)`,
		},
	}, {
		name: "bad size",
		src:  "[media]\nmax_size = \"25 MegaBytes\"\nmax_message_size = true\n" + minimal,
		want: []string{
			`c.toml:2: media.max_size: invalid size "25 MegaBytes" (units: B, KB, KiB, MB, MiB, GB, GiB)`,
			`c.toml:3: media.max_message_size: must be a size such as "25MiB" or a number of bytes, not a boolean`,
		},
	}, {
		name: "bad enums",
		src:  "[log]\nlevel = \"verbose\"\n" + strings.Replace(minimal, "[channel.imap]\n", "[channel.imap]\nsecurity = \"ssl\"\n", 1),
		want: []string{
			`c.toml:2: log.level: invalid value "verbose" (want "debug", "info", "warn", "error")`,
			`c.toml:10: channel "support": imap.security: invalid value "ssl" (want "tls", "starttls", "none")`,
		},
	}, {
		name: "wrong type",
		src:  "[media]\nmax_count = \"20\"\n" + minimal,
		want: []string{`c.toml:2: media.max_count: must be an integer, not a string`},
	}, {
		name: "no channel",
		src:  "[server]\n",
		want: []string{`c.toml: channel: at least one [[channel]] is required`},
	}, {
		name: "empty channel reports every required key",
		src:  "[[channel]]\n",
		want: []string{
			`c.toml:1: channel #1: name: missing (every [[channel]] needs a unique name)`,
			`c.toml:1: channel #1: userlike.inbound_url: missing (the Inbound URL shown in Userlike's Custom Channel settings)`,
			`c.toml:1: channel #1: userlike.inbound_token: missing (set inbound_token, inbound_token_file or inbound_token_credential)`,
			`c.toml:1: channel #1: userlike.outbound_token: missing (set outbound_token, outbound_token_file or outbound_token_credential)`,
			`c.toml:1: channel #1: imap.address: missing (host:port)`,
			`c.toml:1: channel #1: imap.username: missing`,
			`c.toml:1: channel #1: imap.password: missing (set password, password_file or password_credential)`,
			`c.toml:1: channel #1: smtp.address: missing (host:port)`,
			`c.toml:1: channel #1: smtp.from: missing (the sender address of replies)`,
		},
	}, {
		name: "move_to required iff after = move",
		src: withSecondChannel("move_to = \"Archive\"\n") +
			"[channel.verify]\n", // keeps toml happy; no keys
		want: []string{`c.toml:21: channel "sales": imap.move_to: only allowed with after = "move" (after is "seen")`},
	}, {
		name: "after = move without move_to",
		src:  strings.Replace(minimal, "[channel.imap]\n", "[channel.imap]\nafter = \"move\"\n", 1),
		want: []string{`c.toml:7: channel "support": imap.move_to: missing (required with after = "move")`},
	}, {
		name: "folders",
		src:  strings.Replace(minimal, "[channel.imap]\n", "[channel.imap]\nfolders = [\"INBOX\", \"\", \"INBOX\"]\n", 1),
		want: []string{
			`c.toml:8: channel "support": imap.folders: empty folder name`,
			`c.toml:8: channel "support": imap.folders: folder "INBOX" is listed twice`,
		},
	}, {
		name: "allow entries",
		src:  minimal + "[channel.verify]\nallow = [\"*.example.com\", \"Jane@Example.COM\", \"a b@example.com\"]\n",
		want: []string{
			`c.toml:15: channel "support": verify.allow: invalid entry "*.example.com": want an address (name@example.com) or a domain (example.com), without wildcards`,
			`c.toml:15: channel "support": verify.allow: invalid entry "a b@example.com": want an address (name@example.com) or a domain (example.com), without wildcards`,
		},
	}, {
		name: "form senders",
		src:  minimal + "[channel.verify]\nform_senders = [\"example.com\", \"forms@example.com\", \"forms@example.com\"]\n",
		want: []string{
			`c.toml:15: channel "support": verify.form_senders: address "forms@example.com" is listed twice`,
			`c.toml:15: channel "support": verify.form_senders: invalid address "example.com": want the form's From address (forms@example.com)`,
		},
	}, {
		name: "from",
		src:  strings.Replace(minimal, `"Support <support@example.com>"`, `"a@example.com, b@example.com"`, 1),
		want: []string{`c.toml:13: channel "support": smtp.from: invalid address "a@example.com, b@example.com": mail: expected single address, got ", b@example.com"`},
	}, {
		name: "urls",
		src: "[server]\npublic_url = \"/relative\"\n" +
			strings.Replace(minimal, "https://userlike.example.com/in", "ftp://userlike.example.com/in", 1),
		want: []string{
			`c.toml:2: server.public_url: "/relative" is not an absolute http or https URL`,
			`c.toml:6: channel "support": userlike.inbound_url: "ftp://userlike.example.com/in" is not an absolute http or https URL`,
		},
	}, {
		name: "smtp username without password",
		src:  strings.Replace(minimal, "[channel.smtp]\n", "[channel.smtp]\nusername = \"u\"\n", 1),
		want: []string{`c.toml:11: channel "support": smtp.password: missing (set password, password_file or password_credential)`},
	}, {
		name: "syntax error carries its line",
		src:  minimal + "sent_folder = \n",
		want: []string{`c.toml:14: channel.smtp.sent_folder: expected value but found '\n' instead`},
	}, {
		name: "table where a value belongs",
		src:  "server = 5\n" + minimal,
		want: []string{`c.toml:1: server: must be a table`},
	}, {
		name: "from_template empty",
		src:  minimal + "from_template = \" \"\n",
		want: []string{`c.toml:14: channel "support": smtp.from_template: must not be empty (default "{operator} ({channel})")`},
	}, {
		name: "from_template of the wrong type",
		src:  minimal + "from_template = 5\n",
		want: []string{`c.toml:14: channel "support": smtp.from_template: must be a string, not an integer`},
	}, {
		name: "from_template placeholders",
		src:  minimal + "from_template = \"{agent} for {channel} {Operator}\"\n",
		want: []string{
			`c.toml:14: channel "support": smtp.from_template: unknown placeholder "{agent}" in "{agent} for {channel} {Operator}" (placeholders: {operator}, {channel})`,
			`c.toml:14: channel "support": smtp.from_template: unknown placeholder "{Operator}" in "{agent} for {channel} {Operator}" (placeholders: {operator}, {channel})`,
		},
	}, {
		name: "from_template unclosed brace",
		src:  minimal + "from_template = \"{operator ({channel})\"\n",
		want: []string{`c.toml:14: channel "support": smtp.from_template: unclosed "{" in "{operator ({channel})" (placeholders: {operator}, {channel})`},
	}, {
		name: "from_template brace at the end",
		src:  minimal + "from_template = \"{operator} {\"\n",
		want: []string{`c.toml:14: channel "support": smtp.from_template: unclosed "{" in "{operator} {" (placeholders: {operator}, {channel})`},
	}, {
		name: "reply_to with two addresses",
		src:  minimal + "reply_to = \"a@example.com, b@example.com\"\n",
		want: []string{`c.toml:14: channel "support": smtp.reply_to: invalid address "a@example.com, b@example.com": mail: expected single address, got ", b@example.com"`},
	}, {
		name: "reply_to not an address",
		src:  minimal + "reply_to = \"support desk\"\n",
		want: []string{`c.toml:14: channel "support": smtp.reply_to: invalid address "support desk": mail: no angle-addr`},
	}, {
		name: "reply_to of the wrong type",
		src:  minimal + "reply_to = [\"a@example.com\"]\n",
		want: []string{`c.toml:14: channel "support": smtp.reply_to: must be a string, not an array`},
	}, {
		name: "max_age and coalesce out of range",
		src:  minimal + "max_age = \"59s\"\ncoalesce = \"61s\"\n",
		want: []string{
			`c.toml:14: channel "support": smtp.max_age: 59s is too short (at least 1m0s)`,
			`c.toml:15: channel "support": smtp.coalesce: 1m1s is too long (at most 1m0s)`,
		},
	}, {
		name: "negative coalesce",
		src:  minimal + "coalesce = \"-1s\"\n",
		want: []string{`c.toml:14: channel "support": smtp.coalesce: -1s is too short (at least 0s)`},
	}, {
		name: "max_age and coalesce of the wrong form",
		src:  minimal + "max_age = \"3 days\"\ncoalesce = 10\n",
		want: []string{
			`c.toml:14: channel "support": smtp.max_age: invalid duration "3 days"`,
			`c.toml:15: channel "support": smtp.coalesce: must be a duration string such as "5m", not an integer`,
		},
	}, {
		name: "booleans of the wrong type",
		src:  minimal + "notify_failures = \"yes\"\nquote = 1\n[channel.verify]\nstrict_alignment = \"true\"\n",
		want: []string{
			`c.toml:14: channel "support": smtp.notify_failures: must be true or false, not a string`,
			`c.toml:15: channel "support": smtp.quote: must be true or false, not an integer`,
			`c.toml:17: channel "support": verify.strict_alignment: must be true or false, not a string`,
		},
	}, {
		name: "reply_cc not one of the choices",
		src:  minimal + "reply_cc = \"all\"\n",
		want: []string{`c.toml:14: channel "support": smtp.reply_cc: invalid value "all" (want "thread", "none")`},
	}, {
		name: "reply_cc of the wrong type",
		src:  minimal + "reply_cc = false\n",
		want: []string{`c.toml:14: channel "support": smtp.reply_cc: must be a string, not a boolean`},
	}, {
		name: "footers and new_subject of the wrong type",
		src:  minimal + "new_subject = 1\nfooter_text = true\nfooter_html = 2.5\n",
		want: []string{
			`c.toml:14: channel "support": smtp.new_subject: must be a string, not an integer`,
			`c.toml:15: channel "support": smtp.footer_text: must be a string, not a boolean`,
			`c.toml:16: channel "support": smtp.footer_html: must be a string, not a float`,
		},
	}, {
		name: "fetch_allow entries",
		src:  "[media]\nfetch_allow = [\"10.0.0.0/8\", \"10.0.0.1\", \"bogus\", \"\", \"fe80::1%eth0/128\"]\n" + minimal,
		want: []string{`c.toml:2: media.fetch_allow: invalid entries "10.0.0.1", "bogus", "", "fe80::1%eth0/128": want an IP address with a prefix length, such as "10.1.0.0/16" or "127.0.0.1/32"`},
	}, {
		name: "fetch_allow one bad entry over several lines",
		src:  "[media]\nfetch_allow = [\n  \"127.0.0.1/32\",\n  \"10.0.0.0/33\",\n]\n" + minimal,
		want: []string{`c.toml:2: media.fetch_allow: invalid entry "10.0.0.0/33": want an IP address with a prefix length, such as "10.1.0.0/16" or "127.0.0.1/32"`},
	}, {
		name: "fetch_allow not an array",
		src:  "[media]\nfetch_allow = \"10.0.0.0/8\"\n" + minimal,
		want: []string{`c.toml:2: media.fetch_allow: must be an array of strings, not a string`},
	}, {
		name: "fetch_allow with an element that is no string",
		src:  "[media]\nfetch_allow = [\"10.0.0.0/8\", 7]\n" + minimal,
		want: []string{`c.toml:2: media.fetch_allow: must be an array of strings, but element 2 is an integer`},
	}, {
		name: "a table of the wrong type silences the errors of its keys",
		src: strings.Replace(strings.Replace(minimal, "[channel.imap]\naddress = \"imap.example.com:993\"\nusername = \"support@example.com\"\npassword = \"imap-pass-s3cret\"\n", "", 1),
			"name = \"support\"\n", "name = \"support\"\nimap = 5\n", 1),
		want: []string{`c.toml:3: channel "support": imap: must be a table`},
	}, {
		name: "a multi-line string is no table header",
		src:  minimal + "footer_text = \"\"\"\n[[channel]]\nname = 1\n\"\"\"\nbogus = 1\n",
		want: []string{`c.toml:18: channel "support": smtp.bogus: unknown key`},
	}, {
		name: "an oauth2 table with only an unknown key is no oauth2 table",
		src:  minimal + "[channel.oauth2]\nbogus = 1\n",
		want: []string{`c.toml:15: channel "support": oauth2.bogus: unknown key`},
	}, {
		name: "a byte order mark and CRLF line ends",
		src:  "\ufeffbogus = 1\r\n[server]\r\nlisten = 'x'\r\n" + minimal,
		want: []string{
			`c.toml:1: bogus: unknown key`,
			`c.toml:3: server.listen: missing port (want host:port, got "x")`,
		},
	}, {
		name: "lease_ttl too short",
		src:  "[store]\nlease_ttl = \"300ms\"\n" + minimal,
		want: []string{`c.toml:2: store.lease_ttl: 300ms is too short (at least 1s)`},
	}, {
		name: "errors from several sections come sorted by line",
		src: "[media]\nurl_ttl = \"soon\"\n" + strings.Replace(minimal, "imap.example.com:993", "imap.example.com", 1) +
			"[log]\nformat = \"xml\"\n",
		want: []string{
			`c.toml:2: media.url_ttl: invalid duration "soon"`,
			`c.toml:10: channel "support": imap.address: missing port (want host:port, got "imap.example.com")`,
			`c.toml:17: log.format: invalid value "xml" (want "text", "json")`,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("c.toml", []byte(tt.src), noEnv)
			if err == nil {
				t.Fatalf("Parse succeeded (%d channels), want errors:\n%s", len(cfg.Channels), strings.Join(tt.want, "\n"))
			}
			if cfg != nil {
				t.Errorf("Parse returned a Config together with an error")
			}
			got := errorLines(err)
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(tt.want, "\n      "))
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.File != "c.toml" {
				t.Errorf("errors.As(*Error) = %v, %+v", errors.As(err, &ce), ce)
			}
		})
	}
}

func TestReplyKeys(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		check func(t *testing.T, cfg *Config)
	}{{
		name: "defaults",
		src:  minimal,
		check: func(t *testing.T, cfg *Config) {
			sm := cfg.Channels[0].SMTP
			if sm.NewSubject != "" || sm.FromTemplate != "{operator} ({channel})" || sm.ReplyTo != "" ||
				!sm.NotifyFailures || sm.MaxAge.Duration != 72*time.Hour || sm.Coalesce.Duration != 10*time.Second ||
				sm.FooterText != "" || sm.FooterHTML != "" || sm.Quote {
				t.Errorf("smtp defaults: %+v", sm)
			}
			if cfg.Channels[0].Verify.StrictAlignment {
				t.Errorf("verify.strict_alignment defaults to true")
			}
			if cfg.Media.FetchAllow == nil || len(cfg.Media.FetchAllow) != 0 {
				t.Errorf("media.fetch_allow = %#v, want empty", cfg.Media.FetchAllow)
			}
		},
	}, {
		name: "every key set",
		src: "[media]\nfetch_allow = [\"127.0.0.1/32\", \"10.1.0.0/16\", \"::1/128\"]\n" + minimal +
			"new_subject = \"Re: your request\"\nfrom_template = \"{channel}: {operator}\"\n" +
			"reply_to = \"Help <help@example.com>\"\nnotify_failures = false\nmax_age = \"1m\"\ncoalesce = \"60s\"\n" +
			"footer_text = \"ACME {not a placeholder}\"\nfooter_html = \"<p>ACME</p>\"\nquote = true\n" +
			"reply_cc = \"none\"\n[channel.verify]\nstrict_alignment = true\n",
		check: func(t *testing.T, cfg *Config) {
			want := SMTP{
				Address:        "smtp.example.com:587",
				Security:       "starttls",
				From:           mail.Address{Name: "Support", Address: "support@example.com"},
				SentFolder:     "auto",
				NewSubject:     "Re: your request",
				FromTemplate:   "{channel}: {operator}",
				ReplyTo:        "Help <help@example.com>",
				NotifyFailures: false,
				MaxAge:         Duration{time.Minute},
				Coalesce:       Duration{time.Minute},
				FooterText:     "ACME {not a placeholder}",
				FooterHTML:     "<p>ACME</p>",
				Quote:          true,
				ReplyCc:        "none",
			}
			if got := cfg.Channels[0].SMTP; got != want {
				t.Errorf("smtp:\n got %+v\nwant %+v", got, want)
			}
			if !cfg.Channels[0].Verify.StrictAlignment {
				t.Errorf("verify.strict_alignment = false")
			}
			wantAllow := []netip.Prefix{
				netip.MustParsePrefix("127.0.0.1/32"),
				netip.MustParsePrefix("10.1.0.0/16"),
				netip.MustParsePrefix("::1/128"),
			}
			if !slices.Equal(cfg.Media.FetchAllow, wantAllow) {
				t.Errorf("media.fetch_allow = %v, want %v", cfg.Media.FetchAllow, wantAllow)
			}
		},
	}, {
		name: "coalesce 0 sends at once; template without placeholders",
		src:  minimal + "coalesce = \"0s\"\nfrom_template = \"ACME Support\"\n",
		check: func(t *testing.T, cfg *Config) {
			if sm := cfg.Channels[0].SMTP; sm.Coalesce.Duration != 0 || sm.FromTemplate != "ACME Support" {
				t.Errorf("coalesce = %s, from_template = %q", sm.Coalesce, sm.FromTemplate)
			}
		},
	}, {
		name: "fetch_allow entries are masked",
		src:  "[media]\nfetch_allow = [\"10.1.2.3/16\"]\n" + minimal,
		check: func(t *testing.T, cfg *Config) {
			if want := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}; !slices.Equal(cfg.Media.FetchAllow, want) {
				t.Errorf("media.fetch_allow = %v, want %v", cfg.Media.FetchAllow, want)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("c.toml", []byte(tt.src), noEnv)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestParseAllowLowerCased(t *testing.T) {
	src := minimal + "[channel.verify]\nallow = [\"Jane@Example.COM\", \"Example.org\"]\n"
	cfg, err := Parse("c.toml", []byte(src), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Channels[0].Verify.Allow, []string{"jane@example.com", "example.org"}; !slices.Equal(got, want) {
		t.Errorf("Allow = %q, want %q", got, want)
	}
}

func TestParseFormSendersLowerCased(t *testing.T) {
	src := minimal + "[channel.verify]\nform_senders = [\"Forms@Example.COM\"]\n"
	cfg, err := Parse("c.toml", []byte(src), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Channels[0].Verify.FormSenders, []string{"forms@example.com"}; !slices.Equal(got, want) {
		t.Errorf("FormSenders = %q, want %q", got, want)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse("c.toml", []byte(minimal), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Server:  Server{Listen: "127.0.0.1:8080", PublicURL: "http://127.0.0.1:8080"},
		Metrics: Metrics{Listen: "127.0.0.1:9464"},
		Store:   Store{Driver: StoreSQLite, Path: "/var/lib/mailgate/mailgate.db", LeaseTTL: Duration{15 * time.Second}},
		Media: Media{
			Dir:            "/var/lib/mailgate/media",
			MaxSize:        25 << 20,
			MaxCount:       20,
			MaxMessageSize: 50 << 20,
			URLTTL:         Duration{168 * time.Hour},
			Retention:      Duration{720 * time.Hour},
			FetchAllow:     []netip.Prefix{},
		},
		Log: Log{Level: "info", Format: "text"},
		Channels: []Channel{{
			Name: "support",
			Userlike: Userlike{
				InboundURL:    "https://userlike.example.com/in",
				InboundToken:  NewSecret("in-token-s3cret"),
				OutboundToken: NewSecret("out-token-s3cret"),
			},
			IMAP: IMAP{
				Address:          "imap.example.com:993",
				Security:         "tls",
				Username:         "support@example.com",
				Password:         NewSecret("imap-pass-s3cret"),
				Folders:          []string{"INBOX"},
				After:            "seen",
				QuarantineFolder: "Quarantine",
				PollInterval:     Duration{5 * time.Minute},
				IdleRefresh:      Duration{10 * time.Minute},
			},
			SMTP: SMTP{
				Address:        "smtp.example.com:587",
				Security:       "starttls",
				From:           mail.Address{Name: "Support", Address: "support@example.com"},
				SentFolder:     "auto",
				FromTemplate:   "{operator} ({channel})",
				NotifyFailures: true,
				MaxAge:         Duration{72 * time.Hour},
				Coalesce:       Duration{10 * time.Second},
				ReplyCc:        "thread",
			},
			Verify: Verify{
				TrustedAuthservIDs: []string{},
				Require:            "dmarc",
				Allow:              []string{},
				OnFail:             "quarantine",
				FormSenders:        []string{},
			},
			Inbound: Inbound{
				Subject:        "first-line",
				MailingLists:   "skip",
				RateLimit:      20,
				RateWindow:     Duration{10 * time.Minute},
				AttachOriginal: "never",
			},
		}},
	}
	// The minimal file keeps example.com names: TestExampleConfig and
	// TestPlaceholders cover Placeholders.
	cfg.Placeholders = nil
	if got, want := fmt.Sprintf("%+v", cfg), fmt.Sprintf("%+v", want); got != want {
		t.Errorf("defaults:\n got %s\nwant %s", got, want)
	}
	if !cfg.Channels[0].Equal(want.Channels[0]) {
		t.Errorf("channel differs from the expected defaults (secrets included)")
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("Warnings = %q, want none", cfg.Warnings)
	}
	if cfg.Log.SlogLevel() != slog.LevelInfo {
		t.Errorf("SlogLevel = %v", cfg.Log.SlogLevel())
	}
}

func TestDefaultsFromEnvironment(t *testing.T) {
	opts := Options{Getenv: env(map[string]string{"STATE_DIRECTORY": "/srv/state:/srv/other"})}
	cfg, err := Parse("c.toml", []byte(minimal), opts)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Path != "/srv/state/mailgate.db" || cfg.Media.Dir != "/srv/state/media" {
		t.Errorf("store.path = %q, media.dir = %q", cfg.Store.Path, cfg.Media.Dir)
	}

	cfg, err = Parse("c.toml", []byte("[store]\npath = \"/data/m.db\"\n"+minimal), opts)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Path != "/data/m.db" || cfg.Media.Dir != "/data/media" {
		t.Errorf("store.path = %q, media.dir = %q", cfg.Store.Path, cfg.Media.Dir)
	}
}

func TestMetricsListen(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"unset", minimal, "127.0.0.1:9464"},
		{"table without key", "[metrics]\n" + minimal, "127.0.0.1:9464"},
		{"empty turns it off", "[metrics]\nlisten = \"\"\n" + minimal, ""},
		{"set", "[metrics]\nlisten = \"[::1]:9000\"\n" + minimal, "[::1]:9000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("c.toml", []byte(tt.src), noEnv)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Metrics.Listen != tt.want {
				t.Errorf("metrics.listen = %q, want %q", cfg.Metrics.Listen, tt.want)
			}
		})
	}
}

func TestExplicitZeroIsNotReplacedByDefault(t *testing.T) {
	src := "[media]\nmax_count = 0\n" + minimal + "sent_folder = \"\"\n"
	cfg, err := Parse("c.toml", []byte(src), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Media.MaxCount != 0 || cfg.Channels[0].SMTP.SentFolder != "" {
		t.Errorf("max_count = %d, sent_folder = %q; want the written zero values", cfg.Media.MaxCount, cfg.Channels[0].SMTP.SentFolder)
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{{
		name: "public_url defaulted from a non-loopback listen",
		src:  "[server]\nlisten = \"0.0.0.0:8080\"\n" + minimal,
		want: []string{`c.toml:1: server.public_url: not set, so media URLs use "http://0.0.0.0:8080"; set public_url to the address Userlike can reach`},
	}, {
		name: "loopback listen is fine",
		src:  "[server]\nlisten = \"localhost:8080\"\n" + minimal,
	}, {
		name: "plaintext to another host, and no certificate checks",
		src: strings.Replace(minimal, "[channel.imap]\n", "[channel.imap]\nsecurity = \"none\"\ninsecure_skip_verify = true\n", 1) +
			"security = \"none\"\n",
		want: []string{
			`c.toml:8: channel "support": imap.security: "none" sends the password and mail unencrypted to imap.example.com`,
			`c.toml:9: channel "support": imap.insecure_skip_verify: TLS certificates of the IMAP server are not checked`,
			`c.toml:16: channel "support": smtp.security: "none" sends the password and mail unencrypted to smtp.example.com`,
		},
	}, {
		name: "plaintext to loopback is fine",
		src: strings.Replace(strings.Replace(minimal, "imap.example.com:993", "127.0.0.1:143", 1),
			"[channel.imap]\n", "[channel.imap]\nsecurity = \"none\"\n", 1),
	}, {
		name: "fetch_allow covering cloud metadata",
		src:  "[media]\nfetch_allow = [\"127.0.0.1/32\", \"169.254.0.0/16\", \"0.0.0.0/0\", \"::/0\", \"::ffff:169.254.169.0/120\", \"fd00::/8\"]\n" + minimal,
		want: []string{
			`c.toml:2: media.fetch_allow: 169.254.0.0/16 includes 169.254.169.254, the cloud metadata service: operator media URLs could read instance credentials`,
			`c.toml:2: media.fetch_allow: 0.0.0.0/0 includes 169.254.169.254, the cloud metadata service: operator media URLs could read instance credentials`,
			`c.toml:2: media.fetch_allow: ::/0 includes 169.254.169.254, the cloud metadata service: operator media URLs could read instance credentials`,
			`c.toml:2: media.fetch_allow: ::ffff:169.254.169.0/120 includes 169.254.169.254, the cloud metadata service: operator media URLs could read instance credentials`,
			`c.toml:2: media.fetch_allow: fd00::/8 includes fd00:ec2::254, the cloud metadata service: operator media URLs could read instance credentials`,
		},
	}, {
		name: "fetch_allow with host bits set",
		src:  "[media]\nfetch_allow = [\"10.1.2.3/16\", \"10.2.0.0/16\"]\n" + minimal,
		want: []string{`c.toml:2: media.fetch_allow: "10.1.2.3/16" has host bits set; it means "10.1.0.0/16"`},
	}, {
		name: "smtp password without username",
		src:  minimal + "password = \"p\"\n",
		want: []string{`c.toml:14: channel "support": smtp.password: set but unused: username is empty, so mailgate does not authenticate`},
	}, {
		name: "plain http inbound_url and public_url to another host",
		src: "[server]\npublic_url = \"http://mailgate.example.com\"\n" +
			strings.Replace(minimal, "https://userlike.example.com/in", "http://userlike.example.com/in", 1),
		want: []string{
			`c.toml:2: server.public_url: plain http to mailgate.example.com: the token and customer mail travel unencrypted; use https`,
			`c.toml:6: channel "support": userlike.inbound_url: plain http to userlike.example.com: the token and customer mail travel unencrypted; use https`,
		},
	}, {
		name: "plain http on loopback is fine",
		src: "[server]\npublic_url = \"http://127.0.0.1:8080\"\n" +
			strings.Replace(minimal, "https://userlike.example.com/in", "http://localhost:9000/in", 1),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("c.toml", []byte(tt.src), noEnv)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.Warnings, tt.want) {
				t.Errorf("warnings:\n got %q\nwant %q", cfg.Warnings, tt.want)
			}
		})
	}
}

// writeFile creates a file in dir with the given content and mode.
func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is masked by umask
		t.Fatal(err)
	}
	return path
}

func TestSecrets(t *testing.T) {
	dir := t.TempDir()
	creds := t.TempDir()
	private := writeFile(t, dir, "private.pass", "from-file-s3cret\n", 0o600)
	public := writeFile(t, dir, "public.pass", "public-s3cret\r\n", 0o644)
	empty := writeFile(t, dir, "empty.pass", "\n", 0o600)
	writeFile(t, creds, "imap", "from-credential-s3cret", 0o400)
	withCreds := Options{Getenv: env(map[string]string{"CREDENTIALS_DIRECTORY": creds})}

	// imap password given as the lines in `password`; line 10 of minimal.
	withPassword := func(lines string) string {
		return strings.Replace(minimal, "password = \"imap-pass-s3cret\"\n", lines, 1)
	}
	tests := []struct {
		name     string
		src      string
		opts     Options
		want     string   // revealed password when parsing succeeds
		warnings []string // when parsing succeeds
		errs     []string // when it fails
	}{{
		name: "inline",
		src:  minimal,
		want: "imap-pass-s3cret",
	}, {
		name: "file",
		src:  withPassword(fmt.Sprintf("password_file = %q\n", private)),
		want: "from-file-s3cret",
	}, {
		name: "file relative to the config file",
		src:  withPassword("password_file = \"private.pass\"\n"),
		want: "from-file-s3cret",
	}, {
		name:     "world-readable file",
		src:      withPassword(fmt.Sprintf("password_file = %q\n", public)),
		want:     "public-s3cret",
		warnings: []string{fmt.Sprintf(`c.toml:10: channel "support": imap.password_file: %q is readable by all users (mode 0644); restrict it with chmod o-r`, public)},
	}, {
		name: "credential",
		src:  withPassword("password_credential = \"imap\"\n"),
		opts: withCreds,
		want: "from-credential-s3cret",
	}, {
		name: "credential without CREDENTIALS_DIRECTORY",
		src:  withPassword("password_credential = \"imap\"\n"),
		errs: []string{`c.toml:10: channel "support": imap.password_credential: $CREDENTIALS_DIRECTORY is not set (systemd sets it for LoadCredential=; use password_file outside systemd)`},
	}, {
		name: "credential name with a slash",
		src:  withPassword("password_credential = \"../imap\"\n"),
		opts: withCreds,
		errs: []string{`c.toml:10: channel "support": imap.password_credential: invalid credential name "../imap"`},
	}, {
		name: "missing credential",
		src:  withPassword("password_credential = \"smtp\"\n"),
		opts: withCreds,
		errs: []string{fmt.Sprintf(`c.toml:10: channel "support": imap.password_credential: cannot read %q: no such file or directory`, filepath.Join(creds, "smtp"))},
	}, {
		name: "inline and file",
		src:  withPassword(fmt.Sprintf("password = \"x\"\npassword_file = %q\n", private)),
		errs: []string{`c.toml:10: channel "support": imap.password: give only one of password, password_file and password_credential`},
	}, {
		name: "file and credential",
		src:  withPassword(fmt.Sprintf("password_file = %q\npassword_credential = \"imap\"\n", private)),
		opts: withCreds,
		errs: []string{`c.toml:10: channel "support": imap.password_file: give only one of password, password_file and password_credential`},
	}, {
		name: "missing file",
		src:  withPassword("password_file = \"/nonexistent/imap.pass\"\n"),
		errs: []string{`c.toml:10: channel "support": imap.password_file: cannot read "/nonexistent/imap.pass": no such file or directory`},
	}, {
		name: "not a regular file",
		src:  withPassword(fmt.Sprintf("password_file = %q\n", dir)),
		errs: []string{fmt.Sprintf(`c.toml:10: channel "support": imap.password_file: cannot read %q: not a regular file`, dir)},
	}, {
		name: "empty file",
		src:  withPassword(fmt.Sprintf("password_file = %q\n", empty)),
		errs: []string{fmt.Sprintf(`c.toml:10: channel "support": imap.password_file: %q is empty`, empty)},
	}, {
		name: "secret of the wrong type",
		src:  withPassword("password = 12345\n"),
		errs: []string{`c.toml:10: channel "support": imap.password: must be a string, not an integer`},
	}, {
		name: "optional media key from a file",
		src:  fmt.Sprintf("[media]\nkey_file = %q\n", private) + minimal,
		want: "imap-pass-s3cret",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if opts.Getenv == nil {
				opts = noEnv
			}
			cfg, err := Parse(filepath.Join(dir, "c.toml"), []byte(tt.src), opts)
			if err != nil {
				// Messages name the file as given; shorten it for the comparison.
				got := errorLines(err)
				for i := range got {
					got[i] = strings.Replace(got[i], filepath.Join(dir, "c.toml"), "c.toml", 1)
				}
				if !slices.Equal(got, tt.errs) {
					t.Errorf("errors:\n got %q\nwant %q", got, tt.errs)
				}
				return
			}
			if tt.errs != nil {
				t.Fatalf("Parse succeeded, want errors %q", tt.errs)
			}
			if got := cfg.Channels[0].IMAP.Password.Reveal(); got != tt.want {
				t.Errorf("password = %q, want %q", got, tt.want)
			}
			for i := range cfg.Warnings {
				cfg.Warnings[i] = strings.Replace(cfg.Warnings[i], filepath.Join(dir, "c.toml"), "c.toml", 1)
			}
			if !slices.Equal(cfg.Warnings, tt.warnings) {
				t.Errorf("warnings:\n got %q\nwant %q", cfg.Warnings, tt.warnings)
			}
		})
	}
}

func TestSecretUnreadableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads files whatever their mode")
	}
	path := writeFile(t, t.TempDir(), "locked.pass", "locked-s3cret", 0o000)
	src := strings.Replace(minimal, "password = \"imap-pass-s3cret\"\n", fmt.Sprintf("password_file = %q\n", path), 1)
	_, err := Parse("c.toml", []byte(src), noEnv)
	want := fmt.Sprintf(`c.toml:10: channel "support": imap.password_file: cannot read %q: permission denied`, path)
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

func TestNoSecretInOutput(t *testing.T) {
	cfg, err := Parse("c.toml", []byte("[media]\nkey = \"media-key-s3cret\"\n"+minimal), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	secrets := append(slices.Clone(secretValues), "media-key-s3cret")
	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		outputs = append(outputs, fmt.Sprintf(verb, cfg), fmt.Sprintf(verb, *cfg))
	}
	j, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, string(j))
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "channel", cfg.Channels[0], "key", cfg.Media.Key)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "password", cfg.Channels[0].IMAP.Password)
	outputs = append(outputs, buf.String())
	outputs = append(outputs, cfg.Summary()...)
	for _, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("output contains secret %q: %s", s, out)
			}
		}
	}
	if !strings.Contains(string(j), `"Password":"[redacted]"`) {
		t.Errorf("JSON does not show the redacted password: %s", j)
	}
	if got := cfg.Media.Key.Reveal(); got != "media-key-s3cret" {
		t.Errorf("Reveal = %q", got)
	}
	text, _ := cfg.Media.Key.MarshalText()
	if string(text) != "[redacted]" || cfg.Media.Key.String() != "[redacted]" || cfg.Media.Key.GoString() != "[redacted]" {
		t.Errorf("MarshalText/String/GoString reveal the secret")
	}
}

func TestNoSecretInErrors(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "pass", "file-s3cret", 0o644)
	sources := []string{
		// Syntax errors on secret lines: toml's message could quote the value.
		strings.Replace(minimal, `"imap-pass-s3cret"`, `imap-pass-s3cret`, 1),
		strings.Replace(minimal, `"imap-pass-s3cret"`, `"imap-pass-s3cret`, 1),
		strings.Replace(minimal, `"in-token-s3cret"`, `"in-token-s3cret" "x"`, 1),
		// Secrets given twice, next to other errors.
		strings.Replace(minimal, "password = \"imap-pass-s3cret\"\n",
			fmt.Sprintf("password = \"imap-pass-s3cret\"\npassword_file = %q\n", file), 1) + "[log]\nlevel = 1\n",
		// A valid secret, with other keys broken.
		strings.Replace(minimal, "imap.example.com:993", "imap-pass-s3cret", 1),
	}
	for i, src := range sources {
		_, err := Parse("c.toml", []byte(src), noEnv)
		if err == nil {
			t.Errorf("source %d: Parse succeeded", i)
			continue
		}
		for _, s := range append(slices.Clone(secretValues[:2]), "file-s3cret") {
			if strings.Contains(err.Error(), s) {
				t.Errorf("source %d: error reveals %q: %v", i, s, err)
			}
		}
		if !strings.HasPrefix(err.Error(), "c.toml:") {
			t.Errorf("source %d: error does not name file and line: %v", i, err)
		}
	}
}

func TestChannel(t *testing.T) {
	cfg, err := Parse("c.toml", []byte(withSecondChannel("")), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	ch, ok := cfg.Channel("sales")
	if !ok || ch.Name != "sales" || ch != &cfg.Channels[1] {
		t.Errorf("Channel(sales) = %v, %v", ch, ok)
	}
	if _, ok := cfg.Channel("nope"); ok {
		t.Errorf("Channel(nope) found a channel")
	}
}

func TestChannelEqual(t *testing.T) {
	parse := func(src string) Channel {
		t.Helper()
		cfg, err := Parse("c.toml", []byte(src), noEnv)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Channels[0]
	}
	base := parse(minimal)
	tests := []struct {
		name  string
		src   string
		equal bool
	}{
		{"same", minimal, true},
		{"same with defaults written out", minimal + "security = \"starttls\"\nsent_folder = \"auto\"\n", true},
		{"other password", strings.Replace(minimal, "imap-pass-s3cret", "other", 1), false},
		{"other token", strings.Replace(minimal, "out-token-s3cret", "other", 1), false},
		{"other folders", strings.Replace(minimal, "[channel.imap]\n", "[channel.imap]\nfolders = [\"INBOX\", \"Support\"]\n", 1), false},
		{"other allow list", minimal + "[channel.verify]\nallow = [\"example.org\"]\n", false},
		{"other rate", minimal + "[channel.inbound]\nrate_limit = 5\n", false},
		{"other from", strings.Replace(minimal, "Support <", "Help <", 1), false},
		{"new keys at their defaults", minimal + "from_template = \"{operator} ({channel})\"\nnotify_failures = true\nmax_age = \"72h\"\ncoalesce = \"10s\"\nquote = false\nreply_cc = \"thread\"\n[channel.verify]\nstrict_alignment = false\n", true},
		{"other from_template", minimal + "from_template = \"{operator}\"\n", false},
		{"other reply_to", minimal + "reply_to = \"help@example.com\"\n", false},
		{"other new_subject", minimal + "new_subject = \"Hello\"\n", false},
		{"no failure notices", minimal + "notify_failures = false\n", false},
		{"other max_age", minimal + "max_age = \"24h\"\n", false},
		{"other coalesce", minimal + "coalesce = \"0s\"\n", false},
		{"other footer_text", minimal + "footer_text = \"ACME\"\n", false},
		{"other footer_html", minimal + "footer_html = \"<p>ACME</p>\"\n", false},
		{"quote", minimal + "quote = true\n", false},
		{"no reply cc", minimal + "reply_cc = \"none\"\n", false},
		{"strict alignment", minimal + "[channel.verify]\nstrict_alignment = true\n", false},
		{"other start", strings.Replace(minimal, "[channel.imap]\n", "[channel.imap]\nstart = \"7d\"\n", 1), false},
		{"other form senders", minimal + "[channel.verify]\nform_senders = [\"forms@example.com\"]\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := base.Equal(parse(tt.src)); got != tt.equal {
				t.Errorf("Equal = %v, want %v", got, tt.equal)
			}
		})
	}
}

func TestSummary(t *testing.T) {
	second := strings.NewReplacer(
		`name = "support"`, `name = "sales"`,
		"https://userlike.example.com/in", "https://u:p@userlike.example.com/in?key=abc",
		"[channel.imap]\n", "[channel.imap]\nafter = \"move\"\nmove_to = \"Archive\"\n",
		"[channel.smtp]\n", "[channel.smtp]\nusername = \"relay\"\npassword = \"relay-s3cret\"\n"+
			"reply_to = \"help@example.com\"\ncoalesce = \"0s\"\nmax_age = \"90m\"\n",
	).Replace(minimal) + "[channel.verify]\nstrict_alignment = true\n"
	src := minimal + second
	cfg, err := Parse("c.toml", []byte(src), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`channel "support": imap support@example.com@imap.example.com:993 (tls) folders INBOX after=seen; smtp smtp.example.com:587 (starttls) from "Support" <support@example.com> sent_folder=auto coalesce=10s max_age=72h; userlike https://userlike.example.com/in; verify require=dmarc on_fail=quarantine`,
		`channel "sales": imap support@example.com@imap.example.com:993 (tls) folders INBOX after=move move_to=Archive; smtp relay@smtp.example.com:587 (starttls) from "Support" <support@example.com> reply_to=help@example.com sent_folder=auto coalesce=0s max_age=1h30m; userlike https://userlike.example.com/in?…; verify require=dmarc on_fail=quarantine strict_alignment`,
	}
	if got := cfg.Summary(); !slices.Equal(got, want) {
		t.Errorf("Summary:\n got %q\nwant %q", got, want)
	}
}

func TestLoad(t *testing.T) {
	path := writeFile(t, t.TempDir(), "mailgate.toml", minimal+"bogus = 1\n", 0o600)
	_, err := Load(path, noEnv)
	if err == nil || err.Error() != path+`:14: channel "support": smtp.bogus: unknown key` {
		t.Errorf("Load: %v", err)
	}
	_, err = Load(filepath.Join(t.TempDir(), "missing.toml"), noEnv)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v", err)
	}
}

// exampleKeyLine matches a key in the example, commented out or not.
var exampleKeyLine = regexp.MustCompile(`^#?\s*([a-z_]+)\s*=`)

// exampleHeader matches a table header in the example, commented out or not.
var exampleHeader = regexp.MustCompile(`^#?\s*\[\[?([a-z0-9_.]+)\]\]?\s*$`)

func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("config.example.toml", data, noEnv)
	if err != nil {
		t.Fatalf("the example does not parse:\n%v", err)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("the example draws warnings: %q", cfg.Warnings)
	}
	if len(cfg.Channels) == 0 || len(cfg.Summary()) != len(cfg.Channels) {
		t.Errorf("the example has %d channels", len(cfg.Channels))
	}
	// Every required value is an example an admin must replace.
	if len(cfg.Placeholders) != 12 {
		t.Errorf("the example has %d placeholders, want 12:\n%s", len(cfg.Placeholders), strings.Join(cfg.Placeholders, "\n"))
	}

	// Every key of the schema must be documented, in its table, and every
	// key and table the example mentions, commented out or not, must be in
	// the schema (the lines before the first table explain the forms of a
	// secret and are not checked).
	keys := schemaKeys()
	schemaKey := func(dotted string) (leaf, ok bool) {
		leaf, ok = keys[strings.ReplaceAll(dotted, ".", "\x00")]
		return leaf, ok
	}
	mentioned := make(map[string]bool)
	var table string
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if m := exampleHeader.FindStringSubmatch(line); m != nil {
			table = m[1]
			if leaf, ok := schemaKey(table); !ok || leaf {
				t.Errorf("config.example.toml:%d: [%s] is not a table of the schema", n+1, table)
			}
			continue
		}
		if m := exampleKeyLine.FindStringSubmatch(line); m != nil && table != "" {
			key := table + "." + m[1]
			mentioned[key] = true
			if leaf, ok := schemaKey(key); !ok || !leaf {
				t.Errorf("config.example.toml:%d: %s is not a key of the schema", n+1, key)
			}
		}
	}
	for path, leaf := range keys {
		if !leaf {
			continue
		}
		key := strings.ReplaceAll(path, "\x00", ".")
		if !mentioned[key] {
			t.Errorf("config.example.toml does not mention %s", key)
		}
	}
	testExampleDefaults(t, string(data))
}

// testExampleDefaults checks that the first commented-out line of each key
// with a default tag shows that default ("Commented-out lines show the
// default").
func testExampleDefaults(t *testing.T, example string) {
	shown := make(map[string]string) // dotted key: the value on its first commented-out line
	var table string
	for line := range strings.SplitSeq(example, "\n") {
		line = strings.TrimSpace(line)
		if m := exampleHeader.FindStringSubmatch(line); m != nil {
			table = m[1]
			continue
		}
		if m := exampleKeyLine.FindStringSubmatch(line); m != nil && table != "" && strings.HasPrefix(line, "#") {
			if _, ok := shown[table+"."+m[1]]; !ok {
				shown[table+"."+m[1]] = strings.TrimSpace(strings.SplitN(line, "=", 2)[1])
			}
		}
	}
	n := 0
	walkSchema(reflect.TypeFor[Config](), nil, func(path []string, _ reflect.Type, tag reflect.StructTag) {
		def, ok := tag.Lookup("default")
		if !ok {
			return
		}
		n++
		key := strings.Join(path, ".")
		v, ok := shown[key]
		if !ok {
			t.Errorf("config.example.toml has no commented-out line for %s (default %s)", key, def)
			return
		}
		if got, want := defaultValue(v), defaultValue(def); !reflect.DeepEqual(got, want) {
			t.Errorf("config.example.toml shows %s = %s, but the default is %s", key, v, def)
		}
	})
	if n < 30 {
		t.Errorf("only %d keys have a default tag", n)
	}
}

func TestPlaceholders(t *testing.T) {
	tests := []struct {
		host string
		want bool
	}{
		{"example.com", true},
		{"imap.example.com", true},
		{"MX.Example.Net.", true},
		{"example.org", true},
		{"mail.corp.example", true},
		{"myexample.com", false},
		{"example.com.au", false},
		{"mail.acme.test", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := isExampleHost(tt.host); got != tt.want {
			t.Errorf("isExampleHost(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

func TestSchemaKeys(t *testing.T) {
	keys := schemaKeys()
	for _, k := range []string{"server", "server.listen", "channel", "channel.imap", "channel.imap.password_credential", "media.key_file"} {
		if _, ok := keys[strings.ReplaceAll(k, ".", "\x00")]; !ok {
			t.Errorf("schemaKeys lacks %s", k)
		}
	}
	if len(keys) < 60 {
		t.Errorf("schemaKeys has %d keys", len(keys))
	}
}

// TestSchemaTypes: every key of the schema has a conversion for its Go
// type (a value of the wrong type is an error, not a panic), and every
// default tag is a TOML value that converts without error.
func TestSchemaTypes(t *testing.T) {
	walkSchema(reflect.TypeFor[Config](), nil, func(path []string, typ reflect.Type, tag reflect.StructTag) {
		if isTable(typ) || typ == reflect.TypeFor[Secret]() {
			return
		}
		key := strings.Join(path, ".")
		convert := func(raw any) (errs []*Error) {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: %v", key, r)
				}
			}()
			p := &parser{name: "c.toml", idx: indexLines(""), bad: make(map[pathAt]bool)}
			p.leaf(at{ch: -1, path: path}, raw, reflect.New(typ).Elem())
			return p.errs
		}
		if errs := convert(time.Time{}); len(errs) != 1 {
			t.Errorf("%s: a date-time gives %d errors, want 1", key, len(errs))
		}
		if def, ok := tag.Lookup("default"); ok {
			if errs := convert(defaultValue(def)); len(errs) != 0 {
				t.Errorf("%s: default %s: %v", key, def, errs[0])
			}
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(withSecondChannel("bogus = 1\n")))
	f.Add([]byte("[server]\nlisten = \"x\"\n[[channel]]\nimap = { address = \"h:1\", folders = [\"a\", \"\"] }\n"))
	f.Add([]byte("a.\"b.c\".'d' = \"\"\"\nx\n\"\"\"\n[[channel]]\nname = 'x'\n[channel.verify]\nallow = [\n  'a', # c\n  \"b\",\n]\n"))
	f.Add([]byte("[media]\nmax_size = \"9999999999999GiB\"\nkey_file = \"/dev/zero\"\n"))
	f.Add([]byte("[media]\nfetch_allow = [\"10.1.2.3/16\", \"::/0\", \"x\"]\n" + minimal +
		"from_template = \"{operator\"\nreply_to = \"a@b, c@d\"\ncoalesce = \"61s\"\n"))
	f.Add([]byte("channel = [{ name = \"a\", imap = 5 }, { name = 'b', Bogus = 1 }]\n"))
	f.Add([]byte(minimal + "footer_text = \"\"\"\n[[channel]]\npassword = 1\n\"\"\"\n[channel.oauth2]\nprovider = 'google'\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.toml", data, noEnv)
		if err != nil {
			if cfg != nil {
				t.Errorf("Config together with an error")
			}
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if !strings.HasPrefix(line, "f.toml") {
					t.Errorf("error line does not name the file: %q", line)
				}
			}
			return
		}
		if len(cfg.Channels) == 0 {
			t.Errorf("valid Config without channels")
		}
		_ = cfg.Summary()
	})
}

// TestWorldReadableInlineSecrets: Load warns about each secret given inline
// in a configuration file that all users can read, and not when only the
// owner can.
func TestWorldReadableInlineSecrets(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		mode os.FileMode
		want []string
	}{
		{0o644, []string{
			`: channel "support": userlike.inbound_token: a secret given inline in a file readable by all users (mode 0644); restrict it with chmod o-r, or use inbound_token_file or inbound_token_credential`,
			`: channel "support": userlike.outbound_token: a secret given inline in a file readable by all users (mode 0644)`,
			`: channel "support": imap.password: a secret given inline in a file readable by all users (mode 0644)`,
		}},
		{0o640, nil},
	} {
		path := writeFile(t, dir, fmt.Sprintf("c%o.toml", tt.mode), minimal, tt.mode)
		if err := os.Chmod(path, tt.mode); err != nil { // the umask may have narrowed it
			t.Fatal(err)
		}
		cfg, err := Load(path, noEnv)
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.Warnings) != len(tt.want) {
			t.Fatalf("mode %o: warnings %q, want %d", tt.mode, cfg.Warnings, len(tt.want))
		}
		for i, w := range tt.want {
			if !strings.Contains(cfg.Warnings[i], w) {
				t.Errorf("mode %o: warning %q, want it to contain %q", tt.mode, cfg.Warnings[i], w)
			}
		}
		for _, w := range cfg.Warnings {
			for _, secret := range secretValues {
				if strings.Contains(w, secret) {
					t.Errorf("warning %q shows a secret", w)
				}
			}
		}
	}
}

func TestStoreDriver(t *testing.T) {
	dir := t.TempDir()
	dsnFile := writeFile(t, dir, "dsn", "host=db user=mg password=pg-s3cret dbname=mg\n", 0o600)
	tests := []struct {
		name     string
		store    string
		driver   StoreDriver
		dsn      string
		warnings []string
		errs     []string
	}{{
		name:   "default",
		driver: StoreSQLite,
	}, {
		name:   "postgres from a file",
		store:  fmt.Sprintf("driver = \"postgres\"\ndsn_file = %q\n", dsnFile),
		driver: StorePostgres,
		dsn:    "host=db user=mg password=pg-s3cret dbname=mg",
	}, {
		name:  "postgres without dsn",
		store: "driver = \"postgres\"\n",
		errs:  []string{`c.toml:1: store.dsn: is required with driver = "postgres" (or dsn_file, dsn_credential)`},
	}, {
		name:  "unknown driver",
		store: "driver = \"mysql\"\n",
		errs:  []string{`c.toml:2: store.driver: invalid value "mysql" (want "sqlite", "postgres")`},
	}, {
		name:     "dsn with sqlite",
		store:    "dsn = \"host=db\"\n",
		driver:   StoreSQLite,
		dsn:      "host=db",
		warnings: []string{`c.toml:2: store.dsn: is ignored with driver = "sqlite"`},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := minimal
			if tt.store != "" {
				src = "[store]\n" + tt.store + minimal
			}
			cfg, err := Parse(filepath.Join(dir, "c.toml"), []byte(src), noEnv)
			if err != nil {
				got := errorLines(err)
				for i := range got {
					got[i] = strings.Replace(got[i], filepath.Join(dir, "c.toml"), "c.toml", 1)
				}
				if !slices.Equal(got, tt.errs) {
					t.Errorf("errors:\n got %q\nwant %q", got, tt.errs)
				}
				return
			}
			if tt.errs != nil {
				t.Fatalf("Parse succeeded, want errors %q", tt.errs)
			}
			if cfg.Store.Driver != tt.driver || cfg.Store.DSN.Reveal() != tt.dsn {
				t.Errorf("store = %q, %q; want %q, %q", cfg.Store.Driver, cfg.Store.DSN.Reveal(), tt.driver, tt.dsn)
			}
			var warns []string
			for _, w := range cfg.Warnings {
				if strings.Contains(w, "store.") {
					warns = append(warns, strings.Replace(w, filepath.Join(dir, "c.toml"), "c.toml", 1))
				}
			}
			if !slices.Equal(warns, tt.warnings) {
				t.Errorf("warnings:\n got %q\nwant %q", warns, tt.warnings)
			}
			if s := fmt.Sprintf("%v %+v", cfg, cfg.Store); strings.Contains(s, "s3cret") {
				t.Errorf("the DSN shows in %s", s)
			}
		})
	}
}
