package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/mail"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Error is one problem found in a configuration file. Parse returns all of
// them joined with errors.Join; use errors.As to get at the first.
type Error struct {
	File string // file name as given to Parse or Load
	Line int    // 1-based line; 0 when the problem has no line of its own
	// Channel is the name of the [[channel]] the key belongs to, or "#N"
	// (1-based) when that channel has no usable name; "" outside channels.
	Channel string
	Key     string // dotted key, relative to the [[channel]] within one
	Message string // what is wrong; never contains a secret value
}

// Error formats e on one line as "file:line: channel "name": key: message".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Channel != "" {
		if strings.HasPrefix(e.Channel, "#") {
			b.WriteString("channel " + e.Channel + ": ")
		} else {
			b.WriteString("channel " + strconv.Quote(e.Channel) + ": ")
		}
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Message)
	return oneLine(b.String())
}

// oneLine keeps a message on one line whatever a key or value contains.
func oneLine(s string) string {
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
}

// at locates a key: the [[channel]] occurrence (-1 outside channels) and
// the full key path ("channel", "imap", "address").
type at struct {
	ch   int
	path []string
}

// key returns the location of a key below a.
func (a at) key(k ...string) at {
	return at{ch: a.ch, path: append(a.path[:len(a.path):len(a.path)], k...)}
}

// warning is a problem found before a parser exists to report it.
type warning struct {
	ch   int
	path []string
	msg  string
}

// parser collects the errors and warnings of one Parse call.
type parser struct {
	mode    fs.FileMode // of the file, if known
	name    string
	baseDir string
	getenv  func(string) string
	idx     *lineIndex
	names   []string        // channel names by occurrence, for messages
	bad     map[pathAt]bool // keys whose conversion failed
	// validating is set while validate runs: its errors do not mark keys bad.
	validating bool
	errs       []*Error
	warns      []*Error
	holes      []*Error // example values left in place, see placeholders
}

// Parse parses and validates the configuration in data. Name is the file
// name used in messages; relative *_file paths are resolved against its
// directory. On failure the error lists every problem, one per line, sorted
// by line.
func Parse(name string, data []byte, opts Options) (*Config, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	p := &parser{
		mode:    opts.Mode,
		name:    name,
		baseDir: filepath.Dir(name),
		getenv:  getenv,
		idx:     indexLines(string(data)),
		bad:     make(map[pathAt]bool),
	}

	var raw rawFile
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		return nil, p.tomlError(err)
	}
	for _, c := range raw.Channel {
		s, _ := c.Name.v.(string)
		p.names = append(p.names, s)
	}
	p.checkKeys(md)
	for _, w := range applyDefaults(&raw, getenv) {
		p.warnf(at{w.ch, w.path}, "%s", w.msg)
	}
	cfg := p.convert(&raw)
	p.validating = true
	p.validate(cfg)

	if len(p.errs) > 0 {
		sortByLine(p.errs)
		errs := make([]error, len(p.errs))
		for i, e := range p.errs {
			errs[i] = e
		}
		return nil, errors.Join(errs...)
	}
	sortByLine(p.warns)
	for _, w := range p.warns {
		cfg.Warnings = append(cfg.Warnings, w.Error())
	}
	p.placeholders(cfg)
	sortByLine(p.holes)
	for _, h := range p.holes {
		cfg.Placeholders = append(cfg.Placeholders, h.Error())
	}
	return cfg, nil
}

// sortByLine orders problems by line, those without a line last, keeping
// the order of problems on the same line.
func sortByLine(es []*Error) {
	sort.SliceStable(es, func(i, j int) bool {
		li, lj := es[i].Line, es[j].Line
		if li == 0 {
			li = math.MaxInt
		}
		if lj == 0 {
			lj = math.MaxInt
		}
		return li < lj
	})
}

// problem builds an Error for a.
func (p *parser) problem(a at, line int, msg string) *Error {
	e := &Error{File: p.name, Line: line, Message: msg}
	path := a.path
	if a.ch >= 0 {
		if len(path) > 0 && path[0] == "channel" {
			path = path[1:]
		}
		e.Channel = "#" + strconv.Itoa(a.ch+1)
		if a.ch < len(p.names) && validChannelName(p.names[a.ch]) {
			e.Channel = p.names[a.ch]
		}
	}
	if len(path) > 0 {
		e.Key = toml.Key(path).String()
	}
	return e
}

