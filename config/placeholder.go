package config

import (
	"net"
	"net/url"
	"strings"
)

// PlaceholderMarker is the value config.example.toml gives every secret
// and the inbound URL: a file still holding it has not been edited.
const PlaceholderMarker = "REPLACE-ME"

// placeholders reports, in p.holes, the values that are still those of
// config.example.toml: a value containing PlaceholderMarker, or a host in a
// domain reserved for examples (RFC 2606 section 3: example.com,
// example.net, example.org; RFC 6761 section 6.5: .example). Such a file
// parses, so that it can be read and inspected, but mailgate must not run
// with it: check-config and run refuse it, naming each key to edit.
func (p *parser) placeholders(cfg *Config) {
	top := at{ch: -1}
	if isExampleHost(urlHost(cfg.Server.PublicURL)) {
		p.holef(top.key("server", "public_url"), "the URL under which Userlike reaches this server")
	}
	for i := range cfg.Channels {
		ch := &cfg.Channels[i]
		c := at{ch: i, path: []string{"channel"}}
		ul := c.key("userlike")
		if strings.Contains(ch.Userlike.InboundURL, PlaceholderMarker) || isExampleHost(urlHost(ch.Userlike.InboundURL)) {
			p.holef(ul.key("inbound_url"), "the Inbound URL shown in the Custom Channel's settings in Userlike")
		}
		p.secretHole(ul, "inbound_token", ch.Userlike.InboundToken, "the Inbound auth token Userlike generated")
		p.secretHole(ul, "outbound_token", ch.Userlike.OutboundToken, "a long random token, also entered in Userlike as the Outbound auth token")

		im := c.key("imap")
		if isExampleHost(addressHost(ch.IMAP.Address)) {
			p.holef(im.key("address"), "your IMAP server's host:port")
		}
		if isExampleHost(mailDomain(ch.IMAP.Username)) {
			p.holef(im.key("username"), "the mailbox's login name")
		}
		p.secretHole(im, "password", ch.IMAP.Password, "the mailbox's password")

		sm := c.key("smtp")
		if isExampleHost(addressHost(ch.SMTP.Address)) {
			p.holef(sm.key("address"), "your SMTP relay's host:port")
		}
		if isExampleHost(mailDomain(ch.SMTP.Username)) {
			p.holef(sm.key("username"), "the relay's login name")
		}
		if ch.SMTP.Username != "" && !ch.OAuth2.Enabled() {
			p.secretHole(sm, "password", ch.SMTP.Password, "the relay's password")
		}
		if o := c.key("oauth2"); ch.OAuth2.Enabled() {
			if strings.Contains(ch.OAuth2.Tenant, PlaceholderMarker) {
				p.holef(o.key("tenant"), "the Directory (tenant) ID of the app registration")
			}
			if strings.Contains(ch.OAuth2.ClientID, PlaceholderMarker) {
				p.holef(o.key("client_id"), "the Application (client) ID")
			}
			p.secretHole(o, "client_secret", ch.OAuth2.ClientSecret, "the client secret of the app registration")
		}
		if isExampleHost(mailDomain(ch.SMTP.From.Address)) {
			p.holef(sm.key("from"), "the sender address of replies")
		}

		for _, id := range ch.Verify.TrustedAuthservIDs {
			if isExampleHost(id) {
				p.holef(c.key("verify", "trusted_authserv_ids"), "the authserv-id of your own mail server (doc/verification.md)")
				break
			}
		}
	}
}

// holef records that the key at a still holds its example value; what says
// what to put there instead.
func (p *parser) holef(a at, what string) {
	p.holes = append(p.holes, p.problem(a, p.idx.line(a.ch, a.path), "still the example value: set "+what))
}

// secretHole records a secret that is still PlaceholderMarker. The value
// itself is never part of the message.
func (p *parser) secretHole(table at, name string, s Secret, what string) {
	if strings.Contains(s.Reveal(), PlaceholderMarker) {
		p.holef(table.key(name), what)
	}
}

// isExampleHost reports whether host lies in a domain reserved for
// documentation: example.com, example.net, example.org (RFC 2606) or the
// .example top-level domain (RFC 6761).
func isExampleHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, d := range []string{"example.com", "example.net", "example.org", "example"} {
		if host == d || strings.HasSuffix(host, "."+d) {
			return true
		}
	}
	return false
}

func urlHost(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

func addressHost(s string) string {
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		return ""
	}
	return host
}

// mailDomain returns the domain of addr@domain, or "" for a bare name.
func mailDomain(s string) string {
	_, domain, ok := strings.Cut(s, "@")
	if !ok {
		return ""
	}
	return domain
}
