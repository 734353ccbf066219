package config

import (
	"net"
	"net/mail"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// The schema of the file is the Config type itself. Each field that the
// file sets has a toml tag with its key; a struct type whose fields have
// toml tags is a table, a slice of one is an array of tables ([[channel]]).
// The tag option "optional" leaves a table that the file omits at its zero
// value, defaults included. A default tag holds the default as a TOML
// value ('5m', 20, ['INBOX']); it is converted and validated like a
// written value. A Secret field with key k is read from one of k (inline),
// k_file (a file) or k_credential (a systemd credential).
//
// The file is decoded by toml into maps first and then converted here,
// rather than straight into Config: toml stops at its first wrongly typed
// value, while this conversion reports every problem, each at its own line
// and channel, and tells an absent key from an empty one.

// isTable reports whether t is a table of the schema.
func isTable(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t.NumField() > 0 && t.Field(0).Tag.Get("toml") != ""
}

// secretSuffixes are the keys a Secret is given under, after its name.
var secretSuffixes = [3]string{"", "_file", "_credential"}

// walkSchema calls f for every key of the table type t, below prefix,
// with its path, type (for an array of tables: the table) and tags, and
// walks the tables.
func walkSchema(t reflect.Type, prefix []string, f func(path []string, t reflect.Type, tag reflect.StructTag)) {
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		path := append(prefix[:len(prefix):len(prefix)], name)
		ft := t.Field(i).Type
		if ft.Kind() == reflect.Slice && isTable(ft.Elem()) {
			ft = ft.Elem()
		}
		f(path, ft, t.Field(i).Tag)
		if isTable(ft) {
			walkSchema(ft, path, f)
		}
	}
}

// schemaKeys returns every key path the file may contain, tables included
// ("server", "server.listen", "channel", "channel.imap", ...), joined by
// joinPath. The map value is true for a value and false for a table.
func schemaKeys() map[string]bool {
	keys := make(map[string]bool)
	walkSchema(reflect.TypeFor[Config](), nil, func(path []string, t reflect.Type, _ reflect.StructTag) {
		keys[joinPath(path)] = !isTable(t)
		if t == reflect.TypeFor[Secret]() {
			for _, s := range secretSuffixes {
				keys[joinPath(path)+s] = true
			}
		}
	})
	return keys
}

// fill sets the fields of the table v from the decoded table m, at a.
// Absent keys get their defaults; keys that v has no field for are
// reported as unknown.
func (p *parser) fill(a at, m map[string]any, v reflect.Value) {
	known := make(map[string]bool)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		name, opt, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		known[name] = true
		fa, fv := a.key(name), v.Field(i)
		raw, set := m[name]
		switch {
		case isTable(f.Type):
			sub, ok := raw.(map[string]any)
			if set && !ok {
				p.errorf(fa, "must be a table")
			}
			if opt == "optional" && !hasKeyOf(sub, f.Type) {
				fv = reflect.New(f.Type).Elem() // reports unknown keys, keeps the zero value
			}
			p.fill(fa, sub, fv)
		case f.Type.Kind() == reflect.Slice && isTable(f.Type.Elem()):
			tables, ok := tablesOf(raw)
			if set && !ok {
				p.errorf(fa, "must be an array of tables")
			}
			fv.Set(reflect.MakeSlice(f.Type, len(tables), len(tables)))
			for j, t := range tables { // the one array of tables: [[channel]]
				p.fill(at{ch: j, path: fa.path}, t, fv.Index(j))
			}
		case f.Type == reflect.TypeFor[Secret]():
			for _, s := range secretSuffixes {
				known[name+s] = true
			}
			fv.Set(reflect.ValueOf(p.secret(a, name, m)))
		default:
			if def, ok := f.Tag.Lookup("default"); ok && !set {
				raw, set = defaultValue(def), true
			}
			if set {
				p.leaf(fa, raw, fv)
			}
		}
	}
	p.unknownKeys(a, m, known)
}