// errorf reports an error at a, unless converting a failed already (a
// value that failed to convert is not reported again as missing or
// invalid). Validation may report several problems of one key.
func (p *parser) errorf(a at, format string, args ...any) {
	k := pathAt{a.ch, joinPath(a.path)}
	if p.bad[k] {
		return
	}
	if !p.validating {
		p.bad[k] = true
	}
	p.errs = append(p.errs, p.problem(a, p.idx.line(a.ch, a.path), fmt.Sprintf(format, args...)))
}

// warnf reports a warning at a.
func (p *parser) warnf(a at, format string, args ...any) {
	p.warns = append(p.warns, p.problem(a, p.idx.line(a.ch, a.path), fmt.Sprintf(format, args...)))
}

// markBad records that a needs no further error: a problem with it was
// reported under another key (password_file for password).
func (p *parser) markBad(a at) { p.bad[pathAt{a.ch, joinPath(a.path)}] = true }

// isBad reports whether a already has an error.
func (p *parser) isBad(a at) bool { return p.bad[pathAt{a.ch, joinPath(a.path)}] }

// isSecretKey reports whether values of key k are secrets; toml syntax errors on
// their lines are reported without toml's message, which may quote the value.
func isSecretKey(k string) bool {
	switch k {
	case "password", "inbound_token", "outbound_token", "key", "client_secret", "service_account_key", "dsn":
		return true
	}
	return false
}

// tomlError turns an error of the toml package (syntax, or a table where a
// value belongs) into an *Error with file and line.
func (p *parser) tomlError(err error) error {
	e := &Error{File: p.name}
	var pe toml.ParseError
	if errors.As(err, &pe) {
		e.Line = pe.Position.Line
		e.Key = pe.LastKey
		e.Message = pe.Message
	} else {
		// Type mismatches come as "toml: line N (last key "k"): message".
		msg := strings.TrimPrefix(err.Error(), "toml: ")
		if rest, ok := strings.CutPrefix(msg, "line "); ok {
			n := 0
			for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
				n++
			}
			e.Line, _ = strconv.Atoi(rest[:n])
			msg = rest[n:]
		}
		if rest, ok := strings.CutPrefix(strings.TrimSpace(msg), "(last key "); ok {
			if k, m, ok := strings.Cut(rest, "): "); ok {
				e.Key = strings.Trim(k, `"`)
				msg = m
			}
		}
		e.Message = strings.TrimPrefix(msg, ": ")
		// The messages name the Go types this package decodes into, which
		// mean nothing to the reader of the file.
		switch {
		case strings.Contains(e.Message, "expected table"):
			e.Message = "must be a table"
		case strings.Contains(e.Message, "destination has type slice"):
			e.Message = "must be an array of tables"
		}
	}
	secret := false
	for _, k := range p.idx.keysAt[e.Line] {
		secret = secret || isSecretKey(k)
	}
	if i := strings.LastIndexByte(e.Key, '.'); isSecretKey(e.Key[i+1:]) {
		secret = true
	}
	if secret {
		e.Message = "invalid TOML (details withheld: this line holds a secret)"
	}
	return e
}

// checkKeys reports every key that is not part of the schema. It takes the
// undecoded keys from toml and also refuses keys that toml matched only
// case-insensitively ("Listen" for "listen").
func (p *parser) checkKeys(md toml.MetaData) {
	known := schemaKeys()
	undecoded := make(map[string]bool)
	for _, k := range md.Undecoded() {
		undecoded[joinPath(k)] = true
	}
	seen := make(map[string]int)
	reported := make(map[pathAt]bool)
	for _, k := range md.Keys() {
		j := joinPath(k)
		n := seen[j]
		seen[j]++
		if _, ok := known[j]; ok && !undecoded[j] {
			continue
		}
		// Report the outermost unknown part: one error for a whole
		// unknown table, not one per key in it.
		bad := k
		for i := 1; i <= len(k); i++ {
			if _, ok := known[joinPath(k[:i])]; !ok {
				bad = k[:i]
				break
			}
		}
		loc := keyPos{ch: -1}
		if d, ok := p.idx.definition(k, n); ok {
			loc = d
		} else {
			loc.line = p.idx.line(-1, k)
		}
		r := pathAt{loc.ch, joinPath(bad)}
		if reported[r] {
			continue
		}
		reported[r] = true
		msg := "unknown key"
		lower := append(bad[:len(bad)-1:len(bad)-1], strings.ToLower(bad[len(bad)-1]))
		if _, ok := known[joinPath(lower)]; ok && lower[len(lower)-1] != bad[len(bad)-1] {
			msg = fmt.Sprintf("unknown key (keys are case-sensitive: did you mean %q?)", lower[len(lower)-1])
		}
		a := at{ch: loc.ch, path: bad}
		p.bad[pathAt{a.ch, joinPath(a.path)}] = true
		p.errs = append(p.errs, p.problem(a, loc.line, msg))
	}
}

