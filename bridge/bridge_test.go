package bridge

import (
	"slices"
	"strings"
	"testing"
	"time"

	"mailgate/config"
	"mailgate/imapsync"
)

const twoChannels = `[[channel]]
name = "support"
[channel.userlike]
inbound_url = "https://userlike.example.com/in"
inbound_token = "in-token"
outbound_token = "out-token"
[channel.imap]
address = "imap.example.com:993"
username = "support@example.com"
password = "imap-pass"
start = "7d"
[channel.smtp]
address = "smtp.relay.example.net:587"
username = "relay-user"
password = "smtp-pass"
from = "Support <help@example.com>"
reply_to = "Desk <desk@example.com>"

[[channel]]
name = "sales"
[channel.userlike]
inbound_url = "https://userlike.example.com/in2"
inbound_token = "in-token-2"
outbound_token = "out-token-2"
[channel.imap]
address = "127.0.0.1:993"
username = "sales@example.org"
password = "imap-pass-2"
[channel.smtp]
address = "127.0.0.1:25"
from = "sales@example.org"
[channel.verify]
require = "none"
`

func parse(t *testing.T, src string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("c.toml", []byte(src), config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestOwnAddresses(t *testing.T) {
	cfg := parse(t, twoChannels)
	got := OwnAddresses(cfg)
	for _, want := range []string{"support@example.com", "help@example.com", "desk@example.com", "sales@example.org"} {
		if !slices.Contains(got, want) {
			t.Errorf("OwnAddresses = %q, lacks %s", got, want)
		}
	}
	if slices.Contains(got, "relay-user") {
		t.Errorf("OwnAddresses = %q: a user name that is no address", got)
	}
}

func TestRelayDomains(t *testing.T) {
	cfg := parse(t, twoChannels)
	if got := relayDomains(&cfg.Channels[0]); !slices.Equal(got, []string{"example.com", "smtp.relay.example.net"}) {
		t.Errorf("support: %q", got)
	}
	if got := relayDomains(&cfg.Channels[1]); !slices.Equal(got, []string{"example.org"}) {
		t.Errorf("sales (relay by IP): %q", got)
	}
}

func TestWarnings(t *testing.T) {
	cfg := parse(t, twoChannels)
	if w := Warnings(cfg.Channels[0]); len(w) != 1 || !strings.Contains(w[0], "every email will be quarantined") {
		t.Errorf("nothing trusted: %q", w)
	}
	if w := Warnings(cfg.Channels[1]); len(w) != 1 || !strings.Contains(w[0], "NOT verified") {
		t.Errorf("require none: %q", w)
	}
	cfg = parse(t, strings.Replace(twoChannels, "[[channel]]\nname = \"sales\"", "[channel.verify]\ntrusted_authserv_ids = [\"mx.example.com\"]\n\n[[channel]]\nname = \"sales\"", 1))
	if w := Warnings(cfg.Channels[0]); len(w) != 0 {
		t.Errorf("trusted authserv-id: %q", w)
	}
}

func TestIMAPAndSenderOptions(t *testing.T) {
	cfg := parse(t, twoChannels)
	ch := cfg.Channels[0]
	o := IMAPOptions(ch, nil)
	auth, ok := o.Auth.(imapsync.PasswordAuth)
	if !ok || auth.Username != "support@example.com" || auth.Password != "imap-pass" {
		t.Errorf("Auth = %v", o.Auth)
	}
	if o.Start.All || o.Start.Since != 7*24*time.Hour || o.Channel != "support" || !slices.Equal(o.Folders, []string{"INBOX"}) {
		t.Errorf("options %+v", o)
	}
	s := SenderOptions(ch, nil)
	if s.Username != "relay-user" || s.Password != "smtp-pass" || s.Tokens != nil || s.Address != "smtp.relay.example.net:587" {
		t.Errorf("sender options %+v", s)
	}
}
