package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

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

// parser collects the errors and warnings of one Parse call.
type parser struct {
	mode    fs.FileMode // of the file, if known
	name    string
	baseDir string
	getenv  func(string) string
	src     string
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
		src:     string(data),
		idx:     indexLines(string(data)),
		bad:     make(map[pathAt]bool),
	}

	var m map[string]any
	if _, err := toml.Decode(string(data), &m); err != nil {
		return nil, p.tomlError(err)
	}
	channels, _ := tablesOf(m["channel"])
	for i, c := range channels {
		s, _ := c["name"].(string)
		p.names = append(p.names, s)
		p.refusePasswords(at{ch: i, path: []string{"channel"}}, c)
	}
	cfg := &Config{}
	p.fill(at{ch: -1}, m, reflect.ValueOf(cfg).Elem())
	for i := range cfg.Channels {
		p.resolveChannel(at{ch: i, path: []string{"channel"}}, channels[i], &cfg.Channels[i])
	}
	p.derivedDefaults(cfg, m)
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

// errorf reports an error at a, unless converting it or a table above it
// failed already (a value that failed to convert is not reported again as
// missing or invalid). Validation may report several problems of one key.
func (p *parser) errorf(a at, format string, args ...any) {
	if p.isBad(a) {
		return
	}
	if !p.validating {
		p.markBad(a)
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

// isBad reports whether a or a table above it already has an error.
func (p *parser) isBad(a at) bool {
	for n := len(a.path); n > 0; n-- {
		if p.bad[pathAt{a.ch, joinPath(a.path[:n])}] {
			return true
		}
	}
	return false
}

// isSecretKey reports whether values of key k are secrets (the Secret
// fields of the schema, given inline); toml syntax errors on their lines
// are reported without toml's message, which may quote the value.
func isSecretKey(k string) bool {
	secret := false
	walkSchema(reflect.TypeFor[Config](), nil, func(path []string, t reflect.Type, _ reflect.StructTag) {
		secret = secret || t == reflect.TypeFor[Secret]() && path[len(path)-1] == k
	})
	return secret
}

// tomlError turns an error of the toml package (a syntax error, or a key
// defined twice) into an *Error with file and line.
func (p *parser) tomlError(err error) error {
	e := &Error{File: p.name}
	var pe toml.ParseError
	if errors.As(err, &pe) {
		e.Line = pe.Position.Line
		e.Key = pe.LastKey
		e.Message = pe.Message
	} else {
		e.Message = strings.TrimPrefix(err.Error(), "toml: ")
	}
	// Any word on the line that names a secret key withholds the message:
	// the line may be too broken to tell its key.
	secret := false
	if lines := strings.Split(p.src, "\n"); e.Line > 0 && e.Line <= len(lines) {
		for _, w := range strings.FieldsFunc(lines[e.Line-1], func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
		}) {
			secret = secret || isSecretKey(w)
		}
	}
	if i := strings.LastIndexByte(e.Key, '.'); isSecretKey(e.Key[i+1:]) {
		secret = true
	}
	if secret {
		e.Message = "invalid TOML (details withheld: this line holds a secret)"
	}
	return e
}

// maxSecretSize bounds what a secret file or credential may hold.
const maxSecretSize = 64 << 10

// secret resolves the secret key name in the table m at a, given as name
// (inline), name_file (a file's content) or name_credential (a systemd
// credential). Absent is the zero Secret.
func (p *parser) secret(a at, name string, m map[string]any) Secret {
	inline, inlineSet := m[name]
	file, fileSet := m[name+"_file"]
	cred, credSet := m[name+"_credential"]
	if given := btoi(inlineSet) + btoi(fileSet) + btoi(credSet); given > 1 {
		first := a.key(name)
		if !inlineSet {
			first = a.key(name + "_file")
		}
		p.errorf(first, "give only one of %s, %s_file and %s_credential", name, name, name)
		p.markBad(a.key(name))
		return Secret{}
	}
	switch {
	case inlineSet:
		if p.mode&0o004 != 0 {
			p.warnf(a.key(name), "a secret given inline in a file readable by all users (mode %#o); restrict it with chmod o-r, or use %s_file or %s_credential", p.mode, name, name)
		}
		return Secret{value: p.str(a.key(name), inline)}
	case fileSet:
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
	case credSet:
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

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
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

// refusePasswords refuses the password keys of a channel (the decoded
// table m at c) that has [channel.oauth2]: the token replaces the passwords
// of both protocols, and a password key is refused before its file is
// read.
func (p *parser) refusePasswords(c at, m map[string]any) {
	if o, _ := m["oauth2"].(map[string]any); !hasKeyOf(o, reflect.TypeFor[OAuth2]()) {
		return
	}
	for _, proto := range []string{"imap", "smtp"} {
		t := c.key(proto)
		table, _ := m[proto].(map[string]any)
		for _, s := range secretSuffixes {
			if _, ok := table["password"+s]; ok {
				p.errorf(t.key("password"+s), "not allowed with [channel.oauth2]: the channel logs in with OAuth2 tokens")
				delete(table, "password"+s)
			}
		}
		p.markBad(t.key("password"))
	}
}

// resolveChannel completes a converted channel (the decoded table m at c):
// address lists in lower case, and the OAuth2 provider's endpoints and
// scopes.
func (p *parser) resolveChannel(c at, m map[string]any, ch *Channel) {
	for i, a := range ch.Verify.Allow {
		ch.Verify.Allow[i] = strings.ToLower(a)
	}
	for i, a := range ch.Verify.FormSenders {
		ch.Verify.FormSenders[i] = strings.ToLower(a)
	}
	if o, _ := m["oauth2"].(map[string]any); hasKeyOf(o, reflect.TypeFor[OAuth2]()) {
		p.resolveOAuth2(c.key("oauth2"), o, &ch.OAuth2)
	}
}