// tomlType names the TOML type of a decoded value.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	}
	return "a date or time"
}

// str converts a string value; absent is "".
func (p *parser) str(a at, v value) string {
	if v.v == nil {
		return ""
	}
	s, ok := v.v.(string)
	if !ok {
		p.errorf(a, "must be a string, not %s", tomlType(v.v))
	}
	return s
}

// boolean converts a boolean value; absent is false.
func (p *parser) boolean(a at, v value) bool {
	if v.v == nil {
		return false
	}
	b, ok := v.v.(bool)
	if !ok {
		p.errorf(a, "must be true or false, not %s", tomlType(v.v))
	}
	return b
}

// integer converts an integer value; absent is 0.
func (p *parser) integer(a at, v value) int {
	if v.v == nil {
		return 0
	}
	n, ok := v.v.(int64)
	if !ok {
		p.errorf(a, "must be an integer, not %s", tomlType(v.v))
		return 0
	}
	if int64(int(n)) != n {
		p.errorf(a, "%d is out of range", n)
		return 0
	}
	return int(n)
}

// strs converts an array of strings; absent is nil.
func (p *parser) strs(a at, v value) []string {
	if v.v == nil {
		return nil
	}
	arr, ok := v.v.([]any)
	if !ok {
		p.errorf(a, "must be an array of strings, not %s", tomlType(v.v))
		return nil
	}
	out := make([]string, 0, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			p.errorf(a, "must be an array of strings, but element %d is %s", i+1, tomlType(e))
			return nil
		}
		out = append(out, s)
	}
	return out
}

// start converts [channel.imap] start; absent is "now".
func (p *parser) start(a at, v value) StartPoint {
	var sp StartPoint
	if v.v == nil {
		return sp
	}
	s, ok := v.v.(string)
	if !ok {
		p.errorf(a, "must be \"now\", \"all\" or a duration string such as \"7d\", not %s", tomlType(v.v))
		return sp
	}
	if err := sp.UnmarshalText([]byte(s)); err != nil {
		p.errorf(a, "%v", err)
	}
	return sp
}

// duration converts a duration string such as "5m"; absent is 0.
func (p *parser) duration(a at, v value) Duration {
	var d Duration
	if v.v == nil {
		return d
	}
	s, ok := v.v.(string)
	if !ok {
		p.errorf(a, "must be a duration string such as \"5m\", not %s", tomlType(v.v))
		return d
	}
	if err := d.UnmarshalText([]byte(s)); err != nil {
		p.errorf(a, "%v", err)
	}
	return d
}

// size converts a size: an integer (bytes) or a string such as "25MiB".
func (p *parser) size(a at, v value) Size {
	switch x := v.v.(type) {
	case nil:
		return 0
	case int64:
		return Size(x)
	case string:
		s, err := ParseSize(x)
		if err != nil {
			p.errorf(a, "%v", err)
		}
		return s
	}
	p.errorf(a, "must be a size such as \"25MiB\" or a number of bytes, not %s", tomlType(v.v))
	return 0
}

// prefixes converts an array of CIDR prefixes such as "10.1.0.0/16";
// absent is nil. Each prefix is masked; one written with host bits set
// ("10.1.2.3/16") draws a warning. All invalid entries are named in one
// error.
func (p *parser) prefixes(a at, v value) []netip.Prefix {
	list := p.strs(a, v)
	if list == nil {
		return nil
	}
	out := make([]netip.Prefix, 0, len(list))
	var bad []string
	for _, s := range list {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			bad = append(bad, strconv.Quote(s))
			continue
		}
		if m := pfx.Masked(); m != pfx {
			p.warnf(a, "%q has host bits set; it means %q", s, m.String())
			pfx = m
		}
		out = append(out, pfx)
	}
	if len(bad) > 0 {
		what := "entry"
		if len(bad) > 1 {
			what = "entries"
		}
		p.errorf(a, "invalid %s %s: want an IP address with a prefix length, such as \"10.1.0.0/16\" or \"127.0.0.1/32\"",
			what, strings.Join(bad, ", "))
		return nil
	}
	return out
}

