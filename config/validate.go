package config

import (
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// validate checks the converted configuration (defaults applied) and
// reports every problem it finds.
func (p *parser) validate(cfg *Config) {
	top := at{ch: -1}

	p.hostPort(top.key("server", "listen"), cfg.Server.Listen)
	// A public_url defaulted from listen has its own warning already.
	p.httpURL(top.key("server", "public_url"), cfg.Server.PublicURL, cfg.Server.PublicURL != "http://"+cfg.Server.Listen)
	if cfg.Metrics.Listen != "" {
		p.hostPort(top.key("metrics", "listen"), cfg.Metrics.Listen)
	}
	if cfg.Store.Path == "" {
		p.errorf(top.key("store", "path"), "must not be empty")
	}
	oneOf(p, top.key("store", "driver"), cfg.Store.Driver, StoreSQLite, StorePostgres)
	switch {
	case cfg.Store.Driver == StorePostgres && cfg.Store.DSN.IsZero() && !p.isBad(top.key("store", "dsn")):
		p.errorf(top.key("store", "dsn"), "is required with driver = \"postgres\" (or dsn_file, dsn_credential)")
	case cfg.Store.Driver == StoreSQLite && !cfg.Store.DSN.IsZero():
		p.warnf(top.key("store", "dsn"), "is ignored with driver = \"sqlite\"")
	}

	// A lease under a second cannot be renewed every ttl/3 through a
	// real network.
	p.durationRange(top.key("store", "lease_ttl"), cfg.Store.LeaseTTL, time.Second, 0)

	media := top.key("media")
	if cfg.Media.Dir == "" && !p.isBad(top.key("store", "path")) {
		p.errorf(media.key("dir"), "must not be empty")
	}
	if cfg.Media.MaxSize <= 0 {
		p.errorf(media.key("max_size"), "must be more than 0 bytes")
	}
	if cfg.Media.MaxCount < 0 {
		p.errorf(media.key("max_count"), "must not be negative")
	}
	if cfg.Media.MaxMessageSize <= 0 {
		p.errorf(media.key("max_message_size"), "must be more than 0 bytes")
	}
	p.durationRange(media.key("url_ttl"), cfg.Media.URLTTL, time.Second, 0)
	p.durationRange(media.key("retention"), cfg.Media.Retention, time.Second, 0)
	for _, pfx := range cfg.Media.FetchAllow {
		if addr, ok := metadataAddress(pfx); ok {
			p.warnf(media.key("fetch_allow"), "%s includes %s, the cloud metadata service: operator media URLs could read instance credentials", pfx, addr)
		}
	}

	oneOf(p, top.key("log", "level"), cfg.Log.Level, "debug", "info", "warn", "error")
	oneOf(p, top.key("log", "format"), cfg.Log.Format, "text", "json")

	if len(cfg.Channels) == 0 {
		p.errorf(top.key("channel"), "at least one [[channel]] is required")
	}
	seen := make(map[string]int)
	for i := range cfg.Channels {
		c := at{ch: i, path: []string{"channel"}}
		name := cfg.Channels[i].Name
		if j, dup := seen[name]; dup && name != "" {
			p.errorf(c.key("name"), "%q is already the name of the channel at line %d",
				name, p.idx.line(j, []string{"channel", "name"}))
		} else {
			seen[name] = i
		}
		p.validateChannel(c, &cfg.Channels[i])
	}
}

func (p *parser) validateChannel(c at, ch *Channel) {
	switch {
	case ch.Name == "":
		p.errorf(c.key("name"), "missing (every [[channel]] needs a unique name)")
	case !validChannelName(ch.Name):
		p.errorf(c.key("name"), "invalid name %q: use 1 to 63 characters a-z, 0-9, _ and -, starting with a letter or digit", ch.Name)
	}

	ul := c.key("userlike")
	if ch.Userlike.InboundURL == "" {
		p.errorf(ul.key("inbound_url"), "missing (the Inbound URL shown in Userlike's Custom Channel settings)")
	} else {
		p.httpURL(ul.key("inbound_url"), ch.Userlike.InboundURL, true)
	}
	p.requireSecret(ul, "inbound_token", ch.Userlike.InboundToken)
	p.requireSecret(ul, "outbound_token", ch.Userlike.OutboundToken)

	im := c.key("imap")
	p.requireHostPort(im.key("address"), ch.IMAP.Address)
	oneOf(p, im.key("security"), ch.IMAP.Security, SecurityTLS, SecurityStartTLS, SecurityNone)
	p.plaintextWarning(im, string(ch.IMAP.Security), ch.IMAP.Address)
	if ch.IMAP.Username == "" {
		p.errorf(im.key("username"), "missing")
	}
	if !ch.OAuth2.Enabled() {
		p.requireSecret(im, "password", ch.IMAP.Password)
	}
	p.list(im.key("folders"), ch.IMAP.Folders, "folder")
	if len(ch.IMAP.Folders) == 0 {
		p.errorf(im.key("folders"), "must list at least one folder")
	}
	oneOf(p, im.key("after"), ch.IMAP.After, AfterSeen, AfterMove, AfterDelete, AfterNone)
	switch {
	case ch.IMAP.After == AfterMove && ch.IMAP.MoveTo == "":
		p.errorf(im.key("move_to"), `missing (required with after = "move")`)
	case ch.IMAP.After != AfterMove && ch.IMAP.MoveTo != "":
		p.errorf(im.key("move_to"), `only allowed with after = "move" (after is %q)`, ch.IMAP.After)
	case ch.IMAP.MoveTo != "" && slices.Contains(ch.IMAP.Folders, ch.IMAP.MoveTo):
		p.errorf(im.key("move_to"), "%q is a watched folder; messages would be processed again", ch.IMAP.MoveTo)
	}
	switch {
	case ch.IMAP.QuarantineFolder == "":
		p.errorf(im.key("quarantine_folder"), "must not be empty")
	case slices.Contains(ch.IMAP.Folders, ch.IMAP.QuarantineFolder):
		p.errorf(im.key("quarantine_folder"), "%q is a watched folder; quarantined messages would be processed again", ch.IMAP.QuarantineFolder)
	}
	p.durationRange(im.key("poll_interval"), ch.IMAP.PollInterval, 10*time.Second, 0)
	p.durationRange(im.key("idle_refresh"), ch.IMAP.IdleRefresh, time.Minute, 29*time.Minute)
	if ch.IMAP.InsecureSkipVerify {
		p.warnf(im.key("insecure_skip_verify"), "TLS certificates of the IMAP server are not checked")
	}

	sm := c.key("smtp")
	p.requireHostPort(sm.key("address"), ch.SMTP.Address)
	oneOf(p, sm.key("security"), ch.SMTP.Security, SecurityTLS, SecurityStartTLS, SecurityNone)
	p.plaintextWarning(sm, string(ch.SMTP.Security), ch.SMTP.Address)
	if ch.SMTP.From.Address == "" {
		p.errorf(sm.key("from"), "missing (the sender address of replies)")
	}
	switch {
	case ch.OAuth2.Enabled():
		// smtp.username (default imap.username) logs in with the token.
	case ch.SMTP.Username != "":
		p.requireSecret(sm, "password", ch.SMTP.Password)
	case !ch.SMTP.Password.IsZero():
		p.warnf(sm.key("password"), "set but unused: username is empty, so mailgate does not authenticate")
	}
	p.fromTemplate(sm.key("from_template"), ch.SMTP.FromTemplate)
	if ch.SMTP.ReplyTo != "" {
		if _, err := mail.ParseAddress(ch.SMTP.ReplyTo); err != nil {
			p.errorf(sm.key("reply_to"), "invalid address %q: %v", ch.SMTP.ReplyTo, err)
		}
	}
	p.durationRange(sm.key("max_age"), ch.SMTP.MaxAge, time.Minute, 0)
	p.durationRange(sm.key("coalesce"), ch.SMTP.Coalesce, 0, maxCoalesce)
	oneOf(p, sm.key("reply_cc"), ch.SMTP.ReplyCc, ReplyCcThread, ReplyCcNone)

	ve := c.key("verify")
	p.list(ve.key("trusted_authserv_ids"), ch.Verify.TrustedAuthservIDs, "authserv-id")
	for _, id := range ch.Verify.TrustedAuthservIDs {
		if strings.ContainsAny(id, " \t;") {
			p.errorf(ve.key("trusted_authserv_ids"), "invalid authserv-id %q", id)
		}
	}
	oneOf(p, ve.key("require"), ch.Verify.Require, RequireDMARC, RequireDKIM, RequireNone)
	p.list(ve.key("allow"), ch.Verify.Allow, "entry")
	for _, a := range ch.Verify.Allow {
		if !validAllowEntry(a) {
			p.errorf(ve.key("allow"), "invalid entry %q: want an address (name@example.com) or a domain (example.com), without wildcards", a)
		}
	}
	oneOf(p, ve.key("on_fail"), ch.Verify.OnFail, OnFailQuarantine, OnFailReject)
	p.list(ve.key("form_senders"), ch.Verify.FormSenders, "address")
	for _, a := range ch.Verify.FormSenders {
		if !strings.Contains(a, "@") || !validAllowEntry(a) {
			p.errorf(ve.key("form_senders"), "invalid address %q: want the form's From address (forms@example.com)", a)
		}
	}

	in := c.key("inbound")
	oneOf(p, in.key("subject"), ch.Inbound.Subject, SubjectFirstLine, SubjectNone)
	oneOf(p, in.key("mailing_lists"), ch.Inbound.MailingLists, MailingListsSkip, MailingListsPost)
	if ch.Inbound.RateLimit < 1 {
		p.errorf(in.key("rate_limit"), "must be at least 1")
	}
	p.durationRange(in.key("rate_window"), ch.Inbound.RateWindow, time.Second, 0)
	oneOf(p, in.key("attach_original"), ch.Inbound.AttachOriginal, AttachOriginalNever, AttachOriginalWhenTrimmed, AttachOriginalAlways)
}

// maxCoalesce is the longest coalescing window: the outbox sends a
// contact's messages at most this long after the first.
const maxCoalesce = 60 * time.Second

// fromTemplate checks smtp.from_template: not empty, and no placeholder
// but {operator} and {channel}.
func (p *parser) fromTemplate(a at, tmpl string) {
	if strings.TrimSpace(tmpl) == "" {
		p.errorf(a, "must not be empty (default \"%s\")", defaultFromTemplate)
		return
	}
	for rest := tmpl; ; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			return
		}
		rest = rest[i:]
		j := strings.IndexAny(rest[1:], "{}") + 1
		if j == 0 || rest[j] == '{' {
			p.errorf(a, "unclosed \"{\" in %q (placeholders: {operator}, {channel})", tmpl)
			if j == 0 {
				return
			}
			rest = rest[j:]
			continue
		}
		if ph := rest[:j+1]; ph != "{operator}" && ph != "{channel}" {
			p.errorf(a, "unknown placeholder %q in %q (placeholders: {operator}, {channel})", ph, tmpl)
		}
		rest = rest[j+1:]
	}
}