// hasKeyOf reports whether the decoded table m sets a key of the table
// type t. An optional table with unknown keys only is absent, apart from
// their errors.
func hasKeyOf(m map[string]any, t reflect.Type) bool {
	found := false
	walkSchema(t, nil, func(path []string, t reflect.Type, _ reflect.StructTag) {
		if len(path) == 1 {
			found = found || has(m, path[0]) || t == reflect.TypeFor[Secret]() && (has(m, path[0]+"_file") || has(m, path[0]+"_credential"))
		}
	})
	return found
}

// tablesOf returns an array of tables as toml decodes it: [[name]]
// headers, or an array of inline tables.
func tablesOf(v any) ([]map[string]any, bool) {
	switch v := v.(type) {
	case []map[string]any:
		return v, true
	case []any:
		out := make([]map[string]any, 0, len(v))
		for _, e := range v {
			t, ok := e.(map[string]any)
			if !ok {
				return nil, false
			}
			out = append(out, t)
		}
		return out, true
	}
	return nil, false
}

// defaultValue decodes the TOML value of a default tag.
func defaultValue(def string) any {
	var m map[string]any
	if _, err := toml.Decode("v = "+def, &m); err != nil {
		panic("config: invalid default " + def + ": " + err.Error())
	}
	return m["v"]
}

// unknownKeys reports the keys of m that are not known, in the order of
// their lines: one error for a whole unknown table, not one per key in it.
func (p *parser) unknownKeys(a at, m map[string]any, known map[string]bool) {
	var unknown []string
	for k := range m {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		msg := "unknown key"
		if lower := strings.ToLower(k); lower != k && known[lower] {
			msg = "unknown key (keys are case-sensitive: did you mean " + strconv.Quote(lower) + "?)"
		}
		p.errorf(a.key(k), "%s", msg)
	}
}

// leaf converts the value of one key into v, reporting a value of the
// wrong type or form. The kinds of values are the types of the schema's
// fields; a string type (the choices of enums.go) takes any string here
// and is checked by the validator.
func (p *parser) leaf(a at, raw any, v reflect.Value) {
	switch f := v.Addr().Interface().(type) {
	case *bool:
		*f = p.boolean(a, raw)
	case *int:
		*f = p.integer(a, raw)
	case *[]string:
		*f = p.strs(a, raw)
	case *Duration:
		*f = p.duration(a, raw)
	case *Size:
		*f = p.size(a, raw)
	case *StartPoint:
		*f = p.start(a, raw)
	case *[]netip.Prefix:
		*f = p.prefixes(a, raw)
	case *mail.Address:
		*f = p.address(a, raw)
	default:
		if v.Kind() != reflect.String {
			panic("config: no conversion for " + v.Type().String())
		}
		v.SetString(p.str(a, raw))
	}
}

// Defaults that depend on another key or on the environment.
const (
	defaultStorePath    = "/var/lib/mailgate/mailgate.db"
	defaultStoreFile    = "mailgate.db"
	defaultFromTemplate = "{operator} ({channel})"
)

// derivedDefaults fills the keys whose default depends on another key or
// on the environment: server.public_url, store.path and media.dir, and
// the OAuth2 defaults of a channel.
func (p *parser) derivedDefaults(cfg *Config, m map[string]any) {
	top := at{ch: -1}
	if !has(m, "server", "public_url") && !p.isBad(top.key("server", "listen")) {
		listen := cfg.Server.Listen
		cfg.Server.PublicURL = "http://" + listen
		if host, _, err := net.SplitHostPort(listen); err == nil && host != "" && !isLoopback(host) {
			p.warnf(top.key("server", "public_url"), "not set, so media URLs use %q; set public_url to the address Userlike can reach", cfg.Server.PublicURL)
		}
	}
	if !has(m, "store", "path") {
		cfg.Store.Path = defaultStorePath
		if dirs := p.getenv("STATE_DIRECTORY"); dirs != "" {
			// systemd joins several StateDirectory= entries with ':'.
			dir, _, _ := strings.Cut(dirs, ":")
			cfg.Store.Path = filepath.Join(dir, defaultStoreFile)
		}
	}
	if !has(m, "media", "dir") && cfg.Store.Path != "" {
		cfg.Media.Dir = filepath.Join(filepath.Dir(cfg.Store.Path), "media")
	}
	for i := range cfg.Channels {
		ch := &cfg.Channels[i]
		if !ch.OAuth2.Enabled() {
			continue
		}
		if ch.OAuth2.Provider == OAuth2Google && ch.OAuth2.Mode == OAuth2AppOnly && ch.OAuth2.Subject == "" {
			ch.OAuth2.Subject = ch.IMAP.Username
		}
		if ch.SMTP.Username == "" {
			ch.SMTP.Username = ch.IMAP.Username
		}
	}
}