// maxSecretSize bounds what a secret file or credential may hold.
const maxSecretSize = 64 << 10

// secret resolves the secret key name in table a, given as name (inline),
// name_file (a file's content) or name_credential (a systemd credential).
// Absent is the zero Secret.
func (p *parser) secret(a at, name string, inline, file, cred value) Secret {
	given := 0
	for _, v := range []value{inline, file, cred} {
		if v.set {
			given++
		}
	}
	if given > 1 {
		first := a.key(name)
		if !inline.set {
			first = a.key(name + "_file")
		}
		p.errorf(first, "give only one of %s, %s_file and %s_credential", name, name, name)
		p.markBad(a.key(name))
		return Secret{}
	}
	switch {
	case inline.set:
		if p.mode&0o004 != 0 {
			p.warnf(a.key(name), "a secret given inline in a file readable by all users (mode %#o); restrict it with chmod o-r, or use %s_file or %s_credential", p.mode, name, name)
		}
		return Secret{value: p.str(a.key(name), inline)}
	case file.set:
		fa := a.key(name + "_file")
		path := p.str(fa, file)
		if p.isBad(fa) {
			p.markBad(a.key(name))
			return Secret{}
		}
		if path == "" {
			p.errorf(fa, "must name a file")
			p.markBad(a.key(name))
			return Secret{}
		}
		if !filepath.IsAbs(path) {
			path = filepath.Join(p.baseDir, path)
		}
		return p.readSecret(fa, a.key(name), path)
	case cred.set:
		ca := a.key(name + "_credential")
		cname := p.str(ca, cred)
		if p.isBad(ca) {
			p.markBad(a.key(name))
			return Secret{}
		}
		dir := p.getenv("CREDENTIALS_DIRECTORY")
		switch {
		case cname == "" || cname == "." || cname == ".." || strings.ContainsAny(cname, `/\`):
			p.errorf(ca, "invalid credential name %q", cname)
		case dir == "":
			p.errorf(ca, "$CREDENTIALS_DIRECTORY is not set (systemd sets it for LoadCredential=; use %s_file outside systemd)", name)
		default:
			return p.readSecret(ca, a.key(name), filepath.Join(dir, cname))
		}
		p.markBad(a.key(name))
	}
	return Secret{}
}

// readSecret reads a secret file for the key at src. It refuses anything but
// a regular file of at most maxSecretSize bytes, trims trailing newlines,
// and warns when the file is readable by all users. Errors name the path,
// never the content. On failure it also marks target as bad, so that a
// required secret is not reported missing as well.
func (p *parser) readSecret(src, target at, path string) Secret {
	content, mode, err := readSecretFile(path)
	if err != nil {
		p.errorf(src, "cannot read %q: %v", path, err)
		p.markBad(target)
		return Secret{}
	}
	if mode&0o004 != 0 {
		p.warnf(src, "%q is readable by all users (mode %#o); restrict it with chmod o-r", path, mode.Perm())
	}
	if content == "" {
		p.errorf(src, "%q is empty", path)
		p.markBad(target)
	}
	return Secret{value: content}
}

// readSecretFile returns the content of a secret file, without trailing
// newlines, and its mode.
func readSecretFile(path string) (string, os.FileMode, error) {
	// Stat first: opening a FIFO or a device could block or never end.
	fi, err := os.Stat(path)
	if err != nil {
		return "", 0, unwrapPathError(err)
	}
	if !fi.Mode().IsRegular() {
		return "", 0, errors.New("not a regular file")
	}
	f, err := os.Open(path)
	if err != nil {
		return "", 0, unwrapPathError(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretSize+1))
	if err != nil {
		return "", 0, unwrapPathError(err)
	}
	if len(data) > maxSecretSize {
		return "", 0, fmt.Errorf("larger than %d bytes", maxSecretSize)
	}
	return strings.TrimRight(string(data), "\r\n"), fi.Mode(), nil
}

// unwrapPathError drops the operation and path from an *fs.PathError, which
// the caller names itself.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// convert turns the raw file (defaults applied) into a Config, reporting
// values of the wrong type or form.
func (p *parser) convert(raw *rawFile) *Config {
	top := at{ch: -1}
	cfg := &Config{
		Server: Server{
			Listen:    p.str(top.key("server", "listen"), raw.Server.Listen),
			PublicURL: p.str(top.key("server", "public_url"), raw.Server.PublicURL),
		},
		Metrics: Metrics{
			Listen: p.str(top.key("metrics", "listen"), raw.Metrics.Listen),
		},
		Store: Store{
			Driver: StoreDriver(p.str(top.key("store", "driver"), raw.Store.Driver)),
			Path:   p.str(top.key("store", "path"), raw.Store.Path),
			DSN:    p.secret(top.key("store"), "dsn", raw.Store.DSN, raw.Store.DSNFile, raw.Store.DSNCredential),
		},
		Media: Media{
			Dir:            p.str(top.key("media", "dir"), raw.Media.Dir),
			MaxSize:        p.size(top.key("media", "max_size"), raw.Media.MaxSize),
			MaxCount:       p.integer(top.key("media", "max_count"), raw.Media.MaxCount),
			MaxMessageSize: p.size(top.key("media", "max_message_size"), raw.Media.MaxMessageSize),
			URLTTL:         p.duration(top.key("media", "url_ttl"), raw.Media.URLTTL),
			Retention:      p.duration(top.key("media", "retention"), raw.Media.Retention),
			Key:            p.secret(top.key("media"), "key", raw.Media.Key, raw.Media.KeyFile, raw.Media.KeyCredential),
			FetchAllow:     p.prefixes(top.key("media", "fetch_allow"), raw.Media.FetchAllow),
		},
		Log: Log{
			Level:  p.str(top.key("log", "level"), raw.Log.Level),
			Format: p.str(top.key("log", "format"), raw.Log.Format),
		},
	}
	for i := range raw.Channel {
		cfg.Channels = append(cfg.Channels, p.convertChannel(at{ch: i, path: []string{"channel"}}, &raw.Channel[i]))
	}
	return cfg
}

func (p *parser) convertChannel(c at, r *rawChannel) Channel {
	ul, im, sm, ve, in := c.key("userlike"), c.key("imap"), c.key("smtp"), c.key("verify"), c.key("inbound")
	if r.OAuth2.present() {
		// The token replaces the passwords of both protocols; a password
		// key is refused before its file is read.
		for _, t := range []struct {
			table at
			vs    [3]*value
		}{
			{im, [3]*value{&r.IMAP.Password, &r.IMAP.PasswordFile, &r.IMAP.PasswordCredential}},
			{sm, [3]*value{&r.SMTP.Password, &r.SMTP.PasswordFile, &r.SMTP.PasswordCredential}},
		} {
			for i, suffix := range []string{"", "_file", "_credential"} {
				if t.vs[i].set {
					p.errorf(t.table.key("password"+suffix), "not allowed with [channel.oauth2]: the channel logs in with OAuth2 tokens")
					*t.vs[i] = value{}
				}
			}
			p.markBad(t.table.key("password"))
		}
	}
	ch := Channel{
		Name: p.str(c.key("name"), r.Name),
		Userlike: Userlike{
			InboundURL:    p.str(ul.key("inbound_url"), r.Userlike.InboundURL),
			InboundToken:  p.secret(ul, "inbound_token", r.Userlike.InboundToken, r.Userlike.InboundTokenFile, r.Userlike.InboundTokenCredential),
			OutboundToken: p.secret(ul, "outbound_token", r.Userlike.OutboundToken, r.Userlike.OutboundTokenFile, r.Userlike.OutboundTokenCredential),
			Debug:         p.boolean(ul.key("debug"), r.Userlike.Debug),
		},
		IMAP: IMAP{
			Address:            p.str(im.key("address"), r.IMAP.Address),
			Security:           Security(p.str(im.key("security"), r.IMAP.Security)),
			Username:           p.str(im.key("username"), r.IMAP.Username),
			Password:           p.secret(im, "password", r.IMAP.Password, r.IMAP.PasswordFile, r.IMAP.PasswordCredential),
			Folders:            p.strs(im.key("folders"), r.IMAP.Folders),
			After:              After(p.str(im.key("after"), r.IMAP.After)),
			MoveTo:             p.str(im.key("move_to"), r.IMAP.MoveTo),
			QuarantineFolder:   p.str(im.key("quarantine_folder"), r.IMAP.QuarantineFolder),
			Start:              p.start(im.key("start"), r.IMAP.Start),
			PollInterval:       p.duration(im.key("poll_interval"), r.IMAP.PollInterval),
			IdleRefresh:        p.duration(im.key("idle_refresh"), r.IMAP.IdleRefresh),
			TLSServerName:      p.str(im.key("tls_server_name"), r.IMAP.TLSServerName),
			InsecureSkipVerify: p.boolean(im.key("insecure_skip_verify"), r.IMAP.InsecureSkipVerify),
		},
		SMTP: SMTP{
			Address:        p.str(sm.key("address"), r.SMTP.Address),
			Security:       Security(p.str(sm.key("security"), r.SMTP.Security)),
			Username:       p.str(sm.key("username"), r.SMTP.Username),
			Password:       p.secret(sm, "password", r.SMTP.Password, r.SMTP.PasswordFile, r.SMTP.PasswordCredential),
			SentFolder:     p.str(sm.key("sent_folder"), r.SMTP.SentFolder),
			NewSubject:     p.str(sm.key("new_subject"), r.SMTP.NewSubject),
			FromTemplate:   p.str(sm.key("from_template"), r.SMTP.FromTemplate),
			ReplyTo:        p.str(sm.key("reply_to"), r.SMTP.ReplyTo),
			NotifyFailures: p.boolean(sm.key("notify_failures"), r.SMTP.NotifyFailures),
			MaxAge:         p.duration(sm.key("max_age"), r.SMTP.MaxAge),
			Coalesce:       p.duration(sm.key("coalesce"), r.SMTP.Coalesce),
			FooterText:     p.str(sm.key("footer_text"), r.SMTP.FooterText),
			FooterHTML:     p.str(sm.key("footer_html"), r.SMTP.FooterHTML),
			Quote:          p.boolean(sm.key("quote"), r.SMTP.Quote),
			ReplyCc:        ReplyCc(p.str(sm.key("reply_cc"), r.SMTP.ReplyCc)),
		},
		Verify: Verify{
			TrustedAuthservIDs: p.strs(ve.key("trusted_authserv_ids"), r.Verify.TrustedAuthservIDs),
			Require:            Require(p.str(ve.key("require"), r.Verify.Require)),
			Allow:              p.strs(ve.key("allow"), r.Verify.Allow),
			DKIM:               p.boolean(ve.key("dkim"), r.Verify.DKIM),
			OnFail:             OnFail(p.str(ve.key("on_fail"), r.Verify.OnFail)),
			StrictAlignment:    p.boolean(ve.key("strict_alignment"), r.Verify.StrictAlignment),
			FormSenders:        p.strs(ve.key("form_senders"), r.Verify.FormSenders),
		},
		Inbound: Inbound{
			Subject:        SubjectMode(p.str(in.key("subject"), r.Inbound.Subject)),
			MailingLists:   MailingLists(p.str(in.key("mailing_lists"), r.Inbound.MailingLists)),
			RateLimit:      p.integer(in.key("rate_limit"), r.Inbound.RateLimit),
			RateWindow:     p.duration(in.key("rate_window"), r.Inbound.RateWindow),
			AttachOriginal: AttachOriginal(p.str(in.key("attach_original"), r.Inbound.AttachOriginal)),
		},
	}
	for i, a := range ch.Verify.Allow {
		ch.Verify.Allow[i] = strings.ToLower(a)
	}
	for i, a := range ch.Verify.FormSenders {
		ch.Verify.FormSenders[i] = strings.ToLower(a)
	}
	ch.OAuth2 = p.convertOAuth2(c.key("oauth2"), &r.OAuth2)
	if ch.OAuth2.Enabled() {
		if ch.OAuth2.Provider == OAuth2Google && ch.OAuth2.Mode == OAuth2AppOnly && ch.OAuth2.Subject == "" {
			ch.OAuth2.Subject = ch.IMAP.Username
		}
		if ch.SMTP.Username == "" {
			ch.SMTP.Username = ch.IMAP.Username
		}
	}

	fa := sm.key("from")
	if from := p.str(fa, r.SMTP.From); from != "" {
		addr, err := mail.ParseAddress(from)
		if err != nil {
			p.errorf(fa, "invalid address %q: %v", from, err)
		} else {
			ch.SMTP.From = *addr
		}
	}
	return ch
}