// metadataAddresses returns the addresses of cloud instance metadata
// services: 169.254.169.254 and AWS's IPv6 endpoint fd00:ec2::254.
func metadataAddresses() [2]netip.Addr {
	return [2]netip.Addr{
		netip.AddrFrom4([4]byte{169, 254, 169, 254}),
		netip.AddrFrom16([16]byte{0xfd, 0x00, 0x0e, 0xc2, 14: 0x02, 15: 0x54}),
	}
}

// metadataAddress returns the cloud metadata address that pfx covers, if
// any, IPv4-mapped IPv6 prefixes included.
func metadataAddress(pfx netip.Prefix) (netip.Addr, bool) {
	for _, addr := range metadataAddresses() {
		if pfx.Contains(addr) {
			return addr, true
		}
		if addr.Is4() && pfx.Contains(netip.AddrFrom16(addr.As16())) {
			return addr, true
		}
	}
	return netip.Addr{}, false
}

// validChannelName reports whether name matches ^[a-z0-9][a-z0-9_-]{0,62}$.
func validChannelName(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// validAllowEntry reports whether s is a lower-case address or domain.
func validAllowEntry(s string) bool {
	domain := s
	if local, d, ok := strings.Cut(s, "@"); ok {
		if local == "" || strings.ContainsAny(local, "\"()<>,;:\\[] \t*?") {
			return false
		}
		domain = d
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c >= 0x80) {
				return false
			}
		}
	}
	return true
}

