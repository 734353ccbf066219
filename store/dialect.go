package store

import (
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
)

// dialect is what differs between the two backends in the SQL the store
// sends. The store's queries are written once, in the subset of SQL both
// SQLite and PostgreSQL understand, with "?" placeholders; rewrite turns a
// query into PostgreSQL's form, once per query text.
type dialect struct {
	postgres bool

	mu    sync.RWMutex
	texts map[string]string // query text -> PostgreSQL text
}

// Driver names, as in the [store] driver setting.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// name is the driver name of the dialect.
func (d *dialect) name() string {
	if d.postgres {
		return DriverPostgres
	}
	return DriverSQLite
}

// indexedBy matches SQLite's index hints, which PostgreSQL's planner does
// without.
var indexedBy = regexp.MustCompile(`\s+INDEXED BY \w+`)

// q returns query in the dialect's form: unchanged for SQLite; for
// PostgreSQL with the "?" placeholders numbered ($1, $2, ...), SQLite's
// index hints dropped and json_each (over a JSON array of values) spelled
// json_array_elements_text. The rewritten text is cached.
func (d *dialect) q(query string) string {
	if !d.postgres {
		return query
	}
	d.mu.RLock()
	s, ok := d.texts[query]
	d.mu.RUnlock()
	if ok {
		return s
	}
	s = pgText(query)
	d.mu.Lock()
	if len(d.texts) < maxCachedStmts*4 {
		d.texts[query] = s
	}
	d.mu.Unlock()
	return s
}

// pgText rewrites query for PostgreSQL (see dialect.q).
func pgText(query string) string {
	query = indexedBy.ReplaceAllString(query, "")
	query = strings.ReplaceAll(query, "json_each(?)", "json_array_elements_text(?::json)")
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	inString := false
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'':
			inString = !inString // '' inside a literal toggles twice
			b.WriteByte(c)
		case c == '?' && !inString:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// args returns the arguments of a query in the dialect's form: unchanged
// for SQLite; for PostgreSQL, whose TEXT holds only UTF-8 without NUL, a
// string argument with bytes that are not UTF-8 or with a NUL gets U+FFFD
// in their place, so that an email with a broken header is stored
// (readably) instead of failing the ledger. Bytes ([]byte) go to BYTEA
// columns unchanged.
func (d *dialect) args(args []any) []any {
	if !d.postgres {
		return args
	}
	var out []any
	for i, a := range args {
		s, ok := a.(string)
		if !ok || (utf8.ValidString(s) && strings.IndexByte(s, 0) < 0) {
			continue
		}
		if out == nil {
			out = slices.Clone(args)
		}
		out[i] = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	}
	if out == nil {
		return args
	}
	return out
}

// retryable reports whether err is PostgreSQL's verdict that a
// transaction lost a race (serialization failure, deadlock) and is to be
// run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	return pe.Code == "40001" || pe.Code == "40P01"
}