// has reports whether the decoded file sets the key at path.
func has(m map[string]any, path ...string) bool {
	for i, k := range path {
		v, ok := m[k]
		if !ok || i == len(path)-1 {
			return ok
		}
		if m, ok = v.(map[string]any); !ok {
			return false
		}
	}
	return false
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

// str converts a string value.
func (p *parser) str(a at, v any) string {
	s, ok := v.(string)
	if !ok {
		p.errorf(a, "must be a string, not %s", tomlType(v))
	}
	return s
}

// boolean converts a boolean value.
func (p *parser) boolean(a at, v any) bool {
	b, ok := v.(bool)
	if !ok {
		p.errorf(a, "must be true or false, not %s", tomlType(v))
	}
	return b
}

// integer converts an integer value.
func (p *parser) integer(a at, v any) int {
	n, ok := v.(int64)
	if !ok {
		p.errorf(a, "must be an integer, not %s", tomlType(v))
		return 0
	}
	if int64(int(n)) != n {
		p.errorf(a, "%d is out of range", n)
		return 0
	}
	return int(n)
}

// strs converts an array of strings.
func (p *parser) strs(a at, v any) []string {
	arr, ok := v.([]any)
	if !ok {
		p.errorf(a, "must be an array of strings, not %s", tomlType(v))
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

// text converts a string through u's UnmarshalText; want describes the
// value for a value of another type.
func (p *parser) text(a at, v any, u interface{ UnmarshalText([]byte) error }, want string) {
	s, ok := v.(string)
	if !ok {
		p.errorf(a, "must be %s, not %s", want, tomlType(v))
		return
	}
	if err := u.UnmarshalText([]byte(s)); err != nil {
		p.errorf(a, "%v", err)
	}
}

// start converts [channel.imap] start.
func (p *parser) start(a at, v any) StartPoint {
	var sp StartPoint
	p.text(a, v, &sp, `"now", "all" or a duration string such as "7d"`)
	return sp
}

// duration converts a duration string such as "5m".
func (p *parser) duration(a at, v any) Duration {
	var d Duration
	p.text(a, v, &d, `a duration string such as "5m"`)
	return d
}

// size converts a size: an integer (bytes) or a string such as "25MiB".
func (p *parser) size(a at, v any) Size {
	if n, ok := v.(int64); ok {
		return Size(n)
	}
	var s Size
	p.text(a, v, &s, `a size such as "25MiB" or a number of bytes`)
	return s
}

// address converts an RFC 5322 address with an optional display name;
// "" is the zero address.
func (p *parser) address(a at, v any) mail.Address {
	s := p.str(a, v)
	if s == "" {
		return mail.Address{}
	}
	addr, err := mail.ParseAddress(s)
	if err != nil {
		p.errorf(a, "invalid address %q: %v", s, err)
		return mail.Address{}
	}
	return *addr
}

// prefixes converts an array of CIDR prefixes such as "10.1.0.0/16".
// Each prefix is masked; one written with host bits set ("10.1.2.3/16")
// draws a warning. All invalid entries are named in one error.
func (p *parser) prefixes(a at, v any) []netip.Prefix {
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