// requireSecret reports a missing required secret.
func (p *parser) requireSecret(table at, name string, s Secret) {
	if s.IsZero() {
		p.errorf(table.key(name), "missing (set %s, %s_file or %s_credential)", name, name, name)
	}
}

// oneOf checks an enumerated value.
func oneOf[T ~string](p *parser, a at, v T, allowed ...T) {
	if slices.Contains(allowed, v) {
		return
	}
	quoted := make([]string, len(allowed))
	for i, s := range allowed {
		quoted[i] = strconv.Quote(string(s))
	}
	p.errorf(a, "invalid value %q (want %s)", string(v), strings.Join(quoted, ", "))
}

// list checks that a list has no empty and no repeated entries.
func (p *parser) list(a at, l []string, what string) {
	seen := make(map[string]bool, len(l))
	for _, s := range l {
		switch {
		case strings.TrimSpace(s) == "":
			p.errorf(a, "empty %s name", what)
		case seen[s]:
			p.errorf(a, "%s %q is listed twice", what, s)
		}
		seen[s] = true
	}
}

// durationRange checks min <= d (and d <= max when max > 0).
func (p *parser) durationRange(a at, d Duration, minimum, maximum time.Duration) {
	switch {
	case d.Duration < minimum:
		p.errorf(a, "%s is too short (at least %s)", d, minimum)
	case maximum > 0 && d.Duration > maximum:
		p.errorf(a, "%s is too long (at most %s)", d, maximum)
	}
}

// requireHostPort checks a mandatory host:port.
func (p *parser) requireHostPort(a at, s string) {
	if s == "" {
		p.errorf(a, "missing (host:port)")
		return
	}
	p.hostPort(a, s)
}

// hostPort checks a host:port with a non-empty host and a port 1-65535.
func (p *parser) hostPort(a at, s string) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			p.errorf(a, "missing port (want host:port, got %q)", s)
		} else {
			p.errorf(a, "invalid address %q (want host:port)", s)
		}
		return
	}
	if host == "" {
		p.errorf(a, "missing host in %q (want host:port; 0.0.0.0 means every interface)", s)
		return
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		p.errorf(a, "invalid port in %q (want 1-65535)", s)
	}
}

// httpURL checks an absolute http or https URL; with warnPlain, plain http
// to another machine gets a warning.
func (p *parser) httpURL(a at, s string, warnPlain bool) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		p.errorf(a, "invalid URL %q", s)
	case u.Scheme != "http" && u.Scheme != "https":
		p.errorf(a, "%q is not an absolute http or https URL", s)
	case u.Host == "":
		p.errorf(a, "%q has no host", s)
	case warnPlain && u.Scheme == "http" && !isLoopback(u.Hostname()):
		p.warnf(a, "plain http to %s: the token and customer mail travel unencrypted; use https", u.Hostname())
	}
}

// plaintextWarning warns when security = "none" talks to another machine.
func (p *parser) plaintextWarning(table at, security, address string) {
	if security != "none" {
		return
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil || isLoopback(host) {
		return
	}
	p.warnf(table.key("security"), "\"none\" sends the password and mail unencrypted to %s", host)
}
